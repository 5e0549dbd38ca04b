//! Rooms beyond the mesh: a selective forwarding unit (Janus's VideoRoom) carries
//! the media of big calls. keygate drives Janus over its API on loopback
//! ([`janus`]); browsers reach Janus only for media, through sessions keygate
//! opened for the peers it admitted.

pub mod janus;
pub mod relay;
