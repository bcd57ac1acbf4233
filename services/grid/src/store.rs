//! The grid service's tables. SQL next to the function that runs it; reads return the
//! service's records, never wire messages (visits excepted: their body is the encoded visit).

use chrono::{DateTime, NaiveDate, Utc};
use civic_kit::db::{Tx, exists_on};
use civic_kit::error::{Error, Result};
use civic_kit::names::{Id, StreetId};
use civic_kit::time;
use prost::Message;
use sqlx::AnyPool;

use crate::domain::{
    AccessRecordName, CommunityName, GridName, HouseholdName, Place, ResidentName, VisitName, tags_from_text,
    tags_to_text,
};

fn stored_time(text: &str) -> Result<DateTime<Utc>> {
    time::from_text(text).ok_or_else(|| Error::internal(std::io::Error::other("a stored time is unreadable")))
}

// ---------------------------------------------------------------------------------------------
// Communities

/// A community as stored.
#[derive(Debug, Clone)]
pub struct CommunityRecord {
    /// Its name.
    pub name: CommunityName,
    /// Its display name.
    pub display_name: String,
    /// Its office.
    pub office: String,
    /// Its staff contacts.
    pub contacts: Vec<civic_proto::grid::StaffContact>,
    /// Its version (the etag).
    pub version: i64,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub updated: DateTime<Utc>,
}

type CommunityRow = (String, String, String, Option<Vec<u8>>, i64, String, String);

/// Staff contacts as stored: a contact card holding only them, encoded.
fn contacts_to_bytes(contacts: &[civic_proto::grid::StaffContact]) -> Vec<u8> {
    civic_proto::grid::ContactCard { community_contacts: contacts.to_vec(), ..Default::default() }.encode_to_vec()
}

fn contacts_from_bytes(bytes: Option<Vec<u8>>) -> Result<Vec<civic_proto::grid::StaffContact>> {
    match bytes {
        None => Ok(Vec::new()),
        Some(b) => {
            Ok(civic_proto::grid::ContactCard::decode(b.as_slice()).map_err(Error::internal)?.community_contacts)
        }
    }
}

fn community_of(street: &StreetId, row: CommunityRow) -> Result<CommunityRecord> {
    let (id, display_name, office, contacts, version, created, updated) = row;
    Ok(CommunityRecord {
        name: CommunityName::new(street.clone(), Id::parse("community", &id)?),
        display_name,
        office,
        contacts: contacts_from_bytes(contacts)?,
        version,
        created: stored_time(&created)?,
        updated: stored_time(&updated)?,
    })
}

/// Inserts a community.
pub async fn insert_community(tx: &mut Tx, c: &CommunityRecord) -> Result<()> {
    sqlx::query(
        "insert into communities (street, community_id, display_name, office, contacts, version, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(c.name.street().as_str())
    .bind(c.name.id().as_str())
    .bind(&c.display_name)
    .bind(&c.office)
    .bind(contacts_to_bytes(&c.contacts))
    .bind(c.version)
    .bind(time::to_text(c.created))
    .execute(&mut **tx)
    .await
    .map_err(|e| exists_on(e, "communities_pkey", &c.name))?;
    Ok(())
}

/// Reads a community.
pub async fn get_community(pool: &AnyPool, name: &CommunityName) -> Result<Option<CommunityRecord>> {
    let row: Option<CommunityRow> = sqlx::query_as(
        "select community_id, display_name, office, contacts, version, created_at, updated_at from communities
         where street = $1 and community_id = $2",
    )
    .bind(name.street().as_str())
    .bind(name.id().as_str())
    .fetch_optional(pool)
    .await?;
    row.map(|r| community_of(name.street(), r)).transpose()
}

/// Writes a changed community.
pub async fn save_community(tx: &mut Tx, c: &CommunityRecord) -> Result<()> {
    sqlx::query(
        "update communities set display_name = $3, office = $4, contacts = $5, version = $6, updated_at = $7
         where street = $1 and community_id = $2",
    )
    .bind(c.name.street().as_str())
    .bind(c.name.id().as_str())
    .bind(&c.display_name)
    .bind(&c.office)
    .bind(contacts_to_bytes(&c.contacts))
    .bind(c.version)
    .bind(time::to_text(c.updated))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reads a community inside a write.
pub async fn get_community_in(tx: &mut Tx, name: &CommunityName) -> Result<Option<CommunityRecord>> {
    let row: Option<CommunityRow> = sqlx::query_as(
        "select community_id, display_name, office, contacts, version, created_at, updated_at from communities
         where street = $1 and community_id = $2",
    )
    .bind(name.street().as_str())
    .bind(name.id().as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| community_of(name.street(), r)).transpose()
}

/// Whether a community exists, inside a write.
pub async fn community_exists(tx: &mut Tx, name: &CommunityName) -> Result<bool> {
    let row: Option<(i64,)> = sqlx::query_as("select 1 from communities where street = $1 and community_id = $2")
        .bind(name.street().as_str())
        .bind(name.id().as_str())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

/// One page of a street's communities by id, after `after`.
pub async fn list_communities(
    pool: &AnyPool,
    street: &StreetId,
    after: &str,
    limit: usize,
) -> Result<Vec<CommunityRecord>> {
    let rows: Vec<CommunityRow> = sqlx::query_as(
        "select community_id, display_name, office, contacts, version, created_at, updated_at from communities
         where street = $1 and community_id > $2 order by community_id limit $3",
    )
    .bind(street.as_str())
    .bind(after)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(|r| community_of(street, r)).collect()
}

// ---------------------------------------------------------------------------------------------
// Grids

/// A worker's assignment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentRecord {
    /// `users/{user}`.
    pub worker: String,
    /// The duties.
    pub duties: String,
    /// The worker's name, for contact cards.
    pub display_name: String,
    /// The worker's work phone, for contact cards.
    pub phone: String,
}

/// A cover as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverRecord {
    /// `users/{user}`.
    pub worker: String,
    /// The first day.
    pub start: NaiveDate,
    /// The last day, inclusive.
    pub end: NaiveDate,
    /// Whom it stands in for, or empty.
    pub covers_for: String,
}

/// A grid as stored.
#[derive(Debug, Clone)]
pub struct GridRecord {
    /// Its name.
    pub name: GridName,
    /// Its display name.
    pub display_name: String,
    /// Its current boundary, a GeoJSON Polygon geometry.
    pub boundary: String,
    /// The boundary's bounding box: west, south, east, north.
    pub bbox: [f64; 4],
    /// The boundary's revision.
    pub revision: i64,
    /// Its workers.
    pub workers: Vec<AssignmentRecord>,
    /// Its covers.
    pub covers: Vec<CoverRecord>,
    /// Its version (the etag).
    pub version: i64,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub updated: DateTime<Utc>,
}

type GridRow = (String, String, String, String, i64, f64, f64, f64, f64, i64, String, String);

const GRID_COLUMNS: &str = "community_id, grid_id, display_name, boundary, revision, min_longitude, min_latitude,
     max_longitude, max_latitude, version, created_at, updated_at";

fn grid_of(street: &StreetId, row: GridRow) -> Result<GridRecord> {
    let (community, grid, display_name, boundary, revision, w, s, e, n, version, created, updated) = row;
    let community = CommunityName::new(street.clone(), Id::parse("community", &community)?);
    Ok(GridRecord {
        name: GridName::new(&community, Id::parse("grid", &grid)?),
        display_name,
        boundary,
        bbox: [w, s, e, n],
        revision,
        workers: Vec::new(),
        covers: Vec::new(),
        version,
        created: stored_time(&created)?,
        updated: stored_time(&updated)?,
    })
}

/// Inserts a new grid with its first revision, workers and covers.
pub async fn insert_grid(tx: &mut Tx, g: &GridRecord) -> Result<()> {
    let sql = "insert into grids (street, community_id, grid_id, display_name, boundary, revision, min_longitude,
                   min_latitude, max_longitude, max_latitude, version, created_at, updated_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)";
    sqlx::query(sql)
        .bind(g.name.street().as_str())
        .bind(g.name.community_id().as_str())
        .bind(g.name.id().as_str())
        .bind(&g.display_name)
        .bind(&g.boundary)
        .bind(g.revision)
        .bind(g.bbox[0])
        .bind(g.bbox[1])
        .bind(g.bbox[2])
        .bind(g.bbox[3])
        .bind(g.version)
        .bind(time::to_text(g.created))
        .execute(&mut **tx)
        .await
        .map_err(|e| exists_on(e, "grids_pkey", &g.name))?;
    insert_revision(tx, g).await?;
    replace_staff(tx, g).await
}

