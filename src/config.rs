//! Settings: defaults, then an optional TOML file, then `KEYGATE_*` environment
//! variables and flags, every setting under one name in all three
//! ([`catalogue`]). Checked and normalized once at start ([`Settings::check`]).
//! Owns no behaviour.

pub mod catalogue;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything a running server needs to know. Every field has a sane default, so
/// `keygate serve` works with no configuration at all.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where to listen for HTTP and WebSocket connections.
    #[serde(deserialize_with = "listen_address")]
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
    /// Serve `/metrics` on this address only (e.g. a private interface), instead
    /// of on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// A NATS server (`nats://HOST:PORT`; several, comma-separated, for a cluster)
    /// shared by the servers of one service: a call's peers may be on different
    /// servers, and changes to who may enter reach every server at once, not at its
    /// next read of the change log.
    pub bus: Option<String>,
    /// How often the server reads the database's change log (milliseconds).
    pub change_poll_ms: u64,
    /// Janus's WebSocket API (`ws://127.0.0.1:8188`), for rooms whose media go
    /// through an SFU.
    pub janus: Option<String>,
    /// In rooms whose media mode is `auto`, a call moves from the mesh to the SFU
    /// when it reaches this many peers.
    pub sfu_from: usize,
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
            metrics_listen: None,
            bus: None,
            change_poll_ms: 200,
            janus: None,
            sfu_from: 5,
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

    /// Checks what can be checked before anything starts, and normalizes the
    /// origins (lower case, no default port, no trailing slash). Returns warnings
    /// for settings that work but probably not as meant; an error names the setting.
    pub fn check(&mut self) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        if let Some(origin) = &self.origin {
            self.origin = Some(normalized_origin(origin).map_err(|e| format!("origin: {e}"))?);
        }
        self.webauthn_origins = self
            .webauthn_origins
            .iter()
            .map(|o| normalized_origin(o).map_err(|e| format!("webauthn_origins: {e}")))
            .collect::<Result<_, _>>()?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err("tls_cert and tls_key go together: give both or neither".into());
            }
            _ => {}
        }
        if !self.turn_urls.is_empty() && self.turn_secret.is_none() {
            return Err("turn_urls need turn_secret (coturn's static-auth-secret)".into());
        }
        if let Some(bus) = &self.bus {
            for (n, one) in bus.split(',').enumerate() {
                let ok = url::Url::parse(one.trim())
                    .is_ok_and(|u| matches!(u.scheme(), "nats" | "tls") && u.host_str().is_some());
                if !ok {
                    // Not echoed: a URL may carry the bus's password.
                    return Err(format!(
                        "bus: URL {} is not a NATS server URL; expected nats://HOST:PORT (several, comma-separated, for a NATS cluster)",
                        n + 1
                    ));
                }
            }
        }
        if let Some(janus) = &self.janus {
            let ok = url::Url::parse(janus).is_ok_and(|u| matches!(u.scheme(), "ws" | "wss") && u.host_str().is_some());
            if !ok {
                return Err("janus: not a WebSocket URL; expected ws://HOST:PORT (Janus's WebSocket transport)".into());
            }
        }
        if !(2..=1000).contains(&self.sfu_from) {
            return Err(format!("sfu_from: {} is outside 2 to 1000 peers", self.sfu_from));
        }
        if !(10..=60_000).contains(&self.change_poll_ms) {
            return Err(format!("change_poll_ms: {} is outside 10 to 60000", self.change_poll_ms));
        }
        if self.origin.is_none() && self.listen.ip().is_unspecified() {
            warnings.push(format!(
                "listening on {} without an origin: challenges will name {}, which no browser opens;                  set origin (--origin https://your.host)",
                self.listen,
                self.public_origin()
            ));
        }
        let origin = self.public_origin();
        if let Ok(url) = url::Url::parse(&origin) {
            let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
                || url.host_str().is_some_and(|h| h.ends_with(".localhost"));
            if url.scheme() == "http" && !local {
                warnings.push(format!(
                    "the origin {origin} is not a secure context: browsers offer neither WebCrypto keys nor passkeys                      there; serve https (--tls-cert/--tls-key) or put keygate behind an https proxy"
                ));
            }
        }
        Ok(warnings)
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

