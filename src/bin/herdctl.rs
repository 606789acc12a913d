//! `herdctl`: the herd's companion client. Sends IAMAT, WHATSAT or raw
//! lines to a server and prints what comes back. Subcommands live in
//! `src/ctl/`, one file each.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herd::ctl::{self, client};

#[derive(Debug, Parser)]
#[command(version, about = "Client of the herd: IAMAT, WHATSAT, raw lines")]
struct Cli {
    /// Server to talk to: `host:port` or a server name from the settings
    /// [default: 127.0.0.1:12665; for `dump`, `status` and `page`, the
    /// first server's admin port].
    #[arg(long, short, global = true)]
    server: Option<String>,
    /// Settings file used to look server names up.
    #[arg(
        long,
        short,
        global = true,
        default_value = "Settings.toml",
        env = "HERD_CONFIG"
    )]
    config: PathBuf,
    /// The admin token, for `dump`, `status` and `page` (default: the one
    /// the servers made: admin.token_file, or ~/.herd.admin-token).
    #[arg(long, global = true, env = "HERD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report a client's position: IAMAT <client> <location> <time>.
    Iamat {
        client: String,
        /// ISO 6709, e.g. +34.068930-118.445127.
        #[arg(allow_hyphen_values = true)]
        location: String,
        /// POSIX seconds with up to 9 fraction digits (default: now).
        time: Option<String>,
    },
    /// Ask what lies near a client: WHATSAT <client> <radius-km> <bound>.
    Whatsat {
        client: String,
        radius_km: String,
        bound: String,
    },
    /// Send raw lines (arguments, or standard input when none) and print
    /// whatever comes back.
    Send { lines: Vec<String> },
    /// Closed-loop load against --server, or spread over --spread (IAMAT,
    /// WHATSAT, or Redis GEOADD).
    Bench {
        #[command(flatten)]
        load: ctl::bench::LoadArgs,
    },
    /// Flood latency: IAMAT at --server, then WHATSAT at --to until it knows.
    Probe {
        /// The far server: `host:port` or a name from the settings.
        #[arg(long)]
        to: String,
        #[arg(long, default_value_t = 1000)]
        samples: u64,
        #[arg(long)]
        json: bool,
    },
    /// Check that the server answers (for health checks): exit 0 if it
    /// does within the deadline, 1 if not. Sends nothing that is stored.
    Ping {
        /// Deadline for connecting and answering, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Print every record the server holds, as AT lines, sorted (its admin
    /// `/records`). `--server` is a name or the admin `host:port`.
    Dump,
    /// Print the herd at a glance: servers, links and their state, record
    /// counts (from the admin `/herd` and `/status`). `--server` is a name
    /// or the admin `host:port` of any server of the herd.
    Status,
    /// Print the address of the live page, with the admin token in its
    /// fragment (`#token=...`, which the browser never sends). `--server`
    /// is a name or the admin `host:port`.
    Page,
    /// Print the path the client's current record took through the herd:
    /// which server took it from whom, and each hop's delay (every
    /// server's admin `/trace`). `--server` is a name or the admin
    /// `host:port` of any server of the herd.
    Trace { client: String },
}

/// Whatever a subcommand reports, with its context: printed as it is.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herdctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the subcommand `cli` names against its server.
fn run(cli: Cli) -> Result<(), BoxError> {
    let admin = || -> Result<(String, String), BoxError> {
        let address = ctl::admin_address(cli.server.as_deref(), &cli.config)?;
        Ok((
            address,
            ctl::admin_token(cli.admin_token.clone(), &cli.config)?,
        ))
    };
    let server = cli.server.clone().unwrap_or_else(ctl::default_server);
    let address = || -> Result<String, BoxError> { Ok(ctl::resolve_server(&server, &cli.config)?) };
    match cli.command {
        Command::Iamat {
            client,
            location,
            time,
        } => {
            let time = time.unwrap_or_else(client::now_text);
            let line = format!("IAMAT {client} {location} {time}");
            client::print_exchange(&address()?, &[line.into_bytes()])?;
        }
        Command::Whatsat {
            client,
            radius_km,
            bound,
        } => {
            let line = format!("WHATSAT {client} {radius_km} {bound}");
            client::print_exchange(&address()?, &[line.into_bytes()])?;
        }
        Command::Bench { load } => {
            let json = load.json;
            let addresses = if load.spread.is_empty() {
                vec![address()?]
            } else {
                let mut addresses = Vec::with_capacity(load.spread.len());
                for name in &load.spread {
                    addresses.push(ctl::resolve_server(name, &cli.config)?);
                }
                addresses
            };
            let report = ctl::bench::run_load(&addresses, load)?;
            println!("{}", report.render(json));
        }
        Command::Probe { to, samples, json } => {
            let to = ctl::resolve_server(&to, &cli.config)?;
            println!(
                "{}",
                ctl::bench::run_flood_probe(&address()?, &to, samples, json)?
            );
        }
        Command::Send { lines } => client::print_exchange(&address()?, &lines_to_send(lines)?)?,
        Command::Ping { timeout_ms } => {
            let address = address()?;
            let took = ctl::ping::ping(&address, std::time::Duration::from_millis(timeout_ms))?;
            println!("ok {address} {}us", took.as_micros());
        }
        Command::Dump => {
            let (address, token) = admin()?;
            ctl::dump::run(&address, &token)?;
        }
        Command::Status => {
            let (address, token) = admin()?;
            ctl::status::run(&address, &token)?;
        }
        Command::Page => {
            let (address, token) = admin()?;
            println!("{}", ctl::page_url(&address, &token));
        }
        Command::Trace { client } => {
            let (address, token) = admin()?;
            ctl::trace::run(&address, &token, &client)?;
        }
    }
    Ok(())
}

/// The lines `send` was given, or if none, every line of standard input.
fn lines_to_send(lines: Vec<String>) -> Result<Vec<Vec<u8>>, BoxError> {
    if lines.is_empty() {
        Ok(std::io::stdin()
            .lock()
            .split(b'\n')
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read standard input: {e}"))?)
    } else {
        Ok(lines.into_iter().map(String::into_bytes).collect())
    }
}
