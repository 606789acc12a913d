//! Digest trees: a summary of a whole store that two servers can compare
//! top-down, so that a catch-up sync costs in proportion to how much the two
//! stores *differ*, not to how much they hold (SPEC §4; the wire format is
//! in docs/peer-protocol.md).
//!
//! Client names are hashed into [`LEAVES`] leaves (65,536). A leaf's sum is
//! the wrapping sum of the mixed fingerprints of its records, kept up to date
//! on every update in O(1). Above the leaves sits a tree of fanout
//! [`FANOUT`] (16) and [`DEPTH`] (4) levels: level 0 is the root, level `L`
//! has `16^L` nodes, level 4 the leaves. A node's sum is the sum of its
//! leaves, so it is computed on demand by adding them up (sums of sums need
//! no upkeep: addition is associative).
//!
//! Two stores agree on a node exactly when (barring a 64-bit collision)
//! they hold the same records under it. A sync therefore walks down only
//! where sums differ: the root's 16 children, then the 16 children of each
//! differing node, and so on to the leaves, where the records' fingerprints
//! are compared one by one. With `d` differing records that is about
//! `4 * 16 * d` sums and the fingerprints of `d` leaves: a few kilobytes for
//! ten differences among a million records. [`Plan`] is the comparing side's
//! bookkeeping; it is pure and tested here, the network rounds live in
//! `sync.rs`.
//!
//! Two short cuts keep whole-store differences cheap too: where the
//! comparing side's node is empty it has nothing to send, so it does not
//! descend; where the other side's node is empty it sends every record under
//! the node without asking further (a server that restarted empty is
//! refilled in one round).

use crate::record::{fnv1a, Record};

/// Bits of a leaf index.
pub const LEAF_BITS: u32 = 16;
/// Number of leaves.
pub const LEAVES: usize = 1 << LEAF_BITS;
/// Bits of one level's fanout.
pub const FANOUT_BITS: u32 = 4;
/// Children per node.
pub const FANOUT: usize = 1 << FANOUT_BITS;
/// Level of the leaves (the root is level 0).
pub const DEPTH: u8 = (LEAF_BITS / FANOUT_BITS) as u8;

/// Which leaf a client falls in.
pub fn leaf_of(client: &[u8]) -> usize {
    // Reduce with a multiply-shift so all 64 bits of the hash contribute.
    ((u128::from(fnv1a(client)) * LEAVES as u128) >> 64) as usize
}

/// The node at `level` above `leaf`.
pub fn ancestor(leaf: usize, level: u8) -> usize {
    leaf >> (FANOUT_BITS * u32::from(DEPTH - level.min(DEPTH)))
}

/// Number of nodes at `level`.
pub fn nodes_at(level: u8) -> usize {
    1 << (FANOUT_BITS * u32::from(level.min(DEPTH)))
}

/// The range of leaves under node `index` of `level`.
pub fn leaves_under(level: u8, index: usize) -> std::ops::Range<usize> {
    let span = 1usize << (FANOUT_BITS * u32::from(DEPTH - level.min(DEPTH)));
    let first = index.saturating_mul(span).min(LEAVES);
    first..(first + span).min(LEAVES)
}

/// Per-leaf sums of mixed record fingerprints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    leaves: Vec<u64>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            leaves: vec![0; LEAVES],
        }
    }
}

impl Digest {
    /// Accounts for `new` replacing `old` (or arriving first).
    pub fn replace(&mut self, old: Option<&Record>, new: &Record) {
        let sum = &mut self.leaves[leaf_of(new.client())];
        if let Some(old) = old {
            *sum = sum.wrapping_sub(mix(old.fingerprint()));
        }
        *sum = sum.wrapping_add(mix(new.fingerprint()));
    }

    /// Accounts for `old` leaving the store.
    pub fn remove(&mut self, old: &Record) {
        let sum = &mut self.leaves[leaf_of(old.client())];
        *sum = sum.wrapping_sub(mix(old.fingerprint()));
    }

