//! The fault suite (SPEC §4 guarantee, §7 "neighbour dies", README
//! "Guarantees"): real `herd` processes SIGKILLed and restarted, links cut,
//! frozen and healed by TCP proxies the test places between neighbours
//! (every directed link dials its own proxy through the `[servers.x.links]`
//! override), and an invariant checker that compares complete dumps of all
//! five servers with what the clients were told (tests/common/zero_loss.rs).
//!
//! The randomized run prints its seed; `FAULT_SEED=<n>` replays it.

mod common;
#[path = "common/zero_loss.rs"]
mod zero_loss;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{iamat, Client, Herd};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zero_loss::{dump_now, proxy_every_link, update, update_at, wait_converged, Ledger, Proxy};

type Proxies = BTreeMap<(String, String), Proxy>;

/// The servers reachable from `origin` over links between `alive` servers.
fn reach(herd: &Herd, origin: &str, alive: &[String]) -> BTreeSet<String> {
    let mut seen = BTreeSet::from([origin.to_string()]);
    let mut todo = vec![origin.to_string()];
    while let Some(at) = todo.pop() {
        for other in alive {
            let (a, b) = (herd.ports(&at), herd.ports(other));
            let linked = a.neighbours.contains(other) || b.neighbours.contains(&at);
            if linked && seen.insert(other.clone()) {
                todo.push(other.clone());
            }
        }
    }
    seen
}

fn time(n: usize) -> String {
    format!("1700000000.{n:09}")
}

#[test]
fn every_pair_of_servers_killed_in_turn() {
    let mut herd = Herd::five().build();
    zero_loss::start_all(&mut herd);
    let names = herd.names();
    let ledger = Mutex::new(Ledger::default());
    let mut n = 0;
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            herd.kill(a);
            herd.kill(b);
            let alive: Vec<String> = names
                .iter()
                .filter(|s| *s != a && *s != b)
                .cloned()
                .collect();
            let mut placed = Vec::new();
            for origin in &alive {
                n += 1;
                let client = format!("pair-{a}-{b}-at-{origin}");
                let lines = [iamat(&client, &time(n))];
                update(&herd, &ledger, origin, &lines);
                let answer = ledger.lock().unwrap().acked[&client].clone();
                placed.push((origin.clone(), client, answer));
            }
            // Exactly the live servers connected to the origin answer.
            for (origin, client, answer) in &placed {
                for s in reach(&herd, origin, &alive) {
                    herd.wait_for_at_line(&s, client, answer);
                }
            }
            for (origin, client, _) in &placed {
                let reached = reach(&herd, origin, &alive);
                for s in alive.iter().filter(|s| !reached.contains(*s)) {
                    assert_eq!(
                        herd.whatsat_at_line(s, client),
                        None,
                        "{s} cannot know {client}"
                    );
                }
            }
            for dead in [a, b] {
                assert!(Client::try_connect(herd.ports(dead).client).is_none());
            }
            // Back they come, empty (no data folder here): sync refills them.
            herd.restart(a);
            herd.restart(b);
            let ledger = ledger.lock().unwrap();
            wait_converged(&herd, &ledger, &names, Duration::from_secs(20));
        }
    }
    assert_eq!(ledger.lock().unwrap().acked.len(), 30);
}

/// Cuts (both directions) every link touching `name`.
fn isolate(proxies: &Proxies, name: &str) {
    for ((from, to), proxy) in proxies {
        if from == name || to == name {
            proxy.cut();
        }
    }
}

fn heal_all(proxies: &Proxies) {
    for proxy in proxies.values() {
        proxy.heal();
    }
}

