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
    let hostport = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("ws://"))
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| HttpError::Url(base.to_owned()))?;
    let mut stream = tokio::net::TcpStream::connect(hostport).await?;
    stream.write_all(request(hostport).as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let status = raw.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
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