async fn insert_revision(tx: &mut Tx, g: &GridRecord) -> Result<()> {
    sqlx::query(
        "insert into grid_revisions (street, community_id, grid_id, revision, boundary, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(g.name.street().as_str())
    .bind(g.name.community_id().as_str())
    .bind(g.name.id().as_str())
    .bind(g.revision)
    .bind(&g.boundary)
    .bind(time::to_text(g.updated))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn replace_staff(tx: &mut Tx, g: &GridRecord) -> Result<()> {
    let key = [g.name.street().as_str(), g.name.community_id().as_str(), g.name.id().as_str()];
    for table in ["grid_workers", "grid_covers"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "delete from {table} where street = $1 and community_id = $2 and grid_id = $3"
        )))
        .bind(key[0])
        .bind(key[1])
        .bind(key[2])
        .execute(&mut **tx)
        .await?;
    }
    let now = time::to_text(g.updated);
    for a in &g.workers {
        sqlx::query(
            "insert into grid_workers (street, community_id, grid_id, worker, duties, display_name, phone,
                 created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(key[0])
        .bind(key[1])
        .bind(key[2])
        .bind(&a.worker)
        .bind(&a.duties)
        .bind(&a.display_name)
        .bind(&a.phone)
        .bind(&now)
        .execute(&mut **tx)
        .await?;
    }
    for c in &g.covers {
        sqlx::query(
            "insert into grid_covers (street, community_id, grid_id, worker, start_date, end_date, covers_for,
                 created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(key[0])
        .bind(key[1])
        .bind(key[2])
        .bind(&c.worker)
        .bind(c.start.to_string())
        .bind(c.end.to_string())
        .bind(&c.covers_for)
        .bind(&now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Writes a changed grid (version bumped); a new revision is recorded when `redrawn`.
pub async fn save_grid(tx: &mut Tx, g: &GridRecord, redrawn: bool) -> Result<()> {
    let sql = "update grids set display_name = $4, boundary = $5, revision = $6, min_longitude = $7,
                   min_latitude = $8, max_longitude = $9, max_latitude = $10, version = $11, updated_at = $12
               where street = $1 and community_id = $2 and grid_id = $3";
    sqlx::query(sql)
        .bind(g.name.street().as_str())
        .bind(g.name.community_id().as_str())
        .bind(g.name.id().as_str())
        .bind(&g.display_name)
        .bind(&g.boundary)
        .bind(g.revision)
        .bind(g.bbox[0])
        .bind(g.bbox[1])
        .bind(g.bbox[2])
        .bind(g.bbox[3])
        .bind(g.version)
        .bind(time::to_text(g.updated))
        .execute(&mut **tx)
        .await?;
    if redrawn {
        insert_revision(tx, g).await?;
    }
    replace_staff(tx, g).await
}

async fn fill_staff(conn: &mut sqlx::AnyConnection, g: &mut GridRecord) -> Result<()> {
    let key = [g.name.street().as_str().to_owned(), g.name.community_id().to_string(), g.name.id().to_string()];
    let workers: Vec<(String, String, String, String)> = sqlx::query_as(
        "select worker, duties, display_name, phone from grid_workers
         where street = $1 and community_id = $2 and grid_id = $3 order by worker",
    )
    .bind(&key[0])
    .bind(&key[1])
    .bind(&key[2])
    .fetch_all(&mut *conn)
    .await?;
    g.workers = workers
        .into_iter()
        .map(|(worker, duties, display_name, phone)| AssignmentRecord { worker, duties, display_name, phone })
        .collect();
    let covers: Vec<(String, String, String, String)> = sqlx::query_as(
        "select worker, start_date, end_date, covers_for from grid_covers
         where street = $1 and community_id = $2 and grid_id = $3 order by start_date, worker",
    )
    .bind(&key[0])
    .bind(&key[1])
    .bind(&key[2])
    .fetch_all(&mut *conn)
    .await?;
    g.covers = covers
        .into_iter()
        .filter_map(|(worker, start, end, covers_for)| {
            let start = NaiveDate::parse_from_str(&start, "%Y-%m-%d").ok()?;
            let end = NaiveDate::parse_from_str(&end, "%Y-%m-%d").ok()?;
            Some(CoverRecord { worker, start, end, covers_for })
        })
        .collect();
    Ok(())
}

/// Reads a grid with its workers and covers.
pub async fn get_grid(pool: &AnyPool, name: &GridName) -> Result<Option<GridRecord>> {
    let row: Option<GridRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {GRID_COLUMNS} from grids where street = $1 and community_id = $2 and grid_id = $3"
    )))
    .bind(name.street().as_str())
    .bind(name.community_id().as_str())
    .bind(name.id().as_str())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut grid = grid_of(name.street(), row)?;
    fill_staff(&mut *pool.acquire().await?, &mut grid).await?;
    Ok(Some(grid))
}

/// Reads a grid inside a write (without its staff: the caller replaces them or keeps them).
pub async fn get_grid_in(tx: &mut Tx, name: &GridName) -> Result<Option<GridRecord>> {
    let row: Option<GridRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {GRID_COLUMNS} from grids where street = $1 and community_id = $2 and grid_id = $3"
    )))
    .bind(name.street().as_str())
    .bind(name.community_id().as_str())
    .bind(name.id().as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut grid = grid_of(name.street(), row)?;
    fill_staff(tx, &mut grid).await?;
    Ok(Some(grid))
}

