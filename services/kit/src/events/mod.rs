//! Events: the transactional outbox, the relay that delivers it, the buses (in-process for the
//! all-in-one mode, NATS JetStream between processes) and the idempotent consumer.
//!
//! A change that others must hear about writes its event into `civic_outbox` in the same
//! transaction ([`enqueue`]), so the event exists exactly when the change does. A [`Relay`]
//! publishes pending rows and stamps them published only after the bus has accepted them, so a
//! crash anywhere loses nothing: every event is delivered at least once. [`consume`] records
//! each event id in `civic_inbox` in the handler's own transaction, so an event delivered twice
//! is applied once.
//!
//! Nothing here assumes one replica: several relays on one database may publish the same row
//! (JetStream drops the repeat within its duplicate window; past it, or in-process, the inbox
//! does), and several consumers of one name share the work (JetStream) or serialise on the
//! inbox's primary key.
//!
//! Order: events are published in id (UUIDv7, write-time) order per pass. Two transactions that
//! commit in another order than they wrote their events, a retried failure, or two relays may
//! deliver events out of that order, so handlers must not depend on it.
//!
//! Topics are dot-separated lowercase tokens (`catalogue.item.published`). A *topic prefix*, for
//! [`Bus::subscribe`] and [`Bus::listen`], is whole tokens: `catalogue.item.` selects the topics
//! under `catalogue.item`, `catalogue.item` selects that topic and those under it, and the
//! empty prefix selects every topic. Both buses match the same way.

mod consume;
mod in_process;
mod nats;
mod relay;

use prost::Message;
use tokio::sync::broadcast;

use crate::db::{Arg, Batch, Db, Tx};
use crate::error::{Error, Result};

pub use consume::{Handler, Only, consume, only};
pub use in_process::InProcessBus;
pub use nats::{HEADER_CREATED_AT, HEADER_EVENT_ID, HEADER_KEY, HEADER_TRACEPARENT, NatsBus};
pub use relay::{Relay, Retention};

/// One event as stored and delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// A UUIDv7 as text: unique, in write order.
    pub id: String,
    /// What happened, dot-separated and lowercase: `catalogue.item.published`.
    pub topic: String,
    /// The resource name the event concerns.
    pub key: String,
    /// The protobuf-encoded message.
    pub payload: Vec<u8>,
    /// The W3C `traceparent` of the change, when it happened inside a sampled trace.
    pub traceparent: Option<String>,
    /// When the event was written (stored time text, RFC 3339).
    pub created_at: String,
}

impl Event {
    /// The payload as `E`, when the event is of `E`'s topic and its payload decodes (an event
    /// that does not is logged and skipped by the caller).
    pub fn decode<E: civic_proto::Event>(&self) -> Option<E> {
        if self.topic != E::TOPIC {
            return None;
        }
        match E::decode(self.payload.as_slice()) {
            Ok(payload) => Some(payload),
            Err(_) => {
                tracing::warn!(event_id = %self.id, topic = %self.topic, "an event's payload does not decode");
                None
            }
        }
    }
}

/// The `ErrorInfo.reason` of an event the bus refused: it cannot take the event at all (larger
/// than the NATS server's maximum payload), or a consumer in this process failed to apply it.
/// The relay offers it again a bounded number of times, then sets it aside as a dead letter.
pub const REFUSED: &str = "EVENT_REFUSED";

/// An event set aside, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The event.
    pub event: Event,
    /// Empty when the bus refused the event, else the consumer of this service that kept
    /// failing on it.
    pub consumer: String,
    /// Why, as the last refusal said.
    pub reason: String,
    /// How many times it was offered.
    pub attempts: i64,
    /// When it was set aside (stored time text).
    pub dead_at: String,
}

