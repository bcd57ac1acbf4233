//! The issues service's tables: issues (the issue encoded whole, with the columns lists,
//! sweeps and authorisation filter on), their reporters, and their timelines. Reads return the
//! domain's types.

use civic_kit::db::{Arg, Batch, Tx};
use civic_kit::error::{Error, Result};
use civic_kit::names::StreetId;
use civic_kit::time;
use civic_proto::issues::issue::{Placement, State};
use civic_proto::issues::{Issue, IssueUpdate};
use prost::Message;
use sqlx::AnyPool;

use crate::domain::{Case, IssueName, at, source_key};

/// Where a new issue came from, when intake must be idempotent on it.
pub fn origin_key(issue: &Issue) -> Option<String> {
    if !issue.visit.is_empty() {
        Some(format!("{}#{}", issue.visit, issue.visit_problem))
    } else if !issue.external_id.is_empty() {
        Some(format!("{}|{}", issue.created_by, issue.external_id))
    } else {
        None
    }
}

fn ids(grid: &str) -> (String, String) {
    // `streets/{s}/communities/{c}/grids/{g}` → (c, g)
    let parts: Vec<&str> = grid.split('/').collect();
    match parts.as_slice() {
        ["streets", _, "communities", c, "grids", g] => ((*c).to_owned(), (*g).to_owned()),
        _ => (String::new(), String::new()),
    }
}

fn pending_of(issue: &Issue) -> &'static str {
    if issue.placement() == Placement::ToLocate {
        "locate"
    } else if !issue.visit.is_empty() && issue.description.is_empty() {
        "details"
    } else {
        ""
    }
}

fn decode(version: i64, body: &[u8]) -> Result<Case> {
    let issue = Issue::decode(body).map_err(Error::internal)?;
    let name = IssueName::parse("name", &issue.name).map_err(|_| Error::internal(BadRecord("name")))?;
    Ok(Case { name, version, issue })
}

/// The columns of a case, bound in the order of [`COLUMNS`].
struct Row {
    state: String,
    triage: String,
    source: String,
    community: String,
    grid: String,
    referred_to: String,
    pending: &'static str,
    response_due: String,
    resolution_due: String,
    paused: i64,
    resolve_time: String,
    /// Whether it has a location, and its latitude and longitude (zeros without).
    location: (i64, f64, f64),
}

fn row(case: &Case) -> Row {
    let issue = &case.issue;
    let (community, grid) = ids(&issue.grid);
    let clock = issue.clock.unwrap_or_default();
    let text = |t: Option<&pbjson_types::Timestamp>| at(t).map(time::to_text).unwrap_or_default();
    Row {
        state: issue.state().as_str_name().to_owned(),
        triage: issue.triage().as_str_name().to_owned(),
        source: source_key(issue.source()),
        community,
        grid,
        referred_to: case.referred_to().unwrap_or_default().to_owned(),
        pending: pending_of(issue),
        response_due: if issue.state() == State::New { text(clock.response_due_time.as_ref()) } else { String::new() },
        resolution_due: text(clock.resolution_due_time.as_ref()),
        paused: i64::from(clock.paused),
        resolve_time: text(clock.resolve_time.as_ref()),
        location: issue.location.map_or((0, 0.0, 0.0), |p| (1, p.latitude, p.longitude)),
    }
}

