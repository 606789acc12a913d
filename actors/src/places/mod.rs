//! The PlacesActor: one per server, answering "what lies near this point"
//! (SPEC §5) in Google's Nearby Search response format.
//!
//! The actor owns one provider (one file each in this folder: `offline`,
//! `google`, `google-new`) and does what every provider needs around it:
//!
//! - a deadline on every upstream request: a provider that does not answer
//!   in time yields an `UNKNOWN_ERROR` answer, never a hang;
//! - for upstream providers, a [`rate_limit::TokenBucket`] with a bounded
//!   wait (beyond it: `OVER_QUERY_LIMIT` at once), a [`cache::TtlCache`] of
//!   answers keyed by what the upstream is asked (provider, location,
//!   radius: never the bound, so one answer serves every bound), and
//!   coalescing: requests for the same upstream question that arrive while
//!   one is in flight wait for that one instead of calling again;
//! - cutting `results` to the WHATSAT bound (dropping `next_page_token`
//!   when that cut drops results, since following it would skip them) and
//!   shaping the JSON as SPEC §3 asks (no blank line inside, two newlines
//!   after);
//! - counting answers by provider and status, upstream calls, cache hits,
//!   coalesced and rate-limited requests in [`Metrics`].
//!
//! The offline provider answers from memory in microseconds, so it skips the
//! bucket, the cache and the coalescing (they would only cost it time).
//! Places are never flooded; each server asks its own provider.
//! docs/places.md describes the behaviour for operators.

pub mod cache;
pub mod feature_types;
pub mod geonames;
pub mod google;
pub mod google_new;
pub mod http;
pub mod kdtree;
pub mod offline;
pub mod rate_limit;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::protocol::{self, Location, Radius};
use cache::TtlCache;
use rate_limit::{Admission, TokenBucket};

use crate::supervise::guarded;

const LOG: &str = "places";

/// What a WHATSAT asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query {
    pub location: Location,
    pub radius: Radius,
    pub bound: u8,
}

/// A WHATSAT's [`Query`], asked of the PlacesActor. Answered with the JSON
/// body, shaped and followed by two newlines, ready to write after the AT
/// line.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Bytes")]
pub struct Nearby(pub Query);

/// A source of places. Answers in the legacy Nearby Search format, errors
/// included (as a `status` and an `error_message`), and never fails otherwise.
/// The returned future should do nothing until polled: the actor may hold it
/// back while the rate limit makes it wait.
pub trait Provider {
    /// The provider's name, as in the configuration and the metrics.
    fn name(&self) -> &'static str;
    fn nearby(&self, query: Query) -> LocalBoxFuture<'static, Value>;
}

/// The token bucket's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second; 0 (or less) means no limit.
    pub per_sec: f64,
    /// Tokens the bucket holds when full.
    pub burst: u32,
    /// Longest a request waits for a token before `OVER_QUERY_LIMIT`.
    pub max_wait: Duration,
}

/// How the actor guards an upstream provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Sharing {
    pub rate: RateLimit,
    /// How long an answer is reused; zero disables the cache.
    pub cache_ttl: Duration,
    /// Most answers kept; zero disables the cache.
    pub cache_entries: usize,
}

/// How the actor runs its provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Longest a provider may take for one request; `None` for a local
    /// provider, whose only wait is its data loading once.
    pub deadline: Option<Duration>,
    /// Rate limit, cache and coalescing; `None` for a local provider.
    pub sharing: Option<Sharing>,
}

impl Policy {
    /// A local provider: called directly, no deadline, nothing shared.
    pub fn local() -> Policy {
        Policy {
            deadline: None,
            sharing: None,
        }
    }
}

/// A legacy-format error answer with one of Google's statuses.
pub fn error_answer(status: &str, message: &str) -> Value {
    json!({
        "error_message": message,
        "html_attributions": [],
        "results": [],
        "status": status,
    })
}

/// An answer as the client gets it: `results` cut to `bound`, and
/// `next_page_token` left out when the cut dropped results (the token
/// leads to result 21 onwards, so passing it on would skip the dropped
/// ones). Serialized in place, so a cached answer is never copied.
struct Cut<'a> {
    answer: &'a Value,
    bound: usize,
}

