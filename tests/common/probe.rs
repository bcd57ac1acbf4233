//! Two small services for testing the frame, registered beside civic's own: `probe_a` relays a
//! call to `probe_b` through its directory — for the user whose request it serves, or on its
//! own behalf — and `probe_b` answers what it was told of the call: who called, in which trace,
//! with how much time left, and whether the call crossed the network. Each serves
//! `civic.<name>.v1.Probe` with two methods whose messages are plain strings.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use civic_kit::auth::Caller;
use civic_kit::config::{ConfigError, Section, Value};
use civic_kit::db::Migration;
use civic_kit::directory::Directory;
use civic_kit::module::{Instance, Module, Parts};
use civic_kit::server::Deadline;
use futures::future::BoxFuture;
use tonic::server::NamedService;
use tonic::service::Routes;

/// The service that relays.
pub static A: Probe = Probe { name: "probe_a", grpc: &[<Named<false> as NamedService>::NAME] };
/// The service that answers.
pub static B: Probe = Probe { name: "probe_b", grpc: &[<Named<true> as NamedService>::NAME] };

/// What `probe_b` saw of a call, as its answer's JSON says it.
#[derive(Debug, serde::Deserialize, PartialEq)]
pub struct Seen {
    /// `users/{user}`, `services/{service}` or `anonymous`.
    pub caller: String,
    /// The trace id the call ran in, if any.
    pub trace_id: Option<String>,
    /// What was left of the call's deadline when it arrived, in milliseconds.
    pub deadline_ms: u64,
    /// Whether the call came over a network connection (not the in-process stack).
    pub network: bool,
}

/// A probe service.
#[derive(Debug)]
pub struct Probe {
    name: &'static str,
    grpc: &'static [&'static str],
}

#[tonic::async_trait]
impl Module for Probe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        self.grpc
    }

    fn migrations(&self) -> &'static [Migration] {
        &[]
    }

    fn settings(&self, _section: &Section) -> Result<Value, ConfigError> {
        Ok(Value::from(figment::value::Dict::new()))
    }

    async fn build(&self, parts: Parts) -> civic_kit::Result<Box<dyn Instance>> {
        Ok(Box::new(Server { name: self.name, auth: parts.auth, directory: parts.directory }))
    }
}

/// A probe as a gRPC service.
#[derive(Clone)]
struct Server {
    name: &'static str,
    auth: civic_kit::auth::Verifier,
    directory: Directory,
}

/// The type tonic's routes know the service by; the name is chosen per probe at run time, so
/// each probe is a route of its own under its own `NamedService` type.
#[derive(Clone)]
struct Named<const B: bool>(Server);

impl NamedService for Named<false> {
    const NAME: &'static str = "civic.probe_a.v1.Probe";
}

impl NamedService for Named<true> {
    const NAME: &'static str = "civic.probe_b.v1.Probe";
}

#[tonic::async_trait]
impl Instance for Server {
    fn add_routes(&self, routes: Routes) -> Routes {
        if self.name == A.name {
            routes.add_service(Named::<false>(self.clone()))
        } else {
            routes.add_service(Named::<true>(self.clone()))
        }
    }

    async fn seed(&self) -> civic_kit::Result<String> {
        Ok("nothing".into())
    }
}

impl<const B: bool> tower::Service<http::Request<tonic::body::Body>> for Named<B> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move {
            let method = request.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<String, String>::default());
            Ok(match method.as_str() {
                "Echo" => grpc.unary(Method(server, Echo), request).await,
                "Relay" => grpc.unary(Method(server, Relay), request).await,
                _ => tonic::Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

struct Echo;
struct Relay;

/// One method of a probe.
struct Method<M>(Server, M);

impl tonic::server::UnaryService<String> for Method<Echo> {
    type Response = String;
    type Future = BoxFuture<'static, Result<tonic::Response<String>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<String>) -> Self::Future {
        let caller = match self.0.auth.caller(request.metadata()) {
            Ok(Caller::Anonymous) => "anonymous".to_owned(),
            Ok(caller) => caller.key(),
            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
        };
        let trace_id =
            civic_kit::telemetry::current_traceparent().and_then(|tp| tp.split('-').nth(1).map(str::to_owned));
        let deadline_ms = request.extensions().get::<Deadline>().map(|d| d.remaining().as_millis() as u64).unwrap_or(0);
        let network = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().is_some();
        let seen =
            serde_json::json!({"caller": caller, "trace_id": trace_id, "deadline_ms": deadline_ms, "network": network});
        Box::pin(std::future::ready(Ok(tonic::Response::new(seen.to_string()))))
    }
}

impl tonic::server::UnaryService<String> for Method<Relay> {
    type Response = String;
    type Future = BoxFuture<'static, Result<tonic::Response<String>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<String>) -> Self::Future {
        let directory = self.0.directory.clone();
        Box::pin(async move {
            let as_service = request.get_ref() == "service";
            let outgoing = if as_service {
                directory.as_service(String::new(), Duration::from_secs(3)).await?
            } else {
                directory.for_user(&request, String::new())?
            };
            let transport = directory.connect(B.name)?;
            let mut client = tonic::client::Grpc::new(transport);
            client.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let path = http::uri::PathAndQuery::from_static("/civic.probe_b.v1.Probe/Echo");
            client.unary(outgoing, path, tonic_prost::ProstCodec::<String, String>::default()).await
        })
    }
}

/// Calls `method` of probe `a` on `channel` with `message`, as `request` sets up.
pub async fn call(
    channel: tonic::transport::Channel,
    request: tonic::Request<String>,
    method: &'static str,
) -> Result<String, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(method);
    Ok(client.unary(request, path, tonic_prost::ProstCodec::<String, String>::default()).await?.into_inner())
}
