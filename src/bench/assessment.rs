//! `assessment-recompute`: a month of a large street's facts — 200,000 households in 500 grids
//! of 20 communities (one in ten a key household), 600,000 visits, 50,000 issues (answered,
//! resolved, rated and escalated in the proportions of a working month), the workers' summaries
//! — applied to the assessment service's tables by its own consumer code, as delivered events
//! would be, then RecomputeMonth through the API timed against the plain SQL aggregation of the
//! same figures over the same tables, each call paired with an aggregation right after it.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use civic_kit::auth::Role;
use civic_kit::events::Event;
use civic_proto::Event as _;
use civic_proto::assessment::assessment_service_client::AssessmentServiceClient;
use civic_proto::assessment::scheme::Weight;
use civic_proto::assessment::{CreateSchemeRequest, Indicator, RecomputeMonthRequest, Scheme};
use civic_proto::grid::{DiarySubmitted, GridAssigned, HouseholdChanged, VisitRecorded};
use civic_proto::issues::{IssueChanged, IssueCreated, IssueEscalated, IssueFeedbackGiven};
use prost::Message;
use serde_json::{Value, json};

use super::load::Stats;
use super::{Target, bearer, mint};

/// The street of the scenario (its own, beside the demo street).
const STREET: &str = "assessbench";
const COMMUNITIES: usize = 20;
const GRIDS: usize = 500;
const HOUSEHOLDS: usize = 200_000;
const VISITS: usize = 600_000;
const ISSUES: usize = 50_000;
/// The month measured.
const MONTH: &str = "2026-10";

/// A small generator (SplitMix64), so the instance is the same every run.
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

fn grid_name(g: usize) -> String {
    format!("streets/{STREET}/communities/c{:02}/grids/g{g:03}", g % COMMUNITIES)
}

/// A time in October 2026 (UTC+8's month, well inside it), `minutes` after its start.
fn at(minutes: u64) -> Option<pbjson_types::Timestamp> {
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single()?;
    Some(civic_kit::time::to_timestamp(start + chrono::Duration::minutes(i64::try_from(minutes).ok()?)))
}

/// Every event of the month, in the order the services would have sent them.
fn events() -> Vec<Event> {
    let mut out = Vec::with_capacity(GRIDS + HOUSEHOLDS + VISITS + ISSUES * 3);
    let mut push = |topic: &str, payload: Vec<u8>| {
        let n = out.len();
        out.push(Event {
            id: format!("0190{n:028}"),
            topic: topic.to_owned(),
            key: String::new(),
            payload,
            traceparent: None,
            created_at: String::new(),
        });
    };
    let mut g = Gen(0x00A5_5E55);
    let month_minutes = 31 * 24 * 60 - 8 * 60 - 1;
    for grid in 0..GRIDS {
        let e = GridAssigned {
            grid: grid_name(grid),
            community: format!("streets/{STREET}/communities/c{:02}", grid % COMMUNITIES),
            workers: vec![format!("users/aw-{grid:03}")],
            version: 1,
            event_time: at(0),
        };
        push(GridAssigned::TOPIC, e.encode_to_vec());
    }
    let mut key = Vec::with_capacity(HOUSEHOLDS);
    for h in 0..HOUSEHOLDS {
        let is_key = g.below(10) == 0;
        key.push(is_key);
        let e = HouseholdChanged {
            household: format!("streets/{STREET}/households/h{h:06}"),
            grid: grid_name(h % GRIDS),
            community: String::new(),
            key: is_key,
            visit_interval_days: if is_key { 7 } else { 90 },
            version: 1,
            event_time: at(0),
        };
        push(HouseholdChanged::TOPIC, e.encode_to_vec());
    }
    for v in 0..VISITS {
        // Key households are visited more often: half the visits go to them.
        let h = if v % 2 == 0 {
            let mut h = g.below(HOUSEHOLDS as u64) as usize;
            while !key[h] {
                h = (h + 1) % HOUSEHOLDS;
            }
            h
        } else {
            g.below(HOUSEHOLDS as u64) as usize
        };
        let e = VisitRecorded {
            visit: format!("streets/{STREET}/visits/v{v:07}"),
            household: format!("streets/{STREET}/households/h{h:06}"),
            grid: grid_name(h % GRIDS),
            worker: format!("users/aw-{:03}", h % GRIDS),
            kind: "DOOR_TO_DOOR".into(),
            key_visit: key[h],
            visit_time: at(60 + g.below(month_minutes - 120)),
            problems: Vec::new(),
        };
        push(VisitRecorded::TOPIC, e.encode_to_vec());
    }
    for i in 0..ISSUES {
        let grid = grid_name(g.below(GRIDS as u64) as usize);
        let created = 60 + g.below(month_minutes - 7 * 24 * 60);
        let name = format!("streets/{STREET}/issues/i{i:06}");
        let e = IssueCreated {
            issue: name.clone(),
            grid: grid.clone(),
            create_time: at(created),
            response_due_time: at(created + 24 * 60),
            resolution_due_time: at(created + 5 * 24 * 60),
            ..Default::default()
        };
        push(IssueCreated::TOPIC, e.encode_to_vec());
        let roll = g.below(100);
        if roll < 90 {
            let answered = created + 60 + g.below(30 * 60);
            let resolved = (roll < 75).then(|| answered + g.below(7 * 24 * 60));
            let e = IssueChanged {
                issue: name.clone(),
                grid: grid.clone(),
                create_time: at(created),
                acknowledge_time: at(answered),
                resolve_time: resolved.and_then(at),
                resolution_due_time: at(created + 5 * 24 * 60),
                version: 3,
                event_time: at(resolved.unwrap_or(answered)),
                ..Default::default()
            };
            push(IssueChanged::TOPIC, e.encode_to_vec());
            if roll < 30 {
                let e = IssueFeedbackGiven {
                    issue: name.clone(),
                    rating: 1 + g.below(5) as i32,
                    grid: grid.clone(),
                    event_time: at(resolved.unwrap_or(answered) + 60),
                    ..Default::default()
                };
                push(IssueFeedbackGiven::TOPIC, e.encode_to_vec());
            }
        }
        if roll >= 95 {
            let e = IssueEscalated {
                issue: name,
                level: 1,
                deadline: "response".into(),
                grid,
                event_time: at(created + 24 * 60 + 1),
                ..Default::default()
            };
            push(IssueEscalated::TOPIC, e.encode_to_vec());
        }
    }
    for grid in 0..GRIDS {
        let e = DiarySubmitted {
            worker: format!("users/aw-{grid:03}"),
            street: format!("streets/{STREET}"),
            month: MONTH.into(),
            days_without_record: g.below(4) as i32,
            on_time: g.below(10) > 0,
            submit_time: at(month_minutes + 24 * 60),
            ..Default::default()
        };
        push(DiarySubmitted::TOPIC, e.encode_to_vec());
    }
    out
}

