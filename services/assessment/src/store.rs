//! The assessment's SQL: a month's figures per worker from the facts, the schemes and the
//! reviews. Every query of a month reads the facts as they stand, ordered, so the same facts
//! give the same figures.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, FixedOffset, Utc};
use civic_kit::db::{Tx, exists_on};
use civic_kit::error::{Error, Result};
use civic_kit::names::StreetId;
use civic_kit::time;
use civic_proto::assessment::{Review, Scheme};
use prost::Message;

use crate::score::{Figures, Month, key_on_time};

/// A grid: `(community id, grid id)`.
pub(crate) type GridKey = (String, String);

/// A worker's month: their grids at the month's end and their figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerMonth {
    /// The worker's user id.
    pub(crate) worker: String,
    /// Their grids, sorted.
    pub(crate) grids: Vec<GridKey>,
    /// The month's figures.
    pub(crate) figures: Figures,
}

/// One grid's figures of a month (summed into its workers').
#[derive(Debug, Clone, Default)]
struct GridFigures {
    households: u32,
    households_visited: u32,
    key_households: u32,
    key_on_time: u32,
    issues: u32,
    answered_on_time: u32,
    resolved: u32,
    resolved_on_time: u32,
    ratings: u32,
    rating_sum: u32,
    escalations: u32,
    volunteer_minutes: u64,
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Every worker's figures of `month` in `street`: the workers are those the grids' assignments
/// at the month's end name; a grid with several workers counts for each. Issues resolved up to
/// `grace` after the month's end count as resolved.
pub(crate) async fn month_figures(
    pool: &sqlx::AnyPool,
    street: &StreetId,
    month: Month,
    zone: FixedOffset,
    grace: Duration,
) -> Result<Vec<WorkerMonth>> {
    let (start, end) = (month.start(zone), month.end(zone));
    let (from, to, cutoff) = (time::to_text(start), time::to_text(end), time::to_text(end + grace));
    let street = street.as_str();

    // The grids' workers at the month's end. "The latest version before the end" is a grouped
    // subquery joined back on the whole key, not a correlated `max()`: with the latter, SQLite
    // 3.51 may read each household's versions through the time index, a scan per household.
    let assigned: Vec<(String, String, String)> = sqlx::query_as(
        "select a.community_id, a.grid_id, a.workers
         from (select community_id, grid_id, max(version) as version from assignment_facts
               where street = $1 and event_time < $2 group by community_id, grid_id) latest
         join assignment_facts a on a.street = $1 and a.community_id = latest.community_id
             and a.grid_id = latest.grid_id and a.version = latest.version
         order by a.community_id, a.grid_id",
    )
    .bind(street)
    .bind(&to)
    .fetch_all(pool)
    .await?;
    if assigned.is_empty() {
        return Ok(Vec::new());
    }

    // The households at the month's end, by grid: how many, and how many were visited in the
    // month (by anyone); then the key households one by one, with their visits' times, for the
    // gaps between visits. Counted by the database; only key households' visits come back.
    let households: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "select h.community_id, h.grid_id, count(*),
             cast(sum(case when exists (select 1 from visit_facts v where v.street = $1 and v.household = h.household
                 and v.visit_time >= $3 and v.visit_time < $2) then 1 else 0 end) as bigint)
         from (select household, max(version) as version from household_facts
               where street = $1 and event_time < $2 group by household) latest
         join household_facts h on h.street = $1 and h.household = latest.household and h.version = latest.version
         group by h.community_id, h.grid_id",
    )
    .bind(street)
    .bind(&to)
    .bind(&from)
    .fetch_all(pool)
    .await?;
    let key_households: Vec<(String, String, String, i64)> = sqlx::query_as(
        "select h.household, h.community_id, h.grid_id, h.visit_interval_days
         from (select household, max(version) as version from household_facts
               where street = $1 and event_time < $2 group by household) latest
         join household_facts h on h.street = $1 and h.household = latest.household and h.version = latest.version
         where h.key_household = 1",
    )
    .bind(street)
    .bind(&to)
    .fetch_all(pool)
    .await?;
    let key_visits: Vec<(String, String)> = sqlx::query_as(
        "select household, visit_time from visit_facts
         where street = $1 and visit_time >= $2 and visit_time < $3
             and household in (select household from household_facts where street = $1 and key_household = 1)
         order by household, visit_time",
    )
    .bind(street)
    .bind(&from)
    .bind(&to)
    .fetch_all(pool)
    .await?;
    // The month's issues by grid, ratings and escalations.
    let issues: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
        "select community_id, grid_id, count(*),
             cast(sum(case when acknowledge_time <> ''
                 and (response_due_time = '' or acknowledge_time <= response_due_time) then 1 else 0 end) as bigint),
             cast(sum(case when resolve_time <> '' and resolve_time < $4 then 1 else 0 end) as bigint),
             cast(sum(case when resolve_time <> '' and resolve_time < $4
                 and (resolution_due_time = '' or resolve_time <= resolution_due_time) then 1 else 0 end) as bigint)
         from issue_facts where street = $1 and create_time >= $2 and create_time < $3
         group by community_id, grid_id",
    )
    .bind(street)
    .bind(&from)
    .bind(&to)
    .bind(&cutoff)
    .fetch_all(pool)
    .await?;
    let ratings: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "select community_id, grid_id, count(*), cast(sum(rating) as bigint) from feedback_facts
         where street = $1 and event_time >= $2 and event_time < $3 group by community_id, grid_id",
    )
    .bind(street)
    .bind(&from)
    .bind(&to)
    .fetch_all(pool)
    .await?;
    let escalations: Vec<(String, String, i64)> = sqlx::query_as(
        "select community_id, grid_id, count(*) from escalation_facts
         where street = $1 and event_time >= $2 and event_time < $3 group by community_id, grid_id",
    )
    .bind(street)
    .bind(&from)
    .bind(&to)
    .fetch_all(pool)
    .await?;
    // Volunteer service in the grids, needs placed by the workers, the summaries.
    let served: Vec<(String, String, i64)> = sqlx::query_as(
        "select n.community_id, n.grid_id, cast(sum(s.minutes) as bigint) from service_facts s
         join need_facts n on n.street = s.street and n.need = s.need
         where s.street = $1 and s.confirm_time >= $2 and s.confirm_time < $3
         group by n.community_id, n.grid_id",
    )
    .bind(street)
    .bind(&from)
    .bind(&to)
    .fetch_all(pool)
    .await?;
    let placed: HashMap<String, i64> = sqlx::query_as(
        "select placed_by, count(*) from need_facts
         where street = $1 and create_time >= $2 and create_time < $3 group by placed_by",
    )
    .bind(street)
    .bind(&from)
    .bind(&to)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let summaries: HashMap<String, (i64, i64)> = sqlx::query_as::<_, (String, i64, i64)>(
        "select worker, days_without_record, on_time from diary_facts where street = $1 and month = $2",
    )
    .bind(street)
    .bind(month.to_string())
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(w, missing, on_time)| (w, (missing, on_time)))
    .collect();

    let surveys: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "select g.community_id, g.grid_id, s.survey_id, s.rating_sum, s.rating_count
         from surveys s join survey_grids g on g.street = s.street and g.survey_id = s.survey_id
         where s.street = $1 and s.month = $2 and s.kind = 'SATISFACTION' and s.state = 'CLOSED'
             and s.answer_count >= s.min_answers
         order by s.survey_id",
    )
    .bind(street)
    .bind(month.to_string())
    .fetch_all(pool)
    .await?;
    let raw = Raw {
        month,
        start,
        end,
        assigned,
        households,
        key_households,
        key_visits,
        issues,
        ratings,
        escalations,
        served,
        placed,
        summaries,
        surveys,
    };
    // Grouping a street's month (hundreds of thousands of rows) is work for a blocking thread.
    tokio::task::spawn_blocking(move || aggregate(raw)).await.map_err(Error::internal)
}

