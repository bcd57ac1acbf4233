//! The grid service: a street's communities and grids on the map and which grid a point lies
//! in, the household roster with residents' ID numbers and phones sealed and masked, and grid
//! workers' door-to-door visits with what is due. [`MODULE`] is its entry in the binary's
//! registry.
//!
//! Who reaches what: a street admin the whole street; a cadre their community (the token's
//! `community`), or the street when the token names none (the street office's cadres); a grid
//! worker the grids this service assigns them, and a grid they cover only within the cover's
//! dates; a resident their own household (a resident record linked to their account). The
//! token's `grids` claim is not read here: assignments live in this service, so a re-assignment
//! takes effect at once, without new tokens.
#![forbid(unsafe_code)]

mod api;
pub mod domain;
pub mod geometry;
mod map;
pub mod protect;
mod seed;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use civic_kit::auth::Verifier;
use civic_kit::config::{ConfigError, Section, Value};
use civic_kit::db::{Backend, Migration};
use civic_kit::error::Result;
use civic_kit::events::{Bus, Subscription};
use civic_kit::module::{Instance, Module, Parts};
use civic_kit::names::StreetId;
use civic_kit::page::PageTokens;
use civic_kit::server::Shutdown;
use civic_kit::write::Writer;
use civic_proto::grid::GridBoundaryChanged;
use civic_proto::grid::grid_service_server::GridServiceServer;
use civic_proto::grid::roster_service_server::RosterServiceServer;
use civic_proto::grid::visit_service_server::VisitServiceServer;
use civic_proto::issues::IssueCreated;
use serde::{Deserialize, Serialize};
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::domain::{PolicyRule, TagSets, VisitPolicy};
use crate::protect::Keyring;

pub use seed::ZHONGJIE_STREET;

/// The grid service in the binary's registry of services.
pub static MODULE: GridModule = GridModule;

/// The grid service's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "communities and grids", sql: include_str!("../migrations/0001_map.sql") },
    Migration { version: 2, name: "the roster", sql: include_str!("../migrations/0002_roster.sql") },
    Migration { version: 3, name: "visits", sql: include_str!("../migrations/0003_visits.sql") },
    Migration {
        version: 4,
        name: "contact cards, stations and monthly summaries",
        sql: include_str!("../migrations/0004_cards_and_summaries.sql"),
    },
];

/// The grid service's own settings, `[grid]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The keys that seal residents' ID numbers and phones (AES-256-GCM), by key id: each 32
    /// bytes as 64 hex digits or base64. Keep old keys after a rotation: values sealed with
    /// them stay readable. Empty on the embedded store: a key is made in the data directory.
    pub data_keys: BTreeMap<String, String>,
    /// The key id that seals new values.
    pub active_data_key: String,
    /// The key of the look-up hashes (HMAC-SHA256) that find residents by ID number or phone,
    /// 32 bytes as hex or base64. It never rotates: changing it loses every look-up.
    pub lookup_key: String,
    /// The key-group tags streets may use (unless a street has its own set).
    pub tags: Vec<String>,
    /// Streets' own tag sets, by street id.
    pub street_tags: BTreeMap<String, Vec<String>>,
    /// How often households with a tag must be visited.
    pub visit_policy: Vec<PolicyRule>,
    /// How often other households must be visited, in days.
    pub default_visit_days: u32,
    /// The largest share of the smaller of two grids of a street that they may have in common
    /// (0 to 0.2): drawings by hand leave slivers along shared edges.
    pub overlap_tolerance: f64,
    /// How long full reads of personal data stay in the access log, in days.
    pub access_log_retention_days: u32,
    /// How long a removed resident's record is kept before it is purged, in days.
    pub removed_resident_retention_days: u32,
    /// How many fictional households `civic seed` puts in the demo street (0 to 100,000).
    pub demo_households: usize,
}

impl Default for Settings {
    fn default() -> Self {
        let tags = [
            "elderly_alone",
            "empty_nest_elderly",
            "disabled",
            "low_income",
            "left_behind_child",
            "veteran",
            "senior_party_member",
            "serious_illness",
        ];
        let rule = |tag: &str, every_days| PolicyRule { tag: tag.into(), every_days };
        Self {
            data_keys: BTreeMap::new(),
            active_data_key: String::new(),
            lookup_key: String::new(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            street_tags: BTreeMap::new(),
            visit_policy: vec![
                rule("elderly_alone", 7),
                rule("disabled", 14),
                rule("left_behind_child", 14),
                rule("serious_illness", 14),
                rule("empty_nest_elderly", 14),
                rule("low_income", 30),
                rule("veteran", 30),
                rule("senior_party_member", 30),
            ],
            default_visit_days: 90,
            overlap_tolerance: 0.01,
            access_log_retention_days: 3 * 365,
            removed_resident_retention_days: 365,
            demo_households: 12_000,
        }
    }
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: format!("grid.{key}"), message: message.into() }
}

