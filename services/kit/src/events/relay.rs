//! The relay: moves outbox rows to the bus, stamping each published only after the bus has
//! accepted it, so that a crash between commit and publish, or between publish and stamp,
//! costs a republication (which JetStream or the inbox absorbs), never an event.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};

use super::{Bus, Event, describe};
use crate::db::Db;
use crate::error::Result;

/// How many rows a pass reads at a time.
const BATCH: i64 = 100;
/// How many published rows one prune deletes at a time (a short write, then the next).
const PRUNE_BATCH: i64 = 1000;
/// How often the relay prunes published rows.
const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// How long published rows are kept unless told otherwise.
pub const KEEP_PUBLISHED: Duration = Duration::from_secs(24 * 3600);
/// The first and the longest wait after a failed pass.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Moves `db`'s outbox to a bus: at start (rows a crash left behind), when [`Relay::notify`] is
/// called after a commit, and every poll interval (rows other replicas wrote, or whose
/// notification was lost). Cheap to clone; clones share one relay, which runs one pass at a
/// time. Several relays on one database (replicas) may publish a row twice: delivery is at
/// least once.
///
/// A failed publish is retried, never skipped: an event the bus refuses for good (say, one
/// larger than the NATS server's maximum payload) holds up those after it, and every pass logs
/// it, with its id, at warn level.
#[derive(Clone)]
pub struct Relay {
    shared: Arc<Shared>,
    service: Arc<str>,
    /// How long published rows are kept.
    keep_published: Duration,
}

struct Shared {
    db: Db,
    bus: Bus,
    poll: Duration,
    wake: Notify,
    pass: Mutex<()>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("service", &self.service)
            .field("bus", &self.shared.bus)
            .field("poll", &self.shared.poll)
            .finish()
    }
}

type OutboxRow = (String, String, String, Vec<u8>, Option<String>, String);

impl Relay {
    /// A relay of `db`'s outbox to `bus`, polling every `poll_interval` besides notifications.
    pub fn new(db: Db, bus: Bus, poll_interval: Duration) -> Relay {
        let shared = Shared { db, bus, poll: poll_interval, wake: Notify::new(), pass: Mutex::new(()) };
        Relay { shared: Arc::new(shared), service: Arc::from(""), keep_published: KEEP_PUBLISHED }
    }

    /// Keeps published rows for `keep` (24 hours unless told), for looking into what was sent;
    /// [`Relay::run`] deletes older ones every five minutes. Unpublished rows are never deleted.
    pub fn keep_published(mut self, keep: Duration) -> Relay {
        self.keep_published = keep;
        self
    }

