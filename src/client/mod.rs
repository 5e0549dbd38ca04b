//! Clients of protocol v1: what the load tool, the CLI and the tests use to talk to
//! a keygate server, and the signers they prove keys with.

pub mod p256_key;
pub mod ws;
