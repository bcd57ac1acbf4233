//! The store layer: one `sqlx::Any` pool pair over SQLite (the embedded default: WAL, a busy
//! timeout and a single writer) or PostgreSQL (a schema per service), chosen by URL, and the
//! migrations each service owns.
//!
//! One query set serves both backends. The rules that keep it portable:
//! `$1` placeholders; ids, timestamps (RFC 3339, UTC, microseconds, so text order is time
//! order) and UUIDs as TEXT; booleans and counters as BIGINT bound as `i64`; binary data as `blob`
//! in migrations (written `bytea` for PostgreSQL by the migrator); lowercase SQL. Never bind a
//! `None` where the same statement elsewhere binds a value: through `Any`, PostgreSQL prepares
//! the statement with the NULL's type, and a later number or text in that place is refused
//! ("incorrect binary data format"). Columns a statement may leave empty are `not null` with an
//! empty value (`''`, `0` and a flag) instead.

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Transaction};

use crate::error::{Error, Result};

mod batch;
pub use batch::{Arg, Batch};

/// The database backend behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A transaction on the write pool.
pub type Tx = Transaction<'static, Any>;

/// One versioned step of a service's schema. The SQL may hold several statements.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The order of the step; never reused.
    pub version: i64,
    /// What the step does, for the record.
    pub name: &'static str,
    /// The portable SQL.
    pub sql: &'static str,
}

/// A service's database: a read pool and a write pool (the same pool on PostgreSQL; one
/// connection on SQLite, which allows one writer at a time, so writers queue in the pool rather
/// than fail with SQLITE_BUSY).
#[derive(Debug, Clone)]
pub struct Db {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
}

/// The tables kit itself keeps in every service's database: idempotency records, the outbox and
/// the inbox. They are migrated before the service's own.
const KIT_MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "kit: idempotency, outbox, inbox", sql: include_str!("../migrations/0001_kit.sql") },
    Migration { version: 2, name: "kit: dead letters", sql: include_str!("../migrations/0002_dead_letters.sql") },
];

