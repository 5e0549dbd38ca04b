//! The load tool behind `keygate bench`.
//!
//! Measures, in one run on one machine:
//! 1. the raw verify rate of the primitive the server uses (ECDSA P-256, aws-lc-rs),
//!    single-threaded, over a payload shaped like a real challenge;
//! 2. admissions per second: N concurrent clients, each looping connect → request →
//!    challenge → auth (signing like a browser) → welcome → close, with p50/p99 of
//!    connect-to-welcome latency; and their ratio to `cores × raw verify rate`;
//! 3. how much resident memory the server holds per idle admitted socket.
//!
//! The last line printed is JSON, for scripts.

use crate::challenge::IssuedChallenge;
use crate::client::p256_key::P256Key;
use crate::client::signer::ProofSigner;
use crate::client::ws::{Client, ClientError};
use crate::ids::RoomId;
use crate::verify::{Method, Verifiers};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

mod relay;
mod whitelist;
pub use relay::{run_relay, RelayOptions, RelayReport, RelayRow};
pub use whitelist::{run_whitelist, WhitelistOptions, WhitelistReport, WhitelistRow};

pub struct BenchOptions {
    /// Running servers of one service (empty: start one); clients are spread over
    /// them in turn, as a load balancer would.
    pub urls: Vec<String>,
    pub clients: usize,
    pub admissions: usize,
    pub idle: usize,
    pub verify_seconds: f64,
    /// The proof method the clients use.
    pub method: Method,
    /// Concurrent clients sharing one room: 1 measures admission alone; more adds
    /// the fan-out of peer-joined / peer-left to the others.
    pub per_room: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("could not start a server: {0}")]
    Spawn(String),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("setup failed: {0}")]
    Setup(String),
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub method: &'static str,
    pub primitive: &'static str,
    pub cores: usize,
    pub raw_verify_per_sec: f64,
    /// Proofs per second one client thread makes for this method.
    pub raw_sign_per_sec: f64,
    /// `1 / (1 + verify/sign)`: the best `ratio` possible when the load generator
    /// signs on the same cores the server verifies on, with zero other overhead.
    pub one_machine_ceiling: f64,
    pub admissions: usize,
    pub failed_admissions: usize,
    pub clients: usize,
    pub per_room: usize,
    /// How many servers the clients were spread over.
    pub servers: usize,
    pub seconds: f64,
    pub admissions_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// admissions/s ÷ (cores × raw verify rate). The load generator shares the
    /// cores, so this counts its signing and socket work against the server.
    pub ratio: f64,
    /// Server CPU time per admission (from their /metrics, summed over the
    /// servers), in microseconds.
    pub server_cpu_us_per_admission: Option<f64>,
    /// Messages the servers published on their bus per admission (with a bus).
    pub bus_messages_per_admission: Option<f64>,
    /// Each server's CPU over the run per admission it made (with several).
    pub per_server_cpu_us_per_admission: Vec<f64>,
    /// Admissions per server CPU-second ÷ raw verify rate per core.
    pub server_ratio: Option<f64>,
    /// Server CPU for a connection that is opened, upgraded to a WebSocket and
    /// closed without a proof: the floor every admission pays before its own work.
    pub connection_cpu_us: Option<f64>,
    /// One verify ÷ (server CPU per admission − per bare connection): how much of
    /// the admission's own work is the signature check.
    pub server_ratio_beyond_connection: Option<f64>,
    pub idle_sockets: usize,
    pub rss_before_idle_bytes: u64,
    pub rss_after_idle_bytes: u64,
    pub rss_per_idle_socket_bytes: f64,
    /// Server RSS a few seconds after the idle sockets closed.
    pub rss_after_close_bytes: u64,
}

