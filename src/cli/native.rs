//! The native signer: `keygate join` and `keygate sign` with a key a browser cannot
//! reach (ssh-agent, an OpenSSH or PKCS#8 key file, a YubiKey's PIV slot), and
//! `keygate identity --ssh|--piv`.
//!
//! ```text
//! keygate join URL --piv                   keygate server              browser
//!   ── request {roomId, ticket: true} ───▶ |
//!   ◀── challenge {payload} ────────────── |
//!   card signs SHA-256(payload) (PIN)      |
//!   ── auth {method: "piv", …} ──────────▶ |  whitelist, signature
//!   ◀── ticket {ticket, expiresIn: 60} ─── |
//!   open URL#ticket=T ───────────────────────────────────────────────▶ joins with it
//! ```

use super::CliResult;
use crate::client::piv_signer::SlotId;
use crate::client::piv_signer::{self, PivSource};
use crate::client::ssh_signer::{self, SshKeySource};
use crate::identity::Identity;
use crate::ids::RoomId;
use clap::Args;
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

pub use piv_signer::parse_slot;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("signer").required(true).args(["ssh", "key_file", "piv"])))]
pub struct JoinArgs {
    /// The room's link, e.g. https://meet.example.com/r/ROOM
    url: String,
    #[command(flatten)]
    signer: SignerArgs,
    /// Print the link instead of opening the browser.
    #[arg(long)]
    no_open: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("signer").required(true).args(["ssh", "key_file", "piv"])))]
pub struct SignArgs {
    #[command(flatten)]
    signer: SignerArgs,
    /// The challenge: its payload text, the base64 from its ssh command, or the whole
    /// challenge frame. Read from stdin when omitted.
    challenge: Option<String>,
}

/// Which key signs: one in ssh-agent, a private key file, or a YubiKey PIV slot.
#[derive(Args)]
struct SignerArgs {
    /// Sign with a key held in ssh-agent ($SSH_AUTH_SOCK).
    #[arg(long)]
    ssh: bool,
    /// Which agent key: its SHA256 fingerprint, its comment, or its public key line.
    #[arg(long, requires = "ssh")]
    key: Option<String>,
    /// Sign with an OpenSSH or PKCS#8 PEM private key file instead (passphrase asked
    /// when encrypted, or taken from KEYGATE_KEY_PASSPHRASE).
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Sign with a YubiKey's PIV slot (PIN asked without echo, or KEYGATE_PIV_PIN).
    #[arg(long)]
    piv: bool,
    /// With --piv: the slot, 9a (authentication) or 9c (signature).
    #[arg(long, requires = "piv", default_value = "9a", value_parser = parse_slot)]
    slot: SlotId,
    /// With --piv: send the YubiKey's attestation that the key was made on the card.
    #[arg(long, requires = "piv")]
    attest: bool,
}

/// A signer chosen on the command line.
enum Signer {
    Ssh(SshKeySource),
    Piv(PivSource),
}

impl SignerArgs {
    fn signer(self) -> Signer {
        if self.piv {
            return Signer::Piv(PivSource { slot: self.slot, attest: self.attest });
        }
        Signer::Ssh(match self.key_file {
            Some(path) => SshKeySource::File(path),
            None => SshKeySource::Agent { select: self.key },
        })
    }
}

impl Signer {
    /// The `auth` frame's proof fields (`method` included) for the exact `text`.
    fn proof(&self, text: &[u8]) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Ok(match self {
            Signer::Ssh(source) => json!({"method": "ssh", "signature": ssh_signer::sign(source, text)?}),
            Signer::Piv(source) => piv_signer::proof(*source, text)?,
        })
    }

    /// The identity this signer proves, for "send it to the host" messages.
    fn identity(&self) -> Option<Identity> {
        match self {
            Signer::Ssh(source) => ssh_signer::public_key(source)
                .ok()
                .and_then(|k| k.to_openssh().ok())
                .and_then(|l| Identity::parse(&l).ok()),
            Signer::Piv(source) => piv_signer::identity(source.slot).ok().map(|(id, _)| id),
        }
    }
}

