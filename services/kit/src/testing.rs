//! Helpers for tests that need a real database: a fresh PostgreSQL database per test when
//! `CIVIC_TEST_POSTGRES_URL` is set (created on the server that URL names, dropped when the
//! test ends), so the same suite runs on SQLite and on PostgreSQL.

use sqlx::any::AnyPoolOptions;

/// A PostgreSQL database made for one test; dropped (with its connections) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// A fresh database on the server of `CIVIC_TEST_POSTGRES_URL`, or `None` when it is unset.
    /// Panics when the variable is set but the server cannot be used: a test run that asked for
    /// PostgreSQL must not quietly fall back to SQLite.
    pub async fn from_env() -> Option<Self> {
        let admin_url = std::env::var("CIVIC_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())?;
        sqlx::any::install_default_drivers();
        let name = format!("civic_test_{}", uuid::Uuid::new_v4().simple());
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .expect("connect to CIVIC_TEST_POSTGRES_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = replace_database(&admin_url, &name);
        Some(Self { url, admin_url, name })
    }

    /// The URL of the fresh database.
    pub fn url(&self) -> &str {
        &self.url
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

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // A thread of its own: the test's runtime may be shutting down around us.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let admin = AnyPoolOptions::new().max_connections(1).connect(&admin_url).await.ok()?;
                let drop = format!("drop database if exists {name} with (force)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&admin).await.ok()?;
                admin.close().await;
                Some(())
            })
        });
        if dropped.join().ok().flatten().is_none() {
            eprintln!("test database {} was not dropped", self.name);
        }
    }
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
