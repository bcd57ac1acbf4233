//! Helpers for tests that need a real database, so that one suite runs on SQLite and on
//! PostgreSQL: [`test_db`] gives a fresh, migrated database — a file in a temporary directory,
//! or, when `CIVIC_TEST_POSTGRES_URL` is set, a database of its own on that server.
//!
//! Behind the `testing` feature, which the end-to-end tests of other crates turn on as a
//! dev-dependency; never part of a release binary.

use std::ops::Deref;

use crate::db::{Db, ScratchDatabase};

/// The variable naming the PostgreSQL server to test against (any database on it serves to
/// create and drop the test databases), such as `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_VAR: &str = "CIVIC_TEST_POSTGRES_URL";

/// A fresh database for one test, migrated with kit's migrations; derefs to its [`Db`].
///
/// On PostgreSQL, call [`TestDb::cleanup`] at the end of the test to drop the database without
/// blocking; one that is not cleaned up (a failed test) is dropped when the value is. The SQLite
/// directory goes away with the value.
#[derive(Debug)]
pub struct TestDb {
    /// The database, connected.
    pub db: Db,
    /// Its URL, for a second connection (another replica, the binary under test).
    pub url: String,
    /// Keeps the SQLite directory alive.
    _dir: tempfile::TempDir,
    postgres: Option<ScratchDatabase>,
}

/// A fresh, migrated database for `service` (a lowercase schema name on PostgreSQL). Panics
/// when the database cannot be made: a test run that asked for PostgreSQL must not quietly fall
/// back to SQLite.
pub async fn test_db(service: &str) -> TestDb {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let postgres = match postgres_url() {
        Some(admin_url) => Some(ScratchDatabase::create(&admin_url).await.expect("a test database on the server")),
        None => None,
    };
    let url = match &postgres {
        Some(pg) => pg.url().to_owned(),
        None => format!("sqlite://{}", dir.path().join(format!("{service}.db")).display()),
    };
    let db = Db::connect(&url, service, 4).await.expect("connect to the test database");
    db.migrate(&[]).await.expect("migrate the test database");
    TestDb { db, url, _dir: dir, postgres }
}

impl TestDb {
    /// Closes the pools and drops the PostgreSQL database (with any connection still open to
    /// it), or removes the SQLite directory.
    pub async fn cleanup(mut self) {
        self.db.close().await;
        if let Some(pg) = self.postgres.take() {
            pg.drop_now().await;
        }
    }
}

impl Deref for TestDb {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR).ok().filter(|u| !u.is_empty())
}

/// A fresh PostgreSQL database on the server of `CIVIC_TEST_POSTGRES_URL`, or `None` when it is
/// unset; dropped (with its connections) when the value is. Panics when the variable is set but
/// the server cannot be used: a test run that asked for PostgreSQL must not quietly fall back to
/// SQLite.
pub async fn postgres_from_env() -> Option<ScratchDatabase> {
    Some(ScratchDatabase::create(&postgres_url()?).await.expect("a test database on CIVIC_TEST_POSTGRES_URL"))
}
