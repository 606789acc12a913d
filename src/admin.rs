//! The admin listener of one server (SPEC §6): the operators' view.
//!
//! Every server serves, on its own loopback port (default: client port +
//! 1000), plain HTTP for people and scrapers:
//!
//! | path       | what |
//! |------------|------|
//! | `/healthz` | `200 ok` while serving, `503 shutting down` once a stop began |
//! | `/metrics` | Prometheus text format (see `admin/prometheus.rs`) |
//! | `/status`  | JSON: server, neighbours with link state and since when, records, uptime, version, latest client positions |
//! | `/herd`    | JSON: the whole herd as the settings describe it (names, links, admin URLs) |
//! | `/records` | every record held, as AT lines, sorted, one per line (invariant checks) |
//! | `/trace?client=NAME` | JSON: the client's record held here, when this server took it and from whom (`herdctl trace`) |
//! | `/places`  | the live page's base map: offline places in a box (see `admin/map.rs`) |
//! | `/`        | the live page: the herd as a graph and the clients on a map |
//!
//! It is wiring and operations, so it lives in the binary crate: the actors
//! only bump counters in [`Metrics`] and answer the store's [`Dump`]; this
//! file turns them into answers. The listener is actix-web's `HttpServer`
//! with one worker thread of its own, so a slow scrape never delays a client
//! or a peer link, and with its signal handling off (the `herd` binary owns
//! SIGTERM).
//!
//! Every request first passes the checks of `admin/guard.rs`: a `Host` that
//! names this server, an `Origin` (if any) that is a page of this herd, and
//! the admin token (every server has one). The page served by one server polls the
//! admin ports of all the others, so allowed origins are echoed back (never
//! `*`) and their preflights answered.

mod guard;
mod map;
mod prometheus;

use std::future::Future;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix::Addr;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use herd_actors::metrics::{LinkState, Metrics};
use herd_actors::store::{
    Crash, Dump, Forget, GetOverview, GetTopology, LocationStoreActor, Source, Trace,
};
use herd_actors::text::LogText;
use log::{info, warn};
use serde::Serialize;

use guard::{Guard, Refusal};
use prometheus::AdminCounters;

use crate::settings::{ServerPlan, Settings};
use crate::start_error::StartError;

/// How many client positions `/status` carries at most (those updated most
/// recently), so that the page's polling stays cheap whatever the number of
/// clients.
pub const MAX_CLIENTS_SHOWN: usize = herd_actors::store::RECENT;

/// The page, inline CSS and JS, no build step, nothing fetched from elsewhere.
const PAGE: &str = include_str!("admin/page.html");

/// Set once the process begins to stop; `/healthz` then answers 503 so that
/// a load balancer drains the server before it goes.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// The herd as the settings describe it, shared by every server of the
/// process (they all read the same file). Unset: `/herd` shows the server
/// alone.
static HERD: OnceLock<Vec<Member>> = OnceLock::new();

/// Marks the process as stopping (`/healthz` answers 503 from now on).
pub fn begin_shutdown() {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
}

/// Whether [`begin_shutdown`] was called.
pub fn shutting_down() -> bool {
    SHUTTING_DOWN.load(Ordering::SeqCst)
}

/// One server of the herd as `/herd` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    /// Where the admin listener is reached, e.g. `http://127.0.0.1:13665`.
    pub admin_url: String,
    /// Neighbours listed on either side (links are both ways).
    pub neighbours: Vec<String>,
}

/// The herd of `settings`, in the order of the client ports.
pub fn members(settings: &Settings) -> Vec<Member> {
    let mut servers: Vec<_> = settings.servers.values().collect();
    servers.sort_by_key(|s| s.port);
    servers
        .iter()
        .map(|s| {
            let neighbours = settings
                .neighbours_of(s)
                .into_iter()
                .map(|o| o.name.clone())
                .collect();
            Member {
                name: s.name.clone(),
                client_port: s.port,
                admin_url: format!("http://{}", s.admin_endpoint()),
                neighbours,
            }
        })
        .collect()
}

/// Records the herd for `/herd` (first call wins; all servers of a process
/// share one settings file).
pub fn set_herd(members: Vec<Member>) {
    let _ = HERD.set(members);
}

