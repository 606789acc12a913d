//! The live page in a real browser: headless Chromium (Debian package
//! `chromium`, installed by `scripts/test`, the README's test command) with
//! a five-server herd running.
//!
//! - One page stays open (driven over the DevTools protocol on a pipe) and
//!   must show the five servers and their six links up and the clients on
//!   the map; after one server is SIGKILLed the same page, by its own
//!   polling, must turn that server and its three links down, keep the
//!   others up, and list the change.
//! - The map: with three clients in Los Angeles the view is a city's, the
//!   base layer (the herd's own places, from `/places`) drawn, and the names
//!   of the places by the clients shown; once clients in Tokyo and Cape Town
//!   join, the view is the world's, without names.
//! - A fresh `--dump-dom` load checks the first drawing, with all up and
//!   again with the server dead.
//! - The herd has an admin token: the page given it in its fragment draws;
//!   without it, it says it needs it and draws nothing. A page of another
//!   origin cannot read `/status` even with the token, and a DNS-rebinding
//!   name (mapped to 127.0.0.1 by the browser's resolver) gets no page.
//!
//! - A web page served from 127.0.0.1 that POSTs an IAMAT to a client port
//!   (`fetch`, `mode: 'no-cors'`, which any page may send) gets the
//!   connection closed at once: counted, and nothing stored (SPEC §7).
//!
//! Screenshots are kept as `target/test-artifacts/herd-page-city.png`,
//! `herd-page.png` and `herd-page-bernard-down.png`. There is no skipping:
//! without Chromium on PATH (or in `HERD_CHROMIUM`) the test fails and says
//! how to install it.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{wait_until, Herd};
use herd::ctl::http;

