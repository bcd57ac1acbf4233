//! civic as a program: the static list of targets `civic serve` can run, and the one process
//! builder that binds, migrates, wires and serves them (Loki's "one binary, any part" model).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use civic_kit::auth::{AuthSettings, Verifier};
use civic_kit::calendar::WorkCalendar;
use civic_kit::config::Config;
use civic_kit::db::Db;
use civic_kit::events::{Bus, Relay};
use civic_kit::page::PageTokens;
use civic_kit::server::{self, Health, Shutdown, ShutdownTrigger};
use tokio::task::JoinHandle;

/// A part of civic that `civic serve --target` can run. The list is static, and so is what
/// each target runs (see [`Target::services`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Every service in one process, on the embedded store by default.
    All,
    /// The catalogue service alone.
    Catalogue,
    /// The gateway alone: the HTTP API, gRPC-Web and gRPC pass-through on the HTTP address,
    /// calling the services at `[gateway.upstreams]`.
    Gateway,
}

/// The services of civic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Service items and the reception desk.
    Catalogue,
}

impl Target {
    /// The services this target runs.
    pub fn services(self) -> &'static [Service] {
        match self {
            Target::All => &[Service::Catalogue],
            Target::Catalogue => &[Service::Catalogue],
            Target::Gateway => &[],
        }
    }

    /// Whether the HTTP address serves the API (the gateway); otherwise it serves only the
    /// operations endpoints.
    pub fn serves_api(self) -> bool {
        matches!(self, Target::All | Target::Gateway)
    }
}

impl Service {
    /// Every service.
    pub const ALL: &'static [Service] = &[Service::Catalogue];

    /// The service's name: its store (schema or file) and its key in `[gateway.upstreams]`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Catalogue => civic_catalogue::SERVICE,
        }
    }

    /// The gRPC services it serves, by full name.
    pub fn grpc_services(self) -> &'static [&'static str] {
        match self {
            Service::Catalogue => civic_catalogue::GRPC_SERVICES,
        }
    }
}

/// What to do besides serving.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Load the Zhongjie Street demo data on start.
    pub seed: bool,
}

/// The token settings in force: the configured ones, or — when neither a dev key nor a JWKS
/// file is configured — the data directory's secret as the dev key, so a laptop demo accepts
/// the tokens `civic token` mints.
pub fn effective_auth(config: &Config) -> anyhow::Result<AuthSettings> {
    let mut auth = config.auth.clone();
    if auth.dev_key.is_none() && auth.jwks_file.is_none() && auth.jwks_url.is_none() {
        let secret = config.secret().context("reading the secret in the data directory")?;
        auth.dev_key = Some(String::from_utf8_lossy(&secret).into_owned());
    }
    Ok(auth)
}

/// The event bus in force: NATS JetStream when configured, else in-process.
pub async fn connect_bus(config: &Config) -> anyhow::Result<Bus> {
    if config.nats_url.is_empty() {
        Ok(Bus::in_process())
    } else {
        Bus::nats(&config.nats_url, &config.nats_stream, &config.nats_subject_prefix)
            .await
            .context("connecting to NATS")
    }
}

/// Connects and migrates one service's database.
pub async fn open_database(config: &Config, service: Service) -> anyhow::Result<Db> {
    let url = config.database_url_for(service.name());
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    }
    let db = Db::connect(&url, service.name(), config.server.db_max_connections)
        .await
        .with_context(|| format!("opening the {} database", service.name()))?;
    let migrations = match service {
        Service::Catalogue => civic_catalogue::MIGRATIONS,
    };
    db.migrate(migrations).await.with_context(|| format!("migrating the {} database", service.name()))?;
    Ok(db)
}

/// What every service of a process is built with.
struct Shared {
    verifier: Verifier,
    pages: PageTokens,
    bus: Bus,
    shutdown: Shutdown,
}

