//! The gRPC server every target runs, built in one place: grpc.health.v1 (SERVING only while the
//! database answers), server reflection in both versions (v1, and v1alpha which common clients
//! still speak), gRPC-Web on the same port, the tower stack, and graceful shutdown.

use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::classify::{GrpcCode, GrpcErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::DefaultOnFailure;

use crate::config::ServerSettings;
use crate::db::Db;

/// The header carrying the request id, accepted from the caller or generated.
pub const REQUEST_ID: &str = "x-request-id";

/// Tells every part of the process to stop; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The switch of a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A shutdown signal and its switch.
pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Signals shutdown to every clone of the paired [`Shutdown`].
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown is signalled (or the trigger is gone).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the moment it is installed: install it
/// before anything slow, so a signal during start-up is not lost to the default action.
#[derive(Debug)]
pub struct Termination {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Termination {
    /// Starts listening for the signals.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first signal.
    pub async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The health entry a liveness probe asks for: SERVING from when the server starts serving to
/// the end of the process, whatever its databases say and through the drain. A process whose
/// database is away is not ready, but restarting it would not bring the database back — and
/// restarts backing off would only delay its return once the database is.
pub const LIVENESS: &str = "liveness";

/// The health of the gRPC services one server hosts.
#[derive(Debug, Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// Reports each group of services SERVING while its database answers and NOT_SERVING
    /// while it doesn't (and the server as a whole, "", SERVING only while all do), checking
    /// every `every` until shutdown — then NOT_SERVING for good, so load balancers stop sending
    /// before the drain. The first check runs before this returns, so the server starts with
    /// every status set.
    pub async fn watch_databases(&self, groups: Vec<(Vec<String>, Db)>, every: Duration, shutdown: Shutdown) {
        let mut watch =
            DatabaseWatch { reporter: self.reporter.clone(), last: vec![None; groups.len()], groups, last_all: None };
        watch.check().await;
        tokio::spawn(async move {
            loop {
                let stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(every) => watch.check().await,
                    _ = stop.wait() => break,
                }
            }
            watch.stop().await;
        });
    }

    /// Sets the status of `service` now.
    pub async fn set(&self, service: &str, serving: bool) {
        self.reporter.set_service_status(service, status(serving)).await;
    }
}

struct DatabaseWatch {
    reporter: HealthReporter,
    groups: Vec<(Vec<String>, Db)>,
    last: Vec<Option<bool>>,
    last_all: Option<bool>,
}

impl DatabaseWatch {
    async fn check(&mut self) {
        let mut all = true;
        for ((names, db), last) in self.groups.iter().zip(self.last.iter_mut()) {
            let up = db.ping().await;
            all &= up;
            if *last != Some(up) {
                if last.is_some() {
                    tracing::warn!(up, services = ?names, "database health changed");
                }
                for name in names {
                    self.reporter.set_service_status(name, status(up)).await;
                }
                *last = Some(up);
            }
        }
        if self.last_all != Some(all) {
            self.reporter.set_service_status("", status(all)).await;
            self.last_all = Some(all);
        }
    }

    async fn stop(&self) {
        self.reporter.set_service_status("", ServingStatus::NotServing).await;
        for name in self.groups.iter().flat_map(|(names, _)| names) {
            self.reporter.set_service_status(name, ServingStatus::NotServing).await;
        }
    }
}

fn status(up: bool) -> ServingStatus {
    if up { ServingStatus::Serving } else { ServingStatus::NotServing }
}

/// The routes every server carries besides the services: health and reflection (both
/// versions), knowing every civic descriptor and the health service's own.
pub fn standard_routes() -> Result<(Routes, Health), tonic_reflection::server::Error> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(civic_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(civic_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let routes = Routes::new(health_service).add_service(v1).add_service(v1alpha);
    Ok((routes, Health { reporter }))
}

/// A gRPC service as a value: what the listeners serve and what the gateway calls in-process.
pub type GrpcService =
    tower::util::BoxCloneSyncService<Request<tonic::body::Body>, Response<tonic::body::Body>, Infallible>;

/// `service` inside the request stack every gRPC call goes through, whether it arrives on the
/// gRPC address, on the HTTP address (gRPC-Web, native gRPC) or from the gateway in-process.
///
/// The stack, outermost first, and why each layer sits where it does:
/// 1. request id — the client's kept when it is a sane one (see `client::is_valid_request_id`),
///    else made up, before anything logs; echoed on the response;
/// 2. trace — the span covers everything below, adopts the caller's W3C trace context, and
///    carries the request id;
/// 3. metrics — counts every answer by method and code, including those made by the layers
///    below (shed, timed out), since they are real answers;
/// 4. errors — turns the failures of the layers below (overload, timeout) into gRPC statuses,
///    so the client always gets a status, never a reset stream;
/// 5. load shed — refuses at once when the concurrency limit is reached, rather than queueing;
/// 6. concurrency limit — bounds work in progress across all connections and callers (clones
///    share it);
/// 7. deadline — records when the request must be answered by ([`Deadline`]: the caller's
///    `grpc-timeout` or the server's limit, whichever is sooner), so calls it makes to other
///    services carry what is left of it;
/// 8. timeout — bounds each request (tonic also honours a shorter `grpc-timeout` from the caller);
/// 9. gRPC-Web — translates browser requests, so everything above sees one protocol.
///
/// `service` is a process's own routes (`GrpcService::new(routes.prepare())`) or, in a gateway of
/// its own, the router to the services' replicas: their calls pass the same layers here first.
pub fn stack(service: GrpcService, settings: &ServerSettings) -> GrpcService {
    let limit = Duration::from_millis(settings.request_timeout_ms);
    let trust_traceparent = settings.trust_traceparent;
    let service = ServiceBuilder::new()
        .map_request(|mut request: Request<tonic::body::Body>| {
            crate::client::drop_invalid_request_id(request.headers_mut());
            request
        })
        .layer(SetRequestIdLayer::new(http::HeaderName::from_static(REQUEST_ID), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(http::HeaderName::from_static(REQUEST_ID)))
        .layer(
            tower_http::trace::TraceLayer::new(SharedClassifier::new(caller_faults_are_answers()))
                .make_span_with(move |request: &Request<tonic::body::Body>| make_span(request, trust_traceparent))
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(MetricsLayer)
        .layer(ErrorsLayer)
        .load_shed()
        .concurrency_limit(settings.concurrency_limit)
        .map_request(move |mut request: Request<tonic::body::Body>| {
            let deadline = Deadline::of(request.headers(), limit);
            request.extensions_mut().insert(deadline);
            request
        })
        .timeout(limit)
        .layer(tonic_web::GrpcWebLayer::new())
        .service(service)
        .map_response(|response: Response<_>| response.map(tonic::body::Body::new));
    tower::util::BoxCloneSyncService::new(service)
}

/// When a request must be answered by: set by the server stack on every request's extensions
/// (tonic hands them to handlers as `Request::extensions`), from the caller's `grpc-timeout`
/// and the server's own limit, whichever is sooner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// The deadline of a request arriving now with `headers`, under the server's `limit`.
    pub fn of(headers: &http::HeaderMap, limit: Duration) -> Self {
        let asked = headers.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
        Deadline(Instant::now() + asked.map_or(limit, |asked| asked.min(limit)))
    }

    /// What is left of it now (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A `grpc-timeout` value: up to eight digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Serves `service` on `listener` (HTTP/2 for gRPC, HTTP/1.1 for gRPC-Web) until `shutdown`,
/// then stops accepting and lets requests in flight finish (at most `settings.shutdown_grace_ms`).
pub async fn serve(
    listener: TcpListener,
    service: GrpcService,
    settings: &ServerSettings,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback_service(
        service.map_request(|request: Request<axum::body::Body>| request.map(tonic::body::Body::new)),
    );
    serve_router(listener, app, settings, shutdown).await
}

/// Serves an axum router on `listener` with the same shutdown rule as [`serve`]; the peer's
/// address is available to handlers as `ConnectInfo<SocketAddr>`.
pub async fn serve_router(
    listener: TcpListener,
    app: axum::Router,
    settings: &ServerSettings,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let grace = Duration::from_millis(settings.shutdown_grace_ms);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let drained = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.clone().wait())
        .into_future();
    tokio::pin!(drained);
    tokio::select! {
        result = &mut drained => result,
        _ = async { shutdown.wait().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still in flight after the grace period; stopping");
            Ok(())
        }
    }
}

/// The trace layer reports server faults; a request the caller got wrong (invalid, not
/// found, not allowed, precondition, conflict) is an answer, not a failure of the server.
fn caller_faults_are_answers() -> GrpcErrorsAsFailures {
    [
        GrpcCode::Cancelled,
        GrpcCode::InvalidArgument,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unauthenticated,
    ]
    .into_iter()
    .fold(GrpcErrorsAsFailures::new(), GrpcErrorsAsFailures::with_success)
}

/// The request's span, named by its method when the method is one this process knows (else
/// `unknown`: the label set stays bounded), continuing the caller's trace when trusted.
fn make_span<B>(request: &Request<B>, trust_traceparent: bool) -> tracing::Span {
    let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let span = tracing::info_span!(
        "rpc",
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = known_method(request.uri().path()),
        request_id,
    );
    if trust_traceparent {
        crate::telemetry::adopt_parent(&span, request.headers());
    }
    span
}

/// `path` when it names a method of a civic service, health or reflection; else `unknown`.
pub fn known_method(path: &str) -> &str {
    static KNOWN: std::sync::OnceLock<std::collections::HashSet<String>> = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let mut known = std::collections::HashSet::new();
        for set in [civic_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
            let Ok(files) = <prost_types::FileDescriptorSet as prost::Message>::decode(set) else { continue };
            for file in files.file {
                for service in &file.service {
                    for method in &service.method {
                        known.insert(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                    }
                }
            }
        }
        for reflection in ["grpc.reflection.v1", "grpc.reflection.v1alpha"] {
            known.insert(format!("/{reflection}.ServerReflection/ServerReflectionInfo"));
        }
        known
    });
    if known.contains(path) { path } else { "unknown" }
}

/// Takes over a listener bound beforehand, returning it with its address.
pub fn adopt(listener: std::net::TcpListener) -> std::io::Result<(TcpListener, SocketAddr)> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Binds a TCP listener, returning it with the address it got (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Records rate, errors and duration per RPC (`civic_rpc_requests_total{method,code}`,
/// `civic_rpc_duration_seconds{method}`).
#[derive(Debug, Clone, Copy)]
struct MetricsLayer;

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService(inner)
    }
}

#[derive(Debug, Clone)]
struct MetricsService<S>(S);

impl<S, B, RB> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let start = Instant::now();
        let future = self.0.call(request);
        Box::pin(async move {
            let result = future.await;
            // Unary errors come trailers-only, with the status in the headers; success carries
            // it in the trailers, so a response without one in its headers is OK.
            let code = match &result {
                Ok(r) => r.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0").to_owned(),
                Err(_) => "transport".to_owned(),
            };
            // Unknown paths must not grow the label set without bound, whatever the answer.
            let method = known_method(&method).to_owned();
            metrics::histogram!("civic_rpc_duration_seconds", "method" => method.clone())
                .record(start.elapsed().as_secs_f64());
            metrics::counter!("civic_rpc_requests_total", "method" => method, "code" => code).increment(1);
            result
        })
    }
}

