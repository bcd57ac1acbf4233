//! The issues service: residents' problems from intake to feedback. Issues come from the app,
//! the desk, the hotline, meetings, the city platform's work orders and — through the grid
//! service's events, with no call between the two — the problems raised on visits. Each is
//! placed in its grid (the grid service's LocateGrid), acknowledged, triaged onto one of the
//! street's three lists, worked on or referred to a department, resolved or explained, and
//! rated by the resident; a deadline clock in working time runs throughout, pauses with a
//! reason, and escalates overdue issues to the community's and then the street's leaders.
//! The community's meetings (三会) live here too: their decisions open issues or add to them.
//! [`MODULE`] is its entry in the binary's registry.
//!
//! Who reaches what: a resident the issues they reported (and the public timeline only); a
//! grid worker the issues of the grids their token names (the identity provider issues the
//! `grids` claim from the grid service's assignments: a re-assignment counts from the next
//! token); a department's officer (configured per department) the issues referred to it; a
//! cadre their community (the token's `community`), or the street when the token names none;
//! an admin the street; the city platform (a service named in `issues.platform_services`) the
//! work orders it filed.
#![forbid(unsafe_code)]

mod api;
mod attach;
pub mod domain;
mod intake;
mod meetings;
mod reports;
mod seed;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use civic_kit::auth::Verifier;
use civic_kit::calendar::WorkCalendar;
use civic_kit::config::{ConfigError, Section, Value};
use civic_kit::db::Migration;
use civic_kit::directory::Directory;
use civic_kit::error::Result;
use civic_kit::events::{Bus, Subscription};
use civic_kit::module::{Instance, Module, Parts};
use civic_kit::names::StreetId;
use civic_kit::page::PageTokens;
use civic_kit::server::Shutdown;
use civic_kit::watch::Streams;
use civic_kit::write::Writer;
use civic_proto::grid::VisitRecorded;
use civic_proto::issues::issue_service_server::IssueServiceServer;
use civic_proto::issues::meeting_service_server::MeetingServiceServer;
use serde::{Deserialize, Serialize};
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::domain::{Escalation, LimitRule, Limits, Span};

/// The street the demo data is for.
pub const ZHONGJIE_STREET: &str = "zhongjie";

/// The issues service in the binary's registry of services.
pub static MODULE: IssuesModule = IssuesModule;

/// The issues service's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "issues and their timelines", sql: include_str!("../migrations/0001_issues.sql") },
    Migration { version: 2, name: "meetings", sql: include_str!("../migrations/0002_meetings.sql") },
    Migration { version: 3, name: "photos", sql: include_str!("../migrations/0003_attachments.sql") },
];

/// A department issues are referred to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Department {
    /// Its name as people say it (派出所).
    pub display_name: String,
    /// Its officers' user ids (the tokens' subjects); they also need the role
    /// `department_officer` in the street.
    pub officers: Vec<String>,
}

/// A kind of problem the street takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Category {
    /// Its name as people say it (环境卫生).
    pub display_name: String,
    /// What it covers.
    pub description: String,
    /// Whether its issues are on the public board (ListIssueReports without a token, Open311
    /// without an API key): problems of shared spaces only, never a household's.
    pub public: bool,
    /// Words residents use for it.
    pub keywords: Vec<String>,
}

