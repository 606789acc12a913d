//! The herd in containers, on the real Docker engine (issue: `docker compose
//! up`): the image built without any registry (docker/build-local.sh), the
//! root docker-compose.yml brought up under a project name of its own with
//! its client ports on free loopback ports, then a client at one container
//! and another at a second, a stopped container routed around and caught
//! up, a container cut off the network and healed, and `down -v` leaving
//! nothing behind. The same compose file (with docker/swarm.yml) is then
//! deployed as a stack on a single-node Swarm made for the test, over an
//! overlay network, and the swarm is left afterwards. Last, the Kubernetes
//! StatefulSet of deploy/k8s/ as far as one engine can play it: its five
//! pods as containers run the way statefulset.yaml runs them, with the
//! ConfigMap's own settings (docs/kubernetes.md says what this leaves out).
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

/// The whole life of a compose herd, with `tool` (docker-compose or docker
/// compose), each step a sentence of docs/docker.md.
fn compose_lifecycle(tool: &[&str], image: &Image) {
    let herd = Compose::new(tool, image);
    let started = Instant::now();
    five_containers_come_up_healthy(&herd);
    eprintln!(
        "{}: five healthy containers in {:?}",
        tool.join(" "),
        started.elapsed()
    );
    only_the_client_port_is_published_on_loopback(&herd);
    the_links_run_with_a_secret_the_herd_made_itself(&herd);
    herdctl_in_a_container_finds_the_token_the_herd_made(&herd);
    let at = an_iamat_at_riley_is_answered_by_a_whatsat_at_bernard(&herd);
    a_stopped_server_is_flooded_around_then_caught_up(&herd, &at);
    a_server_cut_off_the_network_is_healed_both_ways(&herd);
    down_leaves_nothing_behind(&herd);
    eprintln!("{}: lifecycle in {:?}", tool.join(" "), started.elapsed());
}

fn five_containers_come_up_healthy(herd: &Compose) {
    herd.run(&["up", "-d", "--no-build"]);
    for (_, service) in SERVERS {
        wait_until(
            Duration::from_secs(60),
            &format!("{service} to be healthy"),
            || herd.health(service) == "healthy",
        );
    }
}

fn only_the_client_port_is_published_on_loopback(herd: &Compose) {
    // Only the client port is published, on loopback.
    let published = stdout(&docker(&["port", &herd.container("juzang")]));
    assert_eq!(
        published,
        format!("12667/tcp -> 127.0.0.1:{}", herd.port("juzang")),
        "juzang publishes only its client port"
    );
}

fn the_links_run_with_a_secret_the_herd_made_itself(herd: &Compose) {
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
}

fn herdctl_in_a_container_finds_the_token_the_herd_made(herd: &Compose) {
    // The admin listeners bind beyond loopback in their containers, so they
    // need the token the herd made on the shared volume: herdctl inside a
    // container finds it through the settings.
    let status = herd.herdctl("riley", &["status"]);
    assert!(status.contains("Jaquez"), "{status}");
}

/// Returns Riley's AT line.
fn an_iamat_at_riley_is_answered_by_a_whatsat_at_bernard(herd: &Compose) -> String {
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
    at
}

fn a_stopped_server_is_flooded_around_then_caught_up(herd: &Compose, at: &str) {
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
    herd.wait_for("juzang", "kiwi.test", at);
}

fn a_server_cut_off_the_network_is_healed_both_ways(herd: &Compose) {
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
}

