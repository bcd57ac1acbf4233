//! Changes on one account (a person's points, a volunteer's bookings) taken one at a time.

use civic_kit::db::Tx;
use civic_kit::error::Result;
use sha2::{Digest, Sha256};

/// Holds `what` of `account` in `street` until the transaction ends: on PostgreSQL a
/// transaction-scoped advisory lock keyed by them; SQLite's write transaction already holds the
/// database's one writer.
pub(crate) async fn hold(tx: &mut Tx, what: &str, street: &str, account: &str) -> Result<()> {
    if tx.backend_name() != "PostgreSQL" {
        return Ok(());
    }
    let digest = Sha256::digest(format!("civic.volunteer.{what}|{street}|{account}"));
    let key = i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"));
    sqlx::query("select pg_advisory_xact_lock($1)").bind(key).execute(&mut **tx).await?;
    Ok(())
}
