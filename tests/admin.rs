//! The admin listener over real HTTP (SPEC §6), against running `herd`
//! processes, or a server in the test process where one server alone is
//! asked: `/records`, `/healthz`, `/metrics`, `/status`, `/herd`,
//! `/places`, the page, and the `herdctl dump` / `herdctl status`
//! subcommands built on them; and who may read it (SPEC §7): no wildcard
//! CORS, unknown `Host` refused, the admin token.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::{iamat, metric_sample, wait_until, Herd};
use herd::ctl::http::{self, Response};

fn admin(herd: &Herd, name: &str) -> String {
    format!("127.0.0.1:{}", herd.ports(name).admin)
}

/// Waits until every server's admin listener answers (it is bound just after
/// the client listener the harness waits for).
fn wait_admin(herd: &Herd) {
    for name in herd.names() {
        wait_until(Duration::from_secs(10), &format!("{name}'s admin"), || {
            http::get_ok(&admin(herd, &name), "/healthz").is_ok()
        });
    }
}

/// `GET path` at `name` with the token the herd made (none when it was
/// given one: then the test sends it itself).
fn get(herd: &Herd, name: &str, path: &str) -> Response {
    herd.admin_get(name, path)
        .unwrap_or_else(|e| panic!("GET {path} at {name}: {e}"))
}

fn status(herd: &Herd, name: &str) -> serde_json::Value {
    let r = get(herd, name, "/status");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("status JSON")
}

/// herdctl with the herd's settings, as the user who started the herd (its
/// home holds the token the servers made).
fn herdctl(herd: &Herd, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herdctl"))
        .arg("--config")
        .arg(&herd.config)
        .args(args)
        .env_remove("HERD_SECRET")
        .env_remove("HERD_ADMIN_TOKEN")
        .env("HOME", herd.dir.path())
        .output()
        .expect("run herdctl")
}

#[test]
fn records_dump_every_record_sorted_and_herdctl_dump_prints_it() {
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])]).build();
    herd.start_each();
    wait_admin(&herd);
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

/// Alpha and Beta, linked, with every admin listener answering, their link
/// up and kiwi reported at Alpha and flooded to Beta; with kiwi's AT line.
fn pair_with_kiwi() -> (Herd, String) {
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])]).build();
    herd.start_each();
    wait_admin(&herd);
    wait_until(
        Duration::from_secs(10),
        "Alpha's link to Beta to be up",
        || status(&herd, "Alpha")["neighbours"][0]["state"] == "up",
    );
    let at = herd.ask("Alpha", "IAMAT kiwi +34.068930-118.445127 1700000000.25");
    herd.wait_for_at_line("Beta", "kiwi", &at);
    (herd, at)
}