    /// Deletes the rows published longer ago than the retention, a thousand at a time, and
    /// returns how many went. Rows still to publish are never touched.
    pub async fn prune_published(&self) -> Result<u64> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(self.keep_published).unwrap_or_else(|_| chrono::Duration::days(36500));
        let cutoff = crate::time::to_text(cutoff);
        let mut deleted = 0;
        loop {
            let done = sqlx::query(
                "delete from civic_outbox where id in (select id from civic_outbox
                 where published_at is not null and published_at < $1 order by published_at limit $2)",
            )
            .bind(&cutoff)
            .bind(PRUNE_BATCH)
            .execute(self.shared.db.writer())
            .await?
            .rows_affected();
            deleted += done;
            if done < PRUNE_BATCH as u64 {
                break;
            }
        }
        if deleted > 0 {
            metrics::counter!("civic_outbox_pruned_total", "service" => self.service.to_string()).increment(deleted);
            tracing::debug!(service = %self.service, deleted, "published outbox rows pruned");
        }
        Ok(deleted)
    }

    /// Names the service whose outbox this is, for the `service` label of the relay's metrics
    /// and its log lines (several services' relays share a process in the all-in-one mode).
    pub fn for_service(mut self, service: &str) -> Relay {
        self.service = Arc::from(service);
        self
    }

    /// Wakes the relay: call after committing a transaction that enqueued events. Cheap; a
    /// notification while a pass runs starts another one after it.
    pub fn notify(&self) {
        self.shared.wake.notify_one();
    }

    /// Publishes every event pending now, in id order, a batch at a time, and returns how many
    /// it published. Stops at the first failure: that event and those after it stay pending
    /// (and the ones before it are stamped); the failure is logged here. Sets the gauge
    /// `civic_outbox_pending` afterwards. A debug-level span: passes run every poll interval,
    /// and exporting an idle pass as a trace would be noise.
    #[tracing::instrument(level = "debug", skip(self), fields(service = %self.service))]
    pub async fn drain_once(&self) -> Result<usize> {
        let _one_pass_at_a_time = self.shared.pass.lock().await;
        let outcome = self.drain().await;
        self.record_pending().await;
        if let Ok(n) = &outcome
            && *n > 0
        {
            metrics::counter!("civic_outbox_published_total", "service" => self.service.to_string())
                .increment(*n as u64);
            tracing::debug!(published = n, "outbox relayed");
        }
        outcome
    }

    async fn drain(&self) -> Result<usize> {
        let mut published = 0;
        loop {
            let rows: Vec<OutboxRow> = sqlx::query_as(
                "select id, topic, event_key, payload, traceparent, created_at from civic_outbox
                 where published_at is null order by id limit $1",
            )
            .bind(BATCH)
            .fetch_all(self.shared.db.reader())
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "reading the outbox failed"))?;
            let full = rows.len() as i64 == BATCH;
            let mut done = Vec::with_capacity(rows.len());
            let mut failure = None;
            for (id, topic, key, payload, traceparent, created_at) in rows {
                let event = Event { id, topic, key, payload, traceparent, created_at };
                match self.shared.bus.publish(&event).await {
                    Ok(()) => done.push(event.id),
                    Err(e) => {
                        tracing::warn!(event_id = %event.id, topic = %event.topic, error = %describe(&e),
                            "publishing an event failed; it stays pending");
                        failure = Some(e);
                        break;
                    }
                }
            }
            // Published but not stamped, they go again on the next pass: at least once.
            self.stamp(&done)
                .await
                .inspect_err(|e| tracing::warn!(error = %describe(e), "stamping published events failed"))?;
            published += done.len();
            if let Some(e) = failure {
                return Err(e);
            }
            if !full {
                return Ok(published);
            }
        }
    }

    /// Marks the events published, in one transaction.
    async fn stamp(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = crate::time::now_text();
        let mut tx = self.shared.db.begin().await?;
        for id in ids {
            sqlx::query(
                "update civic_outbox set published_at = $1, updated_at = $1 where id = $2 and published_at is null",
            )
            .bind(&now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_pending(&self) {
        let pending: std::result::Result<i64, _> =
            sqlx::query_scalar("select count(*) from civic_outbox where published_at is null")
                .fetch_one(self.shared.db.reader())
                .await;
        match pending {
            Ok(n) => metrics::gauge!("civic_outbox_pending", "service" => self.service.to_string()).set(n as f64),
            Err(e) => tracing::debug!(error = %e, "counting the pending events failed"),
        }
    }

    /// Runs until `shutdown` resolves: a pass at start, on every notification and every poll
    /// interval, pruning published rows past their retention every five minutes; after a failed pass it waits 100 ms, doubling up to 30 s while failures last
    /// (a notification does not cut the wait short). At shutdown it makes a last pass, so that
    /// what was committed is delivered if the bus still takes it — and otherwise at next start.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = BACKOFF_MIN;
        let mut pruned_at = tokio::time::Instant::now();
        loop {
            if pruned_at.elapsed() >= PRUNE_EVERY {
                pruned_at = tokio::time::Instant::now();
                if let Err(e) = self.prune_published().await {
                    tracing::warn!(service = %self.service, error = %e, "pruning published outbox rows failed; next time");
                }
            }
            let failed = self.drain_once().await.is_err();
            if failed {
                // The pass logged what failed.
                tracing::debug!(service = %self.service, retry_ms = backoff.as_millis() as u64, "outbox relay backing off");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            } else {
                backoff = BACKOFF_MIN;
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = self.shared.wake.notified() => {},
                    _ = tokio::time::sleep(self.shared.poll) => {},
                }
            }
        }
        match self.drain_once().await {
            Ok(_) => tracing::debug!(service = %self.service, "outbox relay stopped"),
            Err(_) => {
                tracing::warn!(service = %self.service, "outbox relay stopped with events pending; they go at next start")
            }
        }
    }
}
