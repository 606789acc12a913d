//! `herdctl bench`: closed-loop load against a herd server (or, for the
//! side-by-side anchor, a Redis server answering GEOADD), and a probe of
//! flood latency across the herd.
//!
//! Closed loop: each of N connections keeps `pipeline` requests in flight
//! (one by default), sends the next only when an answer came back, and
//! records each request's latency in an HDR histogram. All connections run
//! on one thread (a single-threaded tokio runtime), so the load tool takes
//! the same one core whatever it drives: herd and Redis are measured alike.
//! Errors (a `?` answer, a Redis error, a closed connection) are counted and
//! reported, never hidden.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What the load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// `IAMAT bench-<conn>-<n> <location> <now>`: a new client name each time
    /// (cycling over `--clients` names per connection).
    Iamat,
    /// `WHATSAT bench-<conn>-<n> 10 5` for clients reported beforehand.
    Whatsat,
    /// Redis `GEOADD herd <lon> <lat> bench-<conn>-<n>` (the anchor).
    RedisGeoadd,
}

/// Parameters of one load run.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    #[arg(long, value_enum, default_value = "iamat")]
    pub workload: Workload,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Requests written at once per connection: the next batch is written
    /// when the last one has been answered in full.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Spread the connections over these servers (`host:port` or names from
    /// the settings, comma-separated), connection i to server i mod n,
    /// instead of sending them all to --server.
    #[arg(long, value_delimiter = ',')]
    pub spread: Vec<String>,
    /// Length of the measured run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Distinct client names per connection (names cycle after that).
    #[arg(long, default_value_t = 1_000_000)]
    pub clients: u64,
    /// Send exactly this many requests in all (split over the connections)
    /// instead of running for `--seconds`.
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Offer at most this many requests a second in all, spread evenly over
    /// the connections (0: each sends its next request as soon as the last
    /// is answered). For latency under a given load.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct LoadReport {
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl LoadReport {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Text or JSON, latencies in microseconds.
    pub fn render(&self, json: bool) -> String {
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1000.0;
        if json {
            serde_json::json!({
                "ops": self.ops,
                "errors": self.errors,
                "seconds": self.elapsed.as_secs_f64(),
                "ops_per_sec": self.ops_per_sec(),
                "p50_us": q(0.50), "p90_us": q(0.90), "p99_us": q(0.99),
                "p999_us": q(0.999), "max_us": self.latency.max() as f64 / 1000.0,
            })
            .to_string()
        } else {
            format!(
                "{:.0} ops/s ({} ops, {} errors, {:.1} s)  latency us: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
                self.ops_per_sec(), self.ops, self.errors, self.elapsed.as_secs_f64(),
                q(0.50), q(0.90), q(0.99), q(0.999), self.latency.max() as f64 / 1000.0
            )
        }
    }
}

/// Why a load run or a flood probe stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("connections, pipeline and seconds must be above zero")]
    NothingToRun,
    #[error("rate must be a number of requests a second, 0 for no limit")]
    Rate,
    #[error("cannot start the {what} runtime: {source}")]
    Runtime {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("send failed: {0}")]
    SendFailed(std::io::Error),
    #[error("read failed: {0}")]
    ReadFailed(std::io::Error),
    /// Preparing a run or probing: what the socket said.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{client} never reached {to}")]
    NeverReached { client: String, to: String },
}

fn histogram() -> Result<Histogram<u64>, BenchError> {
    // Nanoseconds from 1 ns to 60 s, three significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000_000, 3)?)
}

/// Connects to `address`, naming it in the error.
async fn connect(address: &str) -> Result<TcpStream, BenchError> {
    TcpStream::connect(address)
        .await
        .map_err(|source| BenchError::Connect {
            address: address.to_owned(),
            source,
        })
}

fn now_text() -> String {
    super::client::now_text()
}

