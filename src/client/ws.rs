//! A protocol v1 client over tokio-tungstenite.

use super::p256_key::P256Key;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("the server closed the connection")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("server error {code}: {message}")]
    Server { code: String, message: String },
    #[error("unexpected frame: {0}")]
    Unexpected(String),
    #[error(transparent)]
    Key(#[from] super::p256_key::KeyError),
}

/// One connection to `/ws`.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// How long [`Client::recv`] waits.
    pub timeout: Duration,
    /// Where every frame sent is also written, one file each ([`Client::record_to`]).
    record: Option<std::path::PathBuf>,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        // Small buffers: the load tool holds thousands of these open at once.
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Client { ws, timeout: Duration::from_secs(10), record: None })
    }

    /// Connects from the local address `from` (e.g. another loopback address, so a
    /// test or the load tool can act as several clients).
    pub async fn connect_from(url: &str, from: std::net::IpAddr) -> Result<Self, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let request = url.into_client_request().map_err(|e| ClientError::Connect(e.to_string()))?;
        Self::connect_request(request, from).await
    }

    /// Connects from `from` with a request of one's own (extra headers, e.g. what a
    /// proxy would add).
    pub async fn connect_request(
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
        from: std::net::IpAddr,
    ) -> Result<Self, ClientError> {
        let connect = |e: &dyn std::fmt::Display| ClientError::Connect(e.to_string());
        let url = request.uri().to_string();
        let parsed = url::Url::parse(&url).map_err(|e| connect(&e))?;
        let addr = parsed
            .socket_addrs(|| None)
            .map_err(|e| connect(&e))?
            .into_iter()
            .next()
            .ok_or_else(|| connect(&"no address"))?;
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .map_err(|e| connect(&e))?;
        socket.bind(std::net::SocketAddr::new(from, 0)).map_err(|e| connect(&e))?;
        let stream = socket.connect(addr).await.map_err(|e| connect(&e))?;
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(config))
            .await
            .map_err(|e| connect(&e))?;
        Ok(Client { ws, timeout: Duration::from_secs(10), record: None })
    }

    /// Connects to a `wss://` URL trusting what `tls` trusts (e.g. a test's own
    /// certificate authority).
    pub async fn connect_tls(url: &str, tls: std::sync::Arc<rustls::ClientConfig>) -> Result<Self, ClientError> {
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let connector = tokio_tungstenite::Connector::Rustls(tls);
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, Some(connector))
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Client { ws, timeout: Duration::from_secs(10), record: None })
    }

    pub async fn send(&mut self, frame: &Value) -> Result<(), ClientError> {
        self.send_text(frame.to_string()).await
    }

    /// Writes every frame this client sends into `dir`, one file each named by its
    /// hash: how the tests record real sessions' frames to seed the `frame` fuzz
    /// target (`scripts/fuzz`). The frames hold proofs and tickets: record test
    /// sessions only.
    pub fn record_to(mut self, dir: std::path::PathBuf) -> Self {
        self.record = Some(dir);
        self
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        if let Some(dir) = &self.record {
            use sha2::Digest;
            let name = crate::ids::hex(&sha2::Sha256::digest(text.as_bytes())[..8]);
            let _ = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(dir.join(name), &text));
        }
        self.ws.send(Message::Text(text.into())).await.map_err(|_| ClientError::Closed)
    }

    /// The next JSON frame (server pings are answered by the library).
    pub async fn recv(&mut self) -> Result<Value, ClientError> {
        loop {
            let next = tokio::time::timeout(self.timeout, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout(self.timeout))?;
            match next {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str()).map_err(|e| ClientError::Unexpected(e.to_string()))
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(ClientError::Closed),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next WebSocket message of any kind (pings included), without answering it.
    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        match tokio::time::timeout(self.timeout, self.ws.next()).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(Some(Ok(m))) => Ok(m),
            Ok(_) => Err(ClientError::Closed),
        }
    }

    /// The next frame, which must have type `kind`; an `error` frame becomes an Err.
    pub async fn expect(&mut self, kind: &str) -> Result<Value, ClientError> {
        let frame = self.recv().await?;
        match frame["type"].as_str() {
            Some(t) if t == kind => Ok(frame),
            Some("error") => Err(ClientError::Server {
                code: frame["code"].as_str().unwrap_or_default().to_owned(),
                message: frame["message"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => Err(ClientError::Unexpected(frame.to_string())),
        }
    }

    /// Sends `request` and returns the `challenge`.
    pub async fn request(&mut self, request: Value) -> Result<Value, ClientError> {
        self.send(&request).await?;
        self.expect("challenge").await
    }

    /// Signs a challenge the way a browser does: `JSON.stringify(payload)`, which for
    /// a payload parsed from the server's frame is its compact serialization with
    /// keys in the order received.
    pub fn webcrypto_auth(challenge: &Value, key: &P256Key) -> Result<Value, ClientError> {
        let payload = &challenge["payload"];
        let signed = payload.to_string();
        Ok(json!({
            "type": "auth",
            "method": "webcrypto",
            "payload": payload,
            "signature": key.sign_b64(signed.as_bytes())?,
            "publicKey": key.public_jwk(),
        }))
    }

    /// request → challenge → auth → welcome with a P-256 key.
    pub async fn join_webcrypto(&mut self, request: Value, key: &P256Key) -> Result<Value, ClientError> {
        let challenge = self.request(request).await?;
        self.send(&Self::webcrypto_auth(&challenge, key)?).await?;
        self.expect("welcome").await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
