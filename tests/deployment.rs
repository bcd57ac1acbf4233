//! The whole split deployment on one machine, as it runs on a cluster: every service as two
//! processes of the `civic` binary and a gateway as a third kind, on PostgreSQL and NATS
//! JetStream, each process exporting its spans over OTLP to a receiver in this test.
//!
//! One scenario crosses the services through the gateway — a resident files an issue at a
//! place, the issues service asks the grid service which grid holds it, the issue's event
//! reaches the grid service's consumer, the grid's worker acknowledges, triages and resolves
//! it, the resident says it is fixed — and one trace id must cross gateway → issues → grid →
//! the grid's event consumer. Then one replica of each service is killed (`SIGKILL`) while
//! residents keep filing issues through the gateway, retrying with the same request id as the
//! app does: every issue acknowledged is there exactly once, and the surviving replicas
//! answer.
//!
//! It needs PostgreSQL and NATS (`CIVIC_TEST_POSTGRES_URL`, `CIVIC_TEST_NATS_URL`) and starts
//! eleven processes, so `cargo test` leaves it out (ignored) and `make test-deployment` runs it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use civic_kit::auth::Role;
use civic_proto::grid::GetGridRequest;
use civic_proto::grid::grid_service_client::GridServiceClient;
use civic_proto::issues::issue::{Source, State, Triage};
use civic_proto::issues::issue_service_client::IssueServiceClient;
use civic_proto::issues::*;
use common::{DEV_KEY, grid_token, token, with_token};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::sync::Mutex;
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";
const SERVICES: [&str; 5] = ["grid", "issues", "volunteer", "assessment", "catalogue"];

/// A span as the receiver keeps it: the process's `service.name`, its trace id (hex) and name.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    trace: String,
    name: String,
}

/// An OTLP trace receiver: keeps every span every process sends.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Seen>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().await;
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                let trace = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                spans.push(Seen { service: service.clone(), trace, name: span.name });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// One `civic serve` process; killed when dropped.
struct Process {
    child: Child,
    grpc: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Kills it at once, as a node that goes away does.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

/// What every process of the deployment shares, and where each service's replicas listen.
struct Deployment {
    dir: tempfile::TempDir,
    database_url: String,
    nats_url: String,
    namespace: String,
    otlp: String,
    addresses: BTreeMap<String, Vec<SocketAddr>>,
}

impl Deployment {
    /// The configuration file of one process listening for gRPC at `grpc`: the shared settings
    /// and the directory of every replica.
    fn config(&self, name: &str, grpc: SocketAddr) -> std::path::PathBuf {
        let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let lookup: String = key.chars().rev().collect();
        let mut directory = String::new();
        for (service, addrs) in &self.addresses {
            let list: Vec<String> = addrs.iter().map(|a| format!("\"http://{a}\"")).collect();
            directory.push_str(&format!("{service} = [{}]\n", list.join(", ")));
        }
        let text = format!(
            r#"grpc_addr = "{grpc}"
http_addr = "127.0.0.1:0"
data_dir = "{data}"
database_url = "{db}"
nats_url = "{nats}"
nats_stream = "{stream}"
nats_subject_prefix = "{prefix}"
secret_key = "test-page-token-secret-of-32-bytes-at-least"

[log]
format = "json"
level = "warn,civic=info"

[auth]
dev_key = "{DEV_KEY}"
dev_mode = true

[server]
outbox_poll_ms = 100
shutdown_grace_ms = 2000

[directory]
resolve_every_ms = 500

[directory.addresses]
{directory}
[grid]
data_keys = {{ t1 = "{key}" }}
active_data_key = "t1"
lookup_key = "{lookup}"
demo_households = 0

[issues]
demo_issues = 0

[volunteer]
demo_volunteers = 0
"#,
            data = self.dir.path().display(),
            db = self.database_url,
            nats = self.nats_url,
            stream = self.namespace.to_uppercase(),
            prefix = self.namespace,
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write the configuration");
        path
    }

    /// Starts `target` at `grpc` and waits for its addresses (the `listening` line it logs).
    fn start(&self, target: &str, replica: usize, grpc: SocketAddr) -> Process {
        let config = self.config(&format!("{target}-{replica}"), grpc);
        let mut child = Command::new(env!("CARGO_BIN_EXE_civic"))
            .args(["serve", &format!("--target={target}"), "--config"])
            .arg(&config)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &self.otlp)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env_remove("CIVIC_DATABASE_URL")
            .env_remove("CIVIC_NATS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start civic");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let listening = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("\"listening\""))
            .unwrap_or_else(|| panic!("{target} {replica} exited before listening"));
        // The rest of its log is read, so the pipe never fills and blocks it: warnings and
        // errors go to the test's output (shown when it fails), the rest is dropped.
        let who = format!("{target}-{replica}");
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
                    eprintln!("{who}: {line}");
                }
            }
        });
        let line: serde_json::Value = serde_json::from_str(&listening).expect("a JSON log line");
        let addr = |key: &str| -> SocketAddr {
            let fields = line.get("fields").unwrap_or(&line);
            fields[key].as_str().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{key} in {listening}"))
        };
        Process { child, grpc: addr("grpc_addr") }
    }
}

