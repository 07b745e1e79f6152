//! The embedded SQLite database: one file in the data dir, opened in WAL
//! mode, served by one writer thread and a few reader threads, each owning
//! its connection.
//!
//! SQLite allows one writer at a time. Funnelling every write through a
//! single connection turns contention into a short queue in our process
//! instead of `SQLITE_BUSY` ("database is locked") errors, while WAL lets
//! readers proceed in parallel with the writer.
//!
//! The connections live on dedicated threads fed by channels, not behind
//! mutexes on tokio's blocking pool. With many requests in flight the pool
//! grows a thread per waiting call, and each call then costs a thread
//! wake-up plus a futex hand-off on a contended mutex; here a call is a
//! channel send and a `oneshot` reply, and the threads stay busy while
//! there is work queued.
//!
//! Group commit: the writer takes every write queued by the time it is
//! free (up to [`MAX_BATCH`]) and runs them in one `BEGIN IMMEDIATE`
//! transaction, each in its own savepoint, so a failed or panicking write
//! rolls back alone while the others stand. One commit, with its WAL
//! append and file-lock calls, then serves the whole batch instead of each
//! write. Nobody is answered before that commit: an acknowledged write is
//! durable in the WAL (see `tests/crash.rs`), and a reply means any
//! connection now sees it. A failed commit answers every write of the
//! batch with a retryable store error. Under light load a batch is one
//! write and nothing waits for company: the writer never delays a commit
//! to gather more. Work that runs its own transaction (the catalog import)
//! goes through [`Db::write_alone`] and runs by itself between batches.
//!
//! Another process (the CLI's admin commands and catalog import) may write
//! the same file while the server runs; `BEGIN IMMEDIATE` and the busy
//! timeout make the two take turns.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::domain::{Error, Result};

/// Most writes one transaction carries. Each job is short (a few
/// statements), so a full batch still commits within a few milliseconds;
/// the cap bounds how long the first job of a batch waits for its reply
/// behind the others.
const MAX_BATCH: usize = 64;

/// Number of reader threads, each with its own connection: one per core,
/// at least two and at most eight. Reads run against SQLite's page cache
/// and are CPU-bound, so threads beyond the cores only add context
/// switches; two keep a long catalog search from holding up the point
/// lookups behind it on a single-core host.
fn reader_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8)
}

/// A schema step: a name (for the migration log) and its SQL.
pub type Migration = (&'static str, &'static str);

/// The stock table is shared: the store decrements it at checkout and the
/// catalog joins it to answer "in stock" filters. It is created first so
/// both sides can rely on it.
pub const STOCK_MIGRATION: Migration = (
    "000_stock",
    "CREATE TABLE IF NOT EXISTS stock (
        sku TEXT PRIMARY KEY,
        quantity INTEGER NOT NULL CHECK (quantity >= 0)
    ) STRICT;",
);

pub struct Db {
    path: PathBuf,
    /// The writer thread's queue. `None` only while dropping: closing it
    /// tells the thread to finish what is queued and exit.
    writes: Option<Sender<Box<dyn WriteJob>>>,
    /// The queue every reader thread takes from.
    reads: Option<Sender<ReadJob>>,
    /// Each thread hands its connection back when it exits.
    threads: Vec<JoinHandle<Connection>>,
}

/// Prepared statements each connection keeps. The store runs a few dozen
/// fixed statements and the catalog a few dozen search shapes; parsing
/// and planning one again costs more than running it, so none should fall
/// out of the cache.
const STATEMENT_CACHE: usize = 128;