#[test]
fn healthz_answers_ok() {
    let herd = Herd::one("Alpha").start_in_process();
    let health = get(&herd, "Alpha", "/healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
}

#[test]
fn metrics_are_prometheus_text_counting_requests_links_floods_and_admin_requests() {
    let (herd, _) = pair_with_kiwi();
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
        metric_sample(&text, name, labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
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
    // The link wait polled /status; /healthz was answered once (to
    // wait_admin); this scrape counts.
    assert!(value("herd_admin_requests_total", ",path=\"/status\"") >= 1.0);
    assert_eq!(
        value("herd_admin_requests_total", ",path=\"/healthz\""),
        1.0
    );
    assert_eq!(
        value("herd_admin_requests_total", ",path=\"/metrics\""),
        1.0
    );
}

#[test]
fn metrics_count_each_flood_received_and_each_whatsats_places_answer_and_time() {
    let (herd, at) = pair_with_kiwi();
    // Beta received Alpha's flood; its WHATSAT asked the offline places.
    let mut beta = herd.client("Beta");
    beta.send("WHATSAT kiwi 10 2");
    assert_eq!(beta.read_line(), at);
    beta.read_until_blank();
    let beta_text = get(&herd, "Beta", "/metrics").text();
    assert_eq!(
        metric_sample(&beta_text, "herd_floods_received_total", ""),
        Some(1.0)
    );
    assert_eq!(
        metric_sample(&beta_text, "herd_floods_stale_total", ""),
        Some(0.0)
    );
    // Every WHATSAT answered (the harness's polls included) asked the
    // offline places once and was timed once.
    let whatsats = metric_sample(
        &beta_text,
        "herd_requests_total",
        ",verb=\"WHATSAT\",outcome=\"ok\"",
    )
    .expect("WHATSAT count");
    assert!(whatsats >= 1.0, "{beta_text}");
    let places = |status: &str| {
        let labels = format!(",provider=\"offline\",status=\"{status}\"");
        metric_sample(&beta_text, "herd_places_answers_total", &labels).unwrap_or(0.0)
    };
    assert!(places("OK") >= 1.0, "{beta_text}");
    assert_eq!(
        places("OK") + places("ZERO_RESULTS"),
        whatsats,
        "{beta_text}"
    );
    assert_eq!(
        metric_sample(
            &beta_text,
            "herd_request_duration_seconds_count",
            ",verb=\"WHATSAT\""
        ),
        Some(whatsats)
    );
}

#[test]
fn status_is_json_of_the_links_and_their_state_the_record_count_and_the_clients() {
    let (herd, _) = pair_with_kiwi();
    let status_answer = get(&herd, "Beta", "/status");
    assert_eq!(status_answer.header("access-control-allow-origin"), None);
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
}

#[test]
fn herd_lists_every_server_with_its_links_and_its_admin_address() {
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])]).build();
    herd.start_each();
    wait_admin(&herd);
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
}

