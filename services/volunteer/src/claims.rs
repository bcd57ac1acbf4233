//! Places in needs, taken by volunteers (社区接单): a claim takes a place only while one is
//! free, with one conditional update of the need's count — `claimed = claimed + 1 where claimed
//! < places` — which both stores apply atomically (SQLite's single writer; PostgreSQL re-checks
//! the condition on the row it waited for), so many claims at once never take more places than
//! there are. A claim not checked in by its time is released and the place offered again.
//!
//! The functions work in the caller's transaction.

use chrono::{DateTime, SubsecRound, Utc};
use civic_kit::db::Tx;
use civic_kit::error::{Error, Result};
use civic_kit::time;

/// What a need is, as the store keeps it for claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNeed {
    /// The street.
    pub street: String,
    /// Its id.
    pub id: String,
    /// `MICRO_WISH`, `ONE_ON_ONE` or `ACTIVITY`.
    pub kind: String,
    /// Its community and grid ids (empty when not placed).
    pub community: String,
    /// See `community`.
    pub grid: String,
    /// The household it is for, or empty.
    pub household: String,
    /// The resident it is for (`users/{user}`).
    pub resident: String,
    /// Who placed it.
    pub placed_by: String,
    /// How many volunteers it takes (1 to 100).
    pub places: i64,
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends.
    pub end: DateTime<Utc>,
    /// The need as the API gives it (its `Need` message), or empty.
    pub body: Vec<u8>,
}

/// A need's places as they stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places {
    /// `OPEN`, `CLAIMED`, …
    pub state: String,
    /// How many it takes.
    pub places: i64,
    /// How many are taken.
    pub claimed: i64,
}

/// A volunteer's place in a need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The need's id.
    pub need: String,
    /// The volunteer (`users/{user}`).
    pub volunteer: String,
    /// `ACTIVE` or `RELEASED`.
    pub state: String,
    /// Released unless checked in by then.
    pub check_in_by: DateTime<Utc>,
}

/// The most places a need may have.
pub const MAX_PLACES: i64 = 100;

/// Records a new need, open, with no place taken.
pub async fn insert_need(tx: &mut Tx, need: &NewNeed) -> Result<()> {
    if !(1..=MAX_PLACES).contains(&need.places) {
        return Err(Error::invalid("need.places", format!("must be 1 to {MAX_PLACES}")));
    }
    if need.end <= need.start {
        return Err(Error::invalid("need.end_time", "must be after the start"));
    }
    let now = time::now_text();
    sqlx::query(
        "insert into needs (street, need_id, kind, state, community_id, grid_id, household, resident, placed_by,
             places, claimed, start_time, end_time, version, created_at, updated_at, body)
         values ($1, $2, $3, 'OPEN', $4, $5, $6, $7, $8, $9, 0, $10, $11, 1, $12, $12, $13)",
    )
    .bind(&need.street)
    .bind(&need.id)
    .bind(&need.kind)
    .bind(&need.community)
    .bind(&need.grid)
    .bind(&need.household)
    .bind(&need.resident)
    .bind(&need.placed_by)
    .bind(need.places)
    .bind(time::to_text(need.start))
    .bind(time::to_text(need.end))
    .bind(&now)
    .bind(need.body.as_slice())
    .execute(&mut **tx)
    .await
    .map_err(|e| civic_kit::db::exists_on(e, "needs_pkey", &format!("streets/{}/needs/{}", need.street, need.id)))?;
    Ok(())
}

/// The need's places, `None` when there is no such need.
pub async fn places<'e, E>(executor: E, street: &str, need: &str) -> Result<Option<Places>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<(String, i64, i64)> =
        sqlx::query_as("select state, places, claimed from needs where street = $1 and need_id = $2")
            .bind(street)
            .bind(need)
            .fetch_optional(executor)
            .await?;
    Ok(row.map(|(state, places, claimed)| Places { state, places, claimed }))
}

