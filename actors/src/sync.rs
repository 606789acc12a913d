//! The catch-up sync, both sides (SPEC §4; wire format in
//! docs/peer-protocol.md): what runs on every new peer link after the
//! handshake and before the floods.
//!
//! The acceptor ([`answer_sync`], run by the peer listener) sends the sums
//! of its digest tree's first level; the dialer ([`dial_sync`], run by the
//! [`PeerActor`](crate::peer::PeerActor)) compares them with its own
//! ([`crate::digest::Plan`]) and asks, round by round, for the children of
//! the nodes that differ (`WANT`), then for the record fingerprints of the
//! leaves that differ (`KEYS`). It then sends, as ordinary `AT` lines,
//! exactly the records the acceptor lacks or holds in another version,
//! ending with `SYNCED <count>`; the far store keeps what is newer and
//! ignores the rest. Since both ends dial each other, each end pushes what
//! the other lacks, and a server that restarted empty is refilled without
//! waiting for new traffic. The cost follows the difference: ten differing
//! records among a million cost a few kilobytes and five round trips
//! (BENCHMARKS.md, "Sync and durability").
//!
//! This file owns the protocol: the wire with its deadlines and byte counts
//! (`SyncWire`), reading and writing the `SUMS` and `FPS` blocks, the
//! cost of a run ([`SyncStats`]); the two questions it asks the store
//! ([`SyncRecords`], [`LeafFingerprints`]) are the store's messages, in
//! `store.rs`, which alone reads the store's records. The lines travel sealed, through
//! the connection's [`PeerCodec`](crate::seal::PeerCodec).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};

use crate::codec::Frame;
use crate::digest::{self, Plan};
use crate::handshake::PeerFramed;
use crate::peer_line::PeerLine;
use crate::store::{GetDigest, LeafFingerprints, LocationStoreActor, SyncRecords};

/// What one catch-up sync cost, as seen by one side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Request-answer round trips (the acceptor's first `SUMS` counts as one).
    pub rounds: u32,
    /// Bytes this side wrote, records included.
    pub bytes_out: u64,
    /// Bytes this side read.
    pub bytes_in: u64,
    /// Records sent.
    pub records: usize,
    pub elapsed: Duration,
}

/// A sync's line-level I/O, with a deadline on every step and byte counts.
/// Why a catch-up sync ended before its end; the link is dropped and dialled
/// again.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("store unavailable")]
    StoreUnavailable,
    #[error("timed out")]
    TimedOut,
    #[error("write timed out")]
    WriteTimedOut,
    #[error("closed")]
    Closed,
    #[error("overlong line")]
    Overlong,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected line {0:?}")]
    Unexpected(String),
    /// A line that is no peer line (the verb or field named).
    #[error("malformed {0}")]
    Malformed(&'static str),
}

struct SyncWire<'a> {
    framed: &'a mut PeerFramed,
    timeout: Duration,
    stats: SyncStats,
}

impl<'a> SyncWire<'a> {
    /// Starts either side of a sync: the store's digest as it is now (one
    /// snapshot, so every answer describes the same store) and the wire.
    async fn open(
        framed: &'a mut PeerFramed,
        store: &Addr<LocationStoreActor>,
        timeout: Duration,
    ) -> Result<(SyncWire<'a>, digest::Digest), SyncError> {
        let digest = store
            .send(GetDigest)
            .await
            .map_err(|_| SyncError::StoreUnavailable)?;
        let wire = SyncWire {
            framed,
            timeout,
            stats: SyncStats::default(),
        };
        Ok((wire, digest))
    }

