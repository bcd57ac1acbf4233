//! Open311 GeoReport v2 at `/open311/v2/`, so the city's existing Open311 clients file and
//! follow residents' problems unchanged: the street's issue categories (and its published
//! service items, as information) are the services, its issues the service requests. Every
//! endpoint answers as `.json` and as `.xml`, and errors in Open311's error format.
//!
//! The jurisdiction is a street (`jurisdiction_id`, or `gateway.open311.default_jurisdiction`).
//! Without an API key a client reads the street's public board (the issues service's
//! ListIssueReports without a token: public categories only, coarse places, no residents'
//! words). With one, the gateway — having checked the key against the SHA-256 hashes it is
//! configured with — calls as the service principal the key stands for: its requests are filed
//! as that platform's work orders, and it reads them back in full. A `media_url` is kept as a
//! link in the description and never fetched: the gateway makes no request to an address a
//! client names. Contact fields (`email`, `phone`, names, `device_id`, `account_id`) are not
//! kept.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use civic_kit::auth::{Caller, Verifier};
use civic_kit::config::Open311Settings;
use civic_kit::directory::DelegateCredential;
use civic_kit::fetch::encode;
use civic_kit::server::GrpcService;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use civic_proto::catalogue::{GetServiceItemRequest, ListServiceItemsRequest, ServiceItem};
use civic_proto::issues::issue_service_client::IssueServiceClient;
use civic_proto::issues::list_issue_reports_request::Openness;
use civic_proto::issues::{
    CreateIssueRequest, Issue, IssueCategory, IssueReport, ListIssueCategoriesRequest, ListIssueReportsRequest, Point,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The largest form body taken, in bytes: a request's fields with a 4,000-character description.
const MAX_FORM: usize = 64 << 10;
/// The longest date range of one listing (GeoReport v2: 90 days).
const MAX_RANGE_DAYS: i64 = 90;
/// The prefix of the service codes of catalogue items.
const ITEM_PREFIX: &str = "catalogue.";
/// At most this many published items are listed as services.
const MAX_ITEMS: usize = 2000;
/// The most `service_request_id`s one listing takes.
const MAX_IDS: usize = 50;
/// The interface's changeset, as discovery tells it.
const CHANGESET: &str = "2026-12-01T00:00:00Z";

/// The most parameters a query or a form takes.
const MAX_PARAMS: usize = 100;
/// At most this many pages of published items are read for one listing of services.
const MAX_ITEM_PAGES: usize = 3;

/// One configured client.
#[derive(Debug)]
struct Client {
    service: String,
    key_hash: [u8; 32],
    credential: DelegateCredential,
}

/// A hash configured as 64 hex digits, as bytes (the configuration is checked at start: a
/// malformed one matches no key).
fn hash_bytes(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (k, byte) in out.iter_mut().enumerate() {
        *byte = hex.get(2 * k..2 * k + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
    }
    out
}

/// Whether two hashes are equal, in time that does not depend on where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Open311 interface's state.
#[derive(Debug)]
pub(crate) struct Open311 {
    settings: Open311Settings,
    clients: Vec<Client>,
}

/// The answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Xml,
}

/// An Open311 error: the HTTP status and its description.
#[derive(Debug)]
struct Failure(StatusCode, String);

impl Failure {
    fn bad(description: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, description.into())
    }

    fn not_found(description: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, description.into())
    }

    /// A service's refusal, as Open311 tells it: the status's HTTP code, its message and the
    /// fields it names.
    fn from_status(status: &tonic::Status) -> Self {
        let mut description = status.message().to_owned();
        if let Some(bad) = tonic_types::StatusExt::get_details_bad_request(status) {
            for v in bad.field_violations {
                let _ = write!(description, "; {}: {}", v.field, v.description);
            }
        }
        Self(crate::http_status(status.code()), description)
    }
}

/// A successful answer: its status, its root element (for XML), its body, and the link to the
/// next page of a listing.
struct Reply {
    status: StatusCode,
    root: &'static str,
    value: Value,
    next: Option<String>,
}

