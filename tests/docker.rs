//! The herd in containers, on the real Docker engine (issue: `docker compose
//! up`): the image built without any registry (docker/build-local.sh), the
//! root docker-compose.yml brought up under a project name of its own with
//! its client ports on free loopback ports, then a client at one container
//! and another at a second, a stopped container routed around and caught
//! up, a container cut off the network and healed, and `down -v` leaving
//! nothing behind. The same compose file (with docker/swarm.yml) is then
//! deployed as a stack on a single-node Swarm made for the test, over an
//! overlay network, and the swarm is left afterwards.
//!
//! These tests need a Docker engine and docker-compose. Without them they
//! fail, saying so, unless HERD_SKIP_DOCKER_TESTS=1 asks to skip them.
//! Everything they create carries a name unique to the run and is removed
//! by a guard, even when an assertion fails.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The servers of the default herd, their compose services and links.
const SERVERS: &[(&str, &str)] = &[
    ("Riley", "riley"),
    ("Jaquez", "jaquez"),
    ("Juzang", "juzang"),
    ("Campbell", "campbell"),
    ("Bernard", "bernard"),
];

/// One engine, two cores: the docker tests run one at a time.
static ENGINE: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A name no other run uses: lower-case letters and digits.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}{}x{nanos}", std::process::id())
}

/// Polls every 100 ms: each check runs `docker` or opens a connection.
fn wait_until(timeout: Duration, what: &str, condition: impl FnMut() -> bool) {
    common::wait_until_every(Duration::from_millis(100), timeout, what, condition);
}

/// Runs a command, returns its output; `check` panics on failure.
fn run(cmd: &mut Command, check: bool) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if check && !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args), true)
}

/// Whether the engine and docker-compose are here; panics loudly when not,
/// unless HERD_SKIP_DOCKER_TESTS=1.
fn engine_or_skip() -> bool {
    let engine = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let compose = Command::new("docker-compose").arg("version").output();
    let missing = match (&engine, &compose) {
        (Ok(e), Ok(c)) if e.status.success() && c.status.success() => return true,
        (Ok(e), _) if e.status.success() => "docker-compose is not installed",
        _ => "no Docker engine answers",
    };
    let message = format!(
        "\n*** DOCKER TESTS CANNOT RUN: {missing}. ***\n\
         *** They test docker-compose.yml and the image; set HERD_SKIP_DOCKER_TESTS=1 to skip them. ***\n"
    );
    if std::env::var("HERD_SKIP_DOCKER_TESTS").as_deref() == Ok("1") {
        eprintln!("{message}*** SKIPPED (HERD_SKIP_DOCKER_TESTS=1) ***");
        false
    } else {
        panic!("{message}");
    }
}

/// The image built from this tree without a registry; removed on drop.
struct Image {
    tag: String,
}

impl Image {
    fn build() -> Image {
        let tag = format!("herd-test:{}", unique("t"));
        let started = Instant::now();
        let mut cmd = Command::new(root().join("docker/build-local.sh"));
        cmd.arg(&tag);
        // What `cargo test` sets for this test is not the environment the
        // release build was made in (some build scripts watch
        // CARGO_MANIFEST_DIR): without it, cargo finds the build .ci/run
        // made up to date instead of rebuilding it.
        for (key, _) in std::env::vars() {
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_EXE_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_PRIMARY_PACKAGE",
                    "OUT_DIR",
                ]
                .contains(&key.as_str())
            {
                cmd.env_remove(key);
            }
        }
        let out = run(&mut cmd, true);
        eprintln!("{} in {:?}", stdout(&out), started.elapsed());
        Image { tag }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["rmi", "-f", &self.tag]), false);
    }
}

