//! A [`Record`]: where one client said it was, as the herd stores and floods it,
//! and the rule of SPEC §3 "Which record wins".
//!
//! A record is kept as the exact `AT` line its origin server answered, plus the
//! client's [`Timestamp`] parsed from it. Everything else (origin, diff,
//! client, location) is a view into that line, so a WHATSAT can answer with the
//! origin's line byte for byte and a flood is one copy of it. The line lives in
//! one heap allocation shared by `Arc` between the store and every peer buffer.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::protocol::{self, Command, Diff, Location, Timestamp};

/// One client's reported position, immutable once made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The client's own time: the first key of the winner order.
    time: Timestamp,
    /// Where each field starts in `line`: origin, diff, client, location, time.
    starts: [u16; 5],
    /// `AT <origin> <diff> <client> <location> <time>`, no newline.
    line: Box<[u8]>,
}

/// A record shared between the store and the peers that flood it.
pub type SharedRecord = Arc<Record>;

/// Why a line could not be taken as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid AT line")]
pub struct InvalidRecord;

impl Record {
    /// Makes the record of an IAMAT received by server `origin` at `received`.
    pub fn from_iamat(origin: &str, received: Timestamp, cmd: &protocol::IAmAt<'_>) -> Record {
        let diff = Diff::between(received, cmd.time);
        let line = protocol::format_at(
            origin.as_bytes(),
            diff,
            cmd.client,
            cmd.location_text,
            cmd.time_text,
        );
        Record::from_line_unchecked(cmd.time, line)
    }

    /// Parses a flooded `AT` line (without newline), checking every field.
    pub fn from_at_line(line: &[u8]) -> Result<Record, InvalidRecord> {
        let Command::At(at) = protocol::parse_line(line) else {
            return Err(InvalidRecord);
        };
        // Normalise the white space so that every server stores the same bytes.
        let canonical = protocol::format_at(
            at.origin,
            at.diff,
            at.client,
            at.location_text,
            at.time_text,
        );
        Ok(Record::from_line_unchecked(at.time, canonical))
    }

    /// Builds a record from a canonical line that is known to be valid.
    fn from_line_unchecked(time: Timestamp, line: Vec<u8>) -> Record {
        let mut starts = [0u16; 5];
        let mut field = 0;
        for (i, pair) in line.windows(2).enumerate() {
            if pair[0] == b' ' && field < 5 {
                // Lines are bounded far below 64 KiB by the field limits.
                starts[field] = (i + 1) as u16;
                field += 1;
            }
        }
        Record {
            time,
            starts,
            line: line.into_boxed_slice(),
        }
    }

    fn field(&self, index: usize) -> &[u8] {
        let start = usize::from(self.starts[index]);
        let end = self
            .starts
            .get(index + 1)
            .map_or(self.line.len(), |&next| usize::from(next) - 1);
        &self.line[start..end]
    }

    /// The whole `AT` line, as the origin answered it (no newline).
    pub fn at_line(&self) -> &[u8] {
        &self.line
    }

    pub fn origin(&self) -> &[u8] {
        self.field(0)
    }

    pub fn diff(&self) -> Diff {
        // The line was validated or formatted by us, so this cannot fail;
        // a zero diff would only ever show up in a debug view.
        Diff::parse(self.field(1)).unwrap_or(Diff::from_nanos(0))
    }

    pub fn client(&self) -> &[u8] {
        self.field(2)
    }

    pub fn location_text(&self) -> &[u8] {
        self.field(3)
    }

    pub fn location(&self) -> Option<Location> {
        Location::parse(self.location_text())
    }

    pub fn time_text(&self) -> &[u8] {
        self.field(4)
    }

    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// The winner order of SPEC §3: the client's time, exactly; equal times
    /// are broken by the rest of the line (origin, then diff, location and the
    /// time's own text), a fixed total order every server computes alike.
    pub fn newness(&self, other: &Record) -> Ordering {
        self.time
            .cmp(&other.time)
            .then_with(|| self.line.cmp(&other.line))
    }

    /// Whether this record should replace `current`.
    pub fn supersedes(&self, current: &Record) -> bool {
        self.newness(current) == Ordering::Greater
    }