#[test]
fn the_live_page_is_self_contained_and_other_paths_are_not_found() {
    let herd = Herd::one("Alpha").start_in_process();
    // No script, style or image from elsewhere.
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
    wait_admin(&herd);
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

const TOKEN: &str = "test-admin-token-0123456789";

/// `GET path` at `name` with extra headers (e.g. a `Host` of our choosing),
/// and the token the herd made unless they carry an `Authorization`.
fn get_with(herd: &Herd, name: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let bearer = herd.admin_token().map(|t| bearer(&t));
    let mut all = headers.to_vec();
    if let Some(bearer) = &bearer {
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            all.push(("Authorization", bearer));
        }
    }
    http::request(&admin(herd, name), "GET", path, &all)
        .unwrap_or_else(|e| panic!("GET {path} at {name}: {e}"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `herd_admin_refused_total{reason=...}` of `name`.
fn refused(herd: &Herd, name: &str, reason: &str) -> f64 {
    let labels = format!(",reason=\"{reason}\"");
    herd.metric(name, "herd_admin_refused_total", &labels)
        .unwrap_or_else(|| panic!("no refused count for {reason} at {name}"))
}

#[test]
fn a_page_of_another_site_gets_no_cors_and_the_herds_own_pages_do() {
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])]).build();
    herd.start_each();
    wait_admin(&herd);
    herd.ask("Alpha", &iamat("kiwi", "1700000000"));

    // Another site's page (or a file, or a sandboxed frame): refused, and
    // never a wildcard that would let the browser hand over the answer.
    for origin in [
        "http://evil.example",
        "http://evil.example:13665",
        "null",
        "http://127.0.0.1:1",
    ] {
        for path in ["/status", "/records", "/herd"] {
            let r = get_with(&herd, "Alpha", path, &[("Origin", origin)]);
            assert_eq!(r.status, 403, "{origin} {path}: {}", r.text());
            assert_eq!(r.header("access-control-allow-origin"), None);
            assert!(!r.text().contains("kiwi"), "{}", r.text());
        }
    }
    // A same-site request without Origin (curl, herdctl) gets no CORS at all.
    let plain = get(&herd, "Alpha", "/status");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("access-control-allow-origin"), None);
    assert_eq!(plain.header("vary"), Some("Origin"));

    // The page served by Beta polls Alpha: its origin is echoed, not `*`.
    let page = format!("http://127.0.0.1:{}", herd.ports("Beta").admin);
    let r = get_with(&herd, "Alpha", "/status", &[("Origin", &page)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(page.as_str()));
    assert_eq!(r.header("vary"), Some("Origin"));
    // Its preflight (the page sends Authorization when it has a token).
    let preflight = http::request(
        &admin(&herd, "Alpha"),
        "OPTIONS",
        "/status",
        &[
            ("Origin", &page),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .expect("preflight");
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(page.as_str())
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("Authorization")
    );
    let foreign = http::request(
        &admin(&herd, "Alpha"),
        "OPTIONS",
        "/status",
        &[("Origin", "http://evil.example")],
    )
    .expect("preflight");
    assert_eq!(foreign.status, 403);
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    assert_eq!(refused(&herd, "Alpha", "origin"), 13.0);
}

#[test]
fn a_request_for_another_host_name_is_refused_counted_and_logged() {
    let mut herd = Herd::one("Alpha")
        .setting("admin", "allowed_hosts = \"herd.example.com, 10.9.8.7\"")
        .build();
    herd.start_each();
    wait_admin(&herd);
    herd.ask("Alpha", &iamat("kiwi", "1700000000"));
    let port = herd.ports("Alpha").admin;

    // What a DNS-rebinding page sends: its own name, our address and port.
    for host in [
        format!("rebind.evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("herd.example.com.evil.example:{port}"),
        "10.9.8.6".to_string(),
        "bad host".to_string(),
        String::new(),
    ] {
        for path in ["/records", "/status", "/herd", "/healthz", "/"] {
            let r = get_with(&herd, "Alpha", path, &[("Host", &host)]);
            assert_eq!(r.status, 421, "Host {host:?} {path}: {}", r.text());
            assert!(!r.text().contains("kiwi"), "{}", r.text());
        }
    }
    // Names and addresses of this server.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_string(),
        format!("[::1]:{port}"),
        format!("herd.example.com:{port}"),
        "10.9.8.7".to_string(),
    ] {
        let r = get_with(&herd, "Alpha", "/records", &[("Host", &host)]);
        assert_eq!(r.status, 200, "Host {host:?}: {}", r.text());
        assert!(r.text().contains("kiwi"), "{}", r.text());
    }
    assert_eq!(refused(&herd, "Alpha", "host"), 35.0);
    // Log files are flushed every 100 ms: wait for the lines, do not race them.
    herd.wait_for_log(
        "Alpha",
        &[
            "admin refused GET /records from 127.0.0.1:",
            "host \"rebind.evil.example:",
        ],
    );
}

#[test]
fn a_given_admin_token_guards_every_path_but_the_page_healthz_and_metrics() {
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])])
        .env("HERD_ADMIN_TOKEN", TOKEN)
        .build();
    herd.start_each();
    wait_admin(&herd);
    let at = herd.ask("Alpha", &iamat("kiwi", "1700000000"));
    herd.wait_for_at_line("Beta", "kiwi", &at);

    for path in [
        "/records",
        "/trace?client=kiwi",
        "/status",
        "/herd",
        "/places?south=0&west=0&north=1&east=1",
    ] {
        let none = get(&herd, "Alpha", path);
        assert_eq!(none.status, 401, "{path}: {}", none.text());
        assert_eq!(
            none.header("www-authenticate"),
            Some("Bearer realm=\"herd admin\"")
        );
        assert!(!none.text().contains("kiwi"));
        for wrong in [
            bearer("test-admin-token-012345678"),
            bearer("test-admin-token-0123456789x"),
            bearer("TEST-ADMIN-TOKEN-0123456789"),
            format!("Basic {TOKEN}"),
            TOKEN.to_string(),
        ] {
            let r = get_with(&herd, "Alpha", path, &[("Authorization", &wrong)]);
            assert_eq!(r.status, 401, "{path} with {wrong:?}");
        }
        let right = get_with(&herd, "Alpha", path, &[("Authorization", &bearer(TOKEN))]);
        assert_eq!(right.status, 200, "{path}: {}", right.text());
    }
    let records =
        http::get_with_token(&admin(&herd, "Alpha"), "/records", Some(TOKEN)).expect("records");
    assert_eq!(records.text(), format!("{at}\n"));
    // Orchestrators probe /healthz, scrapers /metrics (counts, no client's
    // data), and the page is static: all stay open.
    assert_eq!(get(&herd, "Alpha", "/healthz").status, 200);
    assert_eq!(get(&herd, "Alpha", "/").status, 200);
    let metrics = get(&herd, "Alpha", "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(!metrics.text().contains("kiwi"), "{}", metrics.text());
    assert_eq!(refused(&herd, "Alpha", "token"), 30.0);

    // herdctl sends the token given by flag or by environment.
    let address = admin(&herd, "Beta");
    let without = herdctl(&herd, &["--server", &address, "dump"]);
    assert!(!without.status.success());
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("--admin-token"),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
    let by_flag = herdctl(
        &herd,
        &["--server", &address, "--admin-token", TOKEN, "dump"],
    );
    assert!(
        by_flag.status.success(),
        "{}",
        String::from_utf8_lossy(&by_flag.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&by_flag.stdout), format!("{at}\n"));
    let by_env = Command::new(env!("CARGO_BIN_EXE_herdctl"))
        .args(["--config", &herd.config.display().to_string()])
        .args(["--server", "Alpha", "status"])
        .env("HERD_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("run herdctl");
    let text = common::stdout_of(&by_env);
    assert!(text.contains("2/2 servers up"), "{text}");
}

#[test]
fn with_no_token_given_the_servers_make_one_and_herdctl_finds_it_itself() {
    let mut herd = Herd::with_topology(&[("Alpha", &["Beta"]), ("Beta", &["Alpha"])]).build();
    herd.start_each();
    wait_admin(&herd);
    let at = herd.ask("Alpha", &iamat("kiwi", "1700000000"));
    herd.wait_for_at_line("Beta", "kiwi", &at);
    // Made once, in the home of the user who started the servers, owner-only.
    let token = herd.admin_token().expect("the servers made a token");
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token:?}"
    );
    let file = herd.dir.path().join(".herd.admin-token");
    let mode = std::fs::metadata(&file).expect("token file").permissions();
    assert_eq!(mode.mode() & 0o777, 0o600);
    // Without it no client's position; the page, /healthz and /metrics stay open.
    for path in [
        "/status",
        "/records",
        "/herd",
        "/places?south=0&west=0&north=1&east=1",
    ] {
        let r = http::get(&admin(&herd, "Alpha"), path).expect("an answer");
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(!r.text().contains("kiwi"), "{path}: {}", r.text());
    }
    for path in ["/", "/healthz", "/metrics"] {
        let r = http::get(&admin(&herd, "Alpha"), path).expect("an answer");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(!r.text().contains("kiwi"), "{path}: {}", r.text());
    }
    assert_eq!(get(&herd, "Beta", "/records").text(), format!("{at}\n"));

    // `herdctl status` with no arguments, where the settings are: the
    // first server's admin port, the token from the file the servers made.
    let bare = Command::new(env!("CARGO_BIN_EXE_herdctl"))
        .arg("status")
        .current_dir(herd.dir.path())
        .env("HOME", herd.dir.path())
        .env_remove("HERD_ADMIN_TOKEN")
        .env_remove("HERD_CONFIG")
        .output()
        .expect("run herdctl");
    let stdout = common::stdout_of(&bare);
    assert!(stdout.contains("2/2 servers up"), "{stdout}");
    let dump = herdctl(&herd, &["--server", "Beta", "dump"]);
    assert_eq!(String::from_utf8_lossy(&dump.stdout), format!("{at}\n"));

    // `herdctl page`: the live page with the token in its fragment.
    let page = herdctl(&herd, &["--server", "Beta", "page"]);
    assert!(page.status.success());
    assert_eq!(
        String::from_utf8_lossy(&page.stdout).trim_end(),
        format!(
            "http://127.0.0.1:{}/#token={token}",
            herd.ports("Beta").admin
        )
    );
    // Someone else (another home) has no token: herdctl says how to give one.
    let stranger = tempfile::tempdir().expect("another home");
    let out = Command::new(env!("CARGO_BIN_EXE_herdctl"))
        .args(["--config", &herd.config.display().to_string(), "status"])
        .env("HOME", stranger.path())
        .env_remove("HERD_ADMIN_TOKEN")
        .output()
        .expect("run herdctl");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no admin token") && stderr.contains("--admin-token"),
        "{stderr}"
    );
}

