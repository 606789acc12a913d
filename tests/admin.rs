//! The admin listener over real HTTP against running `herd` processes
//! (SPEC §6): `/records`, `/healthz`, `/metrics`, `/status`, `/herd`, the
//! page, and the `herdctl dump` / `herdctl status` subcommands built on them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{iamat, wait_until, Herd};
use herd::ctl::http::{self, Response};

fn admin(herd: &Herd, name: &str) -> String {
    format!("127.0.0.1:{}", herd.ports(name).admin)
}

fn get(herd: &Herd, name: &str, path: &str) -> Response {
    http::get(&admin(herd, name), path).unwrap_or_else(|e| panic!("GET {path} at {name}: {e}"))
}

fn status(herd: &Herd, name: &str) -> serde_json::Value {
    let r = get(herd, name, "/status");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("status JSON")
}

/// The value of the sample `name{labels}` in a Prometheus text, where
/// `labels` is the exact label text after `server="..."`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?.strip_prefix("{server=\"")?;
        let (_, after) = rest.split_once('"')?;
        (after == format!("{labels}}}")).then(|| value.parse().ok())?
    })
}

fn herdctl(herd: &Herd, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herdctl"))
        .arg("--config")
        .arg(&herd.config)
        .args(args)
        .env_remove("HERD_SECRET")
        .output()
        .expect("run herdctl")
}

#[test]
fn records_dump_every_record_sorted_and_herdctl_dump_prints_it() {
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])]).build();
    herd.start_each();
    let empty = get(&herd, "Alpha", "/records");
    assert_eq!(empty.status, 200);
    assert_eq!(empty.header("content-type"), Some("text/plain"));
    assert!(empty.body.is_empty(), "{}", empty.text());

    let zed = herd.ask("Alpha", &iamat("zed", "1700000001.5"));
    let amy = herd.ask("Beta", &iamat("amy", "1700000002"));
    // A newer position replaces the older one: one line per client.
    herd.ask("Alpha", &iamat("zed", "1700000000"));
    let zed_new = herd.ask("Alpha", &iamat("zed", "1700000003.25"));
    assert!(zed.starts_with("AT Alpha "), "{zed}");
    let mut expected = [amy.clone(), zed_new.clone()];
    expected.sort();
    let expected = format!("{}\n", expected.join("\n"));
    for name in ["Alpha", "Beta"] {
        wait_until(
            Duration::from_secs(10),
            &format!("{name} to hold both"),
            || get(&herd, name, "/records").text() == expected,
        );
    }

    let by_name = herdctl(&herd, &["--server", "Beta", "dump"]);
    assert!(
        by_name.status.success(),
        "{}",
        String::from_utf8_lossy(&by_name.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&by_name.stdout), expected);
    let by_address = herdctl(&herd, &["--server", &admin(&herd, "Alpha"), "dump"]);
    assert_eq!(String::from_utf8_lossy(&by_address.stdout), expected);

    // The client port is not the admin port: a clear failure, not garbage.
    let wrong = herdctl(
        &herd,
        &[
            "--server",
            &format!("127.0.0.1:{}", herd.ports("Alpha").client),
            "dump",
        ],
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("admin port"));
}

