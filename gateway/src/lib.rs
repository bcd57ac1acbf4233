//! The face of civic on its HTTP address: every `google.api.http` rule in the embedded
//! descriptors is served by transcoding — JSON (the canonical proto3 mapping) in, the gRPC
//! method called, JSON out — so adding an annotated RPC needs no gateway code. Errors come back
//! as the HTTP status of their gRPC code with a `google.rpc.Status` JSON body, details
//! included. gRPC-Web and native gRPC pass through on the same address; the OpenAPI document
//! and the lobby screen are served beside the API.
#![forbid(unsafe_code)]

pub mod edge;
mod lobby;
mod open311;
mod openapi;
mod template;

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use civic_kit::auth::Verifier;
use civic_kit::server::GrpcService;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor, ReflectMessage, Value};
use tower::ServiceExt;

pub use template::{BadTemplate, Template};

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 1 << 20;

/// One HTTP rule: the method and path template it answers, where the body goes, and the RPC.
#[derive(Debug, Clone)]
struct Route {
    method: Method,
    template: Template,
    body: BodyRule,
    rpc: MethodDescriptor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BodyRule {
    None,
    Whole,
    Field(String),
}

/// The transcoding table built from the descriptors.
#[derive(Debug, Clone)]
pub struct Gateway {
    routes: Arc<Vec<Route>>,
    pool: DescriptorPool,
    open311: Option<Arc<open311::Open311>>,
}

/// The descriptors could not be turned into routes.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The descriptor set does not decode.
    #[error("descriptor set: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// An HTTP rule's path template is malformed.
    #[error(transparent)]
    Template(#[from] BadTemplate),
}

impl Gateway {
    /// The routes of every `google.api.http` rule (and its additional bindings) of every service
    /// in `descriptors`, an encoded `FileDescriptorSet` with extension options kept.
    pub fn new(descriptors: &[u8]) -> Result<Self, BuildError> {
        let pool = DescriptorPool::decode(descriptors)?;
        let mut routes = Vec::new();
        if let Some(http) = pool.get_extension_by_name("google.api.http") {
            for service in pool.services() {
                for rpc in service.methods() {
                    let options = rpc.options();
                    if !options.has_extension(&http) {
                        continue;
                    }
                    if let Value::Message(rule) = options.get_extension(&http).as_ref() {
                        add_rule(&mut routes, rule, &rpc, true)?;
                    }
                }
            }
        }
        // A custom verb is part of the last segment (`items/x:publish`), which a template without
        // one would also take as a resource id: templates with verbs are tried first.
        routes.sort_by_key(|r| !r.template.has_verb());
        Ok(Self { routes: Arc::new(routes), pool, open311: None })
    }

    /// Serves the Open311 GeoReport v2 interface at `/open311/v2/` too, with `settings`; tokens
    /// of its clients' principals without a token file are minted with `auth`'s dev key.
    pub fn with_open311(
        mut self,
        settings: &civic_kit::config::Open311Settings,
        auth: &civic_kit::auth::AuthSettings,
    ) -> Self {
        self.open311 = Some(Arc::new(open311::Open311::new(settings, auth)));
        self
    }

    /// How many HTTP routes the descriptors declare.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes at all.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The OpenAPI 3.1 document of every route, generated from the descriptors and their comments.
    pub fn openapi(&self) -> serde_json::Value {
        openapi::document(&self.routes, &self.pool)
    }