fn down_leaves_nothing_behind(herd: &Compose) {
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

/// The settings of the Kubernetes ConfigMap (deploy/k8s/configmap.yaml):
/// the `Settings.toml` block, as the kubelet writes it into the pod's file.
fn configmap_settings() -> String {
    let text = std::fs::read_to_string(root().join("deploy/k8s/configmap.yaml"))
        .expect("read deploy/k8s/configmap.yaml");
    let mut lines = text.lines().skip_while(|l| *l != "  Settings.toml: |");
    assert!(lines.next().is_some(), "the ConfigMap holds Settings.toml");
    let mut settings = String::new();
    for line in lines {
        match line.strip_prefix("    ") {
            Some(inside) => settings.push_str(inside),
            None if line.trim().is_empty() => {}
            None => break,
        }
        settings.push('\n');
    }
    // A literal block keeps one final newline.
    format!("{}\n", settings.trim_end())
}

/// The pods of the StatefulSet and the servers their names pick through
/// the ConfigMap's hosts (herd-N.herd).
const PODS: &[(&str, &str)] = &[
    ("herd-0", "Riley"),
    ("herd-1", "Jaquez"),
    ("herd-2", "Juzang"),
    ("herd-3", "Campbell"),
    ("herd-4", "Bernard"),
];

/// A GET to an admin listener published on the host's loopback: the status
/// code and the body, or `None` when nothing answers.
fn http_get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The StatefulSet's pods played by containers on one user-defined
/// network; every container, the network and the volumes removed on drop.
struct Pods {
    prefix: String,
    network: String,
    /// Per pod: (client port, admin port) published on the host's loopback.
    ports: Vec<(u16, u16)>,
    /// Holds the ConfigMap's settings file.
    settings: tempfile::TempDir,
    /// Every pod's environment but its HERD_HOST_NAME.
    env: Vec<(&'static str, String)>,
    /// The image's tag.
    image: String,
}

impl Pods {
    /// The five pods of the StatefulSet, each once its readiness probe
    /// passes.
    fn start(image: &Image, env: Vec<(&'static str, String)>) -> Pods {
        let prefix = unique("herdk8s");
        let pods = Pods {
            network: format!("{prefix}-net"),
            ports: PODS
                .iter()
                .map(|_| (common::free_port(), common::free_port()))
                .collect(),
            settings: tempfile::tempdir().expect("a temporary folder"),
            prefix,
            env,
            image: image.tag.clone(),
        };
        std::fs::write(pods.settings_file(), configmap_settings())
            .expect("write the ConfigMap's settings");
        docker(&["network", "create", &pods.network]);
        for (pod, (name, _)) in PODS.iter().enumerate() {
            docker(&["volume", "create", &pods.volume(pod)]);
            let mut args: Vec<String> = [
                "run",
                "-d",
                "--name",
                &pods.container(pod),
                "--hostname",
                name,
                "--network",
                &pods.network,
                "--network-alias",
                &format!("{name}.herd"),
                "--mount",
                &format!("type=volume,src={},dst=/data", pods.volume(pod)),
                "--publish",
                &format!("127.0.0.1:{}:12665", pods.client_port(pod)),
                "--publish",
                &format!("127.0.0.1:{}:13665", pods.admin_port(pod)),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(pods.pod_args(name));
            run(Command::new("docker").args(&args), true);
        }
        for pod in 0..PODS.len() {
            pods.wait_ready(pod);
        }
        pods
    }

    fn settings_file(&self) -> PathBuf {
        self.settings.path().join("Settings.toml")
    }

    /// What every pod of the StatefulSet runs with (statefulset.yaml), for
    /// the pod named `host_name`, ending with the image: a read-only root
    /// file system, the non-root user, no capabilities, its limits, the
    /// ConfigMap's settings file and the environment.
    fn pod_args(&self, host_name: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "--read-only",
            "--user",
            "65532:65532",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--memory",
            "1g",
            "--cpus",
            "2",
            "--mount",
            &format!(
                "type=bind,src={},dst=/etc/herd/Settings.toml,readonly",
                self.settings_file().display()
            ),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (key, value) in &self.env {
            args.extend(["--env".into(), format!("{key}={value}")]);
        }
        args.extend(["--env".into(), format!("HERD_HOST_NAME={host_name}")]);
        args.push(self.image.clone());
        args
    }

    fn container(&self, pod: usize) -> String {
        format!("{}-herd-{pod}", self.prefix)
    }

    fn volume(&self, pod: usize) -> String {
        format!("{}-data-herd-{pod}", self.prefix)
    }

    fn client_port(&self, pod: usize) -> u16 {
        self.ports[pod].0
    }

    fn admin_port(&self, pod: usize) -> u16 {
        self.ports[pod].1
    }

    fn logs(&self, pod: usize) -> String {
        let out = run(
            Command::new("docker").args(["logs", &self.container(pod)]),
            true,
        );
        format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr))
    }

    /// WHATSAT's AT line for `client` at pod `pod`.
    fn at_line(&self, pod: usize, client: &str) -> Option<String> {
        at_line_of(&exchange(
            self.client_port(pod),
            &format!("WHATSAT {client} 1 1"),
        )?)
    }

    fn wait_for(&self, pod: usize, client: &str, expected: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("herd-{pod} to hold {expected}"),
            || self.at_line(pod, client).as_deref() == Some(expected),
        );
    }

    /// Waits as the readiness probe does: /healthz answers 200.
    fn wait_ready(&self, pod: usize) {
        wait_until(
            Duration::from_secs(60),
            &format!("herd-{pod}'s /healthz to answer 200"),
            || http_get(self.admin_port(pod), "/healthz", None).is_some_and(|(c, _)| c == 200),
        );
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        // The pods, and the sixth that a scaled StatefulSet would add.
        for pod in 0..=PODS.len() {
            let _ = run(
                Command::new("docker").args(["rm", "-f", "-v", &self.container(pod)]),
                false,
            );
            let _ = run(
                Command::new("docker").args(["volume", "rm", "-f", &self.volume(pod)]),
                false,
            );
        }
        let _ = run(
            Command::new("docker").args(["network", "rm", &self.network]),
            false,
        );
    }
}

/// The pod's environment as statefulset.yaml declares it, but for
/// HERD_HOST_NAME (each pod's own name, the downward API's metadata.name).
fn pod_env(secret: &str, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HERD_CONFIG", "/etc/herd/Settings.toml".into()),
        ("HERD_SECRET", secret.into()),
        ("HERD_ADMIN_TOKEN", token.into()),
        ("RUST_LOG", "info".into()),
    ]
}

