//! The embedded SQLite database: one file in the data dir, opened in WAL
//! mode, with one writer connection and a small pool of readers.
//!
//! SQLite allows one writer at a time. Funnelling every write through a
//! single connection behind a mutex turns contention into a short queue in
//! our process instead of `SQLITE_BUSY` ("database is locked") errors, while
//! WAL lets readers proceed in parallel with the writer. Blocking calls run
//! on tokio's blocking pool so they never stall the async workers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::domain::{Error, Result};

/// Number of reader connections. Two cores are the target machine; a few
/// more readers than cores keeps reads flowing while one waits on disk.
const READERS: usize = 4;

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
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
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
    /// Opens (creating if needed) the database at `path` and applies every
    /// migration in order, each once.
    pub fn open(path: &Path, migrations: &[Migration]) -> Result<Arc<Db>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::store(format!("cannot create {}: {e}", dir.display())))?;
        }
        let writer = Connection::open(path).map_err(Error::store)?;
        configure(&writer).map_err(Error::store)?;
        Self::migrate(&writer, migrations)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open(path).map_err(Error::store)?;
            configure(&r).map_err(Error::store)?;
            readers.push(Mutex::new(r));
        }
        Ok(Arc::new(Db {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        }))
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

    /// Runs `f` on the writer connection, on the blocking pool.
    pub async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means a panic mid-write; SQLite rolled back the
            // open transaction when its guard dropped, so the connection is
            // still consistent and can be reused.
            let mut conn = db.writer.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(Error::internal)?
    }

    /// Runs `f` on one of the reader connections, on the blocking pool.
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let i = db.next_reader.fetch_add(1, Ordering::Relaxed) % db.readers.len();
            let conn = db.readers[i].lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(Error::internal)?
    }
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
}
