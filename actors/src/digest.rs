//! Bucket digests: a short summary of a whole store, so that two servers can
//! find the records they disagree on without sending them all (SPEC §4).
//!
//! Client names are hashed into a fixed number of buckets. A bucket's digest
//! is the wrapping sum of the fingerprints of its records, kept up to date on
//! every update in O(1). Two stores agree on a bucket exactly when (barring a
//! 64-bit collision) they hold the same records in it, so a catch-up sync
//! only has to look at the buckets whose digests differ.

use crate::record::{fnv1a, Record};

/// Number of buckets of a digest. A digest line is `BUCKETS * 16` hex digits.
pub const BUCKETS: usize = 4096;

/// Which bucket a client falls in.
pub fn bucket_of(client: &[u8]) -> usize {
    // Reduce with a multiply-shift so all 64 bits of the hash contribute.
    ((u128::from(fnv1a(client)) * BUCKETS as u128) >> 64) as usize
}

/// Per-bucket sums of record fingerprints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    sums: Vec<u64>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            sums: vec![0; BUCKETS],
        }
    }
}

impl Digest {
    /// Accounts for `new` replacing `old` (or arriving first).
    pub fn replace(&mut self, old: Option<&Record>, new: &Record) {
        let bucket = bucket_of(new.client());
        let sum = &mut self.sums[bucket];
        if let Some(old) = old {
            *sum = sum.wrapping_sub(mix(old.fingerprint()));
        }
        *sum = sum.wrapping_add(mix(new.fingerprint()));
    }

    /// The buckets in which `self` and `other` differ.
    pub fn differing(&self, other: &Digest) -> Vec<usize> {
        (0..BUCKETS)
            .filter(|&b| self.sums[b] != other.sums[b])
            .collect()
    }

    /// The wire form: `BUCKETS` sums as 16 lower-case hex digits each.
    pub fn to_hex(&self) -> String {
        let mut text = String::with_capacity(BUCKETS * 16);
        for sum in &self.sums {
            text.push_str(&format!("{sum:016x}"));
        }
        text
    }

    /// Parses the wire form; `None` unless it is exactly `BUCKETS` sums.
    pub fn from_hex(text: &[u8]) -> Option<Digest> {
        if text.len() != BUCKETS * 16 {
            return None;
        }
        let sums = text
            .chunks(16)
            .map(|chunk| u64::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok())
            .collect::<Option<Vec<u64>>>()?;
        Some(Digest { sums })
    }
}

/// Spreads a fingerprint's bits before summing, so that sums of related
/// fingerprints do not cancel (SplitMix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(client: &str, time: &str) -> Record {
        Record::from_at_line(format!("AT Riley +0.000000000 {client} +1+1 {time}").as_bytes())
            .unwrap()
    }

    #[test]
    fn same_records_in_any_order_give_the_same_digest() {
        let (a, b, c) = (record("a", "1"), record("b", "2"), record("c", "3"));
        let mut one = Digest::default();
        let mut two = Digest::default();
        for r in [&a, &b, &c] {
            one.replace(None, r);
        }
        for r in [&c, &a, &b] {
            two.replace(None, r);
        }
        assert_eq!(one, two);
        assert!(one.differing(&two).is_empty());
    }

    #[test]
    fn a_newer_record_changes_exactly_its_bucket() {
        let old = record("kiwi", "1");
        let new = record("kiwi", "2");
        let mut base = Digest::default();
        base.replace(None, &old);
        let mut moved = base.clone();
        moved.replace(Some(&old), &new);
        assert_eq!(moved.differing(&base), vec![bucket_of(b"kiwi")]);
        moved.replace(Some(&new), &old);
        assert_eq!(moved, base);
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let mut d = Digest::default();
        d.replace(None, &record("x", "5"));
        assert_eq!(Digest::from_hex(d.to_hex().as_bytes()), Some(d));
        assert_eq!(Digest::from_hex(b"00"), None);
        assert_eq!(Digest::from_hex(&vec![b'g'; BUCKETS * 16]), None);
    }
}
