//! Boots civic for end-to-end tests: a target on port 0 with a fresh store (a temporary SQLite
//! directory, or a fresh PostgreSQL database when `CIVIC_TEST_POSTGRES_URL` is set), events over
//! NATS when `CIVIC_TEST_NATS_URL` is set, awaiting readiness through grpc.health.v1 (no sleeps).
//!
//! `Target::All` is the whole of civic in the layout under test: one process, or — with
//! `CIVIC_TEST_MODE=split` — one process per registered service and a gateway in front of them,
//! as Kubernetes runs them, each finding the others through its directory.
#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod browser;
pub mod probe;

use std::net::SocketAddr;
use std::time::Duration;

use civic::{Application, Listeners, Options, Stopper, Target};
use civic_kit::auth::{Principal, Role};
use civic_kit::config::Config;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The dev key of every test server.
pub const DEV_KEY: &str = "test-dev-key-with-at-least-thirty-two-bytes";

/// A store shared by the replicas of one test.
pub struct Store {
    /// Keeps the SQLite directory alive.
    dir: tempfile::TempDir,
    /// This test's own NATS stream and subjects, so parallel tests don't hear each other.
    nats_namespace: String,
    /// The PostgreSQL database, when testing against PostgreSQL.
    postgres: Option<civic_kit::db::ScratchDatabase>,
}

impl Store {
    /// The data directory of the processes over this store.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether the store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// A fresh store.
    pub async fn fresh() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let postgres = civic_kit::testing::postgres_from_env().await;
        let nats_namespace = format!("test{}", uuid::Uuid::new_v4().simple());
        Self { dir, nats_namespace, postgres }
    }

    fn configure(&self, config: &mut Config) {
        config.data_dir = self.dir.path().to_path_buf();
        if let Some(pg) = &self.postgres {
            config.database_url = pg.url().to_owned();
        }
        config.nats_stream = self.nats_namespace.to_uppercase();
        config.nats_subject_prefix = self.nats_namespace.clone();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let (Ok(url), stream) = (std::env::var("CIVIC_TEST_NATS_URL"), self.nats_namespace.to_uppercase()) else {
            return;
        };
        // A thread of its own: the test's runtime may be shutting down around us.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let client = async_nats::connect(url).await.ok()?;
                async_nats::jetstream::new(client).delete_stream(stream).await.ok()
            })
        })
        .join();
    }
}

/// A running civic (in this test process): one process, or in split mode the services'
/// processes with a gateway in front, reached through the gateway's addresses.
pub struct TestApp {
    /// The gRPC address: the gateway's in split mode.
    pub grpc_addr: SocketAddr,
    /// The HTTP address: the gateway's in split mode.
    pub http_addr: SocketAddr,
    /// A channel to the gRPC address.
    pub channel: Channel,
    /// Each service's own process, by name, in split mode: its gRPC address.
    pub services: std::collections::BTreeMap<&'static str, SocketAddr>,
    /// The directory of the first process started (a service, or the all-in-one process).
    pub directory: civic_kit::directory::Directory,
    /// The processes, stopped in this order (the gateway first).
    processes: Vec<Process>,
}

/// One civic process of a test.
struct Process {
    stopper: Stopper,
    task: JoinHandle<anyhow::Result<()>>,
}

/// A service of the registry as a target.
pub fn service(name: &str) -> Target {
    Target::parse(name, civic::MODULES).expect("a registered service")
}