#[test]
fn partitions_cut_and_heal_while_updates_flow() {
    // A tiny hold buffer, so that the partitions overflow it and the
    // fall-back (drop the buffer, sync on reconnect) is what heals them.
    let mut herd = Herd::five()
        .setting("limits", "max_pending_records = 20")
        .build();
    let proxies = proxy_every_link(&herd);
    zero_loss::start_all(&mut herd);
    let names = herd.names();
    let ledger = Mutex::new(Ledger::default());

    // Campbell cut off: what happens on either side stays on that side.
    isolate(&proxies, "Campbell");
    let riley: Vec<String> = (0..100)
        .map(|i| iamat(&format!("west-{i}"), &time(i)))
        .collect();
    let campbell: Vec<String> = (0..100)
        .map(|i| iamat(&format!("east-{i}"), &time(i)))
        .collect();
    update(&herd, &ledger, "Riley", &riley);
    update(&herd, &ledger, "Campbell", &campbell);
    let acked: Vec<String> = ledger.lock().unwrap().acked.values().cloned().collect();
    let (west, east): (Vec<String>, Vec<String>) =
        acked.into_iter().partition(|l| l.starts_with("AT Riley "));
    for name in ["Riley", "Jaquez", "Juzang", "Bernard"] {
        common::wait_until(
            Duration::from_secs(15),
            &format!("{name} to hold the west"),
            || {
                let records = dump_now(&herd, name);
                west.iter().all(|l| records.contains(l))
            },
        );
        let records = dump_now(&herd, name);
        assert!(
            east.iter().all(|l| !records.contains(l)),
            "{name} saw across the cut"
        );
    }
    let mut alone = dump_now(&herd, "Campbell");
    alone.sort();
    let mut east = east;
    east.sort();
    assert_eq!(alone, east, "Campbell holds exactly its own side");

    // An asymmetric cut: Juzang's floods to Bernard stop, Bernard's to
    // Juzang still flow.
    heal_all(&proxies);
    proxies[&("Juzang".to_string(), "Bernard".to_string())].cut();
    wait_converged(
        &herd,
        &ledger.lock().unwrap(),
        &names,
        Duration::from_secs(20),
    );

    // Updates flow at every server while links flap every few milliseconds.
    let done = AtomicUsize::new(0);
    let ports: BTreeMap<String, u16> = names
        .iter()
        .map(|n| (n.clone(), herd.ports(n).client))
        .collect();
    std::thread::scope(|s| {
        for w in 0..2 {
            let (ports, ledger, names, done) = (&ports, &ledger, &names, &done);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(w);
                for batch in 0..20 {
                    let at = &names[rng.random_range(0..names.len())];
                    let lines: Vec<String> = (0..25)
                        .map(|i| {
                            let client = format!("flap-{}", rng.random_range(0..200));
                            iamat(&client, &time(1000 + batch * 100 + i + w as usize))
                        })
                        .collect();
                    update_at(ports[at], at, ledger, &lines).expect("no server is down here");
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        let mut rng = StdRng::seed_from_u64(99);
        let links: Vec<&Proxy> = proxies.values().collect();
        while done.load(Ordering::Relaxed) < 2 {
            let link = links[rng.random_range(0..links.len())];
            match rng.random_range(0..3) {
                0 => link.cut(),
                1 => link.freeze(),
                _ => link.heal(),
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    });
    heal_all(&proxies);
    wait_converged(
        &herd,
        &ledger.lock().unwrap(),
        &names,
        Duration::from_secs(30),
    );
}

/// A tree has no spare paths: a link that carries nothing and never closes
/// (a frozen path, a neighbour cut off without a word) is found by its
/// missing acknowledgements, and what goes down the tree through it is
/// flooded around it. Riley's updates go to Bernard through Jaquez.
#[test]
fn updates_go_around_a_link_that_silently_carries_nothing() {
    let mut herd = Herd::five().build();
    let proxies = proxy_every_link(&herd);
    zero_loss::start_all(&mut herd);
    herd.wait_links_up();
    proxies[&("Riley".to_string(), "Jaquez".to_string())].freeze();
    let answer = herd.ask("Riley", &iamat("around.frozen", &time(1)));
    let started = Instant::now();
    for name in ["Juzang", "Campbell", "Bernard", "Jaquez"] {
        herd.wait_for_at_line(name, "around.frozen", &answer);
    }
    eprintln!("around a frozen link in {:?}", started.elapsed());
    heal_all(&proxies);
}

#[test]
fn a_frozen_or_dead_neighbour_never_slows_answers() {
    // A generous write timeout: were the store or the answers ever to wait
    // on a neighbour's socket, they would wait this long.
    let mut herd = Herd::five()
        .setting("limits", "write_timeout_ms = 20000")
        .setting("limits", "peer_max_backlog_bytes = 4096")
        .setting("limits", "max_pending_records = 500")
        .build();
    let proxies = proxy_every_link(&herd);
    zero_loss::start_all(&mut herd);
    let names = herd.names();
    let ledger = Mutex::new(Ledger::default());
    // Riley's links stay "up" but carry nothing: its neighbours stopped reading.
    for to in ["Jaquez", "Juzang"] {
        proxies[&("Riley".to_string(), to.to_string())].freeze();
    }
    let started = Instant::now();
    for round in 0..4 {
        let lines: Vec<String> = (0..1000)
            .map(|i| iamat(&format!("busy-{i}"), &time(round * 1000 + i)))
            .collect();
        update(&herd, &ledger, "Riley", &lines);
    }
    let frozen = started.elapsed();
    // And a dead neighbour: Juzang killed, Riley keeps answering.
    herd.kill("Juzang");
    let started = Instant::now();
    let lines: Vec<String> = (0..1000)
        .map(|i| iamat(&format!("alone-{i}"), &time(i)))
        .collect();
    update(&herd, &ledger, "Riley", &lines);
    let dead = started.elapsed();
    eprintln!("4000 answers with frozen links: {frozen:?}; 1000 with a dead neighbour: {dead:?}");
    assert!(
        frozen < Duration::from_secs(10) && dead < Duration::from_secs(5),
        "4000 answers took {frozen:?} with frozen links, 1000 took {dead:?} with a dead neighbour"
    );
    assert!(herd.whatsat_at_line("Riley", "busy-999").is_some());
    heal_all(&proxies);
    herd.restart("Juzang");
    wait_converged(
        &herd,
        &ledger.lock().unwrap(),
        &names,
        Duration::from_secs(45),
    );
}

#[test]
fn randomized_kills_restarts_and_partitions_then_heal() {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("randomized fault run: FAULT_SEED={seed}");
    let mut herd = Herd::five()
        .setting("herd", "data_dir = \"data\"")
        .setting("herd", "log_lines = false")
        .env("HERD_SECRET", "randomized fault run")
        .build();
    let proxies = proxy_every_link(&herd);
    zero_loss::start_all(&mut herd);
    let names = herd.names();
    let ports: BTreeMap<String, u16> = names
        .iter()
        .map(|n| (n.clone(), herd.ports(n).client))
        .collect();
    let ledger = Mutex::new(Ledger::default());
    let done = AtomicUsize::new(0);
    const WORKERS: u64 = 4;
    const UPDATES: usize = 10_000;
    const BATCH: usize = 50;
    let started = Instant::now();
    let mut actions: BTreeMap<&str, usize> = BTreeMap::new();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (ports, ledger, names, done) = (&ports, &ledger, &names, &done);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(w));
                let mut sent = 0;
                while sent < UPDATES / WORKERS as usize {
                    let lines: Vec<String> = (0..BATCH)
                        .map(|_| {
                            let client = format!("r-{}", rng.random_range(0..2000));
                            let t = format!(
                                "{}.{:09}",
                                1_700_000_000 + rng.random_range(0..100_000u64),
                                rng.random_range(0..1_000_000_000u32)
                            );
                            iamat(&client, &t)
                        })
                        .collect();
                    // A random server; while it is down, the next one.
                    let first = rng.random_range(0..names.len());
                    let taken = (0..names.len()).find_map(|k| {
                        let at = &names[(first + k) % names.len()];
                        update_at(ports[at], at, ledger, &lines)
                    });
                    match taken {
                        Some(_) => sent += BATCH,
                        None => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        // Chaos, until the updates are in: at most two servers down at once.
        let mut rng = StdRng::seed_from_u64(seed);
        let links: Vec<&Proxy> = proxies.values().collect();
        let mut down: Vec<String> = Vec::new();
        while done.load(Ordering::Relaxed) < WORKERS as usize {
            match rng.random_range(0..6) {
                0 | 1 if down.len() < 2 => {
                    let up: Vec<&String> = names.iter().filter(|n| !down.contains(n)).collect();
                    let victim = up[rng.random_range(0..up.len())].clone();
                    herd.kill(&victim);
                    down.push(victim);
                    *actions.entry("kill").or_default() += 1;
                }
                2 if !down.is_empty() => {
                    let back = down.remove(rng.random_range(0..down.len()));
                    herd.restart(&back);
                    *actions.entry("restart").or_default() += 1;
                }
                3 | 4 => {
                    links[rng.random_range(0..links.len())].cut();
                    *actions.entry("cut").or_default() += 1;
                }
                _ => {
                    links[rng.random_range(0..links.len())].heal();
                    *actions.entry("heal").or_default() += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(50..250)));
        }
        for name in down.drain(..) {
            herd.restart(&name);
        }
    });
    heal_all(&proxies);
    let ledger = ledger.into_inner().unwrap();
    let lost: usize = ledger.unanswered.values().map(Vec::len).sum();
    eprintln!(
        "randomized fault run: {} updates sent, {} clients acknowledged, {lost} unanswered \
         (server killed mid-batch), chaos {actions:?}, {:?}",
        ledger.sent,
        ledger.acked.len(),
        started.elapsed()
    );
    assert!(ledger.sent >= UPDATES);
    assert!(
        actions.get("kill").copied().unwrap_or(0) > 0,
        "the chaos never killed anything"
    );
    wait_converged(&herd, &ledger, &names, Duration::from_secs(60));
    eprintln!(
        "randomized fault run: converged after {:?}",
        started.elapsed()
    );
}