/// Signs a challenge and prints what the join page's paste box takes: an armored
/// SSH signature, or for PIV the proof as one line of JSON.
pub fn sign(args: SignArgs) -> CliResult {
    let input = match args.challenge {
        Some(text) => text,
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
    };
    let text = crate::client::challenge_text(&input)?;
    match args.signer.signer() {
        Signer::Ssh(source) => print!("{}", ssh_signer::sign(&source, text.as_bytes())?),
        signer => say!("{}", signer.proof(text.as_bytes()).map_err(|e| e.to_string())?),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn agent_identity(select: Option<String>) -> CliResult {
    let key = ssh_signer::public_key(&SshKeySource::Agent { select })?;
    let line = key.to_openssh()?;
    let id = Identity::parse(&line)?;
    say!("{}\n{} ({})  {}", id, id.fingerprint(), id.kind(), key.comment());
    Ok(ExitCode::SUCCESS)
}

pub fn piv_identity(slot: SlotId) -> CliResult {
    let (id, about) = piv_signer::identity(slot)?;
    say!("{}\n{} ({})  {}", id, id.fingerprint(), id.kind(), about);
    Ok(ExitCode::SUCCESS)
}

/// The WebSocket URL and room of a room link (`http(s)://host/r/ROOM`).
fn room_link(url: &str) -> Result<(String, RoomId), Box<dyn std::error::Error>> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a room link ({e}); expected https://HOST/r/ROOM"))?;
    let room = parsed
        .path()
        .strip_prefix("/r/")
        .map(|r| r.trim_end_matches('/'))
        .ok_or("not a room link; expected https://HOST/r/ROOM")?;
    let room = RoomId::parse(room)?;
    let scheme = match parsed.scheme() {
        "https" => "wss",
        "http" => "ws",
        other => return Err(format!("unsupported link scheme {other}").into()),
    };
    let host = parsed.host_str().ok_or("the link has no host")?;
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok((format!("{scheme}://{host}{port}/ws"), room))
}

pub async fn join(args: JoinArgs) -> CliResult {
    use crate::client::ws::{Client, ClientError};
    let (ws, room) = room_link(&args.url)?;
    let signer = std::sync::Arc::new(args.signer.signer());
    let mut client = Client::connect(&ws).await?;
    let challenge = match client.request(json!({"type": "request", "roomId": room.as_str(), "ticket": true})).await {
        Ok(c) => c,
        Err(ClientError::Server { code, message }) if code == "room-full" => {
            return Err(format!("{message}: try again when someone leaves").into());
        }
        Err(ClientError::Server { code, message }) if code == "room-not-found" => {
            return Err(format!("{message} (the room may have been deleted)").into());
        }
        Err(e) => return Err(e.into()),
    };
    let text = challenge["payload"].to_string();
    // Card and agent calls block (and may wait for a PIN or a touch).
    let proof = tokio::task::spawn_blocking({
        let signer = signer.clone();
        move || signer.proof(text.as_bytes())
    })
    .await?
    .map_err(|e| e.to_string())?;
    let mut auth = json!({"type": "auth", "payload": challenge["payload"]});
    if let (Some(auth), Value::Object(fields)) = (auth.as_object_mut(), proof) {
        auth.extend(fields);
    }
    client.send(&auth).await?;
    let ticket = match client.expect("ticket").await {
        Ok(t) => t,
        Err(ClientError::Server { code, .. }) if code == "not-admitted" => {
            let who = tokio::task::spawn_blocking(move || signer.identity()).await?;
            let who = who.map(|i| i.to_string()).unwrap_or_default();
            return Err(format!("this key is not on the room's list — send your identity to the host: {who}").into());
        }
        // The key is listed and proved, but a rule refuses it: the server says which.
        Err(ClientError::Server { code, message }) if code == "restricted" => {
            return Err(format!("refused: {message}").into());
        }
        Err(e) => return Err(e.into()),
    };
    client.close().await;
    let origin = challenge["payload"]["origin"].as_str().unwrap_or_default();
    // The ticket travels in the fragment, which browsers never send to a server.
    let link = format!("{origin}/r/{room}#ticket={}", ticket["ticket"].as_str().unwrap_or_default());
    if args.no_open || !open_browser(&link) {
        say!("{link}");
    } else {
        eprintln!("opened the room in your browser (the link is valid for {} s)", ticket["expiresIn"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens `link` in the default browser; false if no opener could be run.
fn open_browser(link: &str) -> bool {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    std::process::Command::new(opener)
        .arg(link)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