/// `execute` and `query_row` through the connection's prepared-statement
/// cache. rusqlite's own `Connection::execute` and `query_row` parse and
/// plan the SQL on every call, which on the short statements of the store
/// costs more than running them.
pub trait CachedExt {
    fn exec_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl CachedExt for Connection {
    fn exec_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // WAL: readers do not block the writer and vice versa. NORMAL sync is
    // durable across process crashes in WAL mode (only a power loss can
    // roll back the last transactions), which is the trade-off SQLite
    // documents for WAL.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the database at `path`, applies every
    /// migration in order, each once, and starts the writer and reader
    /// threads.
    pub fn open(path: &Path, migrations: &[Migration]) -> Result<Arc<Db>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::store(format!("cannot create {}: {e}", dir.display())))?;
        }
        let writer = Connection::open(path).map_err(Error::store)?;
        configure(&writer).map_err(Error::store)?;
        Self::migrate(&writer, migrations)?;
        let mut readers = Vec::new();
        for _ in 0..reader_count() {
            let r = Connection::open(path).map_err(Error::store)?;
            configure(&r).map_err(Error::store)?;
            readers.push(r);
        }
        let spawn_failed = |e: std::io::Error| Error::store(format!("cannot start a thread: {e}"));
        let (writes, write_queue) = crossbeam_channel::unbounded::<Box<dyn WriteJob>>();
        let (reads, read_queue) = crossbeam_channel::unbounded::<ReadJob>();
        let mut db = Db {
            path: path.to_owned(),
            writes: Some(writes),
            reads: Some(reads),
            threads: Vec::new(),
        };
        // Should a spawn fail, dropping `db` closes the queues and joins the
        // threads already started.
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, &write_queue))
            .map_err(spawn_failed)?;
        db.threads.push(thread);
        for (i, conn) in readers.into_iter().enumerate() {
            let queue = read_queue.clone();
            let thread = std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || {
                    read_loop(&conn, &queue);
                    conn
                })
                .map_err(spawn_failed)?;
            db.threads.push(thread);
        }
        Ok(Arc::new(db))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(conn: &Connection, migrations: &[Migration]) -> Result<()> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .map_err(Error::store)?;
        for (name, sql) in migrations {
            let done: bool = conn
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE name = ?1)",
                    [name],
                    |r| r.get(0),
                )
                .map_err(Error::store)?;
            if done {
                continue;
            }
            let tx = conn.unchecked_transaction().map_err(Error::store)?;
            tx.execute_batch(sql).map_err(|e| Error::store(format!("migration {name}: {e}")))?;
            tx.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?1, datetime('now'))",
                [name],
            )
            .map_err(Error::store)?;
            tx.commit().map_err(Error::store)?;
        }
        Ok(())
    }

    /// Runs `f` on the writer thread, inside a savepoint of the batch's
    /// transaction, and answers once that transaction has committed.
    ///
    /// `f` must not begin or end a transaction itself (`BEGIN` fails inside
    /// one); for a unit of its own it opens a savepoint. If `f` fails, its
    /// writes are rolled back and the error is the answer; if it panics, the
    /// answer is an internal error. Either way the other writes of the batch
    /// stand. If the commit fails, every write of the batch is answered
    /// with a (retryable) store error instead.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.enqueue(f, false).await
    }

    /// Runs `f` on the writer thread by itself, outside any transaction:
    /// for work that manages its own transaction, such as a bulk import
    /// (inside a savepoint SQLite would keep a copy of every page it
    /// changes until the end), or that cannot run inside one. Nobody else
    /// writes meanwhile; the writes queued before it commit first.
    pub async fn write_alone<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.enqueue(f, true).await
    }

    async fn enqueue<T, F>(&self, f: F, alone: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Write { work: Some(f), alone, result: None, reply });
        let queue = self.writes.as_ref().ok_or_else(|| Error::store("database closed"))?;
        queue.send(job).map_err(|_| Error::store("the database writer has stopped"))?;
        // The writer drops the reply unsent only when the job panicked.
        answer.await.map_err(|_| Error::internal("a database write panicked"))?
    }

    /// Runs `f` on one of the reader threads' connections.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            // A dropped receiver means the caller stopped waiting.
            let _ = reply.send(f(conn));
        });
        let queue = self.reads.as_ref().ok_or_else(|| Error::store("database closed"))?;
        queue.send(job).map_err(|_| Error::store("the database readers have stopped"))?;
        answer.await.map_err(|_| Error::internal("a database read panicked"))?
    }
}

impl Drop for Db {
    /// Closes the queues and waits for the threads, so every write already
    /// queued is committed (and answered) before the connections close.
    ///
    /// The connections are then closed here, one after the other, readers
    /// first: the last one to close checkpoints the write-ahead log and
    /// removes it, which none does when they close at the same moment on
    /// their own threads (each still sees the others).
    fn drop(&mut self) {
        self.writes = None;
        self.reads = None;
        let me = std::thread::current().id();
        let mut connections = Vec::with_capacity(self.threads.len());
        for thread in self.threads.drain(..) {
            // A job that held the last handle drops it on a database thread,
            // which cannot wait for itself; it exits once the job returns.
            if thread.thread().id() != me {
                connections.extend(thread.join().ok());
            }
        }
        // The writer's thread came first; its connection closes last.
        if !connections.is_empty() {
            connections.rotate_left(1);
        }
        for conn in connections {
            drop(conn);
        }
    }
}

/// A read: runs on a reader connection and sends its own answer.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

