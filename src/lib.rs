//! civic as a program: the registry of its services ([`MODULES`], Loki's `modules.go`), the
//! targets `civic serve` derives from it, and the one process builder that binds, migrates,
//! wires and serves them ("one binary, any part").
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use civic_kit::auth::{AuthSettings, Verifier};
use civic_kit::calendar::WorkCalendar;
use civic_kit::config::Config;
use civic_kit::db::Db;
use civic_kit::directory::{self, Directory};
use civic_kit::events::{Bus, Relay};
use civic_kit::module::{Instance, Module, Parts};
use civic_kit::page::PageTokens;
use civic_kit::server::{self, Health, Shutdown, ShutdownTrigger};
use civic_kit::tasks::Tasks;

/// Every service of civic. A new service is its crate and one line here
/// (`docs/adding-a-service.md`).
pub static MODULES: &[&dyn Module] = &[
    &civic_catalogue::MODULE,
    &civic_grid::MODULE,
    &civic_issues::MODULE,
    &civic_volunteer::MODULE,
    &civic_assessment::MODULE,
];

/// The names of the registered services.
pub fn service_names(modules: &[&dyn Module]) -> Vec<&'static str> {
    modules.iter().map(|m| m.name()).collect()
}

/// What `civic serve --target` runs: everything, the gateway alone, or one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every service in one process, on the embedded store by default.
    All,
    /// The gateway alone: the HTTP API, gRPC-Web and gRPC on its addresses, calling the
    /// services where `[directory]` says they are.
    Gateway,
    /// One service, by its registered name.
    Service(&'static str),
}

impl Target {
    /// The target named `name`: `all`, `gateway` or a registered service.
    pub fn parse(name: &str, modules: &[&dyn Module]) -> Result<Self, String> {
        match name {
            "all" => Ok(Target::All),
            "gateway" => Ok(Target::Gateway),
            _ => modules
                .iter()
                .find(|m| m.name() == name)
                .map(|m| Target::Service(m.name()))
                .ok_or_else(|| format!("no target {name:?}; the targets are {}", Target::names(modules).join(", "))),
        }
    }

    /// Every target's name: `all`, `gateway`, then the services.
    pub fn names(modules: &[&dyn Module]) -> Vec<&'static str> {
        ["all", "gateway"].into_iter().chain(modules.iter().map(|m| m.name())).collect()
    }

    /// The target's name.
    pub fn name(self) -> &'static str {
        match self {
            Target::All => "all",
            Target::Gateway => "gateway",
            Target::Service(name) => name,
        }
    }

    /// The services this target runs.
    pub fn services<'m>(self, modules: &[&'m dyn Module]) -> Vec<&'m dyn Module> {
        modules
            .iter()
            .copied()
            .filter(|m| match self {
                Target::All => true,
                Target::Gateway => false,
                Target::Service(name) => m.name() == name,
            })
            .collect()
    }

    /// Whether the HTTP address serves the API (the gateway); otherwise it serves only the
    /// operations endpoints.
    pub fn serves_api(self) -> bool {
        matches!(self, Target::All | Target::Gateway)
    }
}

/// What to do besides serving.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Load the Zhongjie Street demo data on start.
    pub seed: bool,
    /// The registry of services: [`MODULES`], or another list (tests add services of their own).
    pub modules: &'static [&'static dyn Module],
}

impl Default for Options {
    fn default() -> Self {
        Self { seed: false, modules: MODULES }
    }
}

/// Listeners bound beforehand (port 0 allowed), for a caller that must know every address of
/// a split deployment before any process starts — the tests do.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC listener.
    pub grpc: std::net::TcpListener,
    /// The HTTP listener.
    pub http: std::net::TcpListener,
}

impl Listeners {
    /// Binds both on `host`, each on a free port.
    pub fn bind(host: std::net::IpAddr) -> std::io::Result<Self> {
        Ok(Self { grpc: std::net::TcpListener::bind((host, 0))?, http: std::net::TcpListener::bind((host, 0))? })
    }

    /// The addresses bound: gRPC, then HTTP.
    pub fn addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.grpc.local_addr()?, self.http.local_addr()?))
    }
}

