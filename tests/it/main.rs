//! The integration tests, as one test binary (one link instead of one per file):
//! each module drives the real server, real clients and real tools for one area.
//! Tests may unwrap and panic: a failure is the test's result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod admission;
mod browser;
mod call;
mod call_protocol;
mod cli;
mod data_safety;
mod deploy;
mod e2ee;
mod eth_method;
mod fuzz_corpus;
mod host_pages;
mod identity_formats;
mod keepalive;
mod large_lists;
mod load_tool;
mod many_nodes;
mod no_secrets_in_logs;
mod node_webcrypto;
mod observability;
mod packaging;
mod piv_method;
mod piv_native;
mod properties;
mod security_limits;
mod settings;
mod sfu;
mod ssh_agent;
mod ssh_method;
mod turn;
mod webauthn_method;
mod whitelist_before_crypto;
mod wycheproof_p256;