impl BenchReport {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A server started for the run, stopped when dropped.
struct SpawnedServer {
    child: Child,
    _dir: tempfile_dir::TempDir,
}

/// A minimal temporary directory (the bench must not depend on dev-dependencies).
mod tempfile_dir {
    use std::path::{Path, PathBuf};
    pub struct TempDir(PathBuf);
    impl TempDir {
        pub fn new() -> std::io::Result<Self> {
            let path = std::env::temp_dir()
                .join(format!("keygate-bench-{}", crate::ids::hex(&crate::ids::random_bytes::<6>())));
            std::fs::create_dir_all(&path)?;
            Ok(TempDir(path))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn spawn_server(max_connections: usize) -> Result<(SpawnedServer, String), BenchError> {
    let dir = tempfile_dir::TempDir::new().map_err(|e| BenchError::Spawn(e.to_string()))?;
    let db = dir.path().join("bench.db");
    spawn_server_on(dir, &db, max_connections).await
}

/// Starts `keygate serve` on `db`, keeping `dir` until the server is dropped.
async fn spawn_server_on(
    dir: tempfile_dir::TempDir,
    db: &std::path::Path,
    max_connections: usize,
) -> Result<(SpawnedServer, String), BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::Spawn(e.to_string()))?;
    // Every load client connects from 127.0.0.1: lift the per-address caps meant for
    // strangers on the internet.
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        "max_unadmitted = 100000\nmax_unadmitted_per_address = 100000\nhttp_requests_per_minute = 100000000\nmax_peers_per_room = 100000\n",
    )
    .map_err(|e| BenchError::Spawn(e.to_string()))?;
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--auth-timeout", "300"])
        .arg("--max-connections")
        .arg(max_connections.to_string())
        .arg("--db")
        .arg(db)
        .env("KEYGATE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BenchError::Spawn(e.to_string()))?;
    let stdout = child.stdout.take().ok_or_else(|| BenchError::Spawn("no stdout".into()))?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), BufReader::new(stdout).read_line(&mut line))
        .await
        .map_err(|_| BenchError::Spawn("server did not start within 20 s".into()))?
        .map_err(|e| BenchError::Spawn(e.to_string()))?;
    let http = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| BenchError::Spawn(format!("unexpected server output: {line}")))?;
    // Connect by address: "localhost" may resolve to ::1 first, which the server
    // (bound to 127.0.0.1) would refuse on every connection.
    let port = http.rsplit(':').next().unwrap_or_default().trim_end_matches('/');
    let url = format!("ws://127.0.0.1:{port}/ws");
    Ok((SpawnedServer { child, _dir: dir }, url))
}

/// Raw single-thread rates measured in the same run as the load.
#[derive(Clone, Copy, Debug)]
pub struct RawRates {
    /// Verifications per second through the server's own path: parse the proof,
    /// check the signature.
    pub verify: f64,
    /// Proofs per second a client makes (what every simulated client must spend
    /// before the server can verify anything).
    pub sign: f64,
}

impl RawRates {
    /// The most admissions/s one machine can reach when it both signs (clients) and
    /// verifies (server) and does nothing else, as a share of `cores × verify`:
    /// `1 / (1 + verify/sign)`. The load's ratio cannot beat this on one machine.
    pub fn one_machine_ceiling(&self) -> f64 {
        1.0 / (1.0 + self.verify / self.sign)
    }
}

