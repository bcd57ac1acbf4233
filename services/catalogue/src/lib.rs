//! The catalogue service: the street's service items (six categories, three handling modes),
//! their published revisions, search, and the live feed behind the service hall's screen.
#![forbid(unsafe_code)]

mod api;
mod cache;
pub mod desk;
pub mod domain;
pub mod search;
mod seed;
mod store;

use civic_kit::auth::Verifier;
use civic_kit::calendar::WorkCalendar;
use civic_kit::db::{Db, Migration};
use civic_kit::events::{Bus, Relay};
use civic_kit::page::PageTokens;
use civic_kit::server::Shutdown;
use civic_proto::catalogue::catalogue_service_server::CatalogueServiceServer;
use civic_proto::catalogue::desk_service_server::DeskServiceServer;
use tonic::service::Routes;

pub use api::{TOPIC_CHANGED, TOPIC_PUBLISHED, TOPIC_RETIRED};
pub use seed::{ZHONGJIE, ZHONGJIE_STREET};

/// The name of this service's schema (PostgreSQL) or file (SQLite).
pub const SERVICE: &str = "catalogue";

/// The gRPC services this crate serves, by their full names (for health).
pub const GRPC_SERVICES: &[&str] = &["civic.catalogue.v1.CatalogueService", "civic.catalogue.v1.DeskService"];

/// The catalogue's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "items and revisions", sql: include_str!("../migrations/0001_items.sql") },
    Migration { version: 2, name: "the reception desk", sql: include_str!("../migrations/0002_desk.sql") },
];

/// What the catalogue is built from.
#[derive(Debug)]
pub struct Parts {
    /// Its database, migrated with [`MIGRATIONS`].
    pub db: Db,
    /// Verifies bearer tokens.
    pub auth: Verifier,
    /// Makes and reads page tokens.
    pub pages: PageTokens,
    /// Where live changes are heard (the watch stream).
    pub bus: Bus,
    /// Delivers the outbox; notified after each commit.
    pub relay: Relay,
    /// Working days, for due times.
    pub calendar: WorkCalendar,
    /// Ends watch streams at shutdown.
    pub shutdown: Shutdown,
}

/// The catalogue's state, shared by every request.
#[derive(Clone)]
pub struct Catalogue {
    db: Db,
    auth: Verifier,
    pages: PageTokens,
    bus: Bus,
    relay: Relay,
    calendar: WorkCalendar,
    shutdown: Shutdown,
    items: std::sync::Arc<cache::ItemCache>,
}

/// How long a replica may serve an item from memory without hearing of a change to it.
const ITEM_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl Catalogue {
    /// The service over its database (migrated), token verifier, page-token keys, event bus,
    /// the relay that delivers its outbox, and the working-day calendar of due times.
    pub fn new(parts: Parts) -> Self {
        let Parts { db, auth, pages, bus, relay, calendar, shutdown } = parts;
        let items = std::sync::Arc::new(cache::ItemCache::new(ITEM_CACHE_TTL));
        tokio::spawn(forget_changed_items(bus.clone(), items.clone(), shutdown.clone()));
        Self { db, auth, pages, bus, relay, calendar, shutdown, items }
    }

    /// The database, for health checks.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// Drops cached items that changed, as each change's event arrives (from this replica or
/// another), until shutdown. A feed that falls behind is opened again.
async fn forget_changed_items(
    bus: civic_kit::events::Bus,
    items: std::sync::Arc<cache::ItemCache>,
    shutdown: Shutdown,
) {
    use prost::Message;
    loop {
        let Ok(mut listener) = bus.listen("catalogue.item.").await else {
            let stop = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
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
            if let Ok(item) = civic_proto::catalogue::ServiceItem::decode(event.payload.as_slice()) {
                let version = item.etag.trim_matches('"').parse::<i64>().unwrap_or(i64::MAX);
                items.invalidate(&item.name, version);
            }
        }
    }
}

/// Adds the catalogue's gRPC services to a server's routes.
pub fn add_routes(routes: Routes, state: Catalogue) -> Routes {
    routes.add_service(CatalogueServiceServer::new(state.clone())).add_service(DeskServiceServer::new(state))
}
