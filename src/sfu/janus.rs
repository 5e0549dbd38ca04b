//! A client of Janus's WebSocket API (`janus = "ws://127.0.0.1:8188"`), the one
//! connection over which keygate drives Janus for every admitted peer.
//!
//! Janus is never reachable by a browser's signaling: keygate opens the sessions,
//! attaches the handles, joins each publisher under the peer id it admitted, and
//! relays only what an admitted peer may ask (publish its own media, subscribe to
//! another admitted peer's). Media still flows between the browser and Janus
//! (ICE, DTLS-SRTP), which is useless to anyone without a session.
//!
//! Requests carry a transaction; Janus answers each with `success`/`error`, or,
//! for a plugin message, `ack` and later an `event` with the same transaction.
//! Events without a transaction (`webrtcup`, `hangup`, a publisher leaving) are
//! handed to whoever listens to that handle.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// How long a request may wait for Janus's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Largest message read from Janus (an SDP with its candidates is a few KiB).
const MAX_MESSAGE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    #[error("cannot reach Janus at {0}: {1}")]
    Connect(String, String),
    #[error("the connection to Janus is closed")]
    Closed,
    #[error("Janus did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Janus refused: {0}")]
    Refused(String),
}

/// Who waits for which transaction, and whether an `ack` is the whole answer
/// (keepalive, trickle) or only says a plugin message arrived (its event follows).
type Pending = Mutex<HashMap<String, (oneshot::Sender<Value>, bool)>>;
type Listeners = Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>;

/// A connection to Janus, shared by every session keygate holds there. When it
/// drops (Janus restarted), it is made again every second; Janus has then
/// forgotten every session, which [`Janus::generation`] tells.
pub struct Janus {
    url: String,
    out: Mutex<mpsc::UnboundedSender<Message>>,
    pending: Arc<Pending>,
    listeners: Arc<Listeners>,
    next: AtomicU64,
    /// Counts the connections made: sessions of an earlier one are gone.
    generation: AtomicU64,
}

/// How long after losing Janus a new connection is tried, and again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket to Janus at `url`.
async fn open(url: &str) -> Result<Socket, JanusError> {
    let failed = |e: &dyn std::fmt::Display| JanusError::Connect(url.to_owned(), e.to_string());
    let mut request = url.into_client_request().map_err(|e| failed(&e))?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "janus-protocol".parse().map_err(|e| failed(&e))?);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (socket, _) =
        tokio::time::timeout(ANSWER_WITHIN, tokio_tungstenite::connect_async_with_config(request, Some(config), false))
            .await
            .map_err(|_| failed(&"no answer"))?
            .map_err(|e| failed(&e))?;
    Ok(socket)
}

impl Janus {
    /// Connects to Janus's WebSocket API at `url`.
    pub async fn connect(url: &str) -> Result<Arc<Janus>, JanusError> {
        let socket = open(url).await?;
        let (out, _) = mpsc::unbounded_channel();
        let janus = Arc::new(Janus {
            url: url.to_owned(),
            out: Mutex::new(out),
            pending: Arc::default(),
            listeners: Arc::default(),
            next: AtomicU64::new(1),
            generation: AtomicU64::new(0),
        });
        janus.serve(socket);
        Ok(janus)
    }

