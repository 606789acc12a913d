//! The journal: a server's records on disk, in an embedded database (redb),
//! so that they survive a restart (SPEC §4, last paragraph).
//!
//! The store hands every new record to [`RedbJournal::append`] and gets back
//! a receiver that fires once the record is durable; the ConnectionActor
//! answers an IAMAT only after that (see `actors/src/store.rs`).
//!
//! One dedicated writer thread owns the database. Records reach it over a
//! channel, so the store never waits on the disk. The thread commits in
//! *groups*: it blocks for the first queued record, then takes everything
//! else already queued, writes it all in one write transaction and commits
//! once. While one commit's fsync runs, the next group piles up in the
//! channel, so the number of fsyncs per second stays about constant while the
//! records per fsync grow with the load.
//!
//! Two modes (`herd.durability`):
//! - `sync` (default): a record's receiver fires only after the commit that
//!   holds it has returned with [`Durability::Immediate`] (data and metadata
//!   fsynced). An answered IAMAT survives SIGKILL and power loss.
//! - `async`: the receiver fires at once; the writer collects records for at
//!   most [`ASYNC_WINDOW`] and then commits them the same way. A crash (SIGKILL,
//!   power loss) loses the records answered in the last `ASYNC_WINDOW` plus
//!   the duration of one commit; SIGTERM loses nothing (the writer drains).
//!   Records lost that way still live on the servers they were flooded to and
//!   come back with the next catch-up sync, unless every holder crashed.
//!
//! The table maps a client name to its newest record's AT line; records are
//! rebuilt at start with [`Record::from_at_line`], so a file written by an
//! older build is checked like any peer's line.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herd_actors::record::{Record, SharedRecord};
use herd_actors::store::{Journal, NotDurable};
use herd_actors::text::LogText;
use log::{error, info, warn};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

const LOG: &str = "journal";

/// client name -> AT line of the client's newest record.
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");

/// In `async` mode, the longest a record waits before its commit starts.
pub const ASYNC_WINDOW: Duration = Duration::from_millis(10);

/// Most records written in one transaction (bounds the writer's memory).
const MAX_GROUP: usize = 65_536;

crate::choice::choice! {
    /// When an IAMAT is answered relative to its fsync (`herd.durability`).
    pub enum Mode ("durability") {
        /// After the record's group commit has fsynced.
        Sync = "sync",
        /// At once; the commit follows within [`ASYNC_WINDOW`].
        Async = "async",
    }
}

/// Why a journal could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create data folder {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        // Boxed: redb's error is large, and returned at most once per start.
        source: Box<redb::Error>,
    },
    #[error("cannot start the journal thread: {0}")]
    Thread(std::io::Error),
}

type Done = oneshot::Sender<Result<(), NotDurable>>;

/// A row to write: client name, AT line.
type Entry = (Box<[u8]>, Box<[u8]>);

/// What the writer thread receives.
enum Job {
    /// Write this record; tell `done` once durable (sync mode).
    Put {
        client: Box<[u8]>,
        line: Box<[u8]>,
        done: Option<Done>,
    },
    /// Commit what came before, then read every record back (a restarted
    /// store rebuilds from them).
    Reload(mpsc::Sender<Result<Vec<Record>, String>>),
    /// Commit what came before, then stop.
    Shutdown,
}

/// The store's handle: cheap to call, never blocks.
pub struct RedbJournal {
    jobs: mpsc::Sender<Job>,
    mode: Mode,
}

/// Owned by the server's runner: stops the writer and waits for its last
/// commit when dropped (SIGTERM loses nothing already queued).
pub struct JournalGuard {
    jobs: mpsc::Sender<Job>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for JournalGuard {
    fn drop(&mut self) {
        let _ = self.jobs.send(Job::Shutdown);
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                error!(target: LOG, "{}: journal writer panicked", self.path.display());
            }
        }
    }
}

/// An opened journal: the records it held, the store's handle and the guard.
pub struct Opened {
    pub records: Vec<Record>,
    pub journal: RedbJournal,
    pub guard: JournalGuard,
}

