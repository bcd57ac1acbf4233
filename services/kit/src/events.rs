//! Events: the transactional outbox, the relay that delivers it, the buses (in-process for the
//! all-in-one mode, NATS JetStream between processes) and the idempotent consumer.
//!
//! A change that others must hear about writes its event into `civic_outbox` in the same
//! transaction ([`enqueue`]). The [`Relay`] publishes pending rows and stamps them published
//! only after the bus has accepted them, so a crash anywhere loses nothing: an event is
//! delivered at least once. [`consume`] applies each event at most once per consumer by
//! recording its id in `civic_inbox` in the handler's transaction: exactly once in effect.
//! Events are published in id (UUIDv7, write-time) order; two transactions committing in the
//! other order than they began may be published in that other order.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use prost::Message;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::db::{Db, OnConstraint, Tx, on_constraint};
use crate::error::{Error, Result};

/// One event as stored and delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// A UUIDv7: unique, in write order.
    pub id: String,
    /// What happened, dot-separated and lowercase: `catalogue.item.published`.
    pub topic: String,
    /// The resource name the event concerns.
    pub key: String,
    /// The protobuf-encoded message.
    pub payload: Vec<u8>,
    /// The W3C trace context of the change, when it happened inside a trace.
    pub traceparent: Option<String>,
    /// When the event was written (stored time text).
    pub created_at: String,
}

/// Writes an event into the outbox inside the caller's transaction; returns its id.
#[tracing::instrument(skip(tx, payload))]
pub async fn enqueue(tx: &mut Tx, topic: &str, key: &str, payload: &impl Message) -> Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = crate::time::now_text();
    sqlx::query(
        "insert into civic_outbox (id, topic, event_key, payload, traceparent, created_at, updated_at, published_at)
         values ($1, $2, $3, $4, $5, $6, $6, null)",
    )
    .bind(&id)
    .bind(topic)
    .bind(key)
    .bind(payload.encode_to_vec())
    .bind(crate::telemetry::current_traceparent())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Where events go and where they are heard. Cheap to clone.
#[derive(Clone)]
pub enum Bus {
    /// Inside this process (the all-in-one mode).
    InProcess(Arc<InProcess>),
    /// NATS JetStream (between processes).
    Nats(Arc<Nats>),
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bus::InProcess(_) => f.write_str("Bus::InProcess"),
            Bus::Nats(n) => write!(f, "Bus::Nats({})", n.stream),
        }
    }
}

/// The in-process bus: durable subscribers acknowledge each event before `publish` returns;
/// live listeners hear a best-effort broadcast.
pub struct InProcess {
    durable: tokio::sync::RwLock<Vec<DurableSubscriber>>,
    live: broadcast::Sender<Event>,
}

struct DurableSubscriber {
    prefixes: Vec<String>,
    sender: mpsc::Sender<(Event, oneshot::Sender<bool>)>,
}

/// The NATS JetStream bus.
pub struct Nats {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    stream: String,
    prefix: String,
}

/// How long an in-process publish waits for a subscriber's acknowledgement before the relay
/// tries again later.
const IN_PROCESS_ACK_TIMEOUT: Duration = Duration::from_secs(30);

const HEADER_KEY: &str = "Civic-Key";
const HEADER_CREATED: &str = "Civic-Created-At";
const HEADER_TRACEPARENT: &str = "traceparent";

impl Bus {
    /// A bus inside this process.
    pub fn in_process() -> Bus {
        let (live, _) = broadcast::channel(1024);
        Bus::InProcess(Arc::new(InProcess { durable: tokio::sync::RwLock::new(Vec::new()), live }))
    }

    /// A bus over NATS JetStream at `url`: the stream `stream` holds the subjects
    /// `{subject_prefix}.>`, on file storage, dropping a republished event (same id) within
    /// two minutes. The stream is created when missing.
    pub async fn nats(url: &str, stream: &str, subject_prefix: &str) -> Result<Bus> {
        let client = async_nats::connect(url).await.map_err(Error::unavailable)?;
        let jetstream = async_nats::jetstream::new(client.clone());
        jetstream
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: stream.to_owned(),
                subjects: vec![format!("{subject_prefix}.>")],
                storage: async_nats::jetstream::stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(Error::unavailable)?;
        Ok(Bus::Nats(Arc::new(Nats {
            client,
            jetstream,
            stream: stream.to_owned(),
            prefix: subject_prefix.to_owned(),
        })))
    }