    /// Reads the lines of one answer up to `END`, each handed to `take`;
    /// a line `take` refuses (`None`), or one that is no peer line, ends the
    /// sync.
    async fn read_block(
        &mut self,
        mut take: impl FnMut(PeerLine<'_>) -> Option<()>,
    ) -> Result<(), SyncError> {
        self.stats.rounds += 1;
        loop {
            let line = self.read().await?;
            let taken = match PeerLine::parse(&line) {
                Ok(PeerLine::End) => return Ok(()),
                Ok(parsed) => take(parsed),
                Err(_) => None,
            };
            if taken.is_none() {
                return Err(unexpected(&line));
            }
        }
    }

    /// The next line; an error on close, overlong line or timeout.
    async fn read(&mut self) -> Result<Bytes, SyncError> {
        match tokio::time::timeout(self.timeout, self.framed.next()).await {
            Err(_) => Err(SyncError::TimedOut),
            Ok(None) => Err(SyncError::Closed),
            Ok(Some(Err(e))) => Err(SyncError::Io(e)),
            Ok(Some(Ok(Frame::Overlong))) => Err(SyncError::Overlong),
            Ok(Some(Ok(Frame::Line(line)))) => {
                self.stats.bytes_in += line.len() as u64 + 1;
                Ok(line)
            }
        }
    }

    /// Writes `bytes` (whole lines) and flushes them.
    async fn write(&mut self, bytes: Bytes) -> Result<(), SyncError> {
        self.stats.bytes_out += bytes.len() as u64;
        match tokio::time::timeout(self.timeout, self.framed.send(bytes)).await {
            Err(_) => Err(SyncError::WriteTimedOut),
            Ok(result) => result.map_err(SyncError::Io),
        }
    }
}

/// Appends `line` to `out`.
fn push(out: &mut BytesMut, line: PeerLine<'_>) {
    out.extend_from_slice(&line.to_bytes());
}

fn unexpected(line: &[u8]) -> SyncError {
    SyncError::Unexpected(crate::text::LogText::clipped(line, 40).to_string())
}

/// The dialer's side of a catch-up sync, from the acceptor's first `SUMS`
/// to our `SYNCED`. See docs/peer-protocol.md.
pub async fn dial_sync(
    framed: &mut PeerFramed,
    store: &Addr<LocationStoreActor>,
    timeout: Duration,
) -> Result<SyncStats, SyncError> {
    let started = Instant::now();
    let (mut wire, mine) = SyncWire::open(framed, store, timeout).await?;
    let mut plan = Plan::default();
    read_sums(&mut wire, &mine, &mut plan).await?;
    let mut leaves: HashMap<usize, HashSet<u64>> = HashMap::new();
    loop {
        // One request line per round, then only reading: neither side ever
        // writes while the other is blocked writing.
        if !plan.want.is_empty() {
            let nodes = std::mem::take(&mut plan.want);
            let want = PeerLine::Want {
                level: plan.want_level,
                nodes,
            };
            wire.write(Bytes::from(want.to_bytes())).await?;
            read_sums(&mut wire, &mine, &mut plan).await?;
        } else if !plan.keys.is_empty() {
            let keys = PeerLine::Keys(std::mem::take(&mut plan.keys));
            wire.write(Bytes::from(keys.to_bytes())).await?;
            read_fingerprints(&mut wire, &mut leaves).await?;
        } else {
            break;
        }
    }
    let whole = std::mem::take(&mut plan.whole);
    let records = store
        .send(SyncRecords { whole, leaves })
        .await
        .map_err(|_| SyncError::StoreUnavailable)?;
    // Records go out in chunks of about 64 KiB, one write each.
    let mut chunk = BytesMut::with_capacity(1 << 16);
    for record in &records {
        chunk.extend_from_slice(record.at_line());
        chunk.extend_from_slice(b"\n");
        if chunk.len() >= 1 << 16 {
            wire.write(chunk.split().freeze()).await?;
        }
    }
    chunk.extend_from_slice(&PeerLine::Synced(records.len() as u64).to_bytes());
    wire.write(chunk.freeze()).await?;
    wire.stats.records = records.len();
    wire.stats.elapsed = started.elapsed();
    Ok(wire.stats)
}

/// Reads `SUMS <level> <node> <hex>` lines up to `END`, comparing each.
async fn read_sums(
    wire: &mut SyncWire<'_>,
    mine: &digest::Digest,
    plan: &mut Plan,
) -> Result<(), SyncError> {
    wire.read_block(|line| {
        let PeerLine::Sums { level, node, sums } = line else {
            return None;
        };
        plan.compare(mine, level, node, &sums);
        Some(())
    })
    .await
}

/// Reads `FPS <leaf> [<hex>]` lines up to `END`.
async fn read_fingerprints(
    wire: &mut SyncWire<'_>,
    leaves: &mut HashMap<usize, HashSet<u64>>,
) -> Result<(), SyncError> {
    wire.read_block(|line| {
        let PeerLine::Fps { leaf, fps } = line else {
            return None;
        };
        leaves.entry(leaf).or_default().extend(fps);
        Some(())
    })
    .await
}

/// The acceptor's side of a catch-up sync: sends the root's children's
/// sums, then answers `WANT` and `KEYS` until the dialer sends anything
/// else (its first record, or `SYNCED`), which is returned for the session
/// to handle. Sums come from one snapshot of the digest taken at the start,
/// so every answer describes the same store; records that arrive meanwhile
/// reach the dialer as floods.
pub async fn answer_sync(
    framed: &mut PeerFramed,
    store: &Addr<LocationStoreActor>,
    timeout: Duration,
) -> Result<(SyncStats, Bytes), SyncError> {
    let started = Instant::now();
    let (mut wire, digest) = SyncWire::open(framed, store, timeout).await?;
    let mut answer = BytesMut::new();
    push_sums(&mut answer, &digest, 0, 0);
    push(&mut answer, PeerLine::End);
    wire.write(answer.split().freeze()).await?;
    loop {
        let line = wire.read().await?;
        match PeerLine::parse(&line) {
            Ok(PeerLine::Want { level, nodes }) => {
                for node in nodes {
                    push_sums(&mut answer, &digest, level, node);
                }
            }
            Ok(PeerLine::Keys(leaves)) => {
                let found = store
                    .send(LeafFingerprints { leaves })
                    .await
                    .map_err(|_| SyncError::StoreUnavailable)?;
                for (leaf, fps) in found {
                    push(&mut answer, PeerLine::Fps { leaf, fps });
                }
            }
            Err(bad) => return Err(SyncError::Malformed(bad.0)),
            Ok(_) => {
                wire.stats.elapsed = started.elapsed();
                return Ok((wire.stats, line));
            }
        }
        push(&mut answer, PeerLine::End);
        wire.stats.rounds += 1;
        wire.write(answer.split().freeze()).await?;
    }
}

/// Appends `SUMS <level> <node> <hex of the children's sums>`.
fn push_sums(out: &mut BytesMut, digest: &digest::Digest, level: u8, node: usize) {
    let sums = digest.children(level, node).to_vec();
    push(out, PeerLine::Sums { level, node, sums });
}