/// Request `n` of `workload` for connection `conn`, whose `clients` names
/// cycle. Each time a name comes round again its position has moved (by
/// 10^-5 degrees, more than Redis's geohash resolution): a GEOADD that
/// changed nothing would not be replicated, where every IAMAT with a new
/// time is an update.
fn request(workload: Workload, conn: usize, n: u64, clients: u64) -> Vec<u8> {
    let (name, round) = (n % clients.max(1), n / clients.max(1));
    // Spread the clients over a few degrees around Los Angeles.
    let lat = 34.0 + (name % 1000) as f64 / 1000.0 + (round % 97) as f64 * 1e-5;
    let lon = -118.0 - (conn % 100) as f64 / 100.0;
    match workload {
        Workload::Iamat => {
            format!(
                "IAMAT bench-{conn}-{name} +{lat:.6}{lon:.6} {}\n",
                now_text()
            )
        }
        Workload::Whatsat => format!("WHATSAT bench-{conn}-{name} 10 5\n"),
        Workload::RedisGeoadd => {
            let member = format!("bench-{conn}-{name}");
            let (lon, lat) = (format!("{lon:.6}"), format!("{lat:.6}"));
            let mut resp = String::from("*5\r\n$6\r\nGEOADD\r\n$4\r\nherd\r\n");
            for arg in [&lon, &lat, &member] {
                resp.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            resp
        }
    }
    .into_bytes()
}

/// Reads one answer; `Ok(false)` when it is an error answer.
async fn read_answer(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    workload: Workload,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    if reader.read_until(b'\n', line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    match workload {
        Workload::Iamat => Ok(line.starts_with(b"AT ")),
        Workload::RedisGeoadd => Ok(line.starts_with(b":")),
        Workload::Whatsat => {
            if !line.starts_with(b"AT ") {
                return Ok(false);
            }
            // The JSON follows, ended by an empty line.
            loop {
                line.clear();
                if reader.read_until(b'\n', line).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                if line == b"\n" {
                    return Ok(true);
                }
            }
        }
    }
}

/// What the connections of one run count together (they share one thread,
/// so one histogram serves them all: 10,000 connections do not need 10,000
/// histograms).
struct Tally {
    ops: Cell<u64>,
    errors: Cell<u64>,
    latency: RefCell<Histogram<u64>>,
}

/// Opens `count` connections one after the other (all at once would
/// overflow the server's accept queue and measure retries), connection i to
/// `addresses[i % n]`.
async fn connect_all(addresses: &[String], count: usize) -> Result<Vec<TcpStream>, BenchError> {
    let mut streams = Vec::with_capacity(count);
    for address in addresses.iter().cycle().take(count) {
        let stream = connect(address).await?;
        let _ = stream.set_nodelay(true);
        streams.push(stream);
    }
    Ok(streams)
}

/// With --count, connection `conn`'s share of it; otherwise none (it runs
/// until the deadline).
fn quota(args: &LoadArgs, conn: usize) -> Option<u64> {
    (args.count > 0).then(|| {
        let share = args.count / args.connections as u64;
        share + u64::from((conn as u64) < args.count % args.connections as u64)
    })
}

/// With --rate, one connection's share of it, as an even pace.
fn pace(args: &LoadArgs) -> Option<tokio::time::Interval> {
    (args.rate > 0.0).then(|| {
        let every = Duration::from_secs_f64(args.connections as f64 / args.rate);
        let mut pace = tokio::time::interval(every);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pace
    })
}

/// One connection's closed loop until `deadline`.
async fn connection_loop(
    stream: TcpStream,
    args: LoadArgs,
    conn: usize,
    deadline: Instant,
    tally: Rc<Tally>,
) -> Result<(), BenchError> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut ops = 0u64;
    let mut n = 0u64;
    let mut line = Vec::with_capacity(4096);
    let mut sent = std::collections::VecDeque::with_capacity(args.pipeline);
    let mut batch = Vec::with_capacity(256 * args.pipeline);
    let quota = quota(&args, conn);
    let more = |n: u64| match quota {
        Some(quota) => n < quota,
        None => Instant::now() < deadline,
    };
    let mut pace = pace(&args);
    while more(ops) {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        // Fill the window: `pipeline` requests in one write at the start,
        // then again each time the whole window has been answered (as
        // redis-benchmark -P does), so a pipelined run hands the server
        // batches of `pipeline` requests, not one request per answer.
        if sent.is_empty() {
            batch.clear();
            while sent.len() < args.pipeline && quota.is_none_or(|q| n < q) {
                batch.extend_from_slice(&request(args.workload, conn, n, args.clients));
                sent.push_back(Instant::now());
                n += 1;
            }
            write
                .write_all(&batch)
                .await
                .map_err(BenchError::SendFailed)?;
        }
        let ok = read_answer(&mut reader, args.workload, &mut line)
            .await
            .map_err(BenchError::ReadFailed)?;
        let started = sent.pop_front().unwrap_or_else(Instant::now);
        let _ = tally
            .latency
            .borrow_mut()
            .record(started.elapsed().as_nanos().max(1) as u64);
        ops += 1;
        tally.ops.set(tally.ops.get() + 1);
        if !ok {
            tally.errors.set(tally.errors.get() + 1);
        }
    }
    // Drain what is still in flight so the server is not left mid-answer.
    while sent.pop_front().is_some() {
        let _ = read_answer(&mut reader, args.workload, &mut line).await;
    }
    Ok(())
}

/// Reports one IAMAT per client a WHATSAT run will ask about.
async fn prepare_whatsat(address: &str, args: &LoadArgs) -> Result<(), BenchError> {
    for conn in 0..args.connections {
        let stream = connect(address).await?;
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        for n in 0..args.clients.min(100) {
            write
                .write_all(&request(Workload::Iamat, conn, n, args.clients))
                .await?;
            read_answer(&mut reader, Workload::Iamat, &mut line).await?;
        }
    }
    Ok(())
}

/// Runs every connection's loop on this thread until all have finished.
async fn run_connections(
    streams: Vec<TcpStream>,
    args: &LoadArgs,
    deadline: Instant,
    tally: &Rc<Tally>,
) -> Result<(), BenchError> {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let tasks: Vec<_> = streams
                .into_iter()
                .enumerate()
                .map(|(conn, stream)| {
                    let run = connection_loop(stream, args.clone(), conn, deadline, tally.clone());
                    tokio::task::spawn_local(run)
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            Ok(())
        })
        .await
}

/// Runs a closed-loop load against `addresses`, the connections spread over
/// them in turn.
pub fn run_load(addresses: &[String], mut args: LoadArgs) -> Result<LoadReport, BenchError> {
    if args.connections == 0 || args.pipeline == 0 || args.seconds <= 0.0 || addresses.is_empty() {
        return Err(BenchError::NothingToRun);
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err(BenchError::Rate);
    }
    if args.workload == Workload::Whatsat {
        args.clients = args.clients.min(100);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Runtime {
            what: "load",
            source,
        })?;
    runtime.block_on(async move {
        if args.workload == Workload::Whatsat {
            for address in addresses {
                prepare_whatsat(address, &args).await?;
            }
        }
        // The clock starts once every connection is open: opening 10,000
        // takes seconds that are not the server's answering time.
        let streams = connect_all(addresses, args.connections).await?;
        let tally = Rc::new(Tally {
            ops: Cell::new(0),
            errors: Cell::new(0),
            latency: RefCell::new(histogram()?),
        });
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(args.seconds);
        run_connections(streams, &args, deadline, &tally).await?;
        let elapsed = started.elapsed();
        let report = LoadReport {
            ops: tally.ops.get(),
            errors: tally.errors.get(),
            elapsed,
            latency: tally.latency.borrow().clone(),
        };
        Ok(report)
    })
}

/// Flood latency: IAMAT at `from`, then WHATSAT at `to` until it answers
/// with that record; the time from `from`'s answer to `to`'s answer.
pub fn run_flood_probe(
    from: &str,
    to: &str,
    samples: u64,
    json: bool,
) -> Result<String, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Runtime {
            what: "probe",
            source,
        })?;
    runtime.block_on(async move {
        let mut from_conn = ProbeConnection::open(from).await?;
        let mut to_conn = ProbeConnection::open(to).await?;
        let mut hist = histogram()?;
        let tag = std::process::id();
        let mut polls = 0u64;
        for n in 0..samples {
            let client = format!("probe-{tag}-{n}");
            let line = format!("IAMAT {client} +34.068930-118.445127 {}\n", now_text());
            from_conn.ask(&line, Workload::Iamat).await?;
            let answered = Instant::now();
            polls += poll_until_known(&mut to_conn, &client, to, answered).await?;
            let _ = hist.record(answered.elapsed().as_nanos().max(1) as u64);
        }
        Ok(probe_report(&hist, from, to, samples, polls, json))
    })
}

