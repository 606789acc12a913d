//! The token bucket in front of an upstream places provider (SPEC §5).
//!
//! The bucket holds up to `burst` tokens and refills at `rate` tokens per
//! second; an upstream call takes one. When the bucket is empty a request may
//! still *reserve* a token that will only exist a little later, and wait for
//! it, provided that wait is at most `max_wait`; the reservation is taken at
//! once (the token count goes below zero), so requests queue in arrival order
//! and the queue can never grow beyond `rate * max_wait` requests. A request
//! that would have to wait longer is refused without consuming anything, and
//! the actor answers it with `OVER_QUERY_LIMIT`.
//!
//! The clock is passed in, so the arithmetic is tested without sleeping.
//!
//! Kept hand-written rather than `governor`: governor cannot reserve a token
//! (a refused check takes nothing and `until_ready` polls again), so waits
//! would be neither in arrival order nor bounded by `max_wait` as above.

use std::time::{Duration, Instant};

/// What the bucket says to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// A token was there: go.
    Now,
    /// A token was reserved: go after this wait.
    After(Duration),
    /// No token within the longest allowed wait.
    Refused,
}

/// A token bucket with a bounded wait.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    max_wait: Duration,
    /// May be negative: tokens already promised to waiting requests.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive (a rate of zero means "no
    /// limit" and is handled by not having a bucket at all); a burst below
    /// one is raised to one, or no request could ever start at once.
    pub fn new(rate: f64, burst: u32, max_wait: Duration, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: if rate.is_finite() && rate > 0.0 {
                rate
            } else {
                f64::MIN_POSITIVE
            },
            burst,
            max_wait,
            tokens: burst,
            last: now,
        }
    }

    /// Takes (or reserves) one token at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Now;
        }
        let wait_secs = (1.0 - self.tokens) / self.rate;
        match Duration::try_from_secs_f64(wait_secs) {
            Ok(wait) if wait <= self.max_wait => {
                self.tokens -= 1.0;
                // Refills add up in floating point: a token short by a
                // rounding error is a token.
                if wait.is_zero() {
                    Admission::Now
                } else {
                    Admission::After(wait)
                }
            }
            _ => Admission::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_lets_the_burst_through_then_refuses() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 5, Duration::ZERO, t0);
        for _ in 0..5 {
            assert_eq!(bucket.admit(t0), Admission::Now);
        }
        assert_eq!(bucket.admit(t0), Admission::Refused);
        // Refusals consume nothing: 100 ms later exactly one token is back.
        assert_eq!(bucket.admit(t0 + ms(100)), Admission::Now);
        assert_eq!(bucket.admit(t0 + ms(100)), Admission::Refused);
    }

    #[test]
    fn waits_are_reserved_in_order_and_bounded() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 1, ms(250), t0);
        assert_eq!(bucket.admit(t0), Admission::Now);
        let waits: Vec<Admission> = (0..4).map(|_| bucket.admit(t0)).collect();
        let close = |a: Admission, expected: u64| match a {
            Admission::After(d) => d.abs_diff(ms(expected)) < ms(1),
            _ => false,
        };
        assert!(close(waits[0], 100), "{waits:?}");
        assert!(close(waits[1], 200), "{waits:?}");
        // The third would wait 300 ms > 250 ms: refused, and so is the fourth.
        assert_eq!(waits[2], Admission::Refused);
        assert_eq!(waits[3], Admission::Refused);
    }

    #[test]
    fn refill_never_exceeds_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 3, Duration::ZERO, t0);
        let later = t0 + Duration::from_secs(60);
        let admitted = (0..10)
            .filter(|_| bucket.admit(later) == Admission::Now)
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        // 1,000 requests spread over 2 s at 50/s with a burst of 10: at most
        // 10 + 2 * 50 get through.
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(50.0, 10, Duration::ZERO, t0);
        let admitted = (0..1000u64)
            .filter(|i| bucket.admit(t0 + ms(i * 2)) == Admission::Now)
            .count();
        assert!((100..=110).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_clock_going_backwards_does_not_mint_tokens() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut bucket = TokenBucket::new(1.0, 1, Duration::ZERO, t0);
        assert_eq!(bucket.admit(t0), Admission::Now);
        assert_eq!(bucket.admit(t0 - ms(500)), Admission::Refused);
        assert_eq!(bucket.admit(t0), Admission::Refused);
    }
}
