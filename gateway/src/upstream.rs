//! The services of a split deployment as seen from a gateway of its own: one channel per
//! service, balanced over every address its replicas' host names resolve to (resolved again
//! periodically, so replicas that come and go — a Kubernetes headless service — are followed),
//! and one [`GrpcService`] that sends each call to its service by the call's path.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use civic_kit::server::{GrpcService, Shutdown};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;

/// A channel balancing calls over every address `urls` (`http://host:port`) resolve to,
/// resolving them again every `every` until `shutdown`. Calls made before the first answer
/// wait for it; a URL that does not resolve is logged and retried.
pub fn balanced(urls: &[String], every: Duration, shutdown: Shutdown) -> Channel {
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    let urls = urls.to_vec();
    tokio::spawn(async move {
        let mut current: BTreeSet<SocketAddr> = BTreeSet::new();
        loop {
            let mut found = BTreeSet::new();
            for url in &urls {
                match resolve(url).await {
                    Ok(addresses) => found.extend(addresses),
                    Err(why) => tracing::warn!(url, %why, "an upstream does not resolve"),
                }
            }
            // A lookup that failed outright keeps the addresses already known.
            if !found.is_empty() {
                for gone in current.difference(&found) {
                    tracing::info!(address = %gone, "upstream replica gone");
                    if changes.send(Change::Remove(*gone)).await.is_err() {
                        return;
                    }
                }
                for new in found.difference(&current) {
                    let endpoint = match Endpoint::from_shared(format!("http://{new}")) {
                        Ok(e) => e.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true),
                        Err(_) => continue,
                    };
                    tracing::info!(address = %new, "upstream replica found");
                    if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                        return;
                    }
                }
                current = found;
            }
            let stop = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait() => return,
            }
        }
    });
    channel
}

/// The socket addresses of `url`'s host and port.
async fn resolve(url: &str) -> Result<Vec<SocketAddr>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let addresses = tokio::net::lookup_host((host, port)).await.map_err(|e| e.to_string())?;
    Ok(addresses.collect())
}

/// One gRPC service over several: each call goes to the channel of its gRPC service (the
/// first segment of its path, `civic.catalogue.v1.CatalogueService`), any other call — health,
/// reflection — to `local`.
pub fn route(channels: HashMap<String, Channel>, local: GrpcService) -> GrpcService {
    let channels = std::sync::Arc::new(channels);
    GrpcService::new(tower::service_fn(move |request: http::Request<tonic::body::Body>| {
        let channels = channels.clone();
        let local = local.clone();
        async move {
            let path = request.uri().path();
            let service = path.trim_start_matches('/').split('/').next().unwrap_or_default().to_owned();
            let Some(channel) = channels.get(&service).cloned() else {
                return local.oneshot(request).await;
            };
            Ok::<_, Infallible>(match channel.oneshot(request).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(service, error = %e, "upstream call failed");
                    tonic::Status::unavailable(format!("{service} is unavailable; retry shortly")).into_http()
                }
            })
        }
    }))
}
