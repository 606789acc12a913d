//! The peer wire's one home: every line two servers exchange on a peer link,
//! parsed into a [`PeerLine`] and written back from one, with the limits of
//! each field (SPEC §4; docs/peer-protocol.md shows the conversations).
//!
//! Nothing here does I/O: the handshake (`handshake.rs` in the actors crate),
//! the links (`peer.rs`, `peer_session.rs`) and the catch-up sync (`sync.rs`)
//! read lines off their sockets, call [`PeerLine::parse`], and match on the
//! result; what they send they build as a `PeerLine` and [`PeerLine::write`].
//! A line that does not parse is refused where it arrives, never half-read.
//!
//! | verb | who sends it | fields |
//! |------|--------------|--------|
//! | `HELLO` | dialer, first | dialer, acceptor, nonce, versions, topology, purpose |
//! | `CHALLENGE` | acceptor | chosen version, nonce, topology |
//! | `PROOF` | dialer | its MAC |
//! | `WELCOME` | acceptor, last | its MAC |
//! | `? ...` | either, then closes | a reason |
//! | `SUMS` | sync: acceptor | level, node, children's sums |
//! | `WANT` | sync: dialer | level, nodes |
//! | `KEYS` | sync: dialer | leaves |
//! | `FPS` | sync: acceptor | leaf, fingerprints |
//! | `END` | sync: acceptor | ends an answer |
//! | `AT` / `FLOOD AT` | dialer | a record, down a tree or flooded |
//! | `SYNCED` | dialer | records the sync sent |
//! | `ACK` | acceptor | lines read since `SYNCED` |
//! | `PROMPT` | dialer, after `SYNCED` | acknowledge each read burst at once |
//! | `ROOT` | both, anti-entropy | the store's digest root |

use std::fmt;

use crate::digest::{self, nodes_at, DEPTH, LEAVES};
use crate::protocol::{fields, valid_server_name};

/// Longest line on an authenticated peer connection. The longest a sync
/// sends are a `KEYS` line naming every leaf (65,536 numbers: under 400 KiB)
/// and one leaf's `FPS` line (16 hex digits per record: 1 MiB holds some
/// 65,000 records in one leaf, where a million-record store averages 15).
pub const PEER_MAX_LINE: usize = 1 << 20;

/// Longest line while the handshake runs. Its lines are short (names are at
/// most 64 bytes), and a stranger who has proved nothing yet must not make
/// the server buffer up to [`PEER_MAX_LINE`].
pub const HANDSHAKE_MAX_LINE: usize = 1024;

/// Bytes of a handshake nonce (written as twice as many hex digits).
pub const NONCE_BYTES: usize = 16;

/// Bytes of a handshake MAC (HMAC-SHA256).
pub const MAC_BYTES: usize = 32;

/// Bytes of a topology digest.
pub const TOPOLOGY_BYTES: usize = 8;

/// The peer-protocol versions this build speaks. Version 1 had no
/// negotiation (a `HELLO` of three fields) and let the acceptor prove first;
/// version 2 states versions and topology, and the acceptor proves last.
pub const VERSIONS: Versions = Versions { lo: 2, hi: 2 };

/// What a record line starts with when it is flooded; a record sent down a
/// tree is a bare `AT` line.
const FLOOD_PREFIX: &[u8] = b"FLOOD ";

/// How an update travels on from the server that took it as new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Down the origin's shortest-path tree: to this server's children in it.
    Tree,
    /// To every neighbour but the one it came from; each passes it on the
    /// same way. Used around a link that is down, while the herd is mixed,
    /// for the catch-up sync's records and for records that a dropped link
    /// may not have delivered.
    Flood,
}

impl Spread {
    /// What goes before the record's `AT` line on the peer wire.
    pub fn prefix(self) -> &'static [u8] {
        match self {
            Spread::Tree => b"",
            Spread::Flood => FLOOD_PREFIX,
        }
    }
}

/// A range of peer-protocol versions, written `<lo>-<hi>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub lo: u16,
    pub hi: u16,
}

impl Versions {
    /// The highest version both ranges hold.
    pub fn common(self, other: Versions) -> Option<u16> {
        let hi = self.hi.min(other.hi);
        (hi >= self.lo.max(other.lo)).then_some(hi)
    }