/// Answers the failures of the layers below it with gRPC statuses.
#[derive(Debug, Clone, Copy)]
struct ErrorsLayer;

impl<S> Layer<S> for ErrorsLayer {
    type Service = ErrorsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ErrorsService { inner, failed: None }
    }
}

/// The service below, and the status it failed with when it could not take a request.
#[derive(Debug, Clone)]
struct ErrorsService<S> {
    inner: S,
    failed: Option<tonic::Status>,
}

impl<S, B, RB> Service<Request<B>> for ErrorsService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Load shed answers overload from `call`; a service below that fails `poll_ready` cannot
        // be called (tower's contract), so the call that follows answers with its status instead.
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.failed = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => {
                self.failed = Some(status_of(error.into()));
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(status) = self.failed.take() {
            let response: Response<RB> = status.into_http();
            return Box::pin(std::future::ready(Ok(response)));
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => Ok(response),
                Err(error) => Ok(status_of(error.into()).into_http()),
            }
        })
    }
}

fn status_of(error: BoxError) -> tonic::Status {
    if error.is::<tower::load_shed::error::Overloaded>() {
        tonic::Status::resource_exhausted("the server is at its limit of requests in progress; retry shortly")
    } else if error.is::<tower::timeout::error::Elapsed>() {
        tonic::Status::deadline_exceeded("the request took longer than the server allows")
    } else {
        match error.downcast::<tonic::Status>() {
            Ok(status) => *status,
            Err(other) => {
                tracing::error!(error = %other, "request failed in the server stack");
                tonic::Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_bad_ones_are_ignored() {
        assert_eq!(parse_grpc_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", "100m".parse().expect("header"));
        let deadline = Deadline::of(&headers, Duration::from_secs(30));
        assert!(deadline.remaining() <= Duration::from_millis(100), "the caller's shorter deadline wins");
        let deadline = Deadline::of(&http::HeaderMap::new(), Duration::from_secs(30));
        assert!(deadline.remaining() > Duration::from_secs(29), "else the server's limit");
    }
}
