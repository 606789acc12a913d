//! Why a server did not start: one type for the wiring (`server.rs`) and
//! the admin listener (`admin.rs`), apart from both, so that neither has to
//! import the other for it.

use std::net::SocketAddr;

use crate::journal::JournalError;

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot serve admin on {addr}: {source}")]
    ServeAdmin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The places provider refused its configuration.
    #[error("{0}")]
    Places(String),
}