/// One page of grids, by (community, grid) after `after`: of one community, or of the street
/// when `community` is empty.
pub async fn list_grids(
    pool: &AnyPool,
    street: &StreetId,
    community: &str,
    after: (&str, &str),
    limit: usize,
) -> Result<Vec<GridRecord>> {
    let rows: Vec<GridRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {GRID_COLUMNS} from grids
         where street = $1 and ($2 = '' or community_id = $2)
           and (community_id > $3 or (community_id = $3 and grid_id > $4))
         order by community_id, grid_id limit $5"
    )))
    .bind(street.as_str())
    .bind(community)
    .bind(after.0)
    .bind(after.1)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let mut grids = rows.into_iter().map(|r| grid_of(street, r)).collect::<Result<Vec<_>>>()?;
    let mut conn = pool.acquire().await?;
    for grid in &mut grids {
        fill_staff(&mut conn, grid).await?;
    }
    Ok(grids)
}

/// Every current boundary of a street: `(grid, revision, boundary)`, for its map.
pub async fn boundaries<'e, E>(executor: E, street: &StreetId) -> Result<Vec<(GridName, i64, String)>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
        "select community_id, grid_id, revision, boundary from grids where street = $1 order by community_id, grid_id",
    )
    .bind(street.as_str())
    .fetch_all(executor)
    .await?;
    rows.into_iter()
        .map(|(c, g, revision, boundary)| {
            let community = CommunityName::new(street.clone(), Id::parse("community", &c)?);
            Ok((GridName::new(&community, Id::parse("grid", &g)?), revision, boundary))
        })
        .collect()
}

/// The other grids of a street whose bounding boxes meet `bbox`: candidates for an overlap.
pub async fn grids_meeting(tx: &mut Tx, name: &GridName, bbox: [f64; 4]) -> Result<Vec<(GridName, String)>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select community_id, grid_id, boundary from grids
         where street = $1 and not (community_id = $2 and grid_id = $3)
           and min_longitude <= $6 and max_longitude >= $4 and min_latitude <= $7 and max_latitude >= $5",
    )
    .bind(name.street().as_str())
    .bind(name.community_id().as_str())
    .bind(name.id().as_str())
    .bind(bbox[0])
    .bind(bbox[1])
    .bind(bbox[2])
    .bind(bbox[3])
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(c, g, boundary)| {
            let community = CommunityName::new(name.street().clone(), Id::parse("community", &c)?);
            Ok((GridName::new(&community, Id::parse("grid", &g)?), boundary))
        })
        .collect()
}

/// One page of a grid's revisions, newest first, below `before` (0 for the first page).
pub async fn list_revisions(
    pool: &AnyPool,
    name: &GridName,
    before: i64,
    limit: usize,
) -> Result<Vec<(i64, String, DateTime<Utc>)>> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "select revision, boundary, created_at from grid_revisions
         where street = $1 and community_id = $2 and grid_id = $3 and ($4 = 0 or revision < $4)
         order by revision desc limit $5",
    )
    .bind(name.street().as_str())
    .bind(name.community_id().as_str())
    .bind(name.id().as_str())
    .bind(before)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(|(r, b, c)| Ok((r, b, stored_time(&c)?))).collect()
}

/// The grids `worker` looks after on `day`: assigned, or covering that day. `(community, grid)`.
pub async fn grids_of_worker<'e, E>(
    executor: E,
    street: &StreetId,
    worker: &str,
    day: NaiveDate,
) -> Result<Vec<(String, String)>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select community_id, grid_id from grid_workers where street = $1 and worker = $2
         union
         select community_id, grid_id from grid_covers
         where street = $1 and worker = $2 and start_date <= $3 and end_date >= $3",
    )
    .bind(street.as_str())
    .bind(worker)
    .bind(day.to_string())
    .fetch_all(executor)
    .await?;
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Households

/// A household as stored.
#[derive(Debug, Clone)]
pub struct HouseholdRecord {
    /// Its name.
    pub name: HouseholdName,
    /// Its building.
    pub building: String,
    /// Its address.
    pub address: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// Its community and grid.
    pub place: Place,
    /// Its residents' tags together, sorted.
    pub tags: Vec<String>,
    /// Its residents (not removed).
    pub resident_count: i64,
    /// When it was last visited.
    pub last_visit: Option<DateTime<Utc>>,
    /// Its version (the etag).
    pub version: i64,
    /// When it was added.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub updated: DateTime<Utc>,
}

type HouseholdRow = (String, String, String, f64, f64, String, String, String, i64, String, i64, String, String);

const HOUSEHOLD_COLUMNS: &str = "household_id, building, address, latitude, longitude, community_id, grid_id, tags,
     resident_count, last_visit_time, version, created_at, updated_at";

fn household_of(street: &StreetId, row: HouseholdRow) -> Result<HouseholdRecord> {
    let (id, building, address, latitude, longitude, community, grid, tags, count, last, version, created, updated) =
        row;
    Ok(HouseholdRecord {
        name: HouseholdName::new(street.clone(), Id::parse("household", &id)?),
        building,
        address,
        latitude,
        longitude,
        place: Place { community, grid },
        tags: tags_from_text(&tags),
        resident_count: count,
        last_visit: time::from_text(&last),
        version,
        created: stored_time(&created)?,
        updated: stored_time(&updated)?,
    })
}