impl Serialize for Cut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(members) = self.answer.as_object() else {
            return self.answer.serialize(serializer);
        };
        let results = members.get("results").and_then(Value::as_array);
        let cut = results.is_some_and(|r| r.len() > self.bound);
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in members {
            match (name.as_str(), results) {
                ("next_page_token", _) if cut => {}
                ("results", Some(results)) => {
                    map.serialize_entry(name, &results[..results.len().min(self.bound)])?
                }
                _ => map.serialize_entry(name, value)?,
            }
        }
        map.end()
    }
}

/// Writes `answer` cut to `bound` (see [`Cut`]) as Google does
/// (three-space indentation), shaped by [`protocol::places_body`].
pub fn shape(answer: &Value, bound: u8) -> Bytes {
    let cut = Cut {
        answer,
        bound: usize::from(bound),
    };
    let mut json = Vec::with_capacity(1024);
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut json, formatter);
    if cut.serialize(&mut serializer).is_err() {
        json = br#"{"html_attributions":[],"results":[],"status":"UNKNOWN_ERROR"}"#.to_vec();
    }
    Bytes::from(protocol::places_body(&json))
}

/// [`shape`] for an answer the caller no longer needs.
pub fn format_answer(answer: Value, bound: u8) -> Bytes {
    shape(&answer, bound)
}

/// The status field of an answer, for metrics and logs.
fn status_of(answer: &Value) -> &str {
    answer
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN_ERROR")
}

/// `call`, or an `UNKNOWN_ERROR` answer if it takes longer than `deadline`.
async fn within(deadline: Option<Duration>, call: LocalBoxFuture<'static, Value>) -> Value {
    let Some(deadline) = deadline else {
        return call.await;
    };
    match tokio::time::timeout(deadline, call).await {
        Ok(answer) => answer,
        Err(_) => error_answer(
            "UNKNOWN_ERROR",
            &format!(
                "no answer from the places service within {} ms",
                deadline.as_millis()
            ),
        ),
    }
}

/// An upstream answer as the cache and coalescing share it: whole, not
/// cut, so it serves every bound; each client's body is shaped from it.
#[derive(Debug, Clone)]
struct Fetched {
    value: Arc<Value>,
    status: Arc<str>,
}

impl Fetched {
    fn of(value: Value) -> Fetched {
        Fetched {
            status: status_of(&value).into(),
            value: Arc::new(value),
        }
    }

    /// Worth reusing: a real answer, not a passing failure.
    fn cacheable(&self) -> bool {
        matches!(&*self.status, "OK" | "ZERO_RESULTS")
    }
}

/// One client's answer: its body, and the status for the metrics.
#[derive(Debug, Clone)]
struct Answer {
    body: Bytes,
    status: Arc<str>,
}

impl Answer {
    fn of(fetched: &Fetched, bound: u8) -> Answer {
        Answer {
            body: shape(&fetched.value, bound),
            status: fetched.status.clone(),
        }
    }
}

/// The cache key (SPEC §5): what the upstream is asked, which is provider,
/// location and radius (in the metres sent upstream) and never the bound:
/// the legacy API has no result count, and `google-new` always asks for
/// [`protocol::MAX_BOUND`] places. Coordinates are compared by their exact
/// bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    provider: &'static str,
    lat: u64,
    lon: u64,
    radius_m: u32,
}

impl Key {
    fn of(provider: &'static str, query: &Query) -> Key {
        Key {
            provider,
            lat: query.location.lat.to_bits(),
            lon: query.location.lon.to_bits(),
            radius_m: query.radius.metres(),
        }
    }
}

/// The state that guards an upstream provider.
struct Guard {
    bucket: Option<TokenBucket>,
    sharing: Sharing,
    cache: TtlCache<Key, Fetched>,
    /// Requests in flight, with everyone waiting for each and their bounds.
    in_flight: HashMap<Key, Vec<(u8, oneshot::Sender<Answer>)>>,
}

/// Owns the provider of one server.
pub struct PlacesActor {
    server: Arc<str>,
    provider: Box<dyn Provider>,
    metrics: Arc<Metrics>,
    deadline: Option<Duration>,
    guard: Option<Guard>,
}

impl PlacesActor {
    /// An actor with the local policy (no deadline, nothing shared).
    pub fn new(server: Arc<str>, provider: Box<dyn Provider>, metrics: Arc<Metrics>) -> Self {
        PlacesActor {
            server,
            provider,
            metrics,
            deadline: None,
            guard: None,
        }
    }

