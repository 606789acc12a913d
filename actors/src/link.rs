//! The state of one outgoing link, apart from its I/O: whether it is down,
//! connecting, syncing or up; whether it has gone silent (stalled); what the
//! store was last told (carrying or not); and the window of records written
//! and not yet acknowledged. Modelled on raft-rs's `Progress` (the state a
//! leader keeps per follower) and `Inflights` (the window of messages in
//! flight): a plain struct the [`PeerActor`](crate::peer::PeerActor) drives
//! and the unit tests below drive without a socket.
//!
//! The transitions:
//!
//! ```text
//! Down -> Connecting -> Syncing -> Up --(nothing acknowledged for ACK_TIMEOUT
//!   ^         |            |      |      while lines wait)--> Up, stalled
//!   +---------+------------+------+     <--(an ACK)-- Up, stalled
//! ```
//!
//! A link *carries* (the store may send updates down a tree through it)
//! while it is up, not stalled, and its socket keeps up. When it stops
//! carrying, the records that went down a tree through it and are not yet
//! acknowledged are handed back, for the store to flood around it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::peer_line::Spread;
use crate::record::SharedRecord;

/// A link that acknowledges nothing for this long while lines wait for it
/// stops carrying. Ten times the neighbour's acknowledgement period, so a
/// busy neighbour is not taken for a dead one.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(500);

/// Most records remembered until acknowledged (32 bytes each); past it the
/// oldest are forgotten, and a failure leaves them to the next sync.
pub const MAX_UNACKED: usize = 1 << 16;

/// The state of an outgoing peer link, as the admin pages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Down,
    Connecting,
    /// Connected; catch-up records are being sent.
    Syncing,
    Up,
}

impl LinkState {
    /// Every state, in the order the admin pages list them.
    pub const ALL: [LinkState; 4] = [
        LinkState::Down,
        LinkState::Connecting,
        LinkState::Syncing,
        LinkState::Up,
    ];

    /// The `state` label and the word `/status` shows.
    pub fn label(self) -> &'static str {
        match self {
            LinkState::Down => "down",
            LinkState::Connecting => "connecting",
            LinkState::Syncing => "syncing",
            LinkState::Up => "up",
        }
    }
}

/// A record written to the link and not yet acknowledged.
#[derive(Debug, Clone)]
struct Inflight {
    /// Its line number since the sync: the neighbour's `ACK` counts lines.
    line: u64,
    record: SharedRecord,
    spread: Spread,
}

/// What the store must hear of a link: whether it carries now, and the
/// records to flood around it.
#[derive(Debug)]
pub struct Report {
    pub carrying: bool,
    pub undelivered: Vec<SharedRecord>,
}

/// One outgoing link's state.
#[derive(Debug)]
pub struct Link {
    state: LinkState,
    /// Nothing acknowledged for [`ACK_TIMEOUT`] while lines waited.
    stalled: bool,
    /// What the store was last told.
    carrying: bool,
    /// Lines written since the sync.
    written: u64,
    unacked: VecDeque<Inflight>,
    /// When the neighbour last acknowledged (or the wait began).
    last_ack: Instant,
}