/// Opens (or creates) `<dir>/records.redb`, reads every record in it and
/// starts the writer thread. `server` names the log lines.
pub fn open(dir: &Path, mode: Mode, server: &str) -> Result<Opened, JournalError> {
    std::fs::create_dir_all(dir).map_err(|source| JournalError::CreateDir {
        dir: dir.to_owned(),
        source,
    })?;
    let path = dir.join("records.redb");
    let started = Instant::now();
    let db = Database::create(&path).map_err(|source| JournalError::Open {
        path: path.clone(),
        source,
    })?;
    let records = load(&db, server).map_err(|source| JournalError::Read {
        path: path.clone(),
        source: Box::new(source),
    })?;
    info!(target: LOG, "{server}: {} records loaded from {} in {:?} ({mode:?} durability)",
        records.len(), path.display(), started.elapsed());
    let (jobs, queue) = mpsc::channel();
    let name = server.to_string();
    let writer = std::thread::Builder::new()
        .name(format!("journal-{server}"))
        .spawn(move || write_loop(db, queue, mode, &name))
        .map_err(JournalError::Thread)?;
    Ok(Opened {
        records,
        journal: RedbJournal {
            jobs: jobs.clone(),
            mode,
        },
        guard: JournalGuard {
            jobs,
            writer: Some(writer),
            path,
        },
    })
}

/// Every valid record of the table; invalid lines are logged and skipped.
// redb's own error type, large but returned at most once per start.
#[allow(clippy::result_large_err)]
fn load(db: &Database, server: &str) -> Result<Vec<Record>, redb::Error> {
    // Creating the table on first use keeps a fresh database readable.
    let write = db.begin_write()?;
    write.open_table(RECORDS)?;
    write.commit()?;
    let read = db.begin_read()?;
    let table = read.open_table(RECORDS)?;
    let mut records = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
    for entry in table.iter()? {
        let (client, line) = entry?;
        match Record::from_at_line(line.value()) {
            Ok(record) if record.client() == client.value() => records.push(record),
            // Checked with the client rules like any line from outside: a
            // bad record is never served, and shown escaped and clipped.
            _ => warn!(target: LOG, "{server}: skipping an invalid stored record ({} bytes): {}",
                line.value().len(), LogText::clipped(line.value(), 300)),
        }
    }
    Ok(records)
}

impl Journal for RedbJournal {
    fn reload(&mut self) -> Result<Vec<Record>, String> {
        let (reply, answer) = mpsc::channel();
        self.jobs
            .send(Job::Reload(reply))
            .map_err(|_| "journal closed".to_string())?;
        answer.recv().map_err(|_| "journal closed".to_string())?
    }

    fn append(&mut self, record: &SharedRecord) -> oneshot::Receiver<Result<(), NotDurable>> {
        let (tx, rx) = oneshot::channel();
        let done = match self.mode {
            Mode::Sync => Some(tx),
            Mode::Async => {
                let _ = tx.send(Ok(()));
                None
            }
        };
        let job = Job::Put {
            client: record.client().into(),
            line: record.at_line().into(),
            done,
        };
        if let Err(mpsc::SendError(Job::Put {
            done: Some(done), ..
        })) = self.jobs.send(job)
        {
            // The writer has stopped (shutting down): not durable, say so.
            let _ = done.send(Err(NotDurable::Closed));
        }
        rx
    }
}

/// The writer thread: group commits until shutdown or until every sender
/// is gone, then a last commit of whatever is left.
fn write_loop(db: Database, queue: mpsc::Receiver<Job>, mode: Mode, server: &str) {
    let mut group: Vec<Entry> = Vec::new();
    let mut waiting: Vec<Done> = Vec::new();
    let mut stop = false;
    let mut reload: Option<Reply> = None;
    let mut groups: u64 = 0;
    let mut written: u64 = 0;
    while !stop {
        if let Some(reply) = reload.take() {
            // The group before the request is committed: the answer holds
            // every record appended before it.
            let records = load(&db, server).map_err(|e| e.to_string());
            let _ = reply.send(records);
        }
        // Block for the first job of a group.
        match queue.recv() {
            Ok(job) => stop |= take(job, &mut group, &mut waiting, &mut reload),
            Err(_) => break,
        }
        // Then take what is queued: everything (sync), or what arrives
        // within the window (async).
        let deadline = Instant::now() + ASYNC_WINDOW;
        while !stop && reload.is_none() && group.len() < MAX_GROUP {
            let next = match mode {
                Mode::Sync => queue.try_recv().ok(),
                Mode::Async => queue
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok(),
            };
            match next {
                Some(job) => stop |= take(job, &mut group, &mut waiting, &mut reload),
                None => break,
            }
        }
        if group.is_empty() {
            continue;
        }
        let result = commit(&db, &group).map_err(|e| NotDurable::Failed(e.to_string()));
        if let Err(e) = &result {
            error!(target: LOG, "{server}: commit of {} records failed: {e}", group.len());
        }
        groups += 1;
        written += group.len() as u64;
        group.clear();
        for done in waiting.drain(..) {
            let _ = done.send(result.clone());
        }
    }
    info!(target: LOG, "{server}: journal closed after {written} records in {groups} commits");
}

