//! The directory of services: how any part of civic reaches another service by its name, the
//! same way in both modes (Quickwit's local-or-remote clients). In the all-in-one process a
//! service's calls go to the in-process stack — no network, but the same layers (trace, metrics,
//! limits) as a call from outside; in split mode they go to the service's replicas over a
//! channel balanced across every address its host names resolve to, resolved again as replicas
//! come and go. An address that refuses connections is left out until it accepts them again,
//! checked at once when a call to the service fails: a replica that died is not called for
//! as long as its address is still listed (a static list, or DNS that has not caught up). The
//! gateway routes the API through the same directory.
//!
//! Every call carries the caller's trace context. A call made while serving a user's request
//! ([`Directory::for_user`]) carries that user's credentials and what is left of the request's
//! deadline, so the callee authorises the user, not the caller. A call a service makes on its
//! own behalf ([`Directory::as_service`]) carries the service's own credential, so the callee
//! can tell the two apart ([`crate::auth::Caller::Service`]).

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tonic::metadata::MetadataValue;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;

use crate::auth::AuthSettings;
use crate::config::DirectorySettings;
use crate::error::{Error, Result};
use crate::server::{Deadline, GrpcService, REQUEST_ID, Shutdown};
use crate::tasks::Tasks;

/// How long a service's own token is used before it is fetched or minted again, at most.
const SERVICE_TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// How long before its expiry a cached token is replaced.
const REFRESH_BEFORE: Duration = Duration::from_secs(30);
/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 16 * 1024;

/// Where every service is, as seen by one process. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
    /// The service this handle acts for, when it calls on its own behalf.
    acting_as: Option<&'static str>,
}

struct Inner {
    /// The process's own stack, set once it is built (the services are built before it).
    local: OnceLock<GrpcService>,
    /// The services this process runs.
    here: BTreeSet<String>,
    /// Channels to the services elsewhere, made on first use.
    #[expect(clippy::disallowed_types, reason = "looked up and inserted without .await inside")]
    remote: std::sync::Mutex<HashMap<String, Remote>>,
    settings: DirectorySettings,
    credential: Credential,
    shutdown: Shutdown,
    tasks: Tasks,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("here", &self.inner.here)
            .field("acting_as", &self.acting_as)
            .field("credential", &self.inner.credential.kind())
            .finish()
    }
}

impl Directory {
    /// The directory of a process that runs the services `here`: the others are found through
    /// `settings`. `auth` mints development service tokens when `settings` name no credential
    /// and a dev key is configured. Resolvers run as `tasks` until `shutdown`.
    pub fn new(
        settings: &DirectorySettings,
        auth: &AuthSettings,
        here: &[&str],
        shutdown: Shutdown,
        tasks: Tasks,
    ) -> Self {
        let inner = Inner {
            local: OnceLock::new(),
            here: here.iter().map(|s| (*s).to_owned()).collect(),
            #[expect(clippy::disallowed_types, reason = "looked up and inserted without .await inside")]
            remote: std::sync::Mutex::new(HashMap::new()),
            settings: settings.clone(),
            credential: Credential::from_settings(settings, auth),
            shutdown,
            tasks,
        };
        Self { inner: Arc::new(inner), acting_as: None }
    }

    /// This directory, for `service` to use: its calls on its own behalf name it.
    pub fn acting_as(&self, service: &'static str) -> Self {
        Self { inner: self.inner.clone(), acting_as: Some(service) }
    }

    /// Sets the process's own stack, which serves the calls to the services it runs. Calls to
    /// them before this is set are UNAVAILABLE.
    pub fn set_local(&self, stack: GrpcService) {
        let _ = self.inner.local.set(stack);
    }

    /// Whether `service` runs in this process.
    pub fn is_here(&self, service: &str) -> bool {
        self.inner.here.contains(service)
    }

    /// A transport to `service`, for tonic's generated clients
    /// (`GridServiceClient::new(directory.connect("grid")?)`): the process's own stack when the
    /// service runs here, else its replicas. Every call carries the current trace context; a
    /// replica that cannot be reached answers UNAVAILABLE. An unknown service, or one with no
    /// address configured, is UNAVAILABLE with the setting to fix.
    pub fn connect(&self, service: &str) -> Result<GrpcService> {
        let target = if self.is_here(service) {
            Target::Local(self.inner.clone())
        } else {
            Target::Remote(service.to_owned(), self.remote(service)?)
        };
        Ok(GrpcService::new(tower::service_fn(move |mut request: http::Request<tonic::body::Body>| {
            crate::telemetry::inject_current(request.headers_mut());
            let target = target.clone();
            async move { Ok::<_, Infallible>(target.call(request).await) }
        })))
    }

    /// The balanced channel to `service`'s replicas, made on first use (for the gateway's
    /// routes and health checks).
    pub fn channel(&self, service: &str) -> Result<Channel> {
        Ok(self.remote(service)?.channel)
    }