    fn parse(text: &[u8]) -> Option<Versions> {
        let text = std::str::from_utf8(text).ok()?;
        let (lo, hi) = text.split_once('-')?;
        let versions = Versions {
            lo: number(lo.as_bytes())?,
            hi: number(hi.as_bytes())?,
        };
        (versions.lo >= 1 && versions.lo <= versions.hi).then_some(versions)
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// Fixed-size bytes written as lower-case hex: nonces, MACs, topology digests.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexBytes<const N: usize>(pub [u8; N]);

/// A handshake nonce.
pub type Nonce = HexBytes<NONCE_BYTES>;
/// A handshake MAC.
pub type MacBytes = HexBytes<MAC_BYTES>;
/// A digest of the herd's servers and links as one server was given them.
pub type TopologyDigest = HexBytes<TOPOLOGY_BYTES>;

impl<const N: usize> HexBytes<N> {
    pub fn random() -> HexBytes<N> {
        HexBytes(rand::random())
    }

    fn parse(text: &[u8]) -> Option<HexBytes<N>> {
        let bytes = from_hex(text)?;
        Some(HexBytes(bytes.try_into().ok()?))
    }
}

impl<const N: usize> fmt::Display for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl<const N: usize> fmt::Debug for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses hex digits (either case) into bytes; nothing else is taken, not
/// even a sign (`from_str_radix` alone would read `+f`).
pub fn from_hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    text.chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Why a dialer opens a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The link: a catch-up sync, then floods for as long as it stays up.
    Link,
    /// An anti-entropy repair: one catch-up sync, then the dialer closes.
    Repair,
}

impl Purpose {
    /// The purpose as `HELLO` and the handshake's MACs write it.
    pub fn word(self) -> &'static str {
        match self {
            Purpose::Link => "link",
            Purpose::Repair => "repair",
        }
    }
}

/// The dialer's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello<'a> {
    pub dialer: &'a str,
    pub acceptor: &'a str,
    pub nonce: Nonce,
    /// Version 1 sent no range: a three-field `HELLO` reads as `1-1`.
    pub versions: Versions,
    /// The dialer's topology digest (none from version 1).
    pub topology: Option<TopologyDigest>,
    pub purpose: Purpose,
}

