//! The relay: moves outbox rows to the bus, stamping each published only after the bus has
//! accepted it, so that a crash between commit and publish, or between publish and stamp,
//! costs a republication (which JetStream or the inbox absorbs), never an event. On PostgreSQL
//! each pass claims its rows (`for update skip locked`), so replicas share the outbox without
//! publishing a row twice. An event the bus refuses — for good, or because a consumer in this
//! process keeps failing on it — is offered again with back-off and, after
//! `dead_letter_after` refusals, set aside as a dead letter, so the events after it flow on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};

use super::{Bus, Event, describe};
use crate::db::{Backend, Db, Tx};
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
/// A publish that fails for want of the bus (NATS down) is retried, never skipped. An event the
/// bus refuses (see [`super::REFUSED`]) is retried too, with back-off, and set aside as a dead
/// letter once refused `dead_letter_after` times; every refusal is logged with the event's id.
#[derive(Clone)]
pub struct Relay {
    shared: Arc<Shared>,
    service: Arc<str>,
    /// How long published rows, saved answers and inbox records are kept.
    retention: Retention,
    /// Refusals before an event becomes a dead letter.
    dead_letter_after: i64,
}

/// How long the kit's tables keep what is done with, pruned by the relay every five minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Published events (pending ones are never deleted).
    pub published: Duration,
    /// Saved answers to requests with a request id.
    pub answers: Duration,
    /// Records of applied events (longer than any event can come again).
    pub inbox: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self { published: KEEP_PUBLISHED, answers: KEEP_PUBLISHED, inbox: KEEP_PUBLISHED * 7 }
    }
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

type OutboxRow = (String, String, String, Vec<u8>, Option<String>, String, i64);

/// What a pass did with the rows it read.
#[derive(Default)]
struct Outcome {
    /// Published.
    done: Vec<String>,
    /// Refused, with the refusals counted so far.
    refused: Vec<(String, i64)>,
    /// Refused once too often: set aside with the reason.
    dead: Vec<(Event, String, i64)>,
}

impl Relay {
    /// A relay of `db`'s outbox to `bus`, polling every `poll_interval` besides notifications.
    pub fn new(db: Db, bus: Bus, poll_interval: Duration) -> Relay {
        let shared = Shared { db, bus, poll: poll_interval, wake: Notify::new(), pass: Mutex::new(()) };
        Relay {
            shared: Arc::new(shared),
            service: Arc::from(""),
            retention: Retention::default(),
            dead_letter_after: 10,
        }
    }

    /// Keeps published rows, saved answers and inbox records as long as `retention` says;
    /// [`Relay::run`] deletes older ones every five minutes. Unpublished rows are never deleted.
    pub fn keep(mut self, retention: Retention) -> Relay {
        self.retention = retention;
        self
    }

    /// Sets an event aside as a dead letter once the bus has refused it `attempts` times (10
    /// unless told).
    pub fn dead_letter_after(mut self, attempts: u32) -> Relay {
        self.dead_letter_after = i64::from(attempts.max(1));
        self
    }