/// A month's facts as read, to be grouped by worker.
struct Raw {
    month: Month,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    assigned: Vec<(String, String, String)>,
    /// `(community, grid, households, visited)`.
    households: Vec<(String, String, i64, i64)>,
    /// `(household, community, grid, interval in days)`.
    key_households: Vec<(String, String, String, i64)>,
    /// `(household, visit time)` of key households, by household and time.
    key_visits: Vec<(String, String)>,
    /// `(community, grid, taken, answered on time, resolved, resolved on time)`.
    issues: Vec<(String, String, i64, i64, i64, i64)>,
    ratings: Vec<(String, String, i64, i64)>,
    escalations: Vec<(String, String, i64)>,
    served: Vec<(String, String, i64)>,
    placed: HashMap<String, i64>,
    summaries: HashMap<String, (i64, i64)>,
    /// Closed satisfaction surveys shown: `(community, grid, survey, rating sum, rating count)`.
    surveys: Vec<(String, String, String, i64, i64)>,
}

/// Every worker's figures from a month's facts.
fn aggregate(raw: Raw) -> Vec<WorkerMonth> {
    let Raw {
        month,
        start,
        end,
        assigned,
        households,
        key_households,
        key_visits,
        issues,
        ratings,
        escalations,
        served,
        placed,
        summaries,
        surveys,
    } = raw;
    let mut grids_of: BTreeMap<String, Vec<GridKey>> = BTreeMap::new();
    let mut per_grid: HashMap<GridKey, GridFigures> = HashMap::new();
    for (community, grid, workers) in assigned {
        let key = (community, grid);
        for worker in workers.split(',').filter(|w| !w.is_empty()) {
            grids_of.entry(worker.to_owned()).or_default().push(key.clone());
        }
        per_grid.insert(key, GridFigures::default());
    }
    for (community, grid, n, visited) in households {
        if let Some(g) = per_grid.get_mut(&(community, grid)) {
            g.households = count(n);
            g.households_visited = count(visited);
        }
    }
    let mut visited: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for (household, at) in &key_visits {
        if let Some(t) = time::from_text(at) {
            visited.entry(household.as_str()).or_default().push(t);
        }
    }
    for (household, community, grid, interval) in key_households {
        let Some(g) = per_grid.get_mut(&(community, grid)) else { continue };
        let times = visited.get(household.as_str()).map(Vec::as_slice).unwrap_or_default();
        g.key_households += 1;
        g.key_on_time += u32::from(key_on_time(start, end, interval, times));
    }
    for (community, grid, n, answered, resolved, on_time) in issues {
        if let Some(g) = per_grid.get_mut(&(community, grid)) {
            g.issues = count(n);
            g.answered_on_time = count(answered);
            g.resolved = count(resolved);
            g.resolved_on_time = count(on_time);
        }
    }
    for (community, grid, n, sum) in ratings {
        if let Some(g) = per_grid.get_mut(&(community, grid)) {
            g.ratings = count(n);
            g.rating_sum = count(sum);
        }
    }
    for (community, grid, n) in escalations {
        if let Some(g) = per_grid.get_mut(&(community, grid)) {
            g.escalations = count(n);
        }
    }

    for (community, grid, minutes) in served {
        if let Some(g) = per_grid.get_mut(&(community, grid)) {
            g.volunteer_minutes = u64::try_from(minutes.max(0)).unwrap_or(0);
        }
    }
    let days = month.days();
    grids_of
        .into_iter()
        .map(|(worker, mut grids)| {
            grids.sort();
            grids.dedup();
            let mut f = Figures { days, ..Figures::default() };
            for g in grids.iter().filter_map(|k| per_grid.get(k)) {
                f.households += g.households;
                f.households_visited += g.households_visited;
                f.key_households += g.key_households;
                f.key_on_time += g.key_on_time;
                f.issues += g.issues;
                f.answered_on_time += g.answered_on_time;
                f.resolved += g.resolved;
                f.resolved_on_time += g.resolved_on_time;
                f.ratings += g.ratings;
                f.rating_sum += g.rating_sum;
                f.escalations += g.escalations;
                f.volunteer_minutes += g.volunteer_minutes;
            }
            // A survey of several of the worker's grids counts once.
            let mut seen: Vec<&str> = Vec::new();
            for (community, grid, survey, sum, n) in &surveys {
                if grids.iter().any(|(c, g)| c == community && g == grid) && !seen.contains(&survey.as_str()) {
                    seen.push(survey);
                    f.survey_ratings += count(*n);
                    f.survey_rating_sum += count(*sum);
                }
            }
            f.needs_placed = placed.get(&worker).map_or(0, |n| count(*n));
            f.summary = summaries.get(&worker).map(|(missing, on_time)| (count(*missing).min(days), *on_time != 0));
            WorkerMonth { worker, grids, figures: f }
        })
        .collect()
}