/// Sets `event` aside as a dead letter of `consumer` (empty: of the bus), in the caller's
/// transaction.
pub(crate) async fn dead_letter(tx: &mut Tx, event: &Event, consumer: &str, reason: &str, attempts: i64) -> Result<()> {
    let now = crate::time::now_text();
    sqlx::query(
        "insert into civic_dead_letters (event_id, consumer, topic, event_key, payload, traceparent, event_created_at,
             reason, attempts, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         on conflict (event_id, consumer) do update set reason = $8, attempts = $9, updated_at = $10",
    )
    .bind(&event.id)
    .bind(consumer)
    .bind(&event.topic)
    .bind(&event.key)
    .bind(&event.payload)
    .bind(&event.traceparent)
    .bind(&event.created_at)
    .bind(reason)
    .bind(attempts)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A dead letter's row: event id, consumer, topic, key, payload, traceparent, the event's time,
/// reason, attempts, and when it was set aside.
type DeadLetterRow = (String, String, String, String, Vec<u8>, Option<String>, String, String, i64, String);

/// A dead letter's event as it goes back to the outbox: topic, key, payload, traceparent, time.
type EventRow = (String, String, Vec<u8>, Option<String>, String);

/// The dead letters of `db`, oldest first, at most `limit`.
pub async fn dead_letters(db: &Db, limit: i64) -> Result<Vec<DeadLetter>> {
    let rows: Vec<DeadLetterRow> =
        sqlx::query_as(
            "select event_id, consumer, topic, event_key, payload, traceparent, event_created_at, reason, attempts, created_at
             from civic_dead_letters order by created_at, event_id limit $1",
        )
        .bind(limit)
        .fetch_all(db.reader())
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, consumer, topic, key, payload, traceparent, created_at, reason, attempts, dead_at)| DeadLetter {
            event: Event { id, topic, key, payload, traceparent, created_at },
            consumer,
            reason,
            attempts,
            dead_at,
        })
        .collect())
}

