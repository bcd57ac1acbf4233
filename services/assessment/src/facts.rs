//! Facts from the other services' events: each event applied once (kit's inbox) into the fact
//! tables, in the delivery's transaction. A fact that a later event replaces keeps the highest
//! version (or the latest time), so an event delivered twice or out of order leaves the same
//! facts as events delivered once in order. Events that name nothing of a street, or carry no
//! time, are passed by with a warning (their ids only).

use chrono::Utc;
use civic_kit::db::Tx;
use civic_kit::error::Result;
use civic_kit::events::{self, Event, Subscription};
use civic_kit::names::GridName;
use civic_kit::server::Shutdown;
use civic_kit::time;
use civic_proto::Event as _;
use civic_proto::grid::{DiarySubmitted, GridAssigned, HouseholdChanged, VisitRecorded};
use civic_proto::issues::{IssueChanged, IssueCreated, IssueEscalated, IssueFeedbackGiven};
use civic_proto::volunteer::{NeedConfirmed, NeedCreated};
use futures::future::BoxFuture;

/// The consumer's name in the inbox and on the bus.
pub(crate) const CONSUMER: &str = "assessment";
/// How often a failing event is tried before it is set aside.
const DEAD_AFTER: u32 = 20;

/// Every topic the assessment keeps facts of.
pub(crate) const TOPICS: &[&str] = &[
    HouseholdChanged::TOPIC,
    GridAssigned::TOPIC,
    VisitRecorded::TOPIC,
    DiarySubmitted::TOPIC,
    IssueCreated::TOPIC,
    IssueChanged::TOPIC,
    IssueEscalated::TOPIC,
    IssueFeedbackGiven::TOPIC,
    NeedCreated::TOPIC,
    NeedConfirmed::TOPIC,
];

/// Keeps facts until shutdown.
pub(crate) async fn consume(db: civic_kit::db::Db, subscription: Subscription, shutdown: Shutdown) {
    events::consume(db, subscription, CONSUMER, handler(), DEAD_AFTER, shutdown.wait()).await;
}

fn handler() -> impl events::Handler {
    events::only(
        |event: &Event| TOPICS.contains(&event.topic.as_str()),
        |tx: &mut Tx, event: &Event| -> BoxFuture<'_, Result<()>> { Box::pin(apply(tx, event)) },
    )
}

/// The street of a name `streets/{street}/...`, if it has one.
fn street_of(name: &str) -> Option<&str> {
    let mut parts = name.split('/');
    match (parts.next(), parts.next()) {
        (Some("streets"), Some(street)) if civic_kit::names::is_valid_id(street) => Some(street),
        _ => None,
    }
}

/// `(community, grid)` ids of a grid's name; empty for none or a malformed one.
fn place(grid: &str) -> (String, String) {
    GridName::parse("grid", grid).map(|g| (g.community_id().to_string(), g.id().to_string())).unwrap_or_default()
}

/// A community's id from its name; empty for none.
fn community_id(community: &str) -> String {
    community.rsplit('/').next().filter(|c| civic_kit::names::is_valid_id(c)).unwrap_or_default().to_owned()
}

fn text(t: Option<pbjson_types::Timestamp>) -> String {
    time::from_timestamp(t.as_ref()).map(time::to_text).unwrap_or_default()
}