/// The issues service's own settings, `[issues]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The time to answer and to resolve, by source and category; the most specific rule wins.
    pub limits: Vec<LimitRule>,
    /// How long after a missed deadline an issue still open goes up to the street's leaders
    /// (`16h` of office hours, `2d` working days).
    pub escalate_to_street_after: String,
    /// The departments issues are referred to, by id (`police`).
    pub departments: BTreeMap<String, Department>,
    /// The kinds of problem the street takes, by id (`environment`): what apps and Open311
    /// clients offer. Issues of other categories are still taken (a visit may raise anything);
    /// they are never on the public board.
    pub categories: BTreeMap<String, Category>,
    /// The services that file work orders of the city platform (service tokens' `service`).
    pub platform_services: Vec<String>,
    /// How near an open issue of the same category must be to be suggested as a duplicate, in
    /// metres (1 to 5000).
    pub duplicate_radius_metres: f64,
    /// How recent it must be, in days (1 to 365).
    pub duplicate_window_days: u32,
    /// How long a resolved issue waits for the resident's feedback before it closes, in days.
    pub feedback_days: u32,
    /// How long intake waits for the grid service to place a location, in milliseconds; an
    /// issue is placed later when it does not answer in time.
    pub locate_timeout_ms: u64,
    /// How often overdue issues are escalated, revisit dates and unrated issues handled, and
    /// unplaced issues placed, in seconds.
    pub sweep_every_seconds: u64,
    /// How many issues `civic seed` puts in the demo street (0 to 5000).
    pub demo_issues: usize,
    /// The largest photo taken, in bytes (64 KiB to 3 MiB; over HTTP/JSON the gateway's 1 MiB
    /// body holds about 750 KB of image).
    pub max_attachment_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        let rule = |source: &str, category: &str, respond: &str, resolve: &str| LimitRule {
            source: source.into(),
            category: category.into(),
            respond: respond.into(),
            resolve: resolve.into(),
        };
        let department = |name: &str| Department { display_name: name.into(), officers: Vec::new() };
        let category = |name: &str, description: &str, public: bool, keywords: &[&str]| Category {
            display_name: name.into(),
            description: description.into(),
            public,
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        };
        Self {
            limits: vec![
                rule("*", "*", "1d", "5d"),
                rule("city_platform", "*", "2h", "3d"),
                rule("hotline", "*", "4h", "5d"),
                rule("*", "safety", "2h", "1d"),
            ],
            escalate_to_street_after: "2d".into(),
            departments: BTreeMap::from([
                ("police".into(), department("派出所")),
                ("judicial".into(), department("司法所")),
                ("health".into(), department("社区卫生服务中心")),
            ]),
            categories: BTreeMap::from([
                (
                    "environment".into(),
                    category("环境卫生", "楼道杂物、垃圾清运、绿化等公共环境问题", true, &["垃圾", "杂物", "卫生"]),
                ),
                (
                    "facilities".into(),
                    category("设施维修", "路灯、门禁、道路、健身器材等公共设施损坏", true, &["路灯", "门禁", "维修"]),
                ),
                ("safety".into(), category("安全隐患", "消防、用电、燃气等安全隐患", false, &["消防", "充电", "燃气"])),
                (
                    "neighbour_dispute".into(),
                    category("邻里纠纷", "邻里之间的矛盾纠纷，需要调解", false, &["纠纷", "调解", "漏水"]),
                ),
                (
                    "welfare".into(),
                    category("政策咨询", "津贴、补助、社保等政策的咨询和办理", false, &["津贴", "补助"]),
                ),
                (
                    "elderly_care".into(),
                    category("养老服务", "助餐、助洁、上门照护等养老服务需求", false, &["助餐", "养老"]),
                ),
            ]),
            platform_services: vec!["city_platform".into()],
            duplicate_radius_metres: 100.0,
            duplicate_window_days: 30,
            feedback_days: 7,
            locate_timeout_ms: 1000,
            sweep_every_seconds: 60,
            demo_issues: 300,
            max_attachment_bytes: 1 << 20,
        }
    }
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: format!("issues.{key}"), message: message.into() }
}

impl Settings {
    fn check(self) -> std::result::Result<Self, ConfigError> {
        Limits::new(&self.limits).map_err(|m| bad("limits", m))?;
        if Span::parse(&self.escalate_to_street_after).is_none() {
            return Err(bad("escalate_to_street_after", "must be a span such as 16h or 2d"));
        }
        for (id, department) in &self.departments {
            if !civic_kit::names::is_valid_id(id) {
                return Err(bad("departments", format!("{id:?} is not an id: lowercase letters, digits and -")));
            }
            if department.officers.len() > 1000 {
                return Err(bad(&format!("departments.{id}.officers"), "at most 1000 officers"));
            }
        }
        if self.categories.len() > 100 {
            return Err(bad("categories", "at most 100 categories"));
        }
        for (id, category) in &self.categories {
            let key = format!("categories.{id}");
            if !domain::is_category(id) {
                return Err(bad("categories", format!("{id:?} is not a category id: lowercase letters, digits and _")));
            }
            if category.display_name.trim().is_empty() || category.display_name.chars().count() > 100 {
                return Err(bad(&format!("{key}.display_name"), "is required, at most 100 characters"));
            }
            if category.description.chars().count() > 1000 {
                return Err(bad(&format!("{key}.description"), "at most 1000 characters"));
            }
            if category.keywords.len() > 20 || category.keywords.iter().any(|k| k.is_empty() || k.chars().count() > 40)
            {
                return Err(bad(&format!("{key}.keywords"), "at most 20 words of 1 to 40 characters"));
            }
        }
        if self.departments.len() > 100 {
            return Err(bad("departments", "at most 100 departments"));
        }
        if !(1.0..=5000.0).contains(&self.duplicate_radius_metres) {
            return Err(bad("duplicate_radius_metres", "must be 1 to 5000"));
        }
        if !(1..=365).contains(&self.duplicate_window_days) {
            return Err(bad("duplicate_window_days", "must be 1 to 365"));
        }
        if !(1..=90).contains(&self.feedback_days) {
            return Err(bad("feedback_days", "must be 1 to 90"));
        }
        if !(10..=30_000).contains(&self.locate_timeout_ms) {
            return Err(bad("locate_timeout_ms", "must be 10 to 30000"));
        }
        if !(1..=3600).contains(&self.sweep_every_seconds) {
            return Err(bad("sweep_every_seconds", "must be 1 to 3600"));
        }
        if !((64 << 10)..=(3 << 20)).contains(&self.max_attachment_bytes) {
            return Err(bad("max_attachment_bytes", "must be 65536 to 3145728"));
        }
        if self.demo_issues > 5000 {
            return Err(bad("demo_issues", "must be at most 5000"));
        }
        Ok(self)
    }
}