/// Single-threaded verifications and signatures per second of the primitive the
/// server uses for `method`.
pub fn raw_rates(method: Method, seconds: f64) -> Result<RawRates, BenchError> {
    let setup = |e: &dyn std::fmt::Display| BenchError::Setup(e.to_string());
    let signer = ProofSigner::generate(method).map_err(|e| setup(&e))?;
    let issued =
        IssuedChallenge::issue(RoomId::generate(), "http://127.0.0.1:8080", Default::default(), chrono::Utc::now());
    let siwe = match &signer {
        ProofSigner::Eth(_, address) => {
            let facts = crate::verify::siwe::ForChallenge {
                origin: "http://127.0.0.1:8080",
                statement: format!("Join keygate room {}.", issued.room),
                request_id: issued.room.as_str(),
                nonce: &issued.nonce,
                issued_at: issued.issued_at,
                lifetime: std::time::Duration::from_secs(120),
                vouched: &Default::default(),
                chain_id: 1,
            };
            Some(crate::verify::siwe::SiweMessage::for_challenge(*address, facts).to_string())
        }
        _ => None,
    };
    // A passkey is registered with an in-process relying party, whose ceremony state
    // the check then runs against, as the server's does.
    let passkeys = crate::verify::webauthn::Passkeys::new("localhost", &["http://localhost:8080".to_owned()])
        .map_err(|e| setup(&e))?;
    let ceremony = match &signer {
        ProofSigner::Webauthn(authenticator, _) => {
            let (state, options) = passkeys.begin_registration("bench").map_err(|e| setup(&e))?;
            let credential = serde_json::from_value(authenticator.register(&options).map_err(|e| setup(&e))?)
                .map_err(|e| setup(&e))?;
            let registered = passkeys.complete_registration(&state, &credential).map_err(|e| setup(&e))?;
            Some(passkeys.challenge(issued.signed_bytes(), vec![registered], false).map_err(|e| setup(&e))?)
        }
        _ => None,
    };
    let challenge = json!({
        "payload": issued.payload_json(),
        "siwe": siwe,
        "webauthn": ceremony.as_ref().map(|w| w.options.clone()),
    });
    let auth = signer.auth(&challenge).map_err(|e| setup(&e))?;
    let verifiers = Verifiers::new(Vec::new(), Some(passkeys.core()));
    let verifier = verifiers.get(method).ok_or_else(|| setup(&"method not registered"))?;
    let issued_with = crate::verify::Challenge {
        payload: issued.signed_bytes().as_bytes(),
        siwe: siwe.as_deref(),
        webauthn: ceremony.as_ref(),
    };
    let verify = rate(seconds, || {
        let claim = verifier.claim(&auth, &issued_with).map_err(|e| setup(&e))?;
        claim.check().map(|_| ()).map_err(|e| setup(&e))
    })?;
    let sign = rate(seconds, || signer.auth(&challenge).map(|_| ()).map_err(|e| setup(&e)))?;
    Ok(RawRates { verify, sign })
}

/// Calls `f` in batches of 100 for about `seconds`; returns calls per second.
fn rate(seconds: f64, mut f: impl FnMut() -> Result<(), BenchError>) -> Result<f64, BenchError> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..100 {
            f()?;
        }
        n += 100;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// One admission: connect, request, sign the challenge, be welcomed, close.
async fn admit_once(url: &str, key: &ProofSigner, room: &str) -> Result<(), ClientError> {
    let mut c = Client::connect(url).await?;
    let challenge = c.request(key.request(room)).await?;
    let auth = key.auth(&challenge).map_err(|e| ClientError::Unexpected(e.to_string()))?;
    c.send(&auth).await?;
    c.expect("welcome").await?;
    c.close().await;
    Ok(())
}

/// The primitive behind each method, for the report.
fn primitive(method: Method) -> &'static str {
    match method {
        Method::Ssh => "Ed25519 SSHSIG (aws-lc-rs)",
        Method::Eth => "secp256k1 recovery + Keccak (libsecp256k1)",
        Method::Piv => "ECDSA P-256 with a slot certificate (aws-lc-rs)",
        Method::Webauthn => "WebAuthn ES256 assertion (webauthn-rs, RustCrypto p256)",
        _ => "ECDSA P-256 (aws-lc-rs)",
    }
}

/// The server's public origin, as its challenges state it.
async fn discover_origin(url: &str) -> Result<String, BenchError> {
    let mut c = Client::connect(url).await?;
    let challenge = c.request(json!({"type": "request", "create": true})).await?;
    c.close().await;
    challenge["payload"]["origin"].as_str().map(str::to_owned).ok_or_else(|| BenchError::Setup("no origin".into()))
}

