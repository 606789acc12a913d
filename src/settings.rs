//! Settings.toml and its environment overrides, turned into one [`ServerPlan`]
//! per server: everything a server needs to start, with nothing left to look up.
//!
//! Sources, later ones winning: the file given by `--config` (default
//! `Settings.toml` in the working directory), then environment variables
//! `HERD_<SECTION>__<KEY>` (for example `HERD_LIMITS__MAX_LINE_BYTES=8192`,
//! `HERD_PLACES__PROVIDER=google`, `HERD_SERVERS__RILEY__HOST=riley`), then
//! command-line flags. Secrets never come from the file: the herd secret is
//! `HERD_SECRET` or the file named by `herd.secret_file`, the Google key is
//! `GOOGLE_PLACES_API_KEY`. The admin token (see [`AdminSection`]) is
//! `HERD_ADMIN_TOKEN` or the file named by `admin.token_file` (default
//! `~/.herd.admin-token`, created like the herd secret's cookie);
//! `admin.token` exists for a throwaway local file and an
//! `HERD_ADMIN__TOKEN` override.
//!
//! Server tables are keyed by a lower-case id (environment variable names
//! are case-insensitive) and carry the name used on the wire. A link listed
//! on either side is a link both ways.
//!
//! Values are typed as they are read: addresses are [`Host`]s and
//! [`Endpoint`]s (`settings/address.rs`), a path that may be absent is an
//! `Option<PathBuf>` ([`optional_path`]), and a listener's address is a
//! `SocketAddr` in the plan; every mistake is a [`SettingsError`] variant
//! (`settings/error.rs`) naming the setting.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_actors::connection::{ClientLimits, DEFAULT_MAX_CONNECTIONS};
use herd_actors::handshake::Secret;
use herd_actors::peer::PeerLimits;
use herd_actors::store::{AckAfter, DEFAULT_RECORD_TTL};
use herd_actors::tree::Topology;
use serde::{Deserialize, Serialize};

use crate::cookie;
use crate::journal;

mod address;
mod error;
mod keys;

use crate::choice::choice;
pub use address::{is_wildcard, Endpoint, Host};
pub use error::SettingsError;

/// A path setting that may be absent: `""` (in the file, the environment
/// or a flag) is none. The one place that rule is written; the settings
/// read and write their paths through it (`#[serde(with = "optional_path")]`).
pub mod optional_path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// `text` as a path, none when it is empty.
    pub fn from_text(text: String) -> Option<PathBuf> {
        (!text.is_empty()).then(|| PathBuf::from(text))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.and_then(from_text))
    }

    /// None is written as `""`, as it is read.
    pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        path.as_deref()
            .unwrap_or(std::path::Path::new(""))
            .serialize(s)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HerdSection {
    /// Folder of the per-server logs (`<log_dir>/<Name>.log`); empty: none.
    #[serde(with = "optional_path")]
    pub log_dir: Option<PathBuf>,
    /// Whether every input and output line is logged.
    pub log_lines: bool,
    /// Level of the per-server log files (stderr follows `RUST_LOG`).
    pub file_log_level: String,
    /// `text` or `json` (one object per line), on stderr and in the files.
    pub log_format: crate::logging::LogFormat,
    /// Folder of the per-server databases; empty: records in memory only.
    #[serde(with = "optional_path")]
    pub data_dir: Option<PathBuf>,
    /// `sync` (answer after fsync) or `async` (answer at once, fsync soon).
    pub durability: journal::Mode,
    /// A file holding the herd secret (used when `HERD_SECRET` is unset),
    /// created with a random secret if missing; empty: `~/.herd.cookie`.
    #[serde(with = "optional_path")]
    pub secret_file: Option<PathBuf>,
    /// Peers by name alone, in clear, with no secret: only when an operator
    /// asks for it, and warned about at every start.
    pub insecure_peers: bool,
    /// How updates travel between servers: `tree` or `flood`.
    pub forwarding: Forwarding,
    /// How often each link compares its two stores' digest roots (jittered
    /// between half and all of it); 0: never.
    pub anti_entropy_ms: u64,
    /// When an IAMAT is answered: `local` (the store took it) or
    /// `neighbour` (a neighbour acknowledged it too, within
    /// `limits.ack_timeout_ms`).
    pub ack_after: AckAfterSetting,
}

choice! {
    /// When an IAMAT is answered (`herd.ack_after`, SPEC §4).
    pub enum AckAfterSetting ("ack_after") {
        Local = "local",
        Neighbour = "neighbour",
    }
}

impl From<AckAfterSetting> for AckAfter {
    fn from(setting: AckAfterSetting) -> AckAfter {
        match setting {
            AckAfterSetting::Local => AckAfter::Local,
            AckAfterSetting::Neighbour => AckAfter::Neighbour,
        }
    }
}

choice! {
    /// How updates travel between servers (`herd.forwarding`,
    /// docs/peer-protocol.md "Floods"): down each origin's shortest-path tree,
    /// n−1 receptions per update; or flooded along every link, for a herd
    /// whose servers do not yet all have the same topology (a change of links).
    pub enum Forwarding ("forwarding") {
        Tree = "tree",
        Flood = "flood",
    }
}

