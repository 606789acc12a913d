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
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
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
    let mut expected = vec![amy.clone(), zed_new.clone()];
    expected.sort();
    let expected = format!("{}\n", expected.join("\n"));
    for name in ["Alpha", "Beta"] {
        wait_until(Duration::from_secs(10), &format!("{name} to hold both"), || {
            get(&herd, name, "/records").text() == expected
        });
    }

    let by_name = herdctl(&herd, &["--server", "Beta", "dump"]);
    assert!(by_name.status.success(), "{}", String::from_utf8_lossy(&by_name.stderr));
    assert_eq!(String::from_utf8_lossy(&by_name.stdout), expected);
    let by_address = herdctl(&herd, &["--server", &admin(&herd, "Alpha"), "dump"]);
    assert_eq!(String::from_utf8_lossy(&by_address.stdout), expected);

    // The client port is not the admin port: a clear failure, not garbage.
    let wrong = herdctl(
        &herd,
        &["--server", &format!("127.0.0.1:{}", herd.ports("Alpha").client), "dump"],
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("admin port"));
}