/// The browser to drive.
fn chromium() -> String {
    let name = std::env::var("HERD_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&name).arg("--version").output();
    match found {
        Ok(out) if out.status.success() => name,
        _ => panic!(
            "{name} is not installed: this test needs headless Chromium \
             (scripts/test installs it: apt-get install -y chromium), or HERD_CHROMIUM=<path>"
        ),
    }
}

/// Where screenshots are kept: `target/test-artifacts/`.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Runs headless Chromium on `url` with `what` (`--dump-dom` or
/// `--screenshot=...`), giving the page a few seconds of (virtual) time to
/// poll the herd. Returns standard output.
fn browse(browser: &str, url: &str, what: &str) -> String {
    browse_with(browser, url, what, &[])
}

/// [`browse`] with more Chromium flags.
fn browse_with(browser: &str, url: &str, what: &str, flags: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("a browser profile folder");
    let out = Command::new(browser)
        .args(FLAGS)
        .args(flags)
        .arg("--virtual-time-budget=4000")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(what)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flags every Chromium run here gets.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--hide-scrollbars",
    "--window-size=1280,900",
];

/// A Chromium driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: it reads commands on fd 3 and writes answers
/// and events on fd 4, each a JSON text ended by a NUL byte). Enough of the
/// protocol to open a page, evaluate JavaScript in it and take screenshots.
struct Browser {
    child: Child,
    commands: File,
    messages: mpsc::Receiver<serde_json::Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both are fresh descriptors owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts `browser` and opens `url` in a page of its own.
    fn open(browser: &str, url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("a browser profile folder");
        let (their_in, commands) = pipe();
        let (messages_in, their_out) = pipe();
        let (fd3, fd4) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        let mut command = Command::new(browser);
        command
            .args(FLAGS)
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec. The
        // two ends are first copied above 10, so that placing them on 3 and
        // 4 cannot overwrite one with the other; dup2 clears close-on-exec.
        unsafe {
            command.pre_exec(move || {
                let a = libc::fcntl(fd3, libc::F_DUPFD, 10);
                let b = libc::fcntl(fd4, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((their_in, their_out));
        let (tx, messages) = mpsc::channel();
        let mut reader = BufReader::new(File::from(messages_in));
        std::thread::spawn(move || loop {
            let mut message = Vec::new();
            match reader.read_until(0, &mut message) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    message.pop();
                    if let Ok(value) = serde_json::from_slice(&message) {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            commands: File::from(commands),
            messages,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", serde_json::json!({ "url": url }));
        let target_id = target["targetId"].clone();
        let attached = browser.call(
            "Target.attachToTarget",
            serde_json::json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    /// Sends one command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.commands.write_all(&bytes).expect("send to chromium");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer from chromium to {method}: {e}"));
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let result = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expression, "returnByValue": true }),
        );
        result["result"]["value"].clone()
    }

    /// The value a JavaScript promise resolves to in the page.
    fn eval_promise(&mut self, expression: &str) -> serde_json::Value {
        let result = self.call(
            "Runtime.evaluate",
            serde_json::json!({
                "expression": expression,
                "returnByValue": true,
                "awaitPromise": true,
            }),
        );
        result["result"]["value"].clone()
    }

    /// A `data-*` attribute of the map (`view`, `places`, `labels`).
    fn map(&mut self, attribute: &str) -> serde_json::Value {
        self.eval(&format!(
            "document.getElementById('map').dataset.{attribute}"
        ))
    }

    fn clients_drawn(&mut self) -> serde_json::Value {
        self.eval("document.querySelectorAll('#clients [data-client]').length")
    }

    /// The `data-state` of every server and link drawn, keyed by server
    /// name or `A|B`.
    fn states(&mut self) -> serde_json::Value {
        self.eval(
            "Object.fromEntries([...document.querySelectorAll('[data-state]')]\
             .map(e => [e.dataset.server || e.dataset.link, e.dataset.state]))",
        )
    }

    /// A PNG of the page as it is now, written to `path`.
    fn screenshot(&mut self, path: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png" }),
        );
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding), as the DevTools protocol sends images.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = chunk
            .iter()
            .filter(|&&c| c != b'=')
            .map(|&c| value(c))
            .collect();
        let n = digits
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..digits.len()]);
    }
    out
}

/// Every start tag in `dom` that carries `attribute` (e.g. `data-server="Riley"`).
fn tags_with<'a>(dom: &'a str, attribute: &str) -> Vec<&'a str> {
    dom.match_indices(attribute)
        .filter_map(|(at, _)| {
            let start = dom[..at].rfind('<')?;
            let end = at + dom[at..].find('>')?;
            Some(&dom[start..=end])
        })
        .collect()
}

/// The `data-state` of the one element carrying `attribute`.
fn state_of(dom: &str, attribute: &str) -> String {
    let tags = tags_with(dom, attribute);
    assert_eq!(tags.len(), 1, "one element with {attribute} in\n{dom}");
    let tag = tags[0];
    let (_, rest) = tag
        .split_once("data-state=\"")
        .unwrap_or_else(|| panic!("no data-state in {tag}"));
    rest.split('"').next().unwrap_or_default().to_string()
}

fn link(a: &str, b: &str) -> String {
    format!("data-link=\"{}\"", key(a, b))
}

/// The herd's admin token.
const TOKEN: &str = "page-test-token-0123456789";

/// Whether every server answers `/status` with every link up.
fn all_links_up(herd: &Herd) -> bool {
    herd.names().iter().all(|name| {
        let address = format!("127.0.0.1:{}", herd.ports(name).admin);
        http::get_ok_with_token(&address, "/status", Some(TOKEN))
            .ok()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .and_then(|s| {
                s["neighbours"]
                    .as_array()
                    .map(|ns| ns.iter().all(|n| n["state"] == "up"))
            })
            .unwrap_or(false)
    })
}

/// The links of SPEC §1's herd, as the page names them.
const LINKS: [(&str, &str); 6] = [
    ("Riley", "Jaquez"),
    ("Riley", "Juzang"),
    ("Jaquez", "Bernard"),
    ("Juzang", "Campbell"),
    ("Juzang", "Bernard"),
    ("Campbell", "Bernard"),
];