impl Default for HerdSection {
    fn default() -> Self {
        HerdSection {
            log_dir: Some("logs".into()),
            log_lines: true,
            file_log_level: "info".into(),
            log_format: crate::logging::LogFormat::Text,
            data_dir: None,
            durability: journal::Mode::Sync,
            secret_file: None,
            insecure_peers: false,
            forwarding: Forwarding::Tree,
            anti_entropy_ms: ms(PeerLimits::default().anti_entropy),
            ack_after: AckAfterSetting::Local,
        }
    }
}

/// A duration as whole milliseconds, as the settings write them.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LimitsSection {
    pub max_line_bytes: usize,
    pub max_connections: usize,
    pub idle_timeout_ms: u64,
    pub write_timeout_ms: u64,
    pub linger_ms: u64,
    pub max_pending_records: usize,
    pub peer_max_backlog_bytes: usize,
    pub handshake_timeout_ms: u64,
    pub max_peer_handshakes: usize,
    /// Of those, how many one source address may hold at once.
    pub max_handshakes_per_source: usize,
    pub backoff_first_ms: u64,
    pub backoff_max_ms: u64,
    /// A client time further ahead of the server's clock is refused.
    pub max_future_skew_ms: u64,
    /// With `herd.ack_after = "neighbour"`, the longest an answer waits.
    pub ack_timeout_ms: u64,
    /// A record is dropped everywhere this long after its origin received
    /// it; 0 keeps records for ever.
    pub record_ttl_ms: u64,
}

/// The defaults are the actors' own ([`ClientLimits::default`],
/// [`PeerLimits::default`]): one source, which Settings.toml repeats (a test
/// checks that it does so faithfully).
impl Default for LimitsSection {
    fn default() -> Self {
        let client = ClientLimits::default();
        let peer = PeerLimits::default();
        LimitsSection {
            ack_timeout_ms: ms(client.ack_timeout),
            max_line_bytes: client.max_line,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout_ms: ms(client.idle_timeout),
            write_timeout_ms: ms(client.write_timeout),
            linger_ms: ms(client.linger),
            max_pending_records: peer.max_pending,
            peer_max_backlog_bytes: peer.max_backlog,
            handshake_timeout_ms: ms(peer.handshake_timeout),
            max_peer_handshakes: peer.max_handshakes,
            max_handshakes_per_source: peer.max_handshakes_per_source,
            backoff_first_ms: ms(peer.backoff_first),
            backoff_max_ms: ms(peer.backoff_max),
            max_future_skew_ms: ms(client.max_future_skew),
            record_ttl_ms: ms(DEFAULT_RECORD_TTL),
        }
    }
}

impl LimitsSection {
    /// The limits of one client connection.
    fn client(&self) -> ClientLimits {
        let ms = Duration::from_millis;
        ClientLimits {
            max_line: self.max_line_bytes,
            idle_timeout: ms(self.idle_timeout_ms),
            write_timeout: ms(self.write_timeout_ms),
            linger: ms(self.linger_ms),
            max_future_skew: ms(self.max_future_skew_ms),
            ack_timeout: ms(self.ack_timeout_ms),
        }
    }

    /// The limits of one peer link.
    fn peer(&self) -> PeerLimits {
        let ms = Duration::from_millis;
        PeerLimits {
            handshake_timeout: ms(self.handshake_timeout_ms),
            write_timeout: ms(self.write_timeout_ms),
            backoff_first: ms(self.backoff_first_ms),
            backoff_max: ms(self.backoff_max_ms),
            max_pending: self.max_pending_records,
            max_backlog: self.peer_max_backlog_bytes,
            max_handshakes: self.max_peer_handshakes,
            max_handshakes_per_source: self.max_handshakes_per_source,
            anti_entropy: Duration::default(),
        }
    }
}

