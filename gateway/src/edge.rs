//! Edge policy of the HTTP address, for the HTTP API and gRPC alike: rate limits per client
//! address — charged first, before a token costs a signature check — and per principal (429 /
//! RESOURCE_EXHAUSTED with a retry hint), bearer tokens verified (and forwarded: the services
//! still authorise), the client's address passed on in `X-Forwarded-For` (believed from trusted
//! proxies only), a total deadline per request passed downstream as the gRPC deadline, a request
//! id accepted when sane or made up, and returned, and CORS. The body limit is the transcoder's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

pub use civic_kit::config::GatewaySettings as EdgeSettings;

/// Token buckets per client. A bucket is a few bytes; idle full buckets are dropped when the
/// table grows, so the table stays bounded by the clients active at once.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    #[expect(clippy::disallowed_types, reason = "a short critical section without .await")]
    buckets: std::sync::Mutex<HashMap<String, (f64, Instant)>>,
}

const MAX_CLIENTS: usize = 100_000;

impl RateLimiter {
    /// A limiter of `rate` requests per second with bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        #[expect(clippy::disallowed_types, reason = "a short critical section without .await")]
        let buckets = std::sync::Mutex::new(HashMap::new());
        Self { rate, burst: f64::from(burst.max(1)), buckets }
    }

    /// Takes one token for `client`: `Ok` to go on, or how long until a token is free.
    pub fn take(&self, client: &str) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CLIENTS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(client.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// How a request is answered when the edge refuses it: JSON for the HTTP API, a gRPC status
/// for gRPC and gRPC-Web (the status in the headers, in the caller's content type).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|c| c.as_bytes().starts_with(b"application/grpc"))
}

/// The edge policy's state: token verification and the two kinds of rate limit.
#[derive(Debug)]
pub(crate) struct Policy {
    /// Verifies bearer tokens at the edge; `None` leaves them to the services alone.
    pub(crate) verifier: Option<civic_kit::auth::Verifier>,
    /// Buckets per authenticated principal.
    pub(crate) principals: RateLimiter,
    /// Buckets per client address, charged for every request.
    pub(crate) addresses: RateLimiter,
    /// The total time a request may take.
    pub(crate) timeout: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub(crate) trusted: civic_kit::client::TrustedProxies,
}

impl Policy {
    pub(crate) fn new(
        settings: &EdgeSettings,
        verifier: Option<civic_kit::auth::Verifier>,
        trusted: civic_kit::client::TrustedProxies,
    ) -> Self {
        Self {
            verifier,
            principals: RateLimiter::new(settings.rate_per_second, settings.burst),
            addresses: RateLimiter::new(settings.address_rate_per_second, settings.address_burst),
            timeout: Duration::from_millis(settings.request_timeout_ms.max(1)),
            trusted,
        }
    }

    /// Takes a token from the client address's bucket — first, so a flood of bad tokens costs
    /// its sender before any signature is checked — then verifies the token (a bad one is
    /// refused here, before any service is bothered) and takes one from the principal's bucket.
    /// The client's address goes on in `X-Forwarded-For`, replacing whatever the client said.
    fn admit(&self, request: &mut Request) -> Result<(), tonic::Status> {
        let peer = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
        let address: Option<IpAddr> = civic_kit::client::address(request.headers(), peer, &self.trusted);
        let shown = address.map(|a| a.to_string()).unwrap_or_default();
        self.addresses.take(&shown).map_err(too_many)?;
        request.headers_mut().remove(civic_kit::client::FORWARDED_FOR);
        if let Ok(value) = HeaderValue::from_str(&shown)
            && !shown.is_empty()
        {
            request.headers_mut().insert(civic_kit::client::FORWARDED_FOR, value);
        }
        let caller = match &self.verifier {
            Some(verifier) => verifier.caller_from_headers(request.headers()).map_err(tonic::Status::from)?,
            None => civic_kit::auth::Caller::Anonymous,
        };
        if !matches!(caller, civic_kit::auth::Caller::Anonymous) {
            self.principals.take(&caller.key()).map_err(too_many)?;
        }
        Ok(())
    }
}

