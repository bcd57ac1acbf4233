//! The assessment service: the monthly review of grid workers (网格员绩效月考核) and its five-star
//! rating (五星创评). Its figures come only from the other services' events — visits, households
//! and grid assignments, monthly summaries, issues, residents' ratings, volunteer needs and
//! service — kept here as facts; it never reads another service's database and never calls one
//! to compute a score. A street's scoring schemes are versioned by effective month; each
//! worker's month is computed from the facts by the scheme in force, every number with its
//! formula, then adjusted by a reviewer with a reason and approved. [`MODULE`] is its entry in
//! the binary's registry.
//!
//! Who reaches what: a grid worker their own reviews; a cadre their community's workers' (the
//! street's when the token names no community), which they adjust and approve; an admin the
//! street's, and the schemes, which only admins create. The street's staff read the schemes.
#![forbid(unsafe_code)]

mod api;
mod bulletin;
pub mod facts;
mod reviews;
pub mod score;
mod seed;
mod store;
mod surveys;
mod yearend;

use std::sync::Arc;
use std::time::Duration;

use civic_kit::auth::Verifier;
use civic_kit::calendar::WorkCalendar;
use civic_kit::config::{ConfigError, Section, Value};
use civic_kit::db::Migration;
use civic_kit::error::Result;
use civic_kit::module::{Instance, Module, Parts};
use civic_kit::names::StreetId;
use civic_kit::page::PageTokens;
use civic_kit::server::Shutdown;
use civic_kit::write::Writer;
use civic_proto::assessment::assessment_service_server::AssessmentServiceServer;
use serde::{Deserialize, Serialize};
use tonic::server::NamedService;
use tonic::service::Routes;

/// The street the demo data is for.
pub const ZHONGJIE_STREET: &str = "zhongjie";

/// The assessment service in the binary's registry of services.
pub static MODULE: AssessmentModule = AssessmentModule;

/// The assessment service's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "facts from events", sql: include_str!("../migrations/0001_facts.sql") },
    Migration { version: 2, name: "schemes and reviews", sql: include_str!("../migrations/0002_reviews.sql") },
    Migration { version: 3, name: "surveys", sql: include_str!("../migrations/0003_surveys.sql") },
    Migration { version: 4, name: "visits by household", sql: include_str!("../migrations/0004_visit_index.sql") },
];

/// The assessment service's own settings, `[assessment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How many days after a month's end an issue of the month still counts as resolved in time
    /// for its review (0 to 28): the review window, matching the summary's deadline (the fifth).
    pub review_window_days: u32,
    /// How often the current and the previous month are computed again for every street with a
    /// scheme, in seconds (60 to 86400), so reviews follow the facts; 0 leaves it to
    /// RecomputeMonth.
    pub recompute_every_seconds: u64,
    /// The fewest answers any survey's results are shown from (1 to 1000): a survey may ask for
    /// more, never fewer, so that no answer can be picked out.
    pub min_survey_answers: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self { review_window_days: 5, recompute_every_seconds: 600, min_survey_answers: 5 }
    }
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: format!("assessment.{key}"), message: message.into() }
}

impl Settings {
    fn check(self) -> std::result::Result<Self, ConfigError> {
        if self.review_window_days > 28 {
            return Err(bad("review_window_days", "must be 0 to 28"));
        }
        if self.recompute_every_seconds != 0 && !(60..=86_400).contains(&self.recompute_every_seconds) {
            return Err(bad("recompute_every_seconds", "must be 0 (off) or 60 to 86400"));
        }
        if !(1..=1000).contains(&self.min_survey_answers) {
            return Err(bad("min_survey_answers", "must be 1 to 1000"));
        }
        Ok(self)
    }
}

/// The assessment service as a module of the binary.
#[derive(Debug)]
pub struct AssessmentModule;

#[tonic::async_trait]
impl Module for AssessmentModule {
    fn name(&self) -> &'static str {
        "assessment"
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[<AssessmentServiceServer<Assessment> as NamedService>::NAME]
    }

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    fn settings(&self, section: &Section) -> std::result::Result<Value, ConfigError> {
        section.extract::<Settings>()?.check()?;
        section.effective::<Settings>()
    }

    async fn build(&self, parts: Parts) -> Result<Box<dyn Instance>> {
        let settings = parts.section.extract::<Settings>().map_err(civic_kit::Error::internal)?;
        let settings = settings.check().map_err(civic_kit::Error::internal)?;
        // Subscribed before the process's relays start, so no event passes the consumer by.
        let subscription = parts.bus.subscribe(facts::CONSUMER, facts::TOPICS).await?;
        let Parts { db, relay, auth, pages, calendar, directory, shutdown, tasks, .. } = parts;
        let assessment = Assessment {
            writer: Writer::new(db.clone(), relay),
            auth,
            pages,
            calendar,
            directory,
            settings: Arc::new(Rules {
                review_window: chrono::Duration::days(i64::from(settings.review_window_days)),
                recompute_every: Duration::from_secs(settings.recompute_every_seconds),
                min_survey_answers: settings.min_survey_answers,
            }),
        };
        tasks.spawn("assessment.facts", facts::consume(db, subscription, shutdown.clone()));
        if settings.recompute_every_seconds > 0 {
            tasks.spawn("assessment.recompute", recompute_periodically(assessment.clone(), shutdown));
        }
        Ok(Box::new(assessment))
    }
}

/// The settings as the service uses them.
struct Rules {
    review_window: chrono::Duration,
    recompute_every: Duration,
    min_survey_answers: u32,
}

/// The assessment service's state, shared by every request.
#[derive(Clone)]
pub struct Assessment {
    writer: Writer,
    auth: Verifier,
    pages: PageTokens,
    calendar: WorkCalendar,
    directory: civic_kit::directory::Directory,
    settings: Arc<Rules>,
}

/// Computes the current and the previous month of every street with a scheme again, every
/// `recompute_every` (the first pass ten seconds after start, once the facts have come in).
async fn recompute_periodically(assessment: Assessment, shutdown: Shutdown) {
    let mut wait = Duration::from_secs(10);
    loop {
        let stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait() => return,
        }
        wait = assessment.settings.recompute_every;
        let streets = match store::streets_with_schemes(assessment.writer.db().reader()).await {
            Ok(streets) => streets,
            Err(error) => {
                tracing::warn!(%error, "listing the streets to assess failed; trying again at the next pass");
                continue;
            }
        };
        let this = score::Month::of(assessment.calendar.local_day(chrono::Utc::now()));
        for street in streets.iter().filter_map(|s| StreetId::parse("street", s).ok()) {
            for month in [this.previous(), this] {
                let key = civic_kit::idempotency::RequestKey::unkeyed("RecomputeMonth");
                if let Err(error) = assessment.recompute(&key, &street, month).await {
                    tracing::warn!(%error, %street, %month, "computing a month's reviews failed; trying again at the next pass");
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Instance for Assessment {
    fn add_routes(&self, routes: Routes) -> Routes {
        routes.add_service(AssessmentServiceServer::new(self.clone()))
    }

    async fn seed(&self) -> Result<String> {
        let street = StreetId::parse("street", ZHONGJIE_STREET)?;
        self.seed_street(&street).await
    }
}
