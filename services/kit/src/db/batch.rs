//! Several statements of one transaction sent together: on SQLite in one round trip to the
//! connection's thread (one multi-statement query, its placeholders renumbered), on PostgreSQL
//! one after another. Every statement of a SQLite connection is a hop to its thread and back,
//! and under load each hop waits its turn for a CPU, so a write transaction that holds the one
//! writer for six statements holds it several times longer than one that sends them at once.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

use super::Tx;

/// A value bound to a batched statement (the types civic's schemas use; see the module docs
/// of [`crate::db`] for why there is no bare NULL).
#[derive(Debug, Clone)]
pub enum Arg {
    /// TEXT.
    Text(String),
    /// TEXT that may be NULL where the statement always binds an optional text.
    OptText(Option<String>),
    /// BIGINT.
    Int(i64),
    /// DOUBLE PRECISION / REAL.
    Real(f64),
    /// BLOB / BYTEA.
    Blob(Vec<u8>),
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}

impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Arg::Blob(v)
    }
}

impl Arg {
    fn bind<'q>(self, query: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        match self {
            Arg::Text(v) => query.bind(v),
            Arg::OptText(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
            Arg::Real(v) => query.bind(v),
            Arg::Blob(v) => query.bind(v),
        }
    }
}

/// Statements to run in order in one transaction; see the module docs.
#[derive(Debug, Default)]
pub struct Batch {
    statements: Vec<(&'static str, Vec<Arg>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `sql` (one statement, `$1`… placeholders, no trailing `;`) with its arguments, one
    /// per placeholder number.
    pub fn push(&mut self, sql: &'static str, args: Vec<Arg>) {
        debug_assert_eq!(highest_placeholder(sql), args.len(), "placeholders and arguments of {sql}");
        self.statements.push((sql, args));
    }

    /// Adds the statements of `other` after these.
    pub fn append(&mut self, mut other: Batch) {
        self.statements.append(&mut other.statements);
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Runs the statements in `tx`, in order; the first that fails stops the rest and its error
    /// is returned as the database gave it (the caller's transaction is then rolled back).
    pub async fn run(self, tx: &mut Tx) -> std::result::Result<(), sqlx::Error> {
        match self.statements.len() {
            0 => return Ok(()),
            1 => {}
            _ if tx.backend_name() == "SQLite" => {
                let mut sql = String::new();
                let mut offset = 0;
                for (statement, args) in &self.statements {
                    renumber(&mut sql, statement, offset);
                    sql.push_str(";\n");
                    offset += args.len();
                }
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for arg in self.statements.into_iter().flat_map(|(_, args)| args) {
                    query = arg.bind(query);
                }
                query.execute(&mut **tx).await?;
                return Ok(());
            }
            _ => {}
        }
        for (statement, args) in self.statements {
            let mut query = sqlx::query(statement);
            for arg in args {
                query = arg.bind(query);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// Appends `sql` to `out` with each placeholder `$n` written `$(n + offset)`. civic's SQL has
/// no `$` but in placeholders (no dollar-quoted strings, no `$` in literals).
fn renumber(out: &mut String, sql: &str, offset: usize) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

/// The highest placeholder number in `sql` (0 for none).
fn highest_placeholder(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|s| s.bytes().take_while(u8::is_ascii_digit).map(char::from).collect::<String>().parse().ok())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_past_the_earlier_statements() {
        let mut out = String::new();
        renumber(&mut out, "insert into t (a, b, c) values ($1, $2, $2)", 3);
        assert_eq!(out, "insert into t (a, b, c) values ($4, $5, $5)");
        let mut out = String::new();
        renumber(&mut out, "update t set a = $10 where b = $9", 0);
        assert_eq!(out, "update t set a = $10 where b = $9");
        assert_eq!(highest_placeholder("values ($1, $12, $3)"), 12);
        assert_eq!(highest_placeholder("select 1"), 0);
    }
}
