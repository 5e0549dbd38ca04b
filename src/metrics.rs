//! What operators scrape at `/metrics`: OpenMetrics text from prometheus-client,
//! every series with its HELP line.
//!
//! - `keygate_proofs_total{method, outcome}`: answers to challenges (joining,
//!   tickets, resumes, confirmations, sign-ins, invites), `admitted`, `refused` or
//!   `error` (the server could not check it);
//! - `keygate_admission_duration_seconds{method}`: from an answer's arrival to its
//!   decision, whitelist lookup and signature included;
//! - `keygate_signature_check_duration_seconds{method}`: the signature check alone;
//! - the connection, admission and limit counters and gauges, and the process's
//!   memory and CPU time, read at each scrape.

use crate::gateway::Stats;
use crate::rooms::Rooms;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Proof {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByMethod {
    method: &'static str,
}

/// The registry and the series observed as things happen.
pub struct Metrics {
    registry: Registry,
    proofs: Family<Proof, Counter>,
    admission: Family<ByMethod, Histogram>,
    signature: Family<ByMethod, Histogram>,
    /// The SFU, once the gateway has one: its rooms and sessions are read at scrape time.
    sfu: Arc<std::sync::OnceLock<Arc<crate::sfu::relay::Sfu>>>,
}

/// How a proof ended, as the `outcome` label says it.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Admitted,
    Refused,
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Admitted => "admitted",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

// 16 buckets doubling: 100 µs … 3.3 s for admissions (a whitelist lookup on a cold
// million-key list included), 50 µs … 1.6 s for signature checks.
fn admission_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

fn signature_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Metrics {
    pub fn new(stats: Arc<Stats>, rooms: Arc<Rooms>) -> Self {
        let mut registry = Registry::default();
        let proofs = Family::<Proof, Counter>::default();
        let admission = Family::<ByMethod, Histogram>::new_with_constructor(admission_buckets as fn() -> Histogram);
        let signature = Family::<ByMethod, Histogram>::new_with_constructor(signature_buckets as fn() -> Histogram);
        registry.register("keygate_proofs", "Answers to challenges, by method and outcome", proofs.clone());
        registry.register(
            "keygate_admission_duration_seconds",
            "Time from an answer's arrival to its decision (whitelist lookup and signature check included)",
            admission.clone(),
        );
        registry.register(
            "keygate_signature_check_duration_seconds",
            "Time spent checking one signature (or attestation chain)",
            signature.clone(),
        );
        let sfu = Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(Live { stats, rooms, sfu: sfu.clone() }));
        Metrics { registry, proofs, admission, signature, sfu }
    }

    /// Reports the SFU's rooms and sessions from now on.
    pub fn use_sfu(&self, sfu: Arc<crate::sfu::relay::Sfu>) {
        let _ = self.sfu.set(sfu);
    }

    /// Counts an answer and how long its decision took.
    pub fn proof(&self, method: &'static str, outcome: Outcome, took: Duration) {
        self.proofs.get_or_create(&Proof { method, outcome: outcome.label() }).inc();
        self.admission.get_or_create(&ByMethod { method }).observe(took.as_secs_f64());
    }

    /// Records one signature check's time.
    pub fn signature(&self, method: &'static str, took: Duration) {
        self.signature.get_or_create(&ByMethod { method }).observe(took.as_secs_f64());
    }

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Values read at scrape time.
struct Live {
    stats: Arc<Stats>,
    rooms: Arc<Rooms>,
    sfu: Arc<std::sync::OnceLock<Arc<crate::sfu::relay::Sfu>>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        gauge(
            &mut e,
            "keygate_connections",
            "Open WebSocket connections, admitted or not",
            count(s.connections.get()),
        )?;
        gauge(
            &mut e,
            "keygate_unadmitted_connections",
            "WebSocket connections not yet admitted",
            count(s.unadmitted.count()),
        )?;
        gauge(
            &mut e,
            "keygate_http_connections",
            "Open HTTP connections (upgrades excluded)",
            count(s.http_connections.get()),
        )?;
        gauge(&mut e, "keygate_admitted_peers", "Admitted peers in rooms now", count(self.rooms.peer_count()))?;
        counter(&mut e, "keygate_admissions", "Peers admitted to rooms", s.admissions.load(Ordering::Relaxed))?;
        if let Some(bus) = self.rooms.bus() {
            let (sent, received) = bus.messages();
            counter(&mut e, "keygate_bus_sent", "Messages this server published on the bus", sent)?;
            counter(&mut e, "keygate_bus_received", "Messages this server received from the bus", received)?;
        }
        if let Some(sfu) = self.sfu.get() {
            let (rooms, sessions) = sfu.counts();
            gauge(&mut e, "keygate_sfu_rooms", "Rooms of this server on Janus now", count(rooms))?;
            gauge(&mut e, "keygate_sfu_sessions", "Peers of this server with a Janus session now", count(sessions))?;
        }
        counter(&mut e, "keygate_refusals", "Proofs refused (all roads)", s.refusals.load(Ordering::Relaxed))?;
        counter(
            &mut e,
            "keygate_signature_checks",
            "Signature checks run (an unknown key costs none)",
            s.signature_checks.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "keygate_limited",
            "Connections and requests turned away by a limit",
            s.limited.load(Ordering::Relaxed),
        )?;
        let memory =
            ConstGauge::new(i64::try_from(crate::web::resident_memory_bytes().unwrap_or(0)).unwrap_or(i64::MAX));
        memory.encode(e.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            memory.metric_type(),
        )?)?;
        let cpu = ConstCounter::new(crate::web::cpu_seconds().unwrap_or(0.0));
        cpu.encode(e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        Ok(())
    }
}