    /// Everything the HTTP address serves besides the operations endpoints, behind the edge
    /// policy: gRPC and gRPC-Web requests (by content type) passed to `grpc` as they are, every
    /// other request transcoded and called on `grpc`; `/openapi.json`; the lobby screen; and
    /// Open311 when it is on ([`Gateway::with_open311`]).
    /// `grpc` is the in-process stack of the services in the all-in-one mode, or the balanced
    /// channels to them in a gateway of its own. `verifier` checks bearer tokens at the edge.
    pub fn router(
        self,
        grpc: GrpcService,
        edge: &edge::EdgeSettings,
        verifier: Option<Verifier>,
        trusted: civic_kit::client::TrustedProxies,
    ) -> axum::Router {
        let policy = Arc::new(edge::Policy::new(edge, verifier.clone(), trusted));
        let request_id = http::HeaderName::from_static("x-request-id");
        let document = Bytes::from(serde_json::to_vec(&self.openapi()).unwrap_or_default());
        let gateway = self.clone();
        let open311 = match &self.open311 {
            Some(o) => o.clone().routes(grpc.clone(), verifier.clone()),
            None => axum::Router::new(),
        };
        // Outermost first: CORS answers preflights before anything counts them; the request id
        // is set before the policy and returned on every answer, refusals included.
        axum::Router::new()
            .route(
                "/openapi.json",
                axum::routing::get(move || {
                    std::future::ready(([(http::header::CONTENT_TYPE, "application/json")], document.clone()))
                }),
            )
            .merge(lobby::routes())
            .merge(open311)
            .fallback(move |request: axum::extract::Request| {
                let gateway = self.clone();
                let grpc = grpc.clone();
                async move {
                    if edge::is_grpc(request.headers()) {
                        let Ok(response) = grpc.oneshot(request.map(tonic::body::Body::new)).await;
                        response.map(axum::body::Body::new)
                    } else {
                        gateway.handle(request, grpc).await
                    }
                }
            })
            .layer(axum::middleware::from_fn(move |request, next| {
                edge::policy(gateway.clone(), policy.clone(), request, next)
            }))
            .layer(tower_http::request_id::PropagateRequestIdLayer::new(request_id.clone()))
            .layer(tower_http::request_id::SetRequestIdLayer::new(request_id, tower_http::request_id::MakeRequestUuid))
            .layer(axum::middleware::map_request(|mut request: axum::extract::Request| async move {
                civic_kit::client::drop_invalid_request_id(request.headers_mut());
                request
            }))
            .layer(edge::cors(&edge.cors_origins))
    }