    fn remote(&self, service: &str) -> Result<Remote> {
        let mut remote = self.inner.remote.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = remote.get(service) {
            return Ok(known.clone());
        }
        let urls = self.inner.settings.urls(service).ok_or_else(|| {
            Error::new(
                tonic::Code::Unavailable,
                "NO_ADDRESS",
                format!("the {service} service has no address (directory.addresses.{service})"),
            )
        })?;
        let every = Duration::from_millis(self.inner.settings.resolve_every_ms);
        let balanced = balanced(&urls, every, self.inner.shutdown.clone(), &self.inner.tasks);
        remote.insert(service.to_owned(), balanced.clone());
        Ok(balanced)
    }

    /// `message` as a call made while serving `incoming`, a user's request: it carries the
    /// user's credentials, the request id, and what is left of the request's deadline (its
    /// `grpc-timeout`). DEADLINE_EXCEEDED when nothing is left.
    pub fn for_user<T, M>(&self, incoming: &tonic::Request<T>, message: M) -> Result<tonic::Request<M>> {
        let mut request = tonic::Request::new(message);
        for key in ["authorization", REQUEST_ID] {
            if let Some(value) = incoming.metadata().get(key) {
                request.metadata_mut().insert(key, value.clone());
            }
        }
        if let Some(deadline) = incoming.extensions().get::<Deadline>() {
            let left = deadline.remaining();
            if left.is_zero() {
                return Err(Error::new(
                    tonic::Code::DeadlineExceeded,
                    "DEADLINE_EXCEEDED",
                    "the request ran out of time",
                ));
            }
            request.set_timeout(left);
        }
        Ok(request)
    }

    /// `message` as a call the service this handle acts for makes on its own behalf, bounded
    /// by `timeout`: it carries the service's credential (see [`DirectorySettings`]).
    /// UNAVAILABLE when no credential is configured or it cannot be had now.
    pub async fn as_service<M>(&self, message: M, timeout: Duration) -> Result<tonic::Request<M>> {
        let service = self.acting_as.ok_or_else(|| {
            Error::internal(NotActing) // a defect: only a service's own handle acts as a service
        })?;
        let token = self.inner.credential.token(service).await?;
        let mut request = tonic::Request::new(message);
        let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
            Error::new(tonic::Code::Unavailable, "BAD_CREDENTIAL", "the service token is not a header value")
        })?;
        request.metadata_mut().insert("authorization", value);
        request.set_timeout(timeout);
        Ok(request)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a service call was made through a directory handle that acts for no service")]
struct NotActing;

/// Where one service's calls go.
#[derive(Clone)]
enum Target {
    Local(Arc<Inner>),
    Remote(String, Remote),
}

impl Target {
    async fn call(self, request: http::Request<tonic::body::Body>) -> http::Response<tonic::body::Body> {
        match self {
            Target::Local(inner) => match inner.local.get() {
                Some(stack) => {
                    let Ok(response) = stack.clone().oneshot(request).await;
                    response
                }
                None => tonic::Status::unavailable("the service is starting; retry shortly").into_http(),
            },
            Target::Remote(service, remote) => match remote.channel.oneshot(request).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(service, error = %e, "a call to another service failed");
                    // Its replicas are checked now rather than at the next resolving.
                    remote.recheck.notify_one();
                    tonic::Status::unavailable(format!("{service} is unavailable; retry shortly")).into_http()
                }
            },
        }
    }
}

/// A service's replicas as calls reach them: the balanced channel, and how to have its
/// addresses checked again at once.
#[derive(Clone)]
struct Remote {
    channel: Channel,
    recheck: Arc<tokio::sync::Notify>,
}

/// How long a replica has to accept a connection when its address is checked.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The shortest time between two checks of one service's addresses, however many calls fail.
const RECHECK_AT_MOST_EVERY: Duration = Duration::from_millis(250);