    /// Publishes durably: returns only once the bus has accepted the event (JetStream's
    /// acknowledgement; in-process, every matching durable subscriber's).
    pub async fn publish(&self, event: &Event) -> Result<()> {
        match self {
            Bus::InProcess(bus) => {
                let mut acks = Vec::new();
                for sub in bus.durable.read().await.iter() {
                    if sub.prefixes.iter().any(|p| event.topic.starts_with(p)) {
                        let (ack, acked) = oneshot::channel();
                        sub.sender.send((event.clone(), ack)).await.map_err(|_| Error::unavailable(Closed))?;
                        acks.push(acked);
                    }
                }
                for acked in acks {
                    match tokio::time::timeout(IN_PROCESS_ACK_TIMEOUT, acked).await {
                        Ok(Ok(true)) => {}
                        _ => return Err(Error::unavailable(NotAcknowledged)),
                    }
                }
                let _ = bus.live.send(event.clone());
                Ok(())
            }
            Bus::Nats(bus) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
                headers.insert(HEADER_KEY, event.key.as_str());
                headers.insert(HEADER_CREATED, event.created_at.as_str());
                if let Some(tp) = &event.traceparent {
                    headers.insert(HEADER_TRACEPARENT, tp.as_str());
                }
                let subject = format!("{}.{}", bus.prefix, event.topic);
                let ack = bus
                    .jetstream
                    .publish_with_headers(subject, headers, event.payload.clone().into())
                    .await
                    .map_err(Error::unavailable)?;
                ack.await.map_err(Error::unavailable)?;
                Ok(())
            }
        }
    }

    /// A durable subscription named `consumer` to the topics starting with any of
    /// `topic_prefixes` (each ending in `.`, such as `catalogue.item.`). In-process, register
    /// subscriptions before relays start; over JetStream, a durable pull consumer remembers
    /// what was acknowledged across restarts.
    pub async fn subscribe(&self, consumer: &str, topic_prefixes: &[&str]) -> Result<Subscription> {
        match self {
            Bus::InProcess(bus) => {
                let (sender, receiver) = mpsc::channel(256);
                let prefixes = topic_prefixes.iter().map(|p| (*p).to_owned()).collect();
                bus.durable.write().await.push(DurableSubscriber { prefixes, sender });
                Ok(Subscription(SubscriptionInner::InProcess(receiver)))
            }
            Bus::Nats(bus) => {
                use async_nats::jetstream::consumer::pull;
                let stream = bus.jetstream.get_stream(&bus.stream).await.map_err(Error::unavailable)?;
                let config = pull::Config {
                    durable_name: Some(consumer.to_owned()),
                    filter_subjects: topic_prefixes.iter().map(|p| format!("{}.{}>", bus.prefix, p)).collect(),
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                };
                let consumer: async_nats::jetstream::consumer::Consumer<pull::Config> =
                    stream.get_or_create_consumer(consumer, config).await.map_err(Error::unavailable)?;
                let messages = consumer.messages().await.map_err(Error::unavailable)?;
                Ok(Subscription(SubscriptionInner::Nats { messages: Box::new(messages), prefix: bus.prefix.clone() }))
            }
        }
    }

    /// A live, best-effort feed of the events whose topic starts with `topic_prefix` (ending
    /// in `.`), for watch streams. A listener that falls behind is told so by
    /// [`Listener::recv`] returning `None`, and should start again from a snapshot.
    pub async fn listen(&self, topic_prefix: &str) -> Result<Listener> {
        match self {
            Bus::InProcess(bus) => Ok(Listener {
                inner: ListenerInner::InProcess(bus.live.subscribe()),
                topic_prefix: topic_prefix.to_owned(),
            }),
            Bus::Nats(bus) => {
                // JetStream-stored messages reach plain subscribers of the subject too.
                let subscriber = bus
                    .client
                    .subscribe(format!("{}.{}>", bus.prefix, topic_prefix))
                    .await
                    .map_err(Error::unavailable)?;
                Ok(Listener {
                    inner: ListenerInner::Nats { subscriber, prefix: bus.prefix.clone() },
                    topic_prefix: topic_prefix.to_owned(),
                })
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the event bus is closed")]
struct Closed;

#[derive(Debug, thiserror::Error)]
#[error("a subscriber did not acknowledge the event")]
struct NotAcknowledged;

/// An event from NATS: the topic from the subject, the rest from headers.
fn from_nats(prefix: &str, message: &async_nats::Message) -> Option<Event> {
    let topic = message.subject.as_str().strip_prefix(prefix)?.strip_prefix('.')?.to_owned();
    let headers = message.headers.as_ref()?;
    let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    Some(Event {
        id: get(async_nats::header::NATS_MESSAGE_ID.as_ref())?,
        topic,
        key: get(HEADER_KEY).unwrap_or_default(),
        payload: message.payload.to_vec(),
        traceparent: get(HEADER_TRACEPARENT),
        created_at: get(HEADER_CREATED).unwrap_or_default(),
    })
}

/// A durable subscription's deliveries.
pub struct Subscription(SubscriptionInner);

enum SubscriptionInner {
    InProcess(mpsc::Receiver<(Event, oneshot::Sender<bool>)>),
    Nats { messages: Box<async_nats::jetstream::consumer::pull::Stream>, prefix: String },
}

/// One delivered event, to acknowledge once applied.
pub struct Delivery {
    /// The event.
    pub event: Event,
    ack: Ack,
}

enum Ack {
    InProcess(oneshot::Sender<bool>),
    Nats(Box<async_nats::jetstream::Message>),
}

impl Subscription {
    /// The next delivery; `None` when the bus is gone.
    pub async fn next(&mut self) -> Option<Delivery> {
        match &mut self.0 {
            SubscriptionInner::InProcess(receiver) => {
                receiver.recv().await.map(|(event, ack)| Delivery { event, ack: Ack::InProcess(ack) })
            }
            SubscriptionInner::Nats { messages, prefix } => loop {
                match messages.next().await? {
                    Ok(message) => match from_nats(prefix, &message.message) {
                        Some(event) => return Some(Delivery { event, ack: Ack::Nats(Box::new(message)) }),
                        None => {
                            tracing::warn!(subject = %message.subject, "message without civic headers dropped");
                            let _ = message.ack().await;
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "jetstream delivery failed"),
                }
            },
        }
    }
}

impl Delivery {
    /// Acknowledges the event: it was applied (or had been before).
    pub async fn ack(self) -> Result<()> {
        match self.ack {
            Ack::InProcess(ack) => {
                let _ = ack.send(true);
                Ok(())
            }
            Ack::Nats(message) => message.ack().await.map_err(|e| Error::unavailable(NatsAck(e.to_string()))),
        }
    }

    /// Refuses the event for now: it will be delivered again later.
    pub async fn nak(self) {
        match self.ack {
            Ack::InProcess(ack) => {
                let _ = ack.send(false);
            }
            Ack::Nats(message) => {
                let kind = async_nats::jetstream::AckKind::Nak(Some(Duration::from_secs(1)));
                let _ = message.ack_with(kind).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("acknowledging to jetstream failed: {0}")]
struct NatsAck(String);

/// A live feed of events (see [`Bus::listen`]).
pub struct Listener {
    inner: ListenerInner,
    topic_prefix: String,
}

enum ListenerInner {
    InProcess(broadcast::Receiver<Event>),
    Nats { subscriber: async_nats::Subscriber, prefix: String },
}

impl Listener {
    /// The next event of the feed; `None` when the listener fell behind or the bus closed.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            let event = match &mut self.inner {
                ListenerInner::InProcess(receiver) => receiver.recv().await.ok()?,
                ListenerInner::Nats { subscriber, prefix } => {
                    let message = subscriber.next().await?;
                    match from_nats(prefix, &message) {
                        Some(event) => event,
                        None => continue,
                    }
                }
            };
            if event.topic.starts_with(&self.topic_prefix) {
                return Some(event);
            }
        }
    }
}

/// Moves outbox rows to the bus. Cheap to clone; [`Relay::notify`] after a commit that wrote
/// events delivers them at once, and a poll finds the rows other replicas wrote.
#[derive(Clone)]
pub struct Relay(Arc<RelayInner>);

struct RelayInner {
    db: Db,
    bus: Bus,
    poll: Duration,
    wake: Notify,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("bus", &self.0.bus).field("poll", &self.0.poll).finish()
    }
}

const BATCH: i64 = 100;

type OutboxRow = (String, String, String, Vec<u8>, Option<String>, String);

impl Relay {
    /// A relay of `db`'s outbox to `bus`, polling every `poll_interval` besides notifications.
    pub fn new(db: Db, bus: Bus, poll_interval: Duration) -> Relay {
        Relay(Arc::new(RelayInner { db, bus, poll: poll_interval, wake: Notify::new() }))
    }

    /// Wakes the relay: call after committing a transaction that enqueued events.
    pub fn notify(&self) {
        self.0.wake.notify_one();
    }

    /// Publishes every pending event, in id order, stamping each once the bus accepted it;
    /// returns how many. Stops at the first failure (the rest stay pending).
    pub async fn drain_once(&self) -> Result<usize> {
        let mut published = 0;
        loop {
            let rows: Vec<OutboxRow> = sqlx::query_as(
                "select id, topic, event_key, payload, traceparent, created_at from civic_outbox
                 where published_at is null order by id limit $1",
            )
            .bind(BATCH)
            .fetch_all(self.0.db.reader())
            .await?;
            let full = rows.len() as i64 == BATCH;
            for (id, topic, key, payload, traceparent, created_at) in rows {
                let event = Event { id, topic, key, payload, traceparent, created_at };
                self.0.bus.publish(&event).await?;
                let mut tx = self.0.db.begin().await?;
                sqlx::query("update civic_outbox set published_at = $2, updated_at = $2 where id = $1")
                    .bind(&event.id)
                    .bind(crate::time::now_text())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                published += 1;
            }
            if !full {
                break;
            }
        }
        Ok(published)
    }

    /// Runs until `shutdown` resolves: drains on start (rows left by a crash), on every
    /// notification and every poll interval; after a failure, backs off up to 30 s.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let wait = match self.drain_once().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(published = n, "outbox relayed");
                    }
                    backoff = Duration::from_millis(100);
                    self.0.poll
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "outbox relay failed; retrying");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    wait
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.0.wake.notified() => {},
                _ = tokio::time::sleep(wait) => {},
            }
        }
        // Deliver what was committed before the stop, if the bus still takes it.
        if let Err(e) = self.drain_once().await {
            tracing::warn!(error = %e, "outbox not fully relayed at shutdown; it will be on the next start");
        }
    }
}

