//! The Google places providers (SPEC §5) end to end: real `herd` processes
//! asking a real HTTP server on loopback that speaks Google's wire format
//! from the fixture files in `tests/fixtures/google/`, and records every
//! request it gets so the tests can check what the herd sent and how often.
//!
//! The fake server is a plain HTTP/1.1 listener on a std `TcpListener`: one
//! thread per connection, one request per connection (`Connection: close`).
//! A reply can be held back until the test opens a gate, or withheld
//! forever, to exercise coalescing and the deadline without sleeping.
//! In its other style it answers HTTP/1.0 without `Connection: close` (so
//! awc keeps the connection for reuse) and closes each connection after
//! its one answer, at the worst moment: when the next request on it has
//! arrived, which it drops unanswered.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, iamat, wait_until, Client, Herd};
use serde_json::{json, Value};

/// A key that must never show up in a log.
const KEY: &str = "test-key-Zq8vN3xWpL0s";

/// UCLA, as `iamat` reports it.
const LAT: &str = "34.06893";
const LNG: &str = "-118.445127";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/google/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// One request as the fake server read it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// Path and query, as sent.
    target: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON request body")
    }

    /// The radius the herd asked for, in metres, from either API's request.
    fn radius_m(&self) -> u64 {
        match self.query("radius") {
            Some(r) => r.parse().expect("numeric radius"),
            None => self.json()["locationRestriction"]["circle"]["radius"]
                .as_f64()
                .expect("circle radius") as u64,
        }
    }
}

/// What the fake server does with a request.
enum Reply {
    /// Answer with this HTTP status and body.
    Json(u16, String),
    /// Answer once the gate is open.
    Gated(u16, String),
    /// Never answer (until the fake server is dropped).
    Silence,
}

type Responder = Box<dyn Fn(&Request) -> Reply + Send + Sync>;

/// How the fake server treats its connections.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    /// HTTP/1.1 with `Connection: close`: the client never reuses one.
    Http11Close,
    /// HTTP/1.0 with a length and no `Connection` header, then a close
    /// once the next request on the connection has arrived (unanswered).
    Http10ClosesAfterAnswer,
}

struct State {
    style: Style,
    /// Requests that came on a connection after its answer, dropped unanswered.
    dropped: Mutex<usize>,
    requests: Mutex<Vec<Request>>,
    responder: Responder,
    /// (open, closed-for-good)
    gate: Mutex<(bool, bool)>,
    changed: Condvar,
}

/// A fake Google on loopback.
struct FakeGoogle {
    port: u16,
    state: Arc<State>,
}