/// A channel balancing calls over every address `urls` (`http://host:port`) resolve to that
/// accepts connections, resolving and checking them again every `every`, or at once when
/// [`Remote::recheck`] is notified, until `shutdown` (a task of `tasks`). Calls made before the
/// first answer wait for it; a URL that does not resolve is logged and retried. When no address
/// accepts connections every address is kept: calls then fail as they would anyway, and the
/// first replica back is called as soon as it is.
fn balanced(urls: &[String], every: Duration, shutdown: Shutdown, tasks: &Tasks) -> Remote {
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    let recheck = Arc::new(tokio::sync::Notify::new());
    let urls = urls.to_vec();
    let asked = recheck.clone();
    tasks.spawn("directory.resolve", async move {
        let mut current: BTreeSet<SocketAddr> = BTreeSet::new();
        loop {
            let checked = Instant::now();
            let mut found = BTreeSet::new();
            for url in &urls {
                match resolve(url).await {
                    Ok(addresses) => found.extend(addresses),
                    Err(why) => tracing::warn!(url, %why, "a service address does not resolve"),
                }
            }
            let answering: Vec<bool> = futures::future::join_all(found.iter().map(|address| async move {
                matches!(tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await, Ok(Ok(_)))
            }))
            .await;
            let alive: BTreeSet<SocketAddr> =
                found.iter().zip(&answering).filter(|(_, up)| **up).map(|(address, _)| *address).collect();
            let found = if alive.is_empty() { found } else { alive };
            // A lookup that failed outright keeps the addresses already known.
            if !found.is_empty() {
                for gone in current.difference(&found) {
                    tracing::info!(address = %gone, "service replica gone");
                    if changes.send(Change::Remove(*gone)).await.is_err() {
                        return;
                    }
                }
                for new in found.difference(&current) {
                    let endpoint = match Endpoint::from_shared(format!("http://{new}")) {
                        Ok(e) => e.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true),
                        Err(_) => continue,
                    };
                    tracing::info!(address = %new, "service replica found");
                    if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                        return;
                    }
                }
                current = found;
            }
            let stop = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = asked.notified() => {
                    tokio::time::sleep(RECHECK_AT_MOST_EVERY.saturating_sub(checked.elapsed())).await;
                }
                _ = stop.wait() => return,
            }
        }
    });
    Remote { channel, recheck }
}

/// The socket addresses of `url`'s host and port.
async fn resolve(url: &str) -> std::result::Result<Vec<SocketAddr>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let addresses = tokio::net::lookup_host((host, port)).await.map_err(|e| e.to_string())?;
    Ok(addresses.collect())
}

/// One gRPC service over several: each call goes to the transport of its gRPC service (the
/// first segment of its path, `civic.catalogue.v1.CatalogueService`), any other call — health,
/// reflection — to `local`.
pub fn route(by_grpc_service: HashMap<String, GrpcService>, local: GrpcService) -> GrpcService {
    let by_grpc_service = Arc::new(by_grpc_service);
    GrpcService::new(tower::service_fn(move |request: http::Request<tonic::body::Body>| {
        let by_grpc_service = by_grpc_service.clone();
        let local = local.clone();
        async move {
            let path = request.uri().path();
            let service = path.trim_start_matches('/').split('/').next().unwrap_or_default();
            let target = by_grpc_service.get(service).cloned().unwrap_or(local);
            target.oneshot(request).await
        }
    }))
}

/// How this process proves who another principal is when it acts for them: the gateway, for
/// an Open311 client whose API key it has checked. The token comes from `token_file`, kept
/// fresh by someone else, or — with no file, in development — is minted with the dev key.
pub struct DelegateCredential(Credential);

impl DelegateCredential {
    /// The credential read from `token_file`, or minted with `auth`'s dev key without one
    /// (neither: every token is UNAVAILABLE).
    pub fn new(token_file: Option<&std::path::Path>, auth: &AuthSettings) -> Self {
        let settings = DirectorySettings { token_file: token_file.map(PathBuf::from), ..Default::default() };
        Self(Credential::from_settings(&settings, auth))
    }

    /// A bearer token of the service principal `service`.
    pub async fn token(&self, service: &str) -> Result<String> {
        self.0.token(service).await
    }
}

impl std::fmt::Debug for DelegateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DelegateCredential").field(&self.0.kind()).finish()
    }
}

/// How this process proves who it is when a service calls on its own behalf.
enum Credential {
    /// None configured: such calls are UNAVAILABLE, saying what to configure.
    None,
    /// Tokens minted with the development key, one per calling service.
    Dev(AuthSettings, tokio::sync::Mutex<HashMap<String, (String, Instant)>>),
    /// A token kept fresh in a file by someone else.
    File(PathBuf),
    /// The client-credentials grant at the identity provider's token endpoint.
    ClientCredentials {
        url: String,
        form: Vec<(String, String)>,
        cached: tokio::sync::Mutex<Option<(String, Instant)>>,
    },
}

impl Credential {
    fn from_settings(settings: &DirectorySettings, auth: &AuthSettings) -> Self {
        if let Some(path) = &settings.token_file {
            Credential::File(path.clone())
        } else if let Some(url) = &settings.token_url {
            let mut form = vec![
                ("grant_type".to_owned(), "client_credentials".to_owned()),
                ("client_id".to_owned(), settings.client_id.clone()),
                ("client_secret".to_owned(), settings.client_secret.clone()),
            ];
            if !settings.scope.is_empty() {
                form.push(("scope".to_owned(), settings.scope.clone()));
            }
            Credential::ClientCredentials { url: url.clone(), form, cached: tokio::sync::Mutex::new(None) }
        } else if auth.dev_key.is_some() {
            Credential::Dev(auth.clone(), tokio::sync::Mutex::new(HashMap::new()))
        } else {
            Credential::None
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Dev(..) => "dev key",
            Credential::File(_) => "token file",
            Credential::ClientCredentials { .. } => "client credentials",
        }
    }