choice! {
    /// Where WHATSAT finds places (`places.provider`).
    pub enum PlacesProvider ("places provider") {
        /// The embedded towns, or a GeoNames file (`places.geonames_file`).
        Offline = "offline",
        /// The legacy Places API (Nearby Search).
        Google = "google",
        /// The Places API (New).
        GoogleNew = "google-new",
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PlacesSection {
    /// `offline`, `google` or `google-new`.
    pub provider: PlacesProvider,
    pub google_base_url: String,
    pub google_new_base_url: String,
    pub timeout_ms: u64,
    pub rate_per_sec: f64,
    pub burst: u32,
    pub max_wait_ms: u64,
    pub cache_ttl_ms: u64,
    pub cache_entries: usize,
    /// A GeoNames dump (tab-separated) the offline provider loads instead of
    /// its embedded towns; empty: the embedded table (docs/places.md).
    #[serde(with = "optional_path")]
    pub geonames_file: Option<PathBuf>,
}

impl Default for PlacesSection {
    fn default() -> Self {
        PlacesSection {
            provider: PlacesProvider::Offline,
            google_base_url: "https://maps.googleapis.com".into(),
            google_new_base_url: "https://places.googleapis.com".into(),
            timeout_ms: 5_000,
            rate_per_sec: 50.0,
            burst: 100,
            max_wait_ms: 1_000,
            cache_ttl_ms: 30_000,
            cache_entries: 10_000,
            geonames_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerSection {
    pub name: String,
    /// Where the others reach this server: an IP address or a name (looked
    /// up each time a neighbour dials it).
    #[serde(default)]
    pub host: Host,
    /// Address the listeners bind to (a name is resolved once, at start).
    #[serde(default)]
    pub listen: Host,
    pub port: u16,
    /// Default: `port + 2000` ([`ServerSection::peer_port`]).
    pub peer_port: Option<u16>,
    /// Default: `port + 1000` ([`ServerSection::admin_port`]).
    pub admin_port: Option<u16>,
    /// Address the admin listener binds to (default loopback).
    #[serde(default)]
    pub admin_listen: Host,
    #[serde(default)]
    pub neighbours: Vec<String>,
    /// Per neighbour (by name): the address this server dials to reach it,
    /// instead of the neighbour's `host:peer_port`. For a relay or proxy on
    /// one link (the fault tests put a proxy they can cut on each link).
    #[serde(default)]
    pub links: BTreeMap<String, Endpoint>,
}

/// A server's admin port, unless set: its client port plus this.
pub const ADMIN_PORT_OFFSET: u16 = 1000;

/// A server's peer port, unless set: its client port plus this.
pub const PEER_PORT_OFFSET: u16 = 2000;

impl ServerSection {
    /// The peer port: `peer_port`, default client port + [`PEER_PORT_OFFSET`].
    pub fn peer_port(&self) -> u16 {
        self.peer_port
            .unwrap_or(self.port.saturating_add(PEER_PORT_OFFSET))
    }

    /// The admin port: `admin_port`, default client port + [`ADMIN_PORT_OFFSET`].
    pub fn admin_port(&self) -> u16 {
        self.admin_port
            .unwrap_or(self.port.saturating_add(ADMIN_PORT_OFFSET))
    }

    /// Where the admin listener is reached from elsewhere: its own address,
    /// or the server's `host` when it listens on a wildcard.
    pub fn admin_endpoint(&self) -> Endpoint {
        let host = if self.admin_listen.is_wildcard() {
            &self.host
        } else {
            &self.admin_listen
        };
        host.at(self.admin_port())
    }
}

/// `[admin]`: who may read the admin listeners (src/admin/guard.rs).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AdminSection {
    /// The bearer token every admin path but `/`, `/healthz` and
    /// `/metrics` asks for. `HERD_ADMIN_TOKEN` wins over it; prefer that
    /// or `token_file`.
    pub token: String,
    /// A file holding the token (used when no token is set otherwise);
    /// empty: `~/.herd.admin-token`. Created with a random token when
    /// missing.
    #[serde(with = "optional_path")]
    pub token_file: Option<PathBuf>,
    /// More `Host` names the admin listeners answer to (besides loopback,
    /// the address a request arrived on, and each server's `host`),
    /// separated by commas or spaces: e.g. `"herd.example.com, 10.0.0.5"`.
    pub allowed_hosts: String,
    /// Test-only: `POST /test/forget` (drop one record from this store
    /// alone) and `POST /test/crash-store` (stop or panic the store), which
    /// the convergence and supervision tests use. Never in production.
    pub test_hooks: bool,
}

/// The shortest secret an operator may choose, herd secret or admin token,
/// in bytes: shorter ones can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// How a secret or token file is had: read only (herdctl), or created with
/// a random secret when missing (a server).
type ReadFile = fn(&Path, &'static str) -> Result<Vec<u8>, cookie::CookieError>;

impl AdminSection {
    /// Where the token file is: `token_file`, else `~/.herd.admin-token`.
    /// One rule for the servers, which create it, and herdctl, which reads it.
    pub fn token_path(&self) -> Result<PathBuf, SettingsError> {
        match &self.token_file {
            Some(path) => Ok(path.clone()),
            None => Ok(cookie::default_admin_token_path()?),
        }
    }

    /// `HERD_ADMIN_TOKEN`, else `token`, else the token file, as a server
    /// finds it: the file is created with a random token when missing, so
    /// every admin listener has a token.
    pub fn token_or_create(&self) -> Result<String, SettingsError> {
        self.find_token(cookie::read_or_create)
    }

    /// The token as herdctl finds it: the same, but the file is only read
    /// (the servers make it).
    pub fn existing_token(&self) -> Result<String, SettingsError> {
        self.find_token(cookie::read)
    }

    /// A token is printable ASCII without spaces (it travels in an HTTP
    /// header) and at least [`MIN_SECRET_LEN`] long.
    fn find_token(&self, read: ReadFile) -> Result<String, SettingsError> {
        let from_env = std::env::var("HERD_ADMIN_TOKEN").unwrap_or_default();
        let token = if !from_env.trim().is_empty() {
            from_env.trim().to_string()
        } else if !self.token.trim().is_empty() {
            self.token.trim().to_string()
        } else {
            let bytes = read(&self.token_path()?, "admin token")?;
            String::from_utf8_lossy(&bytes).into_owned()
        };
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SettingsError::TokenNotPrintable);
        }
        if token.len() < MIN_SECRET_LEN {
            return Err(SettingsError::ShortToken);
        }
        Ok(token)
    }
}

/// Refuses an operator's secret shorter than [`MIN_SECRET_LEN`]; `source`
/// says where it came from (`HERD_SECRET`, a file).
fn long_enough(secret: &[u8], source: &str) -> Result<(), SettingsError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(SettingsError::ShortSecret {
            from: source.to_owned(),
            len: secret.len(),
        });
    }
    Ok(())
}

/// A secret from the environment variable `name`, when set and not blank.
fn secret_from_env(name: &str) -> Result<Option<Vec<u8>>, SettingsError> {
    match std::env::var(name) {
        Ok(secret) if !secret.trim().is_empty() => {
            let secret = secret.trim().as_bytes();
            long_enough(secret, name)?;
            Ok(Some(secret.to_vec()))
        }
        _ => Ok(None),
    }
}

/// The socket address a listener of server `id` binds, from its setting
/// `key` (`listen`, `admin_listen`): a name is resolved here, once.
fn bind_address(id: &str, key: &str, endpoint: &Endpoint) -> Result<SocketAddr, SettingsError> {
    endpoint
        .resolve()
        .map_err(|source| SettingsError::BadAddress {
            key: format!("servers.{id}.{key}"),
            value: endpoint.host.to_string(),
            source,
        })
}

/// The whole file, after environment overrides.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub herd: HerdSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub places: PlacesSection,
    #[serde(default)]
    pub admin: AdminSection,
    pub servers: BTreeMap<String, ServerSection>,
}

