//! Settings: defaults, then an optional TOML file, then `KEYGATE_*` environment
//! variables and flags (clap merges those two). Owns no behaviour.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything a running server needs to know. Every field has a sane default, so
/// `keygate serve` works with no configuration at all.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where to listen for HTTP and WebSocket connections.
    pub listen: SocketAddr,
    /// The SQLite file; created and migrated on start.
    pub db: PathBuf,
    /// The public origin put into every challenge, so a signature made for one
    /// deployment cannot be replayed against another. Defaults to `http://<listen>`.
    pub origin: Option<String>,
    /// How old a challenge may be when its answer arrives. People who sign by hand
    /// (e.g. pasting an `ssh-keygen -Y sign` result) need minutes, not seconds.
    #[serde(with = "secs")]
    pub freshness_past: Duration,
    /// How old a challenge may be for proofs a person makes by hand (method `ssh`:
    /// copy a command, run it, paste the signature back).
    #[serde(with = "secs")]
    pub manual_freshness: Duration,
    /// How long a ticket obtained by the native client stays valid.
    #[serde(with = "secs")]
    pub ticket_ttl: Duration,
    /// Tolerated clock skew for `issuedAt` in the future.
    #[serde(with = "secs")]
    pub freshness_future: Duration,
    /// A socket that has not been admitted by then is closed.
    #[serde(with = "secs")]
    pub auth_timeout: Duration,
    /// Mesh calls degrade quickly past a handful of peers.
    pub max_peers_per_room: usize,
    /// Upper bound on open WebSocket connections, admitted or not. Lowered at start
    /// to what the process's open-file limit allows.
    pub max_connections: usize,
    /// Upper bound on sockets that have not been admitted yet: a cap of their own,
    /// so strangers cannot take the places of people already in calls.
    pub max_unadmitted: usize,
    /// Sockets not yet admitted from one client address (an IPv6 /64).
    pub max_unadmitted_per_address: usize,
    /// Largest text frame before admission: a proof with a certificate chain fits
    /// in a few kilobytes.
    pub max_unadmitted_frame_bytes: usize,
    /// Upper bound on HTTP connections (page loads, API calls, upgrades in
    /// progress); WebSockets count under `max_connections` once upgraded.
    pub max_http_connections: usize,
    /// How long a client may take to send a request's headers.
    #[serde(with = "secs")]
    pub http_header_timeout: Duration,
    /// Rooms one key may create in an hour (from a page or the socket; the CLI is
    /// not limited).
    pub max_rooms_per_identity_per_hour: usize,
    /// Refusal rows one client address may write to one room's audit log per
    /// minute; the rest are counted in one row.
    pub refusal_rows_per_minute: u32,
    /// How long audit rows are kept, in days (0: forever). Expired sign-in sessions
    /// and used-up or expired invites are deleted as they lapse.
    pub audit_retention_days: u32,
    /// Unauthenticated HTTP requests (challenges, proofs, registrations, key
    /// lookups) per minute from one address; bursts of half as many more pass.
    pub http_requests_per_minute: u32,
    /// Largest text frame a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Sustained messages per second per connection (a burst of twice this is allowed).
    pub messages_per_second: u32,
    /// The WebAuthn relying party id; defaults to the origin's host.
    pub webauthn_rp_id: Option<String>,
    /// Origins allowed to make WebAuthn assertions; defaults to the public origin.
    pub webauthn_origins: Vec<String>,
    /// PEM files of the certificates PIV attestations must chain to (Yubico's roots
    /// and, for firmware 5.7.4+, their intermediates).
    pub piv_attestation_roots: Vec<PathBuf>,
    /// The EIP-155 chain ID written into Sign-In with Ethereum messages.
    pub eth_chain_id: u64,
    /// Who may create rooms: empty means anyone who proves a key.
    pub room_creators: Vec<String>,
    /// STUN servers given to admitted peers (`stun:host:port`). None by default, so
    /// a call on one network never contacts a third party.
    pub stun_urls: Vec<String>,
    /// TURN servers (`turn:host:port?transport=udp`, `turns:…`) given to admitted
    /// peers with short-lived credentials; used only with `turn_secret`.
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret`, shared with the TURN server.
    pub turn_secret: Option<String>,
    /// How long issued TURN credentials stay valid. A reconnect gets fresh ones.
    #[serde(with = "secs")]
    pub turn_ttl: Duration,
    /// How often the server pings every socket (0: never). Keeps proxies from
    /// closing quiet calls (nginx's default idle timeout is 60 s); a socket that
    /// answers neither pings nor anything else for two intervals is closed.
    #[serde(with = "secs")]
    pub ping_interval: Duration,
    /// How long after its socket drops a peer may come back without proving its key
    /// again (method `resume`; 0: never).
    #[serde(with = "secs")]
    pub resume_window: Duration,
    /// Serve HTTPS and WSS with this PEM certificate chain (with `tls_key`);
    /// reloaded on SIGHUP and when the file changes.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies (addresses or ADDRESS/PREFIX) whose `X-Forwarded-For` names
    /// the client; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db: PathBuf::from("keygate.db"),
            origin: None,
            freshness_past: Duration::from_secs(120),
            manual_freshness: Duration::from_secs(600),
            ticket_ttl: Duration::from_secs(60),
            freshness_future: Duration::from_secs(5),
            auth_timeout: Duration::from_secs(30),
            max_peers_per_room: 8,
            max_connections: 16_384,
            max_unadmitted: 1024,
            max_unadmitted_per_address: 64,
            max_unadmitted_frame_bytes: 32 * 1024,
            max_http_connections: 4096,
            http_header_timeout: Duration::from_secs(10),
            http_requests_per_minute: 120,
            max_rooms_per_identity_per_hour: 20,
            refusal_rows_per_minute: 10,
            audit_retention_days: 90,
            max_frame_bytes: 64 * 1024,
            messages_per_second: 50,
            webauthn_rp_id: None,
            webauthn_origins: Vec::new(),
            piv_attestation_roots: Vec::new(),
            eth_chain_id: 1,
            room_creators: Vec::new(),
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: Duration::from_secs(3600),
            ping_interval: Duration::from_secs(25),
            resume_window: Duration::from_secs(120),
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Settings {
    /// Reads a TOML file over the defaults. Unknown keys are an error, so a typo in a
    /// setting's name is not silently ignored.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
        Self::from_toml(&text).map_err(|e| ConfigError::Parse(path.to_owned(), e))
    }

    /// Reads TOML text over the defaults (what [`Settings::from_file`] reads).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The origin that goes into challenges. On a loopback address it is
    /// `http://localhost:PORT`, which browsers treat as a secure context (WebAuthn
    /// and WebCrypto work there without TLS).
    pub fn public_origin(&self) -> String {
        let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
        match &self.origin {
            Some(o) => o.trim_end_matches('/').to_owned(),
            None if self.listen.ip().is_loopback() => format!("{scheme}://localhost:{}", self.listen.port()),
            None => format!("{scheme}://{}", self.listen),
        }
    }

    /// The WebAuthn relying party id: configured, or the origin's host.
    pub fn webauthn_rp_id(&self) -> String {
        self.webauthn_rp_id.clone().unwrap_or_else(|| {
            let origin = self.public_origin();
            url::Url::parse(&origin).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or(origin)
        })
    }

    /// Origins allowed to make WebAuthn assertions.
    pub fn webauthn_origins(&self) -> Vec<String> {
        if self.webauthn_origins.is_empty() {
            vec![self.public_origin()]
        } else {
            self.webauthn_origins.clone()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(PathBuf, String),
}

/// Durations are written in seconds in the config file.
mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        if !(0.0..=86_400.0).contains(&secs) {
            return Err(serde::de::Error::custom("expected seconds between 0 and 86400"));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}