/// `scheme://host[:port]`, as browsers write origins: lower case, without the
/// scheme's default port, with nothing after the authority.
pub fn normalized_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if !text.contains("://") {
        return Err(format!("'{text}' needs a scheme: https://{text}"));
    }
    let url = url::Url::parse(text).map_err(|e| format!("'{text}' is not an origin: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("'{text}' must start with https:// (or http:// on this machine)"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("'{text}' is an origin only, scheme://host[:port], without a path"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("'{text}' must not carry a user name or password"));
    }
    Ok(url.origin().ascii_serialization())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(PathBuf, String),
}

/// A listen address; a bare port gets a hint instead of "invalid socket address".
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        let hint = catalogue::listen(&text).err().unwrap_or_default();
        serde::de::Error::custom(format!("listen {hint}"))
    })
}

/// Durations are written in seconds in the config file.
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        if !(0.0..=86_400.0).contains(&secs) {
            return Err(serde::de::Error::custom("expected seconds between 0 and 86400"));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_and_anything_else_is_refused_with_the_fix() {
        for (given, origin) in [
            ("HTTPS://Meet.Example.COM:443/", "https://meet.example.com"),
            ("https://meet.example.com:8443", "https://meet.example.com:8443"),
            ("http://localhost:80", "http://localhost"),
            (" https://xn--bcher-kva.example ", "https://xn--bcher-kva.example"),
        ] {
            assert_eq!(normalized_origin(given).as_deref(), Ok(origin), "{given}");
        }
        for (given, says) in [
            ("meet.example.com", "needs a scheme: https://meet.example.com"),
            ("https://h/path", "without a path"),
            ("https://h?x=1", "without a path"),
            ("ftp://h", "must start with https://"),
            ("https://user:pw@h", "user name or password"),
        ] {
            let e = normalized_origin(given).err().unwrap_or_default();
            assert!(e.contains(says), "{given}: {e}");
        }
    }

    #[test]
    fn the_bus_and_the_change_poll_are_checked_at_start() {
        for good in ["nats://127.0.0.1:4222", "nats://a:4222, nats://b:4222,tls://c:4222"] {
            let mut s = Settings { bus: Some(good.into()), ..Settings::default() };
            assert_eq!(s.check(), Ok(vec![]), "{good}");
        }
        for bad in ["127.0.0.1:4222", "http://h:4222", "nats://", "nats://a:4222,", "nats://u:hunter2@a:4222,b:1"] {
            let mut s = Settings { bus: Some(bad.into()), ..Settings::default() };
            assert!(s.check().is_err_and(|e| e.starts_with("bus: ") && !e.contains("hunter2")), "{bad}");
        }
        let mut s = Settings { change_poll_ms: 0, ..Settings::default() };
        assert!(s.check().is_err_and(|e| e.starts_with("change_poll_ms: ")));
    }

    #[test]
    fn start_up_checks_name_the_setting_and_warn_of_unusable_origins() {
        let mut s = Settings { origin: Some("HTTPS://Meet.Example.com:443".into()), ..Settings::default() };
        assert_eq!(s.check(), Ok(vec![]));
        assert_eq!(s.public_origin(), "https://meet.example.com");

        let mut s = Settings { listen: SocketAddr::from(([0, 0, 0, 0], 8080)), ..Settings::default() };
        let warnings = s.check().unwrap_or_default();
        assert!(warnings.iter().any(|w| w.contains("without an origin")), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("not a secure context")), "{warnings:?}");

        let mut s = Settings { origin: Some("http://meet.example.com".into()), ..Settings::default() };
        assert!(s.check().is_ok_and(|w| w.len() == 1 && w[0].contains("not a secure context")));
        let mut s = Settings { webauthn_origins: vec!["meet.example.com".into()], ..Settings::default() };
        assert!(s.check().is_err_and(|e| e.starts_with("webauthn_origins:")));
        let mut s = Settings { tls_cert: Some("c.pem".into()), ..Settings::default() };
        assert!(s.check().is_err_and(|e| e.contains("tls_key")));
        let mut s = Settings { turn_urls: vec!["turn:t:3478".into()], ..Settings::default() };
        assert!(s.check().is_err_and(|e| e.contains("turn_secret")));
    }
}