/// Applies one event to the facts, in `tx` (the consumer's transaction; the benchmark writes a
/// month's facts through it too).
pub async fn apply(tx: &mut Tx, event: &Event) -> Result<()> {
    let now = time::to_text(Utc::now());
    let skip = |why: &str| {
        tracing::warn!(event_id = %event.id, topic = %event.topic, why, "an event was passed by");
        Ok(())
    };
    let id = event.id.as_str();
    match event.topic.as_str() {
        HouseholdChanged::TOPIC => {
            let Some(e) = event.decode::<HouseholdChanged>() else { return skip("undecodable") };
            let (Some(street), Some(household)) = (street_of(&e.household), e.household.rsplit('/').next()) else {
                return skip("no street");
            };
            let (community, grid) = place(&e.grid);
            sqlx::query(
                "insert into household_facts (street, household, version, community_id, grid_id, key_household,
                     visit_interval_days, event_time, event_id, created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
                 on conflict (street, household, version) do nothing",
            )
            .bind(street)
            .bind(household)
            .bind(e.version)
            .bind(community)
            .bind(grid)
            .bind(i64::from(e.key))
            .bind(i64::from(e.visit_interval_days.max(1)))
            .bind(text(e.event_time))
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        GridAssigned::TOPIC => {
            let Some(e) = event.decode::<GridAssigned>() else { return skip("undecodable") };
            let Ok(grid) = GridName::parse("grid", &e.grid) else { return skip("no grid") };
            let mut workers: Vec<&str> = e.workers.iter().filter_map(|w| w.strip_prefix("users/")).take(20).collect();
            workers.sort_unstable();
            workers.dedup();
            sqlx::query(
                "insert into assignment_facts (street, community_id, grid_id, version, workers, event_time, event_id,
                     created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 on conflict (street, community_id, grid_id, version) do nothing",
            )
            .bind(grid.street().as_str())
            .bind(grid.community_id().as_str())
            .bind(grid.id().as_str())
            .bind(e.version)
            .bind(workers.join(","))
            .bind(text(e.event_time))
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        VisitRecorded::TOPIC => {
            let Some(e) = event.decode::<VisitRecorded>() else { return skip("undecodable") };
            let (Some(street), Some(household)) = (street_of(&e.visit), e.household.rsplit('/').next()) else {
                return skip("no street");
            };
            let (community, grid) = place(&e.grid);
            let visit_time = text(e.visit_time);
            if visit_time.is_empty() {
                return skip("no time");
            }
            sqlx::query(
                "insert into visit_facts (street, visit, household, community_id, grid_id, worker, key_visit, visit_time,
                     event_id, created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
                 on conflict (street, visit) do nothing",
            )
            .bind(street)
            .bind(&e.visit)
            .bind(household)
            .bind(community)
            .bind(grid)
            .bind(e.worker.strip_prefix("users/").unwrap_or_default())
            .bind(i64::from(e.key_visit))
            .bind(visit_time)
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        DiarySubmitted::TOPIC => {
            let Some(e) = event.decode::<DiarySubmitted>() else { return skip("undecodable") };
            let (Some(street), Some(worker)) = (street_of(&e.street), e.worker.strip_prefix("users/")) else {
                return skip("no street");
            };
            if crate::score::Month::parse("month", &e.month).is_err() {
                return skip("no month");
            }
            sqlx::query(
                "insert into diary_facts (street, worker, month, days_without_record, on_time, submit_time, event_id,
                     created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 on conflict (street, worker, month) do update set
                     days_without_record = excluded.days_without_record, on_time = excluded.on_time,
                     submit_time = excluded.submit_time, event_id = excluded.event_id, updated_at = excluded.updated_at
                 where excluded.submit_time > diary_facts.submit_time
                     or (excluded.submit_time = diary_facts.submit_time and excluded.event_id > diary_facts.event_id)",
            )
            .bind(street)
            .bind(worker)
            .bind(&e.month)
            .bind(i64::from(e.days_without_record.max(0)))
            .bind(i64::from(e.on_time))
            .bind(text(e.submit_time))
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        IssueCreated::TOPIC => {
            let Some(e) = event.decode::<IssueCreated>() else { return skip("undecodable") };
            let Some(street) = street_of(&e.issue) else { return skip("no street") };
            let (community, grid) = place(&e.grid);
            // The creation's facts; the place only while no change has placed it since.
            sqlx::query(
                "insert into issue_facts (street, issue, community_id, grid_id, create_time, response_due_time,
                     resolution_due_time, acknowledge_time, resolve_time, state, version, event_id, created_at,
                     updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, '', '', '', 0, $8, $9, $9)
                 on conflict (street, issue) do update set
                     create_time = excluded.create_time, response_due_time = excluded.response_due_time,
                     resolution_due_time = case when issue_facts.version = 0 then excluded.resolution_due_time
                         else issue_facts.resolution_due_time end,
                     community_id = case when issue_facts.version = 0 then excluded.community_id
                         else issue_facts.community_id end,
                     grid_id = case when issue_facts.version = 0 then excluded.grid_id else issue_facts.grid_id end,
                     updated_at = excluded.updated_at",
            )
            .bind(street)
            .bind(&e.issue)
            .bind(community)
            .bind(grid)
            .bind(text(e.create_time))
            .bind(text(e.response_due_time))
            .bind(text(e.resolution_due_time))
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        IssueChanged::TOPIC => {
            let Some(e) = event.decode::<IssueChanged>() else { return skip("undecodable") };
            let Some(street) = street_of(&e.issue) else { return skip("no street") };
            let (community, grid) = place(&e.grid);
            let state = e.state().as_str_name();
            sqlx::query(
                "insert into issue_facts (street, issue, community_id, grid_id, create_time, response_due_time,
                     resolution_due_time, acknowledge_time, resolve_time, state, version, event_id, created_at,
                     updated_at)
                 values ($1, $2, $3, $4, $5, '', $6, $7, $8, $9, $10, $11, $12, $12)
                 on conflict (street, issue) do update set
                     community_id = excluded.community_id, grid_id = excluded.grid_id,
                     resolution_due_time = excluded.resolution_due_time, acknowledge_time = excluded.acknowledge_time,
                     resolve_time = excluded.resolve_time, state = excluded.state, version = excluded.version,
                     event_id = excluded.event_id, updated_at = excluded.updated_at
                 where excluded.version > issue_facts.version",
            )
            .bind(street)
            .bind(&e.issue)
            .bind(community)
            .bind(grid)
            .bind(text(e.create_time))
            .bind(text(e.resolution_due_time))
            .bind(text(e.acknowledge_time))
            .bind(text(e.resolve_time))
            .bind(state)
            .bind(e.version.max(1))
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        IssueEscalated::TOPIC => {
            let Some(e) = event.decode::<IssueEscalated>() else { return skip("undecodable") };
            let Some(street) = street_of(&e.issue) else { return skip("no street") };
            let (community, grid) = place(&e.grid);
            sqlx::query(
                "insert into escalation_facts (street, issue, level, deadline, community_id, grid_id, event_time,
                     event_id, created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
                 on conflict (street, issue, level, deadline) do nothing",
            )
            .bind(street)
            .bind(&e.issue)
            .bind(e.level().as_str_name())
            .bind(&e.deadline)
            .bind(community)
            .bind(grid)
            .bind(text(e.event_time))
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        IssueFeedbackGiven::TOPIC => {
            let Some(e) = event.decode::<IssueFeedbackGiven>() else { return skip("undecodable") };
            let Some(street) = street_of(&e.issue) else { return skip("no street") };
            if !(1..=5).contains(&e.rating) {
                return skip("no rating");
            }
            let (community, grid) = place(&e.grid);
            sqlx::query(
                "insert into feedback_facts (street, issue, community_id, grid_id, rating, event_time, event_id,
                     created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 on conflict (street, issue) do update set
                     community_id = excluded.community_id, grid_id = excluded.grid_id, rating = excluded.rating,
                     event_time = excluded.event_time, event_id = excluded.event_id, updated_at = excluded.updated_at
                 where excluded.event_time > feedback_facts.event_time
                     or (excluded.event_time = feedback_facts.event_time and excluded.event_id > feedback_facts.event_id)",
            )
            .bind(street)
            .bind(&e.issue)
            .bind(community)
            .bind(grid)
            .bind(i64::from(e.rating))
            .bind(text(e.event_time))
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        NeedCreated::TOPIC => {
            let Some(e) = event.decode::<NeedCreated>() else { return skip("undecodable") };
            let Some(street) = street_of(&e.need) else { return skip("no street") };
            let (_, grid) = place(&e.grid);
            sqlx::query(
                "insert into need_facts (street, need, community_id, grid_id, placed_by, create_time, event_id,
                     created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 on conflict (street, need) do nothing",
            )
            .bind(street)
            .bind(&e.need)
            .bind(community_id(&e.community))
            .bind(grid)
            .bind(e.placed_by.strip_prefix("users/").unwrap_or_default())
            .bind(text(e.create_time))
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        NeedConfirmed::TOPIC => {
            let Some(e) = event.decode::<NeedConfirmed>() else { return skip("undecodable") };
            let Some(street) = street_of(&e.need) else { return skip("no street") };
            sqlx::query(
                "insert into service_facts (street, need, volunteer, minutes, confirm_time, event_id, created_at,
                     updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $7)
                 on conflict (street, need, volunteer) do nothing",
            )
            .bind(street)
            .bind(&e.need)
            .bind(&e.volunteer)
            .bind(e.minutes.clamp(0, 24 * 60))
            .bind(text(e.confirm_time))
            .bind(id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
        }
        _ => {}
    }
    Ok(())
}
