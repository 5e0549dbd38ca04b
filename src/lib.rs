//! keygate: a signaling server for WebRTC rooms that admits only the holders of
//! whitelisted keys.
//!
//! # Layout
//!
//! ```text
//! main.rs ─▶ cli ─▶ web::Server ─▶ web::serve (accept loop: caps, header timeout) ─▶ web::app (axum Router)
//!                                   ├─ GET /, /rooms…, /i/…  host pages and invites (askama)
//!                                   ├─ GET /r/{room}  the call page (static/call.js, rtc.js, identity.js)
//!                                   ├─ GET /ws    signal::session::run ─┬─ admission: challenge (nonce, freshness)
//!                                   │                                   │    + verify (pure: Verifier per method)
//!                                   │                                   ├─ signal::rooms (live peers, whitelist cache)
//!                                   │                                   ├─ reverify, whitelist, relay
//!                                   │                                   ├─ signal::ice (TURN credentials in welcome)
//!                                   │                                   └─ store      (SQLite: rooms, whitelist, audit)
//!                                   └─ GET /metrics
//! cli::native: keygate join | sign | identity --ssh/--piv/--key-file (a browser cannot reach those keys)
//! whitelist: THE service for every change to who may enter (owners now, change + audit row in one transaction)
//! limits:   per-client budgets (rate, pending entries, unadmitted sockets) and slots that release on drop
//! identity: every key format → one normalized Identity (did:key / did:pkh)
//! client:   protocol clients and signers (ssh-agent, key files, PIV cards), shared by the CLI, the load tool and tests
//! bench:    the load tool (`keygate bench`)
//! ```
//!
//! # The path of an admission
//!
//! A socket sends `request`; the session issues a challenge whose exact bytes it
//! keeps. The client signs them and sends `auth`. The session redeems the
//! challenge (once, on this connection, for this room, while fresh), asks the
//! method's [`verify::Verifier`] who claims to have signed — parsing only — and
//! looks that identity up in the room's cached whitelist. Only a whitelisted
//! identity costs a signature check. Then the peer joins the room, the others hear
//! `peer-joined`, and every outcome goes to the audit log.

pub mod admission;
pub mod bench;
pub mod challenge;
pub mod cli;
pub mod client;
pub mod config;
pub mod gateway;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod server;
pub mod signal;
pub mod store;
pub mod tickets;
pub mod verify;
pub mod web;
pub mod whitelist;
