//! Test harness: herds on loopback, each with a settings file of its own in
//! a temporary folder. A server runs either as a real `herd` process, on
//! ports chosen free for the test ([`Herd::start`]), or inside the test
//! process on listeners bound to `127.0.0.1:0`, as mini-redis's
//! `start_server` does ([`Herd::start_in_process`]): the kernel picks the
//! ports, so nothing can clash, and nothing is spawned.
//!
//! A test needs a process for what only a process has: an exit code, a
//! signal, a restart, stderr, a log file, its memory, a journal left on
//! disk by a killed server. Everything a client can see of one server runs
//! in process.
//!
//! One way each: [`Herd::one`] builds a one-server herd, [`Herd::log`] and
//! [`Herd::wait_for_log`] read a log, [`Herd::metric`] reads a metric.
//!
//! Nothing here sleeps to synchronise: `wait_until` polls a condition (a
//! port accepting, an answer appearing) with a deadline and fails loudly
//! when the deadline passes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The default herd of SPEC §1: names and links.
pub const DEFAULT_HERD: &[(&str, &[&str])] = &[
    ("Riley", &["Jaquez", "Juzang"]),
    ("Jaquez", &["Riley", "Bernard"]),
    ("Juzang", &["Riley", "Campbell", "Bernard"]),
    ("Campbell", &["Juzang", "Bernard"]),
    ("Bernard", &["Jaquez", "Juzang", "Campbell"]),
];

/// Polls `condition` every few milliseconds until it holds or `timeout`
/// passes; panics with `what` on timeout.
pub fn wait_until(timeout: Duration, what: &str, condition: impl FnMut() -> bool) {
    wait_until_every(Duration::from_millis(10), timeout, what, condition);
}

/// [`wait_until`], polling every `interval` (for conditions that are costly
/// to check, such as a `docker` command).
pub fn wait_until_every(
    interval: Duration,
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(interval);
    }
}

/// A port that was free a moment ago, below the kernel's ephemeral range
/// (32768 and up on Linux) and never handed out twice in this test process.
/// The kernel never picks such a port as the source port of an outgoing
/// connection, so a server that is killed finds its ports free again when it
/// restarts, however many loopback connections come and go meanwhile.
pub fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
}

/// A listener on a free port, for a test's own proxy. A port found free can
/// be taken by another process before it is bound (another test binary's
/// leftovers, the Docker engine's published ports): then the next is tried.
pub fn listen_on_free_port() -> (u16, TcpListener) {
    std::iter::repeat_with(free_port)
        .take(100)
        .find_map(|port| Some((port, TcpListener::bind(("127.0.0.1", port)).ok()?)))
        .expect("a free port to listen on")
}

/// Ports of one server.
#[derive(Debug, Clone)]
pub struct ServerPorts {
    pub name: String,
    pub client: u16,
    pub peer: u16,
    pub admin: u16,
    pub neighbours: Vec<String>,
}

/// A herd under test.
pub struct Herd {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub servers: Vec<ServerPorts>,
    env: Vec<(String, String)>,
    children: BTreeMap<String, Child>,
    all_in_one: Option<Child>,
    in_process: BTreeMap<String, InProcess>,
}

