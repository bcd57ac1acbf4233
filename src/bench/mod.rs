//! `civic bench`: named load scenarios against a civic it starts itself (all-in-one or split,
//! SQLite or PostgreSQL) or against given addresses, on loopback. Figures are ratios to a
//! baseline measured in the same run on the same server with the same client and concurrency
//! — grpc.health.v1 `Check`, the cheapest call the server answers — so they compare across
//! machines. See docs/performance.md.

mod assessment;
mod grid;
mod issues;
mod load;
mod server;
mod volunteer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use civic_kit::auth::{AuthSettings, Principal, Role};
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use civic_proto::catalogue::desk_service_client::DeskServiceClient;
use civic_proto::catalogue::{
    Application, CreateApplicationRequest, GetServiceItemRequest, ListServiceItemsRequest, SearchServiceItemsRequest,
};
use http_body_util::{BodyExt, Full};
use load::{Call, Shape, Stats};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// The scenarios that need the whole of civic in one process (the split set-up starts the
/// catalogue and a gateway only): the grid street of a thousand grids, the issues placed by it.
const ALL_IN_ONE: &[&str] = &[
    "grid-locate",
    "grid-due",
    "grid-import",
    "issue-list",
    "issue-create",
    "volunteer-recommend",
    "volunteer-assign",
    "assessment-recompute",
];

/// The scenarios, in the order `all` runs them: `desk-create` last, since the thousands of
/// events it leaves for the relay to publish would otherwise fall into the next measurement.
const SCENARIOS: &[&str] = &[
    "catalogue-get",
    "catalogue-search",
    "gateway-get",
    "grid-index",
    "grid-locate",
    "grid-due",
    "issue-list",
    "volunteer-recommend",
    "volunteer-assign",
    "assessment-recompute",
    "mixed",
    "grid-import",
    "desk-create",
    "issue-create",
];

/// `civic bench` options.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A scenario (catalogue-get, catalogue-search, gateway-get, grid-index, grid-locate,
    /// grid-due, issue-list, volunteer-recommend, volunteer-assign, assessment-recompute,
    /// grid-import, desk-create,
    /// issue-create, mixed) or `all`.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// What to start: every service in one process, or the catalogue and a gateway apart.
    #[arg(long, value_parser = ["all", "split"], default_value = "all")]
    mode: String,
    /// A PostgreSQL URL to run the started civic on (a fresh schema set); SQLite when absent.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Measure a running civic at this gRPC address instead of starting one (with --http-addr,
    /// --dev-key, and --server-pid for its memory).
    #[arg(long, value_name = "ADDR", requires_all = ["http_addr", "dev_key"])]
    grpc_addr: Option<String>,
    /// The running civic's HTTP address.
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<String>,
    /// The running civic's dev key, to sign the benchmark's tokens.
    #[arg(long, value_name = "KEY")]
    dev_key: Option<String>,
    /// The running civic's process id, to report its memory.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Warm-up seconds per scenario, not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// At most this many measured requests per scenario.
    #[arg(long, default_value_t = 10_000_000)]
    requests: u64,
    /// Callers at once in the closed-loop scenarios.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the gRPC callers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// `mixed`: writes per second through the gateway.
    #[arg(long, default_value_t = 50.0)]
    write_rate: f64,
    /// `mixed`: reads per second through the gateway.
    #[arg(long, default_value_t = 2000.0)]
    read_rate: f64,
    /// Pin the server to CPU 0 and the benchmark to CPU 1.
    #[arg(long)]
    pin: bool,
    /// One JSON object per scenario instead of the summary.
    #[arg(long)]
    json: bool,
}

/// Runs `civic bench` on a runtime of its own (pinned when asked).
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    if args.pin && std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
        bail!("--pin needs two CPUs");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if args.pin {
        builder.on_thread_start(|| {
            core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
        });
        core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
    }
    builder.build().context("starting the benchmark's runtime")?.block_on(run(args))
}