impl Settings {
    fn check(self) -> Result<Self, ConfigError> {
        if !self.data_keys.is_empty() || !self.active_data_key.is_empty() || !self.lookup_key.is_empty() {
            self.configured_keyring()?;
        }
        let tag_ok = |t: &String| {
            !t.is_empty()
                && t.len() <= 40
                && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        for (key, set) in std::iter::once(("tags".to_owned(), &self.tags))
            .chain(self.street_tags.iter().map(|(s, set)| (format!("street_tags.{s}"), set)))
        {
            if let Some(t) = set.iter().find(|t| !tag_ok(t)) {
                return Err(bad(&key, format!("{t:?} is not a tag: 1 to 40 lowercase letters, digits or _")));
            }
            if set.len() > 50 {
                return Err(bad(&key, "at most 50 tags"));
            }
        }
        for rule in &self.visit_policy {
            if rule.every_days == 0 || rule.every_days > 366 {
                return Err(bad("visit_policy", format!("{}: every_days must be 1 to 366", rule.tag)));
            }
        }
        if self.default_visit_days == 0 || self.default_visit_days > 366 {
            return Err(bad("default_visit_days", "must be 1 to 366"));
        }
        if !(0.0..=0.2).contains(&self.overlap_tolerance) {
            return Err(bad("overlap_tolerance", "must be 0 to 0.2"));
        }
        if self.access_log_retention_days == 0 || self.removed_resident_retention_days == 0 {
            return Err(bad("access_log_retention_days", "retention periods must be at least one day"));
        }
        if self.demo_households > 100_000 {
            return Err(bad("demo_households", "must be at most 100000"));
        }
        Ok(self)
    }

    /// The keyring the settings name; an error names the key at fault.
    fn configured_keyring(&self) -> Result<Keyring, ConfigError> {
        if self.data_keys.is_empty() {
            return Err(bad("data_keys", "name at least one key when the active key or the look-up key is set"));
        }
        if self.lookup_key.is_empty() {
            return Err(bad("lookup_key", "is required with data_keys"));
        }
        Keyring::new(&self.data_keys, &self.active_data_key, &self.lookup_key)
            .map_err(|e| bad("data_keys", e.to_string()))
    }

    /// The settings as `civic config` prints them: keys shown as set, never their values.
    fn printable(&self) -> Self {
        let hide = |s: &String| if s.is_empty() { String::new() } else { "(set)".to_owned() };
        Self {
            data_keys: self.data_keys.iter().map(|(id, k)| (id.clone(), hide(k))).collect(),
            lookup_key: hide(&self.lookup_key),
            ..self.clone()
        }
    }
}

/// The grid service as a module of the binary.
#[derive(Debug)]
pub struct GridModule;

#[tonic::async_trait]
impl Module for GridModule {
    fn name(&self) -> &'static str {
        "grid"
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[
            <GridServiceServer<Grids> as NamedService>::NAME,
            <RosterServiceServer<Grids> as NamedService>::NAME,
            <VisitServiceServer<Grids> as NamedService>::NAME,
        ]
    }

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    fn settings(&self, section: &Section) -> Result<Value, ConfigError> {
        let settings = section.extract::<Settings>()?.check()?;
        Value::serialize(settings.printable()).map_err(|e| bad("", e.to_string()))
    }

    async fn build(&self, parts: Parts) -> Result<Box<dyn Instance>> {
        let settings = parts.section.extract::<Settings>().map_err(civic_kit::Error::internal)?;
        let keyring = if !settings.data_keys.is_empty() {
            settings.configured_keyring().map_err(civic_kit::Error::internal)?
        } else if parts.db.backend() == Backend::Sqlite {
            // The embedded store keeps its key beside its data; see docs/security.md.
            let secret =
                civic_kit::config::local_key(&parts.data_dir, "grid-data.key").map_err(civic_kit::Error::internal)?;
            tracing::info!("residents' personal data sealed with the installation's own key (grid-data.key)");
            Keyring::from_secret(&secret)
        } else {
            return Err(civic_kit::Error::internal(std::io::Error::other(
                "grid.data_keys, grid.active_data_key and grid.lookup_key must be set: on PostgreSQL the grid \
                 service keeps no local key to seal residents' ID numbers and phones",
            )));
        };
        // Subscribed before the process's relays start, so no event passes the consumer by.
        let issue_links = parts.bus.subscribe(LINKS, &[<IssueCreated as civic_proto::Event>::TOPIC]).await?;
        Ok(Box::new(Grids::new(parts, &settings, keyring, issue_links)))
    }
}

/// The grid service's state, shared by every request.
#[derive(Clone)]
pub struct Grids {
    writer: Writer,
    auth: Verifier,
    pages: PageTokens,
    keyring: Arc<Keyring>,
    maps: Arc<map::Maps>,
    tags: Arc<TagSets>,
    policy: Arc<VisitPolicy>,
    overlap_tolerance: f64,
    demo_households: usize,
}