impl Reply {
    fn ok(root: &'static str, value: Value) -> Self {
        Self { status: StatusCode::OK, root, value, next: None }
    }
}

type Answer = Result<Reply, Failure>;

impl Open311 {
    pub(crate) fn new(settings: &Open311Settings, auth: &civic_kit::auth::AuthSettings) -> Self {
        let clients = settings
            .clients
            .iter()
            .map(|c| Client {
                service: c.service.clone(),
                key_hash: hash_bytes(&c.api_key_sha256),
                credential: DelegateCredential::new(c.token_file.as_deref(), auth),
            })
            .collect();
        Self { settings: settings.clone(), clients }
    }

    /// The routes: everything under `/open311/v2/`. `verifier` checks that a client's token
    /// names the principal its key stands for; without one no key is accepted.
    pub(crate) fn routes(self: Arc<Self>, grpc: GrpcService, verifier: Option<Verifier>) -> axum::Router {
        axum::Router::new().route(
            "/open311/v2/{*path}",
            axum::routing::any(move |request: axum::extract::Request| {
                let this = self.clone();
                let (grpc, verifier) = (grpc.clone(), verifier.clone());
                async move { this.handle(request, grpc, verifier).await }
            }),
        )
    }

    async fn handle(&self, request: axum::extract::Request, grpc: GrpcService, verifier: Option<Verifier>) -> Response {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().strip_prefix("/open311/v2/").unwrap_or_default().to_owned();
        let (resource, format) = if let Some(r) = path.strip_suffix(".json") {
            (r.to_owned(), Format::Json)
        } else if let Some(r) = path.strip_suffix(".xml") {
            (r.to_owned(), Format::Xml)
        } else {
            return failure(Format::Json, Failure::not_found("no such endpoint: end the path in .json or .xml"));
        };
        let mut params = match crate::pairs(parts.uri.query().unwrap_or(""), MAX_PARAMS) {
            Ok(p) => p,
            Err(why) => return failure(format, Failure::bad(why)),
        };
        if parts.method == Method::POST {
            let form = match http_body_util::Limited::new(body, MAX_FORM).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return failure(format, Failure(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large".into()));
                }
            };
            match std::str::from_utf8(&form)
                .map_err(|_| "the form is not UTF-8".to_owned())
                .and_then(|form| crate::pairs(form, MAX_PARAMS))
            {
                Ok(p) => params.extend(p),
                Err(why) => return failure(format, Failure::bad(why)),
            }
        }
        let call = Call { grpc, verifier, headers: parts.headers, params, format };
        let segments: Vec<&str> = resource.split('/').collect();
        let answer = match (&parts.method, segments.as_slice()) {
            (&Method::GET, ["discovery"]) => Ok(Reply::ok("discovery", self.discovery(&call.headers))),
            (&Method::GET, ["services"]) => self.services(&call).await,
            (&Method::GET, ["services", code]) => self.definition(&call, code).await,
            (&Method::GET, ["requests"]) => self.requests(&call, None).await,
            (&Method::GET, ["requests", id]) => self.requests(&call, Some(id)).await,
            (&Method::POST, ["requests"]) => self.file(&call).await,
            (&Method::GET, ["tokens", token]) => self.token(&call, token).await,
            (_, ["discovery" | "services" | "requests"] | ["services" | "requests" | "tokens", _]) => {
                Err(Failure(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method".into()))
            }
            _ => Err(Failure::not_found("no such endpoint")),
        };
        match answer {
            Ok(reply) => {
                let mut response = match format {
                    Format::Json => (reply.status, axum::Json(&reply.value)).into_response(),
                    Format::Xml => xml(reply.status, reply.root, &reply.value),
                };
                if let Some(link) = reply.next.and_then(|n| HeaderValue::from_str(&n).ok()) {
                    response.headers_mut().insert(http::header::LINK, link);
                }
                response
            }
            Err(f) => failure(format, f),
        }
    }

    fn discovery(&self, headers: &HeaderMap) -> Value {
        let url = if self.settings.base_url.is_empty() {
            // Without a configured URL, the address the client used (checked to be a host name).
            let host = headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    !h.is_empty()
                        && h.len() <= 255
                        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                })
                .unwrap_or("localhost");
            format!("http://{host}/open311/v2")
        } else {
            self.settings.base_url.clone()
        };
        json!({
            "changeset": CHANGESET,
            "contact": self.settings.contact,
            "key_service": "API keys are issued by the street office; only their SHA-256 is configured.",
            "endpoints": [{
                "specification": "http://wiki.open311.org/GeoReport_v2",
                "url": url,
                "changeset": CHANGESET,
                "type": "production",
                "formats": ["application/json", "text/xml"],
            }],
        })
    }