/// The figures the service computes, as plain SQL over the same tables: per grid, the
/// households at the month's end and those visited, key households and their visits, the
/// month's issues answered, resolved and on time, ratings, escalations; per worker, the
/// summary. What it leaves to the service: the visit gaps of key households, the scheme's
/// arithmetic, the formulas' text, comparing and writing the reviews.
async fn plain_sql(db: &civic_kit::db::Db) -> anyhow::Result<usize> {
    let (from, to, cutoff) =
        ("2026-09-30T16:00:00.000000Z", "2026-10-31T16:00:00.000000Z", "2026-11-05T16:00:00.000000Z");
    let pool = db.reader();
    let households: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "select h.community_id, h.grid_id, count(*),
             cast(sum(case when exists (select 1 from visit_facts v where v.street = h.street
                 and v.household = h.household and v.visit_time >= $2 and v.visit_time < $3) then 1 else 0 end) as bigint),
             cast(sum(h.key_household) as bigint)
         from (select household, max(version) as version from household_facts
               where street = $1 and event_time < $3 group by household) latest
         join household_facts h on h.street = $1 and h.household = latest.household and h.version = latest.version
         group by h.community_id, h.grid_id",
    )
    .bind(STREET)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let key_visits: Vec<(String, i64)> = sqlx::query_as(
        "select v.household, count(*) from visit_facts v
         where v.street = $1 and v.visit_time >= $2 and v.visit_time < $3 and v.household in (
             select household from household_facts where street = $1 and key_household = 1)
         group by v.household",
    )
    .bind(STREET)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let issues: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
        "select community_id, grid_id, count(*),
             cast(sum(case when acknowledge_time <> '' and acknowledge_time <= response_due_time then 1 else 0 end) as bigint),
             cast(sum(case when resolve_time <> '' and resolve_time < $4 then 1 else 0 end) as bigint),
             cast(sum(case when resolve_time <> '' and resolve_time < $4 and resolve_time <= resolution_due_time
                 then 1 else 0 end) as bigint)
         from issue_facts where street = $1 and create_time >= $2 and create_time < $3
         group by community_id, grid_id",
    )
    .bind(STREET)
    .bind(from)
    .bind(to)
    .bind(cutoff)
    .fetch_all(pool)
    .await?;
    let ratings: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "select community_id, grid_id, count(*), cast(sum(rating) as bigint) from feedback_facts
         where street = $1 and event_time >= $2 and event_time < $3 group by community_id, grid_id",
    )
    .bind(STREET)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let escalations: Vec<(String, String, i64)> = sqlx::query_as(
        "select community_id, grid_id, count(*) from escalation_facts
         where street = $1 and event_time >= $2 and event_time < $3 group by community_id, grid_id",
    )
    .bind(STREET)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let summaries: Vec<(String, i64, i64)> =
        sqlx::query_as("select worker, days_without_record, on_time from diary_facts where street = $1 and month = $2")
            .bind(STREET)
            .bind(MONTH)
            .fetch_all(pool)
            .await?;
    Ok(households.len() + key_visits.len() + issues.len() + ratings.len() + escalations.len() + summaries.len())
}