/// Three clients in one city (Los Angeles).
const CITY: [(&str, &str); 3] = [
    ("kiwi.cs.ucla.edu", "+34.068930-118.445127"),
    ("santa.monica", "+34.0195-118.4912"),
    ("culver.city", "+34.0211-118.3965"),
];

/// Two clients far from it and from each other.
const WORLD: [(&str, &str); 2] = [
    ("tokyo.phone", "+35.6762+139.6503"),
    ("cape.town", "-33.9249+18.4241"),
];

/// How the page's state names a link.
fn key(a: &str, b: &str) -> String {
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    format!("{a}|{b}")
}

/// The state the page must show for a link once `dead` is down.
fn link_state(a: &str, b: &str, dead: Option<&str>) -> &'static str {
    if dead.is_some_and(|d| a == d || b == d) {
        "down"
    } else {
        "up"
    }
}

/// SPEC §1's herd with the admin token and every link up, the three
/// clients of [`CITY`] reported at Juzang; the page served by Riley.
struct PageHerd {
    browser: String,
    herd: Herd,
    /// The page's address, without the token.
    page: String,
}

impl PageHerd {
    fn start() -> PageHerd {
        let browser = chromium();
        let mut herd = Herd::five().env("HERD_ADMIN_TOKEN", TOKEN).build();
        herd.start_each();
        wait_until(Duration::from_secs(15), "every link of the herd up", || {
            all_links_up(&herd)
        });
        let page = format!("http://127.0.0.1:{}/", herd.ports("Riley").admin);
        let page_herd = PageHerd {
            browser,
            herd,
            page,
        };
        page_herd.report(&CITY, 0);
        page_herd
    }

    /// The page's address with the token in its fragment.
    fn url(&self) -> String {
        format!("{}#token={TOKEN}", self.page)
    }

    /// Reports `clients` at Juzang, with times from `first` on.
    fn report(&self, clients: &[(&str, &str)], first: usize) {
        for (i, (client, place)) in clients.iter().enumerate() {
            let time = format!("17000000{:02}", first + i);
            let answer = self
                .herd
                .ask("Juzang", &format!("IAMAT {client} {place} {time}"));
            assert!(answer.starts_with("AT Juzang "), "{answer}");
        }
    }

    /// Opens the page that stays open, once it draws every server and
    /// link up and `clients` clients.
    fn open_live_page(&self, clients: usize) -> Browser {
        let mut live = Browser::open(&self.browser, &self.url());
        wait_until(
            Duration::from_secs(20),
            "the live page to draw the herd up",
            || {
                let states = live.states();
                self.herd.names().iter().all(|n| states[n.as_str()] == "up")
                    && LINKS
                        .iter()
                        .all(|(a, b)| states[key(a, b).as_str()] == "up")
                    && live.clients_drawn() == clients
            },
        );
        live
    }

    /// A fresh `--dump-dom` load of the page.
    fn fresh_load(&self) -> String {
        browse(&self.browser, &self.url(), "--dump-dom")
    }
}