/// One connection of the flood probe, with its line buffer.
struct ProbeConnection {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
    line: Vec<u8>,
}

impl ProbeConnection {
    async fn open(address: &str) -> Result<ProbeConnection, BenchError> {
        let stream = connect(address).await?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Ok(ProbeConnection {
            read: BufReader::new(read),
            write,
            line: Vec::new(),
        })
    }

    /// Sends `line` and reads its answer; true if it was a success.
    async fn ask(&mut self, line: &str, workload: Workload) -> Result<bool, BenchError> {
        self.write.write_all(line.as_bytes()).await?;
        Ok(read_answer(&mut self.read, workload, &mut self.line).await?)
    }
}

/// Asks `to` about `client` until it knows it (at most 5 s after
/// `answered`); returns how many WHATSATs that took.
async fn poll_until_known(
    to: &mut ProbeConnection,
    client: &str,
    name: &str,
    answered: Instant,
) -> Result<u64, BenchError> {
    let deadline = answered + Duration::from_secs(5);
    let mut polls = 0;
    loop {
        polls += 1;
        let line = format!("WHATSAT {client} 1 1\n");
        if to.ask(&line, Workload::Whatsat).await? {
            return Ok(polls);
        }
        if Instant::now() > deadline {
            return Err(BenchError::NeverReached {
                client: client.to_owned(),
                to: name.to_owned(),
            });
        }
    }
}

/// The probe's latencies as one line of text, or one JSON object.
fn probe_report(
    hist: &Histogram<u64>,
    from: &str,
    to: &str,
    samples: u64,
    polls: u64,
    json: bool,
) -> String {
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    if json {
        serde_json::json!({"samples": samples, "polls": polls, "p50_us": q(0.5),
            "p90_us": q(0.9), "p99_us": q(0.99), "max_us": hist.max() as f64 / 1000.0})
        .to_string()
    } else {
        format!(
            "flood {from} -> {to}: {samples} samples ({polls} polls)  latency us: p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
            q(0.5), q(0.9), q(0.99), hist.max() as f64 / 1000.0
        )
    }
}