impl Grids {
    /// The service over the process's parts. Its maps follow boundary changes from events, and
    /// a task purges the access log and removed residents after their retention periods.
    pub fn new(parts: Parts, settings: &Settings, keyring: Keyring, issue_links: Subscription) -> Self {
        let Parts { db, relay, auth, pages, bus, shutdown, tasks, .. } = parts;
        let maps = Arc::new(map::Maps::default());
        tasks.spawn("grid.maps", forget_redrawn_streets(bus.clone(), maps.clone(), shutdown.clone()));
        let retention = (
            chrono::Duration::days(i64::from(settings.access_log_retention_days)),
            chrono::Duration::days(i64::from(settings.removed_resident_retention_days)),
        );
        let writer = Writer::new(db, relay);
        let links = civic_kit::events::consume(
            writer.db().clone(),
            issue_links,
            LINKS,
            link_handler(),
            20,
            shutdown.clone().wait(),
        );
        tasks.spawn("grid.issue_links", links);
        tasks.spawn("grid.purge", purge(writer.clone(), retention, shutdown));
        Self {
            writer,
            auth,
            pages,
            keyring: Arc::new(keyring),
            maps,
            tags: Arc::new(TagSets::new(settings.tags.clone(), settings.street_tags.clone())),
            policy: Arc::new(VisitPolicy::new(settings.visit_policy.clone(), settings.default_visit_days)),
            overlap_tolerance: settings.overlap_tolerance,
            demo_households: settings.demo_households,
        }
    }
}

#[tonic::async_trait]
impl Instance for Grids {
    fn add_routes(&self, routes: Routes) -> Routes {
        routes
            .add_service(GridServiceServer::new(self.clone()))
            .add_service(RosterServiceServer::new(self.clone()))
            .add_service(VisitServiceServer::new(self.clone()))
    }

    async fn seed(&self) -> Result<String> {
        let street = StreetId::parse("street", ZHONGJIE_STREET)?;
        self.seed_street(&street).await
    }
}

/// Drops a street's map when one of its boundaries changes (here or on another replica), until
/// shutdown. A feed that falls behind is opened again, and every map is dropped then: a change
/// may have been missed.
async fn forget_redrawn_streets(bus: Bus, maps: Arc<map::Maps>, shutdown: Shutdown) {
    loop {
        let Ok(mut listener) = bus.listen("grid.grid.").await else {
            let stop = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = stop.wait() => return,
            }
        };
        maps.forget_all();
        loop {
            let stop = shutdown.clone();
            let event = tokio::select! {
                event = listener.recv() => event,
                _ = stop.wait() => return,
            };
            let Some(event) = event else { break };
            if let Some(changed) = event.decode::<GridBoundaryChanged>()
                && let Ok(grid) = domain::GridName::parse("grid", &changed.grid)
            {
                maps.forget(grid.street());
            }
        }
    }
}

/// The consumer that links each visit's problem to the issue the issues service opened for it
/// (its "issue created" events), applied once per event in the grid's own database.
const LINKS: &str = "grid";

/// The handler of the [`LINKS`] consumer: issues opened from a visit's problem only (the
/// others pass by without a transaction).
fn link_handler() -> impl civic_kit::events::Handler {
    fn from_visit(event: &civic_kit::events::Event) -> Option<(domain::VisitName, usize, String)> {
        let created = event.decode::<IssueCreated>()?;
        if created.visit.is_empty() {
            return None;
        }
        let visit = domain::VisitName::parse("visit", &created.visit).ok()?;
        let index = usize::try_from(created.visit_problem).ok()?;
        Some((visit, index, created.issue))
    }
    civic_kit::events::only(
        |event| from_visit(event).is_some(),
        |tx, event| {
            Box::pin(async move {
                let Some((visit, index, issue)) = from_visit(event) else { return Ok(()) };
                store::link_problem(tx, &visit, index, &issue, &civic_kit::time::now_text()).await?;
                Ok(())
            })
        },
    )
}

/// Deletes what has outlived its retention, every hour, a thousand rows at a time.
async fn purge(writer: Writer, (access, removed): (chrono::Duration, chrono::Duration), shutdown: Shutdown) {
    loop {
        let stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.wait() => return,
        }
        let now = chrono::Utc::now();
        let before = civic_kit::time::to_text(now - access);
        let removed_before = civic_kit::time::to_text(now - removed);
        loop {
            match store::purge(writer.db().writer(), &before, &removed_before, 1000).await {
                Ok(0) => break,
                Ok(n) => tracing::info!(rows = n, "purged personal data past its retention"),
                Err(error) => {
                    tracing::warn!(%error, "purging personal data failed; trying again next hour");
                    break;
                }
            }
        }
    }
}
