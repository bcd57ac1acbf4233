//! The desk's tables: applications (the case encoded whole, with filter columns) and inquiries.

use civic_kit::db::{OnConstraint, Tx, on_constraint};
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::etag;
use civic_proto::catalogue::application::State;
use civic_proto::catalogue::{Application, Inquiry};
use prost::Message;
use sqlx::AnyPool;

use super::domain::ApplicationName;

/// An application as stored: the case and its change counter.
#[derive(Debug, Clone)]
pub struct StoredApplication {
    /// The case, output-only fields included (the etag is set on the way out).
    pub application: Application,
    /// The change counter behind the etag.
    pub version: i64,
}

impl StoredApplication {
    /// The case as the API shows it.
    pub fn to_proto(&self) -> Application {
        Application { etag: etag(self.version), ..self.application.clone() }
    }

    /// The case's state.
    pub fn state(&self) -> State {
        State::try_from(self.application.state).unwrap_or(State::Unspecified)
    }
}

fn decode(version: i64, body: &[u8]) -> Result<StoredApplication> {
    let application = Application::decode(body).map_err(Error::internal)?;
    Ok(StoredApplication { application, version })
}

fn state_name(a: &Application) -> &'static str {
    State::try_from(a.state).unwrap_or(State::Unspecified).as_str_name()
}

fn due_text(a: &Application) -> String {
    a.due_time
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(civic_kit::time::to_text)
        .unwrap_or_default()
}

/// Inserts a new case.
#[tracing::instrument(skip(tx, stored), fields(application = %name))]
pub async fn insert(tx: &mut Tx, name: &ApplicationName, stored: &StoredApplication, now: &str) -> Result<()> {
    let a = &stored.application;
    let sql = "insert into applications (street, application_id, applicant, handler, state, due_time, version, body, created_at, updated_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)";
    sqlx::query(sql)
        .bind(&name.street)
        .bind(&name.id)
        .bind(&a.applicant)
        .bind(&a.handler)
        .bind(state_name(a))
        .bind(due_text(a))
        .bind(stored.version)
        .bind(a.encode_to_vec())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            on_constraint(
                e,
                &[OnConstraint { name: "applications_pkey", kind: sqlx::error::ErrorKind::UniqueViolation }],
                |_| Error::already_exists(name.to_string()),
            )
        })?;
    Ok(())
}

/// Writes a changed case (its version already bumped).
#[tracing::instrument(skip(tx, stored), fields(application = %name))]
pub async fn save(tx: &mut Tx, name: &ApplicationName, stored: &StoredApplication, now: &str) -> Result<()> {
    let a = &stored.application;
    let sql = "update applications set handler = $3, state = $4, version = $5, body = $6, updated_at = $7
               where street = $1 and application_id = $2";
    sqlx::query(sql)
        .bind(&name.street)
        .bind(&name.id)
        .bind(&a.handler)
        .bind(state_name(a))
        .bind(stored.version)
        .bind(a.encode_to_vec())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SELECT_ONE: &str = "select version, body from applications where street = $1 and application_id = $2";

/// Reads a case inside a write transaction.
pub async fn get_in(tx: &mut Tx, name: &ApplicationName) -> Result<Option<StoredApplication>> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as(SELECT_ONE).bind(&name.street).bind(&name.id).fetch_optional(&mut **tx).await?;
    row.map(|(v, b)| decode(v, &b)).transpose()
}

/// Reads a case.
pub async fn get(pool: &AnyPool, name: &ApplicationName) -> Result<Option<StoredApplication>> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as(SELECT_ONE).bind(&name.street).bind(&name.id).fetch_optional(pool).await?;
    row.map(|(v, b)| decode(v, &b)).transpose()
}

/// Which cases a list returns; empty strings mean "any".
#[derive(Debug, Default)]
pub struct ApplicationFilter {
    /// A state name.
    pub state: String,
    /// An applicant, `users/{user}`.
    pub applicant: String,
    /// A handler, `users/{user}`.
    pub handler: String,
    /// When set (a stored time), only open cases due before it.
    pub overdue_at: String,
}

/// One page of a street's cases, newest first, after the position (created_at, id).
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &AnyPool,
    street: &str,
    filter: &ApplicationFilter,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<(StoredApplication, String, String)>> {
    let sql = "select version, body, created_at, application_id from applications
               where street = $1 and ($2 = '' or state = $2) and ($3 = '' or applicant = $3)
                 and ($4 = '' or handler = $4)
                 and ($5 = '' or (state in ('RECEIVED', 'ACCEPTED', 'IN_PROGRESS', 'FORWARDED') and due_time < $5))
                 and ($6 = '' or created_at < $6 or (created_at = $6 and application_id < $7))
               order by created_at desc, application_id desc limit $8";
    let (created, id) = after.unwrap_or_default();
    let rows: Vec<(i64, Vec<u8>, String, String)> = sqlx::query_as(sql)
        .bind(street)
        .bind(&filter.state)
        .bind(&filter.applicant)
        .bind(&filter.handler)
        .bind(&filter.overdue_at)
        .bind(created)
        .bind(id)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(|(v, b, c, i)| Ok((decode(v, &b)?, c, i))).collect()
}

/// Inserts an inquiry.
pub async fn insert_inquiry(tx: &mut Tx, street: &str, id: &str, inquiry: &Inquiry, now: &str) -> Result<()> {
    sqlx::query("insert into inquiries (street, inquiry_id, body, created_at, updated_at) values ($1, $2, $3, $4, $4)")
        .bind(street)
        .bind(id)
        .bind(inquiry.encode_to_vec())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Reads an inquiry.
pub async fn get_inquiry(pool: &AnyPool, street: &str, id: &str) -> Result<Option<Inquiry>> {
    let row: Option<(Vec<u8>,)> = sqlx::query_as("select body from inquiries where street = $1 and inquiry_id = $2")
        .bind(street)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(|(b,)| Inquiry::decode(b.as_slice()).map_err(Error::internal)).transpose()
}

/// One page of a street's inquiries, newest first, after the position (created_at, id).
pub async fn list_inquiries(
    pool: &AnyPool,
    street: &str,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<(Inquiry, String, String)>> {
    let sql = "select body, created_at, inquiry_id from inquiries
               where street = $1 and ($2 = '' or created_at < $2 or (created_at = $2 and inquiry_id < $3))
               order by created_at desc, inquiry_id desc limit $4";
    let (created, id) = after.unwrap_or_default();
    let rows: Vec<(Vec<u8>, String, String)> =
        sqlx::query_as(sql).bind(street).bind(created).bind(id).bind(limit as i64).fetch_all(pool).await?;
    rows.into_iter().map(|(b, c, i)| Ok((Inquiry::decode(b.as_slice()).map_err(Error::internal)?, c, i))).collect()
}