#[test]
fn healthz_metrics_status_and_herd_describe_a_running_herd() {
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])]).build();
    herd.start_each();

    let health = get(&herd, "Alpha", "/healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    // Links come up, then traffic: an IAMAT, a WHATSAT, an invalid line.
    wait_until(
        Duration::from_secs(10),
        "Alpha's link to Beta to be up",
        || status(&herd, "Alpha")["neighbours"][0]["state"] == "up",
    );
    let at = herd.ask("Alpha", "IAMAT kiwi +34.068930-118.445127 1700000000.25");
    herd.wait_for_at_line("Beta", "kiwi", &at);
    assert_eq!(herd.ask("Alpha", "HELLO there"), "? HELLO there");

    let metrics = get(&herd, "Alpha", "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let text = metrics.text();
    assert!(
        text.contains("# TYPE herd_requests_total counter"),
        "{text}"
    );
    let value = |name: &str, labels: &str| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
    };
    assert_eq!(
        value("herd_requests_total", ",verb=\"IAMAT\",outcome=\"ok\""),
        1.0
    );
    assert_eq!(value("herd_invalid_lines_total", ""), 1.0);
    assert_eq!(value("herd_records", ""), 1.0);
    assert_eq!(value("herd_link_up", ",neighbour=\"Beta\""), 1.0);
    assert_eq!(
        value("herd_link_state", ",neighbour=\"Beta\",state=\"up\""),
        1.0
    );
    assert_eq!(
        value("herd_link_state", ",neighbour=\"Beta\",state=\"down\""),
        0.0
    );
    assert_eq!(value("herd_floods_sent_total", ""), 1.0);
    assert_eq!(
        value("herd_request_duration_seconds_count", ",verb=\"IAMAT\""),
        1.0
    );
    assert_eq!(
        value(
            "herd_request_duration_seconds_bucket",
            ",verb=\"IAMAT\",le=\"+Inf\""
        ),
        1.0
    );
    assert!(value("herd_sync_runs_total", "") >= 1.0);
    // The wait above polled /status; /healthz was asked once; this scrape counts.
    assert!(value("herd_admin_requests_total", ",path=\"/status\"") >= 1.0);
    assert_eq!(
        value("herd_admin_requests_total", ",path=\"/healthz\""),
        1.0
    );
    assert_eq!(
        value("herd_admin_requests_total", ",path=\"/metrics\""),
        1.0
    );
    // Beta received Alpha's flood; its WHATSAT asked the offline places.
    let mut beta = herd.client("Beta");
    beta.send("WHATSAT kiwi 10 2");
    assert_eq!(beta.read_line(), at);
    beta.read_until_blank();
    let beta_text = get(&herd, "Beta", "/metrics").text();
    assert_eq!(
        sample(&beta_text, "herd_floods_received_total", ""),
        Some(1.0)
    );
    assert_eq!(sample(&beta_text, "herd_floods_stale_total", ""), Some(0.0));
    // Every WHATSAT answered (the harness's polls included) asked the
    // offline places once and was timed once.
    let whatsats = sample(
        &beta_text,
        "herd_requests_total",
        ",verb=\"WHATSAT\",outcome=\"ok\"",
    )
    .expect("WHATSAT count");
    assert!(whatsats >= 1.0, "{beta_text}");
    let places = |status: &str| {
        let labels = format!(",provider=\"offline\",status=\"{status}\"");
        sample(&beta_text, "herd_places_answers_total", &labels).unwrap_or(0.0)
    };
    assert!(places("OK") >= 1.0, "{beta_text}");
    assert_eq!(
        places("OK") + places("ZERO_RESULTS"),
        whatsats,
        "{beta_text}"
    );
    assert_eq!(
        sample(
            &beta_text,
            "herd_request_duration_seconds_count",
            ",verb=\"WHATSAT\""
        ),
        Some(whatsats)
    );

    let status_answer = get(&herd, "Beta", "/status");
    assert_eq!(
        status_answer.header("access-control-allow-origin"),
        Some("*")
    );
    let s: serde_json::Value = serde_json::from_slice(&status_answer.body).unwrap();
    assert_eq!(s["server"], "Beta");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["records"], 1);
    assert_eq!(s["shutting_down"], false);
    assert!(s["uptime_seconds"].is_u64());
    assert_eq!(s["neighbours"][0]["name"], "Alpha");
    assert_eq!(s["neighbours"][0]["state"], "up");
    assert!(s["neighbours"][0]["since"]
        .as_u64()
        .is_some_and(|t| t > 1_600_000_000));
    assert_eq!(s["clients"][0]["client"], "kiwi");
    assert_eq!(s["clients"][0]["lat"], 34.06893);
    assert_eq!(s["clients"][0]["lon"], -118.445127);
    assert_eq!(s["clients"][0]["origin"], "Alpha");

    let topology: serde_json::Value =
        serde_json::from_slice(&get(&herd, "Alpha", "/herd").body).unwrap();
    let servers = topology["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2);
    let member = |name: &str| {
        servers
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {topology}"))
    };
    assert_eq!(member("Alpha")["neighbours"], serde_json::json!(["Beta"]));
    assert_eq!(member("Beta")["neighbours"], serde_json::json!(["Alpha"]));
    assert_eq!(
        member("Beta")["admin_url"],
        format!("http://127.0.0.1:{}", herd.ports("Beta").admin)
    );

    // The page is self-contained: no script, style or image from elsewhere.
    let page = get(&herd, "Alpha", "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let html = page.text();
    assert!(html.contains("<svg id=\"graph\""));
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
    ] {
        assert!(!html.contains(external), "the page loads {external}...");
    }
    assert_eq!(get(&herd, "Alpha", "/nothing-here").status, 404);
}

#[test]
fn herdctl_status_shows_servers_and_links_and_a_dead_server() {
    let mut herd = Herd::with_topology(&[
        ("Alpha", &["Beta", "Gamma"]),
        ("Beta", &["Alpha"]),
        ("Gamma", &["Alpha"]),
    ])
    .build();
    herd.start_each();
    let run = |herd: &Herd| {
        let out = herdctl(herd, &["--server", "Alpha", "status"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(Duration::from_secs(10), "all links up", || {
        run(&herd).contains("3/3 servers up, 2/2 links up")
    });
    herd.ask("Beta", &iamat("kiwi", "1700000000"));
    wait_until(Duration::from_secs(10), "the record everywhere", || {
        run(&herd).contains("1 records at most")
    });
    let text = run(&herd);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Alpha") && l.contains(" up ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("Alpha -- Beta") && l.ends_with("up")),
        "{text}"
    );

    herd.kill("Gamma");
    let text = run(&herd);
    assert!(
        text.lines().any(|l| l.trim_end() == "Gamma   down"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("Alpha -- Gamma")
            && l.contains("down")
            && l.contains("Gamma: not answering")),
        "{text}"
    );
    assert!(text.contains("2/3 servers up, 1/2 links up"), "{text}");
}

#[test]
fn every_server_of_an_all_in_one_process_has_its_own_admin_listener() {
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])]).build();
    herd.start_all_in_one();
    for name in ["Alpha", "Beta"] {
        wait_until(Duration::from_secs(10), &format!("{name}'s admin"), || {
            http::get_ok(&admin(&herd, name), "/healthz").is_ok()
        });
        assert_eq!(status(&herd, name)["server"], name);
        let topology: serde_json::Value =
            serde_json::from_slice(&get(&herd, name, "/herd").body).unwrap();
        assert_eq!(topology["server"], name);
        assert_eq!(topology["servers"].as_array().map(Vec::len), Some(2));
    }
}
