//! The catalogue's tables: items (the editable content, encoded, with list and search columns)
//! and their published revisions. SQL is portable across SQLite and PostgreSQL (see `kit::db`).

use civic_kit::db::{OnConstraint, Tx, on_constraint};
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::etag;
use civic_kit::time;
use civic_proto::catalogue::service_item::{Category, HandlingMode, State};
use civic_proto::catalogue::{ServiceItem, ServiceItemRevision};
use prost::Message;
use sqlx::AnyPool;

use crate::domain::ItemName;
use crate::search;

/// An item as stored.
#[derive(Debug, Clone)]
pub struct StoredItem {
    /// Its name.
    pub name: ItemName,
    /// Its lifecycle state.
    pub state: State,
    /// The latest published revision (0: never published).
    pub revision: i64,
    /// The change counter behind the etag.
    pub version: i64,
    /// The writable content.
    pub content: ServiceItem,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When its latest revision was published.
    pub publish_time: Option<String>,
}

impl StoredItem {
    /// The item as the API shows it: content plus the output-only fields.
    pub fn to_proto(&self) -> ServiceItem {
        ServiceItem {
            name: self.name.to_string(),
            state: self.state as i32,
            revision: self.revision,
            etag: etag(self.version),
            create_time: time::text_to_timestamp(&self.created_at),
            update_time: time::text_to_timestamp(&self.updated_at),
            publish_time: self.publish_time.as_deref().and_then(time::text_to_timestamp),
            ..self.content.clone()
        }
    }
}

type Row = (String, String, String, i64, i64, Vec<u8>, String, String, Option<String>);

fn from_row(row: Row) -> Result<StoredItem> {
    let (street, item, state, revision, version, body, created_at, updated_at, publish_time) = row;
    let state = State::from_str_name(&state).ok_or_else(|| Error::internal(BadRow("state")))?;
    let content = ServiceItem::decode(body.as_slice()).map_err(Error::internal)?;
    Ok(StoredItem {
        name: ItemName { street, item },
        state,
        revision,
        version,
        content,
        created_at,
        updated_at,
        publish_time,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("stored item has an unreadable {0}")]
struct BadRow(&'static str);

/// Only the content is encoded; the output-only fields live in columns.
fn content_of(item: &ServiceItem) -> ServiceItem {
    ServiceItem {
        name: String::new(),
        state: 0,
        revision: 0,
        etag: String::new(),
        create_time: None,
        update_time: None,
        publish_time: None,
        ..item.clone()
    }
}

fn search_doc(item: &ServiceItem) -> String {
    search::document(&search::Fields {
        title: &item.title,
        title_en: &item.title_en,
        keywords: &item.keywords,
        summary: &item.summary,
    })
}

fn category(item: &ServiceItem) -> &'static str {
    Category::try_from(item.category).unwrap_or(Category::Unspecified).as_str_name()
}

fn mode(item: &ServiceItem) -> &'static str {
    HandlingMode::try_from(item.handling_mode).unwrap_or(HandlingMode::Unspecified).as_str_name()
}

/// Inserts a new draft. An existing name is ALREADY_EXISTS.
#[tracing::instrument(skip(tx, item), fields(item = %name))]
pub async fn insert(tx: &mut Tx, name: &ItemName, item: &ServiceItem) -> Result<StoredItem> {
    let now = time::now_text();
    let content = content_of(item);
    let sql = "insert into items (street, item_id, state, revision, version, body, title, category, handling_mode, search_doc, created_at, updated_at, publish_time)
         values ($1, $2, $3, 0, 1, $4, $5, $6, $7, $8, $9, $9, null)";
    sqlx::query(sql)
        .bind(&name.street)
        .bind(&name.item)
        .bind(State::Draft.as_str_name())
        .bind(content.encode_to_vec())
        .bind(&content.title)
        .bind(category(&content))
        .bind(mode(&content))
        .bind(search_doc(&content))
        .bind(&now)
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            on_constraint(
                e,
                &[OnConstraint { name: "items_pkey", kind: sqlx::error::ErrorKind::UniqueViolation }],
                |_| Error::already_exists(name.to_string()),
            )
        })?;
    Ok(StoredItem {
        name: name.clone(),
        state: State::Draft,
        revision: 0,
        version: 1,
        content,
        created_at: now.clone(),
        updated_at: now,
        publish_time: None,
    })
}

/// Reads one item for update inside a write transaction.
pub async fn get_in(tx: &mut Tx, name: &ItemName) -> Result<Option<StoredItem>> {
    let sql = "select street, item_id, state, revision, version, body, created_at, updated_at, publish_time
               from items where street = $1 and item_id = $2";
    let row: Option<Row> = sqlx::query_as(sql).bind(&name.street).bind(&name.item).fetch_optional(&mut **tx).await?;
    row.map(from_row).transpose()
}

