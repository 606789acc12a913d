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

use crate::settings::{Host, ServerSection, Settings, SettingsError, ADMIN_PORT_OFFSET};

/// What a subcommand reports instead of its answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{}: {source}", path.display())]
    Settings {
        path: PathBuf,
        source: SettingsError,
    },
    #[error(
        "no admin token: {source} (a server makes it at its first start; \
         or give --admin-token)"
    )]
    NoToken { source: SettingsError },
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
/// the settings file (its client port): on this machine when the server
/// listens on a wildcard address (a container's health check), else at its
/// `host`.
pub fn resolve_server(server: &str, config: &Path) -> Result<String, CtlError> {
    let Some(found) = server_settings(server, config)? else {
        return Ok(server.to_string());
    };
    let host = if found.listen.is_wildcard() {
        &Host::LOOPBACK
    } else {
        &found.host
    };
    Ok(host.at(found.port).to_string())
}

/// Where `herdctl` finds a server when not told: the first server of the
/// default herd (SPEC §1), on this machine, at its client port.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// See [`DEFAULT_HOST`].
pub const DEFAULT_PORT: u16 = 12665;

/// The client address of the default server: [`DEFAULT_HOST`]:[`DEFAULT_PORT`].
pub fn default_server() -> String {
    format!("{DEFAULT_HOST}:{DEFAULT_PORT}")
}

/// The settings file `config` when it exists (it may be absent where
/// herdctl runs: then the defaults hold).
fn settings_if_any(config: &Path) -> Result<Option<Settings>, CtlError> {
    if config.exists() {
        load_settings(config).map(Some)
    } else {
        Ok(None)
    }
}

/// The admin address for `server` (a name, or an admin `host:port`); with
/// no server, the first server of the settings (by client port), or, with
/// no settings file, the default server's admin port: [`DEFAULT_PORT`]
/// plus [`ADMIN_PORT_OFFSET`].
pub fn admin_address(server: Option<&str>, config: &Path) -> Result<String, CtlError> {
    if let Some(server) = server {
        return http::resolve_admin(server, config);
    }
    if let Some(first) = settings_if_any(config)?.and_then(|s| s.server_names().first().cloned()) {
        return http::resolve_admin(&first, config);
    }
    Ok(format!(
        "{DEFAULT_HOST}:{}",
        DEFAULT_PORT.saturating_add(ADMIN_PORT_OFFSET)
    ))
}

/// The admin token: the one given (`--admin-token` or `HERD_ADMIN_TOKEN`),
/// else the one the servers made, found where they keep it: the settings'
/// `admin.token` or `admin.token_file`, by default `~/.herd.admin-token`
/// ([`crate::settings::AdminSection::token_path`], one rule for both). The file is read,
/// never created here.
pub fn admin_token(given: Option<String>, config: &Path) -> Result<String, CtlError> {
    if let Some(token) = given.filter(|t| !t.trim().is_empty()) {
        return Ok(token.trim().to_string());
    }
    let admin = settings_if_any(config)?
        .map(|s| s.admin)
        .unwrap_or_default();
    admin
        .existing_token()
        .map_err(|source| CtlError::NoToken { source })
}

/// The live page of the admin listener at `address`, with `token` in its
/// fragment, where the page reads it (src/admin/page.html) and the browser
/// keeps it (a fragment is never sent).
pub fn page_url(address: &str, token: &str) -> String {
    format!("http://{address}/#token={token}")
}

/// Default deadline for one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_no_server_and_no_settings_the_default_herds_first_admin_port_is_asked() {
        let missing = Path::new("/nonexistent/Settings.toml");
        assert_eq!(
            admin_address(None, missing).expect("an address"),
            "127.0.0.1:13665"
        );
        assert_eq!(
            admin_address(Some("10.0.0.5:9000"), missing).expect("as given"),
            "10.0.0.5:9000"
        );
        assert_eq!(default_server(), "127.0.0.1:12665");
    }

    #[test]
    fn the_page_carries_the_token_in_its_fragment() {
        assert_eq!(
            page_url("127.0.0.1:13665", "abc"),
            "http://127.0.0.1:13665/#token=abc"
        );
    }
}