    async fn services(&self, call: &Call) -> Answer {
        let street = self.street(call)?;
        let mut services: Vec<Value> = call.categories(&street).await?.iter().map(category_service).collect();
        for item in call.published_items(&street).await? {
            services.push(item_service(&item));
        }
        Ok(Reply::ok("services", Value::Array(services)))
    }

    async fn definition(&self, call: &Call, code: &str) -> Answer {
        let street = self.street(call)?;
        let attributes = if let Some(item) = code.strip_prefix(ITEM_PREFIX) {
            if !civic_kit::names::is_valid_id(item) {
                return Err(Failure::not_found("no such service"));
            }
            let item = call.item(&format!("{street}/items/{item}")).await?;
            item_attributes(&item)
        } else {
            let categories = call.categories(&street).await?;
            if !categories.iter().any(|c| c.category == code) {
                return Err(Failure::not_found("no such service"));
            }
            vec![json!({
                "variable": true,
                "code": "title",
                "datatype": "string",
                "required": false,
                "datatype_description": "至多200字",
                "order": 1,
                "description": "标题：一句话说清是什么问题",
            })]
        };
        Ok(Reply::ok("service_definition", json!({"service_code": code, "attributes": attributes})))
    }

    /// GET requests: one (`id`), or a listing.
    async fn requests(&self, call: &Call, id: Option<&str>) -> Answer {
        let street = self.street(call)?;
        let token = self.principal_token(call).await?;
        let mut req = ListIssueReportsRequest { parent: street.clone(), ..Default::default() };
        let id_in_path = id.is_some();
        let ids: Vec<String> = match id {
            Some(id) => vec![id.to_owned()],
            None => call.list("service_request_id"),
        };
        if ids.len() > MAX_IDS {
            return Err(Failure::bad(format!("service_request_id: at most {MAX_IDS} ids")));
        }
        for id in &ids {
            if !civic_kit::names::is_valid_id(id) {
                return Err(if id_in_path {
                    Failure::not_found("no such request, or not one you may see")
                } else {
                    Failure::bad("service_request_id: ids are lowercase letters, digits and -")
                });
            }
            req.issues.push(format!("{street}/issues/{id}"));
        }
        let mut resolved: Vec<(String, String)> = Vec::new();
        if ids.is_empty() {
            // The other filters count only without ids (GeoReport v2).
            let codes = call.list("service_code");
            if !codes.is_empty() {
                // Catalogue items take no requests: asking for them alone finds none.
                req.categories = codes.into_iter().filter(|c| !c.starts_with(ITEM_PREFIX)).collect();
                if req.categories.is_empty() {
                    return Ok(Reply::ok("service_requests", Value::Array(Vec::new())));
                }
            }
            let (mut open, mut closed) = (false, false);
            for status in call.list("status") {
                match status.as_str() {
                    "open" => open = true,
                    "closed" => closed = true,
                    _ => return Err(Failure::bad("status: open, closed, or both")),
                }
            }
            req.openness = match (open, closed) {
                (true, false) => Openness::Open,
                (false, true) => Openness::Closed,
                _ => Openness::Unspecified,
            } as i32;
            let (start, end) = range(call.param("start_date"), call.param("end_date"))?;
            // The next page's link names the range this page used, so "the last 90 days" does
            // not move under the page token.
            let w3c = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            resolved.push(("start_date".to_owned(), w3c(start)));
            resolved.push(("end_date".to_owned(), w3c(end)));
            req.start_time = Some(timestamp(start));
            req.end_time = Some(timestamp(end));
            req.page_size = match call.param("page_size") {
                Some(n) => n.parse().map_err(|_| Failure::bad("page_size: a number from 1 to 100"))?,
                None => 0,
            };
            req.page_token = call.param("page_token").unwrap_or_default().to_owned();
        }
        let categories = call.categories(&street).await?;
        let answer = call.reports(req, token.as_deref()).await?;
        if id.is_some() && answer.issue_reports.is_empty() {
            return Err(Failure::not_found("no such request, or not one you may see"));
        }
        let requests = answer.issue_reports.iter().map(|r| request_value(r, &categories)).collect();
        // The link leaves the API key out (a secret does not go into a header others may log):
        // a client that sent one adds it again, as it does to every request.
        let next = (!answer.next_page_token.is_empty()).then(|| {
            let mut query: Vec<(String, String)> = call
                .params
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "page_token" | "api_key" | "start_date" | "end_date"))
                .cloned()
                .collect();
            query.extend(resolved);
            query.push(("page_token".into(), answer.next_page_token.clone()));
            let text: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
            let ext = if call.format == Format::Xml { "xml" } else { "json" };
            format!("</open311/v2/requests.{ext}?{}>; rel=\"next\"", text.join("&"))
        });
        Ok(Reply { next, ..Reply::ok("service_requests", Value::Array(requests)) })
    }

    /// POST requests: files a request as the API key's principal.
    async fn file(&self, call: &Call) -> Answer {
        let street = self.street(call)?;
        let Some(token) = self.principal_token(call).await? else {
            return Err(Failure::bad("api_key is required to file a request"));
        };
        let code =
            call.param("service_code").filter(|c| !c.is_empty()).ok_or(Failure::bad("service_code is required"))?;
        if code.starts_with(ITEM_PREFIX) {
            return Err(Failure::bad(
                "service_code: this service is information only; see its definition for how to apply",
            ));
        }
        let categories = call.categories(&street).await?;
        if !categories.iter().any(|c| c.category == code) {
            return Err(Failure::bad("service_code: not a service of this jurisdiction"));
        }
        let number = |name: &str| -> Result<Option<f64>, Failure> {
            match call.param(name).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(Some)
                    .ok_or_else(|| Failure::bad(format!("{name}: a number of degrees (WGS 84)"))),
            }
        };
        let location = match (number("lat")?, number("long")?) {
            (Some(latitude), Some(longitude)) => {
                if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
                    return Err(Failure::bad("lat, long: out of range"));
                }
                Some(Point { latitude, longitude })
            }
            (None, None) => None,
            _ => return Err(Failure::bad("lat and long are given together")),
        };
        let address = call.param("address_string").unwrap_or_default().trim().to_owned();
        if address.chars().count() > 300 {
            return Err(Failure::bad("address_string: at most 300 characters"));
        }
        let title = call.param("attribute[title]").unwrap_or_default().trim().to_owned();
        if title.chars().count() > 200 {
            return Err(Failure::bad("attribute[title]: at most 200 characters"));
        }
        if location.is_none() && address.is_empty() {
            return Err(Failure::bad("a location is required: lat and long, or address_string"));
        }
        let mut description = call.param("description").unwrap_or_default().trim().to_owned();
        if description.is_empty() {
            return Err(Failure::bad("description is required: what the problem is"));
        }
        if let Some(url) = call.param("media_url").filter(|u| !u.is_empty()) {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= 500
                && !url.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(Failure::bad("media_url: an http(s) URL of at most 500 characters"));
            }
            description.push_str("\n\n照片：");
            description.push_str(url);
        }
        if description.chars().count() > 4000 {
            return Err(Failure::bad("description: at most 4000 characters, with media_url"));
        }
        // A client that retries sends the same Idempotency-Key and is answered as the first
        // time; without one each request is new (GeoReport v2 has no key of its own).
        let key = match call.headers.get("idempotency-key") {
            Some(value) => value
                .to_str()
                .ok()
                .filter(|k| {
                    !k.is_empty()
                        && k.len() <= 58
                        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
                })
                .ok_or(Failure::bad("Idempotency-Key: at most 58 letters, digits and - _ . :"))?
                .to_owned(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let issue = Issue {
            source: civic_proto::issues::issue::Source::CityPlatform as i32,
            category: code.to_owned(),
            title,
            description,
            location,
            address,
            external_id: format!("o311-{key}"),
            ..Default::default()
        };
        let request = CreateIssueRequest { parent: street, issue: Some(issue), request_id: String::new() };
        let created = call.create(request, &token).await?;
        let id = created.name.rsplit('/').next().unwrap_or_default().to_owned();
        let notice = if created.possible_duplicates.is_empty() {
            "已受理，请留意办理进度"
        } else {
            "已受理；附近已有相同问题的反映，将一并办理"
        };
        let answer = json!([{
            "service_request_id": id,
            "token": id,
            "service_notice": notice,
            "account_id": Value::Null,
        }]);
        Ok(Reply { status: StatusCode::CREATED, ..Reply::ok("service_requests", answer) })
    }

    /// GET tokens: the request a token stands for (a request is filed at once, so its token is
    /// its id).
    async fn token(&self, call: &Call, token: &str) -> Answer {
        let street = self.street(call)?;
        if !civic_kit::names::is_valid_id(token) {
            return Err(Failure::not_found("no such token"));
        }
        let principal = self.principal_token(call).await?;
        let req = ListIssueReportsRequest {
            parent: street.clone(),
            issues: vec![format!("{street}/issues/{token}")],
            ..Default::default()
        };
        let answer = call.reports(req, principal.as_deref()).await?;
        if answer.issue_reports.is_empty() {
            return Err(Failure::not_found("no such token, or not one you may see"));
        }
        Ok(Reply::ok("service_requests", json!([{"service_request_id": token, "token": token}])))
    }

    /// `streets/{street}` of the request's jurisdiction.
    fn street(&self, call: &Call) -> Result<String, Failure> {
        let id = call.param("jurisdiction_id").unwrap_or(&self.settings.default_jurisdiction);
        if id.is_empty() {
            return Err(Failure::bad("jurisdiction_id is required"));
        }
        if !self.settings.jurisdictions.iter().any(|j| j == id) {
            return Err(Failure::not_found("jurisdiction_id: no such jurisdiction"));
        }
        Ok(format!("streets/{id}"))
    }

    /// The bearer token of the principal the request's `api_key` stands for; `None` without a
    /// key. A key that is not configured is refused, never taken as no key.
    async fn principal_token(&self, call: &Call) -> Result<Option<String>, Failure> {
        let Some(key) = call.param("api_key").filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&Sha256::digest(key.as_bytes()));
        // Every configured hash is compared in full, so the time taken says nothing of which
        // matched or how nearly.
        let client = self.clients.iter().fold(None, |found, c| if same(&c.key_hash, &hash) { Some(c) } else { found });
        let Some(client) = client else {
            return Err(Failure(StatusCode::FORBIDDEN, "api_key is not recognised".into()));
        };
        let unusable = || {
            Failure(StatusCode::SERVICE_UNAVAILABLE, "the client's credential cannot be used now; retry later".into())
        };
        let token = client.credential.token(&client.service).await.map_err(|_| unusable())?;
        // The token must be the principal's the key stands for and no one else's: a token file
        // holding a person's token would give the key that person's reach.
        let verifier = call.verifier.as_ref().ok_or_else(unusable)?;
        match verifier.verify(&token) {
            Ok(Caller::Service(s)) if s.service == client.service => Ok(Some(token)),
            _ => {
                tracing::warn!(service = %client.service, "an Open311 client's token is not its principal's");
                Err(unusable())
            }
        }
    }
}