/// Creates a room owned by a fresh key and whitelists `keys`; returns the room id and
/// the owner's connection (still admitted, so it occupies one seat).
async fn create_room(url: &str, keys: &[String]) -> Result<(String, Client), BenchError> {
    let owner = P256Key::generate().map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut c = Client::connect(url).await?;
    let welcome = c.join_webcrypto(json!({"type": "request", "create": true, "name": "bench"}), &owner).await?;
    let room = welcome["roomId"].as_str().unwrap_or_default().to_owned();
    if !keys.is_empty() {
        let add: Vec<Value> = keys.iter().map(|k| Value::String(k.clone())).collect();
        c.send(&json!({"type": "whitelist", "add": add})).await?;
        let updated = c.expect("whitelist-updated").await?;
        if updated["errors"].as_array().is_some_and(|e| !e.is_empty()) {
            return Err(BenchError::Setup(format!("whitelist errors: {}", updated["errors"])));
        }
    }
    Ok((room, c))
}

/// A metric summed over the servers at `urls`; None if any does not report it.
async fn metric_sum(urls: &[String], name: &str) -> Option<f64> {
    Some(metric_each(urls, name).await?.iter().sum())
}

/// A metric of each server at `urls`; None if any does not report it.
async fn metric_each(urls: &[String], name: &str) -> Option<Vec<f64>> {
    let mut each = Vec::with_capacity(urls.len());
    for url in urls {
        each.push(metric(url, name).await?);
    }
    Some(each)
}