/// A line exchange with a server on the host's loopback: sends `line`,
/// half-closes, returns all that comes back, or `None` when nothing can.
fn exchange(port: u16, line: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(format!("{line}\n").as_bytes()).ok()?;
    stream.shutdown(Shutdown::Write).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

fn iamat(client: &str, time: &str) -> String {
    format!("IAMAT {client} +34.068930-118.445127 {time}")
}

/// The AT line a WHATSAT answer starts with, when the server knows `client`.
fn at_line_of(answer: &str) -> Option<String> {
    let first = answer.lines().next()?;
    first.starts_with("AT ").then(|| first.to_string())
}

/// A compose project of the root docker-compose.yml, torn down on drop.
struct Compose {
    tool: Vec<String>,
    project: String,
    dir: tempfile::TempDir,
    ports: Vec<(String, u16)>,
}

impl Compose {
    fn new(tool: &[&str], image: &Image) -> Compose {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let ports: Vec<(String, u16)> = SERVERS
            .iter()
            .map(|(_, service)| (service.to_string(), common::free_port()))
            .collect();
        // No secret and no env file for the containers: as on a fresh
        // clone, the herd makes its own secret on the shared volume. Only
        // the image and free host ports are set, for this test's isolation.
        let mut vars = format!(
            "HERD_IMAGE={}\nHERD_PUBLISH_ADDR=127.0.0.1\nHERD_PLACES__PROVIDER=offline\n",
            image.tag,
        );
        for (service, port) in &ports {
            vars.push_str(&format!("HERD_{}_PORT={port}\n", service.to_uppercase()));
        }
        std::fs::write(dir.path().join("compose.env"), vars).expect("write compose.env");
        Compose {
            tool: tool.iter().map(|s| s.to_string()).collect(),
            project: unique("herdtest"),
            dir,
            ports,
        }
    }

    /// The compose command, isolated from the caller's HERD_*/COMPOSE_*
    /// environment and from a developer's .env.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.tool[0]);
        cmd.args(&self.tool[1..])
            .arg("--env-file")
            .arg(self.dir.path().join("compose.env"))
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(root().join("docker-compose.yml"));
        for (key, _) in std::env::vars() {
            if key.starts_with("HERD_")
                || key.starts_with("COMPOSE_")
                || key == "GOOGLE_PLACES_API_KEY"
            {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run(self.command().args(args), true)
    }

    fn port(&self, service: &str) -> u16 {
        self.ports
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no service {service}"))
    }

    fn container(&self, service: &str) -> String {
        let id = stdout(&self.run(&["ps", "-q", service]));
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn network(&self) -> String {
        format!("{}_herd", self.project)
    }

    fn health(&self, service: &str) -> String {
        let id = self.container(service);
        stdout(&docker(&[
            "inspect",
            "--format",
            "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
            &id,
        ]))
    }

    /// WHATSAT's AT line for `client` at `service` through its published port.
    fn at_line(&self, service: &str, client: &str) -> Option<String> {
        at_line_of(&exchange(
            self.port(service),
            &format!("WHATSAT {client} 1 1"),
        )?)
    }

    fn wait_for(&self, service: &str, client: &str, expected: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("{service} to hold {expected}"),
            || self.at_line(service, client).as_deref() == Some(expected),
        );
    }

    /// herdctl inside the container: reaches its server on the container's
    /// own loopback, even while the container is cut off every network.
    fn herdctl(&self, service: &str, args: &[&str]) -> String {
        let name = SERVERS
            .iter()
            .find(|(_, s)| *s == service)
            .map(|(n, _)| *n)
            .unwrap_or(service);
        let id = self.container(service);
        let mut all = vec!["exec", id.as_str(), "/herdctl", "--server", name];
        all.extend_from_slice(args);
        stdout(&docker(&all))
    }

    /// What the engine still holds of this project: containers, networks, volumes.
    fn leftovers(&self) -> String {
        let label = format!("label=com.docker.compose.project={}", self.project);
        ["ps -a", "network ls", "volume ls"]
            .iter()
            .map(|what| {
                let mut args: Vec<&str> = what.split(' ').collect();
                args.extend(["-q", "--filter", &label]);
                stdout(&docker(&args))
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn down(&self) -> Output {
        run(
            self.command()
                .args(["down", "-v", "--remove-orphans", "--timeout", "5"]),
            false,
        )
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let out = self.down();
        if !out.status.success() {
            eprintln!(
                "compose down of {} failed: {}",
                self.project,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The whole life of a compose herd, with `tool` (docker-compose or docker compose).
fn compose_lifecycle(tool: &[&str], image: &Image) {
    let herd = Compose::new(tool, image);
    let started = Instant::now();
    herd.run(&["up", "-d", "--no-build"]);
    for (_, service) in SERVERS {
        wait_until(
            Duration::from_secs(60),
            &format!("{service} to be healthy"),
            || herd.health(service) == "healthy",
        );
    }
    eprintln!(
        "{}: five healthy containers in {:?}",
        tool.join(" "),
        started.elapsed()
    );

    // Only the client port is published, on loopback.
    let published = stdout(&docker(&["port", &herd.container("juzang")]));
    assert_eq!(
        published,
        format!("12667/tcp -> 127.0.0.1:{}", herd.port("juzang")),
        "juzang publishes only its client port"
    );

    // The links authenticate with the secret the herd made itself: no
    // server runs without one (that would be logged at its start).
    for (_, service) in SERVERS {
        let logs = run(
            Command::new("docker").args(["logs", &herd.container(service)]),
            true,
        );
        let logs = format!("{}{}", stdout(&logs), String::from_utf8_lossy(&logs.stderr));
        assert!(
            !logs.contains("INSECURE"),
            "{service} runs without a secret: {logs}"
        );
    }

    // The admin listeners bind beyond loopback in their containers, so they
    // need the token the herd made on the shared volume: herdctl inside a
    // container finds it through the settings.
    let status = herd.herdctl("riley", &["status"]);
    assert!(status.contains("Jaquez"), "{status}");

    // IAMAT at one container, WHATSAT at another.
    let answer = exchange(
        herd.port("riley"),
        &iamat("kiwi.test", "1621464827.959498503"),
    )
    .expect("Riley answers");
    let at = answer.lines().next().unwrap_or_default().to_string();
    assert!(
        at.starts_with("AT Riley ")
            && at.ends_with(" kiwi.test +34.068930-118.445127 1621464827.959498503"),
        "{answer:?}"
    );
    herd.wait_for("bernard", "kiwi.test", &at);
    let whatsat =
        exchange(herd.port("bernard"), "WHATSAT kiwi.test 10 3").expect("Bernard answers");
    assert!(whatsat.starts_with(&format!("{at}\n{{")), "{whatsat:?}");
    assert!(
        whatsat.contains("\"status\": \"OK\"") && whatsat.ends_with("}\n\n"),
        "{whatsat:?}"
    );

    // Stop Juzang: Riley -> Jaquez -> Bernard -> Campbell still carries floods.
    herd.run(&["stop", "--timeout", "5", "juzang"]);
    assert!(exchange(herd.port("juzang"), "WHATSAT kiwi.test 1 1").is_none_or(|a| a.is_empty()));
    let answer = exchange(herd.port("riley"), &iamat("while.down", "1700000000.5")).expect("Riley");
    let down_at = answer.lines().next().unwrap_or_default().to_string();
    assert!(down_at.starts_with("AT Riley "), "{answer:?}");
    herd.wait_for("campbell", "while.down", &down_at);

    // Start it again: the catch-up sync brings what it missed.
    herd.run(&["start", "juzang"]);
    herd.wait_for("juzang", "while.down", &down_at);
    herd.wait_for("juzang", "kiwi.test", &at);

    // Cut Bernard off the herd's network, then heal it.
    let bernard = herd.container("bernard");
    docker(&["network", "disconnect", &herd.network(), &bernard]);
    let answer =
        exchange(herd.port("campbell"), &iamat("cut.off", "1700000001")).expect("Campbell");
    let cut_at = answer.lines().next().unwrap_or_default().to_string();
    assert!(cut_at.starts_with("AT Campbell "), "{answer:?}");
    let inside = herd.herdctl("bernard", &["iamat", "inside.cut", "+10-10", "1700000002"]);
    let inside_at = inside.lines().next().unwrap_or_default().to_string();
    assert!(inside_at.starts_with("AT Bernard "), "{inside:?}");
    for service in ["juzang", "riley", "jaquez"] {
        herd.wait_for(service, "cut.off", &cut_at);
    }
    let unknown = herd.herdctl("bernard", &["whatsat", "cut.off", "1", "1"]);
    assert_eq!(unknown, "? WHATSAT cut.off 1 1", "Bernard is cut off");
    assert_eq!(
        herd.at_line("campbell", "inside.cut"),
        None,
        "Campbell cannot hear Bernard"
    );

    docker(&[
        "network",
        "connect",
        "--alias",
        "bernard",
        &herd.network(),
        &bernard,
    ]);
    herd.wait_for("campbell", "inside.cut", &inside_at);
    herd.wait_for("bernard", "cut.off", &cut_at);
    for (_, service) in SERVERS {
        herd.wait_for(service, "inside.cut", &inside_at);
    }

    // Down leaves nothing behind.
    let out = herd.down();
    assert!(
        out.status.success(),
        "down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        herd.leftovers(),
        "",
        "containers, networks or volumes left behind"
    );
    eprintln!("{}: lifecycle in {:?}", tool.join(" "), started.elapsed());
}

#[test]
fn compose_herd_lifecycle() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !engine_or_skip() {
        return;
    }
    let image = Image::build();
    compose_lifecycle(&["docker-compose"], &image);
    let v2 = Command::new("docker").args(["compose", "version"]).output();
    if v2.is_ok_and(|o| o.status.success()) {
        compose_lifecycle(&["docker", "compose"], &image);
    } else {
        eprintln!(
            "docker compose (v2) is not installed here: tested with docker-compose 1.29 only"
        );
    }
}

/// A single-node Swarm made for the test: left, with what it made, on drop.
struct Swarm {
    stack: String,
    made_gwbridge: bool,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = run(
            Command::new("docker").args(["stack", "rm", &self.stack]),
            false,
        );
        let label = format!("label=com.docker.stack.namespace={}", self.stack);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let left = run(
                Command::new("docker").args(["ps", "-aq", "--filter", &label]),
                false,
            );
            if stdout(&left).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = run(
            Command::new("docker").args(["swarm", "leave", "--force"]),
            false,
        );
        let volumes = run(
            Command::new("docker").args(["volume", "ls", "-q", "--filter", &label]),
            false,
        );
        for volume in stdout(&volumes).lines().filter(|v| !v.is_empty()) {
            let _ = run(
                Command::new("docker").args(["volume", "rm", "-f", volume]),
                false,
            );
        }
        if self.made_gwbridge {
            let _ = run(
                Command::new("docker").args(["network", "rm", "docker_gwbridge"]),
                false,
            );
        }
    }
}

fn swarm_state() -> String {
    stdout(&docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]))
}

#[test]
fn swarm_stack_deploy() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !engine_or_skip() {
        return;
    }
    if swarm_state() != "inactive" {
        eprintln!(
            "\n*** SWARM TEST NOT RUN: this engine is already part of a swarm ({}); \
             the test only uses a swarm it makes itself. ***\n",
            swarm_state()
        );
        return;
    }
    let image = Image::build();
    let started = Instant::now();
    let made_gwbridge = !run(
        Command::new("docker").args(["network", "inspect", "docker_gwbridge"]),
        false,
    )
    .status
    .success();
    let swarm = Swarm {
        stack: unique("herdstack"),
        made_gwbridge,
    };
    docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    let mut labels = vec!["node", "update"];
    let label_args: Vec<String> = SERVERS
        .iter()
        .map(|(_, service)| format!("herd.{service}=true"))
        .collect();
    for label in &label_args {
        labels.extend(["--label-add", label.as_str()]);
    }
    let node = stdout(&docker(&["info", "--format", "{{.Swarm.NodeID}}"]));
    labels.push(&node);
    docker(&labels);

    // Volumes are per node on a Swarm, so a Swarm herd is given its secret.
    let secret = unique("swarm-herd-secret-");
    let ports: Vec<(&str, u16)> = SERVERS
        .iter()
        .map(|(_, s)| (*s, common::free_port()))
        .collect();
    let mut deploy = Command::new("docker");
    deploy
        .args(["stack", "deploy", "-c"])
        .arg(root().join("docker-compose.yml"))
        .arg("-c")
        .arg(root().join("docker/swarm.yml"))
        .arg(&swarm.stack)
        .env("HERD_IMAGE", &image.tag)
        .env("HERD_SECRET", &secret)
        .env_remove("GOOGLE_PLACES_API_KEY")
        .env_remove("HERD_PLACES__PROVIDER");
    for (service, port) in &ports {
        deploy.env(
            format!("HERD_{}_PORT", service.to_uppercase()),
            port.to_string(),
        );
    }
    run(&mut deploy, true);

    // Every service is placed by its constraint and runs one task.
    for (_, service) in SERVERS {
        let name = format!("{}_{service}", swarm.stack);
        let constraints = stdout(&docker(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.Placement.Constraints}}",
            &name,
        ]));
        assert_eq!(constraints, format!("[node.labels.herd.{service} == true]"));
        let endpoint = stdout(&docker(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.EndpointSpec.Mode}} {{range .Spec.EndpointSpec.Ports}}{{.PublishMode}}{{end}}",
            &name,
        ]));
        assert_eq!(endpoint, "dnsrr host", "{name}: docker/swarm.yml applies");
    }
    let port = |service: &str| {
        ports
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, p)| *p)
            .unwrap_or_default()
    };
    for (_, service) in SERVERS {
        wait_until(
            Duration::from_secs(90),
            &format!("stack service {service} to answer"),
            || {
                exchange(port(service), "WHATSAT nobody 1 1").as_deref()
                    == Some("? WHATSAT nobody 1 1\n")
            },
        );
    }
    let answer = exchange(port("riley"), &iamat("swarm.kiwi", "1700000003")).expect("Riley");
    let at = answer.lines().next().unwrap_or_default().to_string();
    assert!(at.starts_with("AT Riley "), "{answer:?}");
    wait_until(
        Duration::from_secs(30),
        "Bernard to hold the record",
        || {
            exchange(port("bernard"), "WHATSAT swarm.kiwi 1 1")
                .and_then(|a| at_line_of(&a))
                .as_deref()
                == Some(at.as_str())
        },
    );
    let driver = stdout(&docker(&[
        "network",
        "inspect",
        "--format",
        "{{.Driver}}",
        &format!("{}_herd", swarm.stack),
    ]));
    assert_eq!(driver, "overlay");
    eprintln!(
        "swarm: stack deployed and flooding in {:?}",
        started.elapsed()
    );
    drop(swarm);
    assert_eq!(
        swarm_state(),
        "inactive",
        "the test leaves the swarm it made"
    );
}

/// The runtime part of the two Dockerfiles is the same text, so the image
/// built with a registry and the one built without behave alike.
#[test]
fn dockerfiles_share_their_runtime_part() {
    let runtime = |path: &Path| {
        let text = std::fs::read_to_string(path).expect("read a Dockerfile");
        let (_, tail) = text
            .split_once("# ---- runtime")
            .unwrap_or_else(|| panic!("{} has no runtime marker", path.display()));
        tail.lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    let registry = runtime(&root().join("Dockerfile"));
    let local = runtime(&root().join("docker/Dockerfile.local"));
    assert_eq!(registry, local);
    assert!(registry.contains("ENTRYPOINT [\"/herd\"]"));
}