    /// Applies `policy`: the deadline, and for upstream providers the rate
    /// limit, cache and coalescing.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.deadline = policy.deadline;
        self.guard = policy.sharing.map(|sharing| Guard {
            bucket: (sharing.rate.per_sec > 0.0).then(|| {
                TokenBucket::new(
                    sharing.rate.per_sec,
                    sharing.rate.burst,
                    sharing.rate.max_wait,
                    Instant::now(),
                )
            }),
            cache: TtlCache::new(sharing.cache_ttl, sharing.cache_entries),
            sharing,
            in_flight: HashMap::new(),
        });
        self
    }

    /// Hands a finished upstream answer to everyone waiting for it, each
    /// cut to its own bound, and caches it if it is worth reusing.
    fn finish(&mut self, key: Key, answer: Value) {
        let fetched = Fetched::of(answer);
        let Some(guard) = self.guard.as_mut() else {
            return;
        };
        if fetched.cacheable() {
            guard.cache.insert(key, fetched.clone(), Instant::now());
        }
        // Shaped once per distinct bound among the waiters.
        let mut shaped: Vec<(u8, Answer)> = Vec::new();
        for (bound, waiter) in guard.in_flight.remove(&key).unwrap_or_default() {
            let answer = match shaped.iter().find(|(b, _)| *b == bound) {
                Some((_, answer)) => answer.clone(),
                None => {
                    let answer = Answer::of(&fetched, bound);
                    shaped.push((bound, answer.clone()));
                    answer
                }
            };
            // A waiter whose client left has dropped its receiver: fine.
            let _ = waiter.send(answer);
        }
    }
}

impl actix::Supervised for PlacesActor {
    /// Starts again with the same provider and policy; answers in flight
    /// were lost with the old run (their clients hear the deadline's error).
    fn restarting(&mut self, _: &mut Context<Self>) {
        Metrics::bump(&self.metrics.restarts_places);
        log::warn!(target: LOG, "{}: places actor restarted", self.server);
    }
}

impl Actor for PlacesActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        match &self.guard {
            Some(guard) => log::info!(target: LOG,
                "{}: places from {}, deadline {} ms, {} requests/s (burst {}, wait up to {} ms), \
                 cache {} answers for {} ms",
                self.server, self.provider.name(), self.deadline.map_or(0, |d| d.as_millis()),
                guard.sharing.rate.per_sec, guard.sharing.rate.burst,
                guard.sharing.rate.max_wait.as_millis(), guard.sharing.cache_entries,
                guard.sharing.cache_ttl.as_millis()),
            None => log::info!(target: LOG, "{}: places from {}", self.server,
                self.provider.name()),
        }
    }
}

impl Handler<Nearby> for PlacesActor {
    type Result = ResponseFuture<Bytes>;

    fn handle(&mut self, Nearby(query): Nearby, ctx: &mut Context<Self>) -> Self::Result {
        // A panic restarts the actor (its supervisor), and this WHATSAT
        // hears an error answer rather than nothing.
        let failed = move || -> ResponseFuture<Bytes> {
            let answer = error_answer("UNKNOWN_ERROR", "the places actor failed; try again");
            Box::pin(std::future::ready(shape(&answer, query.bound)))
        };
        guarded(self, ctx, PlacesActor::what, failed, |act, ctx| {
            act.nearby(query, ctx)
        })
    }
}

impl PlacesActor {
    /// What a panic's log line calls this actor.
    fn what(&self) -> String {
        format!("{}: the places actor", self.server)
    }

    /// Answers a WHATSAT's places question: from the provider directly
    /// (local), or through the cache, the coalescing and the rate limit.
    fn nearby(&mut self, query: Query, ctx: &mut Context<Self>) -> ResponseFuture<Bytes> {
        let provider = self.provider.name();
        let Some(guard) = self.guard.as_mut() else {
            return self.ask_local(query);
        };

        let key = Key::of(provider, &query);
        let now = Instant::now();
        if let Some(body) = cached_answer(guard, &self.metrics, &key, now, query.bound) {
            return Box::pin(std::future::ready(body));
        }
        let (tx, rx) = oneshot::channel();
        if let Some(waiters) = guard.in_flight.get_mut(&key) {
            Metrics::bump(&self.metrics.places_coalesced);
            log::debug!(target: LOG, "{}: places request joins the identical one in flight",
                self.server);
            waiters.push((query.bound, tx));
        } else {
            let wait = match self.admit(now, query.bound) {
                Ok(wait) => wait,
                Err(refused) => return Box::pin(std::future::ready(refused)),
            };
            self.call_upstream(key, query, wait, tx, ctx);
        }
        wait_for_answer(rx, self.metrics.clone(), provider, query.bound)
    }

