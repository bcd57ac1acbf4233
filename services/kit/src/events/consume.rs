//! The idempotent consumer: each delivery is applied in one transaction with the record of its
//! id in `civic_inbox`, so a redelivered event is acknowledged and skipped.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use tracing::Instrument;

use super::{Delivery, Event, Subscription, describe};
use crate::db::{Db, Tx};
use crate::error::Result;

/// The first and the longest pause after the bus failed to deliver.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What a consumer does with an event: [`Handler::apply`] it in the consumer's transaction.
/// Any `Fn(&mut Tx, &Event) -> BoxFuture<Result<()>>` is a handler of every event; [`only`]
/// makes one that passes over the events it has nothing to do with without a transaction.
pub trait Handler: Send + Sync {
    /// Whether the event may change anything here. `false`: it is acknowledged at once, with no
    /// transaction and no record in the inbox (so it must be a pure test of the event).
    fn wants(&self, _event: &Event) -> bool {
        true
    }

    /// Applies the event in `tx`.
    fn apply<'a>(&'a self, tx: &'a mut Tx, event: &'a Event) -> BoxFuture<'a, Result<()>>;
}

impl<F> Handler for F
where
    F: for<'a> Fn(&'a mut Tx, &'a Event) -> BoxFuture<'a, Result<()>> + Send + Sync,
{
    fn apply<'a>(&'a self, tx: &'a mut Tx, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        self(tx, event)
    }
}

/// The handler `apply` for the events `wants` says it may change anything for; the others are
/// acknowledged untouched.
pub fn only<W, A>(wants: W, apply: A) -> Only<W, A>
where
    W: Fn(&Event) -> bool + Send + Sync,
    A: for<'a> Fn(&'a mut Tx, &'a Event) -> BoxFuture<'a, Result<()>> + Send + Sync,
{
    Only { wants, apply }
}

/// See [`only`].
pub struct Only<W, A> {
    wants: W,
    apply: A,
}

impl<W, A> Handler for Only<W, A>
where
    W: Fn(&Event) -> bool + Send + Sync,
    A: for<'a> Fn(&'a mut Tx, &'a Event) -> BoxFuture<'a, Result<()>> + Send + Sync,
{
    fn wants(&self, event: &Event) -> bool {
        (self.wants)(event)
    }

    fn apply<'a>(&'a self, tx: &'a mut Tx, event: &'a Event) -> BoxFuture<'a, Result<()>> {
        (self.apply)(tx, event)
    }
}

/// Applies each delivery of `subscription` exactly once for `consumer`, until `shutdown`
/// resolves or the bus goes away. A delivery the handler does not [`Handler::wants`] is
/// acknowledged at once. For each other delivery it begins a transaction on `db` and records
/// `(consumer, event id)` in the inbox — an id already there is acknowledged and skipped — then
/// runs `handler` in that transaction, commits, and only then acknowledges. A handler error
/// rolls the transaction back and refuses the delivery, which comes again later (JetStream:
/// after a growing delay; in-process: the relay retries with backoff), so a handler that fails
/// for good holds its event up rather than lose it. Deliveries are applied one at a time; a
/// delivery being applied when `shutdown` resolves is finished first.
///
/// Over JetStream, an event this consumer has failed on `dead_after` times is set aside in its
/// database as a dead letter (`civic events dead-letters`) and acknowledged, so it is not offered
/// for ever; in-process, the relay counts the refusals and does the same.
///
/// Each handler runs in a span `consume` that continues the trace of the change that caused
/// the event.
pub async fn consume<H>(
    db: Db,
    mut subscription: Subscription,
    consumer: &str,
    handler: H,
    dead_after: u32,
    shutdown: impl Future<Output = ()>,
) where
    H: Handler,
{
    tokio::pin!(shutdown);
    let mut backoff = BACKOFF_MIN;
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut shutdown => return,
            next = subscription.next() => next,
        };
        let delivery = match next {
            None => {
                tracing::info!(consumer, "event subscription closed");
                return;
            }
            Some(Err(e)) => {
                tracing::warn!(consumer, error = %describe(&e), retry_ms = backoff.as_millis() as u64,
                    "receiving events failed; retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Some(Ok(delivery)) => delivery,
        };
        backoff = BACKOFF_MIN;
        handle(&db, consumer, &handler, delivery, i64::from(dead_after.max(1))).await;
    }
}

/// Applies one delivery and acknowledges or refuses it.
async fn handle<H: Handler>(db: &Db, consumer: &str, handler: &H, delivery: Delivery, dead_after: i64) {
    if !handler.wants(&delivery.event) {
        if let Err(e) = delivery.ack().await {
            tracing::debug!(consumer, error = %describe(&e), "acknowledging a passed-over event failed; it will come again");
        }
        return;
    }
    let span = tracing::info_span!("consume", consumer, event_id = %delivery.event.id, topic = %delivery.event.topic);
    crate::telemetry::adopt_traceparent(&span, delivery.event.traceparent.as_deref());
    async move {
        match apply(db, consumer, handler, &delivery.event).await {
            Ok(applied) => {
                if !applied {
                    tracing::debug!("event applied before; skipped");
                }
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(error = %describe(&e), "acknowledging failed; the event will come again and be skipped");
                }
            }
            Err(e) => match delivery.attempts() {
                Some(attempts) if attempts >= dead_after => {
                    tracing::error!(error = %describe(&e), attempts, "applying an event keeps failing; it is set aside as a dead letter");
                    match set_aside(db, consumer, &delivery.event, &describe(&e), attempts).await {
                        Ok(()) => {
                            metrics::counter!("civic_events_dead_letters_total", "consumer" => consumer.to_owned()).increment(1);
                            if let Err(e) = delivery.ack().await {
                                tracing::warn!(error = %describe(&e), "acknowledging a dead letter failed; it will come again");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %describe(&e), "setting an event aside failed; it will come again");
                            delivery.nak().await;
                        }
                    }
                }
                _ => {
                    tracing::warn!(error = %describe(&e), "applying an event failed; it will come again");
                    delivery.nak().await;
                }
            },
        }
    }
    .instrument(span)
    .await
}

/// Sets `event` aside as a dead letter of `consumer`.
async fn set_aside(db: &Db, consumer: &str, event: &Event, reason: &str, attempts: i64) -> Result<()> {
    let mut tx = db.begin().await?;
    super::dead_letter(&mut tx, event, consumer, reason, attempts).await?;
    tx.commit().await?;
    Ok(())
}

/// Records the event in the inbox and runs the handler, in one transaction. Returns whether it
/// was applied now (`false`: it had been before).
/// (The enclosing `consume` span carries the consumer, event id and topic.)
#[tracing::instrument(skip_all)]
async fn apply<H: Handler>(db: &Db, consumer: &str, handler: &H, event: &Event) -> Result<bool> {
    let mut tx = db.begin().await?;
    // On PostgreSQL a concurrent attempt on the same event waits here for the first to commit
    // (then skips) or roll back (then applies).
    let recorded = sqlx::query(
        "insert into civic_inbox (consumer, event_id, created_at, updated_at) values ($1, $2, $3, $3)
         on conflict (consumer, event_id) do nothing",
    )
    .bind(consumer)
    .bind(&event.id)
    .bind(crate::time::now_text())
    .execute(&mut *tx)
    .await?;
    if recorded.rows_affected() == 0 {
        return Ok(false);
    }
    handler.apply(&mut tx, event).await?;
    tx.commit().await?;
    Ok(true)
}