    /// The root's sum: two stores with equal roots hold the same records
    /// (barring a 64-bit collision).
    pub fn root(&self) -> u64 {
        self.sum(0, 0)
    }

    /// The sum of node `index` of `level` (0 outside the tree).
    pub fn sum(&self, level: u8, index: usize) -> u64 {
        self.leaves[leaves_under(level, index)]
            .iter()
            .fold(0, |a, &b| a.wrapping_add(b))
    }

    /// The sums of the [`FANOUT`] children of node `index` of `level`.
    pub fn children(&self, level: u8, index: usize) -> [u64; FANOUT] {
        let mut sums = [0; FANOUT];
        if level < DEPTH {
            for (c, sum) in sums.iter_mut().enumerate() {
                *sum = self.sum(level + 1, index * FANOUT + c);
            }
        }
        sums
    }
}

/// Spreads a fingerprint's bits before summing, so that sums of related
/// fingerprints do not cancel (SplitMix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// 64-bit numbers as 16 lower-case hex digits each, back to back.
pub fn to_hex(values: &[u64]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(values.len() * 16);
    for v in values {
        let _ = write!(text, "{v:016x}");
    }
    text
}

/// Parses [`to_hex`]'s form; `None` unless it is whole 16-digit numbers.
pub fn from_hex(text: &[u8]) -> Option<Vec<u64>> {
    if !text.len().is_multiple_of(16) {
        return None;
    }
    // Hex digits only: from_str_radix alone would also take a sign ("+f").
    if !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    text.chunks(16)
        .map(|chunk| u64::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok())
        .collect()
}

/// What the comparing side (the dialer) has learnt so far: which nodes to
/// ask about next, which leaves' fingerprints to fetch, and under which
/// nodes to send everything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Nodes (at one level) whose children's sums to ask for next.
    pub want: Vec<usize>,
    /// Level of the nodes in `want`.
    pub want_level: u8,
    /// Leaves whose fingerprints to ask for next.
    pub keys: Vec<usize>,
    /// Nodes `(level, index)` the other side holds nothing under.
    pub whole: Vec<(u8, usize)>,
}

