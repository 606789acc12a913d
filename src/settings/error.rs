//! [`SettingsError`]: what can go wrong reading the settings and making a
//! server's plan of them, one variant per mistake, each message naming the
//! setting at fault. `herd` exits with status 2 on any of them.

use std::path::PathBuf;

use super::keys::UnknownKey;
use super::MIN_SECRET_LEN;
use crate::cookie::CookieError;

/// What can go wrong reading the settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file cannot be read, or a value is not of its setting's type (a
    /// choice, an address: the message names the key).
    #[error("cannot read settings: {0}")]
    Config(#[from] config::ConfigError),
    /// A key of the file or a `HERD_<SECTION>__<KEY>` names no setting.
    #[error(transparent)]
    UnknownKey(#[from] UnknownKey),
    #[error("no servers in the settings")]
    NoServers,
    #[error("server name {0:?} is not 1-64 letters, digits, '-', '_' or '.'")]
    BadServerName(String),
    #[error("server name {0} is used twice")]
    DuplicateServer(String),
    #[error("{server} lists unknown neighbour {neighbour}")]
    UnknownNeighbour { server: String, neighbour: String },
    #[error("{0} lists itself as a neighbour")]
    SelfNeighbour(String),
    /// A limit that would let nothing in.
    #[error("limits.{key} is 0: nothing could get in")]
    ZeroLimit { key: &'static str },
    /// `herd NAME` names no server.
    #[error("no server named {name} in the settings (known: {})", .known.join(", "))]
    UnknownServer { name: String, known: Vec<String> },
    /// `herd --host-name` matches no server's `host`.
    #[error("no server's host is {host:?} or a name under it (hosts: {})", .hosts.join(", "))]
    NoServerOnHost { host: String, hosts: Vec<String> },
    /// `herd --host-name` matches more than one server's `host`.
    #[error("{} servers have the host {host:?} ({}): name one", .servers.len(), .servers.join(", "))]
    ManyServersOnHost { host: String, servers: Vec<String> },
    /// A listen address that names no address of this machine.
    #[error("{key} = {value:?} cannot be resolved: {source}")]
    BadAddress {
        key: String,
        value: String,
        source: std::io::Error,
    },
    /// The herd secret's or the admin token's file, or the home folder
    /// that holds it by default.
    #[error(transparent)]
    Secret(#[from] CookieError),
    #[error(
        "the herd secret in {from} is {len} bytes: a secret needs at least \
         {MIN_SECRET_LEN} (e.g. 32 random bytes as hex: openssl rand -hex 32)"
    )]
    ShortSecret { from: String, len: usize },
    #[error("the admin token must be printable ASCII without spaces")]
    TokenNotPrintable,
    #[error("the admin token is shorter than {MIN_SECRET_LEN} characters")]
    ShortToken,
    #[error("places provider {provider} needs a Google API key in GOOGLE_PLACES_API_KEY")]
    NoGoogleKey { provider: &'static str },
    #[error("places.{key}: {why}")]
    BadBaseUrl { key: &'static str, why: String },
    #[error("places.geonames_file {}: {source}", .path.display())]
    GeoNamesUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("places.geonames_file {} is not a file", .path.display())]
    GeoNamesNotAFile { path: PathBuf },
}