/// RESOURCE_EXHAUSTED with the time to wait as a retry hint.
fn too_many(wait: Duration) -> tonic::Status {
    use tonic_types::StatusExt;
    let seconds = wait.as_secs().max(1);
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        format!("too many requests; retry in {seconds} s"),
        tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(seconds))),
    )
}

/// The middleware: verify the token, rate limit, then the deadline (as `grpc-timeout` for the
/// service — kept when the caller asked for less — and as a bound on the answer's start).
pub(crate) async fn policy(gateway: crate::Gateway, policy: Arc<Policy>, mut request: Request, next: Next) -> Response {
    let grpc = is_grpc(request.headers());
    // Open311 clients are refused in Open311's error format.
    let open311 = crate::open311::format_of(request.uri().path());
    let refuse = |status: &tonic::Status, headers: &http::HeaderMap| match open311 {
        Some(format) => crate::open311::refusal(format, status),
        None => gateway.refuse(status, grpc, headers),
    };
    if let Err(status) = policy.admit(&mut request) {
        return refuse(&status, request.headers());
    }
    let asked = request
        .headers()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(civic_kit::server::parse_grpc_timeout);
    let timeout = asked.map_or(policy.timeout, |a| a.min(policy.timeout));
    let millis = timeout.as_millis().max(1);
    if let Ok(value) = HeaderValue::from_str(&format!("{millis}m")) {
        request.headers_mut().insert("grpc-timeout", value);
    }
    let headers = request.headers().clone();
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            refuse(&tonic::Status::deadline_exceeded("the request took longer than the gateway allows"), &headers)
        }
    }
}

/// The CORS layer for `origins` (none: no cross-origin access).
pub fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            http::Method::GET,
            http::Method::POST,
            http::Method::PATCH,
            http::Method::PUT,
            http::Method::DELETE,
        ])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            http::HeaderName::from_static("x-request-id"),
            // gRPC-Web from browsers.
            http::HeaderName::from_static("x-grpc-web"),
            http::HeaderName::from_static("x-user-agent"),
            http::HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            http::HeaderName::from_static("x-request-id"),
            http::header::RETRY_AFTER,
            http::HeaderName::from_static("grpc-status"),
            http::HeaderName::from_static("grpc-message"),
            http::HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the service behind the edge sees of the deadline.
    async fn downstream_timeout(gateway_ms: u64, asked: Option<&str>) -> String {
        use tower::ServiceExt;
        let settings = EdgeSettings { request_timeout_ms: gateway_ms, ..Default::default() };
        let state = Arc::new(Policy::new(&settings, None, Default::default()));
        let gateway = crate::Gateway::new(civic_proto::FILE_DESCRIPTOR_SET).expect("routes");
        let app = axum::Router::new()
            .route(
                "/echo",
                axum::routing::get(|headers: http::HeaderMap| async move {
                    headers.get("grpc-timeout").and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned()
                }),
            )
            .layer(axum::middleware::from_fn(move |request, next| {
                policy(gateway.clone(), state.clone(), request, next)
            }));
        let mut request = http::Request::get("/echo");
        if let Some(asked) = asked {
            request = request.header("grpc-timeout", asked);
        }
        let response = app.oneshot(request.body(axum::body::Body::empty()).expect("request")).await.expect("answer");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.expect("body");
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn the_deadline_goes_downstream_as_grpc_timeout_the_shorter_winning() {
        assert_eq!(downstream_timeout(1500, None).await, "1500m");
        assert_eq!(downstream_timeout(1500, Some("2S")).await, "1500m", "the gateway's bound holds");
        assert_eq!(downstream_timeout(1500, Some("200m")).await, "200m", "a caller may ask for less");
        assert_eq!(downstream_timeout(1500, Some("bogus")).await, "1500m");
    }

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait() {
        let limiter = RateLimiter::new(1.0, 3);
        for _ in 0..3 {
            assert!(limiter.take("a").is_ok());
        }
        let wait = limiter.take("a").expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiter.take("b").is_ok(), "clients have buckets of their own");
        assert!(RateLimiter::new(0.0, 1).take("a").is_ok() && RateLimiter::new(0.0, 1).take("a").is_ok());
    }
}
