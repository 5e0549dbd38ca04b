//! `sfu` messages: an admitted peer's media through the room's SFU (Janus), relayed
//! by [`crate::sfu::relay`]. keygate decides who publishes as whom and who may
//! receive whom; the peer's Janus session ends with its seat.

use super::*;
use crate::protocol::SfuRequest;
use serde_json::json;

impl Session {
    pub(super) async fn on_sfu<S: Sink<Message> + Unpin>(&mut self, socket: &mut S, request: SfuRequest) {
        let Some(sfu) = self.gw.sfu.clone() else {
            return send_error(socket, code::BAD_MESSAGE, "this server has no SFU (it runs without janus)").await;
        };
        let Some(a) = self.admitted.as_mut() else {
            return send_error(socket, code::UNAUTHENTICATED, "sfu is for admitted peers; authenticate first").await;
        };
        if !self.gw.rooms.through_sfu(&a.room) {
            let message =
                "this call is peer to peer (the room's media mode is mesh, or the call has not moved to the SFU)";
            return send_error(socket, code::BAD_MESSAGE, message).await;
        }
        if a.sfu.is_none() {
            match crate::sfu::relay::SfuSeat::open(&sfu, &a.room, &a.peer_id).await {
                Ok(seat) => a.sfu = Some(seat),
                Err(e) => return sfu_failed(socket, e).await,
            }
        }
        let (room, me) = (a.room.clone(), a.peer_id.clone());
        let Some(seat) = a.sfu.as_mut() else { return };
        // Janus reads more in a jsep or a candidate than a browser sends; it gets
        // only what a browser sends.
        let request = match only_what_a_browser_sends(request) {
            Ok(request) => request,
            Err(message) => return send_error(socket, code::BAD_MESSAGE, message).await,
        };
        match request {
            SfuRequest::Publish { jsep } => {
                // Once Janus has this peer's media, the others may receive it.
                let (gw, at, from) = (self.gw.clone(), room.clone(), me.clone());
                let live = move || {
                    let feed: Arc<str> = ServerMessage::Sfu(&json!({"op": "feed", "peerId": from})).to_text().into();
                    for peer in gw.rooms.peers(&at).into_iter().filter(|p| p.peer_id != from) {
                        gw.rooms.send_to(&at, &peer.peer_id, feed.clone());
                    }
                };
                match seat.publish(jsep, live).await {
                    Ok(answer) => {
                        send(socket, &ServerMessage::Sfu(&json!({"op": "answer", "jsep": answer}))).await;
                        // This peer may receive those whose media Janus already has.
                        for peer in sfu.publishers(&room).into_iter().filter(|p| *p != me) {
                            send(socket, &ServerMessage::Sfu(&json!({"op": "feed", "peerId": peer}))).await;
                        }
                    }
                    Err(e) => sfu_failed(socket, e).await,
                }
            }
            SfuRequest::Subscribe { peer_id } => {
                if self.gw.rooms.peer_identity(&room, &peer_id).is_none() {
                    return send_error(socket, code::NO_SUCH_PEER, "no such peer in this room (it may have left)")
                        .await;
                }
                match seat.subscribe(&peer_id).await {
                    Ok(Some(offer)) => {
                        let frame = json!({"op": "offer", "peerId": peer_id, "jsep": offer});
                        send(socket, &ServerMessage::Sfu(&frame)).await;
                    }
                    Ok(None) => send_error(socket, code::NO_SUCH_PEER, "that peer publishes no media here").await,
                    Err(e) => sfu_failed(socket, e).await,
                }
            }
            SfuRequest::Answer { peer_id, jsep } => match seat.answer(&peer_id, jsep).await {
                Ok(true) => {}
                Ok(false) => {
                    send_error(socket, code::BAD_MESSAGE, "answer a subscription's offer (subscribe first)").await
                }
                Err(e) => sfu_failed(socket, e).await,
            },
            SfuRequest::Trickle { peer_id, candidate } => match seat.trickle(peer_id.as_ref(), candidate).await {
                Ok(true) => {}
                Ok(false) => {
                    send_error(socket, code::BAD_MESSAGE, "no such SFU connection (publish or subscribe first)").await
                }
                Err(e) => sfu_failed(socket, e).await,
            },
        }
    }
}

/// Janus refused or could not be reached; the peer hears why in general terms.
async fn sfu_failed<S: Sink<Message> + Unpin>(socket: &mut S, e: crate::sfu::janus::JanusError) {
    tracing::warn!(error = %e, "an SFU request failed");
    let message = match e {
        crate::sfu::janus::JanusError::Refused(reason) => format!("the SFU refused: {reason}"),
        _ => "the SFU cannot be reached; try again".to_owned(),
    };
    send_error(socket, code::INTERNAL, &message).await
}

/// The request with its SDP reduced to `{type, sdp}` (an offer to publish, an answer
/// to a subscription's offer) and its candidate to the fields of an ICE candidate
/// or `{completed: true}`; or why not.
fn only_what_a_browser_sends(request: SfuRequest) -> Result<SfuRequest, &'static str> {
    let sdp = |jsep: &Value, kind: &str| -> Option<Value> {
        let sdp = jsep.get("sdp")?.as_str()?;
        (jsep.get("type")?.as_str()? == kind).then(|| json!({"type": kind, "sdp": sdp}))
    };
    Ok(match request {
        SfuRequest::Publish { jsep } => {
            SfuRequest::Publish { jsep: sdp(&jsep, "offer").ok_or("publish needs jsep {type: \"offer\", sdp}")? }
        }
        SfuRequest::Answer { peer_id, jsep } => SfuRequest::Answer {
            peer_id,
            jsep: sdp(&jsep, "answer").ok_or("answer needs jsep {type: \"answer\", sdp}")?,
        },
        SfuRequest::Trickle { peer_id, candidate } => {
            let candidate = if candidate.get("completed") == Some(&Value::Bool(true)) {
                json!({"completed": true})
            } else {
                let line = candidate.get("candidate").and_then(Value::as_str);
                let mid = candidate.get("sdpMid").and_then(Value::as_str);
                let index = candidate.get("sdpMLineIndex").and_then(Value::as_u64);
                match (line, mid, index) {
                    (Some(line), mid, index) if mid.is_some() || index.is_some() => {
                        json!({"candidate": line, "sdpMid": mid, "sdpMLineIndex": index})
                    }
                    _ => return Err("a candidate is {candidate, sdpMid, sdpMLineIndex} or {completed: true}"),
                }
            };
            SfuRequest::Trickle { peer_id, candidate }
        }
        subscribe @ SfuRequest::Subscribe { .. } => subscribe,
    })
}