/// `assessment-recompute`: see the module docs. Returns the end-to-end timings (as stats of
/// `runs` calls) and the figures beside them.
pub async fn recompute(target: &Target, runs: usize) -> anyhow::Result<(Stats, Value)> {
    let db = target.service_db("assessment").await?;
    let started = Instant::now();
    let all = events();
    for chunk in all.chunks(5000) {
        let mut tx = db.begin().await.context("a transaction")?;
        for event in chunk {
            civic_assessment::facts::apply(&mut tx, event).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        tx.commit().await.context("committing facts")?;
    }
    let facts_seconds = started.elapsed().as_secs_f64();
    let admin = mint(target, "bench-admin", Role::Admin, STREET)?;
    let mut client = AssessmentServiceClient::new(target.grpc[0].clone());
    let w = |indicator: Indicator, weight: f64| Weight { indicator: indicator as i32, weight, target: 0.0 };
    let scheme = Scheme {
        display_name: "bench".into(),
        effective_month: MONTH.into(),
        weights: vec![
            w(Indicator::HouseholdCoverage, 20.0),
            w(Indicator::KeyVisitsOnTime, 20.0),
            w(Indicator::Satisfaction, 20.0),
            w(Indicator::ResponseRate, 10.0),
            w(Indicator::ResolutionRate, 10.0),
            w(Indicator::OnTimeRate, 10.0),
            w(Indicator::DiaryCompleteness, 10.0),
        ],
        star_thresholds: vec![60.0, 70.0, 80.0, 90.0, 95.0],
        ..Default::default()
    };
    let create = CreateSchemeRequest {
        parent: format!("streets/{STREET}"),
        scheme: Some(scheme),
        scheme_id: "bench".into(),
        request_id: "bench-scheme".into(),
    };
    client.create_scheme(bearer(create, &admin)).await.context("the scheme")?;
    let ask = RecomputeMonthRequest { name: format!("streets/{STREET}/months/{MONTH}"), request_id: String::new() };
    let mut stats = Stats::counted(0, Duration::ZERO);
    let (mut first_computed, mut digests) = (None, Vec::new());
    let (mut sql_times, mut ratios) = (Vec::new(), Vec::new());
    let mut groups = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let answer = client.recompute_month(bearer(ask.clone(), &admin)).await;
        let took = started.elapsed();
        stats.elapsed += took;
        match answer {
            Ok(answer) => {
                stats.requests += 1;
                let _ = stats.latency.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                let answer = answer.into_inner();
                first_computed.get_or_insert(answer.computed);
                digests.push(answer.digest);
            }
            Err(status) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(status.to_string());
            }
        }
        let started = Instant::now();
        groups = plain_sql(&db).await?;
        let sql = started.elapsed().as_secs_f64();
        sql_times.push(sql);
        ratios.push(took.as_secs_f64() / sql.max(1e-9));
    }
    db.close().await;
    if first_computed.is_none() {
        anyhow::bail!("RecomputeMonth failed: {:?}", stats.first_error);
    }
    sql_times.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    digests.dedup();
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let extra = json!({
        "households": HOUSEHOLDS,
        "visits": VISITS,
        "issues": ISSUES,
        "grids": GRIDS,
        "facts_applied_s": round3(facts_seconds),
        "reviews_computed_first": first_computed,
        "same_digest_every_run": digests.len() == 1,
        "end_to_end_s": round3(stats.ms(0.5) / 1000.0),
        "plain_sql_s": round3(sql_times[sql_times.len() / 2]),
        "plain_sql_groups": groups,
        // Each call against the plain aggregation right after it; the median of those.
        "sql_ratio": round3(ratios[ratios.len() / 2]),
        "sql_ratio_runs": ratios.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
    });
    Ok((stats, extra))
}