/// A need as stored: its message, and what claims change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The need's id.
    pub id: String,
    /// Its places as they stand.
    pub places: Places,
    /// Its community and grid ids.
    pub community: String,
    /// See `community`.
    pub grid: String,
    /// The resident it is for and who placed it (`users/{user}`).
    pub resident: String,
    /// See `resident`.
    pub placed_by: String,
    /// Bumped by every change.
    pub version: i64,
    /// Its `Need` message as placed.
    pub body: Vec<u8>,
}

type StoredRow = (String, String, i64, i64, String, String, String, String, i64, Vec<u8>);

fn stored((id, state, places, claimed, community, grid, resident, placed_by, version, body): StoredRow) -> Stored {
    Stored { id, places: Places { state, places, claimed }, community, grid, resident, placed_by, version, body }
}

const STORED: &str = "select need_id, state, places, claimed, community_id, grid_id, resident, placed_by, version, body
     from needs";

/// The need `need` of `street`, if any.
pub async fn get_need<'e, E>(executor: E, street: &str, need: &str) -> Result<Option<Stored>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!("{STORED} where street = $1 and need_id = $2");
    let row: Option<StoredRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(street).bind(need).fetch_optional(executor).await?;
    Ok(row.map(stored))
}

/// Up to `limit` needs of `community` (an id) with places free that start after `now`, soonest
/// first: what AssignNeeds gives out.
pub async fn open_needs<'e, E>(
    executor: E,
    street: &str,
    community: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Stored>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!(
        "{STORED} where street = $1 and state = 'OPEN' and community_id = $2 and claimed < places and start_time > $3
         order by start_time, need_id limit $4"
    );
    let rows: Vec<StoredRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(street)
        .bind(community)
        .bind(time::to_text(now))
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().map(stored).collect())
}

/// Which needs a list asks for. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeedFilter {
    /// A state (`OPEN`).
    pub state: String,
    /// A kind (`ACTIVITY`).
    pub kind: String,
    /// A community id.
    pub community: String,
    /// Grid ids: one of them (all when empty).
    pub grids: Vec<String>,
    /// Only the needs for or placed by this person (`users/{user}`) — or, with `open_too`, the
    /// needs taking volunteers (open, or under way with a place free) as well.
    pub person: String,
    /// With `person`: open needs too (an approved volunteer's view).
    pub open_too: bool,
}

/// Up to `limit` needs of `street` matching `filter`, by id after `after`.
pub async fn list_needs<'e, E>(
    executor: E,
    street: &str,
    filter: &NeedFilter,
    after: &str,
    limit: usize,
) -> Result<Vec<Stored>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // Every condition is always bound: an empty value matches everything. Grids are a handful
    // (a token's), bound one each.
    let grids = if filter.grids.is_empty() {
        String::new()
    } else {
        let marks: Vec<String> = (0..filter.grids.len()).map(|n| format!("${}", n + 9)).collect();
        format!(" and grid_id in ({})", marks.join(", "))
    };
    let sql = format!(
        "{STORED} where street = $1 and need_id > $2 and ($3 = '' or state = $3) and ($4 = '' or kind = $4)
             and ($5 = '' or community_id = $5)
             and ($6 = '' or resident = $6 or placed_by = $6
                 or ($7 = 1 and (state = 'OPEN' or (state = 'IN_PROGRESS' and claimed < places)))){grids}
         order by need_id limit $8"
    );
    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(street)
        .bind(after)
        .bind(&filter.state)
        .bind(&filter.kind)
        .bind(&filter.community)
        .bind(&filter.person)
        .bind(i64::from(filter.open_too))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    for grid in &filter.grids {
        query = query.bind(grid);
    }
    let rows: Vec<StoredRow> = query.fetch_all(executor).await?;
    Ok(rows.into_iter().map(stored).collect())
}

