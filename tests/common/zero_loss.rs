//! Helpers of the durability and fault suites (tests/durability.rs,
//! tests/faults.rs): pipelined updates, complete dumps, the record order
//! of SPEC §3 on AT lines, a TCP proxy that can cut a link, and the
//! invariant checker that compares the whole herd against what clients
//! were told.
//!
//! Included with `#[path]` by those two suites only, so the other test
//! binaries do not compile it.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{listen_on_free_port, wait_until, Herd};

/// Every record `name` holds (its admin `/records`, asked with the token
/// the herd made), or `None` while it cannot answer.
pub fn dump(herd: &Herd, name: &str) -> Option<Vec<String>> {
    let answer = herd.admin_get(name, "/records").ok()?;
    if answer.status != 200 {
        return None;
    }
    Some(answer.text().lines().map(str::to_string).collect())
}

/// [`dump`], waiting for the admin listener of a server just started.
pub fn dump_now(herd: &Herd, name: &str) -> Vec<String> {
    let mut records = None;
    wait_until(
        Duration::from_secs(10),
        &format!("{name}'s /records"),
        || {
            records = dump(herd, name);
            records.is_some()
        },
    );
    records.unwrap_or_default()
}

/// The client's time of an AT line as (seconds, nanoseconds).
fn time_of(at_line: &str) -> (u64, u32) {
    let time = at_line.rsplit(' ').next().unwrap_or("0");
    let (secs, frac) = time.split_once('.').unwrap_or((time, ""));
    let nanos = format!("{frac:0<9}");
    (secs.parse().unwrap_or(0), nanos[..9].parse().unwrap_or(0))
}

/// Whether AT line `a` wins over `b` (SPEC §3: client time, then the line).
pub fn newer(a: &str, b: &str) -> bool {
    (time_of(a), a.as_bytes()) > (time_of(b), b.as_bytes())
}

/// The client field of an AT line.
pub fn client_of(at_line: &str) -> &str {
    at_line.split(' ').nth(3).unwrap_or("")
}

/// What the clients were told, and what they may or may not have caused.
#[derive(Default, Debug)]
pub struct Ledger {
    /// Per client: the newest AT line any server acknowledged.
    pub acked: BTreeMap<String, String>,
    /// Per client: IAMATs sent whose answer never came (the server died).
    /// Such an update may have been stored, or not.
    pub unanswered: BTreeMap<String, Vec<String>>,
    pub sent: usize,
}

impl Ledger {
    pub fn ack(&mut self, at_line: &str) {
        let client = client_of(at_line).to_string();
        match self.acked.get(&client) {
            Some(current) if !newer(at_line, current) => {}
            _ => {
                self.acked.insert(client, at_line.to_string());
            }
        }
    }

    /// Records an IAMAT whose answer was lost, as the AT line it may have
    /// become at `server` (the diff is unknown: matched on the other fields).
    pub fn lost(&mut self, server: &str, iamat: &str) {
        let fields: Vec<&str> = iamat.split(' ').collect();
        if let [_, client, location, time] = fields[..] {
            self.unanswered
                .entry(client.to_string())
                .or_default()
                .push(format!("{server} {client} {location} {time}"));
        }
    }

    /// Checks one server's complete dump: exactly one record per client
    /// ever acknowledged (no client nobody reported), each the newest
    /// acknowledged one, or an unanswered update newer than it.
    pub fn check(&self, name: &str, dump: &[String]) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for line in dump {
            let client = client_of(line).to_string();
            if !seen.insert(client.clone()) {
                return Err(format!("{name}: two records for {client}"));
            }
            let acked = self.acked.get(&client);
            if acked.map(String::as_str) == Some(line.as_str()) {
                continue;
            }
            let fields: Vec<&str> = line.split(' ').collect();
            let key = format!("{} {} {} {}", fields[1], fields[3], fields[4], fields[5]);
            let maybe = self
                .unanswered
                .get(&client)
                .is_some_and(|lost| lost.contains(&key));
            let fresher = acked.is_none_or(|a| newer(line, a));
            if !(maybe && fresher) {
                return Err(format!(
                    "{name}: holds {line}, expected {}",
                    acked.map_or("nothing", |a| a.as_str())
                ));
            }
        }
        if let Some(missing) = self.acked.keys().find(|c| !seen.contains(*c)) {
            return Err(format!("{name}: lost acknowledged {}", self.acked[missing]));
        }
        Ok(())
    }
}

/// Sends `lines` on one connection to `port`, all written before any
/// answer is read (pipelined), and returns the answers in order; fewer
/// answers than lines when the server went away, `None` when it could not
/// be reached at all.
pub fn pipeline(port: u16, lines: &[String]) -> Option<Vec<String>> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut writer = stream.try_clone().ok()?;
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(text.as_bytes());
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut answers = Vec::with_capacity(lines.len());
    let mut reader = BufReader::new(stream);
    while answers.len() < lines.len() {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => answers.push(line.trim_end_matches('\n').to_string()),
        }
    }
    let _ = sender.join();
    Some(answers)
}

