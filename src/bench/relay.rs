//! `keygate bench --relay RATE,…`: how long a `signal` takes from one peer to
//! another through the server, at a given total message rate.
//!
//! Each pair is a room of two admitted peers; one sends `signal` frames to the other
//! at [`PER_PAIR`] messages per second (a call's SDP/ICE traffic is far less; it stays
//! under the per-connection limit), so a total rate of R uses ⌈R / 40⌉ pairs.
//! Latency is measured in one process with one clock: the sender stamps each frame
//! with the microseconds since the run began, the receiver subtracts it on arrival.

use super::{metric_sum, percentile, spawn_server, BenchError};
use crate::client::p256_key::P256Key;
use crate::client::ws::Client;
use serde::Serialize;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Messages per second one sender sends.
pub const PER_PAIR: usize = 40;

pub struct RelayOptions {
    /// Total messages per second for each run.
    pub rates: Vec<usize>,
    pub seconds: f64,
    /// Running servers of one service (empty: start one): senders connect to the
    /// first, receivers to the last, so with two the relay crosses the bus.
    pub urls: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RelayRow {
    pub target_per_sec: usize,
    pub pairs: usize,
    pub sent: usize,
    pub received: usize,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Server CPU per relayed message, from their /metrics (summed over servers).
    pub server_cpu_us_per_message: Option<f64>,
    /// Bus messages the servers published per relayed message (with a bus).
    pub bus_messages_per_message: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct RelayReport {
    pub per_pair_per_sec: usize,
    pub seconds: f64,
    pub rows: Vec<RelayRow>,
}

impl RelayReport {
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| messages/s asked | pairs | relayed | messages/s | p50 | p99 | max | server CPU per message | bus messages per message |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            out += &format!(
                "| {} | {} | {}/{} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} |\n",
                r.target_per_sec,
                r.pairs,
                r.received,
                r.sent,
                r.per_sec,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.server_cpu_us_per_message.map_or("-".to_owned(), |us| format!("{us:.1} µs")),
                r.bus_messages_per_message.map_or("-".to_owned(), |m| format!("{m:.2}")),
            );
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One sender and one receiver, both admitted to their own room.
struct Pair {
    sender: Client,
    receiver: Client,
    to: String,
}

async fn pair(sender_url: &str, receiver_url: &str) -> Result<Pair, BenchError> {
    let setup = |e: &dyn std::fmt::Display| BenchError::Setup(e.to_string());
    let key = P256Key::generate().map_err(|e| setup(&e))?;
    let (room, mut sender) = super::create_room(sender_url, &[key.public_jwk().to_string()]).await?;
    let mut receiver = Client::connect(receiver_url).await?;
    let welcome = receiver.join_webcrypto(json!({"type": "request", "roomId": room}), &key).await?;
    let to = welcome["peerId"].as_str().ok_or_else(|| setup(&"welcome without peerId"))?.to_owned();
    sender.expect("peer-joined").await?;
    receiver.timeout = Duration::from_secs(5);
    Ok(Pair { sender, receiver, to })
}

pub async fn run_relay(opts: RelayOptions) -> Result<RelayReport, BenchError> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let most = opts.rates.iter().copied().max().unwrap_or(PER_PAIR).div_ceil(PER_PAIR);
    let (_server, urls) = match opts.urls.as_slice() {
        [] => {
            let (s, u) = spawn_server(2 * most + 64).await?;
            (Some(s), vec![u])
        }
        given => (None, given.to_vec()),
    };
    let (from, to) = (&urls[0], &urls[urls.len() - 1]);
    eprintln!("keygate bench --relay from {from} to {to}");
    let mut rows = Vec::new();
    for &rate in &opts.rates {
        let pairs = rate.div_ceil(PER_PAIR).max(1);
        let mut ready = Vec::with_capacity(pairs);
        for _ in 0..pairs {
            ready.push(pair(from, to).await?);
        }
        let row = relay_phase(&urls, ready, rate, opts.seconds).await?;
        eprintln!(
            "relay: {} pairs, {:.0} messages/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            row.pairs, row.per_sec, row.p50_ms, row.p99_ms, row.max_ms
        );
        rows.push(row);
    }
    Ok(RelayReport { per_pair_per_sec: PER_PAIR, seconds: opts.seconds, rows })
}

async fn relay_phase(urls: &[String], pairs: Vec<Pair>, rate: usize, seconds: f64) -> Result<RelayRow, BenchError> {
    let count = pairs.len();
    let per_pair = (seconds * PER_PAIR as f64).round() as usize;
    let period = Duration::from_secs_f64(1.0 / PER_PAIR as f64);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(per_pair * count)));
    let cpu_before = metric_sum(urls, "process_cpu_seconds_total").await;
    let bus_before = metric_sum(urls, "keygate_bus_sent_total").await;
    let base = Instant::now();
    let mut tasks = Vec::new();
    for (i, Pair { mut sender, mut receiver, to }) in pairs.into_iter().enumerate() {
        // Senders start spread over one period, so the load is even, not in bursts.
        let offset = period.mul_f64(i as f64 / count as f64);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(base + offset), period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sent = 0;
            for seq in 0..per_pair {
                tick.tick().await;
                let at = base.elapsed().as_micros() as u64;
                if sender.send(&json!({"type": "signal", "to": to, "data": {"seq": seq, "at": at}})).await.is_err() {
                    break;
                }
                sent += 1;
            }
            // Keep the sender open until its messages are read.
            (sender, sent)
        }));
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(per_pair);
            while mine.len() < per_pair {
                match receiver.recv().await {
                    Ok(frame) if frame["type"] == "signal" => {
                        let at = frame["data"]["at"].as_u64().unwrap_or(0);
                        mine.push((base.elapsed().as_micros() as u64).saturating_sub(at) as f64 / 1000.0);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if let Ok(mut l) = latencies.lock() {
                l.extend(mine);
            }
            (receiver, 0)
        }));
    }
    let mut sent = 0;
    let mut open = Vec::new();
    for t in tasks {
        let (client, n) = t.await.map_err(|e| BenchError::Setup(e.to_string()))?;
        sent += n;
        open.push(client);
    }
    let elapsed = base.elapsed().as_secs_f64();
    let cpu_after = metric_sum(urls, "process_cpu_seconds_total").await;
    let bus_after = metric_sum(urls, "keygate_bus_sent_total").await;
    for c in open {
        c.close().await;
    }
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_by(|a, b| a.total_cmp(b));
    let received = lat.len();
    Ok(RelayRow {
        target_per_sec: rate,
        pairs: count,
        sent,
        received,
        per_sec: received as f64 / elapsed,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        server_cpu_us_per_message: match (cpu_before, cpu_after) {
            (Some(b), Some(a)) if received > 0 => Some((a - b) * 1e6 / received as f64),
            _ => None,
        },
        bus_messages_per_message: match (bus_before, bus_after) {
            (Some(b), Some(a)) if received > 0 => Some((a - b) / received as f64),
            _ => None,
        },
    })
}