    /// Deletes what the retention no longer keeps — published outbox rows, saved answers,
    /// inbox records — a thousand rows at a time, and returns how many went. Rows still to
    /// publish are never touched.
    pub async fn prune(&self) -> Result<u64> {
        let tables = [
            ("civic_outbox", "published_at", "id", "published_at is not null and ", self.retention.published),
            (
                "civic_idempotency",
                "created_at",
                "caller || '/' || method || '/' || request_id",
                "",
                self.retention.answers,
            ),
            ("civic_inbox", "created_at", "consumer || '/' || event_id", "", self.retention.inbox),
        ];
        let mut deleted = 0;
        for (table, time, key, only, keep) in tables {
            let cutoff =
                chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or_else(|_| chrono::Duration::days(36500));
            let cutoff = crate::time::to_text(cutoff);
            let sql = format!(
                "delete from {table} where {key} in (select {key} from {table}
                 where {only}{time} < $1 order by {time} limit $2)"
            );
            loop {
                let done = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(&cutoff)
                    .bind(PRUNE_BATCH)
                    .execute(self.shared.db.writer())
                    .await?
                    .rows_affected();
                deleted += done;
                if done > 0 {
                    metrics::counter!("civic_kit_pruned_total", "service" => self.service.to_string(), "table" => table)
                        .increment(done);
                }
                if done < PRUNE_BATCH as u64 {
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::debug!(service = %self.service, deleted, "kept rows past their retention pruned");
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
            let mut claim = match self.shared.db.backend() {
                // Rows this pass publishes are locked until it settles them; other replicas'
                // passes skip them and take the next.
                Backend::Postgres => Some(self.shared.db.begin().await?),
                Backend::Sqlite => None,
            };
            let rows = self
                .pending(claim.as_mut())
                .await
                .inspect_err(|e| tracing::warn!(error = %e, "reading the outbox failed"))?;
            let full = rows.len() as i64 == BATCH;
            let mut outcome = Outcome::default();
            let mut failure = None;
            for (id, topic, key, payload, traceparent, created_at, attempts) in rows {
                let event = Event { id, topic, key, payload, traceparent, created_at };
                match self.shared.bus.publish(&event).await {
                    Ok(()) => outcome.done.push(event.id),
                    Err(e) if e.reason() == super::REFUSED => {
                        let attempts = attempts + 1;
                        let reason = describe(&e);
                        if attempts >= self.dead_letter_after {
                            tracing::error!(event_id = %event.id, topic = %event.topic, attempts, reason = %reason,
                                "the bus keeps refusing an event; it is set aside as a dead letter");
                            outcome.dead.push((event, reason, attempts));
                            continue;
                        }
                        tracing::warn!(event_id = %event.id, topic = %event.topic, attempts, reason = %reason,
                            "the bus refused an event; it is offered again later");
                        outcome.refused.push((event.id, attempts));
                        failure = Some(e);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(event_id = %event.id, topic = %event.topic, error = %describe(&e),
                            "publishing an event failed; it stays pending");
                        failure = Some(e);
                        break;
                    }
                }
            }
            // Published but not settled, they go again on the next pass: at least once.
            self.settle(claim.take(), &outcome)
                .await
                .inspect_err(|e| tracing::warn!(error = %describe(e), "recording what the relay published failed"))?;
            published += outcome.done.len();
            if !outcome.dead.is_empty() {
                metrics::counter!("civic_events_dead_letters_total", "service" => self.service.to_string())
                    .increment(outcome.dead.len() as u64);
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if !full {
                return Ok(published);
            }
        }
    }

    /// The next batch of pending rows, claimed in `claim` when given (PostgreSQL).
    async fn pending(&self, claim: Option<&mut Tx>) -> Result<Vec<OutboxRow>> {
        const PENDING: &str =
            "select id, topic, event_key, payload, traceparent, created_at, attempts from civic_outbox
                 where published_at is null order by id limit $1";
        Ok(match claim {
            Some(tx) => {
                let sql = format!("{PENDING} for update skip locked");
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(BATCH).fetch_all(&mut **tx).await?
            }
            None => sqlx::query_as(PENDING).bind(BATCH).fetch_all(self.shared.db.reader()).await?,
        })
    }

    /// Records a pass's outcome, in the claim's transaction or a new one: published rows
    /// stamped, refusals counted, dead letters moved out of the outbox.
    async fn settle(&self, claim: Option<Tx>, outcome: &Outcome) -> Result<()> {
        if outcome.done.is_empty() && outcome.refused.is_empty() && outcome.dead.is_empty() {
            if let Some(tx) = claim {
                tx.commit().await?;
            }
            return Ok(());
        }
        let now = crate::time::now_text();
        let mut tx = match claim {
            Some(tx) => tx,
            None => self.shared.db.begin().await?,
        };
        // One statement for the pass's published rows (at most BATCH ids).
        if !outcome.done.is_empty() {
            let list: Vec<String> = (0..outcome.done.len()).map(|n| format!("${}", n + 2)).collect();
            let sql = format!(
                "update civic_outbox set published_at = $1, updated_at = $1 where published_at is null and id in ({})",
                list.join(", ")
            );
            let mut stamp = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&now);
            for id in &outcome.done {
                stamp = stamp.bind(id);
            }
            stamp.execute(&mut *tx).await?;
        }
        for (id, attempts) in &outcome.refused {
            sqlx::query("update civic_outbox set attempts = $1, updated_at = $2 where id = $3")
                .bind(attempts)
                .bind(&now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for (event, reason, attempts) in &outcome.dead {
            super::dead_letter(&mut tx, event, "", reason, *attempts).await?;
            sqlx::query("delete from civic_outbox where id = $1").bind(&event.id).execute(&mut *tx).await?;
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
                if let Err(e) = self.prune().await {
                    tracing::warn!(service = %self.service, error = %e, "pruning kept rows failed; next time");
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