/// Sends dead letter `event_id` again: back into the outbox as a pending event, its count of
/// refusals reset (consumers that applied it before skip it through their inbox). Returns whether
/// there was such a dead letter. Wake the relay afterwards, or let it find the row on its next
/// poll.
pub async fn replay(db: &Db, event_id: &str) -> Result<bool> {
    let mut tx = db.begin().await?;
    let letters: Vec<EventRow> = sqlx::query_as(
        "select topic, event_key, payload, traceparent, event_created_at from civic_dead_letters where event_id = $1",
    )
    .bind(event_id)
    .fetch_all(&mut *tx)
    .await?;
    let Some((topic, key, payload, traceparent, created_at)) = letters.into_iter().next() else {
        return Ok(false);
    };
    let now = crate::time::now_text();
    sqlx::query(
        "insert into civic_outbox (id, topic, event_key, payload, traceparent, created_at, updated_at, published_at, attempts)
         values ($1, $2, $3, $4, $5, $6, $7, null, 0)
         on conflict (id) do update set published_at = null, attempts = 0, updated_at = $7",
    )
    .bind(event_id)
    .bind(topic)
    .bind(key)
    .bind(payload)
    .bind(traceparent)
    .bind(created_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("delete from civic_dead_letters where event_id = $1").bind(event_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(true)
}

/// Writes an event into the outbox inside the caller's transaction and returns its id. It is
/// delivered once the transaction commits (call [`Relay::notify`] then), and never if it rolls
/// back. The current span's W3C trace context is stored with it, so consumers continue the
/// trace.
#[tracing::instrument(skip(tx, payload))]
pub async fn enqueue(tx: &mut Tx, topic: &str, key: &str, payload: &impl Message) -> Result<String> {
    let mut batch = Batch::new();
    let id = stage(&mut batch, topic, key, payload)?;
    batch.run(tx).await?;
    Ok(id)
}

/// As [`enqueue`], the outbox row added to `batch` (the event exists once the batch has run in
/// a transaction that commits); returns the event's id.
pub fn stage(batch: &mut Batch, topic: &str, key: &str, payload: &impl Message) -> Result<String> {
    check_topic(topic)?;
    let id = uuid::Uuid::now_v7().to_string();
    batch.push(
        "insert into civic_outbox (id, topic, event_key, payload, traceparent, created_at, updated_at, published_at)
         values ($1, $2, $3, $4, $5, $6, $6, null)",
        vec![
            Arg::from(&id),
            topic.into(),
            key.into(),
            payload.encode_to_vec().into(),
            crate::telemetry::current_traceparent().into(),
            crate::time::now_text().into(),
        ],
    );
    Ok(id)
}

/// Where the relay delivers events, and where consumers and live listeners get them. Cheap to
/// clone; clones share one bus.
#[derive(Clone, Debug)]
pub enum Bus {
    /// Inside this process (the all-in-one mode).
    InProcess(InProcessBus),
    /// NATS JetStream (split mode).
    Nats(NatsBus),
}

impl Bus {
    /// A bus inside this process.
    pub fn in_process() -> Bus {
        Bus::InProcess(InProcessBus::new())
    }

    /// A bus over NATS JetStream at `url`. The stream `stream` (say `CIVIC`) holds the subjects
    /// `{subject_prefix}.>` (say `civic.>`; topic `a.b` travels as subject `civic.a.b`) on file
    /// storage for `max_age`, and drops a republished event (same id) within two minutes. The
    /// stream is created when missing; an existing one gets the subject and duplicate window
    /// added (and `max_age`, when it had no limit of age), and keeps its other settings
    /// (replicas, limits) as its operator set them.
    pub async fn nats(url: &str, stream: &str, subject_prefix: &str, max_age: std::time::Duration) -> Result<Bus> {
        Ok(Bus::Nats(NatsBus::connect(url, stream, subject_prefix, max_age).await?))
    }

    /// Publishes durably: returns only once the bus has accepted the event — JetStream's
    /// acknowledgement (the event id is the `Nats-Msg-Id`, so JetStream drops a republished
    /// duplicate), or in-process every matching durable subscriber's acknowledgement. Live
    /// listeners hear it afterwards.
    pub async fn publish(&self, event: &Event) -> Result<()> {
        match self {
            Bus::InProcess(bus) => bus.publish(event).await,
            Bus::Nats(bus) => bus.publish(event).await,
        }
    }

    /// A durable subscription named `consumer` (letters, digits, `-` and `_`) to the topics
    /// matching any of `topic_prefixes` (see the module docs).
    ///
    /// Over JetStream it is a durable pull consumer with explicit acknowledgement that remembers
    /// its place across restarts, shared by every replica that subscribes with the same name.
    ///
    /// In-process it is a subscriber whose acknowledgement each publish waits for: subscribe
    /// before starting relays, or events published meanwhile pass it by. Subscribing again with
    /// the same name replaces the earlier subscriber; while a dropped subscription has no
    /// replacement, its topics' events stay pending in the outbox.
    pub async fn subscribe(&self, consumer: &str, topic_prefixes: &[&str]) -> Result<Subscription> {
        check_consumer(consumer)?;
        let filters = Filters::new(topic_prefixes)?;
        let inner = match self {
            Bus::InProcess(bus) => SubscriptionInner::InProcess(bus.subscribe(consumer, filters).await),
            Bus::Nats(bus) => SubscriptionInner::Nats(Box::new(bus.subscribe(consumer, &filters).await?)),
        };
        Ok(Subscription(inner))
    }

    /// A live, best-effort feed of the events whose topic matches `topic_prefix`, for watch
    /// streams. It hears only what is published after it starts, and keeps nothing: a listener
    /// that falls behind, or whose bus closes, gets `None` from [`Listener::recv`] and should
    /// listen again and resynchronise from a snapshot. Over NATS it is a core subscription
    /// (events published into JetStream reach core subscribers too).
    pub async fn listen(&self, topic_prefix: &str) -> Result<Listener> {
        let filters = Filters::new(&[topic_prefix])?;
        let feed = match self {
            Bus::InProcess(bus) => Feed::InProcess(bus.listen()),
            Bus::Nats(bus) => Feed::Nats(bus.listen(&filters).await?),
        };
        Ok(Listener { feed, filters, done: false })
    }
}

/// A durable subscription's deliveries (see [`Bus::subscribe`]); [`consume`] applies them.
pub struct Subscription(SubscriptionInner);

enum SubscriptionInner {
    InProcess(tokio::sync::mpsc::Receiver<in_process::Offer>),
    Nats(Box<nats::NatsSubscription>),
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            SubscriptionInner::InProcess(_) => "Subscription::InProcess",
            SubscriptionInner::Nats(_) => "Subscription::Nats",
        })
    }
}

