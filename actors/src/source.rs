//! Where an update came from: a client of this server, a neighbour's flood
//! or a catch-up sync. The store keeps and logs the whole [`Source`]; the
//! metrics count updates by its [`SourceKind`]. Both live here, apart from
//! either, so that neither imports the other for them.

use std::sync::Arc;

/// Where an update came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A client of this server (an IAMAT).
    Client,
    /// A neighbour, by name: the flood does not go back to it.
    Peer(Arc<str>),
    /// A catch-up sync from a neighbour.
    Sync(Arc<str>),
}

/// How an update's log line names where it came from: `a client`,
/// `Riley`, `Riley (sync)`.
impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, how) = self.described();
        f.write_str(name)?;
        f.write_str(how)
    }
}

impl Source {
    /// How a log line names it, in two pieces: `("a client", "")`,
    /// `("Riley", "")`, `("Riley", " (sync)")`.
    pub(crate) fn described(&self) -> (&str, &'static str) {
        match self {
            Source::Client => ("a client", ""),
            Source::Peer(name) => (name, ""),
            Source::Sync(name) => (name, " (sync)"),
        }
    }

    pub(crate) fn peer(&self) -> Option<&str> {
        match self {
            Source::Client => None,
            Source::Peer(name) | Source::Sync(name) => Some(name),
        }
    }

    /// The source without the neighbour's name, as the metrics count it.
    pub fn kind(&self) -> SourceKind {
        match self {
            Source::Client => SourceKind::Client,
            Source::Peer(_) => SourceKind::Peer,
            Source::Sync(_) => SourceKind::Sync,
        }
    }
}

/// Where an update came from, without the neighbour's name: what the
/// `updates_*` counters are split by (the store's `Source` has the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A client of this server (an IAMAT).
    Client,
    /// A neighbour's flood.
    Peer,
    /// A catch-up sync from a neighbour.
    Sync,
}

impl SourceKind {
    /// The `source` label of the update counters.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Client => "client",
            SourceKind::Peer => "peer",
            SourceKind::Sync => "sync",
        }
    }
}
