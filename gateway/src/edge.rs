//! Edge policy of the HTTP API: a per-client rate limit (429 with a retry hint), a total
//! deadline per request passed downstream as the gRPC deadline, a request id accepted or made
//! up and returned, and CORS. The body limit is the transcoder's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

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

/// The client a request counts against: its bearer token (a principal), else its address.
fn client_key(request: &Request) -> String {
    if let Some(token) = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        token.hash(&mut hasher);
        return format!("token:{:x}", hasher.finish());
    }
    let address: Option<IpAddr> = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    format!("address:{}", address.map(|a| a.to_string()).unwrap_or_default())
}

/// The middleware: rate limit, then the deadline (as `grpc-timeout` for the service and as a
/// bound on the whole exchange).
pub async fn policy(limiter: Arc<RateLimiter>, timeout: Duration, mut request: Request, next: Next) -> Response {
    if let Err(wait) = limiter.take(&client_key(&request)) {
        let seconds = wait.as_secs().max(1);
        let body = serde_json::json!({
            "code": tonic::Code::ResourceExhausted as i32,
            "message": format!("too many requests; retry in {seconds} s"),
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{seconds}s")}],
        });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let millis = timeout.as_millis().max(1);
    if let Ok(value) = HeaderValue::from_str(&format!("{millis}m")) {
        request.headers_mut().insert("grpc-timeout", value);
    }
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let body = serde_json::json!({
                "code": tonic::Code::DeadlineExceeded as i32,
                "message": "the request took longer than the gateway allows",
                "details": [],
            });
            (StatusCode::GATEWAY_TIMEOUT, axum::Json(body)).into_response()
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
        ])
        .expose_headers([http::HeaderName::from_static("x-request-id"), http::header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

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
