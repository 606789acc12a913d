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
    /// `u16` is wide enough: no valid line exceeds
    /// [`protocol::MAX_AT_LINE_BYTES`], and longer ones are refused.
    starts: [u16; 5],
    /// `AT <origin> <diff> <client> <location> <time>`, no newline.
    line: Box<[u8]>,
    /// [`fnv1a`] of `line`, worked out once: the store's digest takes it
    /// for every record that arrives and every record it replaces.
    fingerprint: u64,
}

/// A record shared between the store and the peers that flood it.
pub type SharedRecord = Arc<Record>;

/// Why a line could not be taken as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid AT line")]
pub struct InvalidRecord;

impl Record {
    /// Makes the record of an IAMAT received by server `origin` at `received`.
    /// Fails only for a line no parser could have produced (a server name
    /// beyond the protocol's bound, or holding a space), never with a
    /// record that misreads.
    pub fn from_iamat(
        origin: &str,
        received: Timestamp,
        cmd: &protocol::IAmAt<'_>,
    ) -> Result<Record, InvalidRecord> {
        let diff = Diff::between(received, cmd.time);
        Record::from_fields(
            cmd.time,
            [
                origin.as_bytes(),
                cmd.client,
                cmd.location_text,
                cmd.time_text,
            ],
            diff,
        )
    }

    /// Parses a flooded `AT` line (without newline), checking every field
    /// with the client rules: neighbours, syncs and the journal all come in
    /// through here.
    pub fn from_at_line(line: &[u8]) -> Result<Record, InvalidRecord> {
        let Command::At(at) = protocol::parse_line(line) else {
            return Err(InvalidRecord);
        };
        // Rewritten with single spaces, so that every server stores the same bytes.
        Record::from_fields(
            at.time,
            [at.origin, at.client, at.location_text, at.time_text],
            at.diff,
        )
    }

    /// Writes the canonical line of `origin, client, location, time` and
    /// `diff` (single spaces, five fields) and notes where each field
    /// starts, from the fields' lengths. A field holding a space (which no
    /// parser yields) or a line too long for the offsets is refused rather
    /// than stored misread.
    fn from_fields(
        time: Timestamp,
        [origin, client, location_text, time_text]: [&[u8]; 4],
        diff: Diff,
    ) -> Result<Record, InvalidRecord> {
        let line = protocol::format_at(origin, diff, client, location_text, time_text);
        // The five spaces written, and none within a field.
        if line.len() > protocol::MAX_AT_LINE_BYTES || memchr::memchr_iter(b' ', &line).count() != 5
        {
            return Err(InvalidRecord);
        }
        // "AT origin diff client location time": each field starts one
        // past the end of the one before it.
        let lengths = [
            b"AT".len(),
            origin.len(),
            diff.text_len(),
            client.len(),
            location_text.len(),
        ];
        let mut starts = [0u16; 5];
        let mut at = 0;
        for (start, length) in starts.iter_mut().zip(lengths) {
            at += length + 1;
            *start = u16::try_from(at).map_err(|_| InvalidRecord)?;
        }
        Ok(Record {
            time,
            starts,
            fingerprint: fnv1a(&line),
            line: line.into_boxed_slice(),
        })
    }

    fn field(&self, index: usize) -> &[u8] {
        let start = usize::from(self.starts[index]);
        let end = self
            .starts
            .get(index + 1)
            .map_or(self.line.len(), |&next| usize::from(next) - 1);
        // Offsets were worked out from this line's field lengths and are
        // increasing; `get` keeps even a broken invariant from becoming a
        // panic.
        self.line.get(start..end).unwrap_or_default()
    }