/// One request's calls to the services.
struct Call {
    grpc: GrpcService,
    verifier: Option<Verifier>,
    headers: HeaderMap,
    params: Vec<(String, String)>,
    format: Format,
}

impl Call {
    /// The first value of a parameter.
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a parameter given as a comma-separated list, or more than once.
    fn list(&self, name: &str) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `message` as a call: the caller's request id, trace context and address, the deadline
    /// the edge set, and `token` when the call is made as a client's principal.
    fn request<M>(&self, message: M, token: Option<&str>) -> Result<tonic::Request<M>, Failure> {
        let mut request = tonic::Request::new(message);
        for name in ["x-request-id", "traceparent", "tracestate", "x-forwarded-for"] {
            if let Some(value) = self.headers.get(name).and_then(|v| v.to_str().ok())
                && let Ok(value) = value.parse()
            {
                request.metadata_mut().insert(name, value);
            }
        }
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Failure(StatusCode::SERVICE_UNAVAILABLE, "the client's credential is unusable".into()))?;
            request.metadata_mut().insert("authorization", value);
        }
        let timeout = self
            .headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(civic_kit::server::parse_grpc_timeout)
            .unwrap_or(Duration::from_secs(15));
        request.set_timeout(timeout);
        Ok(request)
    }

    async fn categories(&self, street: &str) -> Result<Vec<IssueCategory>, Failure> {
        let request = self.request(ListIssueCategoriesRequest { parent: street.to_owned() }, None)?;
        let answer = IssueServiceClient::new(self.grpc.clone())
            .list_issue_categories(request)
            .await
            .map_err(|s| Failure::from_status(&s))?;
        Ok(answer.into_inner().issue_categories)
    }

    async fn published_items(&self, street: &str) -> Result<Vec<ServiceItem>, Failure> {
        let mut items = Vec::new();
        let mut page_token = String::new();
        for _ in 0..MAX_ITEM_PAGES {
            let message = ListServiceItemsRequest {
                parent: street.to_owned(),
                page_size: 1000,
                page_token: page_token.clone(),
                filter: "state = PUBLISHED".into(),
            };
            let answer = CatalogueServiceClient::new(self.grpc.clone())
                .list_service_items(self.request(message, None)?)
                .await
                .map_err(|s| Failure::from_status(&s))?
                .into_inner();
            items.extend(answer.service_items);
            if answer.next_page_token.is_empty() || items.len() >= MAX_ITEMS {
                items.truncate(MAX_ITEMS);
                return Ok(items);
            }
            page_token = answer.next_page_token;
        }
        items.truncate(MAX_ITEMS);
        Ok(items)
    }

    async fn item(&self, name: &str) -> Result<ServiceItem, Failure> {
        let request = self.request(GetServiceItemRequest { name: name.to_owned() }, None)?;
        match CatalogueServiceClient::new(self.grpc.clone()).get_service_item(request).await {
            Ok(item) => Ok(item.into_inner()),
            Err(s) if matches!(s.code(), tonic::Code::NotFound | tonic::Code::PermissionDenied) => {
                Err(Failure::not_found("no such service"))
            }
            Err(s) => Err(Failure::from_status(&s)),
        }
    }

    async fn reports(
        &self,
        message: ListIssueReportsRequest,
        token: Option<&str>,
    ) -> Result<civic_proto::issues::ListIssueReportsResponse, Failure> {
        let request = self.request(message, token)?;
        let answer = IssueServiceClient::new(self.grpc.clone())
            .list_issue_reports(request)
            .await
            .map_err(|s| Failure::from_status(&s))?;
        Ok(answer.into_inner())
    }

    async fn create(&self, message: CreateIssueRequest, token: &str) -> Result<Issue, Failure> {
        let request = self.request(message, Some(token))?;
        let answer = IssueServiceClient::new(self.grpc.clone())
            .create_issue(request)
            .await
            .map_err(|s| Failure::from_status(&s))?;
        Ok(answer.into_inner())
    }
}