    /// A bearer token for `service`'s own calls.
    async fn token(&self, service: &str) -> Result<String> {
        let unavailable = |why: String| {
            tracing::warn!(service, %why, "no service credential");
            Error::new(
                tonic::Code::Unavailable,
                "NO_CREDENTIAL",
                "this service cannot prove who it is now; retry later",
            )
        };
        match self {
            Credential::None => Err(unavailable(
                "set directory.token_file or directory.token_url (or auth.dev_key in development)".to_owned(),
            )),
            Credential::Dev(auth, cached) => {
                let mut cached = cached.lock().await;
                if let Some((token, until)) = cached.get(service)
                    && Instant::now() + REFRESH_BEFORE < *until
                {
                    return Ok(token.clone());
                }
                let token = crate::auth::mint_service_token(auth, service, SERVICE_TOKEN_LIFETIME)
                    .map_err(|e| unavailable(e.to_string()))?;
                cached.insert(service.to_owned(), (token.clone(), Instant::now() + SERVICE_TOKEN_LIFETIME));
                Ok(token)
            }
            Credential::File(path) => {
                let file =
                    tokio::fs::File::open(path).await.map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                let mut text = String::new();
                tokio::io::AsyncReadExt::read_to_string(
                    &mut tokio::io::AsyncReadExt::take(file, MAX_TOKEN_FILE),
                    &mut text,
                )
                .await
                .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                let token = text.trim();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(unavailable(format!("{} holds no token", path.display())));
                }
                Ok(token.to_owned())
            }
            Credential::ClientCredentials { url, form, cached } => {
                let mut cached = cached.lock().await;
                if let Some((token, until)) = cached.as_ref()
                    && Instant::now() + REFRESH_BEFORE < *until
                {
                    return Ok(token.clone());
                }
                let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let body = crate::fetch::post_form(url, &pairs, Duration::from_secs(10)).await.map_err(unavailable)?;
                let answer: TokenAnswer =
                    serde_json::from_slice(&body).map_err(|e| unavailable(format!("{url} answered no token: {e}")))?;
                let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(300)).min(SERVICE_TOKEN_LIFETIME * 6);
                *cached = Some((answer.access_token.clone(), Instant::now() + lifetime));
                Ok(answer.access_token)
            }
        }
    }
}

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn acting_as_issues(settings: &DirectorySettings) -> Directory {
        let (_, shutdown) = crate::server::shutdown_pair();
        Directory::new(settings, &AuthSettings::default(), &["issues"], shutdown, Tasks::new()).acting_as("issues")
    }

    fn bearer(request: &tonic::Request<()>) -> String {
        request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_token_file_is_read_as_it_is_now() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token\n").expect("write");
        let directory = acting_as_issues(&DirectorySettings { token_file: Some(path.clone()), ..Default::default() });
        let request = directory.as_service((), Duration::from_secs(1)).await.expect("a token");
        assert_eq!(bearer(&request), "Bearer first-token");
        std::fs::write(&path, "second-token").expect("rewrite");
        let request = directory.as_service((), Duration::from_secs(1)).await.expect("a token");
        assert_eq!(bearer(&request), "Bearer second-token", "a refreshed file is read again");
        std::fs::write(&path, "  \n").expect("empty");
        let err = directory.as_service((), Duration::from_secs(1)).await.expect_err("no token in it");
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn client_credentials_are_exchanged_for_a_token_that_is_kept_until_it_expires() {
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move |body: String| {
                let count = count.clone();
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    let form_ok = body.contains("grant_type=client_credentials")
                        && body.contains("client_id=civic-issues")
                        && body.contains("client_secret=s%20cret");
                    if form_ok {
                        (http::StatusCode::OK, r#"{"access_token":"cc-token","token_type":"Bearer","expires_in":300}"#)
                    } else {
                        (http::StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#)
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let settings = DirectorySettings {
            token_url: Some(format!("http://{addr}/token")),
            client_id: "civic-issues".into(),
            client_secret: "s cret".into(),
            ..Default::default()
        };
        let directory = acting_as_issues(&settings);
        for _ in 0..3 {
            let request = directory.as_service((), Duration::from_secs(1)).await.expect("a token");
            assert_eq!(bearer(&request), "Bearer cc-token");
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "the token is kept until shortly before it expires");

        let wrong = DirectorySettings { client_secret: "wrong".into(), ..settings };
        let err = acting_as_issues(&wrong).as_service((), Duration::from_secs(1)).await.expect_err("refused");
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }
}