/// The ConfigMap gives each pod's name the server it runs, and the
/// StatefulSet gives each pod the environment, user, file systems, ports
/// and limits the test below runs the image with.
#[test]
fn the_manifests_give_each_pod_its_server_its_environment_and_its_limits() {
    let settings = configmap_settings();
    for (pod, (name, server)) in PODS.iter().enumerate() {
        assert!(
            settings.contains(&format!("name = \"{server}\"\nhost = \"{name}.herd\"\n")),
            "pod {pod}: the ConfigMap puts {server} at {name}.herd"
        );
    }
    let statefulset = std::fs::read_to_string(root().join("deploy/k8s/statefulset.yaml"))
        .expect("read deploy/k8s/statefulset.yaml");
    for (key, _) in pod_env("", "")
        .iter()
        .chain(&[("HERD_HOST_NAME", String::new())])
    {
        assert!(
            statefulset.contains(&format!("- name: {key}\n")),
            "statefulset.yaml sets {key}"
        );
    }
    for line in [
        "runAsUser: 65532",
        "runAsGroup: 65532",
        "readOnlyRootFilesystem: true",
        "mountPath: /etc/herd\n",
        "mountPath: /data\n",
        "containerPort: 12665",
        "containerPort: 13665",
        "fieldPath: metadata.name",
        "drop: [\"ALL\"]",
        "memory: 1Gi",
        "cpu: \"2\"",
    ] {
        assert!(statefulset.contains(line), "statefulset.yaml has {line:?}");
    }
}

/// deploy/k8s/ on the real engine, as far as one machine without a cluster
/// can run it: the image run five times as the StatefulSet runs its pods
/// (statefulset.yaml): the ConfigMap's settings file mounted at
/// /etc/herd/Settings.toml, the pod's environment (HERD_HOST_NAME its pod
/// name, the secret and token from the Secret), hostname herd-N and the DNS
/// name herd-N.herd of the headless Service, a volume at /data, a read-only
/// root file system, the non-root user and no capabilities. One herd's life,
/// each step a sentence of docs/kubernetes.md.
#[test]
fn kubernetes_pods_form_the_herd() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    if !engine_or_skip() {
        return;
    }
    let secret = format!("{:032x}", rand::random::<u128>());
    let token = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let image = Image::build();
    let started = Instant::now();
    let pods = Pods::start(&image, pod_env(&secret, &token));
    each_pod_runs_the_server_its_name_picks_with_every_link_up(&pods, &token);
    eprintln!("k8s pods: a herd of five in {:?}", started.elapsed());
    herdctl_in_a_pod_sees_the_whole_herd(&pods);
    let at = an_iamat_at_herd_0_is_answered_by_a_whatsat_at_herd_4(&pods);
    the_record_is_on_the_pods_volume_and_its_log_on_stderr(&pods);
    a_pod_replaced_by_a_rolling_update_exits_cleanly_and_catches_up(&pods, &at);
    a_pod_past_the_configmaps_five_refuses_to_start_saying_why(&pods);
    eprintln!("k8s pods: lifecycle in {:?}", started.elapsed());
}

fn each_pod_runs_the_server_its_name_picks_with_every_link_up(pods: &Pods, token: &str) {
    for (pod, (name, server)) in PODS.iter().enumerate() {
        let admin = pods.admin_port(pod);
        let refused = http_get(admin, "/status", None).map(|(code, _)| code);
        assert_eq!(refused, Some(401), "{name}: /status wants the token");
        wait_until(
            Duration::from_secs(30),
            &format!("{name} ({server}) to have every link up"),
            || {
                let Some((200, body)) = http_get(admin, "/status", Some(token)) else {
                    return false;
                };
                let Ok(status) = serde_json::from_str::<serde_json::Value>(&body) else {
                    return false;
                };
                assert_eq!(status["server"], *server, "{name} runs {server}");
                let links = status["neighbours"].as_array().cloned().unwrap_or_default();
                !links.is_empty() && links.iter().all(|l| l["state"] == "up")
            },
        );
    }
}

