//! Watch streams (the lobby screen's feed, an app following one issue): a snapshot, a marker
//! that the snapshot is complete, then every change as it happens — built once here. Listening
//! starts before the snapshot is read, so no change falls between the two; events come at least
//! once, from every replica's relay, and may repeat what the snapshot holds, so each resource's
//! versions go out in order, each once. A feed that falls behind ends the stream with
//! UNAVAILABLE (the client watches again); shutdown and a client that goes away end it quietly.

use std::collections::HashMap;
use std::pin::Pin;

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

/// The stream of `snapshot` then of every change `listener` hears that `watch` accepts, until
/// the client goes away or `shutdown`. `listener` must have started before the snapshot was read.
pub fn stream<W: Watch>(
    watch: W,
    snapshot: Vec<W::Resource>,
    mut listener: Listener,
    shutdown: Shutdown,
) -> WatchStream<W::Response> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
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
