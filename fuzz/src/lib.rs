//! The fuzz targets' view of the herd: its wire crate, under the names the
//! targets use. Everything a stranger's bytes reach before an actor sees
//! them lives there (docs/fuzzing.md).

pub use herd_wire::{codec, digest, peer_line, protocol, record, seal, text};