/// The issues service as a module of the binary.
#[derive(Debug)]
pub struct IssuesModule;

#[tonic::async_trait]
impl Module for IssuesModule {
    fn name(&self) -> &'static str {
        "issues"
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[<IssueServiceServer<Issues> as NamedService>::NAME, <MeetingServiceServer<Issues> as NamedService>::NAME]
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
        let visits = parts.bus.subscribe(intake::CONSUMER, &[<VisitRecorded as civic_proto::Event>::TOPIC]).await?;
        Ok(Box::new(Issues::new(parts, settings, visits)))
    }
}

/// The issues service's state, shared by every request.
#[derive(Clone)]
pub struct Issues {
    writer: Writer,
    auth: Verifier,
    pages: PageTokens,
    directory: Directory,
    calendar: WorkCalendar,
    bus: Bus,
    streams: Streams,
    shutdown: Shutdown,
    rules: Arc<Rules>,
}

/// The settings as the rules use them.
struct Rules {
    limits: Limits,
    escalation: Escalation,
    departments: BTreeMap<String, Department>,
    categories: BTreeMap<String, Category>,
    platform_services: Vec<String>,
    duplicate_radius_metres: f64,
    duplicate_window: chrono::Duration,
    feedback_wait: chrono::Duration,
    locate_timeout: Duration,
    sweep_every: Duration,
    demo_issues: usize,
    max_attachment_bytes: usize,
}

impl Issues {
    /// The service over the process's parts, with its tasks: the consumer of visits, and the
    /// sweep (escalation, revisits, unrated issues, placing issues the grid service could not).
    pub fn new(parts: Parts, settings: Settings, visits: Subscription) -> Self {
        let Parts { db, relay, auth, pages, bus, directory, calendar, shutdown, tasks, streams, .. } = parts;
        let rules = Rules {
            limits: Limits::new(&settings.limits).unwrap_or_else(|_| Limits::new(&[]).expect("no rules")),
            escalation: Escalation {
                to_street: Span::parse(&settings.escalate_to_street_after).unwrap_or(Span::Days(2)),
            },
            departments: settings.departments,
            categories: settings.categories,
            platform_services: settings.platform_services,
            duplicate_radius_metres: settings.duplicate_radius_metres,
            duplicate_window: chrono::Duration::days(i64::from(settings.duplicate_window_days)),
            feedback_wait: chrono::Duration::days(i64::from(settings.feedback_days)),
            locate_timeout: Duration::from_millis(settings.locate_timeout_ms),
            sweep_every: Duration::from_secs(settings.sweep_every_seconds),
            demo_issues: settings.demo_issues,
            max_attachment_bytes: settings.max_attachment_bytes,
        };
        let issues = Self {
            writer: Writer::new(db, relay),
            auth,
            pages,
            directory,
            calendar,
            bus,
            streams,
            shutdown: shutdown.clone(),
            rules: Arc::new(rules),
        };
        tasks.spawn("issues.visits", intake::consume_visits(issues.clone(), visits, shutdown.clone()));
        tasks.spawn("issues.sweep", intake::sweep(issues.clone(), shutdown));
        issues
    }
}

#[tonic::async_trait]
impl Instance for Issues {
    fn add_routes(&self, routes: Routes) -> Routes {
        routes.add_service(IssueServiceServer::new(self.clone())).add_service(MeetingServiceServer::new(self.clone()))
    }

    async fn seed(&self) -> Result<String> {
        let street = StreetId::parse("street", ZHONGJIE_STREET)?;
        self.seed_street(&street).await
    }
}