/// Inserts a new issue, its reporter and `first`, its first timeline entry, in one batch. An
/// issue of the same origin that exists already is returned instead (nothing is written).
pub async fn insert(tx: &mut Tx, case: &Case, first: &IssueUpdate) -> Result<Option<Case>> {
    let origin = origin_key(&case.issue);
    if let Some(key) = &origin {
        let found: Option<(i64, Vec<u8>)> =
            sqlx::query_as("select version, body from issues where street = $1 and source_key = $2")
                .bind(case.name.street().as_str())
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some((v, b)) = found {
            return Ok(Some(decode(v, &b)?));
        }
    }
    let r = row(case);
    let issue = &case.issue;
    let sql = "insert into issues (street, issue_id, state, triage, source, category, community_id, grid_id, assignee,
                   department, referred_to, reporter, created_by, pending, escalation, response_due, resolution_due,
                   paused, revisit_date, resolve_time, latitude, longitude, source_key, reporter_count, version, body,
                   created_at, updated_at, located)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
                   $22, $23, $24, $25, $26, $27, $27, $28)";
    let now = at(issue.create_time.as_ref()).map(time::to_text).unwrap_or_else(time::now_text);
    let mut batch = Batch::new();
    batch.push(
        sql,
        vec![
            case.name.street().as_str().into(),
            case.name.id().as_str().into(),
            r.state.into(),
            r.triage.into(),
            r.source.into(),
            Arg::from(&issue.category),
            r.community.into(),
            r.grid.into(),
            Arg::from(&issue.assignee),
            Arg::from(&issue.assignee_department),
            r.referred_to.into(),
            Arg::from(&issue.reporter),
            Arg::from(&issue.created_by),
            r.pending.into(),
            i64::from(issue.escalation_level).into(),
            r.response_due.into(),
            r.resolution_due.into(),
            r.paused.into(),
            Arg::from(&issue.revisit_date),
            r.resolve_time.into(),
            r.location.1.into(),
            r.location.2.into(),
            // An issue of no particular origin is its own (no NULL is bound: see the migration).
            origin.unwrap_or_else(|| format!("self|{}", case.name.id())).into(),
            i64::from(issue.reporter_count).into(),
            case.version.into(),
            issue.encode_to_vec().into(),
            Arg::from(&now),
            r.location.0.into(),
        ],
    );
    if !issue.reporter.is_empty() {
        batch.push(
            REPORTER,
            vec![
                case.name.street().as_str().into(),
                case.name.id().as_str().into(),
                Arg::from(&issue.reporter),
                Arg::from(&now),
            ],
        );
    }
    let (sql, args) = update_row(&case.name, 1, first);
    batch.push(sql, args);
    batch.run(tx).await.map_err(|e| civic_kit::db::exists_on(e, "issues_pkey", &case.name))?;
    Ok(None)
}

const REPORTER: &str = "insert into issue_reporters (street, issue_id, reporter, created_at, updated_at)
     values ($1, $2, $3, $4, $4) on conflict (street, issue_id, reporter) do nothing";