/// What the handlers share.
struct AdminState {
    name: Arc<str>,
    neighbours: Vec<String>,
    client_port: u16,
    admin_addr: SocketAddr,
    store: Addr<LocationStoreActor>,
    metrics: Arc<Metrics>,
    started: Instant,
    started_unix: u64,
    /// The Host, Origin and token checks.
    guard: Guard,
    /// Requests served by path and refused by reason.
    counters: AdminCounters,
    /// `admin.test_hooks`: the `/test/*` paths answer.
    test_hooks: bool,
}

/// The paths whose requests are counted (`herd_admin_requests_total`); any
/// other path counts as `other`.
const PATHS: [&str; 10] = [
    "/", "/healthz", "/metrics", "/status", "/herd", "/records", "/trace", "/places", "/test",
    "other",
];

/// The local address a connection arrived on (noted when it is accepted):
/// one of the names a `Host` may use.
#[derive(Debug, Clone, Copy)]
struct ArrivedOn(IpAddr);

/// What the checks decided for one request.
enum Verdict {
    /// Serve it; echo this origin (when the request carried one).
    Serve(Option<HeaderValue>),
    /// Answer this instead (a refusal, or a preflight).
    Answer(HttpResponse),
}

impl AdminState {
    fn count_request(&self, path: &str) {
        let path = if path.starts_with("/test/") {
            "/test"
        } else {
            path
        };
        let known = PATHS.iter().find(|p| **p == path);
        self.counters
            .count_request(known.unwrap_or(&PATHS[PATHS.len() - 1]));
    }

    /// Runs the checks of `admin/guard.rs` on `request`.
    fn verdict(&self, request: &ServiceRequest) -> Verdict {
        let headers = request.headers();
        let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
        let local = request.request().conn_data::<ArrivedOn>().map(|a| a.0);
        if let Err(refusal) = self.guard.check_host(host, local) {
            return self.refuse(refusal, request, host);
        }
        let origin = match headers.get(header::ORIGIN) {
            None => None,
            Some(origin) => {
                let checked =
                    self.guard
                        .check_origin(origin.as_bytes(), Guard::host_port(host), local);
                if let Err(refusal) = checked {
                    return self.refuse(refusal, request, Some(origin.as_bytes()));
                }
                Some(origin.clone())
            }
        };
        if request.method() == Method::OPTIONS {
            return Verdict::Answer(preflight(origin));
        }
        let authorization = headers.get(header::AUTHORIZATION);
        if let Err(refusal) = self
            .guard
            .check_token(request.path(), authorization.map(HeaderValue::as_bytes))
        {
            // The token itself is never logged.
            return self.refuse(refusal, request, None);
        }
        Verdict::Serve(origin)
    }

    /// Counts and logs a refusal of `request` (`what`: the header at fault)
    /// and says why in the answer.
    fn refuse(&self, refusal: Refusal, request: &ServiceRequest, what: Option<&[u8]>) -> Verdict {
        self.counters.count_refusal(refusal.label());
        // Every byte the stranger chose is escaped and clipped.
        let shown = what.map(|w| format!(" \"{}\"", LogText::clipped(w, 100)));
        warn!(target: "herd", "{}: admin refused {} {} from {}: {}{}",
            self.name, request.method(), LogText::clipped(request.path().as_bytes(), 100),
            request.peer_addr().map_or_else(|| "?".into(), |a| a.to_string()),
            refusal.label(), shown.unwrap_or_default());
        Verdict::Answer(refusal_answer(refusal))
    }
}

/// The answer to a refused request.
fn refusal_answer(refusal: Refusal) -> HttpResponse {
    let (status, text) = match refusal {
        Refusal::Host => (
            StatusCode::MISDIRECTED_REQUEST,
            "this Host is not a name of this server (see admin.allowed_hosts)\n",
        ),
        Refusal::Origin => (
            StatusCode::FORBIDDEN,
            "this Origin is not a page of this herd\n",
        ),
        Refusal::Token => (
            StatusCode::UNAUTHORIZED,
            "this needs the admin token: Authorization: Bearer <token>\n",
        ),
        Refusal::Query => (StatusCode::BAD_REQUEST, "bad query\n"),
    };
    let mut answer = HttpResponse::build(status);
    answer.content_type("text/plain");
    if refusal == Refusal::Token {
        answer.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"herd admin\""));
    }
    answer.body(text)
}

