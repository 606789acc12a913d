//! `herdctl` subcommands, one file each. Each takes its parsed arguments
//! and returns a [`CtlError`] for the command line, never panics.

pub mod bench;
pub mod client;
pub mod dump;
pub mod http;
pub mod ping;
pub mod status;
pub mod trace;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::settings::{ServerSection, Settings, SettingsError};

/// What a subcommand reports instead of its answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{}: {source}", path.display())]
    Settings {
        path: PathBuf,
        source: SettingsError,
    },
    #[error("no server named {server} in {}", path.display())]
    UnknownServer { server: String, path: PathBuf },
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error(transparent)]
    Ping(#[from] ping::PingError),
    #[error(transparent)]
    Bench(#[from] bench::BenchError),
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot send to {address}: {source}")]
    Send {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot half-close: {0}")]
    HalfClose(std::io::Error),
    #[error("no complete answer from {address}: {source}")]
    Read {
        address: String,
        source: std::io::Error,
    },
    /// Setting up a socket, or writing to standard output.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write the dump: {0}")]
    WriteDump(std::io::Error),
    #[error("{address}/herd is not the herd's JSON: {source}")]
    NotHerd {
        address: String,
        source: serde_json::Error,
    },
}

/// The settings file `config`, naming it in the error.
fn load_settings(config: &Path) -> Result<Settings, CtlError> {
    Settings::load(config).map_err(|source| CtlError::Settings {
        path: config.to_owned(),
        source,
    })
}

/// The settings of `server` when it is a name (looked up in the settings
/// file), or `None` when it is already a `host:port` address.
pub fn server_settings(server: &str, config: &Path) -> Result<Option<ServerSection>, CtlError> {
    if server.contains(':') {
        return Ok(None);
    }
    let settings = load_settings(config)?;
    settings
        .server(server)
        .cloned()
        .map(Some)
        .ok_or_else(|| CtlError::UnknownServer {
            server: server.to_owned(),
            path: config.to_owned(),
        })
}

/// Where a subcommand talks to: `host:port`, or a server name looked up in
/// the settings file (its client port).
pub fn resolve_server(server: &str, config: &Path) -> Result<String, CtlError> {
    let Some(found) = server_settings(server, config)? else {
        return Ok(server.to_string());
    };
    let host = if found.listen == "0.0.0.0" {
        "127.0.0.1"
    } else {
        found.host.as_str()
    };
    Ok(format!("{host}:{}", found.port))
}

/// The admin token for `server`: the one given (`--admin-token` or
/// `HERD_ADMIN_TOKEN`), else, when `server` is a name from the settings,
/// the settings' own (`admin.token`, `admin.token_file`), else none.
pub fn admin_token(
    given: Option<String>,
    server: &str,
    config: &Path,
) -> Result<Option<String>, CtlError> {
    if let Some(token) = given.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(token.trim().to_string()));
    }
    if server.contains(':') {
        return Ok(None);
    }
    load_settings(config)?
        .admin_token()
        .map_err(|source| CtlError::Settings {
            path: config.to_owned(),
            source,
        })
}

/// Default deadline for one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