/// Builds a herd's settings file.
pub struct HerdBuilder {
    topology: Vec<(String, Vec<String>)>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl HerdBuilder {
    /// Adds raw TOML lines to a section, e.g. `.setting("limits", "idle_timeout_ms = 500")`.
    pub fn setting(mut self, section: &str, line: &str) -> Self {
        self.extra.push(format!("[{section}]\n{line}\n"));
        self
    }

    /// Adds several lines to one section.
    pub fn settings(self, section: &str, lines: &[&str]) -> Self {
        lines
            .iter()
            .fold(self, |builder, line| builder.setting(section, line))
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Writes the settings; starts nothing yet.
    pub fn build(self) -> Herd {
        let dir = tempfile::tempdir().expect("temporary folder");
        let servers: Vec<ServerPorts> = self
            .topology
            .iter()
            .map(|(name, neighbours)| ServerPorts {
                name: name.clone(),
                client: free_port(),
                peer: free_port(),
                admin: free_port(),
                neighbours: neighbours.clone(),
            })
            .collect();
        let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
        sections.entry("herd".into()).or_default().push(format!(
            "log_dir = {:?}",
            dir.path().join("logs").display().to_string()
        ));
        sections
            .entry("limits".into())
            .or_default()
            .push("backoff_max_ms = 500".into());
        for extra in &self.extra {
            let (header, line) = extra.split_once('\n').expect("section and line");
            let section = header.trim_matches(|c| c == '[' || c == ']').to_string();
            sections
                .entry(section)
                .or_default()
                .push(line.trim().to_string());
        }
        let mut toml = String::new();
        for (section, lines) in &sections {
            toml.push_str(&format!("[{section}]\n"));
            let mut seen = BTreeMap::new();
            for line in lines {
                let key = line.split('=').next().unwrap_or("").trim().to_string();
                seen.insert(key, line.clone()); // later settings win
            }
            for line in seen.values() {
                toml.push_str(line);
                toml.push('\n');
            }
            toml.push('\n');
        }
        for s in &servers {
            toml.push_str(&format!(
                "[servers.{}]\nname = {:?}\nport = {}\npeer_port = {}\nadmin_port = {}\nneighbours = {:?}\n\n",
                s.name.to_lowercase(),
                s.name,
                s.client,
                s.peer,
                s.admin,
                s.neighbours
            ));
        }
        let config = dir.path().join("Settings.toml");
        std::fs::write(&config, toml).expect("write settings");
        Herd {
            dir,
            config,
            servers,
            env: self.env,
            children: BTreeMap::new(),
            all_in_one: None,
            in_process: BTreeMap::new(),
        }
    }

    /// Builds the herd and starts its only server as a process.
    pub fn start_one(self) -> Herd {
        let mut herd = self.build();
        let name = herd.only_server();
        herd.start(&name);
        herd
    }

    /// Builds the herd and starts its only server inside the test process
    /// ([`Herd::start_in_process`]).
    pub fn start_in_process(self) -> Herd {
        let mut herd = self.build();
        let name = herd.only_server();
        herd.start_in_process(&name);
        herd
    }
}

impl Herd {
    /// The default five-server herd on fresh ports.
    pub fn five() -> HerdBuilder {
        Herd::with_topology(DEFAULT_HERD)
    }

    /// A herd of one server, `name`, without neighbours.
    pub fn one(name: &str) -> HerdBuilder {
        Herd::with_topology(&[(name, &[])])
    }

    pub fn with_topology(topology: &[(&str, &[&str])]) -> HerdBuilder {
        HerdBuilder {
            topology: topology
                .iter()
                .map(|(n, ns)| (n.to_string(), ns.iter().map(|s| s.to_string()).collect()))
                .collect(),
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts the servers started from now on with the settings at `path`
    /// (a changed copy of [`Herd::config`]: a rolling change of settings).
    pub fn set_config(&mut self, path: PathBuf) {
        self.config = path;
    }

    /// Sets an environment variable for the servers started from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    pub fn ports(&self, name: &str) -> &ServerPorts {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name} in this herd"))
    }

    pub fn names(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.name.clone()).collect()
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{name}.log"))
    }

    /// `name`'s log file as it is now, bytes as written (empty before it exists).
    pub fn log_bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.log_path(name)).unwrap_or_default()
    }

