//! The catalogue service: the street's service items (six categories, three handling modes),
//! their published revisions, search, the live feed behind the service hall's screen, and the
//! one-window reception desk. [`MODULE`] is its entry in the binary's registry.
#![forbid(unsafe_code)]

mod api;
mod cache;
pub mod desk;
pub mod domain;
pub mod search;
mod seed;
mod store;

use std::sync::Arc;
use std::time::Duration;

use civic_kit::auth::Verifier;
use civic_kit::calendar::WorkCalendar;
use civic_kit::config::{ConfigError, Section, Value};
use civic_kit::db::Migration;
use civic_kit::error::Result;
use civic_kit::events::Bus;
use civic_kit::module::{Instance, Module, Parts};
use civic_kit::names::StreetId;
use civic_kit::page::PageTokens;
use civic_kit::server::Shutdown;
use civic_kit::write::Writer;
use civic_proto::catalogue::catalogue_service_server::CatalogueServiceServer;
use civic_proto::catalogue::desk_service_server::DeskServiceServer;
use civic_proto::catalogue::{ServiceItemChanged, ServiceItemPublished, ServiceItemRetired};
use serde::{Deserialize, Serialize};
use tonic::server::NamedService;
use tonic::service::Routes;

pub use seed::{ZHONGJIE, ZHONGJIE_STREET};

/// The catalogue in the binary's registry of services.
pub static MODULE: CatalogueModule = CatalogueModule;

/// The catalogue's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "items and revisions", sql: include_str!("../migrations/0001_items.sql") },
    Migration { version: 2, name: "the reception desk", sql: include_str!("../migrations/0002_desk.sql") },
];

/// The catalogue's own settings, `[catalogue]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How long a replica may serve an item from memory without hearing of a change to it, in
    /// milliseconds: the longest another replica's change takes to show on this one.
    pub item_cache_ttl_ms: u64,
    /// How many items a replica keeps in memory at most.
    pub item_cache_entries: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self { item_cache_ttl_ms: 1000, item_cache_entries: 10_000 }
    }
}

impl Settings {
    fn check(self) -> Result<Self, ConfigError> {
        if self.item_cache_entries == 0 {
            return Err(ConfigError {
                key: "catalogue.item_cache_entries".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(self)
    }
}

/// The catalogue as a module of the binary.
#[derive(Debug)]
pub struct CatalogueModule;

#[tonic::async_trait]
impl Module for CatalogueModule {
    fn name(&self) -> &'static str {
        "catalogue"
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &[
            <CatalogueServiceServer<Catalogue> as NamedService>::NAME,
            <DeskServiceServer<Catalogue> as NamedService>::NAME,
        ]
    }

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    fn settings(&self, section: &Section) -> Result<Value, ConfigError> {
        section.extract::<Settings>()?.check()?;
        section.effective::<Settings>()
    }

    async fn build(&self, parts: Parts) -> Result<Box<dyn Instance>> {
        let settings = parts.section.extract::<Settings>().map_err(civic_kit::Error::internal)?;
        Ok(Box::new(Catalogue::new(parts, &settings)))
    }
}

/// The catalogue's state, shared by every request.
#[derive(Clone)]
pub struct Catalogue {
    writer: Writer,
    auth: Verifier,
    pages: PageTokens,
    bus: Bus,
    calendar: WorkCalendar,
    shutdown: Shutdown,
    streams: civic_kit::watch::Streams,
    items: Arc<cache::ItemCache>,
}

impl Catalogue {
    /// The service over the process's parts. It keeps its cache fresh from change events in a
    /// task of `parts.tasks`.
    pub fn new(parts: Parts, settings: &Settings) -> Self {
        let Parts { db, relay, auth, pages, bus, calendar, shutdown, tasks, streams, .. } = parts;
        let ttl = Duration::from_millis(settings.item_cache_ttl_ms);
        let items = Arc::new(cache::ItemCache::new(ttl, settings.item_cache_entries));
        tasks.spawn("catalogue.item-cache", forget_changed_items(bus.clone(), items.clone(), shutdown.clone()));
        Self { writer: Writer::new(db, relay), auth, pages, bus, calendar, shutdown, streams, items }
    }
}

#[tonic::async_trait]
impl Instance for Catalogue {
    fn add_routes(&self, routes: Routes) -> Routes {
        routes.add_service(CatalogueServiceServer::new(self.clone())).add_service(DeskServiceServer::new(self.clone()))
    }

    async fn seed(&self) -> Result<String> {
        let street = StreetId::parse("street", ZHONGJIE_STREET)?;
        let added = self.seed(&street, ZHONGJIE).await?;
        Ok(format!("{added} service items in {}", street.parent()))
    }
}

/// Drops cached items that changed, as each change's event arrives (from this replica or
/// another), until shutdown. A feed that falls behind is opened again.
async fn forget_changed_items(bus: Bus, items: Arc<cache::ItemCache>, shutdown: Shutdown) {
    loop {
        let Ok(mut listener) = bus.listen("catalogue.item.").await else {
            let stop = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = stop.wait() => return,
            }
        };
        loop {
            let stop = shutdown.clone();
            let event = tokio::select! {
                event = listener.recv() => event,
                _ = stop.wait() => return,
            };
            let Some(event) = event else { break };
            let item = event
                .decode::<ServiceItemPublished>()
                .and_then(|e| e.service_item)
                .or_else(|| event.decode::<ServiceItemChanged>().and_then(|e| e.service_item))
                .or_else(|| event.decode::<ServiceItemRetired>().and_then(|e| e.service_item));
            if let Some(item) = item {
                let version = civic_kit::idempotency::version_of(&item.etag).unwrap_or(i64::MAX);
                items.invalidate(&item.name, version);
            }
        }
    }
}