    /// The answer to a request the edge refuses, in the caller's protocol: a gRPC status (in
    /// the headers, in the request's content type) or the HTTP status with a JSON body — with
    /// `Retry-After` when the status carries a retry delay.
    fn refuse(&self, status: &tonic::Status, grpc: bool, headers: &HeaderMap) -> Response {
        if grpc {
            let mut response = status.clone().into_http::<axum::body::Body>();
            if let Some(content_type) = headers.get(http::header::CONTENT_TYPE) {
                response.headers_mut().insert(http::header::CONTENT_TYPE, content_type.clone());
            }
            return response;
        }
        let mut response = self.error(status);
        if let Some(retry) = tonic_types::StatusExt::get_details_retry_info(status).and_then(|r| r.retry_delay) {
            response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry.as_secs().max(1)));
        }
        response
    }

    async fn handle(&self, request: axum::extract::Request, grpc: GrpcService) -> Response {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let Some((route, vars)) = self
            .routes
            .iter()
            .filter(|r| r.method == parts.method)
            .find_map(|r| r.template.matches(path).map(|v| (r, v)))
        else {
            let mut allowed: Vec<&str> =
                self.routes.iter().filter(|r| r.template.matches(path).is_some()).map(|r| r.method.as_str()).collect();
            allowed.sort_unstable();
            allowed.dedup();
            return if !allowed.is_empty() {
                // RFC 9110 §15.5.6: a 405 names the methods the resource takes.
                let mut answer = problem(
                    StatusCode::METHOD_NOT_ALLOWED,
                    tonic::Code::Unimplemented,
                    "this path does not take that method",
                );
                if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                    answer.headers_mut().insert(http::header::ALLOW, value);
                }
                answer
            } else {
                problem(StatusCode::NOT_FOUND, tonic::Code::NotFound, "no API method at this path")
            };
        };
        // A client stream takes the body as its one message: on the wire a unary call and a
        // client stream of one message are the same frames.
        let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return problem(StatusCode::PAYLOAD_TOO_LARGE, tonic::Code::InvalidArgument, "the body is too large");
            }
        };
        let message = match build_request(route, &vars, parts.uri.query().unwrap_or(""), &body) {
            Ok(m) => m,
            Err(why) => return problem(StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, &why),
        };
        if route.rpc.is_server_streaming() {
            let sse =
                parts.headers.get(http::header::ACCEPT).is_some_and(|a| a.as_bytes().starts_with(b"text/event-stream"));
            return match open(grpc, &route.rpc, &parts.headers, message.encode_to_vec()).await {
                Ok(body) => self.stream(route.rpc.output(), body, sse),
                Err(status) => self.error(&status),
            };
        }
        let response = call(grpc, &route.rpc, &parts.headers, message.encode_to_vec()).await;
        self.respond(&route.rpc.output(), response)
    }

    /// A server stream as newline-delimited JSON, or as server-sent events when the client
    /// accepts `text/event-stream`. An error after the start ends the stream with one last
    /// message: `{"error": <google.rpc.Status>}`.
    fn stream(&self, output: MessageDescriptor, body: tonic::body::Body, sse: bool) -> Response {
        let gateway = self.clone();
        let frames = futures::stream::unfold(
            (http_body_util::BodyStream::new(body), BytesMut::new(), false),
            move |(mut body, mut buffer, done)| {
                let output = output.clone();
                let gateway = gateway.clone();
                async move {
                    if done {
                        return None;
                    }
                    loop {
                        if buffer.len() >= 5 {
                            let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
                            if buffer.len() >= 5 + len {
                                let frame = buffer.split_to(5 + len).split_off(5).freeze();
                                let line = match DynamicMessage::decode(output.clone(), frame) {
                                    Ok(message) => to_json(&message),
                                    Err(_) => error_line(&gateway, &tonic::Status::internal("unreadable message")),
                                };
                                return Some((Ok::<_, Infallible>(line), (body, buffer, false)));
                            }
                        }
                        match futures::StreamExt::next(&mut body).await {
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(data) => buffer.extend_from_slice(&data),
                                Err(frame) => {
                                    let status = frame.trailers_ref().and_then(tonic::Status::from_header_map);
                                    return match status {
                                        Some(s) if s.code() != tonic::Code::Ok => {
                                            Some((Ok(error_line(&gateway, &s)), (body, buffer, true)))
                                        }
                                        _ => None,
                                    };
                                }
                            },
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "a service's stream broke off");
                                let status = tonic::Status::unavailable("the stream broke off; watch again");
                                return Some((Ok(error_line(&gateway, &status)), (body, buffer, true)));
                            }
                            None => return None,
                        }
                    }
                }
            },
        );
        let framed = futures::StreamExt::map(frames, move |line: Result<Vec<u8>, Infallible>| {
            line.map(|json| {
                let mut out = Vec::with_capacity(json.len() + 8);
                if sse {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&json);
                    out.extend_from_slice(b"\n\n");
                } else {
                    out.extend_from_slice(&json);
                    out.push(b'\n');
                }
                Bytes::from(out)
            })
        });
        let content_type = if sse { "text/event-stream" } else { "application/x-ndjson" };
        (
            StatusCode::OK,
            [
                (http::header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            axum::body::Body::from_stream(framed),
        )
            .into_response()
    }

    fn respond(&self, output: &MessageDescriptor, response: Result<Bytes, tonic::Status>) -> Response {
        match response {
            Ok(bytes) if output.full_name() == HTTP_BODY => raw(&bytes),
            Ok(bytes) => match DynamicMessage::decode(output.clone(), bytes) {
                Ok(message) => json(StatusCode::OK, &message),
                Err(_) => {
                    problem(StatusCode::BAD_GATEWAY, tonic::Code::Internal, "the service answered something unreadable")
                }
            },
            Err(status) => self.error(&status),
        }
    }

    /// A gRPC status as HTTP: the standard status table and a `google.rpc.Status` body.
    fn error(&self, status: &tonic::Status) -> Response {
        let http = http_status(status.code());
        match self.status_message(status) {
            Some(message) => json(http, &message),
            None => problem(http, status.code(), status.message()),
        }
    }

    /// The `google.rpc.Status` a gRPC status carries in its details, when it carries one,
    /// with the code as the status says.
    fn status_message(&self, status: &tonic::Status) -> Option<DynamicMessage> {
        if status.details().is_empty() {
            return None;
        }
        let desc = self.pool.get_message_by_name("google.rpc.Status")?;
        let mut message = DynamicMessage::decode(desc, status.details()).ok()?;
        message.set_field_by_name("code", Value::I32(status.code() as i32));
        Some(message)
    }
}

