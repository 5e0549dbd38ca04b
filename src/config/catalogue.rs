//! Every setting under one name: the TOML key `max_peers_per_room` is also the flag
//! `--max-peers-per-room` and the variable `KEYGATE_MAX_PEERS_PER_ROOM`. Values
//! given as flags or variables are written into the TOML table over the file's, so
//! one deserializer (with its checks) reads all three, and `keygate config
//! example` prints a sample file from the same list and the real defaults.

use super::Settings;

/// How a setting's value is written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Seconds, fractions allowed.
    Secs,
    /// A whole number.
    Int,
    /// Text: an address, a path, a URL.
    Text,
    /// Several texts: the flag repeated, or comma-separated.
    List,
}

/// One setting.
#[derive(Debug)]
pub struct Setting {
    /// The TOML key; the flag and the variable follow from it.
    pub name: &'static str,
    pub kind: Kind,
    /// One line for `--help` and the sample file.
    pub help: &'static str,
    /// A value to show in the sample file when the default is "none".
    pub example: Option<&'static str>,
    /// The setting's value is a secret: never shown in `--help` from the environment.
    pub secret: bool,
    /// Earlier flag names, still accepted.
    pub aliases: &'static [&'static str],
}

const fn s(name: &'static str, kind: Kind, help: &'static str) -> Setting {
    Setting { name, kind, help, example: None, secret: false, aliases: &[] }
}

impl Setting {
    const fn example(mut self, example: &'static str) -> Self {
        self.example = Some(example);
        self
    }