/// The issues taken in `[from, to)` — `(community, respond by, resolve by, answered, resolved)` —
/// and the ratings given then, `(community, rating)`.
pub(crate) async fn month_issues_and_ratings(
    pool: &sqlx::AnyPool,
    street: &StreetId,
    from: &str,
    to: &str,
) -> Result<(Vec<(String, String, String, String, String)>, Vec<(String, i64)>)> {
    let issues = sqlx::query_as(
        "select community_id, response_due_time, resolution_due_time, acknowledge_time, resolve_time
         from issue_facts where street = $1 and create_time >= $2 and create_time < $3",
    )
    .bind(street.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let ratings = sqlx::query_as(
        "select community_id, rating from feedback_facts where street = $1 and event_time >= $2 and event_time < $3",
    )
    .bind(street.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok((issues, ratings))
}

/// A scheme as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SchemeRecord {
    pub(crate) id: String,
    pub(crate) scheme: Scheme,
}

type SchemeRow = (String, Vec<u8>);

fn scheme_from_row((id, body): SchemeRow) -> Result<SchemeRecord> {
    Ok(SchemeRecord { id, scheme: Scheme::decode(body.as_slice()).map_err(Error::internal)? })
}

pub(crate) async fn insert_scheme(tx: &mut Tx, street: &StreetId, r: &SchemeRecord, now: &str) -> Result<()> {
    sqlx::query(
        "insert into schemes (street, scheme_id, effective_month, body, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $5)",
    )
    .bind(street.as_str())
    .bind(&r.id)
    .bind(&r.scheme.effective_month)
    .bind(r.scheme.encode_to_vec())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| exists_on(e, "schemes_pkey", &r.scheme.name))?;
    Ok(())
}