fn add_rule(
    routes: &mut Vec<Route>,
    rule: &DynamicMessage,
    rpc: &MethodDescriptor,
    top: bool,
) -> Result<(), BuildError> {
    let text =
        |name: &str| rule.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let pattern = [
        ("get", Method::GET),
        ("post", Method::POST),
        ("patch", Method::PATCH),
        ("put", Method::PUT),
        ("delete", Method::DELETE),
    ]
    .into_iter()
    .find_map(|(field, method)| Some(text(field)).filter(|p| !p.is_empty()).map(|p| (method, p)));
    if let Some((method, path)) = pattern {
        let body = match text("body").as_str() {
            "" => BodyRule::None,
            "*" => BodyRule::Whole,
            field => BodyRule::Field(field.to_owned()),
        };
        routes.push(Route { method, template: Template::parse(&path)?, body, rpc: rpc.clone() });
    }
    if top && let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
        for binding in more {
            if let Value::Message(b) = binding {
                add_rule(routes, b, rpc, false)?;
            }
        }
    }
    Ok(())
}

/// The request message: the body (whole or one field), then query parameters, then the path
/// variables, which win.
fn build_request(route: &Route, vars: &[(String, String)], query: &str, body: &[u8]) -> Result<DynamicMessage, String> {
    let input = route.rpc.input();
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(true);
    let mut message = match &route.body {
        BodyRule::Whole if !body.is_empty() => {
            let mut de = serde_json::Deserializer::from_slice(body);
            DynamicMessage::deserialize_with_options(input.clone(), &mut de, &options)
                .map_err(|e| format!("body: {e}"))?
        }
        BodyRule::Field(field) if !body.is_empty() => {
            let mut message = DynamicMessage::new(input.clone());
            let fd = input.get_field_by_name(field).ok_or_else(|| format!("no field {field}"))?;
            let prost_reflect::Kind::Message(kind) = fd.kind() else {
                return Err(format!("{field} is not a message"));
            };
            let mut de = serde_json::Deserializer::from_slice(body);
            let value =
                DynamicMessage::deserialize_with_options(kind, &mut de, &options).map_err(|e| format!("body: {e}"))?;
            message.set_field(&fd, Value::Message(value));
            message
        }
        _ => DynamicMessage::new(input.clone()),
    };
    if route.body != BodyRule::Whole {
        for (key, value) in pairs(query, usize::MAX).map_err(|e| format!("query: {e}"))? {
            set_path(&mut message, &key, &value).map_err(|e| format!("query parameter {key}: {e}"))?;
        }
    }
    for (field, value) in vars {
        set_path(&mut message, field, value).map_err(|e| format!("path: {e}"))?;
    }
    Ok(message)
}

/// Sets a (dotted, JSON or proto-named) scalar field from its text.
fn set_path(message: &mut DynamicMessage, path: &str, text: &str) -> Result<(), String> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let desc = message.descriptor();
    let field = desc.get_field_by_name(head).or_else(|| desc.get_field_by_json_name(head)).ok_or("no such field")?;
    if let Some(rest) = rest {
        let mut inner = match message.get_field(&field).as_ref() {
            Value::Message(m) => m.clone(),
            _ => return Err("not a message".into()),
        };
        set_path(&mut inner, rest, text)?;
        message.set_field(&field, Value::Message(inner));
        return Ok(());
    }
    let value = scalar(&field.kind(), text)?;
    if field.is_list() {
        let mut list = match message.get_field(&field).as_ref() {
            Value::List(l) => l.clone(),
            _ => Vec::new(),
        };
        list.push(value);
        message.set_field(&field, Value::List(list));
    } else {
        message.set_field(&field, value);
    }
    Ok(())
}