/// Inserts a household.
pub async fn insert_household(tx: &mut Tx, h: &HouseholdRecord) -> Result<()> {
    let sql = "insert into households (street, household_id, building, address, latitude, longitude, community_id,
                   grid_id, tags, resident_count, last_visit_time, version, created_at, updated_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)";
    sqlx::query(sql)
        .bind(h.name.street().as_str())
        .bind(h.name.id().as_str())
        .bind(&h.building)
        .bind(&h.address)
        .bind(h.latitude)
        .bind(h.longitude)
        .bind(&h.place.community)
        .bind(&h.place.grid)
        .bind(tags_to_text(&h.tags))
        .bind(h.resident_count)
        .bind(h.last_visit.map(time::to_text).unwrap_or_default())
        .bind(h.version)
        .bind(time::to_text(h.created))
        .execute(&mut **tx)
        .await
        .map_err(|e| exists_on(e, "households_pkey", &h.name))?;
    Ok(())
}

/// Writes a changed household.
pub async fn save_household(tx: &mut Tx, h: &HouseholdRecord) -> Result<()> {
    let sql = "update households set building = $3, address = $4, latitude = $5, longitude = $6, community_id = $7,
                   grid_id = $8, tags = $9, resident_count = $10, last_visit_time = $11, version = $12,
                   updated_at = $13
               where street = $1 and household_id = $2";
    sqlx::query(sql)
        .bind(h.name.street().as_str())
        .bind(h.name.id().as_str())
        .bind(&h.building)
        .bind(&h.address)
        .bind(h.latitude)
        .bind(h.longitude)
        .bind(&h.place.community)
        .bind(&h.place.grid)
        .bind(tags_to_text(&h.tags))
        .bind(h.resident_count)
        .bind(h.last_visit.map(time::to_text).unwrap_or_default())
        .bind(h.version)
        .bind(time::to_text(h.updated))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Reads a household.
pub async fn get_household<'e, E>(executor: E, name: &HouseholdName) -> Result<Option<HouseholdRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<HouseholdRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {HOUSEHOLD_COLUMNS} from households where street = $1 and household_id = $2"
    )))
    .bind(name.street().as_str())
    .bind(name.id().as_str())
    .fetch_optional(executor)
    .await?;
    row.map(|r| household_of(name.street(), r)).transpose()
}

/// Which households a list returns; empty strings mean "any".
#[derive(Debug, Default)]
pub struct HouseholdFilter {
    /// A community id.
    pub community: String,
    /// A grid id (with its community).
    pub grid: String,
    /// One tag.
    pub tag: String,
}

/// Where a caller may list: the whole street, or these communities, grids `(community, grid)`
/// and households (ids).
#[derive(Debug, Default)]
pub struct Scope {
    /// The whole street.
    pub street: bool,
    /// Communities by id.
    pub communities: Vec<String>,
    /// Grids by `(community, grid)`.
    pub grids: Vec<(String, String)>,
    /// Households by id.
    pub households: Vec<String>,
}

/// One page of a street's households by id after `after`, within the filter and the scope.
pub async fn list_households(
    pool: &AnyPool,
    street: &StreetId,
    filter: &HouseholdFilter,
    scope: &Scope,
    after: &str,
    limit: usize,
) -> Result<Vec<HouseholdRecord>> {
    // The scope as a disjunction of bound values: $8 onwards.
    let mut next = 8;
    let mut terms = Vec::new();
    let mut binds: Vec<&str> = Vec::new();
    if !scope.street {
        for c in &scope.communities {
            terms.push(format!("community_id = ${next}"));
            binds.push(c);
            next += 1;
        }
        for (c, g) in &scope.grids {
            terms.push(format!("(community_id = ${} and grid_id = ${})", next, next + 1));
            binds.push(c);
            binds.push(g);
            next += 2;
        }
        for h in &scope.households {
            terms.push(format!("household_id = ${next}"));
            binds.push(h);
            next += 1;
        }
        if terms.is_empty() {
            return Ok(Vec::new());
        }
    }
    let scoped = if scope.street { String::new() } else { format!(" and ({})", terms.join(" or ")) };
    let sql = format!(
        "select {HOUSEHOLD_COLUMNS} from households
         where street = $1 and ($2 = '' or community_id = $2) and ($3 = '' or grid_id = $3)
           and ($4 = '' or tags like $5) and household_id > $6{scoped}
         order by household_id limit $7"
    );
    let mut query = sqlx::query_as::<_, HouseholdRow>(sqlx::AssertSqlSafe(sql))
        .bind(street.as_str())
        .bind(&filter.community)
        .bind(&filter.grid)
        .bind(&filter.tag)
        .bind(format!("%,{},%", filter.tag))
        .bind(after)
        .bind(limit as i64);
    for b in binds {
        query = query.bind(b);
    }
    let rows = query.fetch_all(pool).await?;
    rows.into_iter().map(|r| household_of(street, r)).collect()
}

/// The households of the given grids, `(community, grid)`, for the due list.
pub async fn households_of_grids(
    pool: &AnyPool,
    street: &StreetId,
    grids: &[(String, String)],
) -> Result<Vec<HouseholdRecord>> {
    let mut out = Vec::new();
    for (community, grid) in grids {
        let rows: Vec<HouseholdRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {HOUSEHOLD_COLUMNS} from households where street = $1 and community_id = $2 and grid_id = $3"
        )))
        .bind(street.as_str())
        .bind(community)
        .bind(grid)
        .fetch_all(pool)
        .await?;
        for row in rows {
            out.push(household_of(street, row)?);
        }
    }
    Ok(out)
}

/// Every household of a street by its natural key, (building, address) → id: what an import
/// matches its rows against.
pub async fn household_keys(
    pool: &AnyPool,
    street: &StreetId,
) -> Result<std::collections::HashMap<(String, String), String>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select building, address, household_id from households where street = $1 order by household_id",
    )
    .bind(street.as_str())
    .fetch_all(pool)
    .await?;
    let mut keys = std::collections::HashMap::with_capacity(rows.len());
    for (building, address, id) in rows {
        keys.entry((building, address)).or_insert(id);
    }
    Ok(keys)
}

/// The residents of a street as an import matches them: the look-up hashes of their ID numbers,
/// and (household, name) for those without one.
pub async fn resident_keys(
    pool: &AnyPool,
    street: &StreetId,
) -> Result<(std::collections::HashSet<String>, std::collections::HashSet<(String, String)>)> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select household_id, display_name, id_number_hash from residents where street = $1 and removed_at = ''",
    )
    .bind(street.as_str())
    .fetch_all(pool)
    .await?;
    let (mut by_id, mut by_name) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    for (household, name, hash) in rows {
        if hash.is_empty() {
            by_name.insert((household, name));
        } else {
            by_id.insert(hash);
        }
    }
    Ok((by_id, by_name))
}

