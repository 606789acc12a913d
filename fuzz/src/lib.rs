//! The herd's pure parsers, compiled here straight from `actors/src` so the
//! fuzz targets test the very code the server runs, without building the
//! rest of the actors crate under sanitizers (see Cargo.toml).
//!
//! Each file keeps its place in the crate tree (`crate::protocol`,
//! `crate::record`, ...), so its own `use crate::...` lines resolve here as
//! they do in `herd_actors`. A file that starts using another module of the
//! actors crate must be added here too, or the fuzz build says so.

#[path = "../../actors/src/codec.rs"]
pub mod codec;
#[path = "../../actors/src/digest.rs"]
pub mod digest;
#[path = "../../actors/src/handshake.rs"]
pub mod handshake;
#[path = "../../actors/src/metrics.rs"]
pub mod metrics;
#[path = "../../actors/src/protocol.rs"]
pub mod protocol;
#[path = "../../actors/src/record.rs"]
pub mod record;
#[path = "../../actors/src/seal.rs"]
pub mod seal;
