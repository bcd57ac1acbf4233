//! The catalogue's tables: items (the content, encoded as its `ServiceItem` schema, with
//! columns for what lists and search filter on) and their published revisions. Reads return
//! domain [`Item`]s. SQL is portable across SQLite and PostgreSQL (see `kit::db`).

use civic_kit::db::{Tx, exists_on};
use civic_kit::error::{Error, Result};
use civic_kit::names::{Id, StreetId};
use civic_proto::catalogue::ServiceItem;
use prost::Message;
use sqlx::AnyPool;

use crate::domain::{Content, Item, ItemName, ItemState};
use crate::search;

type Row = (String, String, String, i64, i64, Vec<u8>, String, String, Option<String>);

fn from_row(row: Row) -> Result<Item> {
    let (street, item, state, revision, version, body, created_at, updated_at, publish_time) = row;
    let name = ItemName::new(StreetId::parse("street", &street)?, Id::parse("item", &item)?);
    let state = ItemState::parse(&state).ok_or_else(|| Error::internal(BadRow("state")))?;
    let content = Content::from_stored(ServiceItem::decode(body.as_slice()).map_err(Error::internal)?);
    Ok(Item { name, state, revision, version, content, created_at, updated_at, publish_time })
}

#[derive(Debug, thiserror::Error)]
#[error("stored item has an unreadable {0}")]
struct BadRow(&'static str);

fn search_doc(content: &Content) -> String {
    search::document(&content.search_fields())
}

/// Inserts a new item. An existing name is ALREADY_EXISTS.
#[tracing::instrument(skip(tx, item), fields(item = %item.name))]
pub async fn insert(tx: &mut Tx, item: &Item) -> Result<()> {
    let sql = "insert into items (street, item_id, state, revision, version, body, title, category, handling_mode, search_doc, created_at, updated_at, publish_time)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    bind_item(sqlx::query(sql), item)
        .bind(&item.created_at)
        .bind(&item.updated_at)
        .bind(&item.publish_time)
        .execute(&mut **tx)
        .await
        .map_err(|e| exists_on(e, "items_pkey", &item.name))?;
    Ok(())
}

/// The columns $1 to $10 of an item's row: its key, state, counters, content and what lists
/// and search filter on.
fn bind_item<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    item: &'q Item,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let content = &item.content;
    query
        .bind(item.name.street().as_str())
        .bind(item.name.id().as_str())
        .bind(item.state.as_str())
        .bind(item.revision)
        .bind(item.version)
        .bind(content.message().encode_to_vec())
        .bind(content.title())
        .bind(content.category().as_str_name())
        .bind(content.handling_mode().as_str_name())
        .bind(search_doc(content))
}

const SELECT_ONE: &str = "select street, item_id, state, revision, version, body, created_at, updated_at, publish_time
               from items where street = $1 and item_id = $2";