/// How the places of one server are found: the provider with what it
/// needs, checked (a Google provider has its key and a well-formed base URL).
#[derive(Debug, Clone)]
pub struct PlacesPlan {
    pub section: PlacesSection,
    pub source: PlacesSource,
}

/// The provider of a [`PlacesPlan`], with what only it needs.
#[derive(Debug, Clone)]
pub enum PlacesSource {
    /// The embedded towns.
    Embedded,
    /// A GeoNames dump, readable when the plan was made.
    GeoNames(PathBuf),
    /// The legacy Places API.
    Google(GoogleAccess),
    /// The Places API (New).
    GoogleNew(GoogleAccess),
}

/// Where a Google provider is reached, and with which key.
#[derive(Debug, Clone)]
pub struct GoogleAccess {
    pub base_url: String,
    pub api_key: String,
}

/// A neighbour as one server sees it.
#[derive(Debug, Clone)]
pub struct NeighbourPlan {
    pub name: String,
    /// `host:peer_port`, or the link's own address (`servers.x.links`).
    pub address: Endpoint,
}

/// Who may read one server's admin listener.
#[derive(Debug, Clone)]
pub struct AdminPlan {
    /// The bearer token.
    pub token: String,
    /// `Host` names answered besides loopback and the address a request
    /// arrived on: the server's `host`, its `admin_listen` and
    /// `admin.allowed_hosts`, lower-case.
    pub names: Vec<String>,
    /// The admin ports of every server of the herd: the origins the live
    /// page may poll from.
    pub herd_ports: Vec<u16>,
    /// `admin.test_hooks`: the `/test/*` paths answer.
    pub test_hooks: bool,
}

/// Everything one server needs to start.
#[derive(Debug, Clone)]
pub struct ServerPlan {
    pub name: String,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub admin: AdminPlan,
    pub neighbours: Vec<NeighbourPlan>,
    pub client_limits: ClientLimits,
    pub max_connections: usize,
    pub peer_limits: PeerLimits,
    pub secret: Secret,
    /// `HERD_SECRET_EXTRA` is accepted too: the herd is changing its
    /// secret (warned about at every start).
    pub secret_changing: bool,
    pub places: PlacesPlan,
    pub log_lines: bool,
    pub data_dir: Option<PathBuf>,
    pub durability: journal::Mode,
    /// The whole herd's links: the trees updates travel down (none with
    /// `herd.forwarding = "flood"`: every update is flooded).
    pub topology: Topology,
    /// When an IAMAT is answered (`herd.ack_after`).
    pub ack_after: AckAfter,
    /// `limits.record_ttl_ms`; zero keeps records for ever.
    pub record_ttl: Duration,
}

