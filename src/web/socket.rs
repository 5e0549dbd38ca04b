//! `GET /ws`: the upgrade to a WebSocket, within the connection limits, handed to
//! the session loop ([`crate::signal::session::run`]).

use super::AppState;
use crate::gateway::Gateway;
use crate::signal::session;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(websocket))
}

async fn websocket(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    use crate::limits::{ClientKey, ConnectionSlot, UnadmittedRefusal, UnadmittedSlot};
    let settings = &gw.settings;
    // Both places are held by guards that move into the upgrade: whether the
    // upgrade completes, fails or is reset, dropping them gives the places back.
    let slots = ConnectionSlot::take(&gw.stats.connections, settings.max_connections)
        .ok_or(UnadmittedRefusal::Server)
        .and_then(|connection| {
            let client = ClientKey::of(remote.ip());
            let unadmitted = UnadmittedSlot::take(
                &gw.stats.unadmitted,
                client,
                settings.max_unadmitted,
                settings.max_unadmitted_per_address,
            )?;
            Ok((connection, unadmitted))
        });
    // Small buffers: an idle admitted socket should cost kilobytes, not the
    // library's default 128 KiB. Frames a little above our own limit are still read
    // so that the client gets a clear error instead of a dropped socket; past twice
    // the limit the socket closes (1009).
    let hard_cap = settings.max_frame_bytes.saturating_mul(2).max(16 * 1024);
    upgrade.read_buffer_size(4096).write_buffer_size(0).max_message_size(hard_cap).max_frame_size(hard_cap).on_upgrade(
        move |mut socket| async move {
            let (connection, unadmitted) = match slots {
                Ok(slots) => slots,
                Err(refusal) => {
                    gw.stats.limited.fetch_add(1, Ordering::Relaxed);
                    let message = match refusal {
                        UnadmittedRefusal::Server => "the server is at its connection limit; try again shortly",
                        UnadmittedRefusal::Address => {
                            "too many connections from your address are waiting to be admitted; finish or close one"
                        }
                    };
                    let error =
                        crate::protocol::ServerMessage::Error { code: crate::protocol::code::SERVER_FULL, message };
                    let _ = socket.send(Message::Text(error.to_text().into())).await;
                    let close = CloseFrame { code: 1013, reason: "server full".into() };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
            };
            session::run(socket, gw, Some(remote), unadmitted).await;
            drop(connection);
        },
    )
}