pub(crate) async fn get_scheme<'e, E>(executor: E, street: &StreetId, id: &str) -> Result<Option<SchemeRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<SchemeRow> =
        sqlx::query_as("select scheme_id, body from schemes where street = $1 and scheme_id = $2")
            .bind(street.as_str())
            .bind(id)
            .fetch_optional(executor)
            .await?;
    row.map(scheme_from_row).transpose()
}

/// The scheme in force in `month`: the latest effective month not after it, the latest created
/// (then the greatest id) among equals.
pub(crate) async fn scheme_in_force<'e, E>(executor: E, street: &StreetId, month: Month) -> Result<Option<SchemeRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<SchemeRow> = sqlx::query_as(
        "select scheme_id, body from schemes where street = $1 and effective_month <= $2
         order by effective_month desc, created_at desc, scheme_id desc limit 1",
    )
    .bind(street.as_str())
    .bind(month.to_string())
    .fetch_optional(executor)
    .await?;
    row.map(scheme_from_row).transpose()
}

/// A page of schemes, latest effective month first, after `after` (`effective month`, `id`).
pub(crate) async fn list_schemes(
    pool: &sqlx::AnyPool,
    street: &StreetId,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<SchemeRecord>> {
    let (month, id) = after.unwrap_or_else(|| ("9999-99".into(), String::new()));
    let rows: Vec<SchemeRow> = sqlx::query_as(
        "select scheme_id, body from schemes
         where street = $1 and (effective_month < $2 or (effective_month = $2 and scheme_id > $3))
         order by effective_month desc, scheme_id limit $4",
    )
    .bind(street.as_str())
    .bind(month)
    .bind(id)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(scheme_from_row).collect()
}

/// A review as stored: the whole review, its computed part and its version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReviewRecord {
    pub(crate) worker: String,
    pub(crate) community: String,
    pub(crate) review: Review,
    pub(crate) computation: Vec<u8>,
    pub(crate) version: i64,
}

type ReviewRow = (String, String, Vec<u8>, Vec<u8>, i64);

fn review_from_row((worker, community, body, computation, version): ReviewRow) -> Result<ReviewRecord> {
    let review = Review::decode(body.as_slice()).map_err(Error::internal)?;
    Ok(ReviewRecord { worker, community, review, computation, version })
}

pub(crate) async fn get_review<'e, E>(
    executor: E,
    street: &StreetId,
    month: Month,
    worker: &str,
) -> Result<Option<ReviewRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<ReviewRow> = sqlx::query_as(
        "select worker_id, community_id, body, computation, version from reviews
         where street = $1 and month = $2 and worker_id = $3",
    )
    .bind(street.as_str())
    .bind(month.to_string())
    .bind(worker)
    .fetch_optional(executor)
    .await?;
    row.map(review_from_row).transpose()
}