impl Settings {
    /// Reads `path` and the `HERD_*` environment. A key of either that
    /// names no setting is refused, with the closest one that does.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let file = config::File::from(path).format(config::FileFormat::Toml);
        let tree: serde_json::Value = config::Config::builder()
            .add_source(file.clone())
            .build()?
            .try_deserialize()?;
        let known = Settings::known_keys();
        keys::check_file(&tree, &known, &path.display().to_string())
            .and_then(|()| keys::check_env(std::env::vars(), &known))?;
        let settings = config::Config::builder()
            .add_source(file)
            .add_source(
                config::Environment::with_prefix("HERD")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize::<Settings>()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Every setting's key, from the setting structs and their defaults:
    /// `{section: {key: default}}`, with `servers.*` for any server.
    fn known_keys() -> serde_json::Value {
        let server =
            serde_json::from_value::<ServerSection>(serde_json::json!({"name": "", "port": 0}))
                .ok();
        serde_json::json!({
            "herd": HerdSection::default(),
            "limits": LimitsSection::default(),
            "places": PlacesSection::default(),
            "admin": AdminSection::default(),
            "servers": { "*": server },
        })
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if self.servers.is_empty() {
            return Err(SettingsError::NoServers);
        }
        let mut names = BTreeSet::new();
        for server in self.servers.values() {
            if !herd_actors::protocol::valid_server_name(server.name.as_bytes()) {
                return Err(SettingsError::BadServerName(server.name.clone()));
            }
            if !names.insert(server.name.as_str()) {
                return Err(SettingsError::DuplicateServer(server.name.clone()));
            }
        }
        for server in self.servers.values() {
            for n in &server.neighbours {
                if !names.contains(n.as_str()) {
                    return Err(SettingsError::UnknownNeighbour {
                        server: server.name.clone(),
                        neighbour: n.clone(),
                    });
                }
                if *n == server.name {
                    return Err(SettingsError::SelfNeighbour(server.name.clone()));
                }
            }
        }
        let limits = &self.limits;
        for (key, value) in [
            ("max_line_bytes", limits.max_line_bytes),
            ("max_connections", limits.max_connections),
            ("max_peer_handshakes", limits.max_peer_handshakes),
            (
                "max_handshakes_per_source",
                limits.max_handshakes_per_source,
            ),
        ] {
            if value == 0 {
                return Err(SettingsError::ZeroLimit { key });
            }
        }
        Ok(())
    }

    /// Finds a server by its name (any case) or its table id.
    pub fn server(&self, name: &str) -> Option<&ServerSection> {
        self.server_and_id(name).map(|(_, s)| s)
    }

    /// A server found as [`Settings::server`] does, with its table id.
    fn server_and_id(&self, name: &str) -> Option<(&str, &ServerSection)> {
        self.servers
            .iter()
            .find(|(id, s)| s.name.eq_ignore_ascii_case(name) || id.eq_ignore_ascii_case(name))
            .map(|(id, s)| (id.as_str(), s))
    }

    /// The server that runs on the machine named `host_name` (`herd
    /// --host-name`, for orchestrators that give each machine a stable
    /// name, such as a Kubernetes StatefulSet's pods `herd-0` ... `herd-4`):
    /// the one whose `host` is `host_name`, or begins with `host_name` and a
    /// dot (`herd-0` is the machine of `herd-0.herd.ns.svc.cluster.local`),
    /// compared in any case. No server, or more than one, is an error.
    pub fn server_on_host(&self, host_name: &str) -> Result<&ServerSection, SettingsError> {
        let wanted = host_name.trim().trim_end_matches('.');
        let on_host = |host: &Host| {
            let host = host.to_string();
            let host = host.trim_end_matches('.');
            host.eq_ignore_ascii_case(wanted)
                || host.get(..wanted.len()).is_some_and(|head| {
                    head.eq_ignore_ascii_case(wanted) && host[wanted.len()..].starts_with('.')
                })
        };
        let mut found: Vec<&ServerSection> = self
            .servers
            .values()
            .filter(|s| !wanted.is_empty() && on_host(&s.host))
            .collect();
        found.sort_by_key(|s| s.port);
        match found.as_slice() {
            [server] => Ok(server),
            [] => Err(SettingsError::NoServerOnHost {
                host: wanted.to_owned(),
                hosts: self.servers.values().map(|s| s.host.to_string()).collect(),
            }),
            many => Err(SettingsError::ManyServersOnHost {
                host: wanted.to_owned(),
                servers: many.iter().map(|s| s.name.clone()).collect(),
            }),
        }
    }

    /// The servers in the order of their client ports.
    pub fn server_names(&self) -> Vec<String> {
        let mut servers: Vec<&ServerSection> = self.servers.values().collect();
        servers.sort_by_key(|s| s.port);
        servers.iter().map(|s| s.name.clone()).collect()
    }

    /// The links of the whole herd, as every server of it sees them.
    pub fn topology(&self) -> Topology {
        Topology::new(
            self.servers
                .values()
                .map(|s| (s.name.as_str(), s.neighbours.as_slice())),
        )
    }

    /// The neighbours of `server` in the order of their client ports: a
    /// link listed on either side is a link both ways, as the herd's
    /// [`Topology`] (the one place that rule is written) has it.
    pub fn neighbours_of(&self, server: &ServerSection) -> Vec<&ServerSection> {
        let topology = self.topology();
        let linked = topology.neighbours(&server.name);
        let mut found: Vec<&ServerSection> = self
            .servers
            .values()
            .filter(|s| linked.iter().any(|n| **n == *s.name))
            .collect();
        found.sort_by_key(|s| s.port);
        found
    }

    /// The start plan of server `name`, with the secret and key read from
    /// the environment (or the secret file).
    pub fn plan(&self, name: &str) -> Result<ServerPlan, SettingsError> {
        let Some((id, server)) = self.server_and_id(name) else {
            return Err(SettingsError::UnknownServer {
                name: name.to_owned(),
                known: self.server_names(),
            });
        };
        let neighbours = self
            .neighbours_of(server)
            .into_iter()
            .map(|n| NeighbourPlan {
                name: n.name.clone(),
                address: server
                    .links
                    .iter()
                    .find(|(to, _)| to.eq_ignore_ascii_case(&n.name))
                    .map(|(_, address)| address.clone())
                    .unwrap_or_else(|| n.host.at(n.peer_port())),
            })
            .collect();
        let limits = &self.limits;
        let (secret, secret_changing) = self.secret()?;
        Ok(ServerPlan {
            name: server.name.clone(),
            client_addr: bind_address(id, "listen", &server.listen.at(server.port))?,
            peer_addr: bind_address(id, "listen", &server.listen.at(server.peer_port()))?,
            admin_addr: bind_address(
                id,
                "admin_listen",
                &server.admin_listen.at(server.admin_port()),
            )?,
            admin: self.admin_plan(server)?,
            neighbours,
            client_limits: limits.client(),
            max_connections: limits.max_connections,
            peer_limits: PeerLimits {
                anti_entropy: Duration::from_millis(self.herd.anti_entropy_ms),
                ..limits.peer()
            },
            ack_after: self.herd.ack_after.into(),
            record_ttl: Duration::from_millis(limits.record_ttl_ms),
            secret,
            secret_changing,
            places: self.places_plan()?,
            log_lines: self.herd.log_lines,
            data_dir: self.herd.data_dir.as_ref().map(|d| d.join(&server.name)),
            durability: self.herd.durability,
            topology: match self.herd.forwarding {
                Forwarding::Tree => self.topology(),
                Forwarding::Flood => Topology::default(),
            },
        })
    }

    /// The herd secret (SPEC §4), in this order: `HERD_SECRET`; none when
    /// the operator set `herd.insecure_peers`; the file `herd.secret_file`;
    /// the user's cookie `~/.herd.cookie`. A missing file is created with a
    /// random secret, so a herd is authenticated with no configuration. A
    /// secret shorter than [`MIN_SECRET_LEN`] is refused, wherever it
    /// came from (a made one is 64 hex digits).
    ///
    /// `HERD_SECRET_EXTRA` names one more secret that this server accepts
    /// from the neighbours that dial it, while the herd changes its secret
    /// (docs/security.md, "Changing the secret"); the flag returned says
    /// whether it is in use.
    fn secret(&self) -> Result<(Secret, bool), SettingsError> {
        let secret = self.main_secret()?;
        match secret_from_env("HERD_SECRET_EXTRA")? {
            Some(extra) if secret.is_set() => Ok((secret.also_accepting(&extra), true)),
            _ => Ok((secret, false)),
        }
    }

    fn main_secret(&self) -> Result<Secret, SettingsError> {
        if let Some(secret) = secret_from_env("HERD_SECRET")? {
            return Ok(Secret::new(&secret));
        }
        if self.herd.insecure_peers {
            return Ok(Secret::none());
        }
        let path = match &self.herd.secret_file {
            Some(path) => path.clone(),
            None => cookie::default_path()?,
        };
        let secret = cookie::read_or_create(&path, "herd secret")?;
        long_enough(&secret, &path.display().to_string())?;
        Ok(Secret::new(&secret))
    }

    /// The admin token every server of these settings asks for
    /// ([`AdminSection::token_or_create`]).
    pub fn admin_token(&self) -> Result<String, SettingsError> {
        self.admin.token_or_create()
    }

    /// Who may read `server`'s admin listener: always with a token (made
    /// when none is set), loopback or not.
    fn admin_plan(&self, server: &ServerSection) -> Result<AdminPlan, SettingsError> {
        let token = self.admin_token()?;
        let allowed = self
            .admin
            .allowed_hosts
            .split([',', ' '])
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.parse::<Host>().map_err(|_| n.trim()));
        let names = [&server.host, &server.admin_listen]
            .into_iter()
            .map(|h| Ok(h.clone()))
            .chain(allowed)
            .filter_map(|name| match name {
                Ok(host) if host.is_wildcard() => None,
                Ok(host) => Some(host.to_string()),
                // Neither an address nor a name: kept as written (it will
                // match no Host).
                Err(text) => Some(text.to_owned()),
            })
            .map(|n| n.to_ascii_lowercase())
            .collect();
        let mut herd_ports: Vec<u16> = self
            .servers
            .values()
            .map(ServerSection::admin_port)
            .collect();
        herd_ports.sort_unstable();
        Ok(AdminPlan {
            token,
            names,
            herd_ports,
            test_hooks: self.admin.test_hooks,
        })
    }