/// As docs/kubernetes.md has it: `kubectl exec herd-3 -- /herdctl --server
/// Campbell status` (the settings and the token from the pod's environment,
/// the other servers by their hosts).
fn herdctl_in_a_pod_sees_the_whole_herd(pods: &Pods) {
    let status = stdout(&docker(&[
        "exec",
        &pods.container(3),
        "/herdctl",
        "--server",
        "Campbell",
        "status",
    ]));
    assert!(
        status.contains("5/5 servers up, 6/6 links up"),
        "herdctl status in herd-3:\n{status}"
    );
}

/// IAMAT at herd-0, WHATSAT at herd-4 (two links away); returns the AT line.
fn an_iamat_at_herd_0_is_answered_by_a_whatsat_at_herd_4(pods: &Pods) -> String {
    let answer =
        exchange(pods.client_port(0), &iamat("k8s.kiwi", "1700000010.5")).expect("herd-0 answers");
    let at = answer.lines().next().unwrap_or_default().to_string();
    assert!(
        at.starts_with("AT Riley ") && at.ends_with(" k8s.kiwi +34.068930-118.445127 1700000010.5"),
        "{answer:?}"
    );
    pods.wait_for(4, "k8s.kiwi", &at);
    let whatsat = exchange(pods.client_port(4), "WHATSAT k8s.kiwi 10 3").expect("herd-4 answers");
    assert!(
        whatsat.starts_with(&format!("{at}\n{{")) && whatsat.contains("\"status\": \"OK\""),
        "{whatsat:?}"
    );
    at
}

/// The record is on herd-0's volume (sync durability), the root file system
/// being read-only; the log went to stderr; the links were authenticated
/// with the Secret's secret.
fn the_record_is_on_the_pods_volume_and_its_log_on_stderr(pods: &Pods) {
    let journal = run(
        Command::new("docker").args([
            "cp",
            &format!("{}:/data/Riley/records.redb", pods.container(0)),
            "-",
        ]),
        true,
    );
    assert!(
        journal.stdout.len() > 512,
        "herd-0 keeps its records in /data/Riley/records.redb"
    );
    let logs = pods.logs(0);
    assert!(logs.contains("k8s.kiwi"), "herd-0 logs to stderr: {logs}");
    assert!(!logs.contains("INSECURE"), "{logs}");
}

/// A rolling update replaces one pod at a time: SIGTERM, a clean exit, then
/// the pod again with its volume; it catches up on what it missed.
fn a_pod_replaced_by_a_rolling_update_exits_cleanly_and_catches_up(pods: &Pods, at: &str) {
    docker(&["stop", "--time", "10", &pods.container(2)]);
    let code = stdout(&docker(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &pods.container(2),
    ]));
    assert_eq!(code, "0", "herd-2 exits cleanly on SIGTERM");
    let answer = exchange(pods.client_port(0), &iamat("k8s.moved", "1700000011"))
        .expect("herd-0 answers while herd-2 is down");
    let moved = answer.lines().next().unwrap_or_default().to_string();
    assert!(moved.starts_with("AT Riley "), "{answer:?}");
    pods.wait_for(3, "k8s.moved", &moved);
    docker(&["start", &pods.container(2)]);
    pods.wait_ready(2);
    pods.wait_for(2, "k8s.moved", &moved);
    pods.wait_for(2, "k8s.kiwi", at);
}

/// A sixth pod (the StatefulSet scaled past the ConfigMap's five) finds no
/// server for its name and refuses to start, saying so.
fn a_pod_past_the_configmaps_five_refuses_to_start_saying_why(pods: &Pods) {
    let extra = pods.container(PODS.len());
    let mut args = vec!["run".to_string(), "--name".into(), extra.clone()];
    args.extend(pods.pod_args("herd-5"));
    let refused = run(Command::new("docker").args(&args), false);
    let _ = run(Command::new("docker").args(["rm", "-f", &extra]), false);
    assert_eq!(refused.status.code(), Some(2), "herd-5 exits 2");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("no server's host is \"herd-5\""),
        "herd-5 says why: {said}"
    );
}

/// scripts/validate-k8s checks every manifest, so each lives in a file
/// that its glob takes.
#[test]
fn kubernetes_manifests_are_all_validated() {
    let script = std::fs::read_to_string(root().join("scripts/validate-k8s"))
        .expect("read scripts/validate-k8s");
    assert!(script.contains("--strict") && script.contains("deploy/k8s/*.yaml"));
    let dir = root().join("deploy/k8s");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("list deploy/k8s")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for file in &files {
        assert!(
            file.ends_with(".yaml"),
            "deploy/k8s/{file} is not validated"
        );
    }
}