fn category_service(c: &IssueCategory) -> Value {
    json!({
        "service_code": c.category,
        "service_name": c.display_name,
        "description": c.description,
        "metadata": true,
        "type": "realtime",
        "keywords": c.keywords.join(","),
        "group": "问题反映",
    })
}

fn item_service(item: &ServiceItem) -> Value {
    let id = item.name.rsplit('/').next().unwrap_or_default();
    json!({
        "service_code": format!("{ITEM_PREFIX}{id}"),
        "service_name": item.title,
        "description": item.summary,
        "metadata": true,
        "type": "blackbox",
        "keywords": item.keywords.join(","),
        "group": "便民服务事项",
    })
}

/// A catalogue item's definition: what to bring and where to go, as informational attributes
/// (`variable: false`), for no request can be filed for it.
fn item_attributes(item: &ServiceItem) -> Vec<Value> {
    let mut texts: Vec<(String, String)> = Vec::new();
    if !item.eligibility.is_empty() {
        texts.push(("eligibility".into(), format!("申请条件：{}", item.eligibility)));
    }
    for (k, m) in item.materials.iter().enumerate() {
        let need = if m.required { "必交" } else { "如有" };
        texts.push((format!("material_{}", k + 1), format!("材料（{need}）：{}", m.name)));
    }
    if !item.location.is_empty() {
        texts.push(("location".into(), format!("办理地点：{}", item.location)));
    }
    if !item.opening_hours.is_empty() {
        texts.push(("opening_hours".into(), format!("办理时间：{}", item.opening_hours)));
    }
    if item.promised_days > 0 {
        texts.push(("promised_days".into(), format!("承诺时限：{} 个工作日", item.promised_days)));
    }
    texts
        .into_iter()
        .enumerate()
        .map(|(k, (code, description))| {
            json!({
                "variable": false,
                "code": code,
                "datatype": "text",
                "required": false,
                "datatype_description": Value::Null,
                "order": k + 1,
                "description": description,
            })
        })
        .collect()
}

