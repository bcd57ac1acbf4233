//! The bus of the all-in-one mode: durable subscribers are channels whose acknowledgement each
//! publish awaits, so the relay stamps an event published only once every consumer has applied
//! it; live listeners share a broadcast channel.
//!
//! Nothing is kept in memory: an event a consumer has not acknowledged stays unpublished in the
//! outbox, and the relay offers it again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, broadcast, mpsc, oneshot};

use super::{Event, Filters};
use crate::error::{Error, Result};

/// An event offered to a durable subscriber, with the channel for its verdict: `true` once
/// applied, `false` (or dropped) to have it again later.
pub(super) type Offer = (Event, oneshot::Sender<bool>);

/// How long a publish waits for a subscriber to take and acknowledge an event before failing,
/// so that the relay backs off and offers it again.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// How many events a live listener may fall behind before it is told it lagged.
const LIVE_CAPACITY: usize = 1024;

/// The in-process bus. Cheap to clone; clones share subscribers and listeners.
#[derive(Clone)]
pub struct InProcessBus(Arc<Inner>);

struct Inner {
    durable: Mutex<Vec<Durable>>,
    live: broadcast::Sender<Event>,
}

struct Durable {
    consumer: String,
    filters: Filters,
    offers: mpsc::Sender<Offer>,
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcessBus")
    }
}

impl InProcessBus {
    pub(super) fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self(Arc::new(Inner { durable: Mutex::new(Vec::new()), live }))
    }

    /// Offers `event` to every matching durable subscriber at once and waits for all their
    /// acknowledgements; then tells live listeners.
    pub(super) async fn publish(&self, event: &Event) -> Result<()> {
        let targets: Vec<(String, mpsc::Sender<Offer>)> = {
            let durable = self.0.durable.lock().await;
            durable
                .iter()
                .filter(|d| d.filters.matches(&event.topic))
                .map(|d| (d.consumer.clone(), d.offers.clone()))
                .collect()
        };
        let mut verdicts = Vec::with_capacity(targets.len());
        for (consumer, offers) in targets {
            let (ack, verdict) = oneshot::channel();
            match tokio::time::timeout(ACK_TIMEOUT, offers.send((event.clone(), ack))).await {
                Ok(Ok(())) => verdicts.push((consumer, verdict)),
                Ok(Err(_)) => return Err(Error::unavailable(NotApplied { consumer, why: "has stopped" })),
                Err(_) => return Err(Error::unavailable(NotApplied { consumer, why: "is not taking events" })),
            }
        }
        for (consumer, verdict) in verdicts {
            match tokio::time::timeout(ACK_TIMEOUT, verdict).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    return Err(Error::new(tonic::Code::Unavailable, super::REFUSED, "a consumer refused the event")
                        .with_source(NotApplied { consumer, why: "refused it" }));
                }
                Ok(Err(_)) => return Err(Error::unavailable(NotApplied { consumer, why: "has stopped" })),
                Err(_) => return Err(Error::unavailable(NotApplied { consumer, why: "did not acknowledge in time" })),
            }
        }
        // No listener is no error: the live feed is best effort.
        let _ = self.0.live.send(event.clone());
        Ok(())
    }

    /// Registers the durable subscriber `consumer`, replacing an earlier one of that name.
    pub(super) async fn subscribe(&self, consumer: &str, filters: Filters) -> mpsc::Receiver<Offer> {
        // Each relay offers one event at a time, so a few slots are plenty.
        let (offers, receiver) = mpsc::channel(16);
        let mut durable = self.0.durable.lock().await;
        durable.retain(|d| d.consumer != consumer);
        durable.push(Durable { consumer: consumer.to_owned(), filters, offers });
        receiver
    }

    pub(super) fn listen(&self) -> broadcast::Receiver<Event> {
        self.0.live.subscribe()
    }
}

/// A durable subscriber did not apply an event; it stays pending and is offered again.
#[derive(Debug, thiserror::Error)]
#[error("consumer {consumer} {why}; the event stays pending")]
struct NotApplied {
    consumer: String,
    why: &'static str,
}