/// The server under test and how to reach it.
struct Target {
    grpc: Vec<Channel>,
    http: std::net::SocketAddr,
    pids: Vec<u32>,
    dev_key: String,
    database_url: String,
    // Dropped in this order: the processes, then their data.
    _processes: Vec<server::Process>,
    _dir: Option<tempfile::TempDir>,
    _scratch: Option<civic_kit::db::ScratchDatabase>,
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scenarios: Vec<&str> = if args.scenario == "all" {
        SCENARIOS.to_vec()
    } else if let Some(s) = SCENARIOS.iter().find(|s| **s == args.scenario) {
        vec![*s]
    } else {
        bail!("no scenario {:?}; the scenarios are {} and all", args.scenario, SCENARIOS.join(", "));
    };
    let target = start(&args).await?;
    let shape = Shape {
        concurrency: args.concurrency.max(1),
        warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
        duration: Duration::from_secs_f64(args.seconds.max(0.1)),
        max_requests: args.requests.max(1),
    };
    let fixtures = Fixtures::load(&target).await?;

    // The baseline: health Check, same server, same client, same concurrency.
    let (baseline, _) = measure(&target, shape, health(&target)).await;
    if baseline.requests == 0 {
        bail!("the baseline failed: {}", baseline.first_error.unwrap_or_default());
    }
    if !args.json {
        println!(
            "civic bench: mode {}, {}, {} callers, {:.0} s each after {:.0} s warm-up",
            args.mode,
            if target.database_url.is_empty() { "SQLite" } else { "PostgreSQL" },
            shape.concurrency,
            args.seconds,
            args.warmup
        );
        println!("baseline grpc.health.v1 Check: {:.0} req/s, p99 {:.2} ms", baseline.rps(), baseline.ms(0.99));
        println!(
            "{:<18} {:>9} {:>7} {:>9} {:>8} {:>8} {:>6} {:>8}",
            "scenario", "requests", "errors", "req/s", "p50 ms", "p99 ms", "ratio", "RSS MB"
        );
    }
    // The grid scenarios draw a street of a thousand grids first (all-in-one: the split set-up
    // starts the catalogue alone).
    let grid_setup = if scenarios.iter().any(|s| ALL_IN_ONE.contains(s) || *s == "mixed") && args.mode != "split" {
        Some(grid::Setup::load(&target).await?)
    } else {
        None
    };
    for scenario in scenarios {
        if ALL_IN_ONE.contains(&scenario) && grid_setup.is_none() {
            if !args.json {
                println!("{scenario:<18} (all-in-one only)");
            }
            continue;
        }
        let (stats, rss, extra) = match scenario {
            "grid-index" => {
                let (stats, extra) = grid::index(args.seconds);
                (stats, None, extra)
            }
            "grid-import" => {
                let sampler = Sampler::start(&target);
                let (stats, extra) = grid::import(&target).await?;
                (stats, sampler.stop(), extra)
            }
            "grid-locate" | "grid-due" => {
                let Some(setup) = grid_setup.as_ref() else { continue };
                if scenario == "grid-locate" {
                    with_rss(measure(&target, shape, grid::locate(&target, setup)).await)
                } else {
                    let (stats, rss) = measure(&target, shape, grid::due(&target, setup)).await;
                    (stats, rss, setup.due_extra())
                }
            }
            "catalogue-get" => with_rss(measure(&target, shape, catalogue_get(&target, &fixtures)).await),
            "catalogue-search" => with_rss(measure(&target, shape, catalogue_search(&target)).await),
            "gateway-get" => with_rss(measure(&target, shape, gateway_get(&target, &fixtures)).await),
            "issue-list" => with_rss(measure(&target, shape, issues::list(&target)?).await),
            "volunteer-recommend" => with_rss(measure(&target, shape, volunteer::recommend(&target).await?).await),
            "volunteer-assign" => {
                let sampler = Sampler::start(&target);
                let (stats, extra) = volunteer::assign(&target, 5).await?;
                (stats, sampler.stop(), extra)
            }
            "assessment-recompute" => {
                let sampler = Sampler::start(&target);
                let (stats, extra) = assessment::recompute(&target, 5).await?;
                (stats, sampler.stop(), extra)
            }
            "issue-create" => {
                let (stats, rss) = measure(&target, shape, issues::create(&target)?).await;
                let raw = issues::raw_inserts(&target, shape).await?;
                let extra = json!({
                    "raw_insert_rps": round(raw.rps()),
                    "raw_ratio": round3(stats.rps() / raw.rps().max(1e-9)),
                });
                (stats, rss, extra)
            }
            "desk-create" => {
                let (stats, rss) = measure(&target, shape, desk_create(&target, &fixtures)).await;
                let raw = raw_inserts(&target, shape, &fixtures).await?;
                let extra = json!({
                    "raw_insert_rps": round(raw.rps()),
                    "raw_ratio": round3(stats.rps() / raw.rps().max(1e-9)),
                });
                (stats, rss, extra)
            }
            _ => {
                let rates = (args.write_rate, args.read_rate);
                mixed(&target, shape, &fixtures, rates, grid_setup.as_ref()).await?
            }
        };
        let report = report(scenario, &stats, &baseline, rss, extra);
        if args.json {
            println!("{report}");
        } else {
            println!(
                "{:<18} {:>9} {:>7} {:>9.0} {:>8.2} {:>8.2} {:>6.2} {:>8}",
                scenario,
                stats.requests,
                stats.errors,
                stats.rps(),
                stats.ms(0.5),
                stats.ms(0.99),
                report["ratio"].as_f64().unwrap_or_default(),
                rss.map(|r| format!("{r:.0}")).unwrap_or_else(|| "-".into())
            );
            if let Some(extra) = report.as_object() {
                for key in [
                    "raw_insert_rps",
                    "raw_ratio",
                    "read_p99_ms",
                    "write_p99_ms",
                    "bare_rps",
                    "households",
                    "places",
                    "columns",
                    "optimal",
                    "total_cost",
                    "greedy_cost",
                    "below_greedy",
                    "same_optimum",
                    "end_to_end_s",
                    "bare_solver_s",
                    "solver_ratio",
                ] {
                    if let Some(v) = extra.get(key) {
                        println!("    {key}: {v}");
                    }
                }
            }
            if let Some(error) = &stats.first_error {
                println!("    first error: {error}");
            }
        }
    }
    Ok(())
}

