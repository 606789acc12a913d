//! Wiring: turns a [`ServerPlan`] into running actors and listeners.
//!
//! Start order matters for SPEC §6: both listeners are bound first (so the
//! server accepts clients within milliseconds), then the actors are started,
//! and the offline places data loads in the background afterwards.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use herd_actors::connection::ClientContext;
use herd_actors::handshake::Identity;
use herd_actors::listener::{self, PeerGate};
use herd_actors::metrics::Metrics;
use herd_actors::peer::{PeerActor, Repair};
use herd_actors::places::geonames::GeoNames;
use herd_actors::places::google::Google;
use herd_actors::places::google_new::GoogleNew;
use herd_actors::places::http::Upstream;
use herd_actors::places::{offline::Offline, PlacesActor, Policy, Provider, RateLimit, Sharing};
use herd_actors::record::Record;
use herd_actors::store::AckAfter;
use herd_actors::store::{AddPeer, Journal, LocationStoreActor};
use herd_actors::supervise::RestartBudget;
use log::{info, warn};
use tokio::net::TcpListener;

pub use crate::start_error::StartError;

use crate::journal::{self, JournalGuard};
use crate::settings::{GoogleAccess, PlacesPlan, PlacesSource, ServerPlan};

/// A running server's handles.
pub struct RunningServer {
    pub name: Arc<str>,
    pub store: Addr<LocationStoreActor>,
    pub metrics: Arc<Metrics>,
    /// The journal's writer; dropping it commits what is queued and stops it.
    pub journal: Option<JournalGuard>,
    /// Where the listeners were bound: the plan's addresses, with the port
    /// the system chose where the plan asked for port 0.
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

/// Binds `addr`, naming the address in the error; with the address bound
/// (the port the system chose where `addr` asks for port 0).
async fn bind(
    addr: SocketAddr,
    what: &'static str,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let error = |source| StartError::Listen { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// The places provider the plan asks for, and how the PlacesActor runs it:
/// the deadline, rate limit and cache for the Google providers. The plan
/// has been checked already (a Google provider has its key).
fn places_provider(
    server: &Arc<str>,
    plan: &PlacesPlan,
) -> Result<(Box<dyn Provider>, Policy), StartError> {
    let section = &plan.section;
    let deadline = std::time::Duration::from_millis(section.timeout_ms.max(1));
    let upstream = |access: &GoogleAccess| {
        Upstream::new(server.clone(), &access.base_url, &access.api_key, deadline)
            .map_err(StartError::Places)
    };
    let provider: Box<dyn Provider> = match &plan.source {
        // Offline answers from memory: no deadline (its first answers may
        // wait for the embedded data to load, which is bounded and must not
        // fail). A GeoNames file may take many seconds to load: a WHATSAT
        // waits for it up to the deadline, then hears it is still loading.
        PlacesSource::GeoNames(file) => {
            return Ok((
                Box::new(GeoNames::new(server.clone(), file, deadline)),
                Policy::local(),
            ));
        }
        PlacesSource::Embedded => return Ok((Box::new(Offline::new()), Policy::local())),
        PlacesSource::Google(access) => Box::new(Google::new(upstream(access)?)),
        PlacesSource::GoogleNew(access) => Box::new(GoogleNew::new(upstream(access)?)),
    };
    let policy = Policy {
        deadline: Some(deadline),
        sharing: Some(Sharing {
            rate: RateLimit {
                per_sec: section.rate_per_sec,
                burst: section.burst,
                max_wait: std::time::Duration::from_millis(section.max_wait_ms),
            },
            cache_ttl: std::time::Duration::from_millis(section.cache_ttl_ms),
            cache_entries: section.cache_entries,
        }),
    };
    Ok((provider, policy))
}

/// Starts one server on the current arbiter: listeners first, then the
/// actors, then the links, the accept loops and the admin listener.
pub async fn start(plan: ServerPlan) -> Result<RunningServer, StartError> {
    let (clients, client_addr) = bind(plan.client_addr, "clients").await?;
    let (peers, peer_addr) = bind(plan.peer_addr, "peers").await?;
    let name: Arc<str> = plan.name.as_str().into();
    let metrics = Arc::new(Metrics::default());
    if !plan.secret.is_set() {
        warn!(target: "herd", "{name}: INSECURE PEERS (herd.insecure_peers is set): \
            neighbours are accepted by name alone and the peer wire is in clear. \
            Remove the setting to use HERD_SECRET, herd.secret_file or ~/.herd.cookie.");
    }
    if plan.secret_changing {
        warn!(target: "herd", "{name}: HERD_SECRET_EXTRA is set: the herd is changing its \
            secret, and until the change is finished this server also accepts peers that prove \
            the other secret, so whoever still holds the old one and reaches the peer port can \
            join as a neighbour: read every record (the catch-up sync) and send its own \
            updates. Finish the change on every server and unset it (docs/security.md).");
    }
    let disk = open_journal(&plan, &name)?;
    let restarts = restart_budget();
    let store = LocationStoreActor::new(
        name.clone(),
        disk.records,
        disk.journal,
        metrics.clone(),
        plan.client_limits.max_future_skew,
    )
    .with_topology(plan.topology.clone())
    .with_ack_after(plan.ack_after)
    .with_ttl(plan.record_ttl)
    .with_release_memory(Arc::new(release_memory))
    .with_restarts(restarts);
    let store = actix::Supervisor::start(move |_| store);
    let (provider, policy) = places_provider(&name, &plan.places)?;
    let places = PlacesActor::new(name.clone(), provider, metrics.clone()).with_policy(policy);
    let places = actix::Supervisor::start(move |_| places);
    let identity = Identity {
        me: name.clone(),
        topology: plan.topology.digest(),
        secret: plan.secret.clone(),
        timeout: plan.peer_limits.handshake_timeout,
    };
    let links = start_links(&plan, &identity, &store, &metrics);
    serve(
        &plan, identity, links, peers, clients, &store, places, &metrics,
    );
    // The operators' view (src/admin.rs), after the client listener so it
    // never delays the first client.
    let admin_addr = crate::admin::start(&plan, name.clone(), store.clone(), metrics.clone())?;
    info!(target: "herd", "{name}: serving clients on {}, peers on {}, neighbours: {}",
        plan.client_addr, plan.peer_addr,
        plan.neighbours.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "));
    Ok(RunningServer {
        name,
        store,
        metrics,
        journal: disk.guard,
        client_addr,
        peer_addr,
        admin_addr,
    })
}

/// What a data folder holds: the records on disk, the store's journal and
/// the writer's guard; all empty without one.
#[derive(Default)]
struct OnDisk {
    records: Vec<Record>,
    journal: Option<Box<dyn Journal>>,
    guard: Option<JournalGuard>,
}

/// Opens the journal of the plan's data folder, if any. The records are
/// loaded before the store starts, so a restarted server answers for them
/// from its first request.
fn open_journal(plan: &ServerPlan, name: &str) -> Result<OnDisk, StartError> {
    let Some(dir) = &plan.data_dir else {
        return Ok(OnDisk::default());
    };
    let opened = journal::open(dir, plan.durability, name)?;
    Ok(OnDisk {
        records: opened.records,
        journal: Some(Box::new(opened.journal)),
        guard: Some(opened.guard),
    })
}

/// What a restart storm does (SPEC §4): the process ends with a non-zero
/// code, so that the supervisor outside (systemd, compose, Kubernetes)
/// starts it afresh.
fn restart_budget() -> RestartBudget {
    RestartBudget::new(Arc::new(|what| {
        log::error!(target: "herd", "{what}: giving up; exiting so that the service manager \
            restarts the process");
        log::logger().flush();
        std::process::exit(RESTART_STORM_EXIT);
    }))
}

/// Gives the heap's free memory back to the system. Allocators keep what is
/// freed, so without this a server whose records expired
/// (`limits.record_ttl_ms`) stays at its peak size (BENCHMARKS.md, "Record
/// TTL"). The `herd` binary allocates with mimalloc (src/main.rs); glibc's
/// malloc holds what C code and a test binary allocate.
fn release_memory() {
    // SAFETY: mi_collect has no preconditions; it only returns memory no
    // longer in use, of this thread's heap (the store's, which frees the
    // expired records) and of abandoned ones.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The exit code of a restart storm (EX_SOFTWARE).
pub const RESTART_STORM_EXIT: i32 = 70;

/// One supervised PeerActor per neighbour: the outgoing links the store
/// floods to, by name.
fn start_links(
    plan: &ServerPlan,
    identity: &Identity,
    store: &Addr<LocationStoreActor>,
    metrics: &Arc<Metrics>,
) -> BTreeMap<Arc<str>, Recipient<Repair>> {
    let mut links = BTreeMap::new();
    for neighbour in &plan.neighbours {
        let name: Arc<str> = neighbour.name.as_str().into();
        let link = PeerActor::new(
            identity.clone(),
            name.clone(),
            neighbour.address.to_string(),
            store.clone(),
            plan.peer_limits.clone(),
            metrics.clone(),
        )
        .with_ack_after(plan.ack_after);
        let link = actix::Supervisor::start(move |_| link);
        store.do_send(AddPeer {
            name: name.clone(),
            link: link.clone().recipient(),
            compare: link.clone().recipient(),
        });
        links.insert(name, link.recipient());
    }
    links
}

/// The accept loops of the peer and client ports.
#[allow(clippy::too_many_arguments)]
fn serve(
    plan: &ServerPlan,
    identity: Identity,
    links: BTreeMap<Arc<str>, Recipient<Repair>>,
    peers: TcpListener,
    clients: TcpListener,
    store: &Addr<LocationStoreActor>,
    places: Addr<PlacesActor>,
    metrics: &Arc<Metrics>,
) {
    let name = identity.me.clone();
    let gate = PeerGate {
        identity,
        neighbours: plan
            .neighbours
            .iter()
            .map(|n| Arc::from(n.name.as_str()))
            .collect(),
        herd: plan.topology.servers().cloned().collect(),
        links: Arc::new(links),
        max_handshakes: plan.peer_limits.max_handshakes,
        max_handshakes_per_source: plan.peer_limits.max_handshakes_per_source,
        store: store.clone(),
        metrics: metrics.clone(),
    };
    actix_rt::spawn(listener::serve_peers(peers, gate));
    let shared = ClientContext {
        server: name.clone(),
        store: store.clone(),
        places,
        limits: plan.client_limits.clone(),
        metrics: metrics.clone(),
        log_lines: plan.log_lines,
        http_refusals: Arc::default(),
        // Without a journal or a neighbour to wait for, nothing to wait for.
        answer_when_queued: plan.data_dir.is_none() && plan.ack_after == AckAfter::Local,
    };
    actix_rt::spawn(listener::serve_clients(
        clients,
        shared,
        plan.max_connections,
    ));
}