/// The catalogue service over its database and relay.
fn catalogue(config: &Config, db: Db, relay: Relay, shared: &Shared) -> civic_catalogue::Catalogue {
    civic_catalogue::Catalogue::new(civic_catalogue::Parts {
        db,
        auth: shared.verifier.clone(),
        pages: shared.pages.clone(),
        bus: shared.bus.clone(),
        relay,
        calendar: WorkCalendar::new(&config.calendar),
        shutdown: shared.shutdown.clone(),
    })
}

/// Loads the Zhongjie Street demo data into the configured store, returning how many items
/// were added. A running server's relay delivers the events on its next poll.
pub async fn seed(config: &Config) -> anyhow::Result<usize> {
    let db = open_database(config, Service::Catalogue).await?;
    let secret = config.secret().context("reading the secret in the data directory")?;
    let verifier = Verifier::new(&effective_auth(config)?).map_err(|e| anyhow::anyhow!("auth: {e}"))?;
    let bus = Bus::in_process();
    let relay = Relay::new(db.clone(), bus.clone(), Duration::from_secs(1));
    let (_trigger, shutdown) = server::shutdown_pair();
    let shared = Shared { verifier, pages: PageTokens::new(&secret), bus, shutdown };
    let state = catalogue(config, db.clone(), relay, &shared);
    let added = state.seed(civic_catalogue::ZHONGJIE_STREET, civic_catalogue::ZHONGJIE).await?;
    db.close().await;
    Ok(added)
}

/// A built civic process: listeners bound, databases migrated, ready to serve.
pub struct Application {
    grpc: (tokio::net::TcpListener, SocketAddr),
    http: (tokio::net::TcpListener, SocketAddr),
    target: Target,
    verifier: Verifier,
    routes: tonic::service::Routes,
    health: Health,
    health_names: Vec<String>,
    watched: Vec<(Vec<String>, Db)>,
    databases: Vec<Db>,
    config: Config,
    trigger: Arc<ShutdownTrigger>,
    shutdown: Shutdown,
    termination: server::Termination,
    tasks: Vec<JoinHandle<()>>,
}

