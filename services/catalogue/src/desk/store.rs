//! The desk's tables: applications (the case encoded whole, see [`super::record`], with the
//! columns lists filter on) and inquiries. Reads return the desk's domain types.

use civic_kit::db::{Tx, exists_on};
use civic_kit::error::{Error, Result};
use civic_kit::names::StreetId;
use civic_kit::time;
use civic_proto::catalogue::application::State;
use prost::Message;
use sqlx::AnyPool;

use super::domain::{ApplicationName, Case, Inquiry, InquiryName};
use super::record;

fn decode(version: i64, body: &[u8]) -> Result<Case> {
    record::from_message(civic_proto::catalogue::Application::decode(body).map_err(Error::internal)?, version)
}

fn optional(user: &Option<civic_kit::names::UserName>) -> &str {
    user.as_ref().map(|u| u.as_str()).unwrap_or_default()
}

/// Inserts a new case.
#[tracing::instrument(skip(tx, case), fields(application = %case.name))]
pub async fn insert(tx: &mut Tx, case: &Case) -> Result<()> {
    let sql = "insert into applications (street, application_id, applicant, handler, state, due_time, version, body, created_at, updated_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)";
    sqlx::query(sql)
        .bind(case.name.street().as_str())
        .bind(case.name.id().as_str())
        .bind(case.applicant.as_str())
        .bind(optional(&case.handler))
        .bind(case.state.as_str_name())
        .bind(time::to_text(case.due_time))
        .bind(case.version)
        .bind(record::to_message(case).encode_to_vec())
        .bind(time::to_text(case.created))
        .execute(&mut **tx)
        .await
        .map_err(|e| exists_on(e, "applications_pkey", &case.name))?;
    Ok(())
}

/// Writes a changed case (its version already bumped).
#[tracing::instrument(skip(tx, case), fields(application = %case.name))]
pub async fn save(tx: &mut Tx, case: &Case) -> Result<()> {
    let sql = "update applications set handler = $3, state = $4, version = $5, body = $6, updated_at = $7
               where street = $1 and application_id = $2";
    sqlx::query(sql)
        .bind(case.name.street().as_str())
        .bind(case.name.id().as_str())
        .bind(optional(&case.handler))
        .bind(case.state.as_str_name())
        .bind(case.version)
        .bind(record::to_message(case).encode_to_vec())
        .bind(time::to_text(case.updated))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SELECT_ONE: &str = "select version, body from applications where street = $1 and application_id = $2";

/// Reads a case inside a write transaction.
pub async fn get_in(tx: &mut Tx, name: &ApplicationName) -> Result<Option<Case>> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(SELECT_ONE)
        .bind(name.street().as_str())
        .bind(name.id().as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|(v, b)| decode(v, &b)).transpose()
}

/// Reads a case.
pub async fn get(pool: &AnyPool, name: &ApplicationName) -> Result<Option<Case>> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as(SELECT_ONE).bind(name.street().as_str()).bind(name.id().as_str()).fetch_optional(pool).await?;
    row.map(|(v, b)| decode(v, &b)).transpose()
}

/// Which cases a list returns; empty strings mean "any".
#[derive(Debug, Default)]
pub struct ApplicationFilter {
    /// A state.
    pub state: Option<State>,
    /// An applicant, `users/{user}`.
    pub applicant: String,
    /// A handler, `users/{user}`.
    pub handler: String,
    /// When set (a stored time), only open cases due before it.
    pub overdue_at: String,
}

/// One page of a street's cases, newest first, after the position (created_at, id): each case
/// with its position.
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &AnyPool,
    street: &StreetId,
    filter: &ApplicationFilter,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<(Case, String, String)>> {
    let sql = "select version, body, created_at, application_id from applications
               where street = $1 and ($2 = '' or state = $2) and ($3 = '' or applicant = $3)
                 and ($4 = '' or handler = $4)
                 and ($5 = '' or (state in ('RECEIVED', 'ACCEPTED', 'IN_PROGRESS', 'FORWARDED') and due_time < $5))
                 and ($6 = '' or created_at < $6 or (created_at = $6 and application_id < $7))
               order by created_at desc, application_id desc limit $8";
    let (created, id) = after.unwrap_or_default();
    let rows: Vec<(i64, Vec<u8>, String, String)> = sqlx::query_as(sql)
        .bind(street.as_str())
        .bind(filter.state.map(|s| s.as_str_name()).unwrap_or_default())
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
pub async fn insert_inquiry(tx: &mut Tx, inquiry: &Inquiry) -> Result<()> {
    sqlx::query("insert into inquiries (street, inquiry_id, body, created_at, updated_at) values ($1, $2, $3, $4, $4)")
        .bind(inquiry.name.street().as_str())
        .bind(inquiry.name.id().as_str())
        .bind(record::inquiry_to_message(inquiry).encode_to_vec())
        .bind(time::to_text(inquiry.created))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn decode_inquiry(body: &[u8]) -> Result<Inquiry> {
    record::inquiry_from_message(civic_proto::catalogue::Inquiry::decode(body).map_err(Error::internal)?)
}

/// Reads an inquiry.
pub async fn get_inquiry(pool: &AnyPool, name: &InquiryName) -> Result<Option<Inquiry>> {
    let row: Option<(Vec<u8>,)> = sqlx::query_as("select body from inquiries where street = $1 and inquiry_id = $2")
        .bind(name.street().as_str())
        .bind(name.id().as_str())
        .fetch_optional(pool)
        .await?;
    row.map(|(b,)| decode_inquiry(&b)).transpose()
}

/// One page of a street's inquiries, newest first, after the position (created_at, id).
pub async fn list_inquiries(
    pool: &AnyPool,
    street: &StreetId,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<(Inquiry, String, String)>> {
    let sql = "select body, created_at, inquiry_id from inquiries
               where street = $1 and ($2 = '' or created_at < $2 or (created_at = $2 and inquiry_id < $3))
               order by created_at desc, inquiry_id desc limit $4";
    let (created, id) = after.unwrap_or_default();
    let rows: Vec<(Vec<u8>, String, String)> =
        sqlx::query_as(sql).bind(street.as_str()).bind(created).bind(id).bind(limit as i64).fetch_all(pool).await?;
    rows.into_iter().map(|(b, c, i)| Ok((decode_inquiry(&b)?, c, i))).collect()
}