/// The token settings in force for `target`. Production keys (a JWKS source) when configured;
/// otherwise development signing, which must be asked for (`auth.dev_mode = true`) except in the
/// laptop default — `--target=all` on the embedded store without NATS — and whose key is
/// `auth.dev_key` or the data directory's `dev.key`, never the page-token secret. Anything else
/// is refused, naming `auth.dev_mode`: a process on PostgreSQL or NATS never signs its own
/// tokens by default.
pub fn effective_auth(config: &Config, target: Target) -> anyhow::Result<AuthSettings> {
    let mut auth = config.auth.clone();
    if auth.has_jwks() {
        return Ok(auth);
    }
    let laptop = target == Target::All && config.database_url.is_empty() && config.nats_url.is_empty();
    if !auth.dev_mode.unwrap_or(laptop) {
        anyhow::bail!(
            "bad configuration: `auth.dev_mode`: no production keys are configured (auth.jwks_url or auth.jwks_file), \
             and development signing is off for --target={} on {}; set a JWKS source, or auth.dev_mode = true \
             for development only",
            target.name(),
            if config.database_url.is_empty() { "NATS" } else { "PostgreSQL" },
        );
    }
    if auth.dev_key.is_none() {
        auth.dev_key = Some(config.dev_key().context("reading the development key in the data directory")?);
    }
    auth.dev_mode = Some(true);
    Ok(auth)
}

/// Says loudly that a process signs its own tokens.
fn warn_development(config: &Config) {
    tracing::warn!(
        key = %config.auth.dev_key.as_ref().map_or_else(|| config.data_dir.join("dev.key").display().to_string(), |_| "auth.dev_key".to_owned()),
        "DEVELOPMENT MODE: bearer tokens are signed with a local key; whoever holds it, or can run `civic token` here, \
         can act as any user of any street. Configure auth.jwks_url for real use"
    );
}

/// Connects and migrates one service's database.
pub async fn open_database(config: &Config, module: &dyn Module) -> anyhow::Result<Db> {
    let name = module.name();
    let url = config.database_url_for(name);
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    }
    let db = Db::connect(&url, name, config.server.db_max_connections)
        .await
        .with_context(|| format!("opening the {name} database"))?;
    db.migrate(module.migrations()).await.with_context(|| format!("migrating the {name} database"))?;
    Ok(db)
}

/// Checks the configuration sections of `modules` (each service validates its own).
pub fn check_sections(config: &Config, modules: &[&dyn Module]) -> anyhow::Result<()> {
    for module in modules {
        module.settings(&config.section(module.name()))?;
    }
    Ok(())
}

/// What every service of a process is built with, made once per process.
struct Shared {
    verifier: Verifier,
    pages: PageTokens,
    bus: Bus,
    directory: Directory,
    calendar: WorkCalendar,
    shutdown: Shutdown,
    trigger: Arc<ShutdownTrigger>,
    tasks: Tasks,
    streams: civic_kit::watch::Streams,
}

impl Shared {
    /// The shared parts of a process running `here` with the token settings `auth`; `bus` is
    /// NATS when configured, else in-process.
    async fn build(config: &Config, auth: &AuthSettings, here: &[&dyn Module]) -> anyhow::Result<Self> {
        let secret = config.secret().context("reading the secret in the data directory")?;
        let verifier = Verifier::start(auth).await?;
        let bus = if config.nats_url.is_empty() {
            Bus::in_process()
        } else {
            let max_age = Duration::from_secs(config.nats_max_age_hours.saturating_mul(3600));
            Bus::nats(&config.nats_url, &config.nats_stream, &config.nats_subject_prefix, max_age)
                .await
                .context("connecting to NATS")?
        };
        let (trigger, shutdown) = server::shutdown_pair();
        let tasks = Tasks::new();
        let names: Vec<&str> = here.iter().map(|m| m.name()).collect();
        let directory = Directory::new(&config.directory, auth, &names, shutdown.clone(), tasks.clone());
        let calendar = WorkCalendar::new(&config.calendar);
        let trigger = Arc::new(trigger);
        let streams = civic_kit::watch::Streams::new(&config.server);
        Ok(Self {
            verifier,
            pages: PageTokens::new(&secret),
            bus,
            directory,
            calendar,
            shutdown,
            trigger,
            tasks,
            streams,
        })
    }