/// A number the page's map reports, 0 when it reports none.
fn map_count(live: &mut Browser, what: &str) -> u32 {
    live.map(what)
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_open_page_draws_the_five_servers_their_six_links_and_the_clients_up() {
    let herd = PageHerd::start();
    let mut live = herd.open_live_page(CITY.len());
    let states = live.states();
    assert_eq!(
        states.as_object().map(|o| o.len()),
        Some(5 + LINKS.len()),
        "{states}"
    );
}

#[test]
fn the_map_shows_a_citys_places_by_its_clients_then_the_world_once_clients_spread() {
    let herd = PageHerd::start();
    let mut live = herd.open_live_page(CITY.len());
    // The view zooms to the city, draws its places and names those by the
    // clients.
    wait_until(Duration::from_secs(20), "the map to show the city", || {
        live.map("view") == "city"
            && map_count(&mut live, "places") > 20
            && live.eval("document.querySelectorAll('[data-place=\"Santa Monica\"]').length") == 1
    });
    let labels = map_count(&mut live, "labels");
    assert!(labels >= 5, "{labels} places named");
    live.screenshot(&artifacts().join("herd-page-city.png"));

    // Clients across the world: the view is the world's, without names.
    herd.report(&WORLD, CITY.len());
    wait_until(Duration::from_secs(20), "the map to show the world", || {
        live.clients_drawn() == CITY.len() + WORLD.len()
            && live.map("view") == "world"
            && live.map("labels") == "0"
            && map_count(&mut live, "places") > 5_000
    });
    live.screenshot(&artifacts().join("herd-page.png"));
}

#[test]
fn a_fresh_load_draws_every_server_link_and_client() {
    let herd = PageHerd::start();
    herd.report(&WORLD, CITY.len());
    // Every server holds the five clients before the page is loaded.
    for name in herd.herd.names() {
        for (client, _) in CITY.iter().chain(&WORLD) {
            wait_until(
                Duration::from_secs(15),
                &format!("{name} to hold {client}"),
                || herd.herd.whatsat_at_line(&name, client).is_some(),
            );
        }
    }
    let dom = herd.fresh_load();
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page never drew:\n{dom}"
    );
    let servers = tags_with(&dom, "data-server=\"");
    let drawn: Vec<&&str> = servers.iter().filter(|t| t.starts_with("<g ")).collect();
    assert_eq!(drawn.len(), 5, "five servers drawn:\n{dom}");
    for name in herd.herd.names() {
        assert_eq!(
            state_of(&dom, &format!("<g class=\"server\" data-server=\"{name}\"")),
            "up"
        );
    }
    assert_eq!(tags_with(&dom, "data-link=\"").len(), LINKS.len(), "{dom}");
    for (a, b) in LINKS {
        assert_eq!(state_of(&dom, &link(a, b)), "up", "{a}-{b}");
    }
    for (client, _) in CITY.iter().chain(&WORLD) {
        assert!(
            !tags_with(&dom, &format!("data-client=\"{client}\"")).is_empty(),
            "{client} not drawn:\n{dom}"
        );
    }
}

#[test]
fn a_killed_server_and_its_links_turn_down_on_the_open_page_and_on_a_fresh_load() {
    let mut herd = PageHerd::start();
    let mut live = herd.open_live_page(CITY.len());
    herd.herd.kill("Bernard");
    // The open page notices by itself.
    wait_until(
        Duration::from_secs(20),
        "the live page to draw Bernard down",
        || {
            let states = live.states();
            states["Bernard"] == "down"
                && LINKS
                    .iter()
                    .all(|(a, b)| states[key(a, b).as_str()] == link_state(a, b, Some("Bernard")))
        },
    );
    let states = live.states();
    for name in ["Riley", "Jaquez", "Juzang", "Campbell"] {
        assert_eq!(states[name], "up", "{states}");
    }
    assert_eq!(
        live.eval("document.querySelectorAll('#events [data-event=\"Bernard down\"]').length"),
        1,
        "the change is listed"
    );
    live.screenshot(&artifacts().join("herd-page-bernard-down.png"));
    drop(live);

    // A fresh load draws the dead server down from the start.
    let dom = herd.fresh_load();
    assert_eq!(
        state_of(&dom, "<g class=\"server\" data-server=\"Bernard\""),
        "down"
    );
    for (a, b) in LINKS {
        let expected = link_state(a, b, Some("Bernard"));
        assert_eq!(state_of(&dom, &link(a, b)), expected, "{a}-{b}:\n{dom}");
    }
}