    /// The places provider chosen, with what it needs: a Google provider
    /// without a key or with a malformed base URL, or a GeoNames file that
    /// cannot be read, is refused here, so no server starts half-configured.
    fn places_plan(&self) -> Result<PlacesPlan, SettingsError> {
        let places = &self.places;
        let google = |key: &'static str, base_url: &str| {
            let Some(api_key) = std::env::var("GOOGLE_PLACES_API_KEY")
                .ok()
                .filter(|k| !k.is_empty())
            else {
                return Err(SettingsError::NoGoogleKey {
                    provider: places.provider.label(),
                });
            };
            herd_actors::places::http::check_base_url(base_url)
                .map_err(|why| SettingsError::BadBaseUrl { key, why })?;
            Ok(GoogleAccess {
                base_url: base_url.to_owned(),
                api_key,
            })
        };
        let source = match places.provider {
            PlacesProvider::Google => {
                PlacesSource::Google(google("google_base_url", &places.google_base_url)?)
            }
            PlacesProvider::GoogleNew => {
                PlacesSource::GoogleNew(google("google_new_base_url", &places.google_new_base_url)?)
            }
            PlacesProvider::Offline => match &places.geonames_file {
                None => PlacesSource::Embedded,
                // Readable now; its contents are checked as it loads (in the
                // background, so the listener is not delayed).
                Some(path) => match std::fs::File::open(path).and_then(|f| f.metadata()) {
                    Ok(meta) if meta.is_file() => PlacesSource::GeoNames(path.clone()),
                    Ok(_) => return Err(SettingsError::GeoNamesNotAFile { path: path.clone() }),
                    Err(source) => {
                        return Err(SettingsError::GeoNamesUnreadable {
                            path: path.clone(),
                            source,
                        })
                    }
                },
            },
        };
        Ok(PlacesPlan {
            section: self.places.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `text` as a settings file (with whatever `HERD_*` variables the
    /// test process has, which is none under `cargo test`).
    fn load(text: &str) -> Result<Settings, SettingsError> {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("Settings.toml");
        std::fs::write(&path, text).expect("write settings");
        Settings::load(&path)
    }

    const ONE: &str = "[servers.riley]\nname = \"Riley\"\nport = 12665\n";

    fn error_of(text: &str) -> String {
        load(text).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_misspelt_key_is_refused_with_the_closest_known_one() {
        let error = error_of(&format!("[places]\nprovidr = \"google\"\n{ONE}"));
        assert!(
            error.contains("unknown setting places.providr")
                && error.contains("did you mean places.provider?"),
            "{error}"
        );
        let error = error_of(&format!("{ONE}neighbors = [\"Jaquez\"]\n"));
        assert!(
            error.contains("servers.riley.neighbors")
                && error.contains("did you mean servers.riley.neighbours?"),
            "{error}"
        );
        let error = error_of(&format!("[limit]\nmax_line_bytes = 1\n{ONE}"));
        assert!(error.contains("did you mean limits?"), "{error}");
    }

    #[test]
    fn a_misspelt_variable_is_refused_and_others_are_left_alone() {
        let known = Settings::known_keys();
        let vars = |list: &[&str]| {
            list.iter()
                .map(|v| (v.to_string(), "1".to_string()))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let fine = vars(&[
            "HERD_SECRET",
            "HERD_CONFIG",
            "HERD_PLACES__PROVIDER",
            "HERD_SERVERS__RILEY__HOST",
            "HERD_LIMITS__MAX_FUTURE_SKEW_MS",
        ]);
        assert_eq!(keys::check_env(fine, &known), Ok(()));
        let error = keys::check_env(vars(&["HERD_PLACES__PROVIDR"]), &known)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("did you mean HERD_PLACES__PROVIDER?"),
            "{error}"
        );
        let error = keys::check_env(vars(&["HERD_SERVERS__RILEY__HOTS"]), &known)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("did you mean HERD_SERVERS__RILEY__HOST?"),
            "{error}"
        );
    }

    /// Settings.toml repeats the defaults for the operators to read; the
    /// defaults themselves live in the code (the limits in the actors).
    #[test]
    fn the_shipped_settings_file_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Settings.toml");
        let shipped: Settings = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("Settings.toml");
        fn json<T: Serialize>(section: &T) -> serde_json::Value {
            serde_json::to_value(section).expect("a section is JSON")
        }
        assert_eq!(json(&shipped.limits), json(&LimitsSection::default()));
        assert_eq!(json(&shipped.herd), json(&HerdSection::default()));
        assert_eq!(json(&shipped.places), json(&PlacesSection::default()));
        assert_eq!(json(&shipped.admin), json(&AdminSection::default()));
    }

    #[test]
    fn a_bad_provider_or_durability_is_refused_naming_the_key() {
        let error = error_of(&format!("[places]\nprovider = \"bing\"\n{ONE}"));
        assert!(
            error.contains("places.provider")
                && error.contains("\"bing\" is not one of offline, google, google-new"),
            "{error}"
        );
        let error = error_of(&format!("[herd]\ndurability = \"later\"\n{ONE}"));
        assert!(
            error.contains("herd.durability") && error.contains("\"later\" is not sync or async"),
            "{error}"
        );
        let loaded = load(&format!(
            "[herd]\ndurability = \"async\"\n[places]\nprovider = \"google-new\"\n{ONE}"
        ))
        .expect("valid settings");
        assert_eq!(loaded.herd.durability, journal::Mode::Async);
        assert_eq!(loaded.places.provider, PlacesProvider::GoogleNew);
        // Each name is written as it is read.
        for &provider in PlacesProvider::ALL {
            let name = serde_json::to_value(provider).expect("a name");
            assert_eq!(name, provider.label());
            let read: PlacesProvider = serde_json::from_value(name).expect("read back");
            assert_eq!(read, provider);
        }
        for &mode in journal::Mode::ALL {
            let name = serde_json::to_value(mode).expect("a name");
            assert_eq!(name, mode.label());
            let read: journal::Mode = serde_json::from_value(name).expect("read back");
            assert_eq!(read, mode);
        }
    }

    #[test]
    fn a_link_listed_on_one_side_is_a_link_both_ways() {
        let settings = load(
            "[servers.a]\nname = \"A\"\nport = 1\nneighbours = [\"B\"]\n\
             [servers.b]\nname = \"B\"\nport = 2\n\
             [servers.c]\nname = \"C\"\nport = 3\nneighbours = [\"B\"]\n",
        )
        .expect("valid settings");
        let names = |name: &str| -> Vec<String> {
            let server = settings.server(name).expect("listed");
            settings
                .neighbours_of(server)
                .iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names("A"), ["B"]);
        assert_eq!(names("B"), ["A", "C"]);
        assert_eq!(names("C"), ["B"]);
        let b = settings.server("B").expect("listed");
        assert_eq!((b.admin_port(), b.peer_port()), (1002, 2002));
    }

    #[test]
    fn a_server_is_found_by_the_name_of_its_machine() {
        let settings = load(
            "[servers.riley]\nname = \"Riley\"\nport = 1\nhost = \"herd-0.herd.ns.svc.cluster.local\"\n\
             [servers.jaquez]\nname = \"Jaquez\"\nport = 2\nhost = \"herd-1.herd\"\n\
             [servers.juzang]\nname = \"Juzang\"\nport = 3\nhost = \"herd-10\"\n\
             [servers.a]\nname = \"A\"\nport = 4\n[servers.b]\nname = \"B\"\nport = 5\n",
        )
        .expect("valid settings");
        let on = |host: &str| {
            settings
                .server_on_host(host)
                .map(|s| s.name.clone())
                .map_err(|e| e.to_string())
        };
        assert_eq!(on("herd-0"), Ok("Riley".into()));
        assert_eq!(on("HERD-0"), Ok("Riley".into()));
        assert_eq!(on("herd-0.herd"), Ok("Riley".into()));
        assert_eq!(on("herd-0.herd.ns.svc.cluster.local."), Ok("Riley".into()));
        assert_eq!(on("herd-1"), Ok("Jaquez".into()));
        assert_eq!(on("herd-10"), Ok("Juzang".into()));
        // A prefix that is not a whole label names nothing.
        let error = on("herd").unwrap_err();
        assert!(error.contains("no server's host is \"herd\""), "{error}");
        assert!(on("herd-0.her").is_err());
        assert!(on("").is_err());
        // Two servers on one host (the loopback default): name one instead.
        let error = on("127.0.0.1").unwrap_err();
        assert!(
            error.contains("2 servers have the host") && error.contains("A, B"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_path_is_none_and_is_written_back_empty() {
        let loaded = load(&format!(
            "[herd]\nlog_dir = \"\"\ndata_dir = \"data\"\n[admin]\ntoken_file = \"\"\n{ONE}"
        ))
        .expect("valid settings");
        assert_eq!(loaded.herd.log_dir, None);
        assert_eq!(loaded.herd.data_dir, Some(PathBuf::from("data")));
        assert_eq!(loaded.herd.secret_file, None);
        assert_eq!(loaded.admin.token_file, None);
        assert_eq!(loaded.places.geonames_file, None);
        let written = serde_json::to_value(&loaded.herd).expect("JSON");
        assert_eq!(written["log_dir"], "");
        assert_eq!(written["data_dir"], "data");
    }

    #[test]
    fn addresses_are_typed_and_a_bad_one_is_refused_naming_the_key() {
        let settings = load(
            "[admin]\ntoken = \"0123456789abcdef\"\n\
             allowed_hosts = \"Herd.Example.com, [::] [::1],0.0.0.0\"\n\
             [herd]\ninsecure_peers = true\n\
             [servers.a]\nname = \"A\"\nport = 1\nhost = \"alpha\"\nlisten = \"[::]\"\n\
             admin_listen = \"0.0.0.0\"\nneighbours = [\"B\"]\n\
             [servers.a.links]\nB = \"127.0.0.1:40001\"\n\
             [servers.b]\nname = \"B\"\nport = 2\nhost = \"beta\"\n",
        )
        .expect("valid settings");
        let a = settings.plan("A").expect("a plan");
        assert_eq!(a.client_addr, "[::]:1".parse().expect("an address"));
        assert_eq!(a.peer_addr, "[::]:2001".parse().expect("an address"));
        assert_eq!(a.admin_addr, "0.0.0.0:1001".parse().expect("an address"));
        assert_eq!(a.neighbours[0].address.to_string(), "127.0.0.1:40001");
        assert_eq!(a.admin.names, ["alpha", "herd.example.com", "::1"]);
        let b = settings.plan("B").expect("a plan");
        assert_eq!(b.neighbours[0].address.to_string(), "alpha:2001");
        assert_eq!(b.client_addr, "127.0.0.1:2".parse().expect("an address"));
        // A wildcard admin listener is reached at the server's host.
        let server = |name| settings.server(name).expect("listed").admin_endpoint();
        assert_eq!(server("A").to_string(), "alpha:1001");
        assert_eq!(server("B").to_string(), "127.0.0.1:1002");

        let error = error_of(&format!("{ONE}listen = \"every address\"\n"));
        assert!(
            error.contains("servers.riley.listen") && error.contains("\"every address\""),
            "{error}"
        );
        let error = error_of(&format!(
            "{ONE}[servers.riley.links]\nJaquez = \"jaquez\"\n"
        ));
        assert!(
            error.contains("servers.riley.links") && error.contains("not host:port"),
            "{error}"
        );
    }

    #[test]
    fn a_zero_limit_is_refused_with_its_name() {
        assert!(load(ONE).is_ok());
        for key in [
            "max_line_bytes",
            "max_connections",
            "max_peer_handshakes",
            "max_handshakes_per_source",
        ] {
            let text = format!("[limits]\n{key} = 0\n{ONE}");
            let error = load(&text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                error.contains(&format!("limits.{key} is 0")),
                "{key}: {error:?}"
            );
        }
    }
}