/// Sends `lines` to server `name` listening on `port` and books every
/// answer and every loss. `None` (nothing booked) when it was unreachable.
pub fn update_at(port: u16, name: &str, ledger: &Mutex<Ledger>, lines: &[String]) -> Option<usize> {
    let answers = pipeline(port, lines)?;
    let mut ledger = ledger.lock().unwrap();
    ledger.sent += lines.len();
    for (line, answer) in lines.iter().zip(&answers) {
        assert!(
            answer.starts_with(&format!("AT {name} ")),
            "{name} answered {answer:?} to {line}"
        );
        ledger.ack(answer);
    }
    for line in &lines[answers.len()..] {
        ledger.lost(name, line);
    }
    Some(answers.len())
}

/// [`update_at`] server `name` of `herd`, which must be reachable.
pub fn update(herd: &Herd, ledger: &Mutex<Ledger>, name: &str, lines: &[String]) -> usize {
    update_at(herd.ports(name).client, name, ledger, lines)
        .unwrap_or_else(|| panic!("{name} unreachable"))
}

/// Waits until every server in `names` passes [`Ledger::check`] and all
/// of their dumps are identical.
pub fn wait_converged(herd: &Herd, ledger: &Ledger, names: &[String], timeout: Duration) {
    let mut last;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let dumps: Vec<Option<Vec<String>>> = names.iter().map(|n| dump(herd, n)).collect();
        let verdict = names
            .iter()
            .zip(&dumps)
            .map(|(n, d)| match d {
                None => Err(format!("{n}: no dump")),
                Some(d) => ledger.check(n, d),
            })
            .collect::<Result<Vec<()>, String>>()
            .and_then(|_| {
                if dumps.windows(2).all(|w| w[0] == w[1]) {
                    Ok(())
                } else {
                    Err("dumps differ".into())
                }
            });
        match verdict {
            Ok(()) => return,
            Err(e) => last = e,
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not converged after {timeout:?}: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP proxy standing for one directed link: neighbours dial it instead
/// of each other (the `[servers.x.links]` address override). Cutting it
/// resets every connection through it and refuses new ones (accepts and
/// closes them at once, as a dropped route would fail a handshake), without
/// touching the processes on either side.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free port and forwards to `target`.
    pub fn start(target: u16) -> Proxy {
        let (port, listener) = listen_on_free_port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let cut = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, f, o, s) = (cut.clone(), frozen.clone(), open.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let inbound = match listener.accept() {
                    Ok((inbound, _)) => inbound,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let _ = inbound.set_nonblocking(false);
                if c.load(Ordering::Relaxed) {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                if let (Ok(i2), Ok(o2)) = (inbound.try_clone(), outbound.try_clone()) {
                    let mut list = o.lock().unwrap();
                    // Checked again under the lock: a cut that came while
                    // this connection was being made must still end it.
                    if c.load(Ordering::SeqCst) {
                        let _ = inbound.shutdown(Shutdown::Both);
                        let _ = outbound.shutdown(Shutdown::Both);
                        continue;
                    }
                    list.push(i2);
                    list.push(o2);
                }
                pipe(&inbound, &outbound, f.clone());
                pipe(&outbound, &inbound, f.clone());
            }
        });
        Proxy {
            port,
            cut,
            frozen,
            open,
            stop,
        }
    }

    /// Breaks every connection through the link and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again (and unfreezes them).
    pub fn heal(&self) {
        self.cut.store(false, Ordering::Relaxed);
        self.frozen.store(false, Ordering::Relaxed);
    }

    /// Stops forwarding without closing anything: the link stays up but
    /// nothing moves, as with a neighbour that stopped reading.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Relaxed);
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
        self.frozen.store(false, Ordering::Relaxed);
    }
}

/// Copies `from` into `to` on a thread of its own until either side ends;
/// while `frozen`, reads nothing (the sender's buffers fill up).
fn pipe(from: &TcpStream, to: &TcpStream, frozen: Arc<AtomicBool>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if frozen.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // A read that was waiting when the link froze holds its
                    // bytes until it thaws: nothing passes a frozen link.
                    while frozen.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Starts every server, each checked up on all its ports (see
/// `Herd::restart`: a port taken for a moment makes it try again).
pub fn start_all(herd: &mut Herd) {
    for name in herd.names() {
        herd.restart(&name);
    }
}

/// Gives every directed link of `herd` a proxy: appends the address
/// overrides to the settings file (before any server starts) and returns
/// the proxies by (from, to).
pub fn proxy_every_link(herd: &Herd) -> BTreeMap<(String, String), Proxy> {
    let mut proxies = BTreeMap::new();
    let mut toml = String::new();
    for server in &herd.servers {
        toml.push_str(&format!(
            "\n[servers.{}.links]\n",
            server.name.to_lowercase()
        ));
        for other in &herd.servers {
            let linked =
                server.neighbours.contains(&other.name) || other.neighbours.contains(&server.name);
            if !linked || other.name == server.name {
                continue;
            }
            // free_port never hands out a port twice, so never one a server
            // of this herd (not started yet) or another proxy will bind.
            let proxy = Proxy::start(other.peer);
            toml.push_str(&format!("{} = \"127.0.0.1:{}\"\n", other.name, proxy.port));
            proxies.insert((server.name.clone(), other.name.clone()), proxy);
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&herd.config)
        .expect("open settings");
    file.write_all(toml.as_bytes())
        .expect("append link overrides");
    proxies
}

/// Waits until `name` can be reached on its client port again.
pub fn wait_down(herd: &Herd, name: &str) {
    let port = herd.ports(name).client;
    wait_until(
        Duration::from_secs(10),
        &format!("{name} to be down"),
        || TcpStream::connect(("127.0.0.1", port)).is_err(),
    );
}