/// Whether `volunteer` holds an active place in `need`.
pub async fn holds<'e, E>(executor: E, street: &str, need: &str, volunteer: &str) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<(String,)> = sqlx::query_as(
        "select state from claims where street = $1 and need_id = $2 and volunteer = $3 and state = 'ACTIVE'",
    )
    .bind(street)
    .bind(need)
    .bind(volunteer)
    .fetch_optional(executor)
    .await?;
    Ok(row.is_some())
}

/// `volunteer` takes a place in `need` (open, or under way with a place free), to check in by
/// `check_in_by`. Taking it again while the
/// claim is active answers with that claim; NOT_FOUND without the need; FAILED_PRECONDITION
/// `NEED_FULL` when every place is taken, `NEED_NOT_OPEN` when the need is past taking.
pub async fn claim(
    tx: &mut Tx,
    street: &str,
    need: &str,
    volunteer: &str,
    check_in_by: DateTime<Utc>,
) -> Result<Claim> {
    if let Some(held) = claim_of(tx, street, need, volunteer).await?
        && held.state == "ACTIVE"
    {
        return Ok(held);
    }
    // Kept to the microsecond, as times are stored.
    let check_in_by = check_in_by.trunc_subsecs(6);
    let now = time::now_text();
    let taken = sqlx::query(
        "update needs set claimed = claimed + 1,
             state = case when state = 'OPEN' and claimed + 1 >= places then 'CLAIMED' else state end,
             version = version + 1, updated_at = $3
         where street = $1 and need_id = $2 and state in ('OPEN', 'IN_PROGRESS') and claimed < places",
    )
    .bind(street)
    .bind(need)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    if taken.rows_affected() == 0 {
        return Err(match places(&mut **tx, street, need).await? {
            None => Error::not_found(format!("streets/{street}/needs/{need}")),
            Some(p) if p.state == "CLAIMED" || (p.state != "DONE" && p.claimed >= p.places) => {
                Error::failed_precondition("NEED_FULL", "every place of the need is taken")
            }
            Some(_) => Error::failed_precondition("NEED_NOT_OPEN", "the need is no longer taking volunteers"),
        });
    }
    sqlx::query(
        "insert into claims (street, need_id, volunteer, state, check_in_by, checked_in_at, released_because,
             created_at, updated_at)
         values ($1, $2, $3, 'ACTIVE', $4, '', '', $5, $5)
         on conflict (street, need_id, volunteer) do update
             set state = 'ACTIVE', check_in_by = $4, checked_in_at = '', released_because = '', checked_out_at = '',
                 minutes = 0, volunteer_confirmed_at = '', resident_confirmed_at = '', resident_confirmed_by = '',
                 confirmed_at = '', points_movement = '', updated_at = $5",
    )
    .bind(street)
    .bind(need)
    .bind(volunteer)
    .bind(time::to_text(check_in_by))
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    Ok(Claim { need: need.to_owned(), volunteer: volunteer.to_owned(), state: "ACTIVE".into(), check_in_by })
}

/// Gives `volunteer`'s place in `need` back, `because` (`withdrawn`): the need is open again
/// if it was full. `false` when they held no active claim, or its task is done (checked out):
/// nothing changes.
pub async fn release(tx: &mut Tx, street: &str, need: &str, volunteer: &str, because: &str) -> Result<bool> {
    let released = give_back(tx, (street, need, volunteer), because, None).await?;
    if released {
        settle(tx, street, need).await?;
    }
    Ok(released)
}