/// Without the token the page draws nothing and says what it needs; a page
/// of another origin cannot read `/status` even holding the token; a
/// DNS-rebinding name gets no page at all.
#[test]
fn the_page_needs_the_token_and_other_origins_read_nothing() {
    let PageHerd {
        browser,
        herd,
        page,
    } = PageHerd::start();
    let browser = browser.as_str();
    let page = page.as_str();
    let dom = browse(browser, page, "--dump-dom");
    assert!(dom.contains("data-auth=\"needed\""), "{dom}");
    assert!(dom.contains("#token=&lt;token&gt;"), "{dom}");
    assert!(!dom.contains("data-ready=\"1\""), "{dom}");
    assert!(tags_with(&dom, "data-client=\"").is_empty(), "{dom}");

    let status = format!("{page}status");
    let mut elsewhere = Browser::open(browser, "data:text/html,<title>elsewhere</title>");
    for headers in ["{}", &format!("{{ Authorization: 'Bearer {TOKEN}' }}")] {
        let outcome = elsewhere.eval_promise(&format!(
            "fetch('{status}', {{ headers: {headers} }})\
             .then(r => r.text().then(t => 'read ' + r.status + ' ' + t), e => 'blocked')"
        ));
        assert_eq!(outcome, "blocked", "another origin read {status}");
    }
    drop(elsewhere);

    let port = herd.ports("Riley").admin;
    let rebound = format!("http://rebind.test:{port}/#token={TOKEN}");
    let dom = browse_with(
        browser,
        &rebound,
        "--dump-dom",
        &["--host-resolver-rules=MAP rebind.test 127.0.0.1"],
    );
    assert!(dom.contains("not a name of this server"), "{dom}");
    assert!(!dom.contains("data-ready"), "{dom}");
}

#[test]
fn the_page_reaches_a_member_known_by_a_container_name_through_its_own_host() {
    let browser = chromium();
    // Alpha's admin listener binds every address and the herd knows it as
    // "alpha", as docker's network would: /herd gives http://alpha:<port>,
    // which a browser outside that network cannot resolve.
    let mut herd = Herd::with_topology(&[("Alpha", &[]), ("Beta", &[])])
        .env("HERD_ADMIN_TOKEN", TOKEN)
        .env("HERD_SERVERS__ALPHA__HOST", "alpha")
        .env("HERD_SERVERS__ALPHA__ADMIN_LISTEN", "0.0.0.0")
        .build();
    herd.start_each();
    let beta = format!("127.0.0.1:{}", herd.ports("Beta").admin);
    let mut topology = serde_json::Value::Null;
    wait_until(Duration::from_secs(10), "Beta's /herd", || {
        let answer = http::get_ok_with_token(&beta, "/herd", Some(TOKEN));
        topology = answer
            .ok()
            .and_then(|r| serde_json::from_slice(&r.body).ok())
            .unwrap_or_default();
        !topology.is_null()
    });
    let alpha_url = topology["servers"]
        .as_array()
        .and_then(|servers| servers.iter().find(|s| s["name"] == "Alpha"))
        .map(|alpha| alpha["admin_url"].clone());
    assert_eq!(
        alpha_url,
        Some(format!("http://alpha:{}", herd.ports("Alpha").admin).into()),
        "{topology}"
    );
    wait_until(Duration::from_secs(10), "Alpha's admin", || {
        let alpha = format!("127.0.0.1:{}", herd.ports("Alpha").admin);
        http::get_ok(&alpha, "/healthz").is_ok()
    });
    // Opened by another name, the page reaches Alpha by that name.
    let dom = browse(
        &browser,
        &format!("http://{beta}/#token={TOKEN}"),
        "--dump-dom",
    );
    for name in ["Alpha", "Beta"] {
        let tag = format!("<g class=\"server\" data-server=\"{name}\"");
        assert_eq!(state_of(&dom, &tag), "up", "{name}:\n{dom}");
    }
}