/// Copies the reporters of `from` to `to` (a merge).
pub async fn copy_reporters(tx: &mut Tx, from: &IssueName, to: &IssueName, now: &str) -> Result<()> {
    sqlx::query(
        "insert into issue_reporters (street, issue_id, reporter, created_at, updated_at)
         select street, $3, reporter, $4, $4 from issue_reporters where street = $1 and issue_id = $2
         on conflict (street, issue_id, reporter) do nothing",
    )
    .bind(from.street().as_str())
    .bind(from.id().as_str())
    .bind(to.id().as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether `reporter` is among the reporters of `name`.
pub async fn is_reporter(pool: &AnyPool, name: &IssueName, reporter: &str) -> Result<bool> {
    let found: Option<(i64,)> =
        sqlx::query_as("select 1 from issue_reporters where street = $1 and issue_id = $2 and reporter = $3")
            .bind(name.street().as_str())
            .bind(name.id().as_str())
            .bind(reporter)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}

/// Writes a changed case (its version already bumped).
pub async fn save(tx: &mut Tx, case: &Case) -> Result<()> {
    let r = row(case);
    let issue = &case.issue;
    let sql =
        "update issues set state = $3, triage = $4, community_id = $5, grid_id = $6, assignee = $7, department = $8,
                   referred_to = $9, pending = $10, escalation = $11, response_due = $12, resolution_due = $13,
                   paused = $14, revisit_date = $15, resolve_time = $16, latitude = $17, longitude = $18,
                   reporter_count = $19, version = $20, body = $21, updated_at = $22, located = $23
               where street = $1 and issue_id = $2";
    sqlx::query(sql)
        .bind(case.name.street().as_str())
        .bind(case.name.id().as_str())
        .bind(&r.state)
        .bind(&r.triage)
        .bind(&r.community)
        .bind(&r.grid)
        .bind(&issue.assignee)
        .bind(&issue.assignee_department)
        .bind(&r.referred_to)
        .bind(r.pending)
        .bind(i64::from(issue.escalation_level))
        .bind(&r.response_due)
        .bind(&r.resolution_due)
        .bind(r.paused)
        .bind(&issue.revisit_date)
        .bind(&r.resolve_time)
        .bind(r.location.1)
        .bind(r.location.2)
        .bind(i64::from(issue.reporter_count))
        .bind(case.version)
        .bind(issue.encode_to_vec())
        .bind(at(issue.update_time.as_ref()).map(time::to_text).unwrap_or_else(time::now_text))
        .bind(r.location.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SELECT_ONE: &str = "select version, body from issues where street = $1 and issue_id = $2";

/// Reads an issue inside a write transaction.
pub async fn get_in(tx: &mut Tx, name: &IssueName) -> Result<Option<Case>> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(SELECT_ONE)
        .bind(name.street().as_str())
        .bind(name.id().as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|(v, b)| decode(v, &b)).transpose()
}

/// Reads an issue.
pub async fn get(pool: &AnyPool, name: &IssueName) -> Result<Option<Case>> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as(SELECT_ONE).bind(name.street().as_str()).bind(name.id().as_str()).fetch_optional(pool).await?;
    row.map(|(v, b)| decode(v, &b)).transpose()
}

/// Which issues a list returns; empty strings mean "any". `scope` narrows to what the caller
/// may see.
#[derive(Debug, Default, Clone)]
pub struct IssueFilter {
    pub state: String,
    pub triage: String,
    pub source: String,
    pub category: String,
    pub escalation: Option<i64>,
    pub community: String,
    pub grid: String,
    pub assignee: String,
    pub reporter: String,
    pub department: String,
    /// When set (a stored time): open issues with a deadline before it.
    pub overdue_at: String,
    /// Any of these categories (any when empty).
    pub categories: Vec<String>,
    /// Only open (`Some(true)`) or only closed (`Some(false)`) issues.
    pub open: Option<bool>,
    /// Taken at or after this stored time (when set).
    pub created_from: String,
    /// Taken before this stored time (when set).
    pub created_before: String,
    /// Only these issue ids (any when empty).
    pub ids: Vec<String>,
    /// What the caller may see.
    pub scope: Scope,
}

/// What a caller may list.
#[derive(Debug, Default, Clone)]
pub enum Scope {
    /// The whole street.
    #[default]
    Street,
    /// A community (its id).
    Community(String),
    /// Grids (their ids).
    Grids(Vec<String>),
    /// The issues referred to departments (their ids).
    Department(Vec<String>),
    /// The issues a user reported (`users/{user}`).
    Reporter(String),
    /// The work orders a service filed (`services/{service}`).
    CreatedBy(String),
    /// The public board: issues of these categories, none merged into another or raised on a
    /// visit.
    Public(Vec<String>),
}

/// The states of an issue still being worked on.
pub const OPEN_STATES: [&str; 5] = ["NEW", "ACKNOWLEDGED", "IN_PROGRESS", "REFERRED", "REOPENED"];

/// One page of a street's issues, newest first, after the position (created_at, id).
pub async fn list(
    pool: &AnyPool,
    street: &StreetId,
    filter: &IssueFilter,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<(Case, String, String)>> {
    let mut sql = String::from(
        "select i.version, i.body, i.created_at, i.issue_id from issues i
         where i.street = $1 and ($2 = '' or i.state = $2) and ($3 = '' or i.triage = $3) and ($4 = '' or i.source = $4)
           and ($5 = '' or i.category = $5) and ($6 < 0 or i.escalation = $6) and ($7 = '' or i.community_id = $7)
           and ($8 = '' or i.grid_id = $8) and ($9 = '' or i.assignee = $9) and ($10 = '' or i.referred_to = $10 or i.department = $10)
           and ($11 = '' or (i.state in ('NEW', 'ACKNOWLEDGED', 'IN_PROGRESS', 'REFERRED', 'REOPENED') and i.paused = 0
                and ((i.response_due <> '' and i.response_due < $11) or (i.resolution_due <> '' and i.resolution_due < $11))))
           and ($12 = '' or i.created_at < $12 or (i.created_at = $12 and i.issue_id < $13))
           and ($14 = '' or exists (select 1 from issue_reporters r where r.street = i.street and r.issue_id = i.issue_id and r.reporter = $14))",
    );
    // Only placeholders are added to the text: every value is bound, in order, after $15.
    let mut b = Binds { first: 16, values: Vec::new() };
    match &filter.scope {
        Scope::Street => {}
        Scope::Community(c) => sql.push_str(&format!(" and i.community_id = {}", b.mark(c))),
        Scope::Grids(list) | Scope::Public(list) | Scope::Department(list) if list.is_empty() => {
            return Ok(Vec::new());
        }
        Scope::Grids(grids) => sql.push_str(&format!(" and i.grid_id in ({})", b.marks(grids))),
        Scope::Department(d) => sql.push_str(&format!(" and i.referred_to in ({})", b.marks(d))),
        Scope::Reporter(u) => sql.push_str(&format!(
            " and exists (select 1 from issue_reporters r where r.street = i.street and r.issue_id = i.issue_id and r.reporter = {})",
            b.mark(u)
        )),
        Scope::CreatedBy(s) => sql.push_str(&format!(" and i.created_by = {}", b.mark(s))),
        Scope::Public(categories) => {
            // A problem raised on a visit is a household's, whatever its category.
            sql.push_str(&format!(
                " and i.category in ({}) and i.state <> 'MERGED' and i.source <> 'visit'",
                b.marks(categories)
            ))
        }
    }
    if !filter.categories.is_empty() {
        sql.push_str(&format!(" and i.category in ({})", b.marks(&filter.categories)));
    }
    if !filter.ids.is_empty() {
        sql.push_str(&format!(" and i.issue_id in ({})", b.marks(&filter.ids)));
    }
    if let Some(open) = filter.open {
        let states = b.marks(&OPEN_STATES.map(String::from));
        sql.push_str(&format!(" and i.state {}in ({states})", if open { "" } else { "not " }));
    }
    if !filter.created_from.is_empty() {
        sql.push_str(&format!(" and i.created_at >= {}", b.mark(&filter.created_from)));
    }
    if !filter.created_before.is_empty() {
        sql.push_str(&format!(" and i.created_at < {}", b.mark(&filter.created_before)));
    }
    sql.push_str(" order by i.created_at desc, i.issue_id desc limit $15");
    let (created, id) = after.unwrap_or_default();
    let mut query = sqlx::query_as::<_, (i64, Vec<u8>, String, String)>(sqlx::AssertSqlSafe(sql))
        .bind(street.as_str())
        .bind(&filter.state)
        .bind(&filter.triage)
        .bind(&filter.source)
        .bind(&filter.category)
        .bind(filter.escalation.unwrap_or(-1))
        .bind(&filter.community)
        .bind(&filter.grid)
        .bind(&filter.assignee)
        .bind(&filter.department)
        .bind(&filter.overdue_at)
        .bind(created)
        .bind(id)
        .bind(&filter.reporter)
        .bind(limit as i64);
    for value in b.values {
        query = query.bind(value);
    }
    let rows = query.fetch_all(pool).await?;
    rows.into_iter().map(|(v, b, c, i)| Ok((decode(v, &b)?, c, i))).collect()
}

/// Values bound after a query's fixed placeholders, numbered from `first`.
struct Binds {
    first: usize,
    values: Vec<String>,
}

impl Binds {
    /// The placeholder of `value`.
    fn mark(&mut self, value: &str) -> String {
        self.values.push(value.to_owned());
        format!("${}", self.first + self.values.len() - 1)
    }

    /// The placeholders of `values`, comma-separated.
    fn marks(&mut self, values: &[String]) -> String {
        values.iter().map(|v| self.mark(v)).collect::<Vec<_>>().join(", ")
    }
}

/// Open issues of `category` in `street` created since `since`, within the box around a point
/// (south, west, north, east), at most `limit`.
pub async fn near(
    pool: &AnyPool,
    street: &StreetId,
    category: &str,
    since: &str,
    (south, west, north, east): (f64, f64, f64, f64),
    limit: usize,
) -> Result<Vec<Case>> {
    // The band of latitude is the index's range; the rest is checked on its rows.
    let sql = "select version, body from issues
               where street = $1 and category = $2 and latitude between $4 and $5 and located = 1
                 and longitude between $6 and $7 and created_at >= $3
                 and state in ('NEW', 'ACKNOWLEDGED', 'IN_PROGRESS', 'REFERRED', 'REOPENED')
               limit $8";
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(sql)
        .bind(street.as_str())
        .bind(category)
        .bind(since)
        .bind(south)
        .bind(north)
        .bind(west)
        .bind(east)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(|(v, b)| decode(v, &b)).collect()
}

/// What the sweep looks for.
#[derive(Debug, Clone, Copy)]
pub enum Due {
    /// Open issues with a running clock past a deadline at the time, below the street level.
    Overdue,
    /// Explained issues whose revisit date (a `YYYY-MM-DD`) has come.
    Revisit,
    /// Resolved issues resolved before the time.
    Unrated,
    /// Issues waiting to be placed or for a visit's words.
    Pending,
}

/// Up to `limit` issues of any street the sweep must handle at `now` (a stored time, or a date
/// for revisits), oldest first.
pub async fn due(pool: &AnyPool, what: Due, now: &str, limit: usize) -> Result<Vec<Case>> {
    let sql = match what {
        Due::Overdue => {
            "select version, body from issues
             where state in ('NEW', 'ACKNOWLEDGED', 'IN_PROGRESS', 'REFERRED', 'REOPENED') and paused = 0 and escalation < 2
               and ((response_due <> '' and response_due < $1) or (resolution_due <> '' and resolution_due < $1))
             order by resolution_due limit $2"
        }
        Due::Revisit => {
            "select version, body from issues where state = 'EXPLAINED' and revisit_date <> '' and revisit_date <= $1
             order by revisit_date limit $2"
        }
        Due::Unrated => {
            "select version, body from issues where state = 'RESOLVED' and resolve_time < $1 order by resolve_time limit $2"
        }
        Due::Pending => "select version, body from issues where pending <> '' and $1 <> '' order by created_at limit $2",
    };
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(sql).bind(now).bind(limit as i64).fetch_all(pool).await?;
    rows.into_iter().map(|(v, b)| decode(v, &b)).collect()
}

/// Appends an update to an issue's timeline; returns it with its name and number.
pub async fn append_update(tx: &mut Tx, name: &IssueName, update: &IssueUpdate) -> Result<IssueUpdate> {
    let (last,): (i64,) =
        sqlx::query_as("select coalesce(max(seq), 0) from issue_updates where street = $1 and issue_id = $2")
            .bind(name.street().as_str())
            .bind(name.id().as_str())
            .fetch_one(&mut **tx)
            .await?;
    insert_update(tx, name, last + 1, update).await
}

async fn insert_update(tx: &mut Tx, name: &IssueName, seq: i64, update: &IssueUpdate) -> Result<IssueUpdate> {
    let (sql, args) = update_row(name, seq, update);
    let mut batch = Batch::new();
    batch.push(sql, args);
    batch.run(tx).await?;
    Ok(IssueUpdate { name: format!("{name}/updates/{seq}"), ..update.clone() })
}

/// The statement that inserts `update` as entry `seq` of `name`'s timeline.
fn update_row(name: &IssueName, seq: i64, update: &IssueUpdate) -> (&'static str, Vec<Arg>) {
    let created = at(update.create_time.as_ref()).map(time::to_text).unwrap_or_else(time::now_text);
    (
        "insert into issue_updates (street, issue_id, seq, visibility, action, author, state, body, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        vec![
            name.street().as_str().into(),
            name.id().as_str().into(),
            seq.into(),
            update.visibility().as_str_name().into(),
            Arg::from(&update.action),
            Arg::from(&update.author),
            update.state().as_str_name().into(),
            Arg::from(&update.text),
            created.into(),
        ],
    )
}

/// The number of public updates of an issue.
pub async fn public_updates<'e, E>(executor: E, name: &IssueName) -> Result<i32>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (n,): (i64,) = sqlx::query_as(
        "select count(*) from issue_updates where street = $1 and issue_id = $2 and visibility = 'PUBLIC'",
    )
    .bind(name.street().as_str())
    .bind(name.id().as_str())
    .fetch_one(executor)
    .await?;
    Ok(n as i32)
}

