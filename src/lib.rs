//! keygate: a signaling server for WebRTC rooms that admits only the holders of
//! whitelisted keys.
//!
//! # Layout
//!
//! ```text
//! main.rs ─▶ cli ─▶ server (bind, accept loop with caps and header timeout, upkeep, drain)
//!                     └─▶ web::router: one router per feature, merged; one web::Error
//!                          ├─ pages, auth (sign-in), host (room pages), invites, passkeys
//!                          ├─ call    GET /r/{room}: static/call.js, rtc.js, identity.js
//!                          ├─ socket  GET /ws ─▶ signal::session::run (frames, relay, confirmations)
//!                          └─ ops     /healthz, /metrics
//!
//! gateway:   the shared state, built once from the settings
//! admission: THE proof pipeline: issue(purpose, asks) → Issued; redeem(answer) →
//!            Admitted | Refused{reason for the audit log, what the client may be told}.
//!            The socket, sign-in, invites and confirmations all go through it.
//! whitelist: THE service for every change to who may enter (owners now, change +
//!            audit row in one transaction); live rooms learn changes only from the
//!            change log (rooms::Rooms::catch_up)
//! rooms:     live peers and each room's cached whitelist
//! protocol:  every frame of /ws, and the error codes
//! challenge: the bytes of a challenge (payload, nonce, freshness check)
//! verify:    one pure Verifier per method: proof → Claim{identity, signed bytes} → check;
//!            verify/webauthn is WebAuthn's one home (relying party, verifier, assertions)
//! tickets:   one-time tickets for native clients (state the pipeline redeems)
//! limits:    per-client budgets (rate, pending entries, unadmitted sockets), slots that release on drop
//! identity:  every key format → one normalized Identity (did:key / did:pkh)
//! store:     SQLite: rooms, whitelists, audit, credentials, the change log
//! client:    protocol clients and signers (ssh-agent, key files, PIV cards), shared by
//!            the CLI, the load tool and tests
//! bench:     the load tool (`keygate bench`)
//! fuzzing:   the fuzz targets' bodies and properties (fuzz/, and the corpus replay test)
//! ```
//!
//! # The path of an admission
//!
//! A socket sends `request`; the session asks [`admission`] for a challenge, which
//! keeps its exact bytes. The client signs them and sends `auth`. The pipeline takes
//! the challenge (once, on this connection, for this room), checks it is fresh, asks
//! the method's [`verify::Verifier`] who claims to have signed — parsing only — and
//! looks that identity up in the room's cached whitelist. Only a whitelisted
//! identity costs a signature check. Then the session seats the peer, the others
//! hear `peer-joined`, and every outcome goes to the audit log.

pub mod admission;
pub mod bench;
pub mod bus;
pub mod challenge;
pub mod cli;
pub mod client;
pub mod config;
pub mod fuzzing;
pub mod gateway;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod resume;
pub mod rooms;
pub mod sealed;
pub mod server;
pub mod sfu;
pub mod signal;
pub mod store;
pub mod tickets;
pub mod verify;
pub mod web;
pub mod whitelist;