/// A report as an Open311 service request.
fn request_value(r: &IssueReport, categories: &[IssueCategory]) -> Value {
    let id = r.issue.rsplit('/').next().unwrap_or_default();
    let name = categories.iter().find(|c| c.category == r.category).map_or(r.category.as_str(), |c| &c.display_name);
    let words = |text: &str| if r.full && !text.is_empty() { Value::from(text) } else { Value::Null };
    let (lat, long) = r.location.map_or((Value::Null, Value::Null), |p| (p.latitude.into(), p.longitude.into()));
    json!({
        "service_request_id": id,
        "status": if r.open { "open" } else { "closed" },
        "status_notes": r.status_notes,
        "service_name": name,
        "service_code": r.category,
        "description": words(&r.description),
        "agency_responsible": if r.agency.is_empty() { Value::Null } else { Value::from(r.agency.as_str()) },
        "service_notice": Value::Null,
        "requested_datetime": datetime(r.create_time.as_ref()),
        "updated_datetime": datetime(r.update_time.as_ref()),
        "expected_datetime": datetime(r.due_time.as_ref()),
        "address": words(&r.address),
        "address_id": Value::Null,
        "zipcode": Value::Null,
        "lat": lat,
        "long": long,
        "media_url": Value::Null,
    })
}

/// A timestamp in W3C form (UTC), or null.
fn datetime(t: Option<&pbjson_types::Timestamp>) -> Value {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map_or(Value::Null, |t| Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds: t.timestamp(), nanos: 0 }
}