/// Every review of a month, by worker.
pub(crate) async fn month_reviews<'e, E>(executor: E, street: &StreetId, month: Month) -> Result<Vec<ReviewRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<ReviewRow> = sqlx::query_as(
        "select worker_id, community_id, body, computation, version from reviews
         where street = $1 and month = $2 order by worker_id",
    )
    .bind(street.as_str())
    .bind(month.to_string())
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(review_from_row).collect()
}

/// What a list of reviews is narrowed to.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReviewFilter {
    /// Only this worker's (a user id), when not empty.
    pub(crate) worker: String,
    /// Only this community's (an id), when not empty.
    pub(crate) community: String,
    /// Only in this state, when not empty.
    pub(crate) state: String,
}

/// A page of a month's reviews by worker, after the worker `after`.
pub(crate) async fn list_reviews(
    pool: &sqlx::AnyPool,
    street: &StreetId,
    month: Month,
    filter: &ReviewFilter,
    after: &str,
    limit: usize,
) -> Result<Vec<ReviewRecord>> {
    let rows: Vec<ReviewRow> = sqlx::query_as(
        "select worker_id, community_id, body, computation, version from reviews
         where street = $1 and month = $2 and worker_id > $3 and ($4 = '' or worker_id = $4)
             and ($5 = '' or community_id = $5) and ($6 = '' or state = $6)
         order by worker_id limit $7",
    )
    .bind(street.as_str())
    .bind(month.to_string())
    .bind(after)
    .bind(&filter.worker)
    .bind(&filter.community)
    .bind(&filter.state)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(review_from_row).collect()
}

/// Writes a review: new (`expected` None), or in place of the version `expected`. Whether it
/// was written (false: another change came first).
pub(crate) async fn save_review(
    tx: &mut Tx,
    street: &StreetId,
    month: Month,
    r: &ReviewRecord,
    expected: Option<i64>,
    now: &str,
) -> Result<bool> {
    let state = r.review.state().as_str_name();
    let sql = match expected {
        None => {
            "insert into reviews (street, month, worker_id, community_id, state, score, computation, body, version,
                 created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
             on conflict (street, month, worker_id) do nothing"
        }
        Some(_) => {
            "update reviews set community_id = $4, state = $5, score = $6, computation = $7, body = $8, version = $9,
                 updated_at = $10
             where street = $1 and month = $2 and worker_id = $3 and version = $11"
        }
    };
    let mut query = sqlx::query(sql)
        .bind(street.as_str())
        .bind(month.to_string())
        .bind(&r.worker)
        .bind(&r.community)
        .bind(state)
        .bind(r.review.score)
        .bind(&r.computation)
        .bind(r.review.encode_to_vec())
        .bind(r.version)
        .bind(now);
    if let Some(version) = expected {
        query = query.bind(version);
    }
    Ok(query.execute(&mut **tx).await?.rows_affected() == 1)
}