    /// A hash of the whole record, the same on every server and every build:
    /// the unit of the catch-up digests.
    pub fn fingerprint(&self) -> u64 {
        fnv1a(&self.line)
    }

    /// Bytes of heap this record holds beyond its `Arc` header.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Record>() + self.line.len()
    }
}

/// 64-bit FNV-1a: tiny, stable across builds and platforms. Used for digests
/// (never for hash tables that a client could flood with collisions).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A [`SharedRecord`] keyed by its client name, so that a `HashSet` of them is
/// a map from client to record without storing the name twice.
#[derive(Debug, Clone)]
pub struct ByClient(pub SharedRecord);

/// The newest record per client. Client names are chosen by clients, so the
/// set keeps the standard library's SipHash with a random key per process,
/// which is built to resist collisions aimed at one bucket (faster hashes
/// such as foldhash claim only minimal resistance; SipHash costs about 2% of
/// a receiving server's time per IAMAT).
pub type RecordSet = std::collections::HashSet<ByClient>;

impl PartialEq for ByClient {
    fn eq(&self, other: &Self) -> bool {
        self.0.client() == other.0.client()
    }
}

impl Eq for ByClient {}

impl Hash for ByClient {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.client().hash(state)
    }
}

impl Borrow<[u8]> for ByClient {
    fn borrow(&self) -> &[u8] {
        self.0.client()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(line: &str) -> Record {
        Record::from_at_line(line.as_bytes()).expect("valid AT line")
    }

    #[test]
    fn views_into_the_line() {
        let r = record(
            "AT Riley +0.263873386 kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503",
        );
        assert_eq!(r.origin(), b"Riley");
        assert_eq!(r.diff(), Diff::from_nanos(263_873_386));
        assert_eq!(r.client(), b"kiwi.cs.ucla.edu");
        assert_eq!(r.location_text(), b"+34.068930-118.445127");
        assert_eq!(r.time_text(), b"1621464827.959498503");
        assert_eq!(r.time(), Timestamp::new(1621464827, 959498503).unwrap());
    }

    #[test]
    fn white_space_is_normalised() {
        let r = record("AT\tRiley  +0.000000001 kiwi +1+1\t7");
        assert_eq!(r.at_line(), b"AT Riley +0.000000001 kiwi +1+1 7");
    }

    #[test]
    fn later_client_time_wins_to_the_nanosecond() {
        let old = record("AT Riley +0.000000000 k +1+1 10.000000001");
        let new = record("AT Riley +0.000000000 k +1+1 10.000000002");
        assert!(new.supersedes(&old));
        assert!(!old.supersedes(&new));
        assert!(!new.supersedes(&new.clone()));
    }

    #[test]
    fn equal_times_pick_the_same_winner_in_any_order() {
        let a = record("AT Bernard +1.000000000 k +1+1 10");
        let b = record("AT Riley +0.000000000 k +1+1 10");
        let c = record("AT Riley +0.000000000 k +2+2 10.0");
        let all = [&a, &b, &c];
        let winner = |order: &[&Record]| {
            order
                .iter()
                .skip(1)
                .fold(
                    order[0],
                    |best, r| if r.supersedes(best) { r } else { best },
                )
                .clone()
        };
        let expected = winner(&all);
        for order in [[&a, &b, &c], [&c, &b, &a], [&b, &a, &c], [&c, &a, &b]] {
            assert_eq!(winner(&order), expected);
        }
    }

    #[test]
    fn iamat_record_carries_exact_diff() {
        let line = b"IAMAT kiwi +34.068930-118.445127 1621464827.959498503";
        let Command::IAmAt(cmd) = protocol::parse_line(line) else {
            panic!("not IAMAT");
        };
        let received = Timestamp::new(1621464828, 223371889).unwrap();
        let r = Record::from_iamat("Riley", received, &cmd);
        assert_eq!(
            r.at_line(),
            b"AT Riley +0.263873386 kiwi +34.068930-118.445127 1621464827.959498503"
        );
    }

    #[test]
    fn fingerprint_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