fn read_loop(conn: &Connection, queue: &Receiver<ReadJob>) {
    while let Ok(job) = queue.recv() {
        if catch_unwind(AssertUnwindSafe(|| job(conn))).is_err() {
            // The job's reply was dropped with it, so its caller gets an
            // internal error; the connection stays in service.
            tracing::error!("a database read panicked");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }
}

/// A write queued for the writer thread. The answer is kept until the
/// batch's transaction has committed.
trait WriteJob: Send {
    /// True if the job runs by itself, outside the batch transaction.
    fn alone(&self) -> bool;
    /// Runs the job; true if it succeeded, so its writes should stand.
    fn run(&mut self, conn: &mut Connection) -> bool;
    /// Sends the job's result, or `failed` instead when the transaction it
    /// ran in did not commit.
    fn answer(self: Box<Self>, failed: Option<&Error>);
    /// Answers a job that never ran.
    fn refuse(self: Box<Self>, error: &Error);
}

struct Write<F, T> {
    work: Option<F>,
    alone: bool,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<F, T> WriteJob for Write<F, T>
where
    F: FnOnce(&mut Connection) -> Result<T> + Send,
    T: Send,
{
    fn alone(&self) -> bool {
        self.alone
    }

    fn run(&mut self, conn: &mut Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, failed: Option<&Error>) {
        // A job that failed may have failed on what an earlier job of the
        // batch wrote, which is now undone, so its own error yields too.
        let result = match (self.result, failed) {
            (None, _) => Err(Error::internal("a database write panicked")),
            (Some(_), Some(e)) => Err(e.clone()),
            (Some(result), None) => result,
        };
        // A dropped receiver means the caller stopped waiting; the write
        // stands all the same, as it would have had it answered sooner.
        let _ = self.reply.send(result);
    }

    fn refuse(self: Box<Self>, error: &Error) {
        let _ = self.reply.send(Err(error.clone()));
    }
}

/// The writer thread: takes the first queued write, then whatever else is
/// queued by then (up to [`MAX_BATCH`], and up to a write that runs alone),
/// runs them in one transaction and answers them after its commit. Exits
/// when the queue is closed and empty.
fn write_loop(mut conn: Connection, queue: &Receiver<Box<dyn WriteJob>>) -> Connection {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return conn,
            },
        };
        if first.alone() {
            run_alone(&mut conn, first);
            continue;
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) if job.alone() => {
                    next = Some(job);
                    break;
                }
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, &mut batch);
    }
}

/// Runs a job that manages its own transaction, and answers it.
fn run_alone(conn: &mut Connection, mut job: Box<dyn WriteJob>) {
    if catch_unwind(AssertUnwindSafe(|| job.run(conn))).is_err() {
        tracing::error!("a database write panicked");
    }
    // A transaction the job left open (it should not) ends here, unwritten.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    job.answer(None);
}

/// Runs and answers every job in `batch`, leaving it empty.
///
/// Each job gets a savepoint, so a failed one rolls back alone. A job
/// whose failure ended the whole transaction (SQLite rolls back on, say, a
/// full disk) takes the jobs before it in the transaction with it (each is
/// answered with a store error); the jobs after it start a new one.
fn run_batch(conn: &mut Connection, batch: &mut Vec<Box<dyn WriteJob>>) {
    let mut jobs = batch.drain(..);
    loop {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let error = Error::store(format!("cannot begin a write: {e}"));
            jobs.for_each(|job| job.refuse(&error));
            return;
        }
        let mut ran: Vec<Box<dyn WriteJob>> = Vec::with_capacity(jobs.len());
        let mut lost = None;
        for mut job in jobs.by_ref() {
            let step = run_job(conn, &mut *job);
            ran.push(job);
            if let Err(e) = step {
                lost = Some(e);
                break;
            }
        }
        let outcome = match lost {
            Some(e) => Err(e),
            None => conn.execute_batch("COMMIT").map_err(|e| format!("commit failed: {e}")),
        };
        match outcome {
            Ok(()) => ran.into_iter().for_each(|job| job.answer(None)),
            Err(detail) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                let error = Error::store(detail);
                ran.into_iter().for_each(|job| job.answer(Some(&error)));
            }
        }
        if jobs.len() == 0 {
            return;
        }
    }
}

