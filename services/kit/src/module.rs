//! What a service crate gives the `civic` binary (Loki's module registry): one value
//! implementing [`Module`] — the service's name, the gRPC services it serves, its migrations,
//! its own configuration section, and how it is built from the parts a process shares. The
//! binary keeps one static list of them; `civic serve --target=<name>`, `civic migrate` and
//! `civic seed` all derive from that list, so a new service is its crate plus one line there
//! (`docs/adding-a-service.md`).

use tonic::service::Routes;

use crate::auth::Verifier;
use crate::calendar::WorkCalendar;
use crate::config::{ConfigError, Section, Value};
use crate::db::{Db, Migration};
use crate::directory::Directory;
use crate::error::Result;
use crate::events::{Bus, Relay};
use crate::page::PageTokens;
use crate::server::Shutdown;
use crate::tasks::Tasks;

/// What a service is built from: its own database and relay, and what the process shares.
#[derive(Debug)]
pub struct Parts {
    /// The service's database, migrated with its [`Module::migrations`].
    pub db: Db,
    /// Delivers the service's outbox; notify it after a commit that wrote events.
    pub relay: Relay,
    /// Verifies bearer tokens.
    pub auth: Verifier,
    /// Makes and reads page tokens.
    pub pages: PageTokens,
    /// Where events are heard (consumers, watch streams).
    pub bus: Bus,
    /// Reaches the other services, acting as this one.
    pub directory: Directory,
    /// Working days, for deadlines.
    pub calendar: WorkCalendar,
    /// Signalled when the process stops: streams and tasks end on it.
    pub shutdown: Shutdown,
    /// Where the service starts its background tasks, so shutdown waits for them.
    pub tasks: Tasks,
    /// The process's open streams and their bounds: every watch stream takes a place here.
    pub streams: crate::watch::Streams,
    /// The service's own section of the configuration, `[<name>]`.
    pub section: Section,
    /// The process's data directory: where a service on the embedded store (SQLite) may keep
    /// what belongs beside its data, such as a key it made itself. A service on PostgreSQL keeps
    /// nothing here (replicas share no disk).
    pub data_dir: std::path::PathBuf,
}

/// A service of civic, as the binary's registry lists it.
#[tonic::async_trait]
pub trait Module: std::fmt::Debug + Send + Sync + 'static {
    /// The service's name, lowercase letters and `_`: its `--target`, its configuration section,
    /// its database schema (PostgreSQL) or file (SQLite), and its entry in the directory.
    fn name(&self) -> &'static str;

    /// The gRPC services it serves, by full name, taken from tonic's `NamedService::NAME`.
    fn grpc_services(&self) -> &'static [&'static str];

    /// Its schema, in order; applied at start and by `civic migrate`.
    fn migrations(&self) -> &'static [Migration];

    /// Its section's effective settings, validated (see [`Section::effective`]): checked at
    /// start, so a bad value stops the process with the key named, and printed by `civic config`.
    fn settings(&self, section: &Section) -> std::result::Result<Value, ConfigError>;

    /// Builds the service from the process's parts. Background tasks go to `parts.tasks`.
    async fn build(&self, parts: Parts) -> Result<Box<dyn Instance>>;
}

/// A built service.
#[tonic::async_trait]
pub trait Instance: Send + Sync {
    /// Adds its gRPC services to a server's routes.
    fn add_routes(&self, routes: Routes) -> Routes;

    /// Loads its part of the Zhongjie Street demo data, through the same domain paths as the
    /// API; running it again adds nothing. Says what it added.
    async fn seed(&self) -> Result<String>;
}
