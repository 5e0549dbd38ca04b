//! The command line: `serve`, `identity`, `room …`, `bench`, and the native
//! signer's `join` and `sign` (in `native`).
//!
//! Each subcommand parses its arguments here and calls into the library; the
//! output formats (what a script can rely on) are defined here too.

use crate::bench::{self, BenchOptions};
use crate::config::Settings;
use crate::identity::{parse_key_list, Identity, KeyLine};
use crate::ids::RoomId;
use crate::server::Server;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Prints a line to stdout; a closed pipe (`keygate room list | head`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod data;
mod native;
mod room;
mod settings_args;

#[derive(Parser)]
#[command(
    name = "keygate",
    version,
    about = "Video rooms that admit only the holders of whitelisted keys",
    after_help = "Logging: KEYGATE_LOG sets what is logged, as a filter: info (the default), debug, \
                  keygate=debug,warn, …; --log-format json writes one JSON object per line. Logs go to \
                  standard error, without colours unless it is a terminal."
)]
struct Cli {
    /// How log lines are written: text, or json (one object per line).
    #[arg(long, env = "KEYGATE_LOG_FORMAT", global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP pages and the /ws signaling endpoint).
    Serve(Box<ServeArgs>),
    /// Print the normalized identity (DID) and fingerprint of a public key.
    Identity {
        /// A key in any accepted format: the text itself, a file path, or - for stdin.
        #[arg(required_unless_present_any = ["ssh", "piv"])]
        key: Option<String>,
        /// Print the identity of a key held in ssh-agent instead.
        #[arg(long, conflicts_with_all = ["key", "piv"])]
        ssh: bool,
        /// With --ssh: which agent key (fingerprint, comment or public key line).
        #[arg(long = "key", requires = "ssh", value_name = "KEY")]
        select: Option<String>,
        /// Print the identity of the key in a YubiKey PIV slot instead (read from its certificate).
        #[arg(long, conflicts_with = "key")]
        piv: bool,
        /// With --piv: the slot.
        #[arg(long, requires = "piv", default_value = "9a", value_parser = native::parse_slot)]
        slot: crate::client::piv_signer::SlotId,
    },
    /// Prove a key for a room and open it in the browser with a one-time ticket.
    Join(native::JoinArgs),
    /// Manage rooms and whitelists directly in the database.
    Room {
        #[command(flatten)]
        db: DbArg,
        #[command(subcommand)]
        command: RoomCommand,
    },
    /// Sign a challenge for pasting into a join page (ssh-agent, a key file or a YubiKey).
    Sign(native::SignArgs),
    /// Write a consistent copy of the database to FILE, while the server runs.
    Backup {
        #[command(flatten)]
        db: DbArg,
        /// Where the copy goes; must not exist yet.
        file: PathBuf,
    },
    /// Replace the database with a backup (stop the server first).
    Restore {
        #[command(flatten)]
        db: DbArg,
        /// A file written by `keygate backup`.
        file: PathBuf,
        /// Replace an existing database (it is kept beside, as DB.before-restore).
        #[arg(long)]
        force: bool,
    },
    /// Measure admissions per second and memory per idle socket.
    Bench(BenchArgs),
    /// Settings: `keygate config example` prints a commented settings file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Args)]
struct DbArg {
    /// The SQLite database file, or a PostgreSQL URL (postgres://USER@HOST/DB).
    #[arg(long, env = "KEYGATE_DB", default_value = "keygate.db", global = true)]
    db: PathBuf,
    /// Create the database if it does not exist (otherwise a mistyped --db is an
    /// error, not a new empty database).
    #[arg(long, global = true)]
    create_db: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML settings file (`keygate config example` prints one); flags and
    /// environment variables override it.
    #[arg(long, env = "KEYGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: settings_args::SettingArgs,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a settings file with every setting, its meaning and its default.
    Example,
    /// Read the settings as `keygate serve` would (file, variables) and say what is wrong.
    Check {
        /// The TOML settings file.
        #[arg(long, env = "KEYGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RoomCommand {
    /// Create a room; prints its id.
    Create {
        /// The owner's key, in any accepted format (text, file, or -).
        #[arg(long)]
        owner: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Whitelist a key (or every key of an authorized_keys / allowed_signers file).
    Allow {
        room: String,
        key: String,
        #[arg(long, default_value = "")]
        label: String,
        /// What a PIV key must prove: "attested", "pin:once|always",
        /// "touch:cached|always", comma-separated (PIN and touch imply attested).
        #[arg(long, value_name = "REQUIREMENTS")]
        piv_require: Option<String>,
    },
    /// Remove a key from the whitelist; its live sessions are ejected.
    Deny { room: String, key: String },
    /// Delete a room with its whitelist, owners and invites; its live peers are
    /// ejected, its audit log is kept.
    Delete { room: String },
    /// Change a room's policy.
    Set {
        room: String,
        /// Refuse security-key proofs made without user verification (PIN or biometric).
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        require_user_verification: Option<bool>,
        /// Every peer must confirm its identity again this often during a call (seconds; 0: never).
        #[arg(long, value_name = "SECONDS")]
        reverify_every: Option<u32>,
        /// How calls carry media from the next call on: mesh (peer to peer), sfu
        /// (through the server's Janus, end-to-end encrypted), or auto (mesh, then the
        /// SFU once the call reaches the server's sfu_from peers).
        #[arg(long, value_name = "mesh|sfu|auto", value_parser = parse_media)]
        media: Option<crate::rooms::Media>,
    },
    /// List rooms.
    List,
    /// Show a room: its settings, a page of its whitelist, and recent audit events.
    Show {
        room: String,
        /// Only entries whose label, DID or fingerprint (SHA256:…) starts with this,
        /// or the entry of this key (in any format).
        #[arg(long)]
        search: Option<String>,
        /// Entries per page.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Start after this identity (the last one of the page before).
        #[arg(long, value_name = "DID")]
        after: Option<String>,
        /// The whole whitelist, however long (streamed).
        #[arg(long)]
        all: bool,
    },
    /// Write a room's whole whitelist, one `DID label` line per key (streamed);
    /// `keygate room allow ROOM FILE` reads it back.
    Export { room: String },
}

#[derive(Args)]
struct BenchArgs {
    /// WebSocket URL of a running server (several, comma-separated: servers of one
    /// service, over which the clients are spread in turn); without it, a server is
    /// started on a temporary database and stopped afterwards. With --relay, the
    /// senders use the first and the receivers the last.
    #[arg(long, value_delimiter = ',', value_name = "URL,…")]
    url: Vec<String>,
    /// Concurrent clients during the admission phase.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Admissions to measure.
    #[arg(long, default_value_t = 20_000)]
    admissions: usize,
    /// Idle admitted sockets to hold open for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Seconds spent measuring the raw verify rate.
    #[arg(long, default_value_t = 2.0)]
    verify_seconds: f64,
    /// Proof method the clients use: webcrypto, ssh, eth, piv or webauthn.
    #[arg(long, default_value = "webcrypto", value_parser = parse_bench_method)]
    method: crate::verify::Method,
    /// Clients sharing a room during the admission phase (1–8); above 1, every
    /// admission also fans peer-joined / peer-left out to the others.
    #[arg(long, default_value_t = 1)]
    per_room: usize,
    /// Measure what whitelist length costs instead, at each of these sizes (e.g.
    /// 10,10000,1000000): import, memory, cold / steady / after-a-change
    /// admissions, the host page and `room show`. Prints a table, then JSON.
    #[arg(long, value_delimiter = ',', value_name = "N,…", conflicts_with = "url")]
    whitelist: Vec<usize>,
    /// With --whitelist: single-key changes in the after-a-change phase.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Measure relay latency instead: `signal` frames from one peer to another at
    /// each of these total rates (messages per second, e.g. 40,10000), 40 per pair
    /// of peers. Prints a table, then JSON.
    #[arg(long, value_delimiter = ',', value_name = "RATE,…", conflicts_with = "whitelist")]
    relay: Vec<usize>,
    /// With --relay: seconds each rate is held.
    #[arg(long, default_value_t = 10.0)]
    relay_seconds: f64,
}

/// Libraries whose debug and trace output carries what must never be logged,
/// held at a level where they don't, whatever `KEYGATE_LOG` asks for:
/// - yubikey traces every APDU, the PIN's included, and logs expected conditions
///   (an empty reader) as errors: silent;
/// - tungstenite traces whole frames (tickets, TURN credentials, a private JWK sent
///   by mistake); hyper, h2, reqwest and rustls trace headers and bodies (session
///   cookies, proofs): their warnings only.
const QUIET_LIBRARIES: &[&str] = &[
    "yubikey=off",
    "tungstenite=warn",
    "tokio_tungstenite=warn",
    "hyper=warn",
    "hyper_util=warn",
    "h2=warn",
    "reqwest=warn",
    "rustls=warn",
    "axum=warn",
    "tower=warn",
    "tower_http=warn",
];

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("KEYGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for directive in QUIET_LIBRARIES {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    if cli.log_format == "json" {
        logs.json().flatten_event(true).with_current_span(false).init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

async fn run(command: Command) -> CliResult {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Identity { key: Some(key), .. } => identity(&key),
        Command::Identity { key: None, piv: true, slot, .. } => native::piv_identity(slot),
        Command::Identity { key: None, select, .. } => native::agent_identity(select),
        Command::Join(args) => native::join(args).await,
        Command::Room { db, command } => room::run(&db.db, db.create_db, command).await,
        Command::Backup { db, file } => data::backup(&db.db, &file).await,
        Command::Config { command: ConfigCommand::Example } => {
            say!("{}", Settings::example());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { command: ConfigCommand::Check { config } } => {
            let given = settings_args::SettingArgs::from_environment();
            let mut settings = Settings::layered(config.as_deref(), &given.0)?;
            for warning in settings.check()? {
                say!("warning: {warning}");
            }
            say!("settings are valid; origin {}", settings.public_origin());
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { db, file, force } => data::restore(&db.db, &file, force).await,
        Command::Sign(args) => native::sign(args),
        Command::Bench(args) if !args.whitelist.is_empty() => {
            let report = bench::run_whitelist(bench::WhitelistOptions {
                sizes: args.whitelist,
                clients: args.clients,
                admissions: args.admissions,
                changes: args.changes,
                method: args.method,
                verify_seconds: args.verify_seconds,
            })
            .await?;
            say!("{}", report.table());
            say!("{}", report.json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) if !args.relay.is_empty() => {
            let report = bench::run_relay(bench::RelayOptions {
                rates: args.relay,
                seconds: args.relay_seconds,
                urls: args.url,
            })
            .await?;
            say!("{}", report.table());
            say!("{}", report.json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let report = bench::run(BenchOptions {
                urls: args.url,
                clients: args.clients,
                admissions: args.admissions,
                idle: args.idle,
                verify_seconds: args.verify_seconds,
                per_room: args.per_room,
                method: args.method,
            })
            .await?;
            say!("{}", report.json());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn settings_from(args: ServeArgs) -> Result<Settings, Box<dyn std::error::Error>> {
    Ok(Settings::layered(args.config.as_deref(), &args.settings.0)?)
}

async fn serve(args: ServeArgs) -> CliResult {
    let settings = settings_from(args)?;
    // Every socket is a file descriptor; the soft default of 1024 is far too low.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let server = Server::start(settings).await?;
    say!("{}", startup_summary(&server));
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// What a new operator wants to see at start: where, on what, accepting what.
fn startup_summary(server: &Server) -> String {
    let gw = server.gateway();
    let s = &gw.settings;
    let db = crate::store::shown_db(&s.db);
    let methods: Vec<&str> = gw.verifiers.methods().into_iter().map(crate::verify::Method::as_str).collect();
    let tls = match &s.tls_cert {
        Some(cert) => format!("on, {} (reloaded on SIGHUP or when it changes)", cert.display()),
        None => "off".to_owned(),
    };
    let turn = match s.turn_urls.len() {
        0 => "off".to_owned(),
        n => format!("{n} server(s), credentials valid {} s", s.turn_ttl.as_secs()),
    };
    let proxies = if s.trusted_proxies.is_empty() { "none".to_owned() } else { s.trusted_proxies.join(", ") };
    let metrics = match server.metrics_addr() {
        Some(at) => format!("http://{at}/metrics (only there)"),
        None => format!("{}/metrics, /healthz, /readyz", gw.origin),
    };
    let every = |d: std::time::Duration| if d.is_zero() { "off".to_owned() } else { format!("{} s", d.as_secs_f64()) };
    let janus = match &s.janus {
        Some(url) if gw.rooms.bus().is_some() => format!(
            "{} (SFU unused: with a bus a call may span servers, and calls stay in the mesh)",
            crate::store::shown_url(url).display()
        ),
        Some(url) => format!(
            "{} (SFU for rooms set to sfu, and auto calls from {} people)",
            crate::store::shown_url(url).display(),
            s.sfu_from
        ),
        None => "off (calls are mesh only)".to_owned(),
    };
    let bus = match gw.rooms.bus() {
        Some(bus) => format!("{} (this server: {}; a call's peers may be on any server)", bus.shown(), bus.node()),
        None => "off (one server)".to_owned(),
    };
    format!(
        "keygate listening on {} ({})\n  database  {}\n  bus       {bus}\n  janus     {janus}\n  methods   {}; and ticket, resume\n  TLS       {tls}\n  \
         TURN      {turn}\n  proxies   {proxies} trusted\n  metrics   {metrics}\n  limits    {} peers per room, {} connections ({} not yet \
         admitted), ping {}, resume window {}",
        gw.origin,
        server.addr(),
        db,
        methods.join(", "),
        s.max_peers_per_room,
        s.max_connections,
        s.max_unadmitted,
        every(s.ping_interval),
        every(s.resume_window),
    )
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Reads a KEY argument: `-` is stdin, an existing path is read, anything else is
/// the key text itself.
fn read_key_arg(arg: &str) -> Result<String, Box<dyn std::error::Error>> {
    if arg == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        return Ok(text);
    }
    let path = std::path::Path::new(arg);
    if !arg.contains('\n') && path.is_file() {
        return std::fs::read_to_string(path).map_err(|e| format!("cannot read {arg}: {e}").into());
    }
    Ok(arg.to_owned())
}

/// Parses every key in a KEY argument, printing bad lines to stderr.
fn read_keys(arg: &str) -> Result<(Vec<KeyLine>, usize), Box<dyn std::error::Error>> {
    let text = read_key_arg(arg)?;
    let parsed = parse_key_list(&text);
    if parsed.is_empty() {
        return Err("no key given".into());
    }
    let (mut keys, mut bad) = (Vec::new(), 0);
    let many = parsed.len() > 1;
    for (line, result) in parsed {
        match result {
            Ok(k) => keys.push(k),
            Err(e) if many => {
                bad += 1;
                eprintln!("line {line}: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((keys, bad))
}

fn identity(key: &str) -> CliResult {
    let (keys, bad) = read_keys(key)?;
    for k in &keys {
        let comment = k.comment.as_deref().map(|c| format!("  {c}")).unwrap_or_default();
        if keys.len() == 1 && bad == 0 {
            say!("{}\n{} ({}){comment}", k.identity, k.identity.fingerprint(), k.identity.kind());
        } else {
            say!("{}  {}{comment}", k.identity, k.identity.fingerprint());
        }
    }
    Ok(if bad > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn one_identity(arg: &str) -> Result<Identity, Box<dyn std::error::Error>> {
    let (keys, bad) = read_keys(arg)?;
    match (keys.len(), bad) {
        (1, 0) => Ok(keys[0].identity.clone()),
        _ => Err("expected exactly one key".into()),
    }
}

fn parse_bench_method(text: &str) -> Result<crate::verify::Method, String> {
    use crate::verify::Method;
    match text {
        "webcrypto" => Ok(Method::Webcrypto),
        "ssh" => Ok(Method::Ssh),
        "eth" => Ok(Method::Eth),
        "piv" => Ok(Method::Piv),
        "webauthn" => Ok(Method::Webauthn),
        _ => Err("the load tool drives webcrypto, ssh, eth, piv or webauthn".into()),
    }
}

fn parse_media(text: &str) -> Result<crate::rooms::Media, String> {
    crate::rooms::Media::parse(text).ok_or_else(|| format!("'{text}' is not a media mode; use mesh, sfu or auto"))
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

fn parse_room(text: &str) -> Result<RoomId, Box<dyn std::error::Error>> {
    Ok(RoomId::parse(text)?)
}