    /// Which connection this is (see [`Janus`]); a session made under another is gone.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads and writes `socket` until it drops, then connects again.
    fn serve(self: &Arc<Self>, socket: Socket) {
        let (mut sink, mut stream) = socket.split();
        let (out, mut queue) = mpsc::unbounded_channel::<Message>();
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = out;
        self.generation.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
        });
        let janus = Arc::downgrade(self);
        let (p, l) = (self.pending.clone(), self.listeners.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if janus.strong_count() == 0 {
                    return;
                }
                let Message::Text(text) = message else { continue };
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                dispatch(&p, &l, value);
            }
            // Closed: what is sent from now on fails at once, whoever waits hears it,
            // and Janus has forgotten every session.
            if let Some(janus) = janus.upgrade() {
                *janus.out.lock().unwrap_or_else(|e| e.into_inner()) = mpsc::unbounded_channel().0;
                janus.generation.fetch_add(1, Ordering::AcqRel);
            }
            p.lock().unwrap_or_else(|e| e.into_inner()).clear();
            l.lock().unwrap_or_else(|e| e.into_inner()).clear();
            tracing::warn!("the connection to Janus dropped; connecting again");
            loop {
                tokio::time::sleep(RECONNECT_EVERY).await;
                let Some(janus) = janus.upgrade() else { return };
                match open(&janus.url).await {
                    Ok(socket) => {
                        tracing::info!("connected to Janus again");
                        janus.serve(socket);
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "Janus is still unreachable"),
                }
            }
        });
    }

    /// Sends `request` with a fresh transaction and returns Janus's answer (for a
    /// plugin message, the event that follows its `ack`).
    async fn call(&self, mut request: Value) -> Result<Value, JanusError> {
        let ack_answers = matches!(request["janus"].as_str(), Some("keepalive" | "trickle"));
        let transaction = format!("kg{}", self.next.fetch_add(1, Ordering::Relaxed));
        request["transaction"] = Value::String(transaction.clone());
        let (done, answer) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(transaction.clone(), (done, ack_answers));
        let sent = self.out.lock().unwrap_or_else(|e| e.into_inner()).send(Message::Text(request.to_string().into()));
        if sent.is_err() {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&transaction);
            return Err(JanusError::Closed);
        }
        let answer = match tokio::time::timeout(ANSWER_WITHIN, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(JanusError::Closed),
            Err(_) => {
                self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&transaction);
                return Err(JanusError::Timeout(ANSWER_WITHIN));
            }
        };
        match answer["janus"].as_str() {
            Some("error") => {
                Err(JanusError::Refused(answer["error"]["reason"].as_str().unwrap_or("unknown").to_owned()))
            }
            _ => match answer["plugindata"]["data"]["error"].as_str() {
                Some(reason) => Err(JanusError::Refused(reason.to_owned())),
                None => Ok(answer),
            },
        }
    }

    /// A new Janus session.
    pub async fn create_session(&self) -> Result<u64, JanusError> {
        let answer = self.call(json!({"janus": "create"})).await?;
        answer["data"]["id"].as_u64().ok_or_else(|| JanusError::Refused("no session id".into()))
    }

    /// Attaches `plugin` (e.g. `janus.plugin.videoroom`) to `session`; events
    /// without a transaction for the new handle go to the returned receiver.
    pub async fn attach(
        &self,
        session: u64,
        plugin: &str,
    ) -> Result<(u64, mpsc::UnboundedReceiver<Value>), JanusError> {
        let answer = self.call(json!({"janus": "attach", "session_id": session, "plugin": plugin})).await?;
        let handle = answer["data"]["id"].as_u64().ok_or_else(|| JanusError::Refused("no handle id".into()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).insert(handle, tx);
        Ok((handle, rx))
    }

    /// Sends a plugin message (with an SDP, `jsep`, if any); returns Janus's answer:
    /// `plugindata.data` and, for an offer or answer, `jsep`.
    pub async fn message(
        &self,
        session: u64,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, JanusError> {
        let mut request = json!({"janus": "message", "session_id": session, "handle_id": handle, "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        self.call(request).await
    }

    /// Passes a browser's ICE candidate (or `{"completed": true}`) to a handle.
    pub async fn trickle(&self, session: u64, handle: u64, candidate: Value) -> Result<(), JanusError> {
        self.call(json!({"janus": "trickle", "session_id": session, "handle_id": handle, "candidate": candidate}))
            .await
            .map(|_| ())
    }

    /// Keeps `session` alive (Janus drops a session silent for 60 s).
    pub async fn keepalive(&self, session: u64) -> Result<(), JanusError> {
        self.call(json!({"janus": "keepalive", "session_id": session})).await.map(|_| ())
    }

    /// Detaches `handle` from `session` (its connection ends) and stops handing
    /// its events on. Best effort: a handle of a session already gone is gone.
    pub async fn detach(&self, session: u64, handle: u64) {
        self.forget(handle);
        if let Err(e) = self.call(json!({"janus": "detach", "session_id": session, "handle_id": handle})).await {
            tracing::debug!(error = %e, "detaching a Janus handle failed");
        }
    }

    /// Ends `session` and every handle in it: its media stops at once.
    pub async fn destroy(&self, session: u64) -> Result<(), JanusError> {
        self.call(json!({"janus": "destroy", "session_id": session})).await.map(|_| ())
    }

    /// Stops handing events of `handle` to its listener.
    pub fn forget(&self, handle: u64) {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).remove(&handle);
    }
}

/// Hands a message from Janus to whoever waits for it.
fn dispatch(pending: &Pending, listeners: &Listeners, value: Value) {
    let kind = value["janus"].as_str().unwrap_or_default();
    if let Some(transaction) = value["transaction"].as_str() {
        let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, ack_answers)) = pending.get(transaction) {
            if kind != "ack" || *ack_answers {
                if let Some((waiting, _)) = pending.remove(transaction) {
                    let _ = waiting.send(value);
                }
            }
            return;
        }
        if kind == "ack" {
            return;
        }
    }
    if let Some(handle) = value["sender"].as_u64() {
        let listeners = listeners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(listener) = listeners.get(&handle) {
            let _ = listener.send(value);
        }
    }
}