    /// `name`'s log file as it is now, as text.
    pub fn log(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.log_bytes(name)).into_owned()
    }

    /// Waits until `name`'s log file contains every one of `needles`.
    pub fn wait_for_log(&self, name: &str, needles: &[&str]) {
        wait_until(
            Duration::from_secs(30),
            &format!("{name}'s log to show {needles:?}"),
            || {
                let log = self.log(name);
                needles.iter().all(|needle| log.contains(needle))
            },
        );
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herd"));
        cmd.arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env(
                "RUST_LOG",
                std::env::var("HERD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("HERD_SECRET")
            .env_remove("HERD_SECRET_EXTRA")
            .env_remove("HERD_ADMIN_TOKEN")
            .env_remove("GOOGLE_PLACES_API_KEY")
            // Zero configuration, as on a user's machine: the herd's own
            // folder stands in for the user's home, so each test herd makes
            // (and shares among its servers) a cookie of its own.
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `herd NAME` and waits until it accepts clients.
    pub fn start(&mut self, name: &str) {
        let child = self
            .command()
            .arg(name)
            .spawn()
            .expect("spawn the herd binary");
        self.children.insert(name.to_string(), child);
        self.wait_accepting(name);
    }

    /// Runs `herd NAME` with `env` besides the herd's until it exits, as it
    /// must at once (a start refused): its output. Panics if it is still
    /// running after 10 s (it started instead).
    pub fn run_to_exit(&self, name: &str, env: &[(&str, &str)]) -> std::process::Output {
        let mut child = self
            .command()
            .arg(name)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the herd binary");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().expect("wait for herd").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} started (or hung) instead of refusing to start with {env:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().expect("herd's output")
    }

    /// Starts every server as its own process.
    pub fn start_each(&mut self) {
        for name in self.names() {
            self.start(&name);
        }
    }

    /// The name of a one-server herd's server.
    fn only_server(&self) -> String {
        match self.names().as_slice() {
            [name] => name.clone(),
            names => panic!("a herd of one server expected, not {names:?}"),
        }
    }

    /// Starts `name` inside the test process, as the `herd` binary would
    /// with these settings, but on listeners bound to `127.0.0.1:0`; its
    /// [`ServerPorts`] become the ports the kernel chose. Its neighbours
    /// dial the ports in the settings file, so only the test reaches it.
    /// It has no log file (the logger is the process's), and it stops when
    /// the herd is dropped. Settings come from the file alone: the
    /// builder's environment is for processes.
    pub fn start_in_process(&mut self, name: &str) {
        assert!(
            self.env.is_empty(),
            "an in-process server reads no environment of its own: use `setting`"
        );
        let mut settings = herd::settings::Settings::load(&self.config).expect("the settings");
        // What a process finds through its working folder and home, the
        // herd's folder (see `command`).
        let dir = self.dir.path();
        let in_dir = |path: &mut Option<PathBuf>, default: &str| {
            let chosen = path.take().unwrap_or_else(|| PathBuf::from(default));
            *path = Some(dir.join(chosen));
        };
        in_dir(&mut settings.herd.secret_file, ".herd.cookie");
        in_dir(&mut settings.admin.token_file, ".herd.admin-token");
        if settings.herd.data_dir.is_some() {
            in_dir(&mut settings.herd.data_dir, "");
        }
        let server = settings
            .servers
            .values_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name} in this herd"));
        (server.port, server.peer_port, server.admin_port) = (0, Some(0), Some(0));
        let plan = settings.plan(name).expect("a plan for the server");
        let (server, bound) = InProcess::start(plan);
        let ports = self
            .servers
            .iter_mut()
            .find(|s| s.name == name)
            .expect("a server of this herd");
        (ports.client, ports.peer, ports.admin) = bound;
        self.in_process.insert(name.to_string(), server);
    }

    /// Starts all servers in one `herd` process.
    pub fn start_all_in_one(&mut self) {
        let child = self.command().spawn().expect("spawn the herd binary");
        self.all_in_one = Some(child);
        for name in self.names() {
            self.wait_accepting(&name);
        }
    }

    /// Waits until `name` accepts on its client and its peer port (bound
    /// one after the other: a test that goes straight to the peer port
    /// must not find it still unbound).
    pub fn wait_accepting(&self, name: &str) {
        let ports = self.ports(name);
        let up = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
        wait_until(
            Duration::from_secs(10),
            &format!("{name} to accept clients and peers"),
            || up(ports.client) && up(ports.peer),
        );
    }

    /// Waits until every link of the herd is up (SPEC §8's "while all
    /// links are up").
    pub fn wait_links_up(&self) {
        for name in self.names() {
            for neighbour in &self.ports(&name).neighbours {
                let labels = format!(",neighbour=\"{neighbour}\"");
                wait_until(Duration::from_secs(20), "every link up", || {
                    self.metric(&name, "herd_link_up", &labels) == Some(1.0)
                });
            }
        }
    }

    /// Starts `herd NAME` again (after a kill) and waits until its client,
    /// peer and admin ports all accept. Unlike `start`, it tries again when
    /// the process exits at once: while a server is down, the kernel may
    /// hand one of its ports (all in the ephemeral range) to some outgoing
    /// loopback connection as its source port for a moment, and the bind
    /// then fails.
    pub fn restart(&mut self, name: &str) {
        let ports = self.ports(name).clone();
        let up = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
        for _ in 0..20 {
            let mut child = self
                .command()
                .arg(name)
                .spawn()
                .expect("spawn the herd binary");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break; // exited: a port was taken; try again
                }
                if up(ports.client) && up(ports.peer) && up(ports.admin) {
                    self.children.insert(name.to_string(), child);
                    return;
                }
                assert!(Instant::now() < deadline, "{name} did not come up");
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{name} could not be restarted");
    }

    /// SIGKILLs one server's process.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.children.remove(name) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs one server and returns its exit status.
    pub fn terminate(&mut self, name: &str) -> std::process::ExitStatus {
        let mut child = self.children.remove(name).expect("server is running");
        signal(&child, "TERM");
        child.wait().expect("wait for the server")
    }

    /// `None` while `name` runs; once it has exited, its exit code (`None`
    /// inside when a signal ended it).
    pub fn exit_code(&mut self, name: &str) -> Option<Option<i32>> {
        let child = self.children.get_mut(name)?;
        child.try_wait().ok().flatten().map(|status| status.code())
    }

    /// The process id of `name`, started as a process of its own.
    pub fn pid(&self, name: &str) -> u32 {
        self.children
            .get(name)
            .unwrap_or_else(|| panic!("{name} runs as a process of its own"))
            .id()
    }

    pub fn is_running(&mut self, name: &str) -> bool {
        self.children
            .get_mut(name)
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn client(&self, name: &str) -> Client {
        Client::connect(self.ports(name).client)
    }

    /// Sends one line on a fresh connection, returns the first answer line.
    pub fn ask(&self, name: &str, line: &str) -> String {
        let mut client = self.client(name);
        client.send(line);
        client.read_line()
    }

    /// WHATSAT's AT line at `name`, or `None` while `name` does not know the client.
    pub fn whatsat_at_line(&self, name: &str, client_name: &str) -> Option<String> {
        let mut client = Client::try_connect(self.ports(name).client)?;
        client.send(&format!("WHATSAT {client_name} 1 1"));
        let first = client.read_line();
        if first.starts_with("? ") {
            return None;
        }
        client.read_until_blank();
        Some(first)
    }

    /// Waits until `name` answers WHATSAT for `client_name` with `expected`.
    pub fn wait_for_at_line(&self, name: &str, client_name: &str, expected: &str) {
        wait_until(
            Duration::from_secs(15),
            &format!("{name} to hold {expected}"),
            || self.whatsat_at_line(name, client_name).as_deref() == Some(expected),
        );
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        for child in self.children.values_mut().chain(self.all_in_one.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Before the folder goes.
        self.in_process.clear();
    }
}

/// A server running on an actix system of its own, on a thread of the test
/// process; stopped and joined when dropped.
struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// Starts `plan` and waits until its listeners are bound (connections
    /// are accepted from then on); returns it with its client, peer and
    /// admin ports.
    fn start(plan: herd::settings::ServerPlan) -> (InProcess, (u16, u16, u16)) {
        let name = plan.name.clone();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("in-process {name}"))
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    match herd::server::start(plan).await {
                        Ok(server) => {
                            let ports = (
                                server.client_addr.port(),
                                server.peer_addr.port(),
                                server.admin_addr.port(),
                            );
                            let _ = bound_tx.send(Ok(ports));
                            let _ = stopped.await;
                            drop(server); // commits its journal, if any
                        }
                        Err(e) => {
                            let _ = bound_tx.send(Err(e.to_string()));
                        }
                    }
                });
            })
            .expect("a thread for the server");
        let server = InProcess {
            stop: Some(stop),
            thread: Some(thread),
        };
        match bound_rx.recv() {
            Ok(Ok(ports)) => (server, ports),
            Ok(Err(e)) => panic!("{name} did not start: {e}"),
            Err(_) => panic!("{name}'s thread ended before its listeners were bound"),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends a signal to a child by `kill -<sig>`.
/// A `VmRSS`/`VmHWM` style field of /proc/<pid>/status, in KiB.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} failed");
}

