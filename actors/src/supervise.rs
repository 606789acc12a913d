//! Supervision (SPEC §4): the store, places and peer actors are restarted
//! when they stop or panic, with their state rebuilt, and a restart storm
//! ends the process so that the supervisor outside (systemd, compose,
//! Kubernetes) starts it afresh. This is OTP's restart intensity.
//!
//! The actors run under actix's [`Supervisor`](actix::Supervisor): an actor
//! that stops is started again on the same mailbox, so every address handed
//! out before keeps working, and its `restarting` rebuilds what it owns (the
//! store from its journal, or empty and refilled by its neighbours). A panic
//! inside a handler would unwind through the actor's task and take the
//! mailbox with it, so the handlers that do real work run [`guarded`]: the
//! panic is caught, logged, and turned into a stop, which the supervisor
//! then sees as any other.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext};
use log::error;

/// Restarts allowed within [`WINDOW`] before the process gives up.
pub const MAX_RESTARTS: usize = 5;
/// The window of [`MAX_RESTARTS`].
pub const WINDOW: Duration = Duration::from_secs(10);

/// What the process does on a restart storm (the binary exits non-zero).
pub type OnStorm = Arc<dyn Fn(&str) + Send + Sync>;

/// The restarts of one server's actors, shared by all of them.
#[derive(Clone)]
pub struct RestartBudget {
    recent: Arc<Mutex<VecDeque<Instant>>>,
    on_storm: OnStorm,
}

impl std::fmt::Debug for RestartBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestartBudget")
    }
}

impl Default for RestartBudget {
    /// A budget whose storm only logs (tests; the binary passes an exit).
    fn default() -> Self {
        RestartBudget::new(Arc::new(
            |what| error!(target: "herd", "restart storm: {what}"),
        ))
    }
}

impl RestartBudget {
    pub fn new(on_storm: OnStorm) -> RestartBudget {
        RestartBudget {
            recent: Arc::default(),
            on_storm,
        }
    }

    /// Notes one restart of `actor` at `now`; more than [`MAX_RESTARTS`]
    /// within [`WINDOW`] is a storm, and `on_storm` is called.
    pub fn restarted(&self, actor: &str, now: Instant) -> bool {
        let storm = {
            let Ok(mut recent) = self.recent.lock() else {
                return false;
            };
            recent.push_back(now);
            while recent
                .front()
                .is_some_and(|&at| now.saturating_duration_since(at) > WINDOW)
            {
                recent.pop_front();
            }
            recent.len() > MAX_RESTARTS
        };
        if storm {
            (self.on_storm)(&format!(
                "{actor}: more than {MAX_RESTARTS} actor restarts within {WINDOW:?}"
            ));
        }
        storm
    }
}

/// Runs `work` on `actor`; if it panics, the panic is logged and the actor
/// stopped (its supervisor restarts it), and `fallback` is returned.
pub fn guarded<A, R>(
    actor: &mut A,
    ctx: &mut A::Context,
    what: impl FnOnce(&A) -> String,
    fallback: impl FnOnce() -> R,
    work: impl FnOnce(&mut A, &mut A::Context) -> R,
) -> R
where
    A: Actor,
    A::Context: ActorContext,
{
    match catch_unwind(AssertUnwindSafe(|| work(actor, ctx))) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error!(target: "herd", "{} panicked: {message}; restarting it", what(actor));
            ctx.stop();
            fallback()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_storm_is_more_than_five_restarts_within_ten_seconds() {
        let storms = Arc::new(AtomicUsize::new(0));
        let counted = storms.clone();
        let budget = RestartBudget::new(Arc::new(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        }));
        let start = Instant::now();
        for i in 0..5 {
            assert!(!budget.restarted("store", start + Duration::from_secs(i)));
        }
        // The first has left the window by the sixth: no storm.
        assert!(!budget.restarted("store", start + Duration::from_millis(10_500)));
        assert!(budget.restarted("store", start + Duration::from_millis(10_600)));
        assert_eq!(storms.load(Ordering::Relaxed), 1);
    }
}