    /// The client field of `line` if it is a canonical `AT` line (single
    /// spaces, as [`Record::at_line`] writes them): a quick look-up key,
    /// never a check; any other line yields some other slice.
    pub fn client_of_canonical(line: &[u8]) -> &[u8] {
        let mut spaces = memchr::memchr_iter(b' ', line).skip(2);
        match (spaces.next(), spaces.next()) {
            (Some(start), Some(end)) => line.get(start + 1..end).unwrap_or_default(),
            (Some(start), None) => line.get(start + 1..).unwrap_or_default(),
            _ => &[],
        }
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

    /// When the origin received the IAMAT, in nanoseconds since the epoch:
    /// the client's time plus the diff (the origin's clock minus the
    /// client's time), so the same instant on every server.
    pub fn received_nanos(&self) -> i128 {
        self.time.as_nanos() + self.diff().as_nanos()
    }

    /// The winner order of SPEC §3: the client's time, exactly; equal times
    /// are broken by the origin, the location text and the time's own text,
    /// a fixed total order every server computes alike. Two records equal in
    /// all of those are the same update (one IAMAT sent twice to its origin,
    /// received at two moments): the first receipt, the smaller diff, wins,
    /// so a repeat is never new and is neither stored nor flooded, and
    /// servers that somehow hold both receipts still agree on one.
    pub fn newness(&self, other: &Record) -> Ordering {
        self.time
            .cmp(&other.time)
            .then_with(|| self.origin().cmp(other.origin()))
            .then_with(|| self.location_text().cmp(other.location_text()))
            .then_with(|| self.time_text().cmp(other.time_text()))
            .then_with(|| other.diff().cmp(&self.diff()))
    }

    /// Whether this record should replace `current`.
    pub fn supersedes(&self, current: &Record) -> bool {
        self.newness(current) == Ordering::Greater
    }

    /// A hash of the whole record, the same on every server and every build:
    /// the unit of the catch-up digests.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
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
    fn an_iamat_record_views_its_fields_whatever_their_lengths() {
        let line = b"IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 1621464827.959498503";
        let Command::IAmAt(cmd) = protocol::parse_line(line) else {
            panic!("a valid IAMAT");
        };
        // Diffs of both signs and of several lengths, origins short and long.
        for (origin, secs) in [
            ("R", 5),
            ("Campbell", 1621464827),
            ("Jaquez", 9_999_999_999),
        ] {
            let received = Timestamp::new(secs, 1).expect("a valid time");
            let r = Record::from_iamat(origin, received, &cmd).expect("a record");
            assert_eq!(r.origin(), origin.as_bytes());
            assert_eq!(r.diff(), Diff::between(received, cmd.time));
            assert_eq!(r.client(), b"kiwi.cs.ucla.edu");
            assert_eq!(r.location_text(), b"+34.068930-118.445127");
            assert_eq!(r.time_text(), b"1621464827.959498503");
            // The same record as a neighbour reads it from the line.
            assert_eq!(Record::from_at_line(r.at_line()), Ok(r));
        }
        // A name with a space would shift every field after it.
        let received = Timestamp::new(5, 0).expect("a valid time");
        assert_eq!(
            Record::from_iamat("Ri ley", received, &cmd),
            Err(InvalidRecord)
        );
    }

    #[test]
    fn the_client_of_a_canonical_line_is_its_fourth_field() {
        let r = record("AT Riley +0.000000001 kiwi +1+1 7");
        assert_eq!(Record::client_of_canonical(r.at_line()), b"kiwi");
        assert_eq!(Record::client_of_canonical(b"AT Riley +0.1 kiwi"), b"kiwi");
        assert_eq!(Record::client_of_canonical(b"AT Riley +0.1"), b"");
        assert_eq!(Record::client_of_canonical(b""), b"");
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
    fn the_same_update_received_again_is_not_new() {
        let first = record("AT Riley +0.100000000 k +1+1 10");
        let again = record("AT Riley +5.300000000 k +1+1 10");
        assert!(!again.supersedes(&first), "a repeat is stale");
        assert!(
            first.supersedes(&again),
            "the first receipt wins everywhere"
        );
        let elsewhere = record("AT Bernard +5.300000000 k +1+1 10");
        assert_ne!(
            elsewhere.newness(&first),
            Ordering::Equal,
            "another origin is another update"
        );
    }

    #[test]
    fn the_exact_crash_line_is_refused_and_long_fields_never_misread() {
        let zeros = "0".repeat(65_500);
        let crash = format!("AT Riley +0.000000000 pin +{zeros}1-1 1");
        assert_eq!(Record::from_at_line(crash.as_bytes()), Err(InvalidRecord));
        let location = format!("+{}1-1", "0".repeat(protocol::MAX_FIELD_BYTES - 4));
        let time = format!("{}7", "0".repeat(protocol::MAX_FIELD_BYTES - 1));
        let client = "c".repeat(protocol::MAX_CLIENT_BYTES);
        let line = format!("AT Riley +0.000000000 {client} {location} {time}");
        let r = record(&line);
        assert_eq!(r.client(), client.as_bytes());
        assert_eq!(r.location_text(), location.as_bytes());
        assert_eq!(r.time_text(), time.as_bytes());
        assert_eq!(r.time(), Timestamp::new(7, 0).unwrap());
    }

    #[test]
    fn iamat_record_carries_exact_diff() {
        let line = b"IAMAT kiwi +34.068930-118.445127 1621464827.959498503";
        let Command::IAmAt(cmd) = protocol::parse_line(line) else {
            panic!("not IAMAT");
        };
        let received = Timestamp::new(1621464828, 223371889).unwrap();
        let r = Record::from_iamat("Riley", received, &cmd).unwrap();
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