async fn metric(url: &str, name: &str) -> Option<f64> {
    let hostport = url.strip_prefix("ws://")?.split('/').next()?.to_owned();
    let mut stream = tokio::net::TcpStream::connect(&hostport).await.ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    body.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub async fn run(opts: BenchOptions) -> Result<BenchReport, BenchError> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clients = opts.clients.max(1);
    let (_server, urls) = match opts.urls.as_slice() {
        [] => {
            let (s, u) = spawn_server(opts.idle + clients + 256).await?;
            (Some(s), vec![u])
        }
        given => (None, given.to_vec()),
    };
    let url = urls[0].clone();
    eprintln!("keygate bench against {}", urls.join(", "));

    let method = opts.method;
    let rates = tokio::task::spawn_blocking(move || raw_rates(method, opts.verify_seconds))
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))??;
    let raw = rates.verify;
    eprintln!(
        "raw verify ({}, 1 thread): {raw:.0}/s; raw client signing: {:.0}/s → ceiling for load and server on one machine: {:.2} × (cores × raw verify)",
        primitive(method),
        rates.sign,
        rates.one_machine_ceiling()
    );

    // Setup: each room gets `per_room` workers (at most 8, the default room size).
    let per_room = opts.per_room.clamp(1, 8);
    let origin = discover_origin(&url).await?;
    let http = url.replacen("ws://", "http://", 1).trim_end_matches("/ws").to_owned();
    let mut keys: Vec<ProofSigner> = (0..clients)
        .map(|_| ProofSigner::generate_for(method, &origin))
        .collect::<Result<_, _>>()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    for key in &mut keys {
        key.enroll(&http).await.map_err(|e| BenchError::Setup(e.to_string()))?;
    }
    let mut rooms = Vec::new();
    for chunk in keys.chunks(per_room) {
        let entries: Vec<String> = chunk
            .iter()
            .map(|k| k.whitelist_entry())
            .collect::<Result<_, _>>()
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let (room, owner) = create_room(&url, &entries).await?;
        owner.close().await;
        rooms.push(room);
    }

    let connection_cpu_us = bare_connections(&url, clients, opts.admissions).await?;
    let cpu_each_before = metric_each(&urls, "process_cpu_seconds_total").await;
    let bus_before = metric_sum(&urls, "keygate_bus_sent_total").await;
    let admitted_by = Arc::new((0..urls.len()).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let remaining = Arc::new(AtomicUsize::new(opts.admissions));
    let failed = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(opts.admissions)));
    let start = Instant::now();
    let mut workers = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        // A room's clients on different servers, when there are several.
        let (url, room) = (urls[i % urls.len()].clone(), rooms[i / per_room].clone());
        let (remaining, failed, latencies) = (remaining.clone(), failed.clone(), latencies.clone());
        let (admitted_by, server) = (admitted_by.clone(), i % urls.len());
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
                let t = Instant::now();
                match admit_once(&url, &key, &room).await {
                    Ok(()) => {
                        mine.push(t.elapsed().as_secs_f64() * 1000.0);
                        admitted_by[server].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("admission failed: {e}");
                        }
                    }
                }
            }
            if let Ok(mut l) = latencies.lock() {
                l.extend(mine);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_each_after = metric_each(&urls, "process_cpu_seconds_total").await;
    let bus_after = metric_sum(&urls, "keygate_bus_sent_total").await;
    let (cpu_before, cpu_after) = (
        cpu_each_before.as_ref().map(|v| v.iter().sum::<f64>()),
        cpu_each_after.as_ref().map(|v| v.iter().sum::<f64>()),
    );
    // Each server's CPU over the run, per admission it made itself (the others'
    // joins it was told of are its cost of sharing rooms).
    let per_server_cpu_us: Vec<f64> = match (&cpu_each_before, &cpu_each_after) {
        (Some(b), Some(a)) => a
            .iter()
            .zip(b)
            .zip(admitted_by.iter())
            .map(|((a, b), n)| (a - b) * 1e6 / n.load(Ordering::Relaxed).max(1) as f64)
            .collect(),
        _ => Vec::new(),
    };
    if urls.len() > 1 && !per_server_cpu_us.is_empty() {
        let each: Vec<String> = per_server_cpu_us.iter().map(|us| format!("{us:.0} µs")).collect();
        eprintln!("each server's CPU per admission it made: {}", each.join(", "));
    }
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_by(|a, b| a.total_cmp(b));
    let admitted = lat.len();
    let per_sec = admitted as f64 / seconds;
    let ratio = per_sec / (cores as f64 * raw);
    eprintln!(
        "admissions: {admitted} in {seconds:.2} s = {per_sec:.0}/s with {clients} clients; p50 {:.2} ms, p99 {:.2} ms; ratio to {cores} × raw verify: {ratio:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    // Server CPU per admission, against the time one verification takes: the share
    // of the server's work that is the signature check itself.
    let server_cpu_us = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if admitted > 0 => Some((a - b) * 1e6 / admitted as f64),
        _ => None,
    };
    let server_ratio = server_cpu_us.map(|us| (1e6 / raw) / us);
    let bus_per_admission = match (bus_before, bus_after) {
        (Some(b), Some(a)) if admitted > 0 => Some((a - b) / admitted as f64),
        _ => None,
    };
    if let Some(m) = bus_per_admission {
        eprintln!("bus messages published per admission (all servers, presence included): {m:.2}");
    }
    if let (Some(us), Some(r)) = (server_cpu_us, server_ratio) {
        eprintln!(
            "server CPU per admission: {us:.0} µs (one verify: {:.0} µs) → server admissions per CPU-second / raw verify rate: {r:.2}",
            1e6 / raw
        );
    }
    let beyond = match (server_cpu_us, connection_cpu_us) {
        (Some(a), Some(c)) if a > c => Some((1e6 / raw) / (a - c)),
        _ => None,
    };
    if let (Some(c), Some(b), Some(a)) = (connection_cpu_us, beyond, server_cpu_us) {
        eprintln!(
            "a bare connection (upgrade, close) costs the server {c:.0} µs; of the {:.0} µs an admission adds, the verify is {b:.2}",
            a - c
        );
    }

    let (idle, rss_before, rss_after, per_socket, rss_closed) =
        if opts.idle > 0 { idle_phase(&url, opts.idle).await? } else { (0, 0, 0, 0.0, 0) };
    Ok(BenchReport {
        method: method.as_str(),
        primitive: primitive(method),
        cores,
        raw_verify_per_sec: raw,
        raw_sign_per_sec: rates.sign,
        one_machine_ceiling: rates.one_machine_ceiling(),
        admissions: admitted,
        failed_admissions: failed.load(Ordering::Relaxed),
        clients,
        per_room,
        servers: urls.len(),
        seconds,
        admissions_per_sec: per_sec,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        ratio,
        server_cpu_us_per_admission: server_cpu_us,
        bus_messages_per_admission: bus_per_admission,
        per_server_cpu_us_per_admission: per_server_cpu_us,
        server_ratio,
        connection_cpu_us,
        server_ratio_beyond_connection: beyond,
        idle_sockets: idle,
        rss_before_idle_bytes: rss_before,
        rss_after_idle_bytes: rss_after,
        rss_per_idle_socket_bytes: per_socket,
        rss_after_close_bytes: rss_closed,
    })
}