/// Runs one job inside its own savepoint. An error means the enclosing
/// transaction is no longer usable.
fn run_job(conn: &mut Connection, job: &mut dyn WriteJob) -> std::result::Result<(), String> {
    let savepoint = |conn: &Connection, sql: &str| {
        conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ())
    };
    savepoint(conn, "SAVEPOINT job").map_err(|e| format!("savepoint failed: {e}"))?;
    let ok = match catch_unwind(AssertUnwindSafe(|| job.run(conn))) {
        Ok(ok) => ok,
        Err(_) => {
            tracing::error!("a database write panicked");
            false
        }
    };
    if conn.is_autocommit() {
        return Err("a write ended its transaction".to_owned());
    }
    if !ok {
        savepoint(conn, "ROLLBACK TO job").map_err(|e| format!("rollback failed: {e}"))?;
    }
    savepoint(conn, "RELEASE job").map_err(|e| format!("release failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_in_wal_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let migrations: &[Migration] = &[("001_t", "CREATE TABLE t (x INTEGER)")];
        let db = Db::open(&path, migrations).unwrap();
        let mode: String = db
            .read(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(Error::store))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        drop(db);
        // Re-opening must not re-run the CREATE TABLE (it would fail).
        let db = Db::open(&path, migrations).unwrap();
        db.write(|c| c.execute("INSERT INTO t VALUES (1)", []).map(|_| ()).map_err(Error::store))
            .await
            .unwrap();
    }

    fn table_db() -> (tempfile::TempDir, Arc<Db>) {
        let dir = tempfile::tempdir().unwrap();
        let migrations: &[Migration] = &[(
            "001_t",
            "CREATE TABLE t (x INTEGER PRIMARY KEY);
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER
                 REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )];
        let db = Db::open(&dir.path().join("t.db"), migrations).unwrap();
        (dir, db)
    }

    fn insert(x: i64) -> impl FnOnce(&mut Connection) -> Result<()> + Send + 'static {
        move |c| c.execute("INSERT INTO t VALUES (?1)", [x]).map(|_| ()).map_err(Error::store)
    }

    async fn rows(db: &Db) -> Vec<i64> {
        db.read(|c| {
            let mut s = c.prepare("SELECT x FROM t ORDER BY x").map_err(Error::store)?;
            let rows = s.query_map([], |r| r.get(0)).map_err(Error::store)?;
            rows.collect::<rusqlite::Result<Vec<i64>>>().map_err(Error::store)
        })
        .await
        .unwrap()
    }

    type TestWrite<T> = Box<dyn FnOnce(&mut Connection) -> Result<T> + Send>;

    /// Holds the writer thread inside a job until `queued` more writes wait
    /// behind it, so those writes run together as the next batch.
    async fn batch_of<T: Send + 'static>(db: &Arc<Db>, jobs: Vec<TestWrite<T>>) -> Vec<Result<T>> {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel::<()>();
        let blocker = tokio::spawn({
            let db = Arc::clone(db);
            async move {
                db.write(move |_| {
                    started.send(()).unwrap();
                    hold.recv().unwrap();
                    Ok(())
                })
                .await
            }
        });
        running.await.unwrap();
        let queue = db.writes.as_ref().unwrap().clone();
        let n = jobs.len();
        let tasks: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let db = Arc::clone(db);
                tokio::spawn(async move { db.write(job).await })
            })
            .collect();
        while queue.len() < n {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_rolls_back_alone_within_its_batch() {
        let (_dir, db) = table_db();
        let results = batch_of::<()>(
            &db,
            vec![
                Box::new(insert(1)),
                Box::new(|c: &mut Connection| {
                    insert(2)(c)?;
                    Err(Error::invalid("changed my mind"))
                }),
                Box::new(insert(3)),
            ],
        )
        .await;
        assert!(results[0].is_ok());
        assert_eq!(results[1].as_ref().unwrap_err().message(), "changed my mind");
        assert!(results[2].is_ok());
        assert_eq!(rows(&db).await, [1, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_fails_alone_and_the_writer_carries_on() {
        let (_dir, db) = table_db();
        let results = batch_of::<()>(
            &db,
            vec![
                Box::new(insert(1)),
                Box::new(|c: &mut Connection| {
                    insert(2)(c)?;
                    panic!("boom");
                }),
                Box::new(insert(3)),
            ],
        )
        .await;
        assert!(results[0].is_ok());
        assert_eq!(results[1].as_ref().unwrap_err().code(), crate::domain::ErrorCode::Internal);
        assert!(results[2].is_ok());
        db.write(insert(4)).await.unwrap();
        assert_eq!(rows(&db).await, [1, 3, 4]);
    }

    /// A commit refused as a whole (here by a deferred foreign key) fails
    /// every write of the batch with a retryable error and keeps none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_fails_the_whole_batch() {
        let (_dir, db) = table_db();
        let results = batch_of::<()>(
            &db,
            vec![
                Box::new(insert(1)),
                Box::new(|c: &mut Connection| {
                    c.execute("INSERT INTO child VALUES (1, 42)", [])
                        .map(|_| ())
                        .map_err(Error::store)
                }),
            ],
        )
        .await;
        for r in &results {
            let e = r.as_ref().unwrap_err();
            assert!(e.retryable(), "{e}");
        }
        assert!(rows(&db).await.is_empty());
        db.write(insert(5)).await.unwrap();
        assert_eq!(rows(&db).await, [5]);
    }

    /// A write that opens a transaction of its own fails (there is one
    /// already); a savepoint is the way to group statements.
    #[tokio::test]
    async fn writes_group_statements_with_savepoints() {
        let (_dir, db) = table_db();
        let err =
            db.write(|c| c.transaction().map(|_| ()).map_err(Error::store)).await.unwrap_err();
        assert!(err.retryable());
        db.write(|c| {
            let sp = c.savepoint().map_err(Error::store)?;
            sp.execute("INSERT INTO t VALUES (7)", []).map_err(Error::store)?;
            sp.commit().map_err(Error::store)
        })
        .await
        .unwrap();
        assert_eq!(rows(&db).await, [7]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_concurrent_writes_all_land_and_are_visible_when_answered() {
        let (dir, db) = table_db();
        let path = dir.path().join("t.db");
        let tasks: Vec<_> = (0..400)
            .map(|x| {
                let db = Arc::clone(&db);
                let path = path.clone();
                tokio::spawn(async move {
                    db.write(insert(x)).await.unwrap();
                    // Answered means committed: a reader thread and a
                    // connection of another process alike see the row.
                    let seen = db
                        .read(move |c| {
                            c.query_row("SELECT count(*) FROM t WHERE x = ?1", [x], |r| r.get(0))
                                .map_err(Error::store)
                        })
                        .await
                        .unwrap();
                    let other = Connection::open(path).unwrap();
                    let seen_outside: i64 = other
                        .query_row("SELECT count(*) FROM t WHERE x = ?1", [x], |r| r.get(0))
                        .unwrap();
                    (seen, seen_outside)
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), (1_i64, 1_i64));
        }
        assert_eq!(rows(&db).await, (0..400).collect::<Vec<i64>>());
    }

    /// A write run alone manages its own transaction; the batched writes
    /// queued around it still land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_alone_runs_its_own_transaction() {
        let (_dir, db) = table_db();
        let before = tokio::spawn({
            let db = Arc::clone(&db);
            async move { db.write(insert(1)).await }
        });
        let alone = db
            .write_alone(|c| {
                let tx = c.transaction().map_err(Error::store)?;
                tx.execute("INSERT INTO t VALUES (2)", []).map_err(Error::store)?;
                tx.commit().map_err(Error::store)
            })
            .await;
        alone.unwrap();
        db.write(insert(3)).await.unwrap();
        before.await.unwrap().unwrap();
        // A failed one leaves nothing: its own transaction rolled back.
        let err = db
            .write_alone(|c| {
                let tx = c.transaction().map_err(Error::store)?;
                tx.execute("INSERT INTO t VALUES (4)", []).map_err(Error::store)?;
                Err::<(), _>(Error::invalid("no"))
            })
            .await
            .unwrap_err();
        assert_eq!(err.message(), "no");
        assert_eq!(rows(&db).await, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_panicking_read_fails_alone() {
        let (_dir, db) = table_db();
        let err = db.read(|_| -> Result<()> { panic!("boom") }).await.unwrap_err();
        assert_eq!(err.code(), crate::domain::ErrorCode::Internal);
        db.write(insert(1)).await.unwrap();
        assert_eq!(rows(&db).await, [1]);
    }

    /// Dropping the last handle waits for the threads, so every connection
    /// is closed when it returns: the last one to close checkpoints the
    /// write-ahead log and removes it. Repeated, because connections closed
    /// at the same moment on their own threads would sometimes leave it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_closes_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let wal = dir.path().join("t.db-wal");
        let migrations: &[Migration] = &[("001_t", "CREATE TABLE t (x INTEGER PRIMARY KEY)")];
        for round in 0..20 {
            let db = Db::open(&path, migrations).unwrap();
            db.write(insert(round)).await.unwrap();
            let reads: Vec<_> = (0..16)
                .map(|_| {
                    let db = Arc::clone(&db);
                    tokio::spawn(async move { rows(&db).await.len() })
                })
                .collect();
            for r in reads {
                assert_eq!(r.await.unwrap(), usize::try_from(round).unwrap() + 1);
            }
            assert!(wal.exists());
            drop(db);
            assert!(!wal.exists(), "round {round}");
        }
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 20);
    }
}