#[test]
fn a_web_pages_post_to_a_client_port_is_closed_and_stores_nothing() {
    let browser = chromium();
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])]).build();
    herd.start_each();
    let alpha = format!("127.0.0.1:{}", herd.ports("Alpha").admin);
    wait_until(Duration::from_secs(10), "Alpha's admin listener", || {
        http::get_ok(&alpha, "/healthz").is_ok()
    });
    // A page of http://127.0.0.1:<port> (Alpha's own page; any page served
    // from this machine is the same to the client port).
    let origin = format!("http://{alpha}");
    let mut page = Browser::open(&browser, &format!("{origin}/"));
    wait_until(Duration::from_secs(10), "the page to load", || {
        page.eval("location.origin") == origin.as_str()
    });
    let client = herd.ports("Alpha").client;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let outcome = page.eval_promise(&format!(
        "fetch('http://127.0.0.1:{client}/', {{ method: 'POST', mode: 'no-cors', \
           body: 'IAMAT evil +34.068930-118.445127 {time}\\n' }})\
         .then(() => 'answered', e => 'failed: ' + e)"
    ));
    println!("the page's fetch: {outcome}");
    let refused = || {
        herd.metric("Alpha", "herd_http_refused_total", "")
            .unwrap_or(0.0)
    };
    wait_until(Duration::from_secs(10), "the POST refused", || {
        refused() >= 1.0
    });
    drop(page);
    // Anything Alpha stored it would have flooded before this later update.
    let marker = herd.ask(
        "Alpha",
        &format!("IAMAT after.page +34.068930-118.445127 {time}"),
    );
    herd.wait_for_at_line("Beta", "after.page", &marker);
    for server in ["Alpha", "Beta"] {
        assert_eq!(
            herd.ask(server, "WHATSAT evil 10 5"),
            "? WHATSAT evil 10 5",
            "{server} holds the page's IAMAT"
        );
    }
}

/// While servers were given different links (a rolling change), the page
/// says so in its header and rings the servers that know it; once they
/// agree, the mark goes.
#[test]
fn the_live_page_marks_a_herd_whose_servers_were_given_different_links() {
    let browser = chromium();
    let topology: &[(&str, &[&str])] = &[("Riley", &["Jaquez"]), ("Jaquez", &[]), ("Bernard", &[])];
    let mut herd = Herd::with_topology(topology)
        .env("HERD_ADMIN_TOKEN", TOKEN)
        .build();
    herd.start("Riley");
    // Jaquez starts with a file that adds a link to Bernard (not running).
    let original = herd.config.clone();
    let text = std::fs::read_to_string(&original).unwrap();
    let changed = herd.dir.path().join("Settings-changed.toml");
    let jaquez = text.replacen("neighbours = []", "neighbours = [\"Bernard\"]", 1);
    assert_ne!(jaquez, text);
    std::fs::write(&changed, jaquez).unwrap();
    herd.set_config(changed);
    herd.start("Jaquez");
    let url = format!(
        "http://127.0.0.1:{}/#token={TOKEN}",
        herd.ports("Riley").admin
    );
    wait_until(
        Duration::from_secs(20),
        "the page to mark the herd mixed",
        || {
            let dom = browse(&browser, &url, "--dump-dom");
            dom.contains("id=\"topology\" data-mixed=\"1\"")
                && tags_with(&dom, "data-server=\"Riley\"")
                    .iter()
                    .any(|t| t.contains("data-mixed=\"1\""))
        },
    );
    // Jaquez back on the herd's file: the herd agrees, the mark goes.
    herd.kill("Jaquez");
    herd.set_config(original);
    herd.start("Jaquez");
    wait_until(Duration::from_secs(20), "the mark to go", || {
        let dom = browse(&browser, &url, "--dump-dom");
        dom.contains("data-ready=\"1\"") && dom.contains("id=\"topology\" data-mixed=\"0\"")
    });
}
