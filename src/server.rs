//! Wiring: turns a [`ServerPlan`] into running actors and listeners.
//!
//! Start order matters for SPEC §6: both listeners are bound first (so the
//! server accepts clients within milliseconds), then the actors are started,
//! and the offline places data loads in the background afterwards.

use std::sync::Arc;

use actix::prelude::*;
use herd_actors::connection::ClientContext;
use herd_actors::listener::{self, PeerGate};
use herd_actors::metrics::Metrics;
use herd_actors::peer::PeerActor;
use herd_actors::places::geonames::GeoNames;
use herd_actors::places::google::Google;
use herd_actors::places::google_new::GoogleNew;
use herd_actors::places::http::Upstream;
use herd_actors::places::{offline::Offline, PlacesActor, Policy, Provider, RateLimit, Sharing};
use herd_actors::store::{AddPeer, Journal, LocationStoreActor};
use log::{info, warn};
use tokio::net::TcpListener;

use crate::journal::{self, JournalGuard};
use crate::settings::{PlacesPlan, ServerPlan};

/// A running server's handles.
pub struct RunningServer {
    pub name: Arc<str>,
    pub store: Addr<LocationStoreActor>,
    pub metrics: Arc<Metrics>,
    /// The journal's writer; dropping it commits what is queued and stops it.
    pub journal: Option<JournalGuard>,
}

/// Binds `addr`, naming the address in the error.
async fn bind(addr: &str, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for {what} on {addr}: {e}"))
}

/// The places provider the plan asks for, and how the PlacesActor runs it:
/// the deadline, rate limit and cache for the Google providers.
/// A Google provider without a key or with a malformed base URL is refused
/// here, so the server does not start half-configured.
fn places_provider(
    server: &Arc<str>,
    plan: &PlacesPlan,
) -> Result<(Box<dyn Provider>, Policy), String> {
    let section = &plan.section;
    let deadline = std::time::Duration::from_millis(section.timeout_ms.max(1));
    let base_url = match section.provider.as_str() {
        // Offline answers from memory: no deadline (its first answers may
        // wait for the embedded data to load, which is bounded and must not
        // fail). A GeoNames file may take many seconds to load: a WHATSAT
        // waits for it up to the deadline, then hears it is still loading.
        "offline" if !section.geonames_file.is_empty() => {
            let file = std::path::Path::new(&section.geonames_file);
            return Ok((
                Box::new(GeoNames::new(server.clone(), file, deadline)),
                Policy::local(),
            ));
        }
        "offline" => return Ok((Box::new(Offline::new()), Policy::local())),
        "google" => &section.google_base_url,
        "google-new" => &section.google_new_base_url,
        other => {
            return Err(format!(
                "places provider {other} is not one of offline, google, google-new"
            ))
        }
    };
    let Some(key) = plan.api_key.as_deref() else {
        return Err(format!(
            "places provider {} needs a Google API key in GOOGLE_PLACES_API_KEY",
            section.provider
        ));
    };
    let upstream = Upstream::new(server.clone(), base_url, key, deadline)?;
    let provider: Box<dyn Provider> = if section.provider == "google" {
        Box::new(Google::new(upstream))
    } else {
        Box::new(GoogleNew::new(upstream))
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

/// Starts one server on the current arbiter.
pub async fn start(plan: ServerPlan) -> Result<RunningServer, String> {
    let clients = bind(&plan.client_addr, "clients").await?;
    let peers = bind(&plan.peer_addr, "peers").await?;
    let name: Arc<str> = plan.name.as_str().into();
    let metrics = Arc::new(Metrics::default());
    if !plan.secret.is_set() {
        warn!(target: "herd", "{name}: INSECURE PEERS (herd.insecure_peers is set): \
            neighbours are accepted by name alone and the peer wire is in clear. \
            Remove the setting to use HERD_SECRET, herd.secret_file or ~/.herd.cookie.");
    }

    // With a data folder, the records are loaded before the store starts, so a
    // restarted server answers for them from its first request.
    let (records, journal, guard) = match &plan.data_dir {
        Some(dir) => {
            let opened = journal::open(dir, journal::Mode::parse(&plan.durability), &name)?;
            let journal: Box<dyn Journal> = Box::new(opened.journal);
            (opened.records, Some(journal), Some(opened.guard))
        }
        None => (Vec::new(), None, None),
    };
    let store = LocationStoreActor::new(
        name.clone(),
        records,
        journal,
        metrics.clone(),
        plan.client_limits.max_future_skew,
    )
    .with_topology(plan.topology.clone())
    .start();
    let (provider, policy) = places_provider(&name, &plan.places)?;
    let places = PlacesActor::new(name.clone(), provider, metrics.clone())
        .with_policy(policy)
        .start();

    for neighbour in &plan.neighbours {
        let link = PeerActor::new(
            name.clone(),
            neighbour.name.as_str().into(),
            neighbour.address.clone(),
            plan.secret.clone(),
            store.clone(),
            plan.peer_limits.clone(),
            metrics.clone(),
        )
        .start();
        store.do_send(AddPeer {
            name: neighbour.name.as_str().into(),
            link: link.recipient(),
        });
    }

    let gate = PeerGate {
        me: name.clone(),
        neighbours: plan
            .neighbours
            .iter()
            .map(|n| Arc::from(n.name.as_str()))
            .collect(),
        secret: plan.secret.clone(),
        timeout: plan.peer_limits.handshake_timeout,
        max_handshakes: plan.peer_limits.max_handshakes,
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
        answer_when_queued: plan.data_dir.is_none(),
    };
    actix_rt::spawn(listener::serve_clients(
        clients,
        shared,
        plan.max_connections,
    ));
    // The operators' view (src/admin.rs), after the client listener so it
    // never delays the first client.
    crate::admin::start(&plan, name.clone(), store.clone(), metrics.clone())?;
    info!(target: "herd", "{name}: serving clients on {}, peers on {}, neighbours: {}",
        plan.client_addr, plan.peer_addr,
        plan.neighbours.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "));
    Ok(RunningServer {
        name,
        store,
        metrics,
        journal: guard,
    })
}