/// `total` WebSocket connections opened and closed by `clients` concurrent clients,
/// with no proof; returns the server's CPU per connection in microseconds.
async fn bare_connections(url: &str, clients: usize, total: usize) -> Result<Option<f64>, BenchError> {
    let before = metric(url, "process_cpu_seconds_total").await;
    let remaining = Arc::new(AtomicUsize::new(total));
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (url, remaining) = (url.to_owned(), remaining.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0usize;
            while remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
                Client::connect(&url).await?.close().await;
                done += 1;
            }
            Ok::<usize, ClientError>(done)
        }));
    }
    let mut done = 0;
    for w in workers {
        done += w.await.map_err(|e| BenchError::Setup(e.to_string()))??;
    }
    let after = metric(url, "process_cpu_seconds_total").await;
    Ok(match (before, after) {
        (Some(b), Some(a)) if done > 0 => Some((a - b) * 1e6 / done as f64),
        _ => None,
    })
}

/// Opens `count` admitted sockets (rooms of 8: the owner plus 7 sessions of one
/// whitelisted key), waits for the server to settle, and reads its RSS.
async fn idle_phase(url: &str, count: usize) -> Result<(usize, u64, u64, f64, u64), BenchError> {
    let rss = |v: Option<f64>| v.unwrap_or(0.0) as u64;
    let before = rss(metric(url, "process_resident_memory_bytes").await);
    let key = Arc::new(P256Key::generate().map_err(|e| BenchError::Setup(e.to_string()))?);
    let rooms = count.div_ceil(8);
    let held = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let next_room = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (url, key, held, next_room) = (url.to_owned(), key.clone(), held.clone(), next_room.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let r = next_room.fetch_add(1, Ordering::Relaxed);
                if r >= rooms {
                    return Ok::<(), BenchError>(());
                }
                let seats = (count - r * 8).min(8);
                let (room, owner) = create_room(&url, &[key.public_jwk().to_string()]).await?;
                let mut mine = vec![owner];
                for _ in 1..seats {
                    let mut c = Client::connect(&url).await?;
                    c.join_webcrypto(json!({"type": "request", "roomId": room}), &key).await?;
                    mine.push(c);
                }
                if let Ok(mut h) = held.lock() {
                    h.extend(mine);
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| BenchError::Setup(e.to_string()))??;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss(metric(url, "process_resident_memory_bytes").await);
    let open = held.lock().map(|h| h.len()).unwrap_or(0);
    let per_socket = after.saturating_sub(before) as f64 / open.max(1) as f64;
    eprintln!(
        "idle: {open} admitted sockets; server RSS {:.1} MiB → {:.1} MiB = {:.1} KiB per socket",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per_socket / 1024.0
    );
    let clients = std::mem::take(&mut *held.lock().map_err(|_| BenchError::Setup("lock".into()))?);
    for c in clients {
        c.close().await;
    }
    // jemalloc hands freed pages back over about ten seconds.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let closed = rss(metric(url, "process_resident_memory_bytes").await);
    eprintln!("idle sockets closed: server RSS {:.1} MiB", closed as f64 / 1048576.0);
    Ok((open, before, after, per_socket, closed))
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