    const fn alias(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// `--max-peers-per-room`, without the dashes.
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    /// `KEYGATE_MAX_PEERS_PER_ROOM`.
    pub fn variable(&self) -> String {
        format!("KEYGATE_{}", self.name.to_ascii_uppercase())
    }
}

use Kind::*;

/// Every setting, in the order the sample file lists them.
pub const SETTINGS: &[Setting] = &[
    s("listen", Text, "Address and port to listen on (127.0.0.1:PORT: this machine; 0.0.0.0:PORT: every interface)."),
    s("db", Text, "The SQLite database file, created and migrated on start; or a PostgreSQL URL (postgres://USER@HOST/DB), migrated on start, which many servers can share.")
        .secret(),
    s("origin", Text, "The public origin put into every challenge, e.g. https://meet.example.com (default: http://localhost:PORT on loopback).")
        .example("https://meet.example.com"),
    s("tls_cert", Text, "Serve HTTPS/WSS with this PEM certificate chain (with tls_key); reloaded on SIGHUP or when it changes.")
        .example("/etc/keygate/fullchain.pem"),
    s("tls_key", Text, "The certificate's PEM private key.").example("/etc/keygate/privkey.pem"),
    s("trusted_proxies", List, "Reverse proxies (ADDRESS or ADDRESS/PREFIX) whose X-Forwarded-For names the client.")
        .example("[\"127.0.0.1\"]")
        .alias(&["trusted-proxy"]),
    s("metrics_listen", Text, "Serve /metrics on this address only (e.g. 127.0.0.1:9100), not on listen.")
        .example("127.0.0.1:9100"),
    s("bus", Text, "A NATS server (nats://HOST:PORT; several, comma-separated, for a NATS cluster) the servers of one service share: the peers of a call may then be on different servers, and changes to who may enter reach every server at once.")
        .example("nats://127.0.0.1:4222"),
    s("janus", Text, "Janus's WebSocket API (ws://127.0.0.1:8188), kept on loopback or a private network: the media engine of rooms that go through an SFU.")
        .example("ws://127.0.0.1:8188"),
    s("sfu_from", Int, "In rooms whose media mode is auto, a call moves from the mesh to the SFU when it reaches this many peers."),
    s("change_poll_ms", Int, "How often, in milliseconds, the server reads the database's change log (changes made elsewhere, e.g. by the CLI)."),
    s("freshness_past", Secs, "How old a challenge may be when its answer arrives.").alias(&["freshness"]),
    s("manual_freshness", Secs, "How old a challenge may be for proofs made by hand (pasting an ssh-keygen signature)."),
    s("freshness_future", Secs, "Tolerated clock skew for a challenge's time in the future."),
    s("ticket_ttl", Secs, "How long a ticket from `keygate join` stays valid."),
    s("auth_timeout", Secs, "A socket not admitted by then is closed."),
    s("ping_interval", Secs, "Seconds between pings on every socket (0: none); a socket silent for two is closed."),
    s("resume_window", Secs, "How long after its socket drops a peer comes back without a new proof (0: never)."),
    s("max_peers_per_room", Int, "Most peers in one room (a mesh call degrades past a handful).").alias(&["max-peers"]),
    s("max_connections", Int, "Most open WebSocket connections, admitted or not."),
    s("max_unadmitted", Int, "Most sockets not yet admitted."),
    s("max_unadmitted_per_address", Int, "Most sockets not yet admitted from one address (an IPv6 /64)."),
    s("max_unadmitted_frame_bytes", Int, "Largest frame before admission."),
    s("max_frame_bytes", Int, "Largest frame after admission."),
    s("messages_per_second", Int, "Sustained frames per second per socket (bursts of twice this)."),
    s("max_http_connections", Int, "Most HTTP connections at once."),
    s("http_header_timeout", Secs, "How long a client may take to send a request's headers (and a TLS handshake)."),
    s("http_requests_per_minute", Int, "Unauthenticated HTTP requests per minute from one address."),
    s("max_rooms_per_identity_per_hour", Int, "Rooms one key may create in an hour (the CLI is not limited)."),
    s("refusal_rows_per_minute", Int, "Refusal rows one address may write to one room's audit log per minute."),
    s("audit_retention_days", Int, "Days audit rows are kept (0: forever)."),
    s("room_creators", List, "Keys allowed to create rooms, in any format (empty: anyone who proves a key).")
        .example("[\"did:key:z6Mk…\"]"),
    s("webauthn_rp_id", Text, "The WebAuthn relying party id (default: the origin's host).").example("meet.example.com"),
    s("webauthn_origins", List, "Page origins whose passkey assertions are accepted (default: the origin).")
        .example("[\"https://meet.example.com\"]"),
    s("piv_attestation_roots", List, "PEM files of the certificates YubiKey PIV attestations must chain to.")
        .example("[\"/etc/keygate/yubico-piv-ca.pem\"]")
        .alias(&["piv-roots"]),
    s("eth_chain_id", Int, "The EIP-155 chain id written into Sign-In with Ethereum messages."),
    s("stun_urls", List, "STUN servers given to admitted peers (stun:host:port).")
        .example("[\"stun:stun.example.com:3478\"]")
        .alias(&["stun-url"]),
    s("turn_urls", List, "TURN servers given to admitted peers with short-lived credentials (needs turn_secret).")
        .example("[\"turn:turn.example.com:3478?transport=udp\"]")
        .alias(&["turn-url"]),
    s("turn_secret", Text, "coturn's static-auth-secret (prefer the variable or the file to the flag).")
        .example("\"change-me\"")
        .secret(),
    s("turn_ttl", Secs, "How long issued TURN credentials stay valid."),
];

/// Old variable names still read, with the setting they now are.
pub const OLD_VARIABLES: &[(&str, &str)] = &[
    ("KEYGATE_MAX_PEERS", "max_peers_per_room"),
    ("KEYGATE_FRESHNESS", "freshness_past"),
    ("KEYGATE_PIV_ROOTS", "piv_attestation_roots"),
];

/// The setting named `name`.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// A value given as a flag or variable, as it goes into the TOML table; `from` names
/// where it came from for an error.
pub fn value(setting: &Setting, given: &[String], from: &str) -> Result<toml::Value, String> {
    let one = || given.last().map(|v| v.trim().to_owned()).unwrap_or_default();
    match setting.kind {
        Secs => one()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(toml::Value::Float)
            .ok_or_else(|| format!("{from}: expected seconds (e.g. 30 or 0.5), got '{}'", one())),
        Int => one()
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(toml::Value::Integer)
            .ok_or_else(|| format!("{from}: expected a whole number, got '{}'", one())),
        Text if setting.name == "listen" => listen(&one()).map_err(|e| format!("{from} {e}")),
        Text => Ok(toml::Value::String(one())),
        List => Ok(toml::Value::Array(
            given
                .iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| toml::Value::String(v.to_owned()))
                .collect(),
        )),
    }
}

/// A listen address, or what to write instead.
pub fn listen(text: &str) -> Result<toml::Value, String> {
    if text.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(toml::Value::String(text.to_owned()));
    }
    if let Ok(port) = text.parse::<u16>() {
        return Err(format!(
            "'{text}': give an address with the port, e.g. 127.0.0.1:{port} (this machine) or 0.0.0.0:{port} (every interface)"
        ));
    }
    Err(format!("'{text}': expected ADDRESS:PORT, e.g. 127.0.0.1:8080 or [::]:8080"))
}