/// Reads one item.
#[tracing::instrument(skip(pool), fields(item = %name))]
pub async fn get(pool: &AnyPool, name: &ItemName) -> Result<Option<StoredItem>> {
    let sql = "select street, item_id, state, revision, version, body, created_at, updated_at, publish_time
               from items where street = $1 and item_id = $2";
    let row: Option<Row> = sqlx::query_as(sql).bind(&name.street).bind(&name.item).fetch_optional(pool).await?;
    row.map(from_row).transpose()
}

/// Writes an item's new state, content and counters (`version` already bumped by the caller).
#[tracing::instrument(skip(tx, item), fields(item = %item.name))]
pub async fn save(tx: &mut Tx, item: &StoredItem) -> Result<()> {
    let sql = "update items set state = $3, revision = $4, version = $5, body = $6, title = $7, category = $8,
               handling_mode = $9, search_doc = $10, updated_at = $11, publish_time = $12
               where street = $1 and item_id = $2";
    sqlx::query(sql)
        .bind(&item.name.street)
        .bind(&item.name.item)
        .bind(item.state.as_str_name())
        .bind(item.revision)
        .bind(item.version)
        .bind(item.content.encode_to_vec())
        .bind(&item.content.title)
        .bind(category(&item.content))
        .bind(mode(&item.content))
        .bind(search_doc(&item.content))
        .bind(&item.updated_at)
        .bind(&item.publish_time)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes an item (drafts only; the caller checks).
pub async fn delete(tx: &mut Tx, name: &ItemName) -> Result<()> {
    sqlx::query("delete from items where street = $1 and item_id = $2")
        .bind(&name.street)
        .bind(&name.item)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the item's current content as its revision `item.revision`.
pub async fn insert_revision(tx: &mut Tx, item: &StoredItem) -> Result<()> {
    let now = time::now_text();
    let sql = "insert into item_revisions (street, item_id, revision, body, publish_time, created_at, updated_at)
               values ($1, $2, $3, $4, $5, $5, $5)";
    sqlx::query(sql)
        .bind(&item.name.street)
        .bind(&item.name.item)
        .bind(item.revision)
        .bind(item.content.encode_to_vec())
        .bind(item.publish_time.as_deref().unwrap_or(&now))
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
    street: &str,
    filter: &ListFilter<'_>,
    after: &str,
    limit: usize,
) -> Result<Vec<StoredItem>> {
    let sql = "select street, item_id, state, revision, version, body, created_at, updated_at, publish_time
               from items
               where street = $1 and ($2 = '' or state = $2) and ($3 = '' or category = $3)
                 and ($4 = '' or handling_mode = $4) and item_id > $5
               order by item_id limit $6";
    let rows: Vec<Row> = sqlx::query_as(sql)
        .bind(street)
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
/// search; scoring happens in [`crate::search`]).
#[tracing::instrument(skip(pool))]
pub async fn search_candidates(
    pool: &AnyPool,
    street: &str,
    term: &str,
    filter: &ListFilter<'_>,
) -> Result<Vec<StoredItem>> {
    let escaped = term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    let sql = "select street, item_id, state, revision, version, body, created_at, updated_at, publish_time
               from items
               where street = $1 and state = 'PUBLISHED' and ($2 = '' or category = $2)
                 and ($3 = '' or handling_mode = $3) and search_doc like $4 escape '\\'
               order by item_id";
    let rows: Vec<Row> = sqlx::query_as(sql)
        .bind(street)
        .bind(filter.category)
        .bind(filter.handling_mode)
        .bind(format!("%{escaped}%"))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(from_row).collect()
}

/// One page of an item's revisions, newest first, before revision `before` (exclusive; 0 = from
/// the newest).
pub async fn list_revisions(
    pool: &AnyPool,
    name: &ItemName,
    before: i64,
    limit: usize,
) -> Result<Vec<ServiceItemRevision>> {
    let sql = "select revision, body, publish_time from item_revisions
               where street = $1 and item_id = $2 and ($3 = 0 or revision < $3)
               order by revision desc limit $4";
    let rows: Vec<(i64, Vec<u8>, String)> =
        sqlx::query_as(sql).bind(&name.street).bind(&name.item).bind(before).bind(limit as i64).fetch_all(pool).await?;
    rows.into_iter()
        .map(|(revision, body, publish_time)| {
            let content = ServiceItem::decode(body.as_slice()).map_err(Error::internal)?;
            let published = time::text_to_timestamp(&publish_time);
            Ok(ServiceItemRevision {
                name: format!("{name}/revisions/{revision}"),
                service_item: Some(ServiceItem {
                    name: name.to_string(),
                    state: State::Published as i32,
                    revision,
                    publish_time: published,
                    ..content
                }),
                publish_time: published,
            })
        })
        .collect()
}
