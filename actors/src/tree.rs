//! The herd's links as every server knows them, and the tree along which an
//! update from each origin travels (SPEC §4, §8: n−1 receptions per update).
//!
//! Every server is given the same topology (the `[servers]` table of the
//! settings file), so every server can compute, for any origin, the same
//! shortest-path tree: breadth first from the origin, and a server's parent
//! is, of its neighbours one step nearer the origin, the one whose name sorts
//! first. An update then travels only down its origin's tree: each server
//! receives it once, from its parent, and passes it to its children, so a
//! herd of n servers receives it n−1 times whatever the topology.
//!
//! A tree has no spare paths, so the rule that keeps every update moving when
//! a link fails is in [`Spread`]: a server whose link to a child in the tree
//! is not carrying floods the update instead, to every neighbour but the one
//! it came from, marked so that every server after it floods it too. The
//! flood stops where it always did, at servers that already hold the record.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::peer_line::{HexBytes, TopologyDigest, TOPOLOGY_BYTES};

pub use crate::peer_line::Spread;

/// The servers and the links between them; a link listed on either side is
/// a link both ways.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Every server, by name, and its neighbours (sorted by name).
    links: BTreeMap<Arc<str>, Vec<Arc<str>>>,
}

impl Topology {
    /// The topology of `servers`, each with the neighbours it lists.
    pub fn new<'a>(servers: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Topology {
        let mut links: BTreeMap<Arc<str>, Vec<Arc<str>>> = BTreeMap::new();
        for (name, neighbours) in servers {
            links.entry(name.into()).or_default();
            for other in neighbours {
                links
                    .entry(name.into())
                    .or_default()
                    .push(other.as_str().into());
                links
                    .entry(other.as_str().into())
                    .or_default()
                    .push(name.into());
            }
        }
        for neighbours in links.values_mut() {
            neighbours.sort();
            neighbours.dedup();
        }
        Topology { links }
    }

    /// The neighbours of `name`, sorted by name (none for an unknown name).
    pub fn neighbours(&self, name: &str) -> &[Arc<str>] {
        self.links.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// A digest of the servers and links, the same for every server given
    /// the same herd whatever the order or side its settings list them on:
    /// two servers whose digests differ route by different trees, so while
    /// any link shows two digests the herd floods (SPEC §4).
    pub fn digest(&self) -> TopologyDigest {
        let mut hash = Sha256::new();
        for (server, neighbours) in &self.links {
            hash.update(server.as_bytes());
            hash.update(b":");
            for neighbour in neighbours {
                hash.update(neighbour.as_bytes());
                hash.update(b",");
            }
            hash.update(b";");
        }
        let mut digest = [0; TOPOLOGY_BYTES];
        digest.copy_from_slice(&hash.finalize()[..TOPOLOGY_BYTES]);
        HexBytes(digest)
    }

    /// Every server's name, sorted.
    pub fn servers(&self) -> impl Iterator<Item = &Arc<str>> {
        self.links.keys()
    }

    /// Each server's parent in the shortest-path tree rooted at `origin`
    /// (the origin and servers it cannot reach have none).
    fn parents(&self, origin: &str) -> HashMap<&str, &str> {
        let Some((origin, _)) = self.links.get_key_value(origin) else {
            return HashMap::new();
        };
        let origin: &str = origin;
        let mut distance: HashMap<&str, usize> = HashMap::from([(origin, 0)]);
        let mut queue = VecDeque::from([origin]);
        while let Some(at) = queue.pop_front() {
            let next = distance[at] + 1;
            for other in self.neighbours(at) {
                if !distance.contains_key(&**other) {
                    distance.insert(other, next);
                    queue.push_back(other);
                }
            }
        }
        // Of the neighbours one step nearer, the first by name: the same
        // choice on every server, whatever order it explored in.
        let mut parents = HashMap::new();
        for (&server, &d) in &distance {
            let parent = self
                .neighbours(server)
                .iter()
                .find(|n| d > 0 && distance.get(&***n) == Some(&(d - 1)));
            if let Some(parent) = parent {
                parents.insert(server, &**parent);
            }
        }
        parents
    }

    /// The neighbours of `me` that are its children in `origin`'s tree:
    /// those it passes `origin`'s updates to. `None` when either server is
    /// unknown here (such an update is flooded).
    pub fn children(&self, origin: &str, me: &str) -> Option<Vec<Arc<str>>> {
        if !self.links.contains_key(origin) || !self.links.contains_key(me) {
            return None;
        }
        let parents = self.parents(origin);
        Some(
            self.neighbours(me)
                .iter()
                .filter(|n| parents.get(&***n) == Some(&me))
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §1's herd.
    fn herd() -> Topology {
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let servers = [
            ("Riley", list(&["Jaquez", "Juzang"])),
            ("Bernard", list(&["Jaquez", "Juzang", "Campbell"])),
            ("Juzang", list(&["Campbell"])),
            ("Jaquez", list(&[])),
            ("Campbell", list(&[])),
        ];
        Topology::new(servers.iter().map(|(n, l)| (*n, l.as_slice())))
    }

    fn names(children: Option<Vec<Arc<str>>>) -> Vec<String> {
        children.unwrap().iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn links_are_both_ways() {
        let herd = herd();
        let jaquez: Vec<&str> = herd.neighbours("Jaquez").iter().map(|n| &**n).collect();
        assert_eq!(jaquez, ["Bernard", "Riley"]);
        assert!(herd.neighbours("Nowhere").is_empty());
    }

    #[test]
    fn every_server_but_the_origin_has_exactly_one_parent() {
        let herd = herd();
        for origin in herd.servers() {
            let mut received: BTreeMap<String, usize> = BTreeMap::new();
            for me in herd.servers() {
                for child in names(herd.children(origin, me)) {
                    *received.entry(child).or_default() += 1;
                }
            }
            let others: BTreeMap<String, usize> = herd
                .servers()
                .filter(|s| *s != origin)
                .map(|s| (s.to_string(), 1))
                .collect();
            assert_eq!(received, others, "tree of {origin}");
        }
    }

    #[test]
    fn trees_follow_shortest_paths_and_break_ties_by_name() {
        let herd = herd();
        // Riley's neighbours are its children; Bernard is two steps away
        // through Jaquez or Juzang, and Jaquez sorts first.
        assert_eq!(names(herd.children("Riley", "Riley")), ["Jaquez", "Juzang"]);
        assert_eq!(names(herd.children("Riley", "Jaquez")), ["Bernard"]);
        assert_eq!(names(herd.children("Riley", "Juzang")), ["Campbell"]);
        assert!(names(herd.children("Riley", "Bernard")).is_empty());
        assert_eq!(
            names(herd.children("Campbell", "Campbell")),
            ["Bernard", "Juzang"]
        );
        assert_eq!(names(herd.children("Campbell", "Bernard")), ["Jaquez"]);
        assert_eq!(names(herd.children("Campbell", "Juzang")), ["Riley"]);
    }

    #[test]
    fn an_unknown_origin_has_no_tree() {
        assert_eq!(herd().children("Elsewhere", "Riley"), None);
        assert_eq!(herd().children("Riley", "Elsewhere"), None);
    }

    #[test]
    fn a_ring_of_twenty_five_receives_each_update_twenty_four_times() {
        let names: Vec<String> = (0..25).map(|i| format!("s{i:02}")).collect();
        let next: Vec<Vec<String>> = (0..25).map(|i| vec![names[(i + 1) % 25].clone()]).collect();
        let ring = Topology::new(
            names
                .iter()
                .map(String::as_str)
                .zip(next.iter().map(Vec::as_slice)),
        );
        for origin in &names {
            let receptions: usize = names
                .iter()
                .map(|me| ring.children(origin, me).unwrap().len())
                .sum();
            assert_eq!(receptions, 24);
        }
    }

    #[test]
    fn the_digest_follows_the_links_not_how_they_are_listed() {
        let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let other_sides = [
            ("Riley", list(&[])),
            ("Jaquez", list(&["Riley", "Bernard"])),
            ("Juzang", list(&["Riley", "Bernard", "Campbell"])),
            ("Bernard", list(&["Campbell"])),
            ("Campbell", list(&[])),
        ];
        let same = Topology::new(other_sides.iter().map(|(n, l)| (*n, l.as_slice())));
        assert_eq!(same.digest(), herd().digest());
        let without_bernard_campbell = [
            ("Riley", list(&["Jaquez", "Juzang"])),
            ("Bernard", list(&["Jaquez", "Juzang"])),
            ("Juzang", list(&["Campbell"])),
            ("Jaquez", list(&[])),
            ("Campbell", list(&[])),
        ];
        let changed = Topology::new(
            without_bernard_campbell
                .iter()
                .map(|(n, l)| (*n, l.as_slice())),
        );
        assert_ne!(changed.digest(), herd().digest());
    }
}