/// The configuration of a test server over `store`.
pub fn test_config(store: &Store) -> Config {
    let mut config = Config::default();
    store.configure(&mut config);
    config.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    config.http_addr = "127.0.0.1:0".parse().expect("addr");
    config.secret_key = "test-page-token-secret-of-32-bytes-at-least".into();
    config.auth.dev_key = Some(DEV_KEY.into());
    config.auth.dev_mode = Some(true);
    config.server.outbox_poll_ms = 100;
    config.server.shutdown_grace_ms = 2000;
    // The grid service's keys (on PostgreSQL it has no local key), and a small demo roster.
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    config.set("grid.data_keys", std::collections::BTreeMap::from([("t1", key)]));
    config.set("grid.active_data_key", "t1");
    config.set("grid.lookup_key", key.chars().rev().collect::<String>());
    config.set("grid.demo_households", 150);
    // The issues service: departments with an officer each, a few demo issues, a quick sweep.
    config.set("issues.departments.police.officers", ["po-1"]);
    config.set("issues.departments.judicial.officers", ["ju-1"]);
    config.set("issues.demo_issues", 40);
    config.set("issues.sweep_every_seconds", 1);
    config.set("volunteer.sweep_every_seconds", 1);
    config.set("volunteer.demo_volunteers", 60);
    if let Ok(nats) = std::env::var("CIVIC_TEST_NATS_URL") {
        config.nats_url = nats;
    }
    config
}

/// Starts `target` over `store` and waits until it reports SERVING.
pub async fn spawn_on(store: &Store, target: Target, options: Options) -> TestApp {
    spawn_with(test_config(store), target, options).await
}

/// Starts `target` with `config` and waits until it reports SERVING. In split mode `Target::All`
/// is every service in a process of its own behind a gateway, and a single service has a
/// gateway of its own in front (a replica, as deployed).
pub async fn spawn_with(config: Config, target: Target, options: Options) -> TestApp {
    // Telemetry lives as long as the test process: dropping the guard would shut tracing down.
    static TELEMETRY: std::sync::OnceLock<civic_kit::telemetry::TelemetryGuard> = std::sync::OnceLock::new();
    TELEMETRY.get_or_init(|| {
        civic_kit::telemetry::init(
            &civic_kit::config::LogSettings { level: "warn,civic=error".into(), ..Default::default() },
            "test",
        )
    });
    if !split() || target == Target::Gateway {
        return TestApp::of(vec![start(config, target, options, None).await]);
    }
    let services: Vec<&'static str> = target.services(options.modules).iter().map(|m| m.name()).collect();
    // Every address is known before any process starts, so each service's directory can name
    // the others (as a Kubernetes Service name does).
    let mut config = config;
    let mut bound = Vec::new();
    for name in &services {
        let listeners = Listeners::bind([127, 0, 0, 1].into()).expect("bind");
        let (grpc, _) = listeners.addrs().expect("addresses");
        config.directory.addresses.insert((*name).to_owned(), vec![format!("http://{grpc}")]);
        bound.push((*name, grpc, listeners));
    }
    if target != Target::All {
        // A single service's peers are reached through its gateway's directory only.
        for module in options.modules {
            config
                .directory
                .addresses
                .entry(module.name().to_owned())
                .or_insert_with(|| vec!["http://127.0.0.1:9".into()]);
        }
    }
    let mut started = Vec::new();
    let mut addresses = std::collections::BTreeMap::new();
    for (name, grpc, listeners) in bound {
        let target = Target::parse(name, options.modules).expect("a registered service");
        started.push(start(config.clone(), target, options, Some(listeners)).await);
        addresses.insert(name, grpc);
    }
    let gateway = start(config, Target::Gateway, Options { seed: false, ..options }, None).await;
    started.insert(0, gateway);
    let mut app = TestApp::of(started);
    app.services = addresses;
    app
}

/// A started process, its addresses and its directory.
struct Started {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    directory: civic_kit::directory::Directory,
    process: Process,
}

async fn start(config: Config, target: Target, options: Options, listeners: Option<Listeners>) -> Started {
    let app = Application::build_on(config, target, options, listeners).await.expect("application builds");
    let (grpc_addr, http_addr) = (app.grpc_addr(), app.http_addr());
    let directory = app.directory();
    let stopper = app.stopper();
    let task = tokio::spawn(app.run_until_stopped());
    let channel = Channel::from_shared(format!("http://{grpc_addr}")).expect("uri").connect_lazy();
    await_serving(channel, "").await;
    Started { grpc_addr, http_addr, directory, process: Process { stopper, task } }
}