impl Link {
    pub fn new(now: Instant) -> Link {
        Link {
            state: LinkState::Down,
            stalled: false,
            carrying: false,
            written: 0,
            unacked: VecDeque::new(),
            last_ack: now,
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn is_up(&self) -> bool {
        self.state == LinkState::Up
    }

    /// Records written and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.unacked.len()
    }

    /// Moves to `state`. A new connection counts its lines afresh; a link
    /// that comes up starts its wait for acknowledgements now.
    pub fn set_state(&mut self, state: LinkState, now: Instant) {
        self.state = state;
        if state == LinkState::Up {
            self.last_ack = now;
        } else {
            self.written = 0;
            self.stalled = false;
        }
    }

    /// Whether updates may go down a tree through the link: up, not
    /// silent, and the socket keeping up (`keeping_up`).
    pub fn takes_floods(&self, keeping_up: bool) -> bool {
        self.is_up() && !self.stalled && keeping_up
    }

    /// A record written to the socket, to be acknowledged.
    pub fn sent(&mut self, record: SharedRecord, spread: Spread, now: Instant) {
        self.written += 1;
        if self.unacked.is_empty() {
            // Nothing was outstanding: the wait for an ACK starts now.
            self.last_ack = now;
        }
        if self.unacked.len() >= MAX_UNACKED {
            self.unacked.pop_front();
        }
        self.unacked.push_back(Inflight {
            line: self.written,
            record,
            spread,
        });
    }

    /// The neighbour has read `count` lines since the sync: returns the
    /// records that acknowledges, and whether the link was stalled (it
    /// carries again).
    pub fn acked(&mut self, count: u64, now: Instant) -> (Vec<SharedRecord>, bool) {
        self.last_ack = now;
        let mut acked = Vec::new();
        while self.unacked.front().is_some_and(|i| i.line <= count) {
            if let Some(inflight) = self.unacked.pop_front() {
                acked.push(inflight.record);
            }
        }
        let resumed = std::mem::take(&mut self.stalled);
        (acked, resumed)
    }

    /// Whether the link has just gone silent: up, lines waiting, nothing
    /// acknowledged for [`ACK_TIMEOUT`]. A neighbour that acknowledges late
    /// still acknowledges, and is not routed around.
    pub fn check(&mut self, now: Instant) -> bool {
        let silent =
            !self.unacked.is_empty() && now.saturating_duration_since(self.last_ack) > ACK_TIMEOUT;
        if silent && self.is_up() && !self.stalled {
            self.stalled = true;
            return true;
        }
        false
    }

    /// What the store must hear, if anything: the link carries now
    /// (`carrying`) where it did not, or the other way round, or there are
    /// `bounced` records (that the link could only hold) to flood around it.
    /// When it stops carrying, the unacknowledged records that went down a
    /// tree through it join them (flooded ones went everywhere already).
    pub fn report(&mut self, carrying: bool, mut bounced: Vec<SharedRecord>) -> Option<Report> {
        if carrying == self.carrying && bounced.is_empty() {
            return None;
        }
        if !carrying {
            let down_a_tree = self.unacked.drain(..).filter(|i| i.spread == Spread::Tree);
            bounced.extend(down_a_tree.map(|i| i.record));
        }
        self.carrying = carrying;
        Some(Report {
            carrying,
            undelivered: bounced,
        })
    }

    /// Forgets the window (a restarted link: the next sync covers it).
    pub fn forget_window(&mut self) {
        self.unacked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn record(client: &str) -> SharedRecord {
        let line = format!("AT Riley +0.263873386 {client} +34.068930-118.445127 1621464827.9");
        Record::from_at_line(line.as_bytes()).unwrap().into()
    }

    fn up(now: Instant) -> Link {
        let mut link = Link::new(now);
        link.set_state(LinkState::Connecting, now);
        link.set_state(LinkState::Syncing, now);
        link.set_state(LinkState::Up, now);
        link
    }

    #[test]
    fn only_an_up_link_that_keeps_up_takes_floods() {
        let now = Instant::now();
        let mut link = Link::new(now);
        for state in [LinkState::Down, LinkState::Connecting, LinkState::Syncing] {
            link.set_state(state, now);
            assert!(!link.takes_floods(true), "{state:?}");
        }
        link.set_state(LinkState::Up, now);
        assert!(link.takes_floods(true));
        assert!(!link.takes_floods(false), "a socket that does not keep up");
    }

    #[test]
    fn acknowledgements_count_lines_and_free_the_window() {
        let now = Instant::now();
        let mut link = up(now);
        for client in ["a", "b", "c"] {
            link.sent(record(client), Spread::Tree, now);
        }
        let (acked, resumed) = link.acked(2, now);
        let names: Vec<&[u8]> = acked.iter().map(|r| r.client()).collect();
        assert_eq!(names, [&b"a"[..], b"b"]);
        assert!(!resumed);
        assert_eq!(link.in_flight(), 1);
        // A late, smaller count acknowledges nothing more.
        assert!(link.acked(1, now).0.is_empty());
        assert_eq!(link.acked(3, now).0.len(), 1);
        assert_eq!(link.in_flight(), 0);
    }

    #[test]
    fn a_silent_link_stalls_once_and_an_ack_resumes_it() {
        let start = Instant::now();
        let mut link = up(start);
        // Silent with nothing waiting is idle, not stalled.
        assert!(!link.check(start + ACK_TIMEOUT * 3));
        link.sent(record("a"), Spread::Tree, start);
        assert!(!link.check(start + ACK_TIMEOUT), "not yet");
        let later = start + ACK_TIMEOUT + Duration::from_millis(1);
        assert!(link.check(later));
        assert!(!link.check(later), "reported once");
        assert!(!link.takes_floods(true));
        let (_, resumed) = link.acked(1, later);
        assert!(resumed);
        assert!(link.takes_floods(true));
    }

    #[test]
    fn stopping_to_carry_hands_back_what_went_down_a_tree_unacknowledged() {
        let now = Instant::now();
        let mut link = up(now);
        assert!(link.report(true, Vec::new()).is_some_and(|r| r.carrying));
        assert!(
            link.report(true, Vec::new()).is_none(),
            "no change, nothing to say"
        );
        link.sent(record("tree"), Spread::Tree, now);
        link.sent(record("flooded"), Spread::Flood, now);
        let report = link.report(false, vec![record("held")]).unwrap();
        assert!(!report.carrying);
        let names: Vec<&[u8]> = report.undelivered.iter().map(|r| r.client()).collect();
        assert_eq!(names, [&b"held"[..], b"tree"]);
        assert_eq!(link.in_flight(), 0);
    }

    #[test]
    fn a_new_connection_counts_its_lines_afresh() {
        let now = Instant::now();
        let mut link = up(now);
        link.sent(record("a"), Spread::Tree, now);
        link.set_state(LinkState::Down, now);
        link.set_state(LinkState::Up, now);
        link.forget_window();
        link.sent(record("b"), Spread::Tree, now);
        let (acked, _) = link.acked(1, now);
        assert_eq!(acked.len(), 1);
        assert_eq!(acked[0].client(), b"b");
    }

    #[test]
    fn the_window_is_bounded() {
        let now = Instant::now();
        let mut link = up(now);
        let shared = record("a");
        for _ in 0..MAX_UNACKED + 10 {
            link.sent(shared.clone(), Spread::Tree, now);
        }
        assert_eq!(link.in_flight(), MAX_UNACKED);
    }
}
