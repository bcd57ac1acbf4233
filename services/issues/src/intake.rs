//! What the service does on its own: opens an issue for each problem raised on a visit (from
//! the grid service's events — applied once, however often delivered), and sweeps — escalating
//! overdue issues, reopening explained issues on their revisit date, closing resolved issues the
//! resident did not rate in time, and finishing issues taken while the grid service did not
//! answer (placing them, reading a visit's words).

use std::time::Duration;

use chrono::Utc;
use civic_kit::db::Tx;
use civic_kit::error::{Error, Result};
use civic_kit::events::{self, Event, Subscription};
use civic_kit::idempotency::RequestKey;
use civic_kit::names::StreetId;
use civic_kit::server::Shutdown;
use civic_kit::time;
use civic_kit::write::Change;
use civic_proto::Event as _;
use civic_proto::grid::VisitRecorded;
use civic_proto::issues::issue::{Placement, Source};
use civic_proto::issues::{Issue, IssueEscalated, Point};
use futures::future::BoxFuture;

use crate::Issues;
use crate::api::record;
use crate::domain::{Case, IssueName};
use crate::store::{self, Due};

/// The consumer's name in the inbox and on the bus.
pub(crate) const CONSUMER: &str = "issues";
/// How often a failing event is tried before it is set aside.
const DEAD_AFTER: u32 = 20;
/// How many issues one sweep takes of each kind.
const BATCH: usize = 200;
/// Who the service's own steps are by.
pub(crate) const SELF: &str = "services/issues";

/// Opens issues from visits until shutdown.
pub(crate) async fn consume_visits(issues: Issues, visits: Subscription, shutdown: Shutdown) {
    let db = issues.writer.db().clone();
    events::consume(db, visits, CONSUMER, visit_handler(issues), DEAD_AFTER, shutdown.wait()).await;
}

/// The consumer's handler: a visit's problems opened as issues in the delivery's transaction
/// (a visit that raised none passes by).
fn visit_handler(issues: Issues) -> impl events::Handler {
    events::only(
        |event: &Event| event.decode::<VisitRecorded>().is_some_and(|v| !v.problems.is_empty()),
        move |tx: &mut Tx, event: &Event| -> BoxFuture<'_, Result<()>> {
            let issues = issues.clone();
            Box::pin(async move { issues.open_from_visit(tx, event).await })
        },
    )
}

impl Issues {
    /// One issue per problem of a recorded visit, in the consumer's transaction: idempotent on
    /// the visit and the problem's index. The problem's words are read from the grid service
    /// afterwards (the event carries none).
    async fn open_from_visit(&self, tx: &mut Tx, event: &Event) -> Result<()> {
        let Some(visit) = event.decode::<VisitRecorded>() else { return Ok(()) };
        let Ok(street) = civic_kit::names::parse("visit", &visit.visit, &["streets", "visits"])
            .and_then(|ids| StreetId::parse("visit", ids[0]))
        else {
            tracing::warn!(event_id = %event.id, "a visit event names no visit of a street; skipped");
            return Ok(());
        };
        let community = civic_kit::names::GridName::parse("grid", &visit.grid).ok().map(|g| g.community().to_string());
        for problem in visit.problems.iter().take(20) {
            if !crate::domain::is_category(&problem.category) {
                continue;
            }
            let issue = Issue {
                source: Source::Visit as i32,
                category: problem.category.clone(),
                household: visit.household.clone(),
                visit: visit.visit.clone(),
                visit_problem: problem.index,
                created_by: visit.worker.clone(),
                ..Default::default()
            };
            let placed = match &community {
                Some(c) => (Placement::Located, visit.grid.clone(), c.clone()),
                None => (Placement::NoLocation, String::new(), String::new()),
            };
            let case = self.new_case(&street, issue, placed);
            if let (_, Some(created)) = self.take_in(tx, case).await? {
                events::enqueue(tx, civic_proto::issues::IssueCreated::TOPIC, &created.issue, &created).await?;
            }
        }
        Ok(())
    }
}

/// Sweeps every `sweep_every` until shutdown (the first a second after start).
pub(crate) async fn sweep(issues: Issues, shutdown: Shutdown) {
    let mut wait = Duration::from_secs(1);
    loop {
        let stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait() => return,
        }
        wait = issues.rules.sweep_every;
        if let Err(error) = issues.sweep_once().await {
            tracing::warn!(%error, "sweeping issues failed; trying again at the next sweep");
        }
    }
}

