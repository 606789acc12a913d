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
//! cost of a run ([`SyncStats`]), and the two questions the store answers
//! for it ([`SyncRecords`], [`LeafFingerprints`]; answered in `store.rs`,
//! which alone reads the store's records). The lines travel sealed, through
//! the connection's [`PeerCodec`](crate::seal::PeerCodec).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};

use crate::codec::Frame;
use crate::digest::{self, nodes_at, Plan, DEPTH, LEAVES};
use crate::handshake::PeerFramed;
use crate::protocol::fields;
use crate::record::SharedRecord;
use crate::store::{GetDigest, LocationStoreActor};

/// The records a peer may lack, found by a sync's walk down the digest tree
/// (see `digest.rs`): every record under the `whole` nodes, and every record
/// of a listed leaf whose fingerprint is not among the peer's.
#[derive(Message)]
#[rtype(result = "Vec<SharedRecord>")]
pub struct SyncRecords {
    /// `(level, node)`: the peer holds nothing there.
    pub whole: Vec<(u8, usize)>,
    /// Leaf -> the fingerprints of the peer's records in it.
    pub leaves: HashMap<usize, HashSet<u64>>,
}

/// The fingerprints of this store's records in each of `leaves`, in the
/// order asked.
#[derive(Message)]
#[rtype(result = "Vec<(usize, Vec<u64>)>")]
pub struct LeafFingerprints {
    pub leaves: Vec<usize>,
}

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
    /// A request line of this verb with a field out of range.
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

    /// Reads the lines of one answer up to `END`: each must start with
    /// `verb`, and `take` is given the rest of its fields; a line of any
    /// other kind, or one `take` refuses (`None`), ends the sync.
    async fn read_block(
        &mut self,
        verb: &[u8],
        mut take: impl FnMut(&mut dyn Iterator<Item = &[u8]>) -> Option<()>,
    ) -> Result<(), SyncError> {
        self.stats.rounds += 1;
        loop {
            let line = self.read().await?;
            let mut parts = fields(&line);
            match parts.next() {
                Some(b"END") => return Ok(()),
                Some(v) if v == verb && take(&mut parts).is_some() => {}
                _ => return Err(unexpected(&line)),
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

/// Parses a decimal field.
fn number(field: Option<&[u8]>) -> Option<usize> {
    std::str::from_utf8(field?).ok()?.parse().ok()
}

/// Appends `VERB id id ...` to `out` as one line.
fn id_line(out: &mut String, verb: &str, ids: &[usize]) {
    use std::fmt::Write;
    out.push_str(verb);
    for id in ids {
        let _ = write!(out, " {id}");
    }
    out.push('\n');
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
        let mut request = String::new();
        if !plan.want.is_empty() {
            let want = std::mem::take(&mut plan.want);
            id_line(&mut request, &format!("WANT {}", plan.want_level), &want);
            wire.write(Bytes::from(request)).await?;
            read_sums(&mut wire, &mine, &mut plan).await?;
        } else if !plan.keys.is_empty() {
            let keys = std::mem::take(&mut plan.keys);
            id_line(&mut request, "KEYS", &keys);
            wire.write(Bytes::from(request)).await?;
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
    chunk.extend_from_slice(format!("SYNCED {}\n", records.len()).as_bytes());
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
    wire.read_block(b"SUMS", |parts| {
        let level = number(parts.next()).filter(|&l| l < usize::from(DEPTH))?;
        let node = number(parts.next()).filter(|&n| n < nodes_at(level as u8))?;
        let sums = parts.next().and_then(digest::from_hex)?;
        plan.compare(mine, level as u8, node, &sums);
        Some(())
    })
    .await
}

/// Reads `FPS <leaf> [<hex>]` lines up to `END`.
async fn read_fingerprints(
    wire: &mut SyncWire<'_>,
    leaves: &mut HashMap<usize, HashSet<u64>>,
) -> Result<(), SyncError> {
    wire.read_block(b"FPS", |parts| {
        let leaf = number(parts.next()).filter(|&l| l < LEAVES)?;
        let fps = digest::from_hex(parts.next().unwrap_or(b""))?;
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
    answer.extend_from_slice(b"END\n");
    wire.write(answer.split().freeze()).await?;
    loop {
        let line = wire.read().await?;
        let mut parts = fields(&line);
        let verb = parts.next();
        if verb != Some(b"WANT") && verb != Some(b"KEYS") {
            wire.stats.elapsed = started.elapsed();
            return Ok((wire.stats, line.clone()));
        }
        match verb {
            Some(b"WANT") => {
                let level = number(parts.next())
                    .filter(|&l| l < usize::from(DEPTH))
                    .ok_or(SyncError::Malformed("WANT"))?;
                for part in parts {
                    let node = number(Some(part))
                        .filter(|&n| n < nodes_at(level as u8))
                        .ok_or(SyncError::Malformed("WANT"))?;
                    push_sums(&mut answer, &digest, level as u8, node);
                }
            }
            Some(b"KEYS") => {
                let leaves = parts
                    .map(|p| number(Some(p)).filter(|&l| l < LEAVES))
                    .collect::<Option<Vec<usize>>>()
                    .ok_or(SyncError::Malformed("KEYS"))?;
                let found = store
                    .send(LeafFingerprints { leaves })
                    .await
                    .map_err(|_| SyncError::StoreUnavailable)?;
                push_fingerprints(&mut answer, &found);
            }
            _ => {}
        }
        answer.extend_from_slice(b"END\n");
        wire.stats.rounds += 1;
        wire.write(answer.split().freeze()).await?;
    }
}

/// Appends `SUMS <level> <node> <hex of the children's sums>`.
fn push_sums(out: &mut BytesMut, digest: &digest::Digest, level: u8, node: usize) {
    let sums = digest.children(level, node);
    out.extend_from_slice(format!("SUMS {level} {node} {}\n", digest::to_hex(&sums)).as_bytes());
}

/// Appends `FPS <leaf> [<hex of its records' fingerprints>]` per leaf.
fn push_fingerprints(out: &mut BytesMut, found: &[(usize, Vec<u64>)]) {
    for (leaf, fps) in found {
        out.extend_from_slice(format!("FPS {leaf}").as_bytes());
        if !fps.is_empty() {
            out.extend_from_slice(b" ");
            out.extend_from_slice(digest::to_hex(fps).as_bytes());
        }
        out.extend_from_slice(b"\n");
    }
}