/// The answer to a CORS preflight from an allowed origin (or to a bare
/// `OPTIONS`): GET with an `Authorization` header may follow.
fn preflight(origin: Option<HeaderValue>) -> HttpResponse {
    let mut answer = HttpResponse::NoContent();
    answer.insert_header((header::ALLOW, "GET, OPTIONS"));
    if let Some(origin) = origin {
        answer
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "Authorization"))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"));
    }
    answer.finish()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Binds the admin listener of `plan` and serves it on a worker thread of its
/// own until the process ends; returns the address bound.
pub fn start(
    plan: &ServerPlan,
    name: Arc<str>,
    store: Addr<LocationStoreActor>,
    metrics: Arc<Metrics>,
) -> Result<SocketAddr, StartError> {
    let error = |source| StartError::Listen {
        what: "admin",
        addr: plan.admin_addr,
        source,
    };
    let listener = TcpListener::bind(plan.admin_addr).map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    let state = web::Data::new(AdminState {
        name: name.clone(),
        neighbours: plan.neighbours.iter().map(|n| n.name.clone()).collect(),
        client_port: plan.client_addr.port(),
        admin_addr: bound,
        store,
        metrics,
        started: Instant::now(),
        started_unix: unix_now(),
        guard: Guard::new(&plan.admin),
        test_hooks: plan.admin.test_hooks,
        counters: AdminCounters::new(&PATHS, &Refusal::ALL.map(Refusal::label)),
    });
    let server = HttpServer::new(move || {
        let gate = state.clone();
        App::new()
            .app_data(state.clone())
            .wrap_fn(move |request, service| guarded(&gate, request, service))
            .route("/", web::get().to(page))
            .route("/healthz", web::get().to(healthz))
            .route("/metrics", web::get().to(metrics_text))
            .route("/status", web::get().to(status))
            .route("/herd", web::get().to(herd))
            .route("/records", web::get().to(records))
            .route("/trace", web::get().to(trace))
            .route("/places", web::get().to(places))
            .route("/test/forget", web::post().to(test_forget))
            .route("/test/crash-store", web::post().to(test_crash_store))
    })
    .on_connect(|connection, data| {
        let socket = connection.downcast_ref::<actix_web::rt::net::TcpStream>();
        if let Some(Ok(local)) = socket.map(|s| s.local_addr()) {
            data.insert(ArrivedOn(local.ip()));
        }
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .map_err(|source| StartError::ServeAdmin {
        addr: plan.admin_addr,
        source,
    })?
    .run();
    actix_rt::spawn(server);
    info!(target: "herd", "{name}: admin on http://{}/", plan.admin_addr);
    Ok(bound)
}

/// Every admin request passes here: counted, then answered by the guard
/// (a refusal, a preflight) or served with `Vary: Origin` and, when the
/// guard allows it, its origin echoed.
fn guarded<S>(
    gate: &AdminState,
    request: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse, actix_web::Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse, Error = actix_web::Error>,
    S::Future: 'static,
{
    gate.count_request(request.path());
    let pending = match gate.verdict(&request) {
        Verdict::Serve(origin) => Ok((service.call(request), origin)),
        Verdict::Answer(answer) => Err(request.into_response(answer)),
    };
    async move {
        let (call, origin) = match pending {
            Ok(pending) => pending,
            Err(answered) => return Ok(answered),
        };
        let mut response = call.await?;
        let headers = response.headers_mut();
        // Answers differ by Origin: a cache must keep them apart.
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
        Ok(response)
    }
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(PAGE)
}

async fn healthz() -> HttpResponse {
    if shutting_down() {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("shutting down\n")
    } else {
        HttpResponse::Ok().content_type("text/plain").body("ok\n")
    }
}

async fn metrics_text(state: web::Data<AdminState>) -> HttpResponse {
    let text = prometheus::render(
        &state.name,
        &state.metrics,
        &state.neighbours,
        state.started.elapsed().as_secs_f64(),
        &state.counters,
    );
    HttpResponse::Ok()
        .content_type(prometheus::CONTENT_TYPE)
        .body(text)
}

/// The store's answer to `question`, or a 503 when the store does not
/// answer (the server is stopping).
async fn ask_store<M>(state: &AdminState, question: M) -> Result<M::Result, HttpResponse>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    LocationStoreActor: actix::Handler<M>,
{
    state.store.send(question).await.map_err(|e| {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("store unavailable: {e}\n"))
    })
}

async fn records(state: web::Data<AdminState>) -> HttpResponse {
    let records = match ask_store(&state, Dump).await {
        Ok(records) => records,
        Err(answer) => return answer,
    };
    let mut lines: Vec<&[u8]> = records.iter().map(|r| r.at_line()).collect();
    lines.sort_unstable();
    let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        body.extend_from_slice(line);
        body.push(b'\n');
    }
    HttpResponse::Ok()
        .content_type("text/plain")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// A neighbour link in `/status`.
#[derive(Debug, Serialize)]
struct LinkView {
    name: String,
    state: &'static str,
    /// Unix seconds of the last change of state.
    since: u64,
}

/// The herd's agreement on its links, in `/status`.
#[derive(Debug, Serialize)]
struct TopologyStatus {
    /// The digest of the servers and links this server was given.
    digest: String,
    /// Some server was given other links: every update is flooded.
    mixed: bool,
    /// The servers whose digest differs, with theirs.
    differing: Vec<DifferingServer>,
}

#[derive(Debug, Serialize)]
struct DifferingServer {
    server: String,
    digest: String,
}

/// A client's latest position in `/status`.
#[derive(Debug, Serialize)]
struct ClientView {
    client: String,
    lat: f64,
    lon: f64,
    origin: String,
    /// The client's own time, as it sent it.
    time: String,
}

#[derive(Debug, Serialize)]
struct StatusView {
    server: String,
    version: &'static str,
    admin: String,
    client_port: u16,
    started_at: u64,
    uptime_seconds: u64,
    shutting_down: bool,
    records: u64,
    /// This server's topology digest and whether the herd is mixed.
    topology: TopologyStatus,
    neighbours: Vec<LinkView>,
    /// The clients this server updated most recently (at most
    /// [`MAX_CLIENTS_SHOWN`]), most recent first.
    clients: Vec<ClientView>,
}

async fn status(state: web::Data<AdminState>) -> HttpResponse {
    // The store's overview, not a dump: a poll reads the last thousand
    // updates, never the whole store, however many clients it holds.
    let overview = match ask_store(&state, GetOverview).await {
        Ok(overview) => overview,
        Err(answer) => return answer,
    };
    let held = overview.records as u64;
    let clients = overview
        .recent
        .iter()
        .take(MAX_CLIENTS_SHOWN)
        .filter_map(|r| {
            let at = r.location()?;
            Some(ClientView {
                client: String::from_utf8_lossy(r.client()).into_owned(),
                lat: at.lat,
                lon: at.lon,
                origin: String::from_utf8_lossy(r.origin()).into_owned(),
                time: String::from_utf8_lossy(r.time_text()).into_owned(),
            })
        })
        .collect();
    let topology = match ask_store(&state, GetTopology).await {
        Ok(view) => TopologyStatus {
            digest: view.mine.to_string(),
            mixed: view.mixed,
            differing: view
                .differing
                .iter()
                .map(|(server, digest)| DifferingServer {
                    server: server.to_string(),
                    digest: digest.to_string(),
                })
                .collect(),
        },
        Err(answer) => return answer,
    };
    let links = state.metrics.links();
    let neighbours = state
        .neighbours
        .iter()
        .map(|n| {
            let link = links.get(n);
            LinkView {
                name: n.clone(),
                state: link.map_or(LinkState::Down, |l| l.state).label(),
                since: link.map_or(state.started_unix, |l| l.since),
            }
        })
        .collect();
    let view = StatusView {
        server: state.name.to_string(),
        version: env!("CARGO_PKG_VERSION"),
        admin: state.admin_addr.to_string(),
        client_port: state.client_port,
        started_at: state.started_unix,
        uptime_seconds: state.started.elapsed().as_secs(),
        shutting_down: shutting_down(),
        records: held,
        topology,
        neighbours,
        clients,
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view)
}

/// The answer of `/trace`: what `herdctl trace` puts together.
#[derive(Debug, Serialize)]
struct TraceView<'a> {
    server: &'a str,
    client: String,
    /// The AT line held, or none when the client is unknown here.
    at_line: Option<String>,
    /// When this server took it (its clock, nanoseconds since the epoch),
    /// and from where: `client`, `peer` or `sync`, and which neighbour.
    /// Absent when the store no longer remembers (an older update, or a
    /// record loaded from the journal).
    received_ns: Option<u64>,
    via: Option<&'static str>,
    from: Option<&'a str>,
}

/// The client name of a `?client=NAME` query.
fn client_of(request: &HttpRequest) -> Option<String> {
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(request.query_string());
    query.ok().and_then(|q| q.get("client").cloned())
}

/// `/trace?client=NAME`: when and from whom this server took the record it
/// holds for the client.
async fn trace(state: web::Data<AdminState>, request: HttpRequest) -> HttpResponse {
    let Some(client) = client_of(&request) else {
        state.counters.count_refusal(Refusal::Query.label());
        return HttpResponse::BadRequest()
            .content_type("text/plain")
            .body("client=NAME\n");
    };
    let asked = Trace {
        client: web::Bytes::from(client.clone().into_bytes()),
    };
    let traced = match ask_store(&state, asked).await {
        Ok(traced) => traced,
        Err(answer) => return answer,
    };
    let arrival = traced.as_ref().and_then(|t| t.arrival.as_ref());
    let (via, from) = match arrival.map(|a| &a.from) {
        None => (None, None),
        Some(Source::Client) => (Some("client"), None),
        Some(Source::Peer(name)) => (Some("peer"), Some(&**name)),
        Some(Source::Sync(name)) => (Some("sync"), Some(&**name)),
    };
    let view = TraceView {
        server: &state.name,
        client,
        at_line: traced
            .as_ref()
            .map(|t| String::from_utf8_lossy(t.record.at_line()).into_owned()),
        received_ns: arrival.and_then(|a| u64::try_from(a.at_nanos).ok()),
        via,
        from,
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view)
}

/// `POST /test/forget?client=NAME` (`admin.test_hooks` only): drops one
/// record from this store alone, to make two stores differ while their
/// links stay up.
async fn test_forget(state: web::Data<AdminState>, request: HttpRequest) -> HttpResponse {
    if !state.test_hooks {
        return HttpResponse::NotFound().finish();
    }
    let Some(client) = client_of(&request) else {
        return HttpResponse::BadRequest().body("client=NAME\n");
    };
    let client = web::Bytes::from(client.into_bytes());
    match state.store.send(Forget { client }).await {
        Ok(true) => HttpResponse::Ok().body("forgotten\n"),
        Ok(false) => HttpResponse::NotFound().body("no such client\n"),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("{e}\n")),
    }
}