#[test]
fn bad_admin_tokens_are_refused_and_a_token_file_is_made_where_it_is_named() {
    let herd = Herd::one("Alpha").build();
    // A token too short to be a secret is refused at start.
    let short = [("HERD_ADMIN_TOKEN", "short")];
    let out = herd.run_to_exit("Alpha", &short);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 16"));
    let wide = [("HERD_SERVERS__ALPHA__ADMIN_LISTEN", "0.0.0.0")];

    // A token file others can read is refused, as the herd secret's is.
    let dir = tempfile::tempdir().expect("temporary folder");
    let exposed = dir.path().join("exposed-token");
    std::fs::write(&exposed, format!("{TOKEN}\n")).expect("write the token file");
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let exposed_path = exposed.display().to_string();
    let out = herd.run_to_exit(
        "Alpha",
        &[wide[0], ("HERD_ADMIN__TOKEN_FILE", exposed_path.as_str())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the admin token file") && stderr.contains("chmod 600"),
        "{stderr}"
    );

    // Given a token file that does not exist yet (on a volume the servers
    // share, say), the server creates it with a random token, owner-only;
    // the token guards the records, and herdctl finds it through the
    // settings.
    let file = dir.path().join("shared").join("admin-token");
    let mut herd = Herd::one("Alpha")
        .setting(
            "admin",
            &format!("token_file = {:?}", file.display().to_string()),
        )
        .env(wide[0].0, wide[0].1)
        .build();
    herd.start_each();
    wait_admin(&herd);
    let token = std::fs::read_to_string(&file).expect("the token file was created");
    let token = token.trim();
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token:?}"
    );
    let mode = std::fs::metadata(&file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let at = herd.ask("Alpha", &iamat("kiwi", "1700000000"));
    assert_eq!(get(&herd, "Alpha", "/records").status, 401);
    let records = http::get_with_token(&admin(&herd, "Alpha"), "/records", Some(token));
    assert_eq!(records.map(|r| r.text()), Ok(format!("{at}\n")));
    let dump = herdctl(&herd, &["--server", "Alpha", "dump"]);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&dump.stdout), format!("{at}\n"));
}