/// The listing's range: as given, at most 90 days; the last 90 days when neither end is given.
fn range(
    start: Option<&str>,
    end: Option<&str>,
) -> Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>), Failure> {
    // A W3C date and time, or a date alone (its midnight, UTC).
    let parse = |name: &str, text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok()
            .or_else(|| {
                let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
                Some(day.and_time(chrono::NaiveTime::MIN).and_utc())
            })
            .ok_or_else(|| Failure::bad(format!("{name}: a W3C date and time, such as 2026-11-01T00:00:00Z")))
    };
    let span = chrono::Duration::days(MAX_RANGE_DAYS);
    let (start, end) = match (start.filter(|s| !s.is_empty()), end.filter(|s| !s.is_empty())) {
        (Some(s), Some(e)) => (parse("start_date", s)?, parse("end_date", e)?),
        (Some(s), None) => {
            let s = parse("start_date", s)?;
            (s, s + span)
        }
        (None, Some(e)) => {
            let e = parse("end_date", e)?;
            (e - span, e)
        }
        (None, None) => {
            let now = chrono::Utc::now() + chrono::Duration::seconds(1);
            (now - span, now)
        }
    };
    if end <= start {
        return Err(Failure::bad("end_date: must be after start_date"));
    }
    if end - start > span {
        return Err(Failure::bad("start_date, end_date: at most 90 days apart"));
    }
    Ok((start, end))
}

