//! The herd's actors and wire protocol.
//!
//! Data flows one way (SPEC §2): socket -> [`connection::ConnectionActor`] ->
//! [`store::LocationStoreActor`] -> [`peer::PeerActor`]s -> sockets; a WHATSAT
//! goes connection -> store -> [`places::PlacesActor`] -> connection.
//!
//! | SPEC               | file |
//! |--------------------|------|
//! | §3 lines, fields, IAMAT, WHATSAT, `?` | `protocol.rs` (herd-wire) |
//! | §3 which record wins | `record.rs` (herd-wire) |
//! | §3 line framing, overlong lines | `codec.rs` (herd-wire) |
//! | §3 answering in order, closing | `connection.rs` |
//! | §4 every peer line | `peer_line.rs` (herd-wire) |
//! | §4 handshake, versions, topology digests, secret | `handshake.rs` |
//! | §4 sealed peer wire | `seal.rs` (herd-wire) |
//! | §4 links, backoff, buffering, anti-entropy | `peer.rs`, `link.rs`, `peer_session.rs`, `listener.rs` |
//! | §4 catch-up sync | `sync.rs`, `digest.rs` (herd-wire) |
//! | §4 supervision, restart intensity | `supervise.rs` |
//! | §4, §8 which neighbours an update goes to (n−1 receptions) | `tree.rs` |
//! | §5 places | `places/` |
//!
//! This crate reads no files and no command line: the `herd` binary turns
//! Settings.toml into the plain configuration types found here.

pub mod connection;
pub mod handshake;
pub mod link;
pub mod listener;
pub mod metrics;
pub mod output;
pub mod peer;
pub mod peer_session;
pub mod places;
pub mod refusal;
pub mod source;
pub mod store;
pub mod supervise;
pub mod sync;
pub mod tree;

// The wire formats live in the herd-wire crate (no I/O, fuzzed on their own);
// they keep their names here.
pub use herd_wire::{codec, digest, peer_line, protocol, record, seal, text};