impl Plan {
    /// Compares the children of node `index` of `level`: `theirs` from the
    /// other side, ours from `mine`.
    pub fn compare(&mut self, mine: &Digest, level: u8, index: usize, theirs: &[u64]) {
        if level >= DEPTH || theirs.len() != FANOUT {
            return;
        }
        let ours = mine.children(level, index);
        for (c, (&m, &t)) in ours.iter().zip(theirs).enumerate() {
            let child = index * FANOUT + c;
            if m == t || m == 0 {
                // Same records, or nothing of ours to offer.
                continue;
            }
            if t == 0 {
                self.whole.push((level + 1, child));
            } else if level + 1 == DEPTH {
                self.keys.push(child);
            } else {
                self.want_level = level + 1;
                self.want.push(child);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `peer_line` fuzz target: a sign passed as a hex digit.
    #[test]
    fn hex_takes_hex_digits_only() {
        assert_eq!(
            from_hex(b"00000000000000ffFFFFFFFFFFFFFFFF"),
            Some(vec![0xff, u64::MAX])
        );
        assert_eq!(from_hex(b"+00000000000000f"), None);
        assert_eq!(from_hex(b"-00000000000000f"), None);
        assert_eq!(from_hex(b"000000000000000g"), None);
    }

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
        assert_ne!(one.sum(0, 0), 0);
        assert_eq!(one.sum(0, 0), two.sum(0, 0));
    }

    #[test]
    fn a_newer_record_changes_exactly_its_path() {
        let old = record("kiwi", "1");
        let new = record("kiwi", "2");
        let mut base = Digest::default();
        base.replace(None, &old);
        base.replace(None, &record("other", "1"));
        let mut moved = base.clone();
        moved.replace(Some(&old), &new);
        let leaf = leaf_of(b"kiwi");
        for level in 0..=DEPTH {
            let node = ancestor(leaf, level);
            assert_ne!(moved.sum(level, node), base.sum(level, node));
            let sibling = (node + 1) % nodes_at(level);
            if level > 0 && !leaves_under(level, sibling).contains(&leaf_of(b"other")) {
                assert_eq!(moved.sum(level, sibling), base.sum(level, sibling));
            }
        }
        moved.replace(Some(&new), &old);
        assert_eq!(moved, base);
    }

    #[test]
    fn node_sums_add_up_from_the_leaves() {
        let mut d = Digest::default();
        for i in 0..1000 {
            d.replace(None, &record(&format!("c{i}"), "1"));
        }
        for level in 0..DEPTH {
            let kids = d.children(level, 3 % nodes_at(level));
            let total = kids.iter().fold(0u64, |a, &b| a.wrapping_add(b));
            assert_eq!(total, d.sum(level, 3 % nodes_at(level)));
        }
        assert_eq!(leaves_under(0, 0), 0..LEAVES);
        assert_eq!(leaves_under(DEPTH, 7), 7..8);
        assert_eq!(ancestor(LEAVES - 1, 1), FANOUT - 1);
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let values = vec![0, 1, u64::MAX, 0xdead_beef];
        assert_eq!(from_hex(to_hex(&values).as_bytes()), Some(values));
        assert_eq!(from_hex(b"00"), None);
        assert_eq!(from_hex(&[b'g'; 16]), None);
        assert_eq!(from_hex(b""), Some(vec![]));
    }

    /// Walks the tree as a sync does and returns the plan's final state.
    fn walk(mine: &Digest, theirs: &Digest) -> Plan {
        let mut done = Plan::default();
        let mut plan = Plan::default();
        plan.compare(mine, 0, 0, &theirs.children(0, 0));
        while !plan.want.is_empty() {
            let mut next = Plan {
                whole: std::mem::take(&mut plan.whole),
                keys: std::mem::take(&mut plan.keys),
                ..Plan::default()
            };
            for &node in &plan.want {
                next.compare(
                    mine,
                    plan.want_level,
                    node,
                    &theirs.children(plan.want_level, node),
                );
            }
            plan = next;
        }
        done.keys = plan.keys;
        done.whole = plan.whole;
        done
    }

    #[test]
    fn the_walk_finds_exactly_the_differing_leaves() {
        let mut theirs = Digest::default();
        let mut mine = Digest::default();
        for i in 0..20_000 {
            let r = record(&format!("c{i}"), "1");
            theirs.replace(None, &r);
            mine.replace(None, &r);
        }
        let old = record("c77", "1");
        mine.replace(Some(&old), &record("c77", "2"));
        mine.replace(None, &record("only-mine", "1"));
        let plan = walk(&mine, &theirs);
        let mut expected = vec![leaf_of(b"c77"), leaf_of(b"only-mine")];
        expected.sort();
        expected.dedup();
        let mut keys = plan.keys.clone();
        keys.sort();
        // "only-mine" may land in a leaf the other side has empty: then it
        // is a whole node instead of a key.
        assert!(keys.iter().all(|k| expected.contains(k)), "{keys:?}");
        assert!(keys.contains(&leaf_of(b"c77")));
        assert_eq!(walk(&mine, &mine), Plan::default());
    }

    #[test]
    fn an_empty_other_side_gets_everything_in_one_round() {
        let mut mine = Digest::default();
        mine.replace(None, &record("a", "1"));
        let plan = walk(&mine, &Digest::default());
        assert!(plan.keys.is_empty());
        let (level, node) = plan.whole[0];
        assert_eq!(level, 1);
        assert!(leaves_under(level, node).contains(&leaf_of(b"a")));
        // And an empty comparing side never asks for anything.
        assert_eq!(walk(&Digest::default(), &mine), Plan::default());
    }
}