fn scalar(kind: &prost_reflect::Kind, text: &str) -> Result<Value, String> {
    use prost_reflect::Kind;
    let bad = || format!("{text:?} is not a valid value");
    Ok(match kind {
        Kind::String => Value::String(text.to_owned()),
        Kind::Bool => Value::Bool(text.parse().map_err(|_| bad())?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(text.parse().map_err(|_| bad())?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(text.parse().map_err(|_| bad())?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().map_err(|_| bad())?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().map_err(|_| bad())?),
        Kind::Float => Value::F32(text.parse().map_err(|_| bad())?),
        Kind::Double => Value::F64(text.parse().map_err(|_| bad())?),
        Kind::Enum(e) => Value::EnumNumber(
            e.get_value_by_name(text).map(|v| v.number()).or_else(|| text.parse().ok()).ok_or_else(bad)?,
        ),
        Kind::Bytes => Value::Bytes(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text.trim_end_matches('='))
                .map_err(|_| bad())?
                .into(),
        ),
        Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask" => {
            let paths = text.split(',').filter(|p| !p.is_empty()).map(|p| Value::String(snake(p))).collect();
            let mut mask = DynamicMessage::new(m.clone());
            mask.set_field_by_name("paths", Value::List(paths));
            Value::Message(mask)
        }
        Kind::Message(_) => return Err("a message cannot be given as a query parameter".into()),
    })
}

fn snake(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    template::percent_decode(&text.replace('+', " "))
}

/// `a=1&b=2` (a query, or a form's body) as unescaped pairs; at most `max` of them.
fn pairs(text: &str, max: usize) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        if out.len() == max {
            return Err("too many parameters".into());
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = unescape(key).ok_or("bad escape")?;
        let value = unescape(value).ok_or("bad escape")?;
        out.push((key, value));
    }
    Ok(out)
}

/// Starts a server-streaming call: the response body, or the status it failed with at once.
async fn open(
    grpc: GrpcService,
    rpc: &MethodDescriptor,
    headers: &HeaderMap,
    request: Vec<u8>,
) -> Result<tonic::body::Body, tonic::Status> {
    let Ok(response) = grpc.oneshot(grpc_request(rpc, headers, request)?).await;
    let (parts, body) = response.into_parts();
    match tonic::Status::from_header_map(&parts.headers) {
        Some(status) if status.code() != tonic::Code::Ok => Err(status),
        _ => Ok(body),
    }
}

/// The HTTP/2 request of a gRPC call: the framed message, with the caller's credentials,
/// request id, trace context and deadline.
fn grpc_request(
    rpc: &MethodDescriptor,
    headers: &HeaderMap,
    request: Vec<u8>,
) -> Result<http::Request<tonic::body::Body>, tonic::Status> {
    let mut framed = BytesMut::with_capacity(request.len() + 5);
    framed.put_u8(0);
    framed.put_u32(request.len() as u32);
    framed.put_slice(&request);
    let uri = format!("/{}/{}", rpc.parent_service().full_name(), rpc.name());
    let mut builder = http::Request::post(uri)
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers");
    for name in ["authorization", "x-request-id", "traceparent", "tracestate", "grpc-timeout", "x-forwarded-for"] {
        if let Some(value) = headers.get(name) {
            builder = builder.header(name, value.clone());
        }
    }
    builder
        .body(tonic::body::Body::new(http_body_util::Full::new(framed.freeze())))
        .map_err(|_| tonic::Status::internal("building the call failed"))
}

/// Calls one unary gRPC method with an encoded request, forwarding the caller's credentials,
/// request id and trace context.
async fn call(
    grpc: GrpcService,
    rpc: &MethodDescriptor,
    headers: &HeaderMap,
    request: Vec<u8>,
) -> Result<Bytes, tonic::Status> {
    let body = open(grpc, rpc, headers, request).await?;
    let collected = body.collect().await.map_err(|e| {
        tracing::warn!(error = %e, "a service's answer broke off");
        tonic::Status::unavailable("the service's answer broke off; retry")
    })?;
    let trailers = collected.trailers().cloned();
    let mut data = collected.to_bytes();
    if let Some(status) = trailers.as_ref().and_then(tonic::Status::from_header_map)
        && status.code() != tonic::Code::Ok
    {
        return Err(status);
    }
    if data.len() < 5 {
        return Err(tonic::Status::internal("the service sent no message"));
    }
    let _compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if data.len() < len {
        return Err(tonic::Status::internal("the service sent a short message"));
    }
    Ok(data.split_to(len))
}

/// A message in the canonical proto3 JSON mapping.
fn to_json(message: &DynamicMessage) -> Vec<u8> {
    let options = prost_reflect::SerializeOptions::new().skip_default_fields(true);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    match message.serialize_with_options(&mut ser, &options) {
        Ok(()) => out,
        Err(_) => br#"{"code":13,"message":"unserialisable answer"}"#.to_vec(),
    }
}