impl TestApp {
    /// The app of started processes, reached through the first (the gateway, when there is one).
    fn of(started: Vec<Started>) -> Self {
        let front = started.first().expect("a process");
        let (grpc_addr, http_addr) = (front.grpc_addr, front.http_addr);
        let directory = started.get(1).unwrap_or(front).directory.clone();
        let channel = Channel::from_shared(format!("http://{grpc_addr}")).expect("uri").connect_lazy();
        let processes = started.into_iter().map(|s| s.process).collect();
        TestApp { grpc_addr, http_addr, channel, services: Default::default(), directory, processes }
    }
}

/// Whether tests run each service as its own process (`CIVIC_TEST_MODE=split`).
pub fn split() -> bool {
    std::env::var("CIVIC_TEST_MODE").as_deref() == Ok("split")
}

/// Starts the whole of civic in the layout under test on a fresh store. The store is returned
/// to keep it alive.
pub async fn spawn_app() -> (TestApp, Store) {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    (app, store)
}

/// Waits, through grpc.health.v1 Watch, until `service` is SERVING (at most 30 s).
pub async fn await_serving(channel: Channel, service: &str) {
    let watch = async {
        let mut client = HealthClient::new(channel);
        loop {
            // The server may not accept yet in the first instant; Watch reconnects on retry.
            let Ok(response) = client.watch(HealthCheckRequest { service: service.into() }).await else {
                tokio::task::yield_now().await;
                continue;
            };
            let mut stream = response.into_inner();
            while let Ok(Some(update)) = stream.message().await {
                if update.status == ServingStatus::Serving as i32 {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), watch).await.expect("server became SERVING within 30 s");
}

impl TestApp {
    /// Stops every process (NOT_SERVING, then drain) and waits for each to end.
    pub async fn stop(self) {
        for process in self.processes {
            process.stopper.stop().await;
            let result =
                tokio::time::timeout(Duration::from_secs(15), process.task).await.expect("server stops within 15 s");
            result.expect("server task").expect("server ran cleanly");
        }
    }
}

/// A dev token for `roles` in `street`, valid for an hour.
pub fn token(subject: &str, roles: &[Role], street: &str) -> String {
    let settings = civic_kit::auth::AuthSettings { dev_key: Some(DEV_KEY.into()), ..Default::default() };
    let principal = Principal {
        subject: subject.into(),
        roles: roles.to_vec(),
        street: Some(street.into()),
        community: None,
        grids: Vec::new(),
    };
    civic_kit::auth::mint_dev_token(&settings, &principal, Duration::from_secs(3600)).expect("mint")
}

/// A dev token for `roles` in `street` scoped to `community` (a cadre's, a resident's).
pub fn token_in(subject: &str, roles: &[Role], street: &str, community: &str) -> String {
    let settings = civic_kit::auth::AuthSettings { dev_key: Some(DEV_KEY.into()), ..Default::default() };
    let principal = Principal {
        subject: subject.into(),
        roles: roles.to_vec(),
        street: Some(street.into()),
        community: Some(community.into()),
        grids: Vec::new(),
    };
    civic_kit::auth::mint_dev_token(&settings, &principal, Duration::from_secs(3600)).expect("mint")
}

/// A grid worker's token in Zhongjie Street, for the grid `grid` (an id).
pub fn grid_token(subject: &str, grid: &str) -> String {
    let settings = civic_kit::auth::AuthSettings { dev_key: Some(DEV_KEY.into()), ..Default::default() };
    let principal = civic_kit::auth::Principal {
        subject: subject.into(),
        roles: vec![Role::GridWorker],
        street: Some("zhongjie".into()),
        community: None,
        grids: vec![grid.into()],
    };
    civic_kit::auth::mint_dev_token(&settings, &principal, std::time::Duration::from_secs(3600)).expect("mint")
}

/// Another service's token (`service`).
pub fn service_token(service: &str) -> String {
    let settings = civic_kit::auth::AuthSettings { dev_key: Some(DEV_KEY.into()), ..Default::default() };
    civic_kit::auth::mint_service_token(&settings, service, std::time::Duration::from_secs(3600)).expect("mint")
}

/// Wraps `message` in a request carrying `token` as a bearer token (none when empty).
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if !token.is_empty() {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    }
    request
}

/// Sends `head` (a whole HTTP/1.1 request, `Connection: close`) and returns all of the answer,
/// headers included, as text.
pub async fn exchange(addr: SocketAddr, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    String::from_utf8_lossy(&raw).into_owned()
}

/// A small, seeded generator (xorshift64*), for generated tests that must replay.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One HTTP/1.1 exchange over a plain TCP stream: the status and the body (de-chunked).
pub async fn http(addr: SocketAddr, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !token.is_empty() {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body.as_bytes()).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).expect("an HTTP status line");
    let (headers, body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_owned(), b.to_owned())).unwrap_or_default();
    let body = if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// The material almost every item asks for: the resident's ID card, original, required.
