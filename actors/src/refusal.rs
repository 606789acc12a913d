//! How refusals are logged: at most once a second, with a count, so that a
//! flood of connections (clients beyond the limit, web pages speaking HTTP
//! to the client port, strangers failing the peer handshake) cannot become
//! a flood of log lines as well. [`RefusalLog`] for one kind of refusal
//! overall; [`SourceRefusals`] for one kind per source (an IPv4 address, an
//! IPv6 /64: [`source_of`]), so that one noisy source does not hide
//! another: a source's first few refusals are each logged (an operator
//! trying things sees every answer), then at most one line a second, with
//! the count.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line a second, with how many refusals it stands for.
const EVERY: Duration = Duration::from_secs(1);

/// Sources remembered at once by a [`SourceRefusals`]; past it, those whose
/// credit is whole again (forgetting them changes nothing) are forgotten.
const MAX_SOURCES: usize = 4096;

/// Refusals of one source logged one by one before the once-a-second rule.
const BURST: u32 = 8;

/// Refusals of one kind, logged at most once a second with their count.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// Refusals since the last line.
    unlogged: u64,
    /// When the last line was written.
    last: Option<Instant>,
}

impl RefusalLog {
    /// Counts one refusal at `now`; if a line is due, returns how many
    /// refusals it reports (this one included) and starts counting afresh.
    pub fn count(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self.quiet_until(now) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// Whether a line was written less than a second before `now`.
    fn quiet_until(&self, now: Instant) -> bool {
        self.last
            .is_some_and(|at| now.saturating_duration_since(at) < EVERY)
    }
}

/// The source a connection is counted under: an IPv4 address (also when
/// it arrives IPv4-mapped), or an IPv6 address's /64, since one host
/// commonly holds a whole /64. The per-source bounds (these logs, the
/// handshake slots of listener.rs) all count by it.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Refusals of one kind, logged per source ([`source_of`]): up to
/// [`BURST`] lines at once, then one a second (a token bucket), each with
/// the refusals it stands for. Shared by the connections of one server.
#[derive(Debug, Default)]
pub struct SourceRefusals {
    sources: Mutex<HashMap<IpAddr, SourceLog>>,
}

/// One source's bucket.
#[derive(Debug)]
struct SourceLog {
    /// Refusals since the last line.
    unlogged: u64,
    /// Lines that may be written now.
    credit: u32,
    /// When credit was last added (whole seconds are added).
    refilled: Instant,
}

impl SourceLog {
    fn new(now: Instant) -> SourceLog {
        SourceLog {
            unlogged: 0,
            credit: BURST,
            refilled: now,
        }
    }

    fn count(&mut self, now: Instant) -> Option<u64> {
        let seconds = now.saturating_duration_since(self.refilled).as_secs();
        if seconds > 0 {
            let added = u32::try_from(seconds).unwrap_or(u32::MAX);
            self.credit = self.credit.saturating_add(added).min(BURST);
            self.refilled += EVERY * added.min(BURST);
            if seconds >= u64::from(BURST) {
                self.refilled = now;
            }
        }
        self.unlogged += 1;
        if self.credit == 0 {
            return None;
        }
        self.credit -= 1;
        Some(std::mem::take(&mut self.unlogged))
    }

    /// Whether forgetting this source would change nothing: nothing
    /// unlogged, and its credit whole again by `now`.
    fn spent(&self, now: Instant) -> bool {
        self.unlogged == 0
            && now.saturating_duration_since(self.refilled) >= EVERY * (BURST - self.credit)
    }
}

impl SourceRefusals {
    /// Counts one refusal of `source` at `now`; if a line is due, returns
    /// how many refusals of that source it reports (this one included).
    pub fn count(&self, source: IpAddr, now: Instant) -> Option<u64> {
        let source = source_of(source);
        let Ok(mut sources) = self.sources.lock() else {
            // Poisoned by a panic elsewhere: still log, unthrottled.
            return Some(1);
        };
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, log| !log.spent(now));
            if sources.len() >= MAX_SOURCES {
                sources.clear();
            }
        }
        sources
            .entry(source)
            .or_insert_with(|| SourceLog::new(now))
            .count(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_most_once_a_second_with_their_count() {
        let start = Instant::now();
        let mut log = RefusalLog::default();
        assert_eq!(log.count(start), Some(1));
        assert_eq!(log.count(start + Duration::from_millis(10)), None);
        assert_eq!(log.count(start + Duration::from_millis(999)), None);
        assert_eq!(log.count(start + Duration::from_secs(1)), Some(3));
        assert_eq!(log.count(start + Duration::from_millis(1500)), None);
        assert_eq!(log.count(start + Duration::from_secs(3)), Some(2));
    }

    #[test]
    fn a_source_gets_a_few_lines_then_one_a_second_and_others_their_own() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let log = SourceRefusals::default();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        for i in 0..u64::from(BURST) {
            assert_eq!(log.count(a, ms(i)), Some(1), "refusal {i}");
        }
        assert_eq!(log.count(a, ms(10)), None);
        assert_eq!(log.count(a, ms(20)), None);
        assert_eq!(log.count(b, ms(30)), Some(1), "another source");
        assert_eq!(log.count(a, ms(1000)), Some(3));
        assert_eq!(log.count(a, ms(1500)), None);
        assert_eq!(log.count(a, ms(2000)), Some(2));
        // A thousand refusals in a second: BURST lines, not a thousand.
        let c: IpAddr = [10, 0, 0, 3].into();
        let lines = (0..1000).filter(|i| log.count(c, ms(*i)).is_some()).count();
        assert_eq!(lines, BURST as usize);
        // Quiet for long enough, a source has its whole burst again.
        let lines = (0..20)
            .filter(|i| log.count(c, ms(60_000 + *i)).is_some())
            .count();
        assert_eq!(lines, BURST as usize);
    }

    #[test]
    fn a_source_is_an_ipv4_address_or_an_ipv6_64() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        assert_eq!(source_of(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(source_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:ffff::1")),
            source_of(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
        // One host's many addresses share one bucket.
        let start = Instant::now();
        let log = SourceRefusals::default();
        let lines = (0..100u16)
            .filter(|i| {
                let addr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, *i));
                log.count(addr, start).is_some()
            })
            .count();
        assert_eq!(lines, BURST as usize);
    }

    #[test]
    fn many_sources_stay_bounded() {
        let start = Instant::now();
        let log = SourceRefusals::default();
        for i in 0..(MAX_SOURCES as u32 * 3) {
            let source = IpAddr::from(i.to_be_bytes());
            assert_eq!(log.count(source, start), Some(1));
        }
        let held = log.sources.lock().map(|s| s.len()).unwrap_or(0);
        assert!(held <= MAX_SOURCES, "{held}");
    }
}