/// A free port on loopback for a process to listen on (free when asked: the process binds it
/// a moment later).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Waits until the process at `addr` reports SERVING.
async fn serving(addr: SocketAddr) {
    let channel = Channel::from_shared(format!("http://{addr}")).expect("url").connect_lazy();
    common::await_serving(channel, "").await;
}

fn admin() -> String {
    token("admin-1", &[Role::Admin], "zhongjie")
}

/// `request` carrying W3C trace context: trace `trace`, sampled.
fn traced<T>(mut request: tonic::Request<T>, trace: &str) -> tonic::Request<T> {
    request.metadata_mut().insert("traceparent", format!("00-{trace}-b7ad6b7169203331-01").parse().expect("ascii"));
    request
}

/// Waits until trace `trace` has every (process, span name) of `wanted`.
async fn crossed(receiver: &Receiver, trace: &str, wanted: &[(&str, &str)], what: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let ours: BTreeSet<(String, String)> = receiver
            .spans
            .lock()
            .await
            .iter()
            .filter(|s| s.trace == trace)
            .map(|s| (s.service.clone(), s.name.clone()))
            .collect();
        if wanted.iter().all(|(service, name)| ours.contains(&((*service).to_owned(), (*name).to_owned()))) {
            return;
        }
        assert!(Instant::now() < until, "trace {trace} did not cross {what}; its spans: {ours:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue `n`, at its own place in `g1` (a hundred metres and more from the others', so none is
/// taken for another's duplicate).
fn issue(n: usize) -> Issue {
    Issue {
        source: Source::App as i32,
        category: "facilities".into(),
        title: format!("路灯不亮 {n}"),
        description: "小区东侧路灯不亮两周了".into(),
        location: Some(Point {
            latitude: 35.005 + 0.002 * (n / 45) as f64,
            longitude: 106.005 + 0.002 * (n % 45) as f64,
        }),
        ..Default::default()
    }
}

/// Files issue `n` as the app does: the same request id until an answer comes, retrying what a
/// replica going away could not answer.
async fn file(channel: Channel, n: usize, resident: &str) -> Issue {
    let mut client = IssueServiceClient::new(channel);
    let request = CreateIssueRequest { parent: STREET.into(), issue: Some(issue(n)), request_id: format!("file-{n}") };
    let mut last = None;
    for _ in 0..40 {
        match client.create_issue(with_token(request.clone(), resident)).await {
            Ok(answer) => return answer.into_inner(),
            Err(status) if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown) => {
                last = Some(status);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(status) => panic!("issue {n}: {status:?}"),
        }
    }
    panic!("issue {n} was never answered: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "eleven processes on PostgreSQL and NATS JetStream: `make test-deployment`"]
async fn the_split_deployment_serves_through_the_loss_of_a_replica_of_each_service_and_one_trace_crosses_it() {
    let postgres = civic_kit::testing::postgres_from_env()
        .await
        .expect("CIVIC_TEST_POSTGRES_URL: a PostgreSQL server for the deployment (make test-deployment)");
    let nats_url = std::env::var("CIVIC_TEST_NATS_URL")
        .expect("CIVIC_TEST_NATS_URL: a NATS JetStream server for the deployment (make test-deployment)");

    // The OTLP receiver every process exports to.
    let receiver = Receiver::default();
    let otlp_addr = free_port();
    tokio::spawn(
        tonic::transport::Server::builder().add_service(TraceServiceServer::new(receiver.clone())).serve(otlp_addr),
    );

    let mut deployment = Deployment {
        dir: tempfile::tempdir().expect("temp dir"),
        database_url: postgres.url().to_owned(),
        nats_url,
        namespace: format!("deploy{}", uuid::Uuid::new_v4().simple()),
        otlp: format!("http://{otlp_addr}"),
        addresses: BTreeMap::new(),
    };

    // Each service twice, every process knowing every replica's address from the start; one
    // replica after the other (the first migrates its service's database).
    for name in SERVICES {
        deployment.addresses.insert(name.to_owned(), vec![free_port(), free_port()]);
    }
    let mut processes: Vec<Process> = Vec::new();
    for name in SERVICES {
        for replica in 0..2 {
            let process = deployment.start(name, replica, deployment.addresses[name][replica]);
            serving(process.grpc).await;
            processes.push(process);
        }
    }
    let gateway = deployment.start("gateway", 0, free_port());
    serving(gateway.grpc).await;
    let channel =
        Channel::from_shared(format!("http://{}", gateway.grpc)).expect("url").connect().await.expect("gateway");

    // A resident files an issue at a place, in a trace of their app's: the gateway calls the
    // issues service, which asks the grid service which grid holds the place.
    let household = common::east_street(channel.clone()).await;
    let resident = token("res-1", &[Role::Resident], "zhongjie");
    let worker = grid_token("gw-1", "g1");
    let mut issues = IssueServiceClient::new(channel.clone());
    let filing = "0af7651916cd43dd8448eb211c80319c";
    let request = CreateIssueRequest { parent: STREET.into(), issue: Some(issue(0)), request_id: "traced".into() };
    let filed = issues.create_issue(traced(with_token(request, &resident), filing)).await.expect("file").into_inner();
    assert_eq!(filed.grid, format!("{STREET}/communities/east/grids/g1"), "placed by the grid service");
    let name = filed.name.clone();
    let acked = issues
        .acknowledge_issue(with_token(AcknowledgeIssueRequest { name: name.clone(), ..Default::default() }, &worker))
        .await
        .expect("acknowledge")
        .into_inner();
    issues
        .triage_issue(with_token(
            TriageIssueRequest {
                name: name.clone(),
                triage: Triage::FixAtOnce as i32,
                etag: acked.etag,
                ..Default::default()
            },
            &worker,
        ))
        .await
        .expect("triage");
    issues
        .resolve_issue(with_token(
            ResolveIssueRequest { name: name.clone(), resolution: "已更换灯泡".into(), ..Default::default() },
            &worker,
        ))
        .await
        .expect("resolve");
    let closed = issues
        .submit_issue_feedback(with_token(
            SubmitIssueFeedbackRequest { name: name.clone(), rating: 5, fixed: true, ..Default::default() },
            &resident,
        ))
        .await
        .expect("feedback")
        .into_inner();
    assert_eq!(closed.state(), State::Closed);
    crossed(
        &receiver,
        filing,
        &[("civic-gateway", "rpc"), ("civic-issues", "rpc"), ("civic-grid", "rpc")],
        "gateway → issues → grid",
    )
    .await;

    // The grid's worker records a visit with a problem, in another trace: the gateway calls the
    // grid service; its event reaches the issues service's consumer, which opens an issue; that
    // issue's event reaches the grid service's consumer, which links it to the problem.
    use civic_proto::grid::visit_service_client::VisitServiceClient;
    use civic_proto::grid::{CreateVisitRequest, GetVisitRequest, Problem, Visit, visit::Kind};
    let visiting = "4bf92f3577b34da6a3ce929d0e0e4736";
    let at = chrono::Utc::now() - chrono::Duration::minutes(30);
    let mut visits = VisitServiceClient::new(channel.clone());
    let request = CreateVisitRequest {
        parent: STREET.into(),
        visit: Some(Visit {
            household,
            kind: Kind::DoorToDoor as i32,
            visit_time: Some(pbjson_types::Timestamp { seconds: at.timestamp(), nanos: 0 }),
            problems: vec![Problem {
                category: "environment".into(),
                description: "楼道堆放杂物".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        visit_id: "v-traced".into(),
        request_id: String::new(),
    };
    let visit = visits.create_visit(traced(with_token(request, &worker), visiting)).await.expect("visit").into_inner();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = visits
            .get_visit(with_token(GetVisitRequest { name: visit.name.clone() }, &worker))
            .await
            .expect("the visit")
            .into_inner();
        if seen.problems.iter().all(|p| !p.issue.is_empty()) {
            break;
        }
        assert!(Instant::now() < until, "the visit's problem was never linked to an issue: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    crossed(
        &receiver,
        visiting,
        &[("civic-gateway", "rpc"), ("civic-grid", "rpc"), ("civic-issues", "consume"), ("civic-grid", "consume")],
        "gateway → grid → the issues service's consumer → the grid service's consumer",
    )
    .await;

    // Residents keep filing while one replica of each service goes away at once.
    let filing: Vec<_> = (1..=40)
        .map(|n| {
            let (channel, resident) = (channel.clone(), resident.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(25 * n as u64)).await;
                file(channel, n, &resident).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for slot in (0..processes.len()).step_by(2) {
        processes[slot].kill();
    }
    let mut acknowledged = Vec::new();
    for task in filing {
        acknowledged.push(task.await.expect("a filing task"));
    }
    // The calls that met a dead replica had its address checked: every call now goes to a
    // survivor, through the gateway (issues) and from the issues service to the grid service
    // (each filing asks LocateGrid).
    for n in 0..20 {
        issues
            .list_issues(with_token(ListIssuesRequest { parent: STREET.into(), ..Default::default() }, &admin()))
            .await
            .unwrap_or_else(|e| panic!("read {n} after the loss: {e:?}"));
        let request =
            CreateIssueRequest { parent: STREET.into(), issue: Some(issue(50 + n)), request_id: format!("after-{n}") };
        let placed = issues
            .create_issue(with_token(request, &resident))
            .await
            .unwrap_or_else(|e| panic!("filing {n} after the loss: {e:?}"))
            .into_inner();
        assert_eq!(placed.grid, format!("{STREET}/communities/east/grids/g1"), "located by a surviving grid replica");
        acknowledged.push(placed);
    }
    // Every acknowledged issue is there, exactly once; the survivors answer each service.
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = issues
            .list_issues(with_token(
                ListIssuesRequest { parent: STREET.into(), page_size: 100, page_token, ..Default::default() },
                &admin(),
            ))
            .await
            .expect("list after the loss")
            .into_inner();
        listed.extend(page.issues.into_iter().map(|i| i.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let distinct: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(distinct.len(), listed.len(), "no issue listed twice");
    for filed in &acknowledged {
        assert_eq!(listed.iter().filter(|n| **n == filed.name).count(), 1, "{} is there once", filed.name);
    }
    assert_eq!(listed.len(), acknowledged.len() + 2, "the traced issue, the visit's and the forty, nothing else");
    for survivor in processes.iter().skip(1).step_by(2) {
        serving(survivor.grpc).await;
    }
    let mut grids = GridServiceClient::new(channel.clone());
    grids
        .get_grid(with_token(GetGridRequest { name: format!("{STREET}/communities/east/grids/g1") }, &admin()))
        .await
        .expect("the grid service answers through its survivor");
    drop(gateway);
    drop(processes);
    drop(postgres);
    let client = async_nats::connect(&deployment.nats_url).await.expect("NATS");
    let _ = async_nats::jetstream::new(client).delete_stream(deployment.namespace.to_uppercase()).await;
}