    /// Opens and migrates `module`'s database, starts its relay, and builds it.
    async fn build_service(&self, config: &Config, module: &dyn Module) -> anyhow::Result<(Db, Box<dyn Instance>)> {
        let db = open_database(config, module).await?;
        let poll = Duration::from_millis(config.server.outbox_poll_ms);
        let hours = |h: u64| Duration::from_secs(h.saturating_mul(3600));
        let retention = civic_kit::events::Retention {
            published: hours(config.server.outbox_retention_hours),
            answers: hours(config.server.idempotency_retention_hours),
            inbox: hours(config.server.inbox_retention_hours),
        };
        let relay = Relay::new(db.clone(), self.bus.clone(), poll)
            .for_service(module.name())
            .keep(retention)
            .dead_letter_after(config.server.dead_letter_after_attempts);
        self.tasks.spawn("relay", relay.clone().run(self.shutdown.clone().wait()));
        let parts = Parts {
            db: db.clone(),
            relay,
            auth: self.verifier.clone(),
            pages: self.pages.clone(),
            bus: self.bus.clone(),
            directory: self.directory.acting_as(module.name()),
            calendar: self.calendar.clone(),
            shutdown: self.shutdown.clone(),
            tasks: self.tasks.clone(),
            streams: self.streams.clone(),
            section: config.section(module.name()),
            data_dir: config.data_dir.clone(),
        };
        let instance = module.build(parts).await.with_context(|| format!("building the {} service", module.name()))?;
        Ok((db, instance))
    }
}

/// Loads the Zhongjie Street demo data of every service of `modules` into the configured
/// store, through each service's own domain path, and says what each added. A running server's
/// relay delivers the events on its next poll.
pub async fn seed(config: &Config, modules: &[&dyn Module]) -> anyhow::Result<Vec<(&'static str, String)>> {
    check_sections(config, modules)?;
    // Seeding serves no request: no keys are needed, and none are fetched.
    let no_keys =
        AuthSettings { dev_mode: Some(false), dev_key: None, jwks_file: None, jwks_url: None, ..config.auth.clone() };
    let shared = Shared::build(config, &no_keys, modules).await?;
    let mut report = Vec::new();
    for module in modules {
        let (db, instance) = shared.build_service(config, *module).await?;
        let added = instance.seed().await.with_context(|| format!("seeding the {} service", module.name()))?;
        report.push((module.name(), added));
        db.close().await;
    }
    shared.trigger.trigger();
    shared.tasks.join(Duration::from_secs(10)).await;
    Ok(report)
}

/// A built civic process: listeners bound, databases migrated, services built, ready to serve.
pub struct Application {
    grpc: (tokio::net::TcpListener, SocketAddr),
    http: (tokio::net::TcpListener, SocketAddr),
    target: Target,
    modules: &'static [&'static dyn Module],
    routes: tonic::service::Routes,
    health: Health,
    health_names: Vec<String>,
    watched: Vec<(Vec<String>, Db)>,
    databases: Vec<Db>,
    config: Config,
    shared: Shared,
    termination: server::Termination,
}

impl Application {
    /// Binds the listeners (port 0 allowed), opens and migrates the target's databases, and
    /// builds its services.
    pub async fn build(config: Config, target: Target, options: Options) -> anyhow::Result<Self> {
        Self::build_on(config, target, options, None).await
    }