/// The households of a community, for its monthly summary: `(id, tags)`.
pub async fn households_of_community(
    pool: &AnyPool,
    street: &StreetId,
    community: &str,
) -> Result<Vec<(String, Vec<String>)>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("select household_id, tags from households where street = $1 and community_id = $2")
            .bind(street.as_str())
            .bind(community)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(id, tags)| (id, tags_from_text(&tags))).collect())
}

/// The households to place again after a grid changed: those in the grid now, and those whose
/// location lies in `bbox`. `(id, longitude, latitude, community, grid)`.
pub async fn households_to_relocate(
    tx: &mut Tx,
    grid: &GridName,
    bbox: [f64; 4],
) -> Result<Vec<(String, f64, f64, String, String)>> {
    let rows = sqlx::query_as(
        "select household_id, longitude, latitude, community_id, grid_id from households
         where street = $1 and ((community_id = $2 and grid_id = $3)
            or (longitude >= $4 and longitude <= $6 and latitude >= $5 and latitude <= $7))",
    )
    .bind(grid.street().as_str())
    .bind(grid.community_id().as_str())
    .bind(grid.id().as_str())
    .bind(bbox[0])
    .bind(bbox[1])
    .bind(bbox[2])
    .bind(bbox[3])
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows)
}

/// Moves a household to another place (after a grid changed).
pub async fn set_place(tx: &mut Tx, street: &StreetId, household: &str, place: &Place, now: &str) -> Result<()> {
    sqlx::query(
        "update households set community_id = $3, grid_id = $4, version = version + 1, updated_at = $5
         where street = $1 and household_id = $2",
    )
    .bind(street.as_str())
    .bind(household)
    .bind(&place.community)
    .bind(&place.grid)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The households where `user` is a resident with their own account.
pub async fn households_of_user<'e, E>(executor: E, street: &StreetId, user: &str) -> Result<Vec<String>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<(String,)> = sqlx::query_as(
        "select distinct household_id from residents where street = $1 and user_name = $2 and removed_at = ''",
    )
    .bind(street.as_str())
    .bind(user)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(|(h,)| h).collect())
}

// ---------------------------------------------------------------------------------------------
// Residents

/// A resident as stored: the ID number and phone sealed, with their look-up hashes.
#[derive(Debug, Clone)]
pub struct ResidentRecord {
    /// Its name.
    pub name: ResidentName,
    /// The resident's name.
    pub display_name: String,
    /// The ID number, sealed; empty when none.
    pub id_number_sealed: String,
    /// The ID number's look-up hash; empty when none.
    pub id_number_hash: String,
    /// The phone, sealed; empty when none.
    pub phone_sealed: String,
    /// The phone's look-up hash; empty when none.
    pub phone_hash: String,
    /// `YYYY-MM-DD` or empty.
    pub birth_date: String,
    /// Key-group tags, sorted.
    pub tags: Vec<String>,
    /// The consent note.
    pub consent_note: String,
    /// `users/{user}` or empty.
    pub user: String,
    /// Its version (the etag).
    pub version: i64,
    /// When the resident was added.
    pub created: DateTime<Utc>,
    /// When the resident last changed.
    pub updated: DateTime<Utc>,
}

type ResidentRow =
    (String, String, String, String, String, String, String, String, String, String, i64, String, String);

const RESIDENT_COLUMNS: &str = "resident_id, display_name, id_number_sealed, id_number_hash, phone_sealed, phone_hash,
     birth_date, tags, consent_note, user_name, version, created_at, updated_at";

fn resident_of(household: &HouseholdName, row: ResidentRow) -> Result<ResidentRecord> {
    let (id, display_name, ids, idh, ps, ph, birth_date, tags, consent_note, user, version, created, updated) = row;
    Ok(ResidentRecord {
        name: ResidentName::new(household.clone(), Id::parse("resident", &id)?),
        display_name,
        id_number_sealed: ids,
        id_number_hash: idh,
        phone_sealed: ps,
        phone_hash: ph,
        birth_date,
        tags: tags_from_text(&tags),
        consent_note,
        user,
        version,
        created: stored_time(&created)?,
        updated: stored_time(&updated)?,
    })
}

/// Inserts a resident.
pub async fn insert_resident(tx: &mut Tx, r: &ResidentRecord) -> Result<()> {
    let sql = "insert into residents (street, household_id, resident_id, display_name, id_number_sealed,
                   id_number_hash, phone_sealed, phone_hash, birth_date, tags, consent_note, user_name, removed_at,
                   version, created_at, updated_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, '', $13, $14, $14)";
    sqlx::query(sql)
        .bind(r.name.household().street().as_str())
        .bind(r.name.household().id().as_str())
        .bind(r.name.id().as_str())
        .bind(&r.display_name)
        .bind(&r.id_number_sealed)
        .bind(&r.id_number_hash)
        .bind(&r.phone_sealed)
        .bind(&r.phone_hash)
        .bind(&r.birth_date)
        .bind(tags_to_text(&r.tags))
        .bind(&r.consent_note)
        .bind(&r.user)
        .bind(r.version)
        .bind(time::to_text(r.created))
        .execute(&mut **tx)
        .await
        .map_err(|e| exists_on(e, "residents_pkey", &r.name))?;
    Ok(())
}

/// Writes a changed resident.
pub async fn save_resident(tx: &mut Tx, r: &ResidentRecord) -> Result<()> {
    let sql = "update residents set display_name = $4, id_number_sealed = $5, id_number_hash = $6, phone_sealed = $7,
                   phone_hash = $8, birth_date = $9, tags = $10, consent_note = $11, user_name = $12, version = $13,
                   updated_at = $14
               where street = $1 and household_id = $2 and resident_id = $3";
    sqlx::query(sql)
        .bind(r.name.household().street().as_str())
        .bind(r.name.household().id().as_str())
        .bind(r.name.id().as_str())
        .bind(&r.display_name)
        .bind(&r.id_number_sealed)
        .bind(&r.id_number_hash)
        .bind(&r.phone_sealed)
        .bind(&r.phone_hash)
        .bind(&r.birth_date)
        .bind(tags_to_text(&r.tags))
        .bind(&r.consent_note)
        .bind(&r.user)
        .bind(r.version)
        .bind(time::to_text(r.updated))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Marks a resident removed: hidden at once, purged after the retention period.
pub async fn remove_resident(tx: &mut Tx, name: &ResidentName, now: &str) -> Result<()> {
    sqlx::query(
        "update residents set removed_at = $4, version = version + 1, updated_at = $4
         where street = $1 and household_id = $2 and resident_id = $3",
    )
    .bind(name.household().street().as_str())
    .bind(name.household().id().as_str())
    .bind(name.id().as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reads a resident who is not removed.
pub async fn get_resident<'e, E>(executor: E, name: &ResidentName) -> Result<Option<ResidentRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<ResidentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {RESIDENT_COLUMNS} from residents
         where street = $1 and household_id = $2 and resident_id = $3 and removed_at = ''"
    )))
    .bind(name.household().street().as_str())
    .bind(name.household().id().as_str())
    .bind(name.id().as_str())
    .fetch_optional(executor)
    .await?;
    row.map(|r| resident_of(name.household(), r)).transpose()
}