impl Subscription {
    /// The next delivery; `Some(Err(_))` for a transient failure of the bus (ask again), `None`
    /// once the bus is gone.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        match &mut self.0 {
            SubscriptionInner::InProcess(offers) => {
                offers.recv().await.map(|(event, ack)| Ok(Delivery { event, ack: Ack::InProcess(ack) }))
            }
            SubscriptionInner::Nats(subscription) => subscription
                .next()
                .await
                .map(|d| d.map(|(event, message)| Delivery { event, ack: Ack::Nats(Box::new(message)) })),
        }
    }
}

/// One delivered event, to acknowledge once applied (or refuse, to have it again later).
pub struct Delivery {
    /// The event.
    pub event: Event,
    ack: Ack,
}

enum Ack {
    InProcess(tokio::sync::oneshot::Sender<bool>),
    Nats(Box<async_nats::jetstream::Message>),
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("event_id", &self.event.id).field("topic", &self.event.topic).finish()
    }
}

impl Delivery {
    /// Acknowledges the event: it was applied (or had been before). A lost acknowledgement means
    /// the event comes again, and the inbox skips it.
    pub async fn ack(self) -> Result<()> {
        match self.ack {
            Ack::InProcess(ack) => {
                // The publisher may have given up waiting; it then publishes again.
                let _ = ack.send(true);
                Ok(())
            }
            Ack::Nats(message) => nats::ack(&message).await,
        }
    }

    /// How many times this event was delivered to this consumer, when the bus counts (JetStream
    /// does; in-process, the relay counts refusals instead).
    pub fn attempts(&self) -> Option<i64> {
        match &self.ack {
            Ack::InProcess(_) => None,
            Ack::Nats(message) => message.info().ok().map(|i| i.delivered),
        }
    }

    /// Refuses the event for now: it comes again later (JetStream: after a delay growing with
    /// the number of attempts; in-process: the relay's publish fails and it retries with
    /// backoff).
    pub async fn nak(self) {
        match self.ack {
            Ack::InProcess(ack) => {
                let _ = ack.send(false);
            }
            Ack::Nats(message) => nats::nak(&message).await,
        }
    }
}

/// A live feed of events (see [`Bus::listen`]).
pub struct Listener {
    feed: Feed,
    filters: Filters,
    done: bool,
}

enum Feed {
    InProcess(broadcast::Receiver<Event>),
    Nats(nats::LiveFeed),
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("filters", &self.filters).field("done", &self.done).finish()
    }
}

impl Listener {
    /// The next event of the feed; `None` when the listener fell behind or the bus closed, and
    /// from then on: listen again and resynchronise.
    pub async fn recv(&mut self) -> Option<Event> {
        while !self.done {
            let event = match &mut self.feed {
                Feed::InProcess(receiver) => match receiver.recv().await {
                    Ok(event) => Some(event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "live listener fell behind");
                        None
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                },
                Feed::Nats(feed) => feed.recv().await,
            };
            match event {
                Some(event) if self.filters.matches(&event.topic) => return Some(event),
                Some(_) => {}
                None => self.done = true,
            }
        }
        None
    }
}

/// Topic filters in NATS subject syntax relative to the bus's subject prefix: `a.b.>` (under
/// `a.b`), `a.b` (exactly) or `>` (everything); none of them covers another.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filters(Vec<String>);

impl Filters {
    fn new(topic_prefixes: &[&str]) -> Result<Self> {
        let mut filters = Vec::new();
        for prefix in topic_prefixes {
            if prefix.is_empty() {
                filters.push(">".to_owned());
            } else if let Some(under) = prefix.strip_suffix('.') {
                check_tokens(under).map_err(|why| Error::internal(InvalidTopic::prefix(prefix, why)))?;
                filters.push(format!("{under}.>"));
            } else {
                check_tokens(prefix).map_err(|why| Error::internal(InvalidTopic::prefix(prefix, why)))?;
                filters.push((*prefix).to_owned());
                filters.push(format!("{prefix}.>"));
            }
        }
        if filters.is_empty() {
            return Err(Error::internal(InvalidTopic::prefix("", "at least one topic prefix is needed")));
        }
        // JetStream refuses overlapping filters: keep only those no other one covers.
        filters.sort();
        filters.dedup();
        let kept = filters.iter().filter(|f| !filters.iter().any(|g| g != *f && covers(g, f))).cloned().collect();
        Ok(Self(kept))
    }

