//! `keygate bench --whitelist N,…`: what a whitelist's length costs, measured per
//! size in one run on one machine. For each size, on a fresh database:
//!
//! 1. the list is written as a file (the clients' keys spread through it, the rest
//!    random Ed25519 keys) and imported with `keygate room allow ROOM FILE`, the
//!    path hosts use;
//! 2. a server starts on it; its RSS is read before and after the room's first
//!    admissions ("cold": one per client, all at once);
//! 3. "steady": admissions by all clients for a while (rate, latency, server CPU);
//! 4. "after a change": one key is added by another process (the CLI), then every
//!    client is admitted at once, repeatedly;
//! 5. the host page (first page, and a search for a label few entries match) and
//!    `keygate room show`;
//! 6. "during an import": every client keeps being admitted while the CLI imports
//!    lists of 10,000 new keys into the same room (one after another, for at least
//!    two seconds), against the steady rate.
//!
//! A table, then one line of JSON.

use super::{admit_once, metric, percentile, primitive, raw_rates, spawn_server_on, tempfile_dir, BenchError};
use crate::client::p256_key::P256Key;
use crate::client::signer::ProofSigner;
use crate::identity::{Identity, PublicKey};
use crate::verify::Method;
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use tokio::process::Command;

pub struct WhitelistOptions {
    /// List lengths to measure, each on a fresh database.
    pub sizes: Vec<usize>,
    /// Concurrent clients.
    pub clients: usize,
    /// Admissions in the steady phase.
    pub admissions: usize,
    /// Single-key changes in the after-change phase.
    pub changes: usize,
    pub method: Method,
    pub verify_seconds: f64,
}

/// What one list length cost.
#[derive(Debug, Serialize)]
pub struct WhitelistRow {
    pub entries: usize,
    pub import_seconds: f64,
    pub import_lines_per_sec: f64,
    pub db_bytes: u64,
    /// Server RSS before the room's first admission, and after the cold phase.
    pub rss_start_bytes: u64,
    pub rss_loaded_bytes: u64,
    pub cold_p50_ms: f64,
    pub cold_p99_ms: f64,
    pub steady_per_sec: f64,
    pub steady_p50_ms: f64,
    pub steady_p99_ms: f64,
    pub server_cpu_us_per_admission: Option<f64>,
    pub after_change_p50_ms: f64,
    pub after_change_p99_ms: f64,
    /// Admissions per second while 10,000-key imports run into the same room.
    pub during_import_per_sec: f64,
    pub during_import_p99_ms: f64,
    /// Keys imported in that phase, and their rate.
    pub during_import_keys: usize,
    pub during_import_lines_per_sec: f64,
    pub failed_admissions: usize,
    pub page_ms: f64,
    pub page_bytes: usize,
    pub search_ms: f64,
    pub show_ms: f64,
    pub show_bytes: usize,
}

#[derive(Debug, Serialize)]
pub struct WhitelistReport {
    pub method: &'static str,
    pub primitive: &'static str,
    pub clients: usize,
    pub raw_verify_per_sec: f64,
    pub rows: Vec<WhitelistRow>,
}

impl WhitelistReport {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The table `keygate bench --whitelist` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} clients, method {} ({}; one verify {:.0} µs)\n",
            self.clients,
            self.method,
            self.primitive,
            1e6 / self.raw_verify_per_sec
        );
        out.push_str(
            "| entries | import lines/s | RSS start → loaded | cold p50 | steady /s (p50, p99) | server CPU/admission | after a change p50 (p99) | during 10k imports /s (p99) | host page / search | room show |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let mb = |b: u64| b as f64 / 1048576.0;
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {:.0} | {:.0} → {:.0} MB | {:.1} ms | {:.0} ({:.1}, {:.1} ms) | {} | {:.1} ms ({:.1}) | {:.0} ({:.1} ms) | {:.1} ms, {} KB / {:.1} ms | {:.1} ms, {} KB |\n",
                r.entries,
                r.import_lines_per_sec,
                mb(r.rss_start_bytes),
                mb(r.rss_loaded_bytes),
                r.cold_p50_ms,
                r.steady_per_sec,
                r.steady_p50_ms,
                r.steady_p99_ms,
                r.server_cpu_us_per_admission.map_or("-".into(), |us| format!("{us:.0} µs")),
                r.after_change_p50_ms,
                r.after_change_p99_ms,
                r.during_import_per_sec,
                r.during_import_p99_ms,
                r.page_ms,
                r.page_bytes / 1024,
                r.search_ms,
                r.show_ms,
                r.show_bytes / 1024,
            ));
        }
        out
    }
}