fn with_rss((stats, rss): (Stats, Option<f64>)) -> (Stats, Option<f64>, Value) {
    (stats, rss, json!({}))
}

fn round(x: f64) -> f64 {
    x.round()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn report(scenario: &str, stats: &Stats, baseline: &Stats, rss: Option<f64>, extra: Value) -> Value {
    let mut report = json!({
        "scenario": scenario,
        "requests": stats.requests,
        "errors": stats.errors,
        "rps": round(stats.rps()),
        "p50_ms": round3(stats.ms(0.5)),
        "p99_ms": round3(stats.ms(0.99)),
        "baseline_rps": round(baseline.rps()),
        "ratio": round3(stats.rps() / baseline.rps()),
        "server_rss_mb": rss.map(|r| (r * 10.0).round() / 10.0),
    });
    if let (Some(report), Value::Object(extra)) = (report.as_object_mut(), extra) {
        report.extend(extra);
    }
    report
}

/// Samples the resident memory of the server's processes every 200 ms until dropped; the
/// peak is what a run reports.
struct Sampler {
    peak_kb: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    measured: bool,
}

impl Sampler {
    fn start(target: &Target) -> Self {
        let pids = target.pids.clone();
        let peak_kb = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let peak = peak_kb.clone();
        let task = tokio::spawn(async move {
            loop {
                let rss: Option<f64> = pids.iter().map(|p| server::rss_mb(*p)).sum();
                if let Some(rss) = rss {
                    peak.fetch_max((rss * 1024.0) as u64, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { peak_kb, task, measured: !target.pids.is_empty() }
    }

    /// The peak in MiB, or `None` when the server's processes are not known.
    fn stop(self) -> Option<f64> {
        self.task.abort();
        self.measured.then(|| self.peak_kb.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0)
    }
}

/// Runs a closed loop, sampling the server's memory while it runs.
async fn measure(target: &Target, shape: Shape, call: Call) -> (Stats, Option<f64>) {
    let sampler = Sampler::start(target);
    let stats = load::closed_loop(shape, call).await;
    (stats, sampler.stop())
}

/// Starts the civic under test, or connects to the given one.
async fn start(args: &BenchArgs) -> anyhow::Result<Target> {
    let connect = |addr: std::net::SocketAddr, n: usize| -> anyhow::Result<Vec<Channel>> {
        (0..n.max(1))
            .map(|_| Ok(Channel::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect_lazy()))
            .collect()
    };
    if let (Some(grpc), Some(http), Some(key)) = (&args.grpc_addr, &args.http_addr, &args.dev_key) {
        let grpc: std::net::SocketAddr = grpc.parse().context("--grpc-addr")?;
        let target = Target {
            grpc: connect(grpc, args.connections)?,
            http: http.parse().context("--http-addr")?,
            pids: args.server_pid.into_iter().collect(),
            dev_key: key.clone(),
            database_url: args.database_url.clone().unwrap_or_default(),
            _processes: Vec::new(),
            _dir: None,
            _scratch: None,
        };
        await_serving(&target.grpc[0]).await?;
        return Ok(target);
    }
    for addr in [&args.grpc_addr, &args.http_addr] {
        if let Some(a) = addr
            && !a.starts_with("127.")
            && !a.starts_with("[::1]")
            && !a.starts_with("localhost")
        {
            bail!("the benchmark runs on loopback only: {a}");
        }
    }
    let dir = tempfile::tempdir()?;
    let dev_key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    // On PostgreSQL, a fresh database of its own, dropped at the end.
    let scratch = match &args.database_url {
        Some(url) if !url.is_empty() => Some(civic_kit::db::ScratchDatabase::create(url).await?),
        _ => None,
    };
    let database_url = scratch.as_ref().map(|d| d.url().to_owned()).unwrap_or_default();
    let env = Vec::new();
    let cpu = args.pin.then_some(0);
    let mut processes = Vec::new();
    if args.mode == "split" {
        let service = server::start(server::Launch {
            target: "catalogue",
            data_dir: &dir.path().join("catalogue"),
            dev_key: &dev_key,
            database_url: &database_url,
            env: env.clone(),
            seed: true,
            cpu,
        })?;
        let upstream = format!("[\"http://{}\"]", service.grpc);
        let gateway = server::start(server::Launch {
            target: "gateway",
            data_dir: &dir.path().join("gateway"),
            dev_key: &dev_key,
            database_url: "",
            env: vec![("CIVIC_DIRECTORY__ADDRESSES__CATALOGUE".into(), upstream)],
            seed: false,
            cpu,
        })?;
        processes.push(service);
        processes.push(gateway);
    } else {
        processes.push(server::start(server::Launch {
            target: "all",
            data_dir: dir.path(),
            dev_key: &dev_key,
            database_url: &database_url,
            env,
            seed: true,
            cpu,
        })?);
    }
    // gRPC goes to the service itself; HTTP to the gateway (the last process).
    let grpc_addr = processes[0].grpc;
    let http = processes.last().map(|p| p.http).context("a process")?;
    let target = Target {
        grpc: connect(grpc_addr, args.connections)?,
        http,
        pids: processes.iter().map(server::Process::pid).collect(),
        dev_key,
        database_url,
        _processes: processes,
        _dir: Some(dir),
        _scratch: scratch,
    };
    await_serving(&target.grpc[0]).await?;
    if args.mode == "split" {
        await_http_ready(target.http).await?;
    }
    Ok(target)
}

impl Target {
    /// The database of `service` in the civic the benchmark started (where a scenario writes
    /// what would take the whole run to make through the API).
    async fn service_db(&self, service: &str) -> anyhow::Result<civic_kit::db::Db> {
        let dir = self._dir.as_ref().context("a civic the benchmark started: its database is not known otherwise")?;
        let mut config = civic_kit::config::Config::default();
        config.data_dir = dir.path().to_path_buf();
        config.database_url = self.database_url.clone();
        civic_kit::db::Db::connect(&config.database_url_for(service), service, 2)
            .await
            .with_context(|| format!("opening the {service} service's database"))
    }
}

async fn await_serving(channel: &Channel) -> anyhow::Result<()> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for _ in 0..600 {
        if let Ok(r) = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await
            && r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server did not become SERVING within 60 s")
}

async fn await_http_ready(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let client = http_client();
    for _ in 0..600 {
        let request = http::Request::get(format!("http://{addr}/readyz")).body(Full::new(Bytes::new()))?;
        if let Ok(r) = client.request(request).await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the gateway did not become ready within 60 s")
}

type HttpClient = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// What the scenarios read and write: the published items, and tokens.
struct Fixtures {
    items: Vec<String>,
    staff: String,
}

impl Fixtures {
    async fn load(target: &Target) -> anyhow::Result<Self> {
        let mut client = CatalogueServiceClient::new(target.grpc[0].clone());
        let request = ListServiceItemsRequest { parent: street(), page_size: 1000, ..Default::default() };
        let items: Vec<String> = client
            .list_service_items(request)
            .await
            .context("listing the published items")?
            .into_inner()
            .service_items
            .into_iter()
            .map(|i| i.name)
            .collect();
        if items.is_empty() {
            bail!("the server has no published items in {}; seed it (civic seed)", street());
        }
        Ok(Self { items, staff: mint(target, "bench-staff", Role::Cadre, civic_catalogue::ZHONGJIE_STREET)? })
    }
}

/// A development token for `subject` with `role` in `street`, signed with the server's key.
fn mint(target: &Target, subject: &str, role: Role, street: &str) -> anyhow::Result<String> {
    let settings = AuthSettings { dev_key: Some(target.dev_key.clone()), ..Default::default() };
    let principal = Principal {
        subject: subject.into(),
        roles: vec![role],
        street: Some(street.into()),
        community: None,
        grids: Vec::new(),
    };
    civic_kit::auth::mint_dev_token(&settings, &principal, Duration::from_secs(3600))
        .map_err(|e| anyhow::anyhow!("minting a token: {e}"))
}

fn street() -> String {
    format!("streets/{}", civic_catalogue::ZHONGJIE_STREET)
}

fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn health(target: &Target) -> Call {
    let channels = target.grpc.clone();
    Arc::new(move |n| {
        let mut client =
            tonic_health::pb::health_client::HealthClient::new(channels[n as usize % channels.len()].clone());
        Box::pin(async move {
            client
                .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                .await
                .map(|_| ())
                .map_err(|s| s.to_string())
        })
    })
}

fn catalogue_get(target: &Target, fixtures: &Fixtures) -> Call {
    let channels = target.grpc.clone();
    let items = Arc::new(fixtures.items.clone());
    Arc::new(move |n| {
        let mut client = CatalogueServiceClient::new(channels[n as usize % channels.len()].clone());
        let name = items[n as usize % items.len()].clone();
        Box::pin(async move {
            client.get_service_item(GetServiceItemRequest { name }).await.map(|_| ()).map_err(|s| s.to_string())
        })
    })
}

/// What residents type: Chinese words, pinyin, initials, English.
const QUERIES: &[&str] =
    &["低保", "老年", "证明", "残疾", "就业", "dibao", "yanglao", "jz", "wsj", "elderly", "法律", "志愿"];

fn catalogue_search(target: &Target) -> Call {
    let channels = target.grpc.clone();
    Arc::new(move |n| {
        let mut client = CatalogueServiceClient::new(channels[n as usize % channels.len()].clone());
        let query = QUERIES[n as usize % QUERIES.len()].to_owned();
        Box::pin(async move {
            let request = SearchServiceItemsRequest { parent: street(), query, page_size: 10, ..Default::default() };
            client.search_service_items(request).await.map(|_| ()).map_err(|s| s.to_string())
        })
    })
}

fn gateway_get(target: &Target, fixtures: &Fixtures) -> Call {
    let client = http_client();
    let base = format!("http://{}/v1/", target.http);
    let items = Arc::new(fixtures.items.clone());
    Arc::new(move |n| {
        let client = client.clone();
        let url = format!("{base}{}", items[n as usize % items.len()]);
        Box::pin(async move { http_call(&client, http::Method::GET, &url, "", Bytes::new()).await })
    })
}

async fn http_call(
    client: &HttpClient,
    method: http::Method,
    url: &str,
    token: &str,
    body: Bytes,
) -> Result<(), String> {
    let mut request = http::Request::builder().method(method).uri(url);
    if !token.is_empty() {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if !body.is_empty() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])))
    }
}

fn application(fixtures: &Fixtures, n: u64) -> Application {
    Application {
        service_item: fixtures.items[n as usize % fixtures.items.len()].clone(),
        applicant: format!("users/resident-{}", n % 5000),
        ..Default::default()
    }
}

fn desk_create(target: &Target, fixtures: &Fixtures) -> Call {
    let channels = target.grpc.clone();
    let staff = fixtures.staff.clone();
    let drafts: Arc<Vec<Application>> = Arc::new((0..64).map(|n| application(fixtures, n)).collect());
    Arc::new(move |n| {
        let mut client = DeskServiceClient::new(channels[n as usize % channels.len()].clone());
        let request = CreateApplicationRequest {
            parent: street(),
            application: Some(drafts[n as usize % drafts.len()].clone()),
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let request = bearer(request, &staff);
        Box::pin(async move { client.create_application(request).await.map(|_| ()).map_err(|s| s.to_string()) })
    })
}

/// The rows CreateApplication writes — the case, its event in the outbox, the saved answer —
/// inserted straight through sqlx in one transaction each, on a fresh database of the same
/// kind and schema, from the same number of callers: what the desk costs above its storage.
async fn raw_inserts(target: &Target, shape: Shape, fixtures: &Fixtures) -> anyhow::Result<Stats> {
    use prost::Message;
    let (_dir, db) = raw_database(target, "bench_raw", civic_catalogue::MIGRATIONS).await?;
    let answer = application(fixtures, 0).encode_to_vec();
    let db2 = db.clone();
    let call: Call = Arc::new(move |n| {
        let db = db2.clone();
        let body = answer.clone();
        Box::pin(async move {
            let now = civic_kit::time::now_text();
            let id = uuid::Uuid::now_v7().to_string();
            let run = async {
                let mut tx = db.begin().await.map_err(|e| e.to_string())?;
                sqlx::query(
                    "insert into applications (street, application_id, applicant, handler, state, due_time, version, body, created_at, updated_at)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                )
                .bind("zhongjie")
                .bind(format!("a{n}-{id}"))
                .bind(format!("users/resident-{}", n % 5000))
                .bind("users/bench-staff")
                .bind("RECEIVED")
                .bind(&now)
                .bind(1_i64)
                .bind(body.clone())
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
                let event = RawEvent {
                    id: &id,
                    topic: <civic_proto::catalogue::ApplicationChanged as civic_proto::Event>::TOPIC,
                    key: format!("streets/zhongjie/applications/a{n}"),
                    caller: "users/bench-staff".into(),
                    method: "CreateApplication",
                };
                raw_event_and_answer(&mut tx, event, body, &now).await?;
                tx.commit().await.map_err(|e| e.to_string())
            };
            run.await
        })
    });
    let stats = load::closed_loop(shape, call).await;
    db.close().await;
    Ok(stats)
}

/// A fresh database of the server's kind for raw inserts, migrated with `migrations`: a file
/// of its own (kept while the directory lives), or a schema `name` of its own beside the
/// server's.
async fn raw_database(
    target: &Target,
    name: &str,
    migrations: &[civic_kit::db::Migration],
) -> anyhow::Result<(tempfile::TempDir, civic_kit::db::Db)> {
    let dir = tempfile::tempdir()?;
    let mut config = civic_kit::config::Config::default();
    config.data_dir = dir.path().to_path_buf();
    config.database_url = target.database_url.clone();
    let db = civic_kit::db::Db::connect(&config.database_url_for(name), name, config.server.db_max_connections)
        .await
        .context("opening the raw-insert database")?;
    db.migrate(migrations).await.context("migrating the raw-insert database")?;
    Ok((dir, db))
}

/// What a raw write adds beside its rows: its event in the outbox and its saved answer.
struct RawEvent<'a> {
    id: &'a str,
    topic: &'static str,
    key: String,
    caller: String,
    method: &'static str,
}

/// Inserts the outbox row and the saved answer a write makes, in `tx`, as a service's writer
/// does: the raw side of a `…-create` ratio.
async fn raw_event_and_answer(
    tx: &mut civic_kit::db::Tx,
    event: RawEvent<'_>,
    body: Vec<u8>,
    now: &str,
) -> Result<(), String> {
    sqlx::query(
        "insert into civic_outbox (id, topic, event_key, payload, traceparent, created_at, updated_at, published_at)
         values ($1, $2, $3, $4, $5, $6, $6, null)",
    )
    .bind(event.id)
    .bind(event.topic)
    .bind(event.key)
    .bind(body.clone())
    .bind("")
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| e.to_string())?;
    sqlx::query(
        "insert into civic_idempotency (caller, method, request_id, request_hash, response, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(event.caller)
    .bind(event.method)
    .bind(event.id)
    .bind("0")
    .bind(body)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// The city's design load through the gateway, open loop, reads and writes at fixed rates side
/// by side. With every service in the process (`grid` set up), in the proportions of a working
/// day: writes are grid workers' visits (half), residents' CreateIssue (placed by LocateGrid)
/// and CreateApplication at the desk (a quarter each); reads are GetServiceItem, with one in
/// four a grid worker's list of issues and one in forty a worker's due visits. Otherwise (the
/// split set-up runs the catalogue alone) the catalogue's only.
async fn mixed(
    target: &Target,
    shape: Shape,
    fixtures: &Fixtures,
    (write_rate, read_rate): (f64, f64),
    grid: Option<&grid::Setup>,
) -> anyhow::Result<(Stats, Option<f64>, Value)> {
    let items = gateway_get(target, fixtures);
    let client = http_client();
    let url = format!("http://{}/v1/{}/applications", target.http, street());
    let staff = fixtures.staff.clone();
    let drafts: Arc<Vec<Bytes>> = Arc::new(
        (0..64).map(|n| Bytes::from(serde_json::to_vec(&application(fixtures, n)).unwrap_or_default())).collect(),
    );
    let applications: Call = Arc::new(move |n| {
        let client = client.clone();
        let url = format!("{url}?requestId={}", uuid::Uuid::new_v4());
        let body = drafts[n as usize % drafts.len()].clone();
        let staff = staff.clone();
        Box::pin(async move { http_call(&client, http::Method::POST, &url, &staff, body).await })
    });
    let across = grid.is_some();
    let (reads, writes): (Call, Call) = if let Some(setup) = grid {
        let (lists, creates) = (issues::list_http(target)?, issues::create(target)?);
        let (visits, due) = (grid::visit_http(target, setup)?, grid::due_http(target, setup));
        let reads: Call = Arc::new(move |n| match (n % 40, n % 4) {
            (0, _) => due(n),
            (_, 3) => lists(n),
            _ => items(n),
        });
        let writes: Call = Arc::new(move |n| match n % 4 {
            0 => applications(n),
            1 => creates(n),
            _ => visits(n),
        });
        (reads, writes)
    } else {
        (items, applications)
    };
    let sampler = Sampler::start(target);
    let (read_stats, write_stats) = tokio::join!(
        load::open_loop(read_rate, shape, 10_000, reads),
        load::open_loop(write_rate, shape, 10_000, writes)
    );
    let rss = sampler.stop();
    let all = load::merge(&[&read_stats, &write_stats]);
    let extra = json!({
        "read_rps": round(read_stats.rps()),
        "write_rps": round(write_stats.rps()),
        "read_p99_ms": round3(read_stats.ms(0.99)),
        "write_p99_ms": round3(write_stats.ms(0.99)),
        "services": if across { "catalogue, issues, grid" } else { "catalogue" },
    });
    Ok((all, rss, extra))
}
