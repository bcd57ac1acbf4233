//! Idempotent mutations (AIP-155) and etags (AIP-154). A mutating request with a `request_id`
//! saves its answer in the same transaction as its change; a retry with the same id gets that
//! answer back and changes nothing. The same id with a different request is refused.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::db::{Arg, Batch, Tx};
use crate::error::{Error, Result};

/// Who asked what, under which request id. Without a request id nothing is saved.
#[derive(Debug, Clone)]
pub struct RequestKey {
    caller: String,
    method: &'static str,
    request_id: String,
    request_hash: String,
}

impl RequestKey {
    /// The key of `request`, sent by `caller` (see `Caller::key`) to `method`. An invalid
    /// `request_id` (over 128 characters, or with control characters) is INVALID_ARGUMENT.
    pub fn new(caller: String, method: &'static str, request_id: &str, request: &impl Message) -> Result<Self> {
        if request_id.len() > 128 || request_id.chars().any(char::is_control) {
            return Err(Error::invalid("request_id", "must be at most 128 printable characters (a UUID is best)"));
        }
        let hash = Sha256::digest(request.encode_to_vec());
        let request_hash = hash.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { caller, method, request_id: request_id.to_owned(), request_hash })
    }

    /// The key of a change made by civic itself (the demo seed), which is never replayed.
    pub fn unkeyed(method: &'static str) -> Self {
        Self { caller: String::new(), method, request_id: String::new(), request_hash: String::new() }
    }

    fn is_set(&self) -> bool {
        !self.request_id.is_empty()
    }
}

/// The saved answer to this key, if the request was made before (read with `executor`); the
/// same id saved for a different request is INVALID_ARGUMENT.
pub async fn replay<'e, M, E>(executor: E, key: &RequestKey) -> Result<Option<M>>
where
    M: Message + Default,
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    if !key.is_set() {
        return Ok(None);
    }
    let saved: Option<(String, Vec<u8>)> = sqlx::query_as(
        "select request_hash, response from civic_idempotency where caller = $1 and method = $2 and request_id = $3",
    )
    .bind(&key.caller)
    .bind(key.method)
    .bind(&key.request_id)
    .fetch_optional(executor)
    .await?;
    match saved {
        None => Ok(None),
        Some((hash, _)) if hash != key.request_hash => {
            Err(Error::invalid("request_id", "was already used for a different request"))
        }
        Some((_, response)) => {
            tracing::debug!(method = key.method, "request replayed from its saved answer");
            M::decode(response.as_slice()).map(Some).map_err(Error::internal)
        }
    }
}

/// Saves the answer to this key in the transaction of the change. `false` when an answer was
/// saved under the key before (a retry, or a concurrent twin that committed first — on
/// PostgreSQL this waits for the twin's transaction): the caller rolls its change back and
/// replays. A key without a request id saves nothing and is `true`.
pub async fn save(tx: &mut Tx, key: &RequestKey, response: &impl Message) -> Result<bool> {
    let mut batch = Batch::new();
    stage(&mut batch, key, response);
    match batch.run(tx).await {
        Ok(()) => Ok(true),
        Err(e) if is_taken(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// As [`save`], the row added to `batch`; a batch that fails with [`is_taken`] found an answer
/// saved before.
pub fn stage(batch: &mut Batch, key: &RequestKey, response: &impl Message) {
    if !key.is_set() {
        return;
    }
    batch.push(
        "insert into civic_idempotency (caller, method, request_id, request_hash, response, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $6)",
        vec![
            Arg::from(&key.caller),
            key.method.into(),
            Arg::from(&key.request_id),
            Arg::from(&key.request_hash),
            response.encode_to_vec().into(),
            crate::time::now_text().into(),
        ],
    );
}

/// Whether `err` says an answer is saved under the key already (the key's uniqueness: by its
/// constraint's name on PostgreSQL, by its table in SQLite's message, which names columns).
pub fn is_taken(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else { return false };
    if db.kind() != sqlx::error::ErrorKind::UniqueViolation {
        return false;
    }
    match db.constraint() {
        Some(name) => name == "civic_idempotency_pkey",
        None => db.message().contains("civic_idempotency."),
    }
}

/// The etag of a resource at `version` (a counter bumped by every change).
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The version an etag stands for, or `None` when it is not one [`etag`] made.
pub fn version_of(etag: &str) -> Option<i64> {
    etag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// Checks an etag sent with an update or delete: empty means "any version"; otherwise it must
/// be the current one, or the request is ABORTED (someone changed the resource meanwhile).
pub fn check_etag(sent: &str, version: i64, resource: &str) -> Result<()> {
    if sent.is_empty() || sent == etag(version) { Ok(()) } else { Err(Error::etag_mismatch(resource)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_by_version() {
        assert!(check_etag("", 3, "x").is_ok());
        assert!(check_etag(&etag(3), 3, "x").is_ok());
        assert_eq!(check_etag(&etag(2), 3, "x").expect_err("stale").code(), tonic::Code::Aborted);
        assert_eq!(version_of(&etag(42)), Some(42));
        assert_eq!(version_of("42"), None);
    }

    #[test]
    fn request_ids_are_checked() {
        let long = "x".repeat(129);
        let err = RequestKey::new("anonymous".into(), "m", &long, &()).expect_err("too long");
        assert_eq!(err.violations()[0].field, "request_id");
    }
}
