//! The volunteer service (群众点单、社区接单): residents place needs, volunteers take them, the
//! community assigns a batch of open needs at once, and confirmed service earns moral-bank
//! points.
//!
//! Built so far: the matching at its core, as plain domain code with no I/O —
//! [`matching`] (who may take a need, and a score from skills, availability, distance, fair load
//! and continuity, each factor with its reason; the top k of a street's volunteers), [`assign`]
//! (places given to slots at the minimum total cost, with greedy's answer beside it and a
//! deadline) and [`batch`] (a community's open needs planned at once, settled so that no
//! volunteer is booked twice or past their cap) — and
//! in the service's own schema ([`MIGRATIONS`]) the moral bank's [`ledger`] and its
//! [`rewards`], the places
//! volunteers take in needs ([`claims`]) and the [`tasks`] done in them (check-out, the two
//! confirmations, the points). The API serves the register of volunteers so far
//! (`VolunteerService`): a resident registers themselves and the community approves; a cadre
//! sees and manages their community's volunteers, an admin the street's. Needs, claims, tasks,
//! the bank and batch assignment reach the API next. [`MODULE`] is its entry in the registry.

#![forbid(unsafe_code)]

mod api;
pub mod assign;
mod bank_api;
pub mod batch;
pub mod claims;
pub mod ledger;
mod lock;
pub mod matching;
mod needs;
pub mod register;
pub mod rewards;
mod seed;
mod sweep;
pub mod tasks;
mod tasks_api;

use std::collections::BTreeMap;
use std::sync::Arc;

use civic_kit::auth::Verifier;
use civic_kit::config::{ConfigError, Section, Value};
use civic_kit::db::Migration;
use civic_kit::error::Result;
use civic_kit::module::{Instance, Module, Parts};
use civic_kit::names::StreetId;
use civic_kit::page::PageTokens;
use civic_kit::write::Writer;
use civic_proto::volunteer::volunteer_service_server::VolunteerServiceServer;
use serde::{Deserialize, Serialize};
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::register::Vocabulary;

/// The street the demo data is for.
pub const ZHONGJIE_STREET: &str = "zhongjie";

/// The volunteer service in the binary's registry of services.
pub static MODULE: VolunteerModule = VolunteerModule;

/// The volunteer service's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "the moral bank's ledger", sql: include_str!("../migrations/0001_ledger.sql") },
    Migration { version: 2, name: "needs and their claims", sql: include_str!("../migrations/0002_needs.sql") },
    Migration { version: 3, name: "the reward catalogue", sql: include_str!("../migrations/0003_rewards.sql") },
    Migration {
        version: 4,
        name: "the register of volunteers",
        sql: include_str!("../migrations/0004_volunteers.sql"),
    },
    Migration {
        version: 5,
        name: "needs as the API gives them",
        sql: include_str!("../migrations/0005_need_bodies.sql"),
    },
    Migration { version: 6, name: "residents' ratings of tasks", sql: include_str!("../migrations/0006_ratings.sql") },
];

/// The volunteer service's own settings, `[volunteer]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The skills volunteers list and needs ask for, by id (`elder_care`), with their names.
    pub skills: BTreeMap<String, String>,
    /// The monthly hours cap of a volunteer who sets none (1 to 200).
    pub default_monthly_hours_cap: u32,
    /// How many volunteers `civic seed` registers in the demo street (0 to 2000).
    pub demo_volunteers: usize,
    /// How long after a need starts a volunteer who took a place has to check in before the
    /// place is given back, in minutes (5 to 1440).
    pub check_in_grace_minutes: u32,
    /// Moral-bank points per hour of confirmed service, by kind of need (`MICRO_WISH`,
    /// `ONE_ON_ONE`, `ACTIVITY`; 0 to 1000): pro rata, rounded up to a whole point.
    pub points_per_hour: BTreeMap<String, i64>,
    /// How often stale claims are given back and needs past their end expire, in seconds (1 to
    /// 3600).
    pub sweep_every_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let skills = [
            ("elder_care", "助老服务"),
            ("companionship", "陪伴聊天"),
            ("cooking", "助餐"),
            ("cleaning", "环境清洁"),
            ("repair", "家电维修"),
            ("tutoring", "课业辅导"),
            ("first_aid", "应急救护"),
            ("legal_aid", "法律咨询"),
            ("mediation", "矛盾调解"),
            ("culture_sport", "文体活动"),
        ];
        Self {
            skills: skills.iter().map(|(id, name)| ((*id).to_owned(), (*name).to_owned())).collect(),
            default_monthly_hours_cap: 20,
            demo_volunteers: 240,
            check_in_grace_minutes: 30,
            points_per_hour: [("MICRO_WISH", 10), ("ONE_ON_ONE", 10), ("ACTIVITY", 8)]
                .iter()
                .map(|(kind, points)| ((*kind).to_owned(), *points))
                .collect(),
            sweep_every_seconds: 60,
        }
    }
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: format!("volunteer.{key}"), message: message.into() }
}

