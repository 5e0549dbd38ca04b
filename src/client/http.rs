//! A minimal HTTP/1.1 client for the few JSON calls the load tool makes, so it needs
//! no HTTP client library.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad base URL {0}")]
    Url(String),
    #[error("HTTP: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP {0}: {1}")]
    Status(u16, String),
}

async fn exchange(base: &str, request: impl FnOnce(&str) -> String) -> Result<(u16, String), HttpError> {
    let (status, _, body) = exchange_with_head(base, request).await?;
    Ok((status, body))
}

/// One request on a fresh connection: (status, header block, body).
async fn exchange_with_head(
    base: &str,
    request: impl FnOnce(&str) -> String,
) -> Result<(u16, String, String), HttpError> {
    let hostport = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("ws://"))
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| HttpError::Url(base.to_owned()))?;
    let mut stream = tokio::net::TcpStream::connect(hostport).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request(hostport).as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let status = raw.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Ok((status, head.to_owned(), body.to_owned()))
}

/// Signs in to the host pages with a browser-style P-256 key; returns the session
/// cookie (`name=value`) to send with later requests.
pub async fn sign_in(base: &str, key: &crate::client::p256_key::P256Key) -> Result<String, HttpError> {
    let challenge = post_json(base, "/signin/challenge", &serde_json::json!({})).await?;
    let signed = challenge["payload"].to_string();
    let signature = key.sign_b64(signed.as_bytes()).map_err(|e| HttpError::Status(0, e.to_string()))?;
    let answer = serde_json::json!({
        "challengeId": challenge["challengeId"], "method": "webcrypto", "payload": challenge["payload"],
        "signature": signature, "publicKey": key.public_jwk(),
    })
    .to_string();
    let (status, head, body) = exchange_with_head(base, |host| {
        format!(
            "POST /signin/verify HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        )
    })
    .await?;
    if status != 200 {
        return Err(HttpError::Status(status, body));
    }
    head.lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| HttpError::Status(status, "no session cookie".into()))
}

/// GETs `path` with a session cookie; returns the body text.
pub async fn get_signed_in(base: &str, path: &str, cookie: &str) -> Result<String, HttpError> {
    let (status, text) = exchange(base, |host| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n")
    })
    .await?;
    if !(200..300).contains(&status) {
        return Err(HttpError::Status(status, text));
    }
    Ok(text)
}

/// The JSON object in a (possibly chunked) body.
fn json_in(body: &str) -> Value {
    match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if a < b => serde_json::from_str(&body[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// POSTs `body` as JSON; a non-2xx answer is an error carrying the server's message.
pub async fn post_json(base: &str, path: &str, body: &Value) -> Result<Value, HttpError> {
    let body = body.to_string();
    let (status, text) = exchange(base, |host| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    })
    .await?;
    let json = json_in(&text);
    if !(200..300).contains(&status) {
        return Err(HttpError::Status(status, json["error"].as_str().unwrap_or(&text).to_owned()));
    }
    Ok(json)
}

/// GETs `path` and returns the body text.
pub async fn get_text(base: &str, path: &str) -> Result<String, HttpError> {
    let (status, text) =
        exchange(base, |host| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await?;
    if !(200..300).contains(&status) {
        return Err(HttpError::Status(status, text));
    }
    Ok(text)
}