    /// [`Application::build`] on listeners bound beforehand (the configured addresses are then
    /// not used).
    pub async fn build_on(
        config: Config,
        target: Target,
        options: Options,
        listeners: Option<Listeners>,
    ) -> anyhow::Result<Self> {
        let termination = server::Termination::install().context("listening for termination signals")?;
        let (grpc, http) = match listeners {
            Some(bound) => (server::adopt(bound.grpc)?, server::adopt(bound.http)?),
            None => (
                server::bind(config.grpc_addr)
                    .await
                    .with_context(|| format!("binding grpc_addr {}", config.grpc_addr))?,
                server::bind(config.http_addr)
                    .await
                    .with_context(|| format!("binding http_addr {}", config.http_addr))?,
            ),
        };
        tracing::info!(grpc_addr = %grpc.1, http_addr = %http.1, target = target.name(), "listening");

        let services = target.services(options.modules);
        check_sections(&config, &services)?;
        let auth = effective_auth(&config, target)?;
        if auth.dev_mode == Some(true) {
            warn_development(&config);
        }
        if target == Target::Gateway {
            for module in options.modules {
                if config.directory.urls(module.name()).is_none() {
                    anyhow::bail!(
                        "bad configuration: `directory.addresses.{0}`: the gateway needs the {0} service's address \
                         (or set directory.address_template)",
                        module.name()
                    );
                }
            }
        }
        let shared = Shared::build(&config, &auth, &services).await?;
        let (mut routes, health) = server::standard_routes()?;
        let mut databases = Vec::new();
        let mut health_names = vec![String::new()];
        let mut watched = Vec::new();
        for module in &services {
            let (db, instance) = shared.build_service(&config, *module).await?;
            if options.seed {
                let added = instance.seed().await.with_context(|| format!("seeding the {} service", module.name()))?;
                tracing::info!(service = module.name(), added, "seeded");
            }
            routes = instance.add_routes(routes);
            let names: Vec<String> = module.grpc_services().iter().map(|s| (*s).to_owned()).collect();
            health_names.extend(names.iter().cloned());
            watched.push((names, db.clone()));
            databases.push(db);
        }
        if target == Target::Gateway {
            health_names.extend(options.modules.iter().flat_map(|m| m.grpc_services()).map(|s| (*s).to_owned()));
        }
        Ok(Self {
            grpc,
            http,
            target,
            modules: options.modules,
            routes,
            health,
            health_names,
            watched,
            databases,
            config,
            shared,
            termination,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.1
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.1
    }

    /// The process's directory of services, as its services see it.
    pub fn directory(&self) -> Directory {
        self.shared.directory.clone()
    }

    /// A handle that stops the application (as SIGTERM does).
    pub fn stopper(&self) -> Stopper {
        Stopper { health: self.health.clone(), names: self.health_names.clone(), trigger: self.shared.trigger.clone() }
    }

    /// Serves until SIGTERM/Ctrl-C or [`Stopper::stop`]: first reports NOT_SERVING, then stops
    /// accepting and drains requests in flight, then waits for the background tasks.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { grpc, http, target, modules, routes, health, health_names, config, shared, .. } = self;
        let (watched, databases, termination) = (self.watched, self.databases, self.termination);
        let shutdown = shared.shutdown.clone();
        health.watch_databases(watched, Duration::from_secs(2), shutdown.clone()).await;
        health.set(server::LIVENESS, true).await;
        // Every call, from whichever address, from the gateway or from another service in this
        // process, goes through the same stack (metrics, limits, timeouts).
        let own = server::GrpcService::new(routes.prepare());
        let local = server::stack(own.clone(), &config.server);
        shared.directory.set_local(local.clone());
        let mut upstreams = Vec::new();
        let grpc_service = if target == Target::Gateway {
            let mut by_grpc_service = HashMap::new();
            for module in modules {
                let channel = shared.directory.channel(module.name())?;
                upstreams.push((*module, channel));
                let transport = shared.directory.connect(module.name())?;
                for name in module.grpc_services() {
                    by_grpc_service.insert((*name).to_owned(), transport.clone());
                }
            }
            directory::route(by_grpc_service, own)
        } else {
            local.clone()
        };
        let api = if target.serves_api() {
            let gateway = civic_gateway::Gateway::new(civic_proto::FILE_DESCRIPTOR_SET)
                .context("building the HTTP routes")?
                .with_open311(&config.gateway.open311, &config.auth);
            // On the HTTP address the edge policy bounds and identifies each call; a gateway's
            // routed calls then go straight on to the service, whose own stack serves them.
            let trusted = civic_kit::client::TrustedProxies::parse(&config.server.trusted_proxies).unwrap_or_default();
            Some(gateway.router(grpc_service.clone(), &config.gateway, Some(shared.verifier.clone()), trusted))
        } else {
            None
        };
        // On a gateway's gRPC address, routed calls pass its stack first (request ids, trace,
        // metrics, limits, gRPC-Web), as every gRPC address's calls do.
        let grpc_service =
            if target == Target::Gateway { server::stack(grpc_service, &config.server) } else { grpc_service };
        if !upstreams.is_empty() {
            shared
                .tasks
                .spawn("gateway.health", mirror_upstream_health(health.clone(), upstreams.clone(), shutdown.clone()));
        }
        let readiness = Readiness { databases: databases.clone(), upstreams };
        let http_task = tokio::spawn(serve_http(http.0, api, readiness, config.server.clone(), shutdown.clone()));
        let stopper = Stopper { health: health.clone(), names: health_names, trigger: shared.trigger.clone() };
        let signal_stopper = stopper.clone();
        let signal = tokio::spawn(async move {
            termination.wait().await;
            tracing::info!("termination signal received");
            signal_stopper.stop().await;
        });
        let served = server::serve(grpc.0, grpc_service, &config.server, shutdown.clone()).await;
        signal.abort();
        stopper.stop().await;
        let _ = http_task.await;
        shared.tasks.join(Duration::from_millis(config.server.shutdown_grace_ms)).await;
        for db in databases {
            db.close().await;
        }
        tracing::info!("stopped");
        served.context("serving gRPC")
    }
}

/// Stops a running [`Application`].
#[derive(Clone)]
pub struct Stopper {
    health: Health,
    names: Vec<String>,
    trigger: Arc<ShutdownTrigger>,
}

impl Stopper {
    /// Reports every service NOT_SERVING, then signals shutdown.
    pub async fn stop(&self) {
        for name in &self.names {
            self.health.set(name, false).await;
        }
        self.trigger.trigger();
    }
}

/// What `/readyz` checks: every database answers, and every upstream service reports SERVING.
struct Readiness {
    databases: Vec<Db>,
    upstreams: Vec<(&'static dyn Module, tonic::transport::Channel)>,
}

impl Readiness {
    /// `Err` names what is not ready.
    async fn check(&self) -> Result<(), String> {
        for db in &self.databases {
            if !db.ping().await {
                return Err("database unavailable".into());
            }
        }
        for (module, channel) in &self.upstreams {
            if !upstream_serving(channel, "").await {
                return Err(format!("the {} service is not serving", module.name()));
            }
        }
        Ok(())
    }
}

/// Whether the upstream behind `channel` reports `name` SERVING through grpc.health.v1.
async fn upstream_serving(channel: &tonic::transport::Channel, name: &str) -> bool {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let request = tonic_health::pb::HealthCheckRequest { service: name.to_owned() };
    tokio::time::timeout(Duration::from_secs(2), client.check(request)).await.ok().and_then(Result::ok).is_some_and(
        |r| r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
    )
}

/// A gateway's health: each gRPC service SERVING while its upstream says so, checked every two
/// seconds until shutdown, so a client asking the gateway's address about a service learns
/// whether it can be reached there.
async fn mirror_upstream_health(
    health: Health,
    upstreams: Vec<(&'static dyn Module, tonic::transport::Channel)>,
    shutdown: Shutdown,
) {
    loop {
        for (module, channel) in &upstreams {
            for name in module.grpc_services() {
                health.set(name, upstream_serving(channel, name).await).await;
            }
        }
        let stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.wait() => return,
        }
    }
}

/// The HTTP listener: the operations endpoints — `/metrics` (Prometheus text), `/healthz` (the
/// process runs) and `/readyz` (its databases or upstreams answer) — and, on the targets that
/// serve it, everything else of the gateway (the API, gRPC-Web and gRPC, OpenAPI, the lobby).
async fn serve_http(
    listener: tokio::net::TcpListener,
    api: Option<axum::Router>,
    readiness: Readiness,
    settings: civic_kit::config::ServerSettings,
    shutdown: Shutdown,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let metrics = civic_kit::telemetry::metrics();
    let readiness = Arc::new(readiness);
    let app = axum::Router::new()
        .route("/metrics", get(move || std::future::ready(metrics.render())))
        .route("/healthz", get(|| std::future::ready("ok")))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness.check().await {
                        Ok(()) => (StatusCode::OK, "ready".to_owned()),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                    }
                }
            }),
        );
    let app = match api {
        Some(api) => app.merge(api),
        None => app,
    };
    if let Err(e) = server::serve_router(listener, app, &settings, shutdown).await {
        tracing::error!(error = %e, "http listener failed");
    }
}