/// `POST /test/crash-store[?panic=1]` (`admin.test_hooks` only): stops the
/// store, or makes it panic; its supervisor restarts it.
async fn test_crash_store(state: web::Data<AdminState>, request: HttpRequest) -> HttpResponse {
    if !state.test_hooks {
        return HttpResponse::NotFound().finish();
    }
    let panic = request.query_string().contains("panic=1");
    state.store.do_send(Crash { panic });
    HttpResponse::Accepted().body("crashing the store\n")
}

#[derive(Debug, Serialize)]
struct HerdView<'a> {
    /// The server answering.
    server: &'a str,
    servers: Vec<Member>,
}

async fn herd(state: web::Data<AdminState>) -> HttpResponse {
    let servers = HERD.get().cloned().unwrap_or_else(|| {
        vec![Member {
            name: state.name.to_string(),
            client_port: state.client_port,
            admin_url: format!("http://{}", state.admin_addr),
            neighbours: state.neighbours.clone(),
        }]
    });
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(HerdView {
            server: &state.name,
            servers,
        })
}

/// `/places`: the base map layer of a box (see `admin/map.rs`). Off the
/// listener's thread: a world view walks the whole table.
async fn places(state: web::Data<AdminState>, request: HttpRequest) -> HttpResponse {
    let bounds = match map::Bounds::parse(request.query_string()) {
        Ok(bounds) => bounds,
        Err(e) => {
            state.counters.count_refusal(Refusal::Query.label());
            warn!(target: "herd", "{}: admin refused /places?{}: {e}",
                state.name, LogText::clipped(request.query_string().as_bytes(), 100));
            return HttpResponse::BadRequest()
                .content_type("text/plain")
                .body(format!("{e}\n"));
        }
    };
    match web::block(move || map::layer(&bounds)).await {
        Ok(layer) => HttpResponse::Ok()
            .insert_header((
                header::CACHE_CONTROL,
                // The table never changes while the server runs.
                if layer.loaded {
                    "private, max-age=3600"
                } else {
                    "no-store"
                },
            ))
            .json(layer),
        Err(e) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("places unavailable: {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn healthz_turns_503_once_shutdown_begins() {
        // The only test of this binary that touches the shutdown flag.
        assert_eq!(healthz().await.status(), 200);
        begin_shutdown();
        assert_eq!(healthz().await.status(), 503);
    }
}