/// Reads one item for update inside a write transaction.
pub async fn get_in(tx: &mut Tx, name: &ItemName) -> Result<Option<Item>> {
    let row: Option<Row> = sqlx::query_as(SELECT_ONE)
        .bind(name.street().as_str())
        .bind(name.id().as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(from_row).transpose()
}

/// Reads one item.
#[tracing::instrument(skip(pool), fields(item = %name))]
pub async fn get(pool: &AnyPool, name: &ItemName) -> Result<Option<Item>> {
    let row: Option<Row> =
        sqlx::query_as(SELECT_ONE).bind(name.street().as_str()).bind(name.id().as_str()).fetch_optional(pool).await?;
    row.map(from_row).transpose()
}

/// Writes an item's new state, content and counters.
#[tracing::instrument(skip(tx, item), fields(item = %item.name))]
pub async fn save(tx: &mut Tx, item: &Item) -> Result<()> {
    let sql = "update items set state = $3, revision = $4, version = $5, body = $6, title = $7, category = $8,
               handling_mode = $9, search_doc = $10, updated_at = $11, publish_time = $12
               where street = $1 and item_id = $2";
    bind_item(sqlx::query(sql), item).bind(&item.updated_at).bind(&item.publish_time).execute(&mut **tx).await?;
    Ok(())
}

/// Deletes an item (drafts only; the caller checks).
pub async fn delete(tx: &mut Tx, name: &ItemName) -> Result<()> {
    sqlx::query("delete from items where street = $1 and item_id = $2")
        .bind(name.street().as_str())
        .bind(name.id().as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the item's current content as its revision `item.revision`.
pub async fn insert_revision(tx: &mut Tx, item: &Item) -> Result<()> {
    let sql = "insert into item_revisions (street, item_id, revision, body, publish_time, created_at, updated_at)
               values ($1, $2, $3, $4, $5, $5, $5)";
    sqlx::query(sql)
        .bind(item.name.street().as_str())
        .bind(item.name.id().as_str())
        .bind(item.revision)
        .bind(item.content.message().encode_to_vec())
        .bind(item.publish_time.as_deref().unwrap_or(&item.updated_at))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Which items a list returns; empty strings mean "any".
#[derive(Debug, Default)]
pub struct ListFilter<'a> {
    /// A state name (`PUBLISHED`), or "".
    pub state: &'a str,
    /// A category name, or "".
    pub category: &'a str,
    /// A handling mode name, or "".
    pub handling_mode: &'a str,
}

/// One page of a street's items in id order, after `after` (exclusive).
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &AnyPool,
    street: &StreetId,
    filter: &ListFilter<'_>,
    after: &str,
    limit: usize,
) -> Result<Vec<Item>> {
    let sql = "select street, item_id, state, revision, version, body, created_at, updated_at, publish_time
               from items
               where street = $1 and ($2 = '' or state = $2) and ($3 = '' or category = $3)
                 and ($4 = '' or handling_mode = $4) and item_id > $5
               order by item_id limit $6";
    let rows: Vec<Row> = sqlx::query_as(sql)
        .bind(street.as_str())
        .bind(filter.state)
        .bind(filter.category)
        .bind(filter.handling_mode)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(from_row).collect()
}

/// Published items of a street whose search document holds `term` (the coarse prefilter of a
/// search; scoring happens in [`crate::search`]). The term is not recorded in the span: it is
/// what a resident typed.
#[tracing::instrument(skip(pool, term))]
pub async fn search_candidates(
    pool: &AnyPool,
    street: &StreetId,
    term: &str,
    filter: &ListFilter<'_>,
) -> Result<Vec<Item>> {
    let escaped = term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    let sql = "select street, item_id, state, revision, version, body, created_at, updated_at, publish_time
               from items
               where street = $1 and state = 'PUBLISHED' and ($2 = '' or category = $2)
                 and ($3 = '' or handling_mode = $3) and search_doc like $4 escape '\\'
               order by item_id";
    let rows: Vec<Row> = sqlx::query_as(sql)
        .bind(street.as_str())
        .bind(filter.category)
        .bind(filter.handling_mode)
        .bind(format!("%{escaped}%"))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(from_row).collect()
}

/// A published revision: its number, content and publication time.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// The revision's number.
    pub revision: i64,
    /// The content as published then.
    pub content: Content,
    /// When it was published (stored time text).
    pub publish_time: String,
}

/// One page of an item's revisions, newest first, before revision `before` (exclusive; 0 = from
/// the newest).
pub async fn list_revisions(pool: &AnyPool, name: &ItemName, before: i64, limit: usize) -> Result<Vec<Revision>> {
    let sql = "select revision, body, publish_time from item_revisions
               where street = $1 and item_id = $2 and ($3 = 0 or revision < $3)
               order by revision desc limit $4";
    let rows: Vec<(i64, Vec<u8>, String)> = sqlx::query_as(sql)
        .bind(name.street().as_str())
        .bind(name.id().as_str())
        .bind(before)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|(revision, body, publish_time)| {
            let content = Content::from_stored(ServiceItem::decode(body.as_slice()).map_err(Error::internal)?);
            Ok(Revision { revision, content, publish_time })
        })
        .collect()
}

/// The content of one published revision, if it exists.
pub async fn get_revision(pool: &AnyPool, name: &crate::domain::RevisionName) -> Result<Option<Revision>> {
    Ok(list_revisions(pool, &name.item, name.revision + 1, 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.revision == name.revision))
}