impl Issues {
    /// One sweep: escalation, revisits, unrated issues, then pending intake.
    pub(crate) async fn sweep_once(&self) -> Result<()> {
        let now = Utc::now();
        let pool = self.writer.db().reader();
        for case in store::due(pool, Due::Overdue, &time::to_text(now), BATCH).await? {
            self.step_on(&case.name, |c, issues| {
                let Some((level, deadline, due)) = c.escalate(issues.rules.escalation, &issues.calendar, now) else {
                    return Ok(None);
                };
                let event = IssueEscalated {
                    issue: c.name.to_string(),
                    level: level as i32,
                    deadline: deadline.into(),
                    due_time: Some(time::to_timestamp(due)),
                    grid: c.issue.grid.clone(),
                    community: c.issue.community.clone(),
                    assignee: c.issue.assignee.clone(),
                    event_time: Some(time::to_timestamp(now)),
                };
                let step = crate::domain::Step { action: "escalated", text: String::new(), public: false };
                Ok(Some((step, Some(event))))
            })
            .await?;
        }
        let today = self.calendar.local_day(now).to_string();
        for case in store::due(pool, Due::Revisit, &today, BATCH).await? {
            self.step_on(&case.name, |c, issues| {
                let limit = issues.rules.limits.of(c.issue.source(), &c.issue.category);
                Ok(Some((c.revisit(limit, &issues.calendar, now)?, None)))
            })
            .await?;
        }
        let resolved_before = time::to_text(now - self.rules.feedback_wait);
        for case in store::due(pool, Due::Unrated, &resolved_before, BATCH).await? {
            self.step_on(&case.name, |c, _| Ok(Some((c.close_unrated(now)?, None)))).await?;
        }
        for case in store::due(pool, Due::Pending, "any", BATCH).await? {
            self.finish_intake(case).await?;
        }
        Ok(())
    }

    /// Applies a step of the service's own to an issue, in a transaction of its own: `step`
    /// says what to do given the issue as it is now (nothing, when it returns `None`).
    async fn step_on(
        &self,
        name: &IssueName,
        step: impl FnOnce(&mut Case, &Issues) -> Result<Option<(crate::domain::Step, Option<IssueEscalated>)>>,
    ) -> Result<()> {
        let key = RequestKey::unkeyed("IssueSweep");
        self.writer
            .write(&key, async |c: &mut Change| {
                let Some(mut case) = store::get_in(c.tx(), name).await? else { return Ok(()) };
                let Some((done, escalated)) = step(&mut case, self)? else { return Ok(()) };
                record(c, &case, &done, SELF).await?;
                if let Some(event) = escalated {
                    c.emit(&case.name.to_string(), &event).await?;
                }
                Ok(())
            })
            .await
    }

    /// Places an issue taken while the grid service did not answer, or reads the words of a
    /// visit's problem; an issue the grid service still cannot help with waits for the next
    /// sweep.
    async fn finish_intake(&self, case: Case) -> Result<()> {
        if case.issue.placement() == Placement::ToLocate {
            let point = case.issue.location.map(|p| (p.latitude, p.longitude));
            let (placement, grid, community) = self.locate(case.name.street(), point).await;
            if placement == Placement::ToLocate {
                return Ok(());
            }
            return self
                .step_on(&case.name, |c, _| {
                    if c.issue.placement() != Placement::ToLocate {
                        return Ok(None);
                    }
                    c.issue.placement = placement as i32;
                    c.issue.grid = grid;
                    c.issue.community = community;
                    c.version += 1;
                    c.issue.update_time = Some(time::to_timestamp(Utc::now()));
                    Ok(Some((crate::domain::Step { action: "located", text: String::new(), public: false }, None)))
                })
                .await;
        }
        if case.issue.visit.is_empty() || !case.issue.description.is_empty() {
            return Ok(());
        }
        let Some(problem) = self.visit_problem(&case).await? else { return Ok(()) };
        let key = RequestKey::unkeyed("IssueVisitWords");
        self.writer
            .write(&key, async |c: &mut Change| {
                let Some(mut now) = store::get_in(c.tx(), &case.name).await? else { return Ok(()) };
                if !now.issue.description.is_empty() {
                    return Ok(());
                }
                now.issue.description = if problem.description.trim().is_empty() {
                    "(no description)".to_owned()
                } else {
                    problem.description.trim().to_owned()
                };
                if now.issue.location.is_none() {
                    now.issue.location =
                        problem.location.map(|p| Point { latitude: p.latitude, longitude: p.longitude });
                }
                now.version += 1;
                store::save(c.tx(), &now).await
            })
            .await
    }

    /// The problem a visit issue was opened for, read from the grid service as this service;
    /// `None` when the grid service does not answer now (or no longer has it).
    async fn visit_problem(&self, case: &Case) -> Result<Option<civic_proto::grid::Problem>> {
        let message = civic_proto::grid::GetVisitRequest { name: case.issue.visit.clone() };
        let call = async {
            let request = self.directory.as_service(message, self.rules.locate_timeout).await?;
            let mut client =
                civic_proto::grid::visit_service_client::VisitServiceClient::new(self.directory.connect("grid")?);
            Ok::<_, Error>(client.get_visit(request).await)
        };
        match tokio::time::timeout(self.rules.locate_timeout * 2, call).await {
            Ok(Ok(Ok(visit))) => {
                let visit = visit.into_inner();
                let index = usize::try_from(case.issue.visit_problem).unwrap_or(usize::MAX);
                Ok(Some(visit.problems.get(index).cloned().unwrap_or_default()))
            }
            Ok(Ok(Err(status))) if status.code() == tonic::Code::NotFound => Ok(Some(Default::default())),
            Ok(Ok(Err(status))) => {
                tracing::warn!(code = ?status.code(), "reading a visit failed; trying again at the next sweep");
                Ok(None)
            }
            Ok(Err(error)) => {
                tracing::warn!(code = ?error.code(), "the grid service cannot be reached; trying again at the next sweep");
                Ok(None)
            }
            Err(_) => Ok(None),
        }
    }
}