impl Db {
    /// Connects to the database at `url` for `service`: `sqlite://PATH` (created when missing) or
    /// `postgres://…`, where the service's tables live in a schema named after it.
    pub async fn connect(url: &str, service: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
            // No liveness probe before each acquire: an embedded file has no server to drop the
            // connection, and on SQLite the probe is one more hop to the connection's thread.
            let options = || {
                AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10)).test_before_acquire(false).after_connect(
                    |conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql(
                                "pragma journal_mode = wal; pragma busy_timeout = 5000; \
                             pragma synchronous = normal; pragma foreign_keys = on;",
                            )
                            .execute(&mut *conn)
                            .await?;
                            Ok(())
                        })
                    },
                )
            };
            let write = options().max_connections(1).connect(&url).await.map_err(Error::unavailable)?;
            let read =
                options().max_connections(max_connections.max(1)).connect(&url).await.map_err(Error::unavailable)?;
            Ok(Self { read, write, backend: Backend::Sqlite })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let schema = schema_name(service)?;
            {
                let admin = AnyPoolOptions::new().max_connections(1).connect(url).await.map_err(Error::unavailable)?;
                let create = format!("create schema if not exists {schema}");
                sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&admin).await?;
                admin.close().await;
            }
            let pool = AnyPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _| {
                    let set = format!("set search_path to {schema}");
                    Box::pin(async move {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
                .map_err(Error::unavailable)?;
            Ok(Self { read: pool.clone(), write: pool, backend: Backend::Postgres })
        } else {
            Err(Error::invalid("database_url", "must start with sqlite: or postgres:"))
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for writes, for a single statement outside a transaction (on SQLite, its one
    /// writer connection).
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`, waiting up to the busy timeout): a deferred transaction that read first could
    /// not upgrade once another process sharing the file had written (SQLITE_BUSY_SNAPSHOT,
    /// which no busy timeout waits out) — replicas of a service on one embedded store do.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }

    /// Whether the database answers a trivial query now.
    pub async fn ping(&self) -> bool {
        let probe = sqlx::query_scalar::<_, i64>("select 1").fetch_one(&self.read);
        matches!(tokio::time::timeout(Duration::from_secs(2), probe).await, Ok(Ok(1)))
    }

    /// Applies kit's migrations and then the service's, each once, each in its own transaction.
    /// Replicas starting together on PostgreSQL take turns by an advisory lock.
    pub async fn migrate(&self, migrations: &[Migration]) -> Result<()> {
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("select pg_advisory_xact_lock(7240311)").execute(&mut *tx).await?;
        }
        sqlx::raw_sql(
            "create table if not exists civic_migrations (
                scope text not null,
                version bigint not null,
                name text not null,
                applied_at text not null,
                primary key (scope, version))",
        )
        .execute(&mut *tx)
        .await?;
        for (scope, list) in [("kit", KIT_MIGRATIONS), ("service", migrations)] {
            for m in list {
                let done: Option<i64> =
                    sqlx::query_scalar("select version from civic_migrations where scope = $1 and version = $2")
                        .bind(scope)
                        .bind(m.version)
                        .fetch_optional(&mut *tx)
                        .await?;
                if done.is_some() {
                    continue;
                }
                let sql = match self.backend {
                    Backend::Sqlite => m.sql.to_owned(),
                    Backend::Postgres => m.sql.replace(" blob", " bytea"),
                };
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
                sqlx::query("insert into civic_migrations (scope, version, name, applied_at) values ($1, $2, $3, $4)")
                    .bind(scope)
                    .bind(m.version)
                    .bind(m.name)
                    .bind(crate::time::now_text())
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(scope, version = m.version, name = m.name, "migration applied");
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Closes both pools, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

fn schema_name(service: &str) -> Result<String> {
    if !service.is_empty() && service.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        Ok(service.to_owned())
    } else {
        Err(Error::invalid("service", "a schema name is lowercase letters and underscores"))
    }
}

/// What a violated constraint means to the caller, keyed by the constraint's name.
#[derive(Debug)]
pub struct OnConstraint<'a> {
    /// The constraint's name as the migration declares it (PostgreSQL reports it).
    pub name: &'a str,
    /// The kind of violation (SQLite reports only the kind).
    pub kind: sqlx::error::ErrorKind,
}

/// Turns a database constraint violation into the API error `make` builds for it, matching by
/// constraint name where the backend reports one and by kind otherwise (SQLite names columns,
/// not constraints: list one entry per kind for a statement that may hit it there). Any other
/// error passes through as a database error.
pub fn on_constraint(err: sqlx::Error, known: &[OnConstraint<'_>], make: impl FnOnce(&str) -> Error) -> Error {
    if let sqlx::Error::Database(db) = &err {
        let kind = db.kind();
        let hit = match db.constraint() {
            Some(name) => known.iter().find(|c| c.name == name),
            None => known.iter().find(|c| c.kind == kind),
        };
        if let Some(c) = hit {
            return make(c.name);
        }
    }
    err.into()
}

/// [`on_constraint`] for an insert whose primary key `constraint` (`items_pkey`) may be taken:
/// ALREADY_EXISTS naming `resource`.
pub fn exists_on(err: sqlx::Error, constraint: &str, resource: &impl std::fmt::Display) -> Error {
    on_constraint(err, &[OnConstraint { name: constraint, kind: sqlx::error::ErrorKind::UniqueViolation }], |_| {
        Error::already_exists(resource.to_string())
    })
}

/// A PostgreSQL database made for a one-off run — a test, a benchmark — on the server of an
/// admin URL, and dropped with its connections when the value is (or at once by
/// [`ScratchDatabase::drop_now`]).
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchDatabase {
    /// Creates `civic_scratch_<uuid>` on the server of `admin_url` (a `postgres://` URL whose user
    /// may create databases).
    pub async fn create(admin_url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let name = format!("civic_scratch_{}", uuid::Uuid::new_v4().simple());
        let admin = AnyPoolOptions::new().max_connections(1).connect(admin_url).await.map_err(Error::unavailable)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}"))).execute(&admin).await?;
        admin.close().await;
        let url = replace_database(admin_url, &name);
        Ok(Self { admin_url: admin_url.to_owned(), name, url, dropped: false })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database now, with any connection still open to it.
    pub async fn drop_now(mut self) {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await;
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // A thread of its own: the caller's runtime may be shutting down around us, and a
        // destructor must not block a runtime worker on a round trip.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(drop_database(&admin_url, &name));
            Some(())
        });
        if dropped.join().ok().flatten().is_none() {
            eprintln!("scratch database {} was not dropped", self.name);
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let dropped = async {
        let admin = AnyPoolOptions::new().max_connections(1).connect(admin_url).await?;
        let drop = format!("drop database if exists {name} with (force)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&admin).await?;
        admin.close().await;
        Ok::<_, sqlx::Error>(())
    };
    if let Err(e) = dropped.await {
        eprintln!("scratch database {name} left behind: {e}");
    }
}

/// `url` with its database path replaced by `name`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..].find('/').map(|i| scheme_end + i).unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..host_end])
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn the_database_is_replaced_in_the_url() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(replace_database("postgres://u@h/db?sslmode=disable", "t2"), "postgres://u@h/t2?sslmode=disable");
        assert_eq!(replace_database("postgres://u@h", "t3"), "postgres://u@h/t3");
    }
}
