//! Helpers for tests that need a real database, so that one suite runs on SQLite and on
//! PostgreSQL: [`test_db`] gives a fresh, migrated database — a file in a temporary directory,
//! or, when `CIVIC_TEST_POSTGRES_URL` is set, a database of its own on that server.
//!
//! Not behind `cfg(test)`: the end-to-end tests of other crates use it too.

use std::ops::Deref;

use sqlx::any::AnyPoolOptions;

use crate::db::Db;

/// The variable naming the PostgreSQL server to test against (any database on it serves to
/// create and drop the test databases), such as `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_VAR: &str = "CIVIC_TEST_POSTGRES_URL";

/// A fresh database for one test, migrated with kit's migrations; derefs to its [`Db`].
///
/// On PostgreSQL, call [`TestDb::cleanup`] at the end of the test to drop the database; one
/// that is not cleaned up (a failed test) is left behind, with a line on stderr naming it.
/// The SQLite directory goes away with the value.
#[derive(Debug)]
pub struct TestDb {
    /// The database, connected.
    pub db: Db,
    /// Its URL, for a second connection (another replica, the binary under test).
    pub url: String,
    /// Keeps the SQLite directory alive.
    _dir: tempfile::TempDir,
    postgres: Option<PgDatabase>,
}

/// A fresh, migrated database for `service` (a lowercase schema name on PostgreSQL). Panics
/// when the database cannot be made: a test run that asked for PostgreSQL must not quietly fall
/// back to SQLite.
pub async fn test_db(service: &str) -> TestDb {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let postgres = match postgres_url() {
        Some(admin_url) => Some(PgDatabase::create(&admin_url).await),
        None => None,
    };
    let url = match &postgres {
        Some(pg) => pg.url.clone(),
        None => format!("sqlite://{}", dir.path().join(format!("{service}.db")).display()),
    };
    let db = Db::connect(&url, service, 4).await.expect("connect to the test database");
    db.migrate(&[]).await.expect("migrate the test database");
    TestDb { db, url, _dir: dir, postgres }
}

impl TestDb {
    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Closes the pools and drops the PostgreSQL database (with any connection still open to
    /// it), or removes the SQLite directory.
    pub async fn cleanup(mut self) {
        self.db.close().await;
        if let Some(pg) = self.postgres.take() {
            pg.drop_database().await;
        }
    }
}

impl Deref for TestDb {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Dropping a database takes a round trip, which a destructor must not block on.
        if let Some(pg) = &self.postgres {
            eprintln!("test database {} left behind: the test did not call TestDb::cleanup", pg.name);
        }
    }
}

fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR).ok().filter(|u| !u.is_empty())
}

/// A database made for one test on the server of an admin URL.
#[derive(Debug)]
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create(admin_url: &str) -> Self {
        sqlx::any::install_default_drivers();
        let name = format!("civic_test_{}", uuid::Uuid::new_v4().simple());
        let admin = AnyPoolOptions::new().max_connections(1).connect(admin_url).await.expect("connect to the server");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&admin)
            .await
            .expect("create a test database");
        admin.close().await;
        let url = replace_database(admin_url, &name);
        Self { admin_url: admin_url.to_owned(), name, url }
    }

    async fn drop_database(&self) {
        let dropped = async {
            let admin = AnyPoolOptions::new().max_connections(1).connect(&self.admin_url).await?;
            let drop = format!("drop database if exists {} with (force)", self.name);
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&admin).await?;
            admin.close().await;
            Ok::<_, sqlx::Error>(())
        };
        if let Err(e) = dropped.await {
            eprintln!("test database {} left behind: {e}", self.name);
        }
    }
}

/// A PostgreSQL database made for one test; dropped (with its connections) on drop.
///
/// Its destructor blocks on a thread of its own while the database is dropped; prefer
/// [`test_db`], whose [`TestDb::cleanup`] is async.
#[derive(Debug)]
pub struct TestDatabase(PgDatabase);

impl TestDatabase {
    /// A fresh database on the server of `CIVIC_TEST_POSTGRES_URL`, or `None` when it is unset.
    /// Panics when the variable is set but the server cannot be used: a test run that asked for
    /// PostgreSQL must not quietly fall back to SQLite.
    pub async fn from_env() -> Option<Self> {
        Some(Self(PgDatabase::create(&postgres_url()?).await))
    }

    /// A fresh database on the server of `admin_url` (a `postgres://` URL whose user may create
    /// databases), for tools that need a scratch database such as the benchmark.
    /// Panics when the server cannot be used.
    pub async fn on(admin_url: &str) -> Self {
        Self(PgDatabase::create(admin_url).await)
    }

    /// The URL of the fresh database.
    pub fn url(&self) -> &str {
        &self.0.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let pg = PgDatabase { admin_url: self.0.admin_url.clone(), name: self.0.name.clone(), url: String::new() };
        // A thread of its own: the test's runtime may be shutting down around us.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(pg.drop_database());
            Some(())
        });
        if dropped.join().ok().flatten().is_none() {
            eprintln!("test database {} was not dropped", self.0.name);
        }
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