/// One page of a household's residents by id after `after` (removed ones left out).
pub async fn list_residents<'e, E>(
    executor: E,
    household: &HouseholdName,
    after: &str,
    limit: usize,
) -> Result<Vec<ResidentRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<ResidentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {RESIDENT_COLUMNS} from residents
         where street = $1 and household_id = $2 and removed_at = '' and resident_id > $3
         order by resident_id limit $4"
    )))
    .bind(household.street().as_str())
    .bind(household.id().as_str())
    .bind(after)
    .bind(limit as i64)
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(|r| resident_of(household, r)).collect()
}

/// The residents (not removed) whose ID number or phone has the look-up hash `hash`.
pub async fn find_residents(
    pool: &AnyPool,
    street: &StreetId,
    column: Lookup,
    hash: &str,
) -> Result<Vec<ResidentRecord>> {
    let column = match column {
        Lookup::IdNumber => "id_number_hash",
        Lookup::Phone => "phone_hash",
    };
    let rows: Vec<FoundRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select household_id, {RESIDENT_COLUMNS} from residents
             where street = $1 and {column} = $2 and removed_at = '' order by household_id, resident_id limit 50"
    )))
    .bind(street.as_str())
    .bind(hash)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(h, id, dn, ids, idh, ps, ph, bd, tags, cn, user, v, c, u)| {
            let household = HouseholdName::new(street.clone(), Id::parse("household", &h)?);
            resident_of(&household, (id, dn, ids, idh, ps, ph, bd, tags, cn, user, v, c, u))
        })
        .collect()
}

/// A resident found, with its household's id first.
type FoundRow =
    (String, String, String, String, String, String, String, String, String, String, String, i64, String, String);

/// Which look-up hash to search.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// The ID number's.
    IdNumber,
    /// The phone's.
    Phone,
}

/// The tags of a household's residents together, and how many there are.
pub async fn household_tags(tx: &mut Tx, household: &HouseholdName) -> Result<(Vec<String>, i64)> {
    let rows: Vec<(String,)> =
        sqlx::query_as("select tags from residents where street = $1 and household_id = $2 and removed_at = ''")
            .bind(household.street().as_str())
            .bind(household.id().as_str())
            .fetch_all(&mut **tx)
            .await?;
    let count = rows.len() as i64;
    let mut tags: Vec<String> = rows.iter().flat_map(|(t,)| tags_from_text(t)).collect();
    tags.sort();
    tags.dedup();
    Ok((tags, count))
}

/// One full read of a resident's data, as the access log keeps it.
#[derive(Debug)]
pub struct AccessEntry<'a> {
    /// Who read, `users/{user}`.
    pub reader: &'a str,
    /// The role they read in.
    pub role: &'a str,
    /// The resident's name.
    pub resident: &'a str,
    /// Why.
    pub reason: &'a str,
    /// When, as stored text.
    pub at: &'a str,
}