/// As [`release`], only if the claim is still not checked in and past `cutoff`.
async fn give_back(
    tx: &mut Tx,
    (street, need, volunteer): (&str, &str, &str),
    because: &str,
    cutoff: Option<&str>,
) -> Result<bool> {
    let now = time::now_text();
    let released = match cutoff {
        None => sqlx::query(
            "update claims set state = 'RELEASED', released_because = $4, updated_at = $5
             where street = $1 and need_id = $2 and volunteer = $3 and state = 'ACTIVE' and checked_out_at = ''",
        ),
        Some(_) => sqlx::query(
            "update claims set state = 'RELEASED', released_because = $4, updated_at = $5
             where street = $1 and need_id = $2 and volunteer = $3 and state = 'ACTIVE'
                 and checked_in_at = '' and check_in_by < $6",
        ),
    };
    let mut released = released.bind(street).bind(need).bind(volunteer).bind(because).bind(&now);
    if let Some(cutoff) = cutoff {
        released = released.bind(cutoff);
    }
    if released.execute(&mut **tx).await?.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "update needs set claimed = claimed - 1,
             state = case when state = 'CLAIMED' then 'OPEN' else state end,
             version = version + 1, updated_at = $3
         where street = $1 and need_id = $2 and claimed > 0",
    )
    .bind(street)
    .bind(need)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// Records that `volunteer` checked in for `need` at `at`: their claim is no longer released
/// for being stale. FAILED_PRECONDITION `NO_CLAIM` without an active claim.
pub async fn check_in(tx: &mut Tx, street: &str, need: &str, volunteer: &str, at: DateTime<Utc>) -> Result<()> {
    let done = sqlx::query(
        "update claims set checked_in_at = $4, updated_at = $4
         where street = $1 and need_id = $2 and volunteer = $3 and state = 'ACTIVE' and checked_in_at = ''",
    )
    .bind(street)
    .bind(need)
    .bind(volunteer)
    .bind(time::to_text(at))
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() > 0 {
        settle(tx, street, need).await?;
        return Ok(());
    }
    match claim_of(tx, street, need, volunteer).await? {
        Some(c) if c.state == "ACTIVE" => Ok(()), // checked in before
        _ => Err(Error::failed_precondition("NO_CLAIM", "check in to a place you have taken")),
    }
}

/// Up to `limit` active claims not checked in by their time (at `now`), as (street, need,
/// volunteer), oldest first: for the sweep to release, each in a change of its own.
pub async fn stale<'e, E>(executor: E, now: DateTime<Utc>, limit: i64) -> Result<Vec<(String, String, String)>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_as(
        "select street, need_id, volunteer from claims
         where state = 'ACTIVE' and checked_in_at = '' and check_in_by < $1
         order by check_in_by limit $2",
    )
    .bind(time::to_text(now))
    .bind(limit)
    .fetch_all(executor)
    .await?)
}

/// Releases `volunteer`'s claim in `need` as stale if it is still not checked in and its time
/// was before `now`: `false` when it checked in or was released meanwhile (nothing changes).
pub async fn release_stale(
    tx: &mut Tx,
    (street, need, volunteer): (&str, &str, &str),
    now: DateTime<Utc>,
) -> Result<bool> {
    let cutoff = time::to_text(now);
    let released = give_back(tx, (street, need, volunteer), "stale", Some(&cutoff)).await?;
    if released {
        settle(tx, street, need).await?;
    }
    Ok(released)
}

/// Up to `limit` needs past their end with no place taken, still open, as (street, need): for
/// the sweep to mark expired.
pub async fn expiring<'e, E>(executor: E, now: DateTime<Utc>, limit: i64) -> Result<Vec<(String, String)>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_as(
        "select street, need_id from needs where state = 'OPEN' and claimed = 0 and end_time < $1
         order by end_time limit $2",
    )
    .bind(time::to_text(now))
    .bind(limit)
    .fetch_all(executor)
    .await?)
}