#[test]
fn places_answers_the_base_map_of_a_box_and_refuses_a_bad_one() {
    let herd = Herd::one("Alpha").start_in_process();
    wait_admin(&herd);
    let la = "/places?south=33.8&west=-118.7&north=34.3&east=-118.0";
    let mut layer = serde_json::Value::Null;
    wait_until(Duration::from_secs(20), "the places table to load", || {
        let r = get(&herd, "Alpha", la);
        assert_eq!(r.status, 200, "{}", r.text());
        layer = serde_json::from_slice(&r.body).expect("places JSON");
        layer["loaded"] == true
    });
    let names = layer["names"].as_array().expect("names");
    assert!(
        names.iter().any(|n| n[2] == "Santa Monica"),
        "{} names",
        names.len()
    );
    assert!(!layer["dots"].as_array().expect("dots").is_empty());
    let world = get(
        &herd,
        "Alpha",
        "/places?south=-90&west=-180&north=90&east=180",
    );
    let world: serde_json::Value = serde_json::from_slice(&world.body).expect("JSON");
    let dots = world["dots"].as_array().map_or(0, Vec::len);
    assert!((5_000..40_000).contains(&dots), "{dots} dots");
    assert_eq!(world["names"].as_array().map(Vec::len), Some(0));
    for bad in [
        "/places",
        "/places?south=1&west=0&north=0&east=1",
        "/places?south=NaN&west=0&north=1&east=1",
        "/places?south=0&west=0&north=1&east=1e999",
    ] {
        assert_eq!(get(&herd, "Alpha", bad).status, 400, "{bad}");
    }
    assert_eq!(refused(&herd, "Alpha", "query"), 4.0);
}