/// The latest public update of each of the issues `ids` of `street` that has one, by issue id:
/// its step, its time, and its words when `words` (else empty: the words are not read).
pub async fn latest_public(
    pool: &AnyPool,
    street: &StreetId,
    ids: &[String],
    words: bool,
) -> Result<std::collections::HashMap<String, (String, String, String)>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let mut b = Binds { first: 2, values: Vec::new() };
    let marks = b.marks(ids);
    let body = if words { "u.body" } else { "''" };
    let sql = format!(
        "select u.issue_id, u.action, u.created_at, {body} from issue_updates u
         join (select issue_id, max(seq) as seq from issue_updates
               where street = $1 and visibility = 'PUBLIC' and issue_id in ({marks}) group by issue_id) m
           on u.issue_id = m.issue_id and u.seq = m.seq
         where u.street = $1"
    );
    let mut query =
        sqlx::query_as::<_, (String, String, String, String)>(sqlx::AssertSqlSafe(sql)).bind(street.as_str());
    for value in b.values {
        query = query.bind(value);
    }
    let rows = query.fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(id, action, at, text)| (id, (action, at, text))).collect())
}

/// A page of an issue's timeline, oldest first, after update `after`; only public ones when
/// `public_only`.
pub async fn updates(
    pool: &AnyPool,
    name: &IssueName,
    public_only: bool,
    after: i64,
    limit: usize,
) -> Result<Vec<(IssueUpdate, i64)>> {
    let rows: Vec<(i64, String, String, String, String, String, String)> = sqlx::query_as(
        "select seq, visibility, action, author, state, body, created_at from issue_updates
         where street = $1 and issue_id = $2 and seq > $3 and ($4 = 0 or visibility = 'PUBLIC')
         order by seq limit $5",
    )
    .bind(name.street().as_str())
    .bind(name.id().as_str())
    .bind(after)
    .bind(i64::from(public_only))
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(seq, visibility, action, author, state, text, created)| {
            let created = time::from_text(&created).ok_or_else(|| Error::internal(BadRecord("created_at")))?;
            Ok((
                IssueUpdate {
                    name: format!("{name}/updates/{seq}"),
                    visibility: civic_proto::issues::issue_update::Visibility::from_str_name(&visibility)
                        .unwrap_or_default() as i32,
                    text,
                    author,
                    state: State::from_str_name(&state).unwrap_or_default() as i32,
                    create_time: Some(time::to_timestamp(created)),
                    action,
                },
                seq,
            ))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("a stored issue has an unreadable {0}")]
struct BadRecord(&'static str);

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use civic_kit::calendar::{CalendarSettings, WorkCalendar};
    use civic_kit::names::{Id, StreetId};
    use civic_kit::testing::test_db;
    use civic_proto::issues::issue::Source;
    use civic_proto::issues::{Issue, Point};

    use super::*;
    use crate::domain::{Limit, Span};

    fn case(id: &str, location: Option<Point>) -> Case {
        let name = IssueName::new(StreetId::parse("s", "zhongjie").expect("street"), Id::parse("i", id).expect("id"));
        let issue = Issue {
            source: Source::App as i32,
            category: "environment".into(),
            description: "路灯不亮".into(),
            reporter: "users/res-1".into(),
            location,
            ..Default::default()
        };
        let limit = Limit { respond: Span::Hours(2), resolve: Span::Days(5) };
        Case::take(name, issue, limit, &WorkCalendar::new(&CalendarSettings::default()), Utc::now())
    }

    /// An issue goes in and changes, with and without a location, and reads back as written.
    #[tokio::test]
    async fn issues_are_written_and_read_back() {
        let db = test_db("issues").await;
        db.db.migrate(crate::MIGRATIONS).await.expect("migrate");
        // Without a location first: a statement prepared with a missing location still takes one.
        let located = Some(Point { latitude: 35.5, longitude: 106.6 });
        for (id, location) in [("a0", None), ("a1", located), ("a2", None), ("a3", located)] {
            let mut c = case(id, location);
            let mut tx = db.db.begin().await.expect("begin");
            assert!(insert(&mut tx, &c, &IssueUpdate::default()).await.expect("insert").is_none());
            c.acknowledge("", Utc::now()).expect("ack");
            save(&mut tx, &c).await.expect("save");
            tx.commit().await.expect("commit");
            let back = get(db.db.reader(), &c.name).await.expect("get").expect("found");
            assert_eq!(back, c);
            assert!(is_reporter(db.db.reader(), &c.name, "users/res-1").await.expect("reporter"));
        }
        db.cleanup().await;
    }
}
