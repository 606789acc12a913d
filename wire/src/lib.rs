//! The herd's wire formats, with no I/O: what arrives from a client, a peer
//! or the journal is parsed here, and what the herd writes is formatted here.
//!
//! | SPEC | file |
//! |------|------|
//! | §3 lines, fields, IAMAT, WHATSAT, `?` | `protocol.rs` |
//! | §3 which record wins | `record.rs` |
//! | §3 line framing, overlong lines | `codec.rs` |
//! | §4 every peer line: handshake, floods, sync, anti-entropy | `peer_line.rs` |
//! | §4 the sealed peer wire | `seal.rs` |
//! | §4 digest trees (sync, anti-entropy) | `digest.rs` |
//! | logs: escaping what strangers send | `text.rs` |
//!
//! The actors crate re-exports these modules under the same names, and the
//! fuzz targets depend on this crate alone.

pub mod codec;
pub mod digest;
pub mod peer_line;
pub mod protocol;
pub mod record;
pub mod seal;
pub mod text;