/// The last line of a stream that failed: `{"error": <google.rpc.Status>}`.
fn error_line(gateway: &Gateway, status: &tonic::Status) -> Vec<u8> {
    let inner = gateway.status_message(status).map(|m| to_json(&m)).unwrap_or_else(|| {
        serde_json::to_vec(&serde_json::json!({"code": status.code() as i32, "message": status.message()}))
            .unwrap_or_default()
    });
    let mut out = br#"{"error":"#.to_vec();
    out.extend_from_slice(&inner);
    out.push(b'}');
    out
}

/// The message of an answer given as it is rather than as JSON.
pub(crate) const HTTP_BODY: &str = "google.api.HttpBody";

/// A `google.api.HttpBody` answer as HTTP: its bytes under its media type (a type that cannot
/// be a header value is sent as bytes, `application/octet-stream`), never sniffed by the browser.
fn raw(bytes: &[u8]) -> Response {
    #[derive(Clone, PartialEq, prost::Message)]
    struct HttpBody {
        #[prost(string, tag = "1")]
        content_type: String,
        #[prost(bytes = "vec", tag = "2")]
        data: Vec<u8>,
    }
    let Ok(body) = <HttpBody as prost::Message>::decode(bytes) else {
        return problem(StatusCode::BAD_GATEWAY, tonic::Code::Internal, "the service answered something unreadable");
    };
    let content_type = HeaderValue::from_str(&body.content_type)
        .ok()
        .filter(|v| !body.content_type.is_empty() && v.to_str().is_ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        StatusCode::OK,
        [
            (http::header::CONTENT_TYPE, content_type),
            (http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body.data,
    )
        .into_response()
}

fn json(status: StatusCode, message: &DynamicMessage) -> Response {
    (status, [(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], to_json(message))
        .into_response()
}

/// A `google.rpc.Status` body without details.
fn problem(status: StatusCode, code: tonic::Code, message: &str) -> Response {
    let body = serde_json::json!({ "code": code as i32, "message": message, "details": [] });
    (status, axum::Json(body)).into_response()
}

/// The HTTP status of a gRPC code (the standard mapping of google/rpc/code.proto).
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code::*;
    match code {
        Ok => StatusCode::OK,
        Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        InvalidArgument | OutOfRange | FailedPrecondition => StatusCode::BAD_REQUEST,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        PermissionDenied => StatusCode::FORBIDDEN,
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists | Aborted => StatusCode::CONFLICT,
        ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Unknown | Internal | DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_annotated_rpc_gets_a_route() {
        let gateway = Gateway::new(civic_proto::FILE_DESCRIPTOR_SET).expect("routes");
        // Every RPC of every civic service has exactly one rule, so one route each.
        let pool = prost_reflect::DescriptorPool::decode(civic_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let rpcs: usize =
            pool.services().filter(|s| s.package_name().starts_with("civic.")).map(|s| s.methods().len()).sum();
        assert!(rpcs > 40, "the catalogue's, the desk's and the grid service's RPCs at least: {rpcs}");
        assert_eq!(gateway.len(), rpcs);
        let publish = gateway.routes.iter().find(|r| r.rpc.name() == "PublishServiceItem").expect("publish route");
        assert_eq!(publish.method, Method::POST);
        assert_eq!(publish.body, BodyRule::Whole);
        assert!(publish.template.matches("/v1/streets/zhongjie/items/x:publish").is_some());
        // A verb is not taken for part of a resource id.
        let first = gateway
            .routes
            .iter()
            .find(|r| {
                r.method == Method::GET && r.template.matches("/v1/streets/zhongjie/items/x:listRevisions").is_some()
            })
            .expect("a route");
        assert_eq!(first.rpc.name(), "ListServiceItemRevisions");
    }

    #[test]
    fn codes_map_to_the_standard_http_statuses() {
        assert_eq!(http_status(tonic::Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(tonic::Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(tonic::Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(tonic::Code::Aborted), StatusCode::CONFLICT);
        assert_eq!(http_status(tonic::Code::DeadlineExceeded), StatusCode::GATEWAY_TIMEOUT);
    }
}