impl Application {
    /// Binds the listeners (port 0 allowed), opens and migrates the target's databases, and
    /// wires its services.
    pub async fn build(config: Config, target: Target, options: Options) -> anyhow::Result<Self> {
        let termination = server::Termination::install().context("listening for termination signals")?;
        let grpc =
            server::bind(config.grpc_addr).await.with_context(|| format!("binding grpc_addr {}", config.grpc_addr))?;
        let http =
            server::bind(config.http_addr).await.with_context(|| format!("binding http_addr {}", config.http_addr))?;
        tracing::info!(grpc_addr = %grpc.1, http_addr = %http.1, target = ?target, "listening");

        let secret = config.secret().context("reading the secret in the data directory")?;
        let pages = PageTokens::new(&secret);
        let verifier = Verifier::start(&effective_auth(&config)?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let bus = connect_bus(&config).await?;
        let (trigger, shutdown) = server::shutdown_pair();
        let shared = Shared { verifier: verifier.clone(), pages, bus: bus.clone(), shutdown: shutdown.clone() };
        let (mut routes, health) = server::standard_routes().map_err(|e| anyhow::anyhow!("reflection: {e}"))?;
        let poll = Duration::from_millis(config.server.outbox_poll_ms);
        let mut tasks = Vec::new();
        let mut databases = Vec::new();
        let mut health_names = vec![String::new()];
        let mut watched = Vec::new();
        for service in target.services() {
            let db = open_database(&config, *service).await?;
            let keep = Duration::from_secs(config.server.outbox_retention_hours.saturating_mul(3600));
            let relay = Relay::new(db.clone(), bus.clone(), poll).for_service(service.name()).keep_published(keep);
            tasks.push(tokio::spawn(relay.clone().run(shutdown.clone().wait())));
            match service {
                Service::Catalogue => {
                    let state = catalogue(&config, db.clone(), relay, &shared);
                    if options.seed {
                        state
                            .seed(civic_catalogue::ZHONGJIE_STREET, civic_catalogue::ZHONGJIE)
                            .await
                            .context("seeding the catalogue")?;
                    }
                    routes = civic_catalogue::add_routes(routes, state);
                }
            }
            let names: Vec<String> = service.grpc_services().iter().map(|s| (*s).to_owned()).collect();
            health_names.extend(names.iter().cloned());
            watched.push((names, db.clone()));
            databases.push(db);
        }
        if target == Target::Gateway {
            for service in Service::ALL {
                if !config.gateway.upstreams.contains_key(service.name()) {
                    anyhow::bail!(
                        "bad configuration: `gateway.upstreams.{}`: the gateway needs the {0} service's address",
                        service.name()
                    );
                }
            }
        }
        let trigger = Arc::new(trigger);
        Ok(Self {
            grpc,
            http,
            target,
            verifier,
            routes,
            health,
            health_names,
            watched,
            databases,
            config,
            trigger,
            shutdown,
            termination,
            tasks,
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

    /// A handle that stops the application (as SIGTERM does).
    pub fn stopper(&self) -> Stopper {
        Stopper { health: self.health.clone(), names: self.health_names.clone(), trigger: self.trigger.clone() }
    }

    /// Serves until SIGTERM/Ctrl-C or [`Stopper::stop`]: first reports NOT_SERVING, then stops
    /// accepting and drains requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            grpc,
            http,
            target,
            verifier,
            routes,
            health,
            health_names,
            watched,
            databases,
            config,
            trigger,
            shutdown,
            termination,
            tasks,
        } = self;
        health.watch_databases(watched, Duration::from_secs(2), shutdown.clone()).await;
        // Every call, from whichever address or from the gateway in-process, goes through the
        // same stack (metrics, limits, timeouts).
        let local = server::stacked(routes, &config.server);
        let mut upstreams = Vec::new();
        let api = if target.serves_api() {
            let grpc = if target == Target::Gateway {
                let every = Duration::from_millis(config.gateway.resolve_every_ms);
                let mut channels = std::collections::HashMap::new();
                for service in Service::ALL {
                    let urls = config.gateway.upstreams.get(service.name()).cloned().unwrap_or_default();
                    let channel = civic_gateway::upstream::balanced(&urls, every, shutdown.clone());
                    upstreams.push((*service, channel.clone()));
                    for name in service.grpc_services() {
                        channels.insert((*name).to_owned(), channel.clone());
                    }
                }
                civic_gateway::upstream::route(channels, local.clone())
            } else {
                local.clone()
            };
            let gateway =
                civic_gateway::Gateway::new(civic_proto::FILE_DESCRIPTOR_SET).context("building the HTTP routes")?;
            Some(gateway.router(grpc, &config.gateway, Some(verifier)))
        } else {
            None
        };
        if !upstreams.is_empty() {
            tokio::spawn(mirror_upstream_health(health.clone(), upstreams.clone(), shutdown.clone()));
        }
        let readiness = Readiness { databases: databases.clone(), upstreams };
        let http_task = tokio::spawn(serve_http(http.0, api, readiness, config.server.clone(), shutdown.clone()));
        let stopper = Stopper { health: health.clone(), names: health_names, trigger };
        let signal_stopper = stopper.clone();
        let signal = tokio::spawn(async move {
            termination.wait().await;
            tracing::info!("termination signal received");
            signal_stopper.stop().await;
        });
        let served = server::serve(grpc.0, local, &config.server, shutdown.clone()).await;
        signal.abort();
        stopper.stop().await;
        let _ = http_task.await;
        for task in tasks {
            let _ = task.await;
        }
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
    upstreams: Vec<(Service, tonic::transport::Channel)>,
}

impl Readiness {
    /// `Err` names what is not ready.
    async fn check(&self) -> Result<(), String> {
        for db in &self.databases {
            if !db.ping().await {
                return Err("database unavailable".into());
            }
        }
        for (service, channel) in &self.upstreams {
            if !upstream_serving(channel, "").await {
                return Err(format!("the {} service is not serving", service.name()));
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
    upstreams: Vec<(Service, tonic::transport::Channel)>,
    shutdown: Shutdown,
) {
    loop {
        for (service, channel) in &upstreams {
            for name in service.grpc_services() {
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