/// A handler of one event, inside the transaction that also records it in the inbox.
pub type Handler = Arc<dyn for<'a> Fn(&'a mut Tx, &'a Event) -> BoxFuture<'a, Result<()>> + Send + Sync>;

/// Applies each delivery of `subscription` exactly once for `consumer`: in one transaction it
/// records the event id in the inbox (an id already there is acknowledged and skipped) and
/// runs `handler`; it acknowledges after the commit. A failing handler rolls back and the event
/// comes again later. Runs until `shutdown` resolves or the bus closes.
pub async fn consume(
    db: Db,
    mut subscription: Subscription,
    consumer: &str,
    handler: Handler,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let delivery = tokio::select! {
            _ = &mut shutdown => return,
            d = subscription.next() => match d { Some(d) => d, None => return },
        };
        let span =
            tracing::info_span!("consume", consumer, event_id = %delivery.event.id, topic = %delivery.event.topic);
        crate::telemetry::adopt_traceparent(&span, delivery.event.traceparent.as_deref());
        let outcome = tracing::Instrument::instrument(apply(&db, consumer, &handler, &delivery.event), span).await;
        match outcome {
            Ok(()) => {
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(error = %e, "acknowledgement failed; the event will come again and be skipped");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, consumer, "event handler failed; it will be retried");
                delivery.nak().await;
            }
        }
    }
}

async fn apply(db: &Db, consumer: &str, handler: &Handler, event: &Event) -> Result<()> {
    let mut tx = db.begin().await?;
    let now = crate::time::now_text();
    let fresh =
        sqlx::query("insert into civic_inbox (consumer, event_id, created_at, updated_at) values ($1, $2, $3, $3)")
            .bind(consumer)
            .bind(&event.id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map(|_| true)
            .or_else(|e| {
                match on_constraint(
                    e,
                    &[OnConstraint { name: "civic_inbox_pkey", kind: sqlx::error::ErrorKind::UniqueViolation }],
                    |_| Error::already_exists("inbox entry"),
                ) {
                    err if err.code() == tonic::Code::AlreadyExists => Ok(false),
                    err => Err(err),
                }
            })?;
    if !fresh {
        tracing::debug!("event applied before; skipped");
        return Ok(());
    }
    handler(&mut tx, event).await?;
    tx.commit().await?;
    Ok(())
}
