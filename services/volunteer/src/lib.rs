//! The volunteer service (群众点单、社区接单): residents place needs, volunteers take them, the
//! community assigns a batch of open needs at once, and confirmed service earns moral-bank
//! points (道德银行) that buy rewards.
//!
//! The domain, with no I/O: [`matching`] (who may take a need, and a score from skills,
//! availability, distance, fair load and continuity, each factor with its reason; the top k of a
//! community), [`assign`] (places given to slots at the minimum total cost, greedy's answer
//! beside it, within a deadline) and [`batch`] (a community's open needs planned at once, settled
//! so that no volunteer is booked twice or past their cap). The store, in the service's own
//! schema ([`MIGRATIONS`]): the [`register`] of volunteers, the needs and the places taken in
//! them ([`claims`]), the [`tasks`] done in them, the moral bank's [`ledger`] and its
//! [`rewards`]; [`pool`] keeps a community's volunteers in memory for matching. The API,
//! `civic.volunteer.v1.VolunteerService`: the register and the alliance's organisations, needs
//! and their lifecycle (with a sweep that gives back places not checked in and expires needs
//! past their end), recommendations and batch assignment, tasks and their confirmation, the
//! bank, the reward catalogue, and the quarterly [`report`] of in-service Party members.
//! [`MODULE`] is its entry in the registry.

#![forbid(unsafe_code)]

mod api;
pub mod assign;
mod assign_api;
mod bank_api;
pub mod batch;
pub mod claims;
pub mod ledger;
mod lock;
pub mod matching;
mod needs;
mod organisations;
pub mod pool;
pub mod register;
pub mod report;
pub mod rewards;
mod rewards_api;
mod seed;
mod seed_work;
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
    Migration {
        version: 7,
        name: "the register's version per street",
        sql: include_str!("../migrations/0007_register_versions.sql"),
    },
    Migration {
        version: 8,
        name: "the social organisations of the alliance",
        sql: include_str!("../migrations/0008_organisations.sql"),
    },
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
    /// How much each factor of a match counts (`volunteer.weights`).
    pub weights: WeightSettings,
    /// How long AssignNeeds searches for the optimum before answering with greedy's plan, in
    /// milliseconds (1 to 60,000), when the request names no deadline.
    pub assign_deadline_ms: u64,
    /// The most places one volunteer is proposed for in one AssignNeeds (1 to 10).
    pub assign_places_per_volunteer: usize,
}

/// The weights of a match's factors, relative to one another (0 to 100 each, not all 0), and
/// the distance from which distance counts nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightSettings {
    /// Skills asked for and had.
    pub skills: u32,
    /// The need's window in the volunteer's free time.
    pub availability: u32,
    /// From home to the need's place.
    pub distance: u32,
    /// Hours this month against the cap.
    pub load: u32,
    /// This household served before.
    pub continuity: u32,
    /// The distance from which distance scores 0, in metres (100 to 100,000).
    pub max_distance_m: u32,
}

impl Default for WeightSettings {
    fn default() -> Self {
        Self { skills: 35, availability: 25, distance: 20, load: 10, continuity: 10, max_distance_m: 5000 }
    }
}

impl WeightSettings {
    /// As matching takes them.
    pub fn weights(&self) -> matching::Weights {
        matching::Weights {
            skills: f64::from(self.skills),
            availability: f64::from(self.availability),
            distance: f64::from(self.distance),
            load: f64::from(self.load),
            continuity: f64::from(self.continuity),
            max_distance_km: f64::from(self.max_distance_m) / 1000.0,
        }
    }
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
            weights: WeightSettings::default(),
            assign_deadline_ms: 10_000,
            assign_places_per_volunteer: 3,
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
        let w = &self.weights;
        for (key, weight) in [
            ("skills", w.skills),
            ("availability", w.availability),
            ("distance", w.distance),
            ("load", w.load),
            ("continuity", w.continuity),
        ] {
            if weight > 100 {
                return Err(bad(&format!("weights.{key}"), "must be 0 to 100"));
            }
        }
        if w.skills + w.availability + w.distance + w.load + w.continuity == 0 {
            return Err(bad("weights", "at least one factor must count"));
        }
        if !(100..=100_000).contains(&w.max_distance_m) {
            return Err(bad("weights.max_distance_m", "must be 100 to 100000"));
        }
        if !(1..=60_000).contains(&self.assign_deadline_ms) {
            return Err(bad("assign_deadline_ms", "must be 1 to 60000"));
        }
        if !(1..=10).contains(&self.assign_places_per_volunteer) {
            return Err(bad("assign_places_per_volunteer", "must be 1 to 10"));
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
    /// How much each factor of a match counts.
    weights: matching::Weights,
    /// AssignNeeds' deadline when the request names none.
    assign_deadline: std::time::Duration,
    /// The most places one volunteer is proposed for at once.
    assign_places: usize,
    /// The streets' approved volunteers, for matching.
    pools: Arc<pool::Pools>,
    /// Reaches the grid service (LocateGrid), as this service.
    directory: civic_kit::directory::Directory,
}

impl Volunteers {
    /// The service over the process's parts.
    pub fn new(parts: Parts, settings: Settings) -> Self {
        let Parts { db, relay, auth, pages, calendar, directory, .. } = parts;
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
            weights: settings.weights.weights(),
            assign_deadline: std::time::Duration::from_millis(settings.assign_deadline_ms),
            assign_places: settings.assign_places_per_volunteer,
            pools: Arc::new(pool::Pools::default()),
            directory,
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
        let (organisations, rewards, needs) = self.seed_work(&street).await?;
        Ok(format!(
            "{added} volunteers, {organisations} organisations, {rewards} rewards and {needs} needs in {}",
            street.parent()
        ))
    }
}
