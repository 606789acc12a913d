//! `herdctl` subcommands, one file each. Each takes its parsed arguments
//! and returns an error message for the command line, never panics.

pub mod bench;
pub mod client;
pub mod dump;
pub mod http;
pub mod ping;
pub mod status;

use std::time::Duration;

use crate::settings::{ServerSection, Settings};

/// The settings of `server` when it is a name (looked up in the settings
/// file), or `None` when it is already a `host:port` address.
pub fn server_settings(
    server: &str,
    config: &std::path::Path,
) -> Result<Option<ServerSection>, String> {
    if server.contains(':') {
        return Ok(None);
    }
    let settings = Settings::load(config).map_err(|e| format!("{}: {e}", config.display()))?;
    settings
        .server(server)
        .cloned()
        .map(Some)
        .ok_or_else(|| format!("no server named {server} in {}", config.display()))
}

/// Where a subcommand talks to: `host:port`, or a server name looked up in
/// the settings file (its client port).
pub fn resolve_server(server: &str, config: &std::path::Path) -> Result<String, String> {
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
    config: &std::path::Path,
) -> Result<Option<String>, String> {
    if let Some(token) = given.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(token.trim().to_string()));
    }
    if server.contains(':') {
        return Ok(None);
    }
    let settings = Settings::load(config).map_err(|e| format!("{}: {e}", config.display()))?;
    settings
        .admin_token()
        .map_err(|e| format!("{}: {e}", config.display()))
}

/// Default deadline for one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