/// The format of an Open311 path (`/open311/v2/….xml` is XML, any other JSON); `None` for a
/// path outside the interface.
pub(crate) fn format_of(path: &str) -> Option<Format> {
    let rest = path.strip_prefix("/open311/")?;
    Some(if rest.ends_with(".xml") { Format::Xml } else { Format::Json })
}

/// A refusal at the edge (too many requests, a bad bearer token, out of time) in Open311's
/// error format, with `Retry-After` when the status carries a retry delay.
pub(crate) fn refusal(format: Format, status: &tonic::Status) -> Response {
    let mut response = failure(format, Failure::from_status(status));
    if let Some(retry) = tonic_types::StatusExt::get_details_retry_info(status).and_then(|r| r.retry_delay) {
        response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry.as_secs().max(1)));
    }
    response
}

/// An Open311 error answer.
fn failure(format: Format, f: Failure) -> Response {
    let Failure(status, description) = f;
    let value = json!([{"code": status.as_u16(), "description": description}]);
    match format {
        Format::Json => (status, axum::Json(value)).into_response(),
        Format::Xml => xml(status, "errors", &value),
    }
}

/// The element name of each item of a list, by the list's name.
fn item_name(list: &str) -> &str {
    match list {
        "service_requests" => "request",
        "services" => "service",
        "errors" => "error",
        "attributes" => "attribute",
        "values" => "value",
        "endpoints" => "endpoint",
        "formats" => "format",
        _ => "item",
    }
}

fn xml(status: StatusCode, root: &str, value: &Value) -> Response {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
    element(&mut out, root, value);
    (status, [(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"))], Bytes::from(out))
        .into_response()
}

fn element(out: &mut String, name: &str, value: &Value) {
    let _ = write!(out, "<{name}>");
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => {
            for c in s.chars() {
                match c {
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '&' => out.push_str("&amp;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&apos;"),
                    // Characters XML 1.0 cannot carry are left out.
                    c if ((c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
                        || matches!(c, '\u{FFFE}' | '\u{FFFF}') => {}
                    c => out.push(c),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                element(out, item_name(name), item);
            }
        }
        Value::Object(fields) => {
            for (key, v) in fields {
                element(out, key, v);
            }
        }
    }
    let _ = write!(out, "</{name}>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_names_list_items_and_escapes_text() {
        let mut out = String::new();
        element(&mut out, "service_requests", &json!([{"service_request_id": "a", "description": "<b>&\u{1}"}]));
        assert_eq!(
            out,
            "<service_requests><request><description>&lt;b&gt;&amp;</description>\
             <service_request_id>a</service_request_id></request></service_requests>"
        );
    }

    #[test]
    fn ranges_are_at_most_ninety_days() {
        assert!(range(Some("2026-01-01T00:00:00Z"), Some("2026-03-01T00:00:00Z")).is_ok());
        assert!(range(Some("2026-01-01T00:00:00Z"), Some("2026-06-01T00:00:00Z")).is_err());
        assert!(range(Some("2026-03-01T00:00:00Z"), Some("2026-01-01T00:00:00Z")).is_err());
        assert!(range(Some("yesterday"), None).is_err());
        let (s, e) = range(None, None).expect("default");
        assert_eq!((e - s).num_days(), 90);
    }

    #[test]
    fn forms_are_unescaped_and_bounded() {
        let p = crate::pairs("a=1&attribute%5Btitle%5D=%E8%B7%AF+%E7%81%AF", MAX_PARAMS).expect("pairs");
        assert_eq!(p[1], ("attribute[title]".into(), "路 灯".into()));
        assert!(crate::pairs(&"a=1&".repeat(101), MAX_PARAMS).is_err());
        assert!(crate::pairs("a=%zz", MAX_PARAMS).is_err());
    }
}