/// A client connection with line helpers.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port).unwrap_or_else(|| panic!("connect to port {port}"))
    }

    pub fn try_connect(port: u16) -> Option<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .ok()?;
        let writer = stream.try_clone().ok()?;
        Some(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to server");
    }

    /// Writes without asserting success (the server may already have closed).
    pub fn writer_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    pub fn half_close(&mut self) {
        self.writer.shutdown(Shutdown::Write).expect("half-close");
    }

    /// One line without its newline; panics on EOF or timeout.
    pub fn read_line(&mut self) -> String {
        let line = self.read_raw_line();
        assert!(
            !line.is_empty(),
            "connection closed while a line was expected"
        );
        String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned()
    }

    /// How long reads wait before they give up.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .expect("set the read timeout");
    }

    /// One line without its newline, or `None` when none came within the
    /// read timeout (or the server closed).
    pub fn try_read_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(n) if n > 0 => Some(
                String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned(),
            ),
            _ => None,
        }
    }

    /// One line with its newline as bytes; empty at EOF.
    pub fn read_raw_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        self.reader
            .read_until(b'\n', &mut line)
            .expect("read from server");
        line
    }

    /// Reads lines up to and including the empty line ending a WHATSAT answer.
    pub fn read_until_blank(&mut self) -> String {
        let mut text = String::new();
        loop {
            let line = self.read_line();
            if line.is_empty() {
                return text;
            }
            text.push_str(&line);
            text.push('\n');
        }
    }

    /// Everything until the server closes.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        rest
    }
}