pub fn id_card() -> civic_proto::catalogue::Material {
    civic_proto::catalogue::Material {
        name: "身份证".into(),
        form: civic_proto::catalogue::material::Form::Original as i32,
        copies: 1,
        required: true,
        note: String::new(),
    }
}

/// A rectangle as a GeoJSON Polygon.
pub fn rect(west: f64, south: f64, east: f64, north: f64) -> String {
    format!(
        r#"{{"type":"Polygon","coordinates":[[[{west},{south}],[{east},{south}],[{east},{north}],[{west},{north}],[{west},{south}]]]}}"#
    )
}

/// A street with community `east` of two grids side by side: `g1` (106.0–106.1) and `g2`
/// (106.1–106.2), between latitudes 35.0 and 35.1; and a household in `g1`.
pub async fn east_street(channel: Channel) -> String {
    use civic_proto::grid::grid_service_client::GridServiceClient;
    use civic_proto::grid::roster_service_client::RosterServiceClient;
    use civic_proto::grid::*;
    let admin = || token("admin", &[Role::Admin], "zhongjie");
    let mut grids = GridServiceClient::new(channel.clone());
    grids
        .create_community(with_token(
            CreateCommunityRequest {
                parent: "streets/zhongjie".into(),
                community: Some(Community { display_name: "东苑社区".into(), ..Default::default() }),
                community_id: "east".into(),
                request_id: String::new(),
            },
            &admin(),
        ))
        .await
        .expect("community");
    for (id, west, worker) in [("g1", 106.0, "gw-1"), ("g2", 106.1, "gw-2")] {
        grids
            .create_grid(with_token(
                CreateGridRequest {
                    parent: "streets/zhongjie/communities/east".into(),
                    grid: Some(Grid {
                        display_name: format!("网格 {id}"),
                        boundary: rect(west, 35.0, west + 0.1, 35.1),
                        workers: vec![Assignment { worker: format!("users/{worker}"), ..Default::default() }],
                        ..Default::default()
                    }),
                    grid_id: id.into(),
                    request_id: String::new(),
                },
                &admin(),
            ))
            .await
            .expect("grid");
    }
    let household = RosterServiceClient::new(channel)
        .create_household(with_token(
            CreateHouseholdRequest {
                parent: "streets/zhongjie".into(),
                household: Some(Household {
                    building: "1号楼".into(),
                    address: "1单元 101".into(),
                    location: Some(Point { latitude: 35.05, longitude: 106.05 }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin(),
        ))
        .await
        .expect("household")
        .into_inner();
    household.name
}
