//! The live page in a real browser: headless Chromium (Debian package
//! `chromium`, installed by `.ci/run`) loads a server's admin page while a
//! five-server herd runs, and the rendered DOM must show the five servers
//! and their six links up; after one server is SIGKILLed a fresh load must
//! show that server and its three links down and the others still up.
//! Screenshots of both pictures are kept under `target/test-artifacts/`.
//!
//! There is no skipping: without Chromium on PATH (or in `HERD_CHROMIUM`)
//! this test fails and says how to install it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
             (apt-get install -y chromium, as .ci/run does), or HERD_CHROMIUM=<path>"
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
    let profile = tempfile::tempdir().expect("a browser profile folder");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--virtual-time-budget=4000",
        ])
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
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    format!("data-link=\"{a}|{b}\"")
}

/// Whether every server answers `/status` with every link up.
fn all_links_up(herd: &Herd) -> bool {
    herd.names().iter().all(|name| {
        let address = format!("127.0.0.1:{}", herd.ports(name).admin);
        http::get_ok(&address, "/status")
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

#[test]
fn the_page_draws_five_servers_then_a_dead_one_with_its_links_down() {
    let browser = chromium();
    let mut herd = Herd::five().build();
    herd.start_each();
    wait_until(Duration::from_secs(15), "every link of the herd up", || {
        all_links_up(&herd)
    });
    for (i, (client, place)) in [
        ("kiwi.cs.ucla.edu", "+34.068930-118.445127"),
        ("tokyo.phone", "+35.6762+139.6503"),
        ("cape.town", "-33.9249+18.4241"),
    ]
    .iter()
    .enumerate()
    {
        let answer = herd.ask("Juzang", &format!("IAMAT {client} {place} 170000000{i}"));
        assert!(answer.starts_with("AT Juzang "), "{answer}");
    }
    let url = format!("http://127.0.0.1:{}/", herd.ports("Riley").admin);

    let dom = browse(&browser, &url, "--dump-dom");
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page never drew:\n{dom}"
    );
    let servers = tags_with(&dom, "data-server=\"");
    let drawn: Vec<&&str> = servers.iter().filter(|t| t.starts_with("<g ")).collect();
    assert_eq!(drawn.len(), 5, "five servers drawn:\n{dom}");
    for name in herd.names() {
        assert_eq!(
            state_of(&dom, &format!("<g class=\"server\" data-server=\"{name}\"")),
            "up"
        );
    }
    let links = [
        ("Riley", "Jaquez"),
        ("Riley", "Juzang"),
        ("Jaquez", "Bernard"),
        ("Juzang", "Campbell"),
        ("Juzang", "Bernard"),
        ("Campbell", "Bernard"),
    ];
    assert_eq!(tags_with(&dom, "data-link=\"").len(), links.len(), "{dom}");
    for (a, b) in links {
        assert_eq!(state_of(&dom, &link(a, b)), "up", "{a}-{b}");
    }
    // The three clients are on the map (everyone holds them by now).
    for client in ["kiwi.cs.ucla.edu", "tokyo.phone", "cape.town"] {
        assert!(
            !tags_with(&dom, &format!("data-client=\"{client}\"")).is_empty(),
            "{client} not drawn:\n{dom}"
        );
    }
    let shot = artifacts().join("herd-page.png");
    browse(&browser, &url, &format!("--screenshot={}", shot.display()));
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000));

    herd.kill("Bernard");
    let dom = browse(&browser, &url, "--dump-dom");
    assert_eq!(
        state_of(&dom, "<g class=\"server\" data-server=\"Bernard\""),
        "down"
    );
    for (a, b) in links {
        let expected = if a == "Bernard" || b == "Bernard" {
            "down"
        } else {
            "up"
        };
        assert_eq!(state_of(&dom, &link(a, b)), expected, "{a}-{b}:\n{dom}");
    }
    let shot = artifacts().join("herd-page-bernard-down.png");
    browse(&browser, &url, &format!("--screenshot={}", shot.display()));
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000));
}