/// Adds a job to the group; true when it asks to stop. A reload request is
/// set aside in `reload`: the group is committed before it is answered.
fn take(
    job: Job,
    group: &mut Vec<Entry>,
    waiting: &mut Vec<Done>,
    reload: &mut Option<Reply>,
) -> bool {
    match job {
        Job::Reload(reply) => {
            *reload = Some(reply);
            false
        }
        Job::Put { client, line, done } => {
            group.push((client, line));
            waiting.extend(done);
            false
        }
        Job::Shutdown => true,
    }
}

type Reply = mpsc::Sender<Result<Vec<Record>, String>>;

/// One write transaction for the whole group, fsynced before it returns.
// redb's own error type, large but returned at most once per commit.
#[allow(clippy::result_large_err)]
fn commit(db: &Database, group: &[Entry]) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate);
    {
        let mut table = tx.open_table(RECORDS)?;
        // The store only journals records that superseded the previous one,
        // and a group holds them in store order: the last write per client
        // is that client's newest record.
        for (client, line) in group {
            table.insert(&client[..], &line[..])?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record(client: &str, time: &str) -> SharedRecord {
        Arc::new(
            Record::from_at_line(format!("AT Riley +0.000000000 {client} +1+1 {time}").as_bytes())
                .unwrap(),
        )
    }

    #[test]
    fn records_survive_reopening_newest_per_client() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path(), Mode::Sync, "T").unwrap();
        assert!(opened.records.is_empty());
        let mut journal = opened.journal;
        let receivers: Vec<_> = [("a", "1"), ("b", "2"), ("a", "3")]
            .iter()
            .map(|(c, t)| journal.append(&record(c, t)))
            .collect();
        for rx in receivers {
            assert_eq!(rx.blocking_recv().unwrap(), Ok(()));
        }
        drop(opened.guard);
        let reopened = open(dir.path(), Mode::Sync, "T").unwrap();
        let mut lines: Vec<String> = reopened
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(r.at_line()).into_owned())
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "AT Riley +0.000000000 a +1+1 3",
                "AT Riley +0.000000000 b +1+1 2"
            ]
        );
    }

    /// The figures of BENCHMARKS.md: `cargo test --release --lib journal::
    /// -- --ignored --nocapture`. Appends a million records as fast as the
    /// journal takes them (the groups grow to whatever queued during the
    /// previous fsync), then reopens the file as a restart would.
    #[test]
    #[ignore]
    fn a_million_records_written_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path(), Mode::Sync, "T").unwrap();
        let mut journal = opened.journal;
        let records: Vec<SharedRecord> = (0..1_000_000)
            .map(|i| record(&format!("client-{i}.example.org"), "1700000000.5"))
            .collect();
        let started = Instant::now();
        let receivers: Vec<_> = records.iter().map(|r| journal.append(r)).collect();
        for rx in receivers {
            assert_eq!(rx.blocking_recv().unwrap(), Ok(()));
        }
        let wrote = started.elapsed();
        drop(opened.guard);
        let started = Instant::now();
        let reopened = open(dir.path(), Mode::Sync, "T").unwrap();
        let loaded = started.elapsed();
        assert_eq!(reopened.records.len(), 1_000_000);
        let size = std::fs::metadata(dir.path().join("records.redb"))
            .unwrap()
            .len();
        println!(
            "1,000,000 records: written and fsynced in {wrote:?}, loaded in {loaded:?}, \
             file {} MB",
            size / 1_000_000
        );
    }

    #[test]
    fn async_mode_answers_at_once_and_flushes_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path(), Mode::Async, "T").unwrap();
        let mut journal = opened.journal;
        let rx = journal.append(&record("k", "5"));
        assert_eq!(rx.blocking_recv().unwrap(), Ok(()));
        drop(opened.guard);
        // After shutdown nothing more is accepted, and sync callers hear so.
        let mut late = RedbJournal {
            jobs: journal.jobs.clone(),
            mode: Mode::Sync,
        };
        assert!(late
            .append(&record("k", "6"))
            .blocking_recv()
            .unwrap()
            .is_err());
        let reopened = open(dir.path(), Mode::Sync, "T").unwrap();
        assert_eq!(reopened.records.len(), 1);
        assert_eq!(reopened.records[0].time_text(), b"5");
    }
}