fn setup(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(e.to_string())
}

/// Runs this binary with `args`; its stdout, or an error naming what failed.
async fn keygate(args: &[&str]) -> Result<String, BenchError> {
    let exe = std::env::current_exe().map_err(setup)?;
    let out = Command::new(exe).args(args).env("KEYGATE_LOG", "warn").output().await.map_err(setup)?;
    if !out.status.success() {
        return Err(setup(format!("keygate {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A random Ed25519 key's DID: a stand-in for a member who never connects.
fn random_member() -> String {
    let key = PublicKey::Ed25519(crate::ids::random_bytes::<32>());
    Identity::from_key(key).did().to_string()
}

/// `total` admissions by `clients` concurrent clients (client `i` signs with key
/// `i % keys.len()`); returns every latency in ms, sorted, and the failures.
async fn rounds(url: &str, room: &str, keys: &[Arc<ProofSigner>], clients: usize, total: usize) -> (Vec<f64>, usize) {
    admit_while(url, room, keys, clients, Arc::new(std::sync::atomic::AtomicUsize::new(total))).await
}

/// Admissions by `clients` concurrent clients while `remaining` (taken one per
/// admission) lasts; another task may set it to 0 to stop them.
async fn admit_while(
    url: &str,
    room: &str,
    keys: &[Arc<ProofSigner>],
    clients: usize,
    remaining: Arc<std::sync::atomic::AtomicUsize>,
) -> (Vec<f64>, usize) {
    let mut workers = Vec::new();
    for i in 0..clients {
        let (url, room, key, remaining) =
            (url.to_owned(), room.to_owned(), keys[i % keys.len()].clone(), remaining.clone());
        workers.push(tokio::spawn(async move {
            let (mut lat, mut failed) = (Vec::new(), 0usize);
            use std::sync::atomic::Ordering;
            while remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
                let t = Instant::now();
                match admit_once(&url, &key, &room).await {
                    Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        if failed == 0 {
                            eprintln!("admission failed: {e}");
                        }
                        failed += 1;
                    }
                }
            }
            (lat, failed)
        }));
    }
    let (mut all, mut failed) = (Vec::new(), 0);
    for w in workers {
        if let Ok((lat, f)) = w.await {
            all.extend(lat);
            failed += f;
        }
    }
    all.sort_by(|a, b| a.total_cmp(b));
    (all, failed)
}

async fn one_size(n: usize, opts: &WhitelistOptions, keys: &[Arc<ProofSigner>]) -> Result<WhitelistRow, BenchError> {
    let dir = tempfile_dir::TempDir::new().map_err(setup)?;
    let db = dir.path().join("bench.db");
    let db_arg = db.to_string_lossy().into_owned();
    let owner = P256Key::generate().map_err(setup)?;
    let room = keygate(&["room", "create", "--owner", &owner.public_jwk().to_string(), "--db", &db_arg, "--create-db"])
        .await?
        .trim()
        .to_owned();

    // The list: the clients' keys spread through random members.
    let list = dir.path().join("list.txt");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&list).map_err(setup)?);
        let ours: Vec<String> = keys
            .iter()
            .map(|k| {
                let entry = k.whitelist_entry().map_err(setup)?;
                Identity::parse(&entry).map(|i| i.did().to_string()).map_err(setup)
            })
            .collect::<Result<_, _>>()?;
        let n = n.max(ours.len());
        let step = n / ours.len();
        for i in 0..n {
            let line = match (i % step == 0).then(|| ours.get(i / step)).flatten() {
                Some(did) => format!("{did}  client-{}", i / step),
                None => format!("{}  member-{i}", random_member()),
            };
            writeln!(file, "{line}").map_err(setup)?;
        }
        file.flush().map_err(setup)?;
    }
    let t = Instant::now();
    let list_arg = list.to_string_lossy().into_owned();
    keygate(&["room", "allow", &room, &list_arg, "--db", &db_arg]).await?;
    let import_seconds = t.elapsed().as_secs_f64();
    eprintln!("{n}: imported in {import_seconds:.2} s");

    let (server, url) = spawn_server_on(dir, &db, opts.clients + 256).await?;
    let http = url.replacen("ws://", "http://", 1).trim_end_matches("/ws").to_owned();
    let rss = |v: Option<f64>| v.unwrap_or(0.0) as u64;
    let rss_start = rss(metric(&url, "process_resident_memory_bytes").await);
    let (cold, cold_failed) = rounds(&url, &room, keys, opts.clients, opts.clients).await;
    let rss_loaded = rss(metric(&url, "process_resident_memory_bytes").await);

    let cpu_before = metric(&url, "process_cpu_seconds_total").await;
    let t = Instant::now();
    let (steady, steady_failed) = rounds(&url, &room, keys, opts.clients, opts.admissions).await;
    let seconds = t.elapsed().as_secs_f64();
    let cpu_after = metric(&url, "process_cpu_seconds_total").await;
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if !steady.is_empty() => Some((a - b) * 1e6 / steady.len() as f64),
        _ => None,
    };

    let mut after = Vec::new();
    let mut after_failed = 0;
    for _ in 0..opts.changes {
        keygate(&["room", "allow", &room, &random_member(), "--db", &db_arg]).await?;
        let (lat, failed) = rounds(&url, &room, keys, opts.clients, opts.clients).await;
        after.extend(lat);
        after_failed += failed;
    }
    after.sort_by(|a, b| a.total_cmp(b));

    let cookie = crate::client::http::sign_in(&http, &owner).await.map_err(setup)?;
    let t = Instant::now();
    let page = crate::client::http::get_signed_in(&http, &format!("/rooms/{room}"), &cookie).await.map_err(setup)?;
    let page_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    crate::client::http::get_signed_in(&http, &format!("/rooms/{room}?q=member-{}", n * 3 / 4 + 1), &cookie)
        .await
        .map_err(setup)?;
    let search_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let show = keygate(&["room", "show", &room, "--db", &db_arg]).await?;
    let show_ms = t.elapsed().as_secs_f64() * 1000.0;
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(db.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);
    // Last, as it makes the list longer.
    let during = during_imports(&url, &room, keys, opts.clients, &db_arg, &list).await?;
    drop(server);

    let steady_per_sec = steady.len() as f64 / seconds;
    eprintln!(
        "{n}: cold p50 {:.1} ms; steady {steady_per_sec:.0}/s; after a change p50 {:.1} ms; page {page_ms:.1} ms",
        percentile(&cold, 0.5),
        percentile(&after, 0.5)
    );
    Ok(WhitelistRow {
        entries: n,
        import_seconds,
        import_lines_per_sec: n as f64 / import_seconds,
        db_bytes,
        rss_start_bytes: rss_start,
        rss_loaded_bytes: rss_loaded,
        cold_p50_ms: percentile(&cold, 0.5),
        cold_p99_ms: percentile(&cold, 0.99),
        steady_per_sec,
        steady_p50_ms: percentile(&steady, 0.5),
        steady_p99_ms: percentile(&steady, 0.99),
        server_cpu_us_per_admission: server_cpu,
        after_change_p50_ms: percentile(&after, 0.5),
        after_change_p99_ms: percentile(&after, 0.99),
        during_import_per_sec: during.admitted.len() as f64 / during.seconds,
        during_import_p99_ms: percentile(&during.admitted, 0.99),
        during_import_keys: during.keys,
        during_import_lines_per_sec: during.keys as f64 / during.import_seconds,
        failed_admissions: cold_failed + steady_failed + after_failed + during.failed,
        page_ms,
        page_bytes: page.len(),
        search_ms,
        show_ms,
        show_bytes: show.len(),
    })
}