impl Settings {
    fn check(self) -> std::result::Result<Self, ConfigError> {
        if self.skills.len() > 200 {
            return Err(bad("skills", "at most 200 skills"));
        }
        for (id, name) in &self.skills {
            let valid = !id.is_empty()
                && id.len() <= 40
                && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(bad(
                    "skills",
                    format!("{id:?} is not a skill id: 1 to 40 lowercase letters, digits and _"),
                ));
            }
            if name.trim().is_empty() || name.chars().count() > 50 {
                return Err(bad(&format!("skills.{id}"), "a name of 1 to 50 characters"));
            }
        }
        if !(1..=200).contains(&self.default_monthly_hours_cap) {
            return Err(bad("default_monthly_hours_cap", "must be 1 to 200"));
        }
        if self.demo_volunteers > 2000 {
            return Err(bad("demo_volunteers", "must be at most 2000"));
        }
        if !(5..=1440).contains(&self.check_in_grace_minutes) {
            return Err(bad("check_in_grace_minutes", "must be 5 to 1440"));
        }
        for (kind, points) in &self.points_per_hour {
            if civic_proto::volunteer::need::Kind::from_str_name(kind).is_none_or(|k| k as i32 == 0) {
                return Err(bad(
                    "points_per_hour",
                    format!("{kind:?} is not a kind of need: MICRO_WISH, ONE_ON_ONE, ACTIVITY"),
                ));
            }
            if !(0..=1000).contains(points) {
                return Err(bad(&format!("points_per_hour.{kind}"), "must be 0 to 1000"));
            }
        }
        if !(1..=3600).contains(&self.sweep_every_seconds) {
            return Err(bad("sweep_every_seconds", "must be 1 to 3600"));
        }
        Ok(self)
    }
}

/// The volunteer service as a module of the binary.
#[derive(Debug)]
pub struct VolunteerModule;

#[tonic::async_trait]
impl Module for VolunteerModule {
    fn name(&self) -> &'static str {
        "volunteer"
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[<VolunteerServiceServer<Volunteers> as NamedService>::NAME]
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
        let (tasks, shutdown) = (parts.tasks.clone(), parts.shutdown.clone());
        let every = std::time::Duration::from_secs(settings.sweep_every_seconds);
        let volunteers = Volunteers::new(parts, settings);
        tasks.spawn("volunteer.sweep", sweep::run(volunteers.clone(), every, shutdown));
        Ok(Box::new(volunteers))
    }
}

/// The volunteer service's state, shared by every request.
#[derive(Clone)]
pub struct Volunteers {
    writer: Writer,
    auth: Verifier,
    pages: PageTokens,
    vocabulary: Arc<Vocabulary>,
    demo_volunteers: usize,
    check_in_grace: chrono::Duration,
    points_per_hour: Arc<BTreeMap<String, i64>>,
    /// The street's time zone (its calendar's), for months.
    zone: chrono::FixedOffset,
}

impl Volunteers {
    /// The service over the process's parts.
    pub fn new(parts: Parts, settings: Settings) -> Self {
        let Parts { db, relay, auth, pages, calendar, .. } = parts;
        let cap = i32::try_from(settings.default_monthly_hours_cap).unwrap_or(20);
        Self {
            writer: Writer::new(db, relay),
            auth,
            pages,
            vocabulary: Arc::new(Vocabulary { skills: settings.skills, default_cap: cap }),
            demo_volunteers: settings.demo_volunteers,
            check_in_grace: chrono::Duration::minutes(i64::from(settings.check_in_grace_minutes)),
            points_per_hour: Arc::new(settings.points_per_hour),
            zone: calendar.offset(),
        }
    }
}

#[tonic::async_trait]
impl Instance for Volunteers {
    fn add_routes(&self, routes: Routes) -> Routes {
        routes.add_service(VolunteerServiceServer::new(self.clone()))
    }

    async fn seed(&self) -> Result<String> {
        let street = StreetId::parse("street", ZHONGJIE_STREET)?;
        let added = self.seed_street(&street).await?;
        Ok(format!("{added} volunteers in {}", street.parent()))
    }
}
