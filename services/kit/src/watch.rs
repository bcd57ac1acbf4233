//! Watch streams (the lobby screen's feed, an app following one issue): a snapshot, a marker
//! that the snapshot is complete, then every change as it happens — built once here. Listening
//! starts before the snapshot is read, so no change falls between the two; events come at least
//! once, from every replica's relay, and may repeat what the snapshot holds, so each resource's
//! versions go out in order, each once. A feed that falls behind ends the stream with
//! UNAVAILABLE (the client watches again); shutdown and a client that goes away end it quietly.
//!
//! Streams are bounded ([`Streams`]): so many open at once in a process, so many per caller
//! (a user, a service, or — anonymous — an address), each for so long; a stream beyond a cap is
//! RESOURCE_EXHAUSTED with a retry hint, and one that reaches its lifetime ends with UNAVAILABLE,
//! for the client to watch again.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::events::{Event, Listener};
use crate::server::Shutdown;

/// A stream of watch responses, as tonic serves it.
pub type WatchStream<R> = Pin<Box<dyn Stream<Item = Result<R, tonic::Status>> + Send>>;

/// What a watch stream sends: a resource of the snapshot, the end of the snapshot, or a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Update<T, K> {
    /// A resource as it was when the stream opened.
    Existing(T),
    /// Everything that existed has been sent; changes follow.
    Current,
    /// A change of kind `K`, and the resource after it.
    Changed(K, T),
}

/// How a watched resource is told apart and ordered, read from events, and sent.
pub trait Watch: Send + 'static {
    /// The resource sent.
    type Resource: Send + 'static;
    /// The kinds of change.
    type Kind: Send + 'static;
    /// The response message.
    type Response: Send + 'static;

    /// The resource's name and version (its etag's counter).
    fn identity(resource: &Self::Resource) -> (String, i64);

    /// The change an event reports, if it concerns this watch (filter by street, decode).
    fn change(&self, event: &Event) -> Option<(Self::Kind, Self::Resource)>;

    /// The response that carries `update`.
    fn respond(update: Update<Self::Resource, Self::Kind>) -> Self::Response;
}

/// The open streams of a process, and its bounds. Cheap to clone; clones share the counts.
#[derive(Debug, Clone)]
pub struct Streams {
    total: usize,
    per_caller: usize,
    lifetime: Duration,
    trusted: crate::client::TrustedProxies,
    #[expect(clippy::disallowed_types, reason = "counted up and down without .await inside")]
    open: Arc<std::sync::Mutex<HashMap<String, usize>>>,
}

/// A stream's place among the open ones; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    streams: Streams,
    caller: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

impl Streams {
    /// The bounds of `settings` (`[server]`).
    pub fn new(settings: &crate::config::ServerSettings) -> Self {
        Self {
            total: settings.max_streams,
            per_caller: settings.max_streams_per_caller,
            lifetime: Duration::from_secs(settings.stream_lifetime_seconds),
            trusted: crate::client::TrustedProxies::parse(&settings.trusted_proxies).unwrap_or_default(),
            #[expect(clippy::disallowed_types, reason = "counted up and down without .await inside")]
            open: Arc::new(std::sync::Mutex::new(HashMap::new())),
        }
    }

    /// A place for a stream of `caller`'s, asked for with `request`: the caller's key when it is
    /// a user or a service, else its address. RESOURCE_EXHAUSTED, with a retry hint, when the
    /// process or the caller has as many streams open as allowed.
    pub fn open<T>(&self, caller: &crate::auth::Caller, request: &tonic::Request<T>) -> crate::Result<Permit> {
        let key = match caller {
            crate::auth::Caller::Anonymous => {
                let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
                let headers = request.metadata().clone().into_headers();
                let address = crate::client::address(&headers, peer, &self.trusted);
                format!("address:{}", address.map(|a| a.to_string()).unwrap_or_default())
            }
            known => known.key(),
        };
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = open.values().sum();
        let mine = open.get(&key).copied().unwrap_or(0);
        if total >= self.total || mine >= self.per_caller {
            let why = if mine >= self.per_caller {
                "you have as many streams open as allowed"
            } else {
                "the server has as many streams open as it allows"
            };
            let error =
                crate::Error::new(tonic::Code::ResourceExhausted, "TOO_MANY_STREAMS", format!("{why}; retry later"));
            return Err(error.with_retry_after(Duration::from_secs(5)));
        }
        *open.entry(key.clone()).or_default() += 1;
        Ok(Permit { streams: self.clone(), caller: key })
    }

    /// How many streams are open now.
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().sum()
    }
}

/// The stream of `snapshot` then of every change `listener` hears that `watch` accepts, until
/// the client goes away, `shutdown`, or the stream's lifetime ends (UNAVAILABLE: watch again).
/// `listener` must have started before the snapshot was read; `permit` is held until the end.
pub fn stream<W: Watch>(
    watch: W,
    snapshot: Vec<W::Resource>,
    mut listener: Listener,
    permit: Permit,
    shutdown: Shutdown,
) -> WatchStream<W::Response> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let ends = tokio::time::Instant::now() + permit.streams.lifetime;
    tokio::spawn(async move {
        let _permit = permit;
        let mut sent: HashMap<String, i64> = snapshot.iter().map(W::identity).collect();
        for resource in snapshot {
            if tx.send(Ok(W::respond(Update::Existing(resource)))).await.is_err() {
                return;
            }
        }
        if tx.send(Ok(W::respond(Update::Current))).await.is_err() {
            return;
        }
        loop {
            let stop = shutdown.clone();
            let event = tokio::select! {
                event = listener.recv() => event,
                _ = tx.closed() => return,
                _ = stop.wait() => return,
                _ = tokio::time::sleep_until(ends) => {
                    let _ = tx.send(Err(tonic::Status::unavailable("the stream reached its longest lifetime; watch again"))).await;
                    return;
                }
            };
            let Some(event) = event else {
                let _ = tx
                    .send(Err(tonic::Status::unavailable("the change feed fell behind or closed; watch again")))
                    .await;
                return;
            };
            let Some((kind, resource)) = watch.change(&event) else { continue };
            let (name, version) = W::identity(&resource);
            if sent.get(&name).is_some_and(|last| *last >= version) {
                continue;
            }
            sent.insert(name, version);
            if tx.send(Ok(W::respond(Update::Changed(kind, resource)))).await.is_err() {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}