/// An IAMAT line for `client` at a fixed place and the given time.
/// A finished command's standard output, once it is known to have
/// succeeded (its standard error is shown otherwise).
pub fn stdout_of(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn iamat(client: &str, time: &str) -> String {
    format!("IAMAT {client} +34.068930-118.445127 {time}")
}

/// The folder holding the settings, for tests that need more files there.
pub fn dir_of(herd: &Herd) -> &Path {
    herd.dir.path()
}

/// A client connection read byte for byte, for tests of what the server
/// does with bad input and at its limits: lines come back as bytes (with or
/// without their newline), and end-of-file or a reset is `None` instead of
/// a panic, because closing is often the behaviour under test.
pub struct RawClient {
    pub stream: TcpStream,
    buffered: Vec<u8>,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        RawClient {
            stream,
            buffered: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next line with its `\n`; `None` at EOF or reset.
    pub fn raw_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buffered.iter().position(|&b| b == b'\n') {
                return Some(self.buffered.drain(..=end).collect());
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read from server: {e}"),
            }
        }
    }

    /// The next line without its newline; `None` at EOF or reset.
    pub fn line(&mut self) -> Option<Vec<u8>> {
        self.raw_line().map(|mut line| {
            line.pop();
            line
        })
    }

    pub fn text_line(&mut self) -> Option<String> {
        self.line()
            .map(|line| String::from_utf8_lossy(&line).into_owned())
    }

    /// Everything until the server closes (or resets).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buffered);
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return rest,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return rest,
                Err(e) => panic!("server did not close: {e}"),
            }
        }
    }

    /// Reads a whole WHATSAT answer (up to its empty line); returns its AT line.
    pub fn whatsat_answer(&mut self) -> Vec<u8> {
        let first = self.raw_line().expect("an AT line");
        while self.raw_line().expect("places JSON") != b"\n" {}
        first
    }
}

impl Herd {
    /// The admin token the servers made on their first start, in their
    /// home (the herd's folder; SPEC §6), if they made one (they do unless
    /// given a token).
    pub fn admin_token(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join(".herd.admin-token"))
            .ok()
            .map(|t| t.trim().to_string())
    }

    /// `POST path` (no body) at `server`'s admin listener with the herd's
    /// token: the test hooks (`admin.test_hooks`).
    pub fn admin_post(
        &self,
        server: &str,
        path: &str,
    ) -> Result<herd::ctl::http::Response, herd::ctl::http::HttpError> {
        let admin = format!("127.0.0.1:{}", self.ports(server).admin);
        let bearer = self.admin_token().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Length", "0")];
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer));
        }
        herd::ctl::http::request(&admin, "POST", path, &headers)
    }

    /// `GET path` at `server`'s admin listener with the herd's token.
    pub fn admin_get(
        &self,
        server: &str,
        path: &str,
    ) -> Result<herd::ctl::http::Response, herd::ctl::http::HttpError> {
        let admin = format!("127.0.0.1:{}", self.ports(server).admin);
        herd::ctl::http::get_with_token(&admin, path, self.admin_token().as_deref())
    }
}

impl Herd {
    /// The sample `metric{server="<server>"<labels>}` of `server`'s
    /// `/metrics` (open without the token: it holds no client's data),
    /// where `labels` is the exact label text after the server's (empty
    /// for a sample labelled by server alone, else e.g.
    /// `,neighbour="Jaquez"`); `None` when absent or unreadable.
    pub fn metric(&self, server: &str, metric: &str, labels: &str) -> Option<f64> {
        let admin = format!("127.0.0.1:{}", self.ports(server).admin);
        let answer = herd::ctl::http::get(&admin, "/metrics").ok()?;
        metric_sample(&answer.text(), metric, labels)
    }
}

/// [`Herd::metric`] summed over the herd's servers (absent: 0).
pub fn herd_sum(herd: &Herd, metric: &str, labels: &str) -> f64 {
    let names = herd.names();
    let samples = names.iter().map(|n| herd.metric(n, metric, labels));
    samples.map(|s| s.unwrap_or(0.0)).sum()
}

/// The value of the sample `name{server="...",labels}` in a Prometheus
/// text, where `labels` is the exact label text after `server="..."`
/// (empty for a sample labelled by server alone): for a text the test
/// fetched itself; [`Herd::metric`] reads a server's.
pub fn metric_sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?.strip_prefix("{server=\"")?;
        let (_, after) = rest.split_once('"')?;
        (after == format!("{labels}}}")).then(|| value.parse().ok())?
    })
}
