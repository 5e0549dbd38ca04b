//! Clients of protocol v1: what the load tool, the CLI and the tests use to talk to
//! a keygate server, and the signers they prove keys with.

pub mod http;
pub mod p256_key;
pub mod piv_signer;
pub mod signer;
pub mod soft_webauthn;
pub mod ssh_signer;
pub mod ws;

use base64::Engine;

/// Finds the exact text to sign in what a person pasted: the challenge payload
/// itself, the base64 from the challenge's `ssh.command`, or the whole `challenge`
/// frame. One trailing newline (from `echo` or a terminal) is not part of it.
pub fn challenge_text(input: &str) -> Result<String, String> {
    let text = input.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(input);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("no challenge given (pass it as an argument or on stdin)".into());
    }
    if trimmed.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| format!("the challenge is not valid JSON: {e}"))?;
        if value.get("type").and_then(|t| t.as_str()) == Some("challenge") {
            // A payload re-serialized compactly in received key order is the exact
            // text the server issued.
            return Ok(value["payload"].to_string());
        }
        return Ok(text.to_owned());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|t| t.starts_with('{'));
    decoded.ok_or_else(|| "expected the challenge payload (JSON), its base64, or the challenge frame".into())
}