/// Removes the reviews of a month not approved whose workers no longer have a grid then.
pub(crate) async fn remove_review(tx: &mut Tx, street: &StreetId, month: Month, worker: &str) -> Result<()> {
    sqlx::query("delete from reviews where street = $1 and month = $2 and worker_id = $3 and state <> 'APPROVED'")
        .bind(street.as_str())
        .bind(month.to_string())
        .bind(worker)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The streets with a scheme (those whose months are kept computed).
pub(crate) async fn streets_with_schemes(pool: &sqlx::AnyPool) -> Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("select distinct street from schemes order by street").fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use civic_kit::events::Event;
    use civic_kit::testing::test_db;
    use civic_proto::grid::{DiarySubmitted, GridAssigned, HouseholdChanged, VisitRecorded};
    use civic_proto::issues::issue::State;
    use civic_proto::issues::{IssueChanged, IssueCreated, IssueEscalated, IssueFeedbackGiven};
    use civic_proto::volunteer::{NeedConfirmed, NeedCreated};

    use super::*;

    const G1: &str = "streets/zhongjie/communities/east/grids/g1";
    const G2: &str = "streets/zhongjie/communities/east/grids/g2";

    fn at(day: u32, hour: u32) -> Option<pbjson_types::Timestamp> {
        let t = if day > 31 {
            Utc.with_ymd_and_hms(2026, 11, day - 31, hour, 0, 0)
        } else {
            Utc.with_ymd_and_hms(2026, 10, day, hour, 0, 0)
        };
        Some(time::to_timestamp(t.single().expect("a time")))
    }

    fn event<E: civic_proto::Event>(n: usize, key: &str, e: &E) -> Event {
        Event {
            id: format!("0190{n:028}"),
            topic: E::TOPIC.into(),
            key: key.into(),
            payload: e.encode_to_vec(),
            traceparent: None,
            created_at: String::new(),
        }
    }

    /// A month of a community of two grids, as the services announce it.
    fn october() -> Vec<Event> {
        let mut out = Vec::new();
        let mut push = |_what: &str, e: Event| out.push(e);
        let mut k = 0;
        let mut next = || {
            k += 1;
            k
        };
        let assigned = |grid: &str, workers: &[&str], version: i64, day: u32| GridAssigned {
            grid: grid.into(),
            community: "streets/zhongjie/communities/east".into(),
            workers: workers.iter().map(|w| format!("users/{w}")).collect(),
            version,
            event_time: at(day, 8),
        };
        push("g", event(next(), G1, &assigned(G1, &["gw-1"], 1, 1)));
        push("g", event(next(), G2, &assigned(G2, &["gw-2"], 1, 1)));
        // gw-3 joins g1 in the month: counted at the month's end.
        push("g", event(next(), G1, &assigned(G1, &["gw-1", "gw-3"], 2, 15)));
        let household = |id: &str, grid: &str, key: bool, version: i64, day: u32| HouseholdChanged {
            household: format!("streets/zhongjie/households/{id}"),
            grid: grid.into(),
            community: "streets/zhongjie/communities/east".into(),
            key,
            visit_interval_days: if key { 14 } else { 90 },
            version,
            event_time: at(day, 9),
        };
        for (id, grid, key) in [("h1", G1, true), ("h2", G1, true), ("h3", G1, false), ("h4", G2, false)] {
            push("h", event(next(), id, &household(id, grid, key, 1, 1)));
        }
        // h3 moves to g2 in the month; h5 joins g1 after it (not counted in October).
        push("h", event(next(), "h3", &household("h3", G2, false, 2, 20)));
        push("h", event(next(), "h5", &household("h5", G1, false, 1, 33)));
        let visit = |id: &str, household: &str, day: u32| VisitRecorded {
            visit: format!("streets/zhongjie/visits/{id}"),
            household: format!("streets/zhongjie/households/{household}"),
            grid: G1.into(),
            worker: "users/gw-1".into(),
            kind: "DOOR_TO_DOOR".into(),
            key_visit: true,
            visit_time: at(day, 10),
            problems: Vec::new(),
        };
        // h1 every fortnight (on time); h2 once (not); h3 once; one visit in November.
        for (id, household, day) in
            [("v1", "h1", 10), ("v2", "h1", 22), ("v3", "h2", 20), ("v4", "h3", 5), ("v5", "h1", 35)]
        {
            push("v", event(next(), id, &visit(id, household, day)));
        }
        push(
            "d",
            event(
                next(),
                "gw-1",
                &DiarySubmitted {
                    worker: "users/gw-1".into(),
                    street: "streets/zhongjie".into(),
                    month: "2026-10".into(),
                    days_without_record: 3,
                    on_time: true,
                    submit_time: at(34, 9),
                    ..Default::default()
                },
            ),
        );
        let issue = |id: &str| format!("streets/zhongjie/issues/{id}");
        let created = |id: &str, day: u32| IssueCreated {
            issue: issue(id),
            grid: G1.into(),
            community: "streets/zhongjie/communities/east".into(),
            response_due_time: at(day + 1, 9),
            resolution_due_time: at(day + 5, 9),
            create_time: at(day, 9),
            ..Default::default()
        };
        let changed = |id: &str, day: u32, version: i64, answered: u32, resolved: Option<u32>| IssueChanged {
            issue: issue(id),
            state: if resolved.is_some() { State::Resolved as i32 } else { State::Acknowledged as i32 },
            grid: G1.into(),
            community: "streets/zhongjie/communities/east".into(),
            create_time: at(day, 9),
            acknowledge_time: at(answered, 8),
            resolve_time: resolved.and_then(|d| at(d, 12)),
            resolution_due_time: at(day + 5, 9),
            version,
            event_time: at(resolved.unwrap_or(answered), 12),
            ..Default::default()
        };
        // i1: answered on time, resolved on time; i2: answered late, resolved after the window;
        // i3: answered on time, resolved late within the window.
        push("i", event(next(), "i1", &created("i1", 3)));
        push("i", event(next(), "i1", &changed("i1", 3, 1, 4, None)));
        push("i", event(next(), "i1", &changed("i1", 3, 2, 4, Some(6))));
        push("i", event(next(), "i2", &created("i2", 25)));
        push("i", event(next(), "i2", &changed("i2", 25, 1, 28, None)));
        push("i", event(next(), "i2", &changed("i2", 25, 2, 28, Some(40))));
        push("i", event(next(), "i3", &created("i3", 26)));
        push("i", event(next(), "i3", &changed("i3", 26, 1, 26, Some(34))));
        push(
            "f",
            event(
                next(),
                "i1",
                &IssueFeedbackGiven {
                    issue: issue("i1"),
                    rating: 4,
                    fixed: true,
                    grid: G1.into(),
                    event_time: at(7, 9),
                    ..Default::default()
                },
            ),
        );
        push(
            "e",
            event(
                next(),
                "i2",
                &IssueEscalated {
                    issue: issue("i2"),
                    level: 1,
                    deadline: "response".into(),
                    grid: G1.into(),
                    event_time: at(27, 9),
                    ..Default::default()
                },
            ),
        );
        push(
            "n",
            event(
                next(),
                "n1",
                &NeedCreated {
                    need: "streets/zhongjie/needs/n1".into(),
                    kind: "ACTIVITY".into(),
                    community: "streets/zhongjie/communities/east".into(),
                    grid: G1.into(),
                    places: 1,
                    placed_by: "users/gw-1".into(),
                    create_time: at(8, 9),
                    ..Default::default()
                },
            ),
        );
        push(
            "n",
            event(
                next(),
                "n1",
                &NeedConfirmed {
                    need: "streets/zhongjie/needs/n1".into(),
                    volunteer: "streets/zhongjie/volunteers/v-1".into(),
                    minutes: 150,
                    confirm_time: at(12, 9),
                    rating: 5,
                },
            ),
        );
        out
    }

    async fn figures_after(events: &[Event]) -> Vec<WorkerMonth> {
        let db = test_db("assessment").await;
        db.db.migrate(crate::MIGRATIONS).await.expect("migrate");
        for e in events {
            let mut tx = db.db.begin().await.expect("begin");
            crate::facts::apply(&mut tx, e).await.expect("apply");
            tx.commit().await.expect("commit");
        }
        let street = StreetId::parse("s", "zhongjie").expect("street");
        let month = Month::parse("m", "2026-10").expect("month");
        let utc = FixedOffset::east_opt(0).expect("utc");
        let out = month_figures(db.db.reader(), &street, month, utc, Duration::days(5)).await.expect("figures");
        db.cleanup().await;
        out
    }

    #[tokio::test]
    async fn a_month_from_events_twice_and_out_of_order_equals_the_month_from_events_once_in_order() {
        let events = october();
        let once = figures_after(&events).await;
        let gw1 = once.iter().find(|w| w.worker == "gw-1").expect("gw-1 reviewed");
        let f = &gw1.figures;
        assert_eq!(gw1.grids, vec![("east".to_string(), "g1".to_string())]);
        assert_eq!((f.households, f.households_visited, f.key_households, f.key_on_time), (2, 2, 2, 1), "{f:?}");
        assert_eq!((f.issues, f.answered_on_time, f.resolved, f.resolved_on_time), (3, 2, 2, 1), "{f:?}");
        assert_eq!((f.ratings, f.rating_sum, f.escalations), (1, 4, 1));
        assert_eq!((f.summary, f.days, f.needs_placed, f.volunteer_minutes), (Some((3, true)), 31, 1, 150));
        let workers: Vec<&str> = once.iter().map(|w| w.worker.as_str()).collect();
        assert_eq!(workers, vec!["gw-1", "gw-2", "gw-3"], "gw-3 joined g1 in the month");
        let gw2 = &once[1].figures;
        assert_eq!((gw2.households, gw2.households_visited), (2, 1), "h3 moved to g2, and was visited in the month");

        // Every event twice, in a scrambled order.
        let mut scrambled: Vec<Event> = events.iter().chain(events.iter()).cloned().collect();
        let len = scrambled.len();
        for i in 0..len {
            scrambled.swap(i, (i * 7919 + 13) % len);
        }
        scrambled.reverse();
        assert_eq!(figures_after(&scrambled).await, once);
    }
}