/// Keys per import in the "during an import" phase.
const DURING_IMPORT: usize = 10_000;

struct DuringImports {
    admitted: Vec<f64>,
    failed: usize,
    seconds: f64,
    keys: usize,
    import_seconds: f64,
}

/// Admissions while `keygate room allow` imports lists of [`DURING_IMPORT`] new keys
/// into the room, one after another until two seconds have passed.
async fn during_imports(
    url: &str,
    room: &str,
    keys: &[Arc<ProofSigner>],
    clients: usize,
    db: &str,
    list: &std::path::Path,
) -> Result<DuringImports, BenchError> {
    let mut lists = Vec::new();
    for round in 0..10 {
        let path = list.with_extension(format!("more{round}.txt"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(setup)?);
        for i in 0..DURING_IMPORT {
            writeln!(file, "{}  more-{round}-{i}", random_member()).map_err(setup)?;
        }
        file.flush().map_err(setup)?;
        lists.push(path.to_string_lossy().into_owned());
    }
    let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let importer = {
        let (room, db, remaining) = (room.to_owned(), db.to_owned(), remaining.clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let mut imported = 0;
            let mut result = Ok(());
            for list in &lists {
                if let Err(e) = keygate(&["room", "allow", &room, list, "--db", &db]).await {
                    result = Err(e);
                    break;
                }
                imported += DURING_IMPORT;
                if t.elapsed().as_secs_f64() >= 2.0 {
                    break;
                }
            }
            remaining.store(0, std::sync::atomic::Ordering::Release);
            result.map(|()| (imported, t.elapsed().as_secs_f64()))
        })
    };
    let t = Instant::now();
    let (admitted, failed) = admit_while(url, room, keys, clients, remaining).await;
    let seconds = t.elapsed().as_secs_f64();
    let (imported, import_seconds) = importer.await.map_err(setup)??;
    eprintln!(
        "during imports: {imported} keys in {import_seconds:.2} s; {:.0} admissions/s",
        admitted.len() as f64 / seconds
    );
    Ok(DuringImports { admitted, failed, seconds, keys: imported, import_seconds })
}

pub async fn run_whitelist(opts: WhitelistOptions) -> Result<WhitelistReport, BenchError> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if opts.method == Method::Webauthn {
        return Err(setup(
            "--whitelist measures webcrypto, ssh, eth or piv (a passkey must be registered with a running server)",
        ));
    }
    let method = opts.method;
    let seconds = opts.verify_seconds;
    let rates = tokio::task::spawn_blocking(move || raw_rates(method, seconds)).await.map_err(setup)??;
    // The clients' keys: at most one per client, shared when a list is shorter.
    let distinct = opts.clients.clamp(1, opts.sizes.iter().copied().min().unwrap_or(1).max(1));
    let keys: Vec<Arc<ProofSigner>> =
        (0..distinct).map(|_| ProofSigner::generate(method).map(Arc::new)).collect::<Result<_, _>>().map_err(setup)?;
    let mut rows = Vec::new();
    for &n in &opts.sizes {
        rows.push(one_size(n, &opts, &keys).await?);
    }
    Ok(WhitelistReport {
        method: method.as_str(),
        primitive: primitive(method),
        clients: opts.clients,
        raw_verify_per_sec: rates.verify,
        rows,
    })
}