    /// A local provider: called directly, within the deadline if there is one.
    fn ask_local(&self, query: Query) -> ResponseFuture<Bytes> {
        let metrics = self.metrics.clone();
        let provider = self.provider.name();
        let deadline = self.deadline;
        let call = self.provider.nearby(query);
        Box::pin(async move {
            let answer = within(deadline, call).await;
            metrics.count_places(provider, status_of(&answer));
            format_answer(answer, query.bound)
        })
    }

    /// Asks the rate limit whether an upstream call may go: after how long,
    /// or (`Err`) the `OVER_QUERY_LIMIT` body to answer at once.
    fn admit(&mut self, now: Instant, bound: u8) -> Result<Duration, Bytes> {
        let Some(guard) = self.guard.as_mut() else {
            return Ok(Duration::ZERO);
        };
        match guard.bucket.as_mut().map(|b| b.admit(now)) {
            None | Some(Admission::Now) => Ok(Duration::ZERO),
            Some(Admission::After(wait)) => Ok(wait),
            Some(Admission::Refused) => {
                Metrics::bump(&self.metrics.places_rate_limited);
                log::debug!(target: LOG, "{}: places request over the rate limit",
                    self.server);
                let answer = error_answer(
                    "OVER_QUERY_LIMIT",
                    &format!(
                        "more places requests than this server allows \
                         ({} per second, burst {})",
                        guard.sharing.rate.per_sec, guard.sharing.rate.burst
                    ),
                );
                self.metrics
                    .count_places(self.provider.name(), status_of(&answer));
                Err(format_answer(answer, bound))
            }
        }
    }

    /// Registers `tx` as the first waiter for `key` and calls the provider
    /// after `wait`, within the deadline; [`PlacesActor::finish`] hands the
    /// answer out.
    fn call_upstream(
        &mut self,
        key: Key,
        query: Query,
        wait: Duration,
        tx: oneshot::Sender<Answer>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(guard) = self.guard.as_mut() {
            guard.in_flight.insert(key, vec![(query.bound, tx)]);
        }
        Metrics::bump(&self.metrics.places_upstream_calls);
        let deadline = self.deadline;
        let call = self.provider.nearby(query);
        let upstream = async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            within(deadline, call).await
        };
        ctx.spawn(
            upstream
                .into_actor(self)
                .map(move |answer, act, _| act.finish(key, answer)),
        );
    }
}

/// The cached answer for `key` shaped to `bound`, if the cache holds one.
fn cached_answer(
    guard: &mut Guard,
    metrics: &Metrics,
    key: &Key,
    now: Instant,
    bound: u8,
) -> Option<Bytes> {
    let hit = guard.cache.get(key, now)?;
    Metrics::bump(&metrics.places_cache_hits);
    metrics.count_places(key.provider, &hit.status);
    Some(shape(&hit.value, bound))
}