    fn matches(&self, topic: &str) -> bool {
        self.0.iter().any(|f| covers(f, topic))
    }
}

/// Whether the filter `general` selects everything `specific` (a topic or filter) selects.
fn covers(general: &str, specific: &str) -> bool {
    match general.strip_suffix('>') {
        // `>` needs one token or more after the base.
        Some(base) => specific.len() > base.len() && specific.starts_with(base),
        None => general == specific,
    }
}

/// Checks `topic`: dot-separated tokens of lowercase letters, digits, `_` and `-`.
fn check_topic(topic: &str) -> Result<()> {
    check_tokens(topic).map_err(|why| Error::internal(InvalidTopic::topic(topic, why)))
}

fn check_tokens(s: &str) -> std::result::Result<(), &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    let token_ok = |t: &str| {
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    if s.split('.').all(token_ok) {
        Ok(())
    } else {
        Err("topics are dot-separated tokens of lowercase letters, digits, '_' and '-'")
    }
}

/// Checks a durable consumer's name, which JetStream also uses.
fn check_consumer(consumer: &str) -> Result<()> {
    let ok = !consumer.is_empty() && consumer.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(Error::internal(InvalidConsumer(consumer.to_owned()))) }
}

/// A topic or topic prefix that breaks the rules: a defect of the calling code.
#[derive(Debug, thiserror::Error)]
#[error("invalid event {what} {value:?}: {why}")]
struct InvalidTopic {
    what: &'static str,
    value: String,
    why: &'static str,
}

impl InvalidTopic {
    fn topic(value: &str, why: &'static str) -> Self {
        Self { what: "topic", value: value.to_owned(), why }
    }

    fn prefix(value: &str, why: &'static str) -> Self {
        Self { what: "topic prefix", value: value.to_owned(), why }
    }
}

/// A consumer name that breaks the rules: a defect of the calling code.
#[derive(Debug, thiserror::Error)]
#[error("invalid consumer name {0:?}: letters, digits, '-' and '_' only")]
struct InvalidConsumer(String);

/// An error with its causes, for the log (an [`Error`] displays only what a caller may see).
fn describe(e: &Error) -> String {
    std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_select_whole_tokens() {
        let under = Filters::new(&["catalogue.item."]).expect("filters");
        assert_eq!(under.0, vec!["catalogue.item.>"]);
        assert!(under.matches("catalogue.item.published"));
        assert!(!under.matches("catalogue.item"));
        assert!(!under.matches("catalogue.items.published"));

        let at = Filters::new(&["catalogue.item"]).expect("filters");
        assert_eq!(at.0, vec!["catalogue.item", "catalogue.item.>"]);
        assert!(at.matches("catalogue.item"));
        assert!(at.matches("catalogue.item.published"));
        assert!(!at.matches("catalogue.itemx"));

        let all = Filters::new(&[""]).expect("filters");
        assert!(all.matches("anything.at.all"));
    }

    #[test]
    fn overlapping_prefixes_collapse() {
        let filters = Filters::new(&["catalogue.", "catalogue.item.", "desk.case", "catalogue.item"]).expect("f");
        assert_eq!(filters.0, vec!["catalogue.>", "desk.case", "desk.case.>"]);
        assert_eq!(Filters::new(&["a.", ""]).expect("f").0, vec![">"]);
    }

    #[test]
    fn bad_topics_and_names_are_refused() {
        assert!(check_topic("catalogue.item.published").is_ok());
        assert!(check_topic("catalogue.application.hand_over").is_ok());
        for bad in ["", "Catalogue.item", "a..b", "a.b.", ".a", "a b", "a.*", "a.>"] {
            assert!(check_topic(bad).is_err(), "{bad:?} refused");
        }
        assert!(Filters::new(&[]).is_err());
        assert!(Filters::new(&["a.*."]).is_err());
        assert!(check_consumer("catalogue-search_1").is_ok());
        assert!(check_consumer("a.b").is_err());
        assert!(check_consumer("").is_err());
    }
}