impl FakeGoogle {
    fn start(responder: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeGoogle {
        FakeGoogle::start_styled(Style::Http11Close, responder)
    }

    fn start_styled(
        style: Style,
        responder: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> FakeGoogle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            style,
            dropped: Mutex::new(0),
            requests: Mutex::new(Vec::new()),
            responder: Box::new(responder),
            gate: Mutex::new((false, false)),
            changed: Condvar::new(),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if shared.gate.lock().unwrap().1 {
                    return;
                }
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        FakeGoogle { port, state }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    fn dropped(&self) -> usize {
        *self.state.dropped.lock().unwrap()
    }

    fn open_gate(&self) {
        self.state.gate.lock().unwrap().0 = true;
        self.state.changed.notify_all();
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        *self.state.gate.lock().unwrap() = (true, true);
        self.state.changed.notify_all();
        // Wake the accept loop so it sees the flag and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request, records it, answers as told.
fn serve(stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    if reader.read_line(&mut head).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request = Request {
        method,
        target,
        headers,
        body,
    };
    let reply = (state.responder)(&request);
    state.requests.lock().unwrap().push(request);
    let (code, body) = match reply {
        Reply::Json(code, body) => (code, body),
        Reply::Gated(code, body) => {
            let mut gate = state.gate.lock().unwrap();
            while !gate.0 {
                gate = state.changed.wait(gate).unwrap();
            }
            (code, body)
        }
        Reply::Silence => {
            let mut gate = state.gate.lock().unwrap();
            while !gate.1 {
                gate = state.changed.wait(gate).unwrap();
            }
            return;
        }
    };
    let reason = match code {
        200 => "OK",
        403 => "Forbidden",
        500 => "Internal Server Error",
        _ => "Whatever",
    };
    let mut writer = stream;
    let (version, connection) = match state.style {
        Style::Http11Close => ("1.1", "Connection: close\r\n"),
        Style::Http10ClosesAfterAnswer => ("1.0", ""),
    };
    let _ = write!(
        writer,
        "HTTP/{version} {code} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\n\
         Content-Length: {}\r\n{connection}\r\n{body}",
        body.len()
    );
    let _ = writer.flush();
    if state.style == Style::Http10ClosesAfterAnswer {
        // Wait for the client to send again (or go), then close. Whatever
        // came is read first, so the close is a clean FIN, as a server's
        // would be when its idle timeout and a new request cross.
        let mut next = [0u8; 4096];
        let _ = writer.set_read_timeout(Some(Duration::from_secs(10)));
        if matches!(reader.read(&mut next), Ok(n) if n > 0) {
            *state.dropped.lock().unwrap() += 1;
        }
    }
}

/// One server asking `fake` through `provider`, with extra `[places]` lines,
/// started, with kiwi at UCLA; returns the herd and kiwi's AT line.
fn herd_with(provider: &str, base_url: &str, places: &[&str]) -> (Herd, String) {
    let url_key = if provider == "google" {
        "google_base_url"
    } else {
        "google_new_base_url"
    };
    let mut builder = Herd::one("Riley")
        .setting("places", &format!("provider = {provider:?}"))
        .setting("places", &format!("{url_key} = {base_url:?}"))
        .setting("herd", "file_log_level = \"debug\"")
        .env("GOOGLE_PLACES_API_KEY", KEY);
    for line in places {
        builder = builder.setting("places", line);
    }
    let mut herd = builder.build();
    herd.start("Riley");
    let at = herd.ask("Riley", &iamat("kiwi", "1621464827.959498503"));
    assert!(at.starts_with("AT Riley "), "{at}");
    (herd, at)
}

/// Sends a WHATSAT and reads the AT line and the JSON, checking the shape
/// of SPEC §3 on the way: no blank line inside, exactly one after.
fn whatsat(client: &mut Client, radius_km: &str, bound: u8, at: &str) -> Value {
    client.send(&format!("WHATSAT kiwi {radius_km} {bound}"));
    read_answer(client, at)
}

fn read_answer(client: &mut Client, at: &str) -> Value {
    assert_eq!(client.read_line(), at);
    let json = client.read_until_blank();
    assert!(json.ends_with("}\n"), "{json}");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn legacy_request_is_sent_right_and_the_answer_cut_shaped_and_key_kept_out_of_logs() {
    let fake = FakeGoogle::start(|_| Reply::Json(200, fixture("legacy_ok_20.json")));
    let (herd, at) = herd_with("google", &fake.base_url(), &[]);
    let mut client = herd.client("Riley");
    let answer = whatsat(&mut client, "10", 5, &at);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.path(), "/maps/api/place/nearbysearch/json");
    assert_eq!(request.query("location"), Some(format!("{LAT},{LNG}")));
    assert_eq!(request.query("radius").as_deref(), Some("10000"));
    assert_eq!(request.query("key").as_deref(), Some(KEY));

    let google: Value = serde_json::from_str(&fixture("legacy_ok_20.json")).unwrap();
    assert_eq!(answer["status"], "OK");
    // Results 6 to 20 were cut: the token (to result 21 on) would skip them.
    assert!(google["next_page_token"].is_string());
    assert!(answer.get("next_page_token").is_none(), "{answer}");
    assert_eq!(answer["html_attributions"], json!([]));
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    // Passed through as Google gave it: the first five, whole, in order.
    assert_eq!(results[..], google["results"].as_array().unwrap()[..5]);

    // Bound 20 gets all 20, and the token with them, from the same upstream
    // answer; the connection carries on after the blank line.
    let all = whatsat(&mut client, "10", 20, &at);
    assert_eq!(all["results"].as_array().unwrap().len(), 20);
    assert_eq!(all["next_page_token"], google["next_page_token"]);
    assert_eq!(fake.count(), 1);
    client.send("HELLO");
    assert_eq!(client.read_line(), "? HELLO");

    wait_until(
        Duration::from_secs(5),
        "the upstream request in the log",
        || herd.log("Riley").contains("places GET"),
    );
    let log = herd.log("Riley");
    assert!(log.contains("key=REDACTED"), "{log}");
    assert!(!log.contains(KEY), "the key leaked into the log:\n{log}");
}

#[test]
fn google_statuses_pass_through_and_failures_become_error_answers() {
    // The radius picks the answer.
    let fake = FakeGoogle::start(|request| match request.radius_m() {
        1000 => Reply::Json(200, fixture("legacy_zero_results.json")),
        2000 => Reply::Json(200, fixture("legacy_request_denied.json")),
        3000 => Reply::Json(200, fixture("legacy_over_query_limit.json")),
        4000 => Reply::Json(500, "<html>Server Error</html>".into()),
        5000 => Reply::Json(200, "{\"results\": [".into()),
        _ => Reply::Json(403, String::new()),
    });
    let (herd, at) = herd_with("google", &fake.base_url(), &[]);
    let mut client = herd.client("Riley");
    // All pipelined on one connection: answered in order, none dropped.
    for km in 1..=6 {
        client.send(&format!("WHATSAT kiwi {km} 3"));
    }
    let answers: Vec<Value> = (1..=6).map(|_| read_answer(&mut client, &at)).collect();
    let status = |i: usize| answers[i]["status"].as_str().unwrap().to_string();
    let message = |i: usize| {
        answers[i]["error_message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(status(0), "ZERO_RESULTS");
    assert_eq!(answers[0]["results"], json!([]));
    assert_eq!(status(1), "REQUEST_DENIED");
    assert_eq!(message(1), "The provided API key is invalid. ");
    assert_eq!(status(2), "OVER_QUERY_LIMIT");
    assert!(message(2).starts_with("You have exceeded"));
    assert_eq!(status(3), "UNKNOWN_ERROR");
    assert!(message(3).contains("HTTP 500"), "{}", message(3));
    assert_eq!(status(4), "UNKNOWN_ERROR");
    assert!(!message(4).is_empty());
    assert_eq!(status(5), "REQUEST_DENIED");
    for answer in &answers {
        assert_eq!(answer["results"], json!([]));
        assert!(answer["html_attributions"].is_array());
    }
    client.send("HELLO");
    assert_eq!(client.read_line(), "? HELLO");
}

#[test]
fn a_silent_or_absent_upstream_is_answered_within_the_deadline() {
    let fake = FakeGoogle::start(|_| Reply::Silence);
    let (herd, at) = herd_with("google", &fake.base_url(), &["timeout_ms = 400"]);
    let mut client = herd.client("Riley");
    let started = Instant::now();
    let answer = whatsat(&mut client, "10", 5, &at);
    let elapsed = started.elapsed();
    assert_eq!(answer["status"], "UNKNOWN_ERROR");
    assert!(
        answer["error_message"].as_str().unwrap().contains("400 ms"),
        "{answer}"
    );
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(fake.count(), 1);
    // The call cut short by the deadline still leaves its log line.
    wait_until(
        Duration::from_secs(5),
        "the abandoned call in the log",
        || herd.log("Riley").contains("places GET"),
    );
    let log = herd.log("Riley");
    assert!(log.contains("abandoned unanswered"), "{log}");

    // Nothing listening at all: refused at once.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (herd, at) = herd_with("google-new", &closed, &["timeout_ms = 400"]);
    let mut client = herd.client("Riley");
    let answer = whatsat(&mut client, "10", 5, &at);
    assert_eq!(answer["status"], "UNKNOWN_ERROR");
    assert!(
        answer["error_message"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{answer}"
    );

    // HTTPS to a server that speaks plain HTTP: rustls (with the crypto
    // provider chosen at start) sends its hello, the handshake fails, and
    // that too is an answer, not a hang or a crash.
    let plain = FakeGoogle::start(|_| Reply::Json(200, fixture("legacy_ok_20.json")));
    let https = format!("https://127.0.0.1:{}", plain.port);
    let (herd, at) = herd_with("google", &https, &["timeout_ms = 2000"]);
    let mut client = herd.client("Riley");
    let answer = whatsat(&mut client, "10", 5, &at);
    assert_eq!(answer["status"], "UNKNOWN_ERROR", "{answer}");
    let message = answer["error_message"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(message.contains("tls"), "{answer}");
    assert_eq!(herd.ask("Riley", "HELLO"), "? HELLO", "still serving");
}

#[test]
fn a_burst_of_100_whatsats_stays_within_the_bucket() {
    let fake = FakeGoogle::start(|_| Reply::Json(200, fixture("legacy_ok_20.json")));
    let (herd, at) = herd_with(
        "google",
        &fake.base_url(),
        &["rate_per_sec = 5.0", "burst = 10", "max_wait_ms = 0"],
    );
    let started = Instant::now();
    // Ten connections, ten pipelined WHATSATs each, every radius different
    // (so neither the cache nor coalescing saves a call).
    let mut clients: Vec<Client> = (0..10).map(|_| herd.client("Riley")).collect();
    for (c, client) in clients.iter_mut().enumerate() {
        for i in 0..10 {
            client.send(&format!("WHATSAT kiwi 1.{:02} 3", c * 10 + i));
        }
    }
    let mut statuses = Vec::new();
    for client in &mut clients {
        for _ in 0..10 {
            let answer = read_answer(client, &at);
            statuses.push(answer["status"].as_str().unwrap().to_string());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = statuses.iter().filter(|s| *s == "OK").count();
    let limited = statuses.iter().filter(|s| *s == "OVER_QUERY_LIMIT").count();
    let upstream = fake.count();
    assert_eq!(ok + limited, 100, "{statuses:?}");
    assert_eq!(upstream, ok, "every OK is one upstream call, nothing more");
    let allowed = 10 + (5.0 * elapsed).ceil() as usize;
    assert!(
        (10..=allowed).contains(&upstream),
        "{upstream} calls in {elapsed:.2} s (allowed {allowed})"
    );
}

#[test]
fn identical_requests_share_one_upstream_call_then_hit_the_cache() {
    let fake = FakeGoogle::start(|_| Reply::Gated(200, fixture("legacy_ok_20.json")));
    let (herd, at) = herd_with("google", &fake.base_url(), &[]);
    let mut clients: Vec<Client> = (0..10).map(|_| herd.client("Riley")).collect();
    clients[0].send("WHATSAT kiwi 10 4");
    wait_until(Duration::from_secs(5), "the first upstream call", || {
        fake.count() == 1
    });
    for client in &mut clients[1..] {
        client.send("WHATSAT kiwi 10 4");
    }
    // Each joins the call in flight (the actor says so at debug level).
    wait_until(Duration::from_secs(5), "nine requests to join", || {
        herd.log("Riley")
            .matches("joins the identical one in flight")
            .count()
            == 9
    });
    fake.open_gate();
    let answers: Vec<Value> = clients.iter_mut().map(|c| read_answer(c, &at)).collect();
    assert!(answers.iter().all(|a| *a == answers[0]));
    assert_eq!(answers[0]["results"].as_array().unwrap().len(), 4);
    assert_eq!(fake.count(), 1);

    // Within the TTL the same question is answered from the cache...
    let again = whatsat(&mut clients[0], "10", 4, &at);
    assert_eq!(again, answers[0]);
    assert_eq!(fake.count(), 1);
    // ...and so is any other bound (the same upstream question), while
    // another radius is another question.
    let three = whatsat(&mut clients[0], "10", 3, &at);
    assert_eq!(
        three["results"].as_array().unwrap()[..],
        answers[0]["results"].as_array().unwrap()[..3]
    );
    assert_eq!(fake.count(), 1);
    let _ = whatsat(&mut clients[0], "11", 4, &at);
    assert_eq!(fake.count(), 2);
}

#[test]
fn every_bound_at_one_place_and_radius_costs_one_upstream_call() {
    for (provider, answer, found) in [
        ("google", "legacy_ok_20.json", 20),
        ("google-new", "new_ok.json", 3),
    ] {
        let fake = FakeGoogle::start(move |_| Reply::Json(200, fixture(answer)));
        let (herd, at) = herd_with(provider, &fake.base_url(), &[]);
        let mut client = herd.client("Riley");
        for bound in 1..=20u8 {
            let answer = whatsat(&mut client, "10", bound, &at);
            let results = answer["results"].as_array().unwrap();
            assert_eq!(results.len(), usize::from(bound).min(found), "{provider}");
        }
        assert_eq!(
            fake.count(),
            1,
            "{provider}: one upstream call for 20 bounds"
        );
        if provider == "google-new" {
            // Asked for the most a WHATSAT may want, whatever the bound.
            assert_eq!(fake.requests()[0].json()["maxResultCount"], 20);
        }
    }
}

#[test]
fn a_connection_the_upstream_closed_is_retried_once_on_a_new_one() {
    for (provider, answer) in [
        ("google", "legacy_ok_20.json"),
        ("google-new", "new_ok.json"),
    ] {
        let fake = FakeGoogle::start_styled(Style::Http10ClosesAfterAnswer, move |_| {
            Reply::Json(200, fixture(answer))
        });
        let (herd, at) = herd_with(provider, &fake.base_url(), &[]);
        let mut client = herd.client("Riley");
        // Sequential cache misses: every one after the first finds the
        // previous connection in the pool, which the upstream then closes.
        for km in 1..=10 {
            let answer = whatsat(&mut client, &km.to_string(), 3, &at);
            assert_eq!(answer["status"], "OK", "{provider}, {km} km: {answer}");
        }
        assert_eq!(fake.count(), 10, "{provider}: each answered once");
        assert!(
            fake.dropped() >= 3,
            "{provider}: the fault did not happen ({} dropped)",
            fake.dropped()
        );
        wait_until(Duration::from_secs(5), "the retries in the log", || {
            herd.log("Riley")
                .matches("retried on a new connection")
                .count()
                == fake.dropped()
        });
        // Concurrent misses over several pooled connections: none lost.
        let mut clients: Vec<Client> = (0..8).map(|_| herd.client("Riley")).collect();
        for (c, client) in clients.iter_mut().enumerate() {
            for i in 0..5 {
                client.send(&format!("WHATSAT kiwi 2{c}.{i} 3"));
            }
        }
        for client in &mut clients {
            for _ in 0..5 {
                let answer = read_answer(client, &at);
                assert_eq!(answer["status"], "OK", "{provider}: {answer}");
            }
        }
        assert_eq!(fake.count(), 50, "{provider}");
    }
}

#[test]
fn google_new_posts_search_nearby_and_answers_in_legacy_format() {
    let fake = FakeGoogle::start(|request| match request.radius_m() {
        2000 => Reply::Json(403, fixture("new_permission_denied.json")),
        3000 => Reply::Json(200, "{}\n".into()),
        _ => Reply::Json(200, fixture("new_ok.json")),
    });
    let (herd, at) = herd_with("google-new", &fake.base_url(), &[]);
    let mut client = herd.client("Riley");
    let answer = whatsat(&mut client, "1.5", 2, &at);

    let requests = fake.requests();
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path(), "/v1/places:searchNearby");
    assert_eq!(request.header("x-goog-api-key"), Some(KEY));
    let mask = request.header("x-goog-fieldmask").unwrap();
    for field in [
        "places.displayName",
        "places.location",
        "places.id",
        "places.types",
    ] {
        assert!(mask.split(',').any(|f| f == field), "{mask}");
    }
    assert!(request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    assert_eq!(
        request.json(),
        json!({"maxResultCount": 20, "locationRestriction": {"circle": {
            "center": {"latitude": 34.06893, "longitude": -118.445127},
            "radius": 1500.0}}})
    );

    assert_eq!(answer["status"], "OK");
    assert_eq!(answer["html_attributions"], json!([]));
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "cut to the bound");
    let first = &results[0];
    assert_eq!(first["name"], "Westwood Village Cafe");
    assert_eq!(first["place_id"], "ChIJnew00");
    assert_eq!(first["vicinity"], "100 Westwood Plaza, Los Angeles");
    assert_eq!(
        first["geometry"]["location"],
        json!({"lat": 34.0689, "lng": -118.4451})
    );
    assert_eq!(first["user_ratings_total"], 120);
    assert_eq!(first["business_status"], "OPERATIONAL");
    assert_eq!(
        first["icon"],
        "https://maps.gstatic.com/mapfiles/place_api/icons/v2/generic_pinlet.png"
    );

    let denied = whatsat(&mut client, "2", 5, &at);
    assert_eq!(denied["status"], "REQUEST_DENIED");
    assert!(denied["error_message"]
        .as_str()
        .unwrap()
        .starts_with("Method doesn't allow unregistered callers"));
    let nothing = whatsat(&mut client, "3", 5, &at);
    assert_eq!(nothing["status"], "ZERO_RESULTS");
    assert_eq!(nothing["results"], json!([]));

    wait_until(
        Duration::from_secs(5),
        "the upstream request in the log",
        || herd.log("Riley").contains("places POST"),
    );
    assert!(
        !herd.log("Riley").contains(KEY),
        "the key leaked into the log"
    );
}

#[test]
fn a_google_provider_without_a_key_refuses_to_start() {
    let herd = Herd::one("Riley")
        .setting("places", "provider = \"google\"")
        .build();
    let output = herd.run_to_exit("Riley", &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GOOGLE_PLACES_API_KEY"), "{stderr}");
    // Nothing is listening: it did not start half-configured.
    assert!(TcpStream::connect(("127.0.0.1", herd.ports("Riley").client)).is_err());
}

#[test]
fn a_malformed_base_url_is_a_settings_error_with_status_2() {
    for (provider, key) in [
        ("google", "google_base_url"),
        ("google-new", "google_new_base_url"),
    ] {
        let herd = Herd::one("Riley")
            .setting("places", &format!("provider = {provider:?}"))
            .setting("places", &format!("{key} = \"ftp://maps.example\""))
            .build();
        let output = herd.run_to_exit("Riley", &[("GOOGLE_PLACES_API_KEY", KEY)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{provider}: {stderr}");
        assert!(stderr.contains("ftp://maps.example"), "{stderr}");
    }
}

/// Latencies of `count` sequential WHATSATs on one connection, radius from
/// `radius(i)`; returns (p50, p99) in microseconds.
fn sequential_latency(
    herd: &Herd,
    at: &str,
    count: usize,
    radius: impl Fn(usize) -> String,
) -> (u128, u128) {
    let mut client = herd.client("Riley");
    let mut micros = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        client.send(&format!("WHATSAT kiwi {} 5", radius(i)));
        assert_eq!(client.read_line(), at);
        client.read_until_blank();
        micros.push(started.elapsed().as_micros());
    }
    micros.sort_unstable();
    (micros[count / 2], micros[count * 99 / 100])
}

/// WHATSATs per second over `connections` connections with one request in
/// flight each, for `span`; `radius(c, i)` picks each request's radius.
fn throughput(
    herd: &Herd,
    at: &str,
    connections: usize,
    span: Duration,
    radius: impl Fn(usize, usize) -> String + Sync,
) -> f64 {
    let started = Instant::now();
    let total: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|c| {
                let radius = &radius;
                scope.spawn(move || {
                    let mut client = herd.client("Riley");
                    let mut done = 0;
                    while started.elapsed() < span {
                        client.send(&format!("WHATSAT kiwi {} 5", radius(c, done)));
                        assert_eq!(client.read_line(), at);
                        client.read_until_blank();
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// The figures of BENCHMARKS.md, "Places". Not a test: run with
/// `cargo test --release --test places_google -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_whatsat_places() {
    let span = Duration::from_secs(3);
    let mut herd = Herd::one("Riley")
        .setting("herd", "log_lines = false")
        .build();
    herd.start("Riley");
    let at = herd.ask("Riley", &iamat("kiwi", "1621464827.959498503"));
    wait_until(Duration::from_secs(20), "offline places loaded", || {
        let mut client = herd.client("Riley");
        client.send("WHATSAT kiwi 10 5");
        client.read_line();
        client.read_until_blank().contains("\"OK\"")
    });
    let (p50, p99) = sequential_latency(&herd, &at, 5000, |_| "10".into());
    let rate = throughput(&herd, &at, 8, span, |_, _| "10".into());
    println!("offline: p50 {p50} us, p99 {p99} us; {rate:.0} WHATSAT/s over 8 connections");
    drop(herd);

    // Google against the fake server: no rate limit, a cache big enough
    // for every miss, no line logging (as for offline).
    let fake = FakeGoogle::start(|_| Reply::Json(200, fixture("legacy_ok_20.json")));
    let mut herd = Herd::one("Riley")
        .setting("places", "provider = \"google\"")
        .setting(
            "places",
            &format!("google_base_url = {:?}", fake.base_url()),
        )
        .setting("places", "rate_per_sec = 0.0")
        .setting("places", "cache_entries = 1000000")
        .setting("herd", "log_lines = false")
        .env("GOOGLE_PLACES_API_KEY", KEY)
        .build();
    herd.start("Riley");
    let at = herd.ask("Riley", &iamat("kiwi", "1621464827.959498503"));
    // Misses: every request a radius of its own (1 m apart; sequential ones
    // from 45 km, concurrent ones from 1 to 41 km, 5 km per connection).
    let (p50, p99) = sequential_latency(&herd, &at, 2000, |i| {
        format!("{}.{:03}", 45 + i / 1000, i % 1000)
    });
    let rate = throughput(&herd, &at, 8, span, |c, i| {
        assert!(i < 5000, "more misses than distinct radii");
        format!("{}.{:03}", 1 + c * 5 + i / 1000, i % 1000)
    });
    println!("google miss: p50 {p50} us, p99 {p99} us; {rate:.0} WHATSAT/s over 8 connections");
    // Hits: one radius, answered from the cache after the first.
    let (p50, p99) = sequential_latency(&herd, &at, 5000, |_| "10".into());
    let rate = throughput(&herd, &at, 8, span, |_, _| "10".into());
    println!("google hit: p50 {p50} us, p99 {p99} us; {rate:.0} WHATSAT/s over 8 connections");
    println!("upstream calls seen by the fake server: {}", fake.count());
}