/// Records a full read under `name`.
pub async fn insert_access(tx: &mut Tx, name: &AccessRecordName, entry: &AccessEntry<'_>) -> Result<()> {
    sqlx::query(
        "insert into access_records (street, record_id, reader, role, resident, reason, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(name.street().as_str())
    .bind(name.id().as_str())
    .bind(entry.reader)
    .bind(entry.role)
    .bind(entry.resident)
    .bind(entry.reason)
    .bind(entry.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An access record as stored: `(id, reader, role, resident, reason, at)`.
pub type AccessRow = (String, String, String, String, String, String);

/// One page of a street's access log, newest first, after the position (at, id).
pub async fn list_access(
    pool: &AnyPool,
    street: &StreetId,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<AccessRow>> {
    let (at, id) = after.unwrap_or_default();
    let rows = sqlx::query_as(
        "select record_id, reader, role, resident, reason, created_at from access_records
         where street = $1 and ($2 = '' or created_at < $2 or (created_at = $2 and record_id < $3))
         order by created_at desc, record_id desc limit $4",
    )
    .bind(street.as_str())
    .bind(at)
    .bind(id)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Deletes access records older than `before` and residents removed before `removed_before`,
/// at most `batch` of each. Returns how many went.
pub async fn purge(pool: &AnyPool, before: &str, removed_before: &str, batch: i64) -> Result<u64> {
    let access = sqlx::query(
        "delete from access_records where (street, record_id) in
           (select street, record_id from access_records where created_at < $1 limit $2)",
    )
    .bind(before)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    let residents = sqlx::query(
        "delete from residents where (street, household_id, resident_id) in
           (select street, household_id, resident_id from residents
            where removed_at <> '' and removed_at < $1 limit $2)",
    )
    .bind(removed_before)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(access + residents)
}

// ---------------------------------------------------------------------------------------------
// Visits

/// A visit as stored: the encoded visit and the columns lists read.
#[derive(Debug, Clone)]
pub struct VisitRecord {
    /// Its name.
    pub name: VisitName,
    /// The household's id.
    pub household: String,
    /// The worker, `users/{user}`.
    pub worker: String,
    /// Where the household was then.
    pub place: Place,
    /// The visit, as answered.
    pub visit: civic_proto::grid::Visit,
}

/// Inserts a visit.
pub async fn insert_visit(tx: &mut Tx, v: &VisitRecord, visit_time: &str, now: &str) -> Result<()> {
    let sql = "insert into visits (street, visit_id, household_id, worker, community_id, grid_id, grid_revision, kind,
                   key_visit, visit_time, body, created_at, updated_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)";
    sqlx::query(sql)
        .bind(v.name.street().as_str())
        .bind(v.name.id().as_str())
        .bind(&v.household)
        .bind(&v.worker)
        .bind(&v.place.community)
        .bind(&v.place.grid)
        .bind(v.visit.grid_revision)
        .bind(v.visit.kind().as_str_name())
        .bind(i64::from(v.visit.key_visit))
        .bind(visit_time)
        .bind(v.visit.encode_to_vec())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(|e| exists_on(e, "visits_pkey", &v.name))?;
    Ok(())
}

type VisitRow = (String, String, String, String, String, Vec<u8>);

fn visit_of(street: &StreetId, row: VisitRow) -> Result<VisitRecord> {
    let (id, household, worker, community, grid, body) = row;
    Ok(VisitRecord {
        name: VisitName::new(street.clone(), Id::parse("visit", &id)?),
        household,
        worker,
        place: Place { community, grid },
        visit: civic_proto::grid::Visit::decode(body.as_slice()).map_err(Error::internal)?,
    })
}

/// Reads a visit.
pub async fn get_visit<'e, E>(executor: E, name: &VisitName) -> Result<Option<VisitRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<VisitRow> = sqlx::query_as(
        "select visit_id, household_id, worker, community_id, grid_id, body from visits
         where street = $1 and visit_id = $2",
    )
    .bind(name.street().as_str())
    .bind(name.id().as_str())
    .fetch_optional(executor)
    .await?;
    row.map(|r| visit_of(name.street(), r)).transpose()
}

/// Links problem `index` of a visit to the issue opened for it; a visit that is gone, a
/// problem it does not have, or one linked already is left as it is. Returns whether it
/// changed.
pub async fn link_problem(tx: &mut Tx, name: &VisitName, index: usize, issue: &str, now: &str) -> Result<bool> {
    let Some(mut record) = get_visit(&mut **tx, name).await? else { return Ok(false) };
    let Some(problem) = record.visit.problems.get_mut(index) else { return Ok(false) };
    if !problem.issue.is_empty() {
        return Ok(false);
    }
    problem.issue = issue.to_owned();
    sqlx::query("update visits set body = $3, updated_at = $4 where street = $1 and visit_id = $2")
        .bind(name.street().as_str())
        .bind(name.id().as_str())
        .bind(record.visit.encode_to_vec())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// A visit of a list, with its time.
type ListedVisit = (String, String, String, String, String, Vec<u8>, String);

/// Which visits a list returns; empty strings mean "any".
#[derive(Debug, Default)]
pub struct VisitFilter {
    /// A worker, `users/{user}`.
    pub worker: String,
    /// A household id.
    pub household: String,
    /// A community id.
    pub community: String,
    /// A grid id.
    pub grid: String,
    /// The earliest visit time, as stored text (inclusive).
    pub from: String,
    /// The latest visit time, as stored text (exclusive).
    pub to: String,
}

/// One page of visits, newest first, after the position (visit_time, id).
pub async fn list_visits(
    pool: &AnyPool,
    street: &StreetId,
    filter: &VisitFilter,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<(VisitRecord, String)>> {
    let (at, id) = after.unwrap_or_default();
    let rows: Vec<ListedVisit> = sqlx::query_as(
        "select visit_id, household_id, worker, community_id, grid_id, body, visit_time from visits
         where street = $1 and ($2 = '' or worker = $2) and ($3 = '' or household_id = $3)
           and ($4 = '' or community_id = $4) and ($5 = '' or grid_id = $5)
           and ($6 = '' or visit_time < $6 or (visit_time = $6 and visit_id < $7))
           and ($9 = '' or visit_time >= $9) and ($10 = '' or visit_time < $10)
         order by visit_time desc, visit_id desc limit $8",
    )
    .bind(street.as_str())
    .bind(&filter.worker)
    .bind(&filter.household)
    .bind(&filter.community)
    .bind(&filter.grid)
    .bind(at)
    .bind(id)
    .bind(limit as i64)
    .bind(&filter.from)
    .bind(&filter.to)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(|(i, h, w, c, g, b, t)| Ok((visit_of(street, (i, h, w, c, g, b))?, t))).collect()
}

/// Moves a household's last visit forward to `at` (never back).
pub async fn note_visit(tx: &mut Tx, household: &HouseholdName, at: &str) -> Result<()> {
    sqlx::query(
        "update households set last_visit_time = $3 where street = $1 and household_id = $2 and last_visit_time < $3",
    )
    .bind(household.street().as_str())
    .bind(household.id().as_str())
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Stations

/// Inserts a station (its version in `version`, the message without it).
pub async fn insert_station(
    tx: &mut Tx,
    street: &StreetId,
    community: &str,
    id: &str,
    version: i64,
    station: &civic_proto::grid::Station,
    now: &str,
) -> Result<()> {
    sqlx::query(
        "insert into stations (street, community_id, station_id, version, body, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(street.as_str())
    .bind(community)
    .bind(id)
    .bind(version)
    .bind(station.encode_to_vec())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| exists_on(e, "stations_pkey", &station.name))?;
    Ok(())
}

/// Writes a changed station.
pub async fn save_station(
    tx: &mut Tx,
    street: &StreetId,
    community: &str,
    id: &str,
    version: i64,
    station: &civic_proto::grid::Station,
    now: &str,
) -> Result<()> {
    sqlx::query(
        "update stations set version = $4, body = $5, updated_at = $6
         where street = $1 and community_id = $2 and station_id = $3",
    )
    .bind(street.as_str())
    .bind(community)
    .bind(id)
    .bind(version)
    .bind(station.encode_to_vec())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reads a station with its version.
pub async fn get_station(
    tx: &mut Tx,
    street: &StreetId,
    community: &str,
    id: &str,
) -> Result<Option<(i64, civic_proto::grid::Station)>> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "select version, body from stations where street = $1 and community_id = $2 and station_id = $3",
    )
    .bind(street.as_str())
    .bind(community)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|(v, b)| Ok((v, civic_proto::grid::Station::decode(b.as_slice()).map_err(Error::internal)?))).transpose()
}

/// One page of a community's stations by id after `after`: `(id, version, station)`.
pub async fn list_stations(
    pool: &AnyPool,
    street: &StreetId,
    community: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, i64, civic_proto::grid::Station)>> {
    let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
        "select station_id, version, body from stations where street = $1 and community_id = $2 and station_id > $3
         order by station_id limit $4",
    )
    .bind(street.as_str())
    .bind(community)
    .bind(after)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, v, b)| Ok((id, v, civic_proto::grid::Station::decode(b.as_slice()).map_err(Error::internal)?)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Monthly summaries

/// A worker's summary of a month as stored: its state, notes, version, and once submitted the
/// frozen figures and when.
#[derive(Debug, Clone)]
pub struct SummaryRecord {
    /// `DRAFT` or `SUBMITTED`.
    pub state: String,
    /// The worker's notes.
    pub notes: String,
    /// The figures frozen at submission.
    pub figures: Option<civic_proto::grid::MonthlySummary>,
    /// When it was submitted, as stored text, or empty.
    pub submitted_at: String,
    /// Its version (the etag).
    pub version: i64,
}

/// A summary as stored: state, notes, frozen figures, submission time, version.
type SummaryRow = (String, String, Option<Vec<u8>>, String, i64);

/// Reads a worker's summary of a month.
pub async fn get_summary<'e, E>(
    executor: E,
    street: &StreetId,
    worker: &str,
    month: &str,
) -> Result<Option<SummaryRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<SummaryRow> = sqlx::query_as(
        "select state, notes, figures, submitted_at, version from monthly_summaries
         where street = $1 and worker = $2 and month = $3",
    )
    .bind(street.as_str())
    .bind(worker)
    .bind(month)
    .fetch_optional(executor)
    .await?;
    row.map(|(state, notes, figures, submitted_at, version)| {
        let figures = figures
            .map(|b| civic_proto::grid::MonthlySummary::decode(b.as_slice()).map_err(Error::internal))
            .transpose()?;
        Ok(SummaryRecord { state, notes, figures, submitted_at, version })
    })
    .transpose()
}

/// Writes a worker's summary of a month, made or changed.
pub async fn put_summary(
    tx: &mut Tx,
    street: &StreetId,
    worker: &str,
    month: &str,
    s: &SummaryRecord,
    now: &str,
) -> Result<()> {
    let figures = s.figures.as_ref().map(Message::encode_to_vec);
    let updated = sqlx::query(
        "update monthly_summaries set state = $4, notes = $5, figures = $6, submitted_at = $7, version = $8,
             updated_at = $9
         where street = $1 and worker = $2 and month = $3",
    )
    .bind(street.as_str())
    .bind(worker)
    .bind(month)
    .bind(&s.state)
    .bind(&s.notes)
    .bind(figures.clone())
    .bind(&s.submitted_at)
    .bind(s.version)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 0 {
        sqlx::query(
            "insert into monthly_summaries (street, worker, month, state, notes, figures, submitted_at, version,
                 created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(street.as_str())
        .bind(worker)
        .bind(month)
        .bind(&s.state)
        .bind(&s.notes)
        .bind(figures)
        .bind(&s.submitted_at)
        .bind(s.version)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The visits of a scope between two times (stored text): `(household id, visit time, problem
/// count)`, oldest first.
pub async fn visits_between(
    pool: &AnyPool,
    street: &StreetId,
    filter: &VisitFilter,
    from: &str,
    to: &str,
) -> Result<Vec<(String, String, i64)>> {
    let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
        "select household_id, visit_time, body from visits
         where street = $1 and ($2 = '' or worker = $2) and ($3 = '' or community_id = $3) and ($4 = '' or grid_id = $4)
           and visit_time >= $5 and visit_time < $6
         order by visit_time",
    )
    .bind(street.as_str())
    .bind(&filter.worker)
    .bind(&filter.community)
    .bind(&filter.grid)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(h, t, b)| {
            let visit = civic_proto::grid::Visit::decode(b.as_slice()).map_err(Error::internal)?;
            Ok((h, t, visit.problems.len() as i64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(id: &str) -> Id {
        Id::parse("id", id).expect("an id")
    }

    fn resident(household: &HouseholdName, id: &str, now: DateTime<Utc>) -> ResidentRecord {
        ResidentRecord {
            name: ResidentName::new(household.clone(), name(id)),
            display_name: "住户".into(),
            id_number_sealed: String::new(),
            id_number_hash: String::new(),
            phone_sealed: String::new(),
            phone_hash: String::new(),
            birth_date: String::new(),
            tags: Vec::new(),
            consent_note: String::new(),
            user: String::new(),
            version: 1,
            created: now,
            updated: now,
        }
    }

    /// The purge deletes access records and removed residents past their retention, and nothing
    /// else: not a recent record, not a resident removed lately, not one still on the roster.
    #[tokio::test]
    async fn the_purge_takes_only_what_outlived_its_retention() {
        let db = civic_kit::testing::test_db("grid").await;
        db.migrate(crate::MIGRATIONS).await.expect("migrate");
        let street = StreetId::parse("street", "zhongjie").expect("a street");
        let now = Utc::now();
        let long_ago = time::to_text(now - chrono::Duration::days(4000));
        let lately = time::to_text(now - chrono::Duration::hours(1));
        let household = HouseholdName::new(street.clone(), name("h1"));
        let mut tx = db.begin().await.expect("begin");
        for (id, at) in [("a1", long_ago.as_str()), ("a2", lately.as_str())] {
            let entry = AccessEntry { reader: "users/gw", role: "grid_worker", resident: "r", reason: "核实", at };
            insert_access(&mut tx, &AccessRecordName::new(street.clone(), name(id)), &entry).await.expect("record");
        }
        let record = HouseholdRecord {
            name: household.clone(),
            building: String::new(),
            address: "1单元 101".into(),
            latitude: 35.5,
            longitude: 106.6,
            place: Place::default(),
            tags: Vec::new(),
            resident_count: 3,
            last_visit: None,
            version: 1,
            created: now,
            updated: now,
        };
        insert_household(&mut tx, &record).await.expect("household");
        for id in ["r1", "r2", "r3"] {
            insert_resident(&mut tx, &resident(&household, id, now)).await.expect("resident");
        }
        remove_resident(&mut tx, &ResidentName::new(household.clone(), name("r1")), &long_ago).await.expect("remove");
        remove_resident(&mut tx, &ResidentName::new(household.clone(), name("r2")), &lately).await.expect("remove");
        tx.commit().await.expect("commit");

        let cutoff = time::to_text(now - chrono::Duration::days(365));
        assert_eq!(purge(db.writer(), &cutoff, &cutoff, 1000).await.expect("purge"), 2);
        assert_eq!(purge(db.writer(), &cutoff, &cutoff, 1000).await.expect("again"), 0, "nothing more to take");
        let records: Vec<(String,)> =
            sqlx::query_as("select record_id from access_records").fetch_all(db.reader()).await.expect("records");
        assert_eq!(records, [("a2".to_owned(),)]);
        let kept: Vec<(String,)> = sqlx::query_as("select resident_id from residents order by resident_id")
            .fetch_all(db.reader())
            .await
            .expect("residents");
        assert_eq!(kept, [("r2".to_owned(),), ("r3".to_owned(),)]);
        db.cleanup().await;
    }
}