/// The body of the answer `rx` brings (an `UNKNOWN_ERROR` one if the actor
/// stopped mid-request), counted in the metrics.
fn wait_for_answer(
    rx: oneshot::Receiver<Answer>,
    metrics: Arc<Metrics>,
    provider: &'static str,
    bound: u8,
) -> ResponseFuture<Bytes> {
    Box::pin(async move {
        let answer = match rx.await {
            Ok(answer) => answer,
            // Only if the actor stopped mid-request.
            Err(_) => Answer::of(
                &Fetched::of(error_answer(
                    "UNKNOWN_ERROR",
                    "the places request was abandoned",
                )),
                bound,
            ),
        };
        metrics.count_places(provider, &answer.status);
        answer.body
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_cut_to_the_bound_and_shaped() {
        let answer = json!({"html_attributions": [], "results": [1, 2, 3, 4], "status": "OK"});
        let body = format_answer(answer, 2);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.ends_with("}\n\n"));
        assert!(!text.trim_end().contains("\n\n"));
        let parsed: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parsed["results"], json!([1, 2]));
        assert!(
            text.contains("\n   \"results\""),
            "three-space indent: {text}"
        );
    }

    #[test]
    fn the_page_token_goes_when_the_cut_drops_results() {
        let answer = json!({"html_attributions": [], "next_page_token": "t",
            "results": [1, 2, 3], "status": "OK"});
        let cut = parse(&shape(&answer, 2));
        assert!(cut.get("next_page_token").is_none(), "{cut}");
        assert_eq!(cut["results"], json!([1, 2]));
        // Nothing dropped: the token leads to the next page, kept in place.
        for bound in [3, 20] {
            let whole = shape(&answer, bound);
            let text = std::str::from_utf8(&whole).unwrap();
            assert!(
                text.find("next_page_token") < text.find("results"),
                "{text}"
            );
            assert_eq!(parse(&whole), answer);
        }
    }

    #[actix_rt::test]
    async fn requests_of_different_bounds_in_flight_share_one_call() {
        let (actor, calls, metrics) = start(Some(Duration::from_millis(50)), shared(100.0, 10, 0));
        let asks: Vec<_> = [1, 7, 3, 7]
            .into_iter()
            .map(|b| actor.send(nearby("5", b)))
            .collect();
        let bodies = futures_util::future::join_all(asks).await;
        let lengths: Vec<usize> = bodies
            .iter()
            .map(|b| {
                parse(b.as_ref().unwrap())["results"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(lengths, [1, 5, 3, 5]);
        assert_eq!(calls.get(), 1);
        assert_eq!(Metrics::get(&metrics.places_coalesced), 3);
    }

    use std::cell::Cell;
    use std::rc::Rc;

    /// A provider for the actor's own logic: counts its calls and answers
    /// after `delay` (or never), with as many results as the radius has km.
    struct Counting {
        calls: Rc<Cell<u32>>,
        delay: Option<Duration>,
    }

    impl Provider for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }

        fn nearby(&self, query: Query) -> LocalBoxFuture<'static, Value> {
            let calls = self.calls.clone();
            let delay = self.delay;
            Box::pin(async move {
                calls.set(calls.get() + 1);
                match delay {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending::<()>().await,
                }
                let n = query.radius.km() as usize;
                json!({"html_attributions": [], "results": vec![json!({"n": 1}); n], "status": "OK"})
            })
        }
    }

    fn nearby(km: &str, bound: u8) -> Nearby {
        Nearby(Query {
            location: Location {
                lat: 34.06893,
                lon: -118.445127,
            },
            radius: Radius::parse(km.as_bytes()).unwrap(),
            bound,
        })
    }

    fn shared(per_sec: f64, burst: u32, max_wait_ms: u64) -> Policy {
        Policy {
            deadline: Some(Duration::from_millis(500)),
            sharing: Some(Sharing {
                rate: RateLimit {
                    per_sec,
                    burst,
                    max_wait: Duration::from_millis(max_wait_ms),
                },
                cache_ttl: Duration::from_secs(30),
                cache_entries: 100,
            }),
        }
    }

    fn start(
        delay: Option<Duration>,
        policy: Policy,
    ) -> (Addr<PlacesActor>, Rc<Cell<u32>>, Arc<Metrics>) {
        let calls = Rc::new(Cell::new(0));
        let metrics = Arc::new(Metrics::default());
        let provider = Counting {
            calls: calls.clone(),
            delay,
        };
        let actor = PlacesActor::new("Test".into(), Box::new(provider), metrics.clone())
            .with_policy(policy)
            .start();
        (actor, calls, metrics)
    }

    fn parse(body: &Bytes) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[actix_rt::test]
    async fn identical_requests_share_one_call_then_hit_the_cache() {
        let (actor, calls, metrics) = start(Some(Duration::from_millis(50)), shared(100.0, 10, 0));
        let asks: Vec<_> = (0..8).map(|_| actor.send(nearby("5", 3))).collect();
        let bodies = futures_util::future::join_all(asks).await;
        assert_eq!(calls.get(), 1);
        assert!(bodies
            .iter()
            .all(|b| b.as_ref().unwrap() == bodies[0].as_ref().unwrap()));
        assert_eq!(
            parse(bodies[0].as_ref().unwrap())["results"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(Metrics::get(&metrics.places_coalesced), 7);
        let again = actor.send(nearby("5", 3)).await.unwrap();
        assert_eq!(&again, bodies[0].as_ref().unwrap());
        assert_eq!(calls.get(), 1);
        assert_eq!(Metrics::get(&metrics.places_cache_hits), 1);
        // Every other bound is the same upstream question: cut from the
        // cached answer, no new call.
        for bound in 1..=20u8 {
            let other = actor.send(nearby("5", bound)).await.unwrap();
            let expected = usize::from(bound).min(5);
            assert_eq!(parse(&other)["results"].as_array().unwrap().len(), expected);
        }
        assert_eq!(calls.get(), 1);
        assert_eq!(Metrics::get(&metrics.places_upstream_calls), 1);
        // Another radius is another question.
        let _ = actor.send(nearby("6", 3)).await.unwrap();
        assert_eq!(calls.get(), 2);
        assert_eq!(metrics.places_count("counting", "OK"), 30);
    }

    #[actix_rt::test]
    async fn beyond_the_bucket_the_answer_is_over_query_limit() {
        let (actor, calls, metrics) = start(Some(Duration::ZERO), shared(0.001, 3, 0));
        let asks: Vec<_> = (1..=10)
            .map(|km| actor.send(nearby(&km.to_string(), 1)))
            .collect();
        let statuses: Vec<String> = futures_util::future::join_all(asks)
            .await
            .iter()
            .map(|b| {
                parse(b.as_ref().unwrap())["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(calls.get(), 3);
        assert_eq!(statuses.iter().filter(|s| *s == "OK").count(), 3);
        assert_eq!(
            statuses.iter().filter(|s| *s == "OVER_QUERY_LIMIT").count(),
            7
        );
        assert_eq!(Metrics::get(&metrics.places_rate_limited), 7);
    }

    #[actix_rt::test]
    async fn a_short_wait_for_a_token_is_served_late_not_refused() {
        // 20 per second, burst 1, wait up to 200 ms: the 2nd and 3rd request
        // wait about 50 and 100 ms; the 6th would wait 250 ms and is refused.
        let (actor, calls, _) = start(Some(Duration::ZERO), shared(20.0, 1, 200));
        let started = Instant::now();
        let asks: Vec<_> = (1..=6)
            .map(|km| actor.send(nearby(&km.to_string(), 1)))
            .collect();
        let answers = futures_util::future::join_all(asks).await;
        let statuses: Vec<Value> = answers
            .iter()
            .map(|b| parse(b.as_ref().unwrap())["status"].clone())
            .collect();
        assert!(statuses[..5].iter().all(|s| s == "OK"), "{statuses:?}");
        assert_eq!(statuses[5], "OVER_QUERY_LIMIT");
        assert_eq!(calls.get(), 5);
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
    }

    #[actix_rt::test]
    async fn a_provider_that_never_answers_meets_the_deadline_and_is_not_cached() {
        let (actor, calls, _) = start(None, shared(100.0, 10, 0));
        let started = Instant::now();
        let body = actor.send(nearby("5", 3)).await.unwrap();
        let elapsed = started.elapsed();
        let answer = parse(&body);
        assert_eq!(answer["status"], "UNKNOWN_ERROR");
        assert!(answer["error_message"].as_str().unwrap().contains("500 ms"));
        assert!(elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(2));
        let _ = actor.send(nearby("5", 3)).await.unwrap();
        assert_eq!(calls.get(), 2, "errors are not cached");
        // A provider without sharing may have a deadline too.
        let policy = Policy {
            deadline: Some(Duration::from_millis(50)),
            sharing: None,
        };
        let (local, _, _) = start(None, policy);
        let body = local.send(nearby("5", 3)).await.unwrap();
        assert_eq!(parse(&body)["status"], "UNKNOWN_ERROR");
    }

    #[test]
    fn error_answers_carry_status_and_message() {
        let answer = error_answer("OVER_QUERY_LIMIT", "slow down");
        assert_eq!(status_of(&answer), "OVER_QUERY_LIMIT");
        assert_eq!(answer["error_message"], "slow down");
        assert_eq!(answer["results"], json!([]));
    }
}