/// One line of the peer wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerLine<'a> {
    Hello(Hello<'a>),
    /// The acceptor's answer to `HELLO`: no MAC yet (it proves last).
    Challenge {
        version: u16,
        nonce: Nonce,
        topology: TopologyDigest,
    },
    /// The dialer's MAC; `None` (`-`) without a herd secret.
    Proof(Option<MacBytes>),
    /// The acceptor's MAC, last; `None` (`-`) without a herd secret.
    Welcome(Option<MacBytes>),
    /// `? <reason>`: a refusal, after which the sender closes.
    Refused(&'a [u8]),
    /// A record's `AT` line and how it travels on.
    At {
        spread: Spread,
        line: &'a [u8],
    },
    /// The end of a catch-up sync's records, with their count.
    Synced(u64),
    /// Lines read since `SYNCED`.
    Ack(u64),
    /// The dialer waits for acknowledgements (`herd.ack_after =
    /// "neighbour"`): acknowledge each read burst at once, not at most every
    /// 50 ms.
    Prompt,
    /// The sums of a digest node's children.
    Sums {
        level: u8,
        node: usize,
        sums: Vec<u64>,
    },
    /// Asks for the children's sums of `nodes` at `level`.
    Want {
        level: u8,
        nodes: Vec<usize>,
    },
    /// Asks for the fingerprints of the records in `leaves`.
    Keys(Vec<usize>),
    /// The fingerprints of one leaf's records.
    Fps {
        leaf: usize,
        fps: Vec<u64>,
    },
    /// Ends a sync answer.
    End,
    /// A store's digest root: anti-entropy compares them.
    Root(u64),
    /// Nothing but white space.
    Blank,
}

/// A line that is not a peer line; the reason names the verb and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed peer line ({0})")]
pub struct BadPeerLine(pub &'static str);

fn number<T: std::str::FromStr>(text: &[u8]) -> Option<T> {
    // Digits only: `parse` alone would take a leading `+`.
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn name(text: &[u8]) -> Option<&str> {
    valid_server_name(text)
        .then(|| std::str::from_utf8(text).ok())
        .flatten()
}

fn mac(text: &[u8]) -> Option<Option<MacBytes>> {
    if text == b"-" {
        return Some(None);
    }
    MacBytes::parse(text).map(Some)
}

/// The fields after a verb, exactly `N` of them.
fn exactly<'a, const N: usize>(
    parts: impl Iterator<Item = &'a [u8]>,
    verb: &'static str,
) -> Result<[&'a [u8]; N], BadPeerLine> {
    let words: Vec<&[u8]> = parts.collect();
    words.try_into().map_err(|_| BadPeerLine(verb))
}

impl<'a> PeerLine<'a> {
    /// Reads one line (without its terminator).
    pub fn parse(line: &'a [u8]) -> Result<PeerLine<'a>, BadPeerLine> {
        if let Some(reason) = line.strip_prefix(b"? ") {
            return Ok(PeerLine::Refused(reason));
        }
        if line.starts_with(b"AT ") {
            return Ok(PeerLine::At {
                spread: Spread::Tree,
                line,
            });
        }
        if let Some(at) = line
            .strip_prefix(FLOOD_PREFIX)
            .filter(|l| l.starts_with(b"AT "))
        {
            return Ok(PeerLine::At {
                spread: Spread::Flood,
                line: at,
            });
        }
        let mut parts = fields(line);
        let Some(verb) = parts.next() else {
            return Ok(PeerLine::Blank);
        };
        match verb {
            b"HELLO" => Self::hello(parts),
            b"CHALLENGE" => {
                let [version, nonce, topology] = exactly(parts, "CHALLENGE")?;
                let bad = || BadPeerLine("CHALLENGE");
                Ok(PeerLine::Challenge {
                    version: number(version).filter(|&v| v >= 1).ok_or_else(bad)?,
                    nonce: Nonce::parse(nonce).ok_or_else(bad)?,
                    topology: TopologyDigest::parse(topology).ok_or_else(bad)?,
                })
            }
            b"PROOF" => {
                let [m] = exactly(parts, "PROOF")?;
                Ok(PeerLine::Proof(mac(m).ok_or(BadPeerLine("PROOF"))?))
            }
            b"WELCOME" => {
                let [m] = exactly(parts, "WELCOME")?;
                Ok(PeerLine::Welcome(mac(m).ok_or(BadPeerLine("WELCOME"))?))
            }
            b"SYNCED" => {
                let [count] = exactly(parts, "SYNCED")?;
                Ok(PeerLine::Synced(
                    number(count).ok_or(BadPeerLine("SYNCED"))?,
                ))
            }
            b"ACK" => {
                let [count] = exactly(parts, "ACK")?;
                Ok(PeerLine::Ack(number(count).ok_or(BadPeerLine("ACK"))?))
            }
            b"ROOT" => {
                let [root] = exactly(parts, "ROOT")?;
                let sums = digest::from_hex(root).filter(|s| s.len() == 1);
                Ok(PeerLine::Root(sums.ok_or(BadPeerLine("ROOT"))?[0]))
            }
            b"END" => exactly::<0>(parts, "END").map(|_| PeerLine::End),
            b"PROMPT" => exactly::<0>(parts, "PROMPT").map(|_| PeerLine::Prompt),
            b"SUMS" => Self::sums(parts),
            b"WANT" => Self::want(parts),
            b"KEYS" => {
                let leaves = parts
                    .map(|p| number(p).filter(|&l: &usize| l < LEAVES))
                    .collect::<Option<Vec<usize>>>();
                Ok(PeerLine::Keys(leaves.ok_or(BadPeerLine("KEYS"))?))
            }
            b"FPS" => {
                let bad = || BadPeerLine("FPS");
                let leaf = parts
                    .next()
                    .and_then(number)
                    .filter(|&l: &usize| l < LEAVES);
                let fps = digest::from_hex(parts.next().unwrap_or(b""));
                if parts.next().is_some() {
                    return Err(bad());
                }
                Ok(PeerLine::Fps {
                    leaf: leaf.ok_or_else(bad)?,
                    fps: fps.ok_or_else(bad)?,
                })
            }
            _ => Err(BadPeerLine("unknown verb")),
        }
    }

    fn hello(parts: impl Iterator<Item = &'a [u8]>) -> Result<PeerLine<'a>, BadPeerLine> {
        let bad = || BadPeerLine("HELLO");
        let words: Vec<&[u8]> = parts.collect();
        let (dialer, acceptor, nonce) = match &words[..] {
            [d, a, n, ..] => (name(d).ok_or_else(bad)?, name(a).ok_or_else(bad)?, n),
            _ => return Err(bad()),
        };
        let nonce = Nonce::parse(nonce).ok_or_else(bad)?;
        let (versions, topology, purpose) = match &words[3..] {
            // Version 1: names and nonce only.
            [] => (Versions { lo: 1, hi: 1 }, None, Purpose::Link),
            [versions, topology, purpose] => (
                Versions::parse(versions).ok_or_else(bad)?,
                Some(TopologyDigest::parse(topology).ok_or_else(bad)?),
                match *purpose {
                    b"link" => Purpose::Link,
                    b"repair" => Purpose::Repair,
                    _ => return Err(bad()),
                },
            ),
            _ => return Err(bad()),
        };
        Ok(PeerLine::Hello(Hello {
            dialer,
            acceptor,
            nonce,
            versions,
            topology,
            purpose,
        }))
    }

    fn sums(mut parts: impl Iterator<Item = &'a [u8]>) -> Result<PeerLine<'a>, BadPeerLine> {
        let bad = || BadPeerLine("SUMS");
        let level: u8 = parts
            .next()
            .and_then(number)
            .filter(|&l| l < DEPTH)
            .ok_or_else(bad)?;
        let node = parts
            .next()
            .and_then(number)
            .filter(|&n| n < nodes_at(level))
            .ok_or_else(bad)?;
        let sums = parts.next().and_then(digest::from_hex).ok_or_else(bad)?;
        if parts.next().is_some() || sums.len() > digest::FANOUT {
            return Err(bad());
        }
        Ok(PeerLine::Sums { level, node, sums })
    }

    fn want(mut parts: impl Iterator<Item = &'a [u8]>) -> Result<PeerLine<'a>, BadPeerLine> {
        let bad = || BadPeerLine("WANT");
        let level: u8 = parts
            .next()
            .and_then(number)
            .filter(|&l| l < DEPTH)
            .ok_or_else(bad)?;
        let nodes = parts
            .map(|p| number(p).filter(|&n| n < nodes_at(level)))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(bad)?;
        Ok(PeerLine::Want { level, nodes })
    }

    /// Appends the line, with its `\n`.
    pub fn write(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = self.write_fields(out);
        out.push(b'\n');
    }

    fn write_fields(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        use std::io::Write;
        match self {
            PeerLine::Hello(h) => {
                write!(out, "HELLO {} {} {}", h.dialer, h.acceptor, h.nonce)?;
                match h.topology {
                    Some(topology) => {
                        write!(out, " {} {} {}", h.versions, topology, h.purpose.word())
                    }
                    None => Ok(()),
                }
            }
            PeerLine::Challenge {
                version,
                nonce,
                topology,
            } => write!(out, "CHALLENGE {version} {nonce} {topology}"),
            PeerLine::Proof(m) => write!(out, "PROOF {}", MacText(m)),
            PeerLine::Welcome(m) => write!(out, "WELCOME {}", MacText(m)),
            PeerLine::Refused(reason) => {
                out.extend_from_slice(b"? ");
                out.extend_from_slice(reason);
                Ok(())
            }
            PeerLine::At { spread, line } => {
                out.extend_from_slice(spread.prefix());
                out.extend_from_slice(line);
                Ok(())
            }
            PeerLine::Synced(n) => write!(out, "SYNCED {n}"),
            PeerLine::Ack(n) => write!(out, "ACK {n}"),
            PeerLine::Root(root) => write!(out, "ROOT {}", digest::to_hex(&[*root])),
            PeerLine::Sums { level, node, sums } => {
                write!(out, "SUMS {level} {node} {}", digest::to_hex(sums))
            }
            PeerLine::Want { level, nodes } => {
                write!(out, "WANT {level}")?;
                nodes.iter().try_for_each(|n| write!(out, " {n}"))
            }
            PeerLine::Keys(leaves) => {
                write!(out, "KEYS")?;
                leaves.iter().try_for_each(|l| write!(out, " {l}"))
            }
            PeerLine::Fps { leaf, fps } if fps.is_empty() => write!(out, "FPS {leaf}"),
            PeerLine::Fps { leaf, fps } => write!(out, "FPS {leaf} {}", digest::to_hex(fps)),
            PeerLine::End => write!(out, "END"),
            PeerLine::Prompt => write!(out, "PROMPT"),
            PeerLine::Blank => Ok(()),
        }
    }

    /// The line as bytes, with its `\n`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

/// A MAC as the wire writes it: hex, or `-` without a secret.
struct MacText<'a>(&'a Option<MacBytes>);

impl fmt::Display for MacText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(mac) => fmt::Display::fmt(mac, f),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(line: PeerLine<'_>) {
        let bytes = line.to_bytes();
        let text = &bytes[..bytes.len() - 1];
        assert_eq!(
            PeerLine::parse(text).as_ref(),
            Ok(&line),
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }

    #[test]
    fn every_verb_writes_what_it_parses() {
        let nonce = Nonce::random();
        let topology = TopologyDigest::random();
        round_trip(PeerLine::Hello(Hello {
            dialer: "Riley",
            acceptor: "Jaquez",
            nonce,
            versions: VERSIONS,
            topology: Some(topology),
            purpose: Purpose::Repair,
        }));
        round_trip(PeerLine::Hello(Hello {
            dialer: "Riley",
            acceptor: "Jaquez",
            nonce,
            versions: Versions { lo: 1, hi: 1 },
            topology: None,
            purpose: Purpose::Link,
        }));
        round_trip(PeerLine::Challenge {
            version: 2,
            nonce,
            topology,
        });
        round_trip(PeerLine::Proof(Some(MacBytes::random())));
        round_trip(PeerLine::Proof(None));
        round_trip(PeerLine::Welcome(Some(MacBytes::random())));
        round_trip(PeerLine::Welcome(None));
        round_trip(PeerLine::Refused(b"not a neighbour"));
        round_trip(PeerLine::At {
            spread: Spread::Flood,
            line: b"AT Riley +0.1 kiwi +1+1 1.0",
        });
        round_trip(PeerLine::At {
            spread: Spread::Tree,
            line: b"AT Riley +0.1 kiwi +1+1 1.0",
        });
        round_trip(PeerLine::Synced(12));
        round_trip(PeerLine::Ack(u64::MAX));
        round_trip(PeerLine::Root(0xdead_beef));
        round_trip(PeerLine::Sums {
            level: 3,
            node: 4095,
            sums: vec![1; 16],
        });
        round_trip(PeerLine::Want {
            level: 1,
            nodes: vec![0, 15],
        });
        round_trip(PeerLine::Keys(vec![0, LEAVES - 1]));
        round_trip(PeerLine::Fps {
            leaf: 7,
            fps: vec![],
        });
        round_trip(PeerLine::Fps {
            leaf: 7,
            fps: vec![3, 4],
        });
        round_trip(PeerLine::End);
        round_trip(PeerLine::Prompt);
        round_trip(PeerLine::Blank);
    }

    #[test]
    fn fields_out_of_range_are_refused() {
        for bad in [
            &b"HELLO Riley Jaquez 00"[..],
            b"HELLO Riley Jaquez 00112233445566778899aabbccddeeff 2-1 0011223344556677 link",
            b"HELLO Riley Jaquez 00112233445566778899aabbccddeeff 0-2 0011223344556677 link",
            b"HELLO Riley Jaquez 00112233445566778899aabbccddeeff 2-2 0011223344556677 dance",
            b"HELLO Riley Jaquez 00112233445566778899aabbccddeeff 2-2 001122 link",
            b"HELLO Riley Jaquez 00112233445566778899aabbccddeeff 2-2",
            b"HELLO R\x1b[2J Jaquez 00112233445566778899aabbccddeeff",
            b"CHALLENGE 2 00112233445566778899aabbccddeeff",
            b"PROOF abc",
            b"PROOF +f",
            b"WELCOME",
            b"SYNCED -1",
            b"SYNCED +1",
            b"ACK 1 2",
            b"ROOT 00",
            b"SUMS 4 0 00",
            b"SUMS 1 16 0000000000000000",
            b"WANT 2 256",
            b"KEYS 65536",
            b"FPS 65536",
            b"FPS 1 00 00",
            b"END now",
            b"FLOOD WANT 1",
            b"BOGUS",
        ] {
            assert!(
                PeerLine::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn versions_meet_at_the_highest_common_one() {
        let v = |lo, hi| Versions { lo, hi };
        assert_eq!(v(2, 3).common(v(1, 2)), Some(2));
        assert_eq!(v(2, 4).common(v(3, 9)), Some(4));
        assert_eq!(v(2, 2).common(v(1, 1)), None);
    }

    #[test]
    fn hex_takes_hex_digits_only() {
        assert_eq!(from_hex(b"00ffA0"), Some(vec![0x00, 0xff, 0xa0]));
        for bad in [&b"+f"[..], b"-f", b" f", b"0x", b"f", b"\xc3\xa9"] {
            assert_eq!(from_hex(bad), None, "{bad:?}");
        }
    }
}