impl Settings {
    /// The settings of `file` (if any) with `given` (setting name → values from flags
    /// and variables, and where each came from) written over them.
    pub fn layered(file: Option<&std::path::Path>, given: &[(&Setting, Vec<String>, String)]) -> Result<Self, String> {
        let text = match file {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?
            }
            None => String::new(),
        };
        let shown = file.map(|p| p.display().to_string()).unwrap_or_default();
        let mut table = text.parse::<toml::Table>().map_err(|e| format!("config file {shown}: {e}"))?;
        for (setting, values, from) in given {
            table.insert(setting.name.to_owned(), value(setting, values, from)?);
        }
        let e = match Settings::from_table(table) {
            Ok(settings) => return Ok(settings),
            Err(e) => e,
        };
        // Name the flag or variable whose value did not do, if one did not.
        for (setting, values, from) in given {
            let mut alone = toml::Table::new();
            alone.insert(setting.name.to_owned(), value(setting, values, from)?);
            if let Err(e) = Settings::from_table(alone) {
                return Err(format!("{from}: {e}"));
            }
        }
        // The file's own error says where in it (line, key).
        Err(match toml::from_str::<Settings>(&text) {
            Err(in_file) if file.is_some() => format!("config file {shown}: {in_file}"),
            _ => e,
        })
    }

    fn from_table(table: toml::Table) -> Result<Self, String> {
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().to_owned())
    }

    /// A commented sample settings file with every setting and its default.
    pub fn example() -> String {
        let defaults = toml::Table::try_from(Settings::default()).unwrap_or_default();
        let mut out = String::from(
            "# keygate settings (keygate serve --config FILE). Every setting is also a flag,\n\
             # --name-with-dashes, and an environment variable, KEYGATE_NAME; flags and\n\
             # variables override this file. Durations are in seconds. Each line below is\n\
             # commented out and shows the default (or, for settings that are off by\n\
             # default, an example).\n",
        );
        for s in SETTINGS {
            let value = match (defaults.get(s.name), s.example) {
                (Some(toml::Value::Array(a)), Some(example)) if a.is_empty() => example.to_owned(),
                (Some(v), _) => v.to_string(),
                (None, Some(example)) if s.kind == Text && !example.starts_with('"') => format!("\"{example}\""),
                (None, Some(example)) => example.to_owned(),
                (None, None) => "\"\"".to_owned(),
            };
            out.push_str(&format!("\n# {}\n# {} = {value}\n", s.help, s.name));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names serde expects, from its own error message.
    fn field_names() -> Vec<String> {
        let e = toml::from_str::<Settings>("no_such_setting = 1").err().map(|e| e.to_string()).unwrap_or_default();
        let list = e.split("expected one of").nth(1).unwrap_or_default();
        list.split(',').map(|n| n.trim().trim_matches('`').trim().to_owned()).filter(|n| !n.is_empty()).collect()
    }

    #[test]
    fn every_setting_has_one_name_and_only_settings_have_names() {
        let mut fields = field_names();
        let mut names: Vec<String> = SETTINGS.iter().map(|s| s.name.to_owned()).collect();
        fields.sort();
        names.sort();
        assert!(!fields.is_empty());
        assert_eq!(fields, names);
    }

    #[test]
    fn the_example_file_reads_back_as_the_defaults_and_every_line_parses() {
        let example = Settings::example();
        // As printed (all commented): the defaults.
        let read = Settings::from_toml(&example).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(format!("{read:?}"), format!("{:?}", Settings::default()));
        // Every line uncommented parses too.
        let uncommented: String = example
            .lines()
            .filter_map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(uncommented.lines().count(), SETTINGS.len());
        uncommented.parse::<toml::Table>().unwrap_or_else(|e| unreachable!("{e}\n{uncommented}"));
    }

    #[test]
    fn flag_values_are_checked_and_named() {
        let given = |name: &str, v: &str| {
            let s = setting(name).unwrap_or_else(|| unreachable!());
            Settings::layered(None, &[(s, vec![v.to_owned()], format!("--{}", s.flag()))])
        };
        assert_eq!(given("max_peers_per_room", "4").map(|s| s.max_peers_per_room), Ok(4));
        assert!(given("max_peers_per_room", "four").is_err_and(|e| e.contains("--max-peers-per-room")));
        assert!(given("ping_interval", "-1").is_err_and(|e| e.contains("--ping-interval")), "out of range");
        assert!(given("listen", "8080").is_err_and(|e| e.contains("127.0.0.1:8080")));
        let l = setting("turn_urls").unwrap_or_else(|| unreachable!());
        let both =
            Settings::layered(None, &[(l, vec!["turn:a:1,turn:b:2".into(), "turn:c:3".into()], "--turn-urls".into())]);
        assert_eq!(both.map(|s| s.turn_urls.len()), Ok(3));
    }
}
