//! `herd`: runs one server of the herd (`herd NAME`) or all of them in one
//! process (`herd`), as Settings.toml describes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herd::settings::{optional_path, ServerPlan, Settings};
use herd::{logging, server};
use log::{error, info};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Every update allocates its record and frees the one it replaces, on one
/// thread per server: mimalloc's thread-local free lists cost less per pair
/// than the system allocator's (BENCHMARKS.md, "Four loads against Redis,
/// second pass").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A herd of location servers: IAMAT / WHATSAT over TCP, flooded between peers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The server to run (its name in the settings); all of them if omitted.
    name: Option<String>,
    /// Run the server whose `host` is this machine name, or a name under it
    /// (`herd-0` runs the server at `herd-0.herd...`): for orchestrators that
    /// name each machine, e.g. a Kubernetes StatefulSet's pod name.
    #[arg(long, env = "HERD_HOST_NAME", conflicts_with = "name")]
    host_name: Option<String>,
    /// The settings file.
    #[arg(long, short, default_value = "Settings.toml", env = "HERD_CONFIG")]
    config: PathBuf,
    /// Folder of the log files (overrides herd.log_dir; "" for none).
    #[arg(long)]
    log_dir: Option<String>,
    /// Folder of the databases (overrides herd.data_dir; "" for none).
    #[arg(long)]
    data_dir: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load(&cli.config) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("herd: {}: {e}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = cli.log_dir {
        settings.herd.log_dir = optional_path::from_text(dir);
    }
    if let Some(dir) = cli.data_dir {
        settings.herd.data_dir = optional_path::from_text(dir);
    }
    let names = match (&cli.name, &cli.host_name) {
        (Some(name), _) => vec![name.clone()],
        (None, Some(host)) => match settings.server_on_host(host) {
            Ok(server) => vec![server.name.clone()],
            Err(e) => {
                eprintln!("herd: --host-name {host}: {e}");
                return ExitCode::from(2);
            }
        },
        (None, None) => settings.server_names(),
    };
    let plans: Result<Vec<ServerPlan>, _> = names.iter().map(|n| settings.plan(n)).collect();
    let plans = match plans {
        Ok(plans) => plans,
        Err(e) => {
            eprintln!("herd: {e}");
            return ExitCode::from(2);
        }
    };
    // The whole herd, for the admin page of every server (`/herd`).
    herd::admin::set_herd(herd::admin::members(&settings));
    let server_names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    logging::init(
        settings.herd.log_dir.as_deref(),
        &server_names,
        &settings.herd.file_log_level,
        settings.herd.log_format,
    );
    logging::log_panics(server_names);
    let code = run(plans);
    log::logger().flush();
    code
}

/// Why the servers stopped other than by a signal, with its context.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the servers until SIGTERM or SIGINT. Each server of an all-in-one
/// run gets an arbiter (thread) of its own; a single server runs on the
/// system arbiter.
fn run(plans: Vec<ServerPlan>) -> ExitCode {
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        // Signal handlers first: a SIGTERM that arrives while the servers are
        // still starting (their ports may already accept) must still stop
        // them cleanly, not by the default action of the signal.
        let signals = Signals::install();
        let mut started = Vec::new();
        if plans.len() == 1 {
            let plan = plans.into_iter().next().ok_or("no server")?;
            started.push(server::start(plan).await?);
        } else {
            for plan in plans {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let arbiter = actix_rt::Arbiter::new();
                arbiter.spawn(async move {
                    let _ = tx.send(server::start(plan).await);
                });
                let server = rx.await.map_err(|_| "server thread died")??;
                info!(target: "herd", "{}: started in its own thread", server.name);
                // Kept until shutdown: dropping it flushes the server's journal.
                started.push(server);
            }
        }
        signals.recv().await;
        // From here on /healthz answers 503, so load balancers drain us.
        herd::admin::begin_shutdown();
        info!(target: "herd", "shutting down");
        drop(started);
        Ok::<(), BoxError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(target: "herd", "{e}");
            eprintln!("herd: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals(Option<(Signal, Signal)>);

impl Signals {
    fn install() -> Self {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            // Without handlers the default action (exit) still applies.
            _ => Signals(None),
        }
    }

    /// Resolves on the first SIGTERM or SIGINT.
    async fn recv(self) {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