/// Marks `need` expired if it is still open with no place taken and ended before `now`.
pub async fn expire(tx: &mut Tx, street: &str, need: &str, now: DateTime<Utc>) -> Result<bool> {
    let done = sqlx::query(
        "update needs set state = 'EXPIRED', version = version + 1, updated_at = $3
         where street = $1 and need_id = $2 and state = 'OPEN' and claimed = 0 and end_time < $4",
    )
    .bind(street)
    .bind(need)
    .bind(time::now_text())
    .bind(time::to_text(now))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Calls `need` off while no one has checked in (open or with every place taken): every active
/// claim is released (`cancelled`) and returned (the volunteers to tell); FAILED_PRECONDITION
/// `NOT_CANCELLABLE` once it is under way or closed.
pub async fn cancel(tx: &mut Tx, street: &str, need: &str) -> Result<Vec<String>> {
    let now = time::now_text();
    let done = sqlx::query(
        "update needs set state = 'CANCELLED', claimed = 0, version = version + 1, updated_at = $3
         where street = $1 and need_id = $2 and state in ('OPEN', 'CLAIMED')",
    )
    .bind(street)
    .bind(need)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::failed_precondition(
            "NOT_CANCELLABLE",
            "a need is called off only before anyone has checked in",
        ));
    }
    let volunteers: Vec<(String,)> = sqlx::query_as(
        "select volunteer from claims where street = $1 and need_id = $2 and state = 'ACTIVE' order by volunteer",
    )
    .bind(street)
    .bind(need)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query(
        "update claims set state = 'RELEASED', released_because = 'cancelled', updated_at = $3
         where street = $1 and need_id = $2 and state = 'ACTIVE'",
    )
    .bind(street)
    .bind(need)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    Ok(volunteers.into_iter().map(|(v,)| v).collect())
}

/// Brings a need's state up to date with its claims after a check-in, check-out, confirmation
/// or release: under way (`IN_PROGRESS`) once someone checked in, `DONE` once everyone holding
/// a place checked out, `CONFIRMED` once each of their tasks is confirmed by both sides; back to
/// `OPEN` or `CLAIMED` by its places while no one has checked in. Cancelled, expired and
/// confirmed needs stay as they are. Returns the new state when it changed.
pub async fn settle(tx: &mut Tx, street: &str, need: &str) -> Result<Option<String>> {
    let row: Option<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "select n.state, n.places, n.claimed,
             cast(coalesce(sum(case when c.state = 'ACTIVE' then 1 else 0 end), 0) as bigint),
             cast(coalesce(sum(case when c.state = 'ACTIVE' and c.checked_in_at <> '' then 1 else 0 end), 0) as bigint),
             cast(coalesce(sum(case when c.state = 'ACTIVE' and c.checked_out_at <> '' then 1 else 0 end), 0) as bigint),
             cast(coalesce(sum(case when c.state = 'ACTIVE' and c.confirmed_at <> '' then 1 else 0 end), 0) as bigint)
         from needs n left join claims c on c.street = n.street and c.need_id = n.need_id
         where n.street = $1 and n.need_id = $2
         group by n.state, n.places, n.claimed",
    )
    .bind(street)
    .bind(need)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((state, places, claimed, active, checked_in, checked_out, confirmed)) = row else {
        return Ok(None);
    };
    if matches!(state.as_str(), "CANCELLED" | "EXPIRED" | "CONFIRMED") {
        return Ok(None);
    }
    let now = if active > 0 && confirmed == active {
        "CONFIRMED"
    } else if active > 0 && checked_out == active {
        "DONE"
    } else if checked_in > 0 {
        "IN_PROGRESS"
    } else if claimed >= places {
        "CLAIMED"
    } else {
        "OPEN"
    };
    if now == state {
        return Ok(None);
    }
    sqlx::query(
        "update needs set state = $3, version = version + 1, updated_at = $4 where street = $1 and need_id = $2",
    )
    .bind(street)
    .bind(need)
    .bind(now)
    .bind(time::now_text())
    .execute(&mut **tx)
    .await?;
    Ok(Some(now.to_owned()))
}

async fn claim_of(tx: &mut Tx, street: &str, need: &str, volunteer: &str) -> Result<Option<Claim>> {
    let row: Option<(String, String)> =
        sqlx::query_as("select state, check_in_by from claims where street = $1 and need_id = $2 and volunteer = $3")
            .bind(street)
            .bind(need)
            .bind(volunteer)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|(state, by)| Claim {
        need: need.to_owned(),
        volunteer: volunteer.to_owned(),
        state,
        check_in_by: time::from_text(&by).unwrap_or_default(),
    }))
}
