//! Durability (SPEC §4, last paragraph; README "Guarantees"): with a data
//! folder, an answered IAMAT survives SIGKILL of its server and of the whole
//! herd, and a restarted server serves its records from its first request.
//! Real `herd` processes, real redb files, real SIGKILL.

mod common;
#[path = "common/zero_loss.rs"]
mod zero_loss;

use std::sync::Mutex;
use std::time::Duration;

use common::{iamat, wait_until, Herd};
use zero_loss::{dump, dump_now, update, wait_converged, Ledger};

/// `count` IAMATs for `clients` distinct clients, times spread so that some
/// arrive older than what the server already holds (stale, still answered).
fn updates(prefix: &str, count: usize, clients: usize, seed: u64) -> Vec<String> {
    (0..count)
        .map(|i| {
            let wobble = (i as u64).wrapping_mul(seed) % 7;
            iamat(
                &format!("{prefix}-{}", i % clients),
                &format!("{}.{:09}", 1_700_000_000 + i as u64 / 3, wobble * 1000),
            )
        })
        .collect()
}

fn solo(durability: &str) -> Herd {
    Herd::one("Solo")
        .setting("herd", "data_dir = \"data\"")
        .setting("herd", &format!("durability = \"{durability}\""))
        .build()
}

#[test]
fn answered_updates_survive_sigkill_and_are_served_at_once() {
    let mut herd = solo("sync");
    herd.restart("Solo");
    let ledger = Mutex::new(Ledger::default());
    // Four pipelined connections at once: the journal commits them in groups.
    std::thread::scope(|s| {
        for c in 0..4 {
            let (herd, ledger) = (&herd, &ledger);
            s.spawn(move || update(herd, ledger, "Solo", &updates(&format!("k{c}"), 500, 50, 7)));
        }
    });
    let ledger = ledger.into_inner().unwrap();
    assert_eq!(ledger.acked.len(), 200);
    herd.kill("Solo");
    herd.restart("Solo");
    // No waiting: the first answers already come from the loaded records.
    let first = ledger.acked.values().next().unwrap();
    assert_eq!(
        herd.whatsat_at_line("Solo", zero_loss::client_of(first))
            .as_deref(),
        Some(first.as_str())
    );
    let records = dump_now(&herd, "Solo");
    ledger.check("Solo", &records).unwrap();
}

#[test]
fn async_mode_answers_first_and_loses_nothing_on_sigterm() {
    let mut herd = solo("async");
    herd.restart("Solo");
    let ledger = Mutex::new(Ledger::default());
    update(&herd, &ledger, "Solo", &updates("a", 1000, 100, 3));
    let ledger = ledger.into_inner().unwrap();
    assert!(herd.terminate("Solo").success());
    herd.restart("Solo");
    ledger.check("Solo", &dump_now(&herd, "Solo")).unwrap();
}

#[test]
fn a_server_without_a_data_folder_restarts_empty() {
    // The control experiment: what the data folder is for.
    let mut herd = Herd::one("Solo").build();
    herd.restart("Solo");
    let answer = herd.ask("Solo", &iamat("gone", "1700000000"));
    assert!(answer.starts_with("AT Solo "));
    herd.kill("Solo");
    herd.restart("Solo");
    assert_eq!(herd.whatsat_at_line("Solo", "gone"), None);
}

#[test]
fn whole_herd_restart_loses_no_acknowledged_update() {
    let mut herd = Herd::five().setting("herd", "data_dir = \"data\"").build();
    zero_loss::start_all(&mut herd);
    let names = herd.names();
    let ledger = Mutex::new(Ledger::default());
    // Every server takes updates on two connections at once, and the herd
    // is SIGKILLed the moment the last answer is in: floods are still on
    // the wire, so only the journals can hold everything.
    let mut at_server: Vec<(String, Vec<String>)> = Vec::new();
    std::thread::scope(|s| {
        for (i, name) in names.iter().enumerate() {
            for c in 0..2 {
                let lines = updates(&format!("w{i}{c}"), 400, 40, 11 + i as u64);
                let (herd, ledger) = (&herd, &ledger);
                s.spawn(move || update(herd, ledger, name, &lines));
            }
        }
    });
    let ledger = ledger.into_inner().unwrap();
    for name in &names {
        herd.kill(name);
    }
    for name in &names {
        let mine: Vec<String> = ledger
            .acked
            .values()
            .filter(|l| l.starts_with(&format!("AT {name} ")))
            .cloned()
            .collect();
        at_server.push((name.clone(), mine));
    }
    assert_eq!(
        ledger.acked.len(),
        5 * 2 * 40,
        "sent {}, unanswered {:?}",
        ledger.sent,
        ledger.unanswered.keys().collect::<Vec<_>>()
    );
    // Each server alone first: its own answered records come from its disk.
    for (name, mine) in &at_server {
        herd.restart(name);
        let records = dump_now(&herd, name);
        for line in mine {
            assert!(records.contains(line), "{name} lost {line}");
        }
        herd.kill(name);
    }
    for name in &names {
        herd.restart(name);
    }
    wait_converged(&herd, &ledger, &names, Duration::from_secs(30));
    // And a clean stop of everything keeps it too.
    for name in &names {
        assert!(herd.terminate(name).success());
    }
    for name in &names {
        herd.restart(name);
    }
    wait_until(Duration::from_secs(10), "every server to answer", || {
        names.iter().all(|n| dump(&herd, n).is_some())
    });
    for name in &names {
        ledger.check(name, &dump(&herd, name).unwrap()).unwrap();
    }
}
