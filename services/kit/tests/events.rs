//! The outbox, relay, buses and inbox against a real database — a fresh SQLite file, or a fresh
//! PostgreSQL database when `CIVIC_TEST_POSTGRES_URL` is set — over the in-process bus and, when
//! `CIVIC_TEST_NATS_URL` is set, over real NATS JetStream (a stream and subject prefix of each
//! test's own, deleted at the end).
//!
//! Every scenario runs on both buses: `events_in_process::*` and `events_over_nats::*`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use civic_kit::db::{Db, Migration, Tx};
use civic_kit::events::{self, Bus, Event, Relay};
use civic_kit::server::{Shutdown, ShutdownTrigger, shutdown_pair};
use civic_kit::testing::{TestDb, test_db};
use futures::future::BoxFuture;
use prost::Message;
use tokio::task::JoinHandle;

const CONSUMER: &str = "test-consumer";
const TOPIC: &str = "test.thing.happened";

/// The test's own table, which the handler writes: one row per application, no unique key, so
/// that an event applied twice shows as two rows.
const APPLIED: Migration = Migration {
    version: 1,
    name: "applied",
    sql: "create table applied (event_id text not null, topic text not null, event_key text not null,
          payload blob not null, traceparent text)",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InProcess,
    Nats,
}

/// This test's JetStream namespace.
struct NatsNamespace {
    js: jetstream::Context,
    stream: String,
    prefix: String,
}

/// A database, a bus and the tasks a test started on them.
struct Harness {
    store: TestDb,
    bus: Bus,
    nats: Option<NatsNamespace>,
    stop: ShutdownTrigger,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

/// A fresh database with the `applied` table and a bus of `kind`; `None` (after saying so)
/// when the NATS case is not configured.
async fn harness(kind: Kind) -> Option<Harness> {
    let (bus, nats) = match kind {
        Kind::InProcess => (Bus::in_process(), None),
        Kind::Nats => {
            let Some(url) = std::env::var("CIVIC_TEST_NATS_URL").ok().filter(|u| !u.is_empty()) else {
                eprintln!("skipped: the NATS case runs when CIVIC_TEST_NATS_URL is set");
                return None;
            };
            let id = uuid::Uuid::new_v4().simple().to_string();
            let (stream, prefix) = (format!("CIVIC_TEST_{id}"), format!("t{id}"));
            let bus = Bus::nats(&url, &stream, &prefix, Duration::from_secs(3600)).await.expect("connect to nats");
            let js = jetstream::new(async_nats::connect(&url).await.expect("connect to nats"));
            (bus, Some(NatsNamespace { js, stream, prefix }))
        }
    };
    let store = test_db("events_test").await;
    store.migrate(&[APPLIED]).await.expect("migrate");
    let (stop, shutdown) = shutdown_pair();
    Some(Harness { store, bus, nats, stop, shutdown, tasks: Vec::new() })
}

impl Harness {
    fn db(&self) -> &Db {
        &self.store
    }

    /// Subscribes `CONSUMER` and applies its deliveries with `handler` until the end.
    async fn start_consumer<H>(&mut self, handler: H)
    where
        H: for<'a> Fn(&'a mut Tx, &'a Event) -> BoxFuture<'a, civic_kit::Result<()>> + Send + Sync + 'static,
    {
        let subscription = self.bus.subscribe(CONSUMER, &["test.thing."]).await.expect("subscribe");
        let shutdown = self.shutdown.clone().wait();
        self.tasks.push(tokio::spawn(events::consume(self.db().clone(), subscription, CONSUMER, handler, 3, shutdown)));
    }

    /// A relay on the test's database and bus, as a (re)started process builds it.
    fn relay(&self) -> Relay {
        Relay::new(self.db().clone(), self.bus.clone(), Duration::from_millis(50)).for_service("events_test")
    }

    /// Runs `relay` until the end.
    fn start_relay(&mut self, relay: &Relay) {
        self.tasks.push(tokio::spawn(relay.clone().run(self.shutdown.clone().wait())));
    }

    /// Waits until the outbox is empty and — over JetStream — the consumer has acknowledged
    /// everything delivered to it, so that no further delivery is on its way.
    async fn settle(&self) {
        let db = self.db();
        eventually("the outbox to empty", || async move { pending(db).await == 0 }).await;
        if let Some(nats) = &self.nats {
            eventually("the consumer to acknowledge everything", || async move {
                let info = nats.consumer_info().await;
                info.num_pending == 0 && info.num_ack_pending == 0
            })
            .await;
        }
    }

    /// Stops the tasks, deletes the stream and drops the database.
    async fn finish(self) {
        self.stop.trigger();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(20), task).await.expect("tasks stop in time").expect("task");
        }
        if let Some(nats) = &self.nats {
            nats.js.delete_stream(&nats.stream).await.expect("delete the test stream");
        }
        self.store.cleanup().await;
    }
}

impl NatsNamespace {
    async fn consumer_info(&self) -> jetstream::consumer::Info {
        let stream = self.js.get_stream(&self.stream).await.expect("stream");
        stream.consumer_info(CONSUMER).await.expect("consumer info")
    }

    /// How many messages the stream holds.
    async fn messages(&self) -> u64 {
        self.js.get_stream(&self.stream).await.expect("stream").get_info().await.expect("stream info").state.messages
    }

    /// Publishes `event` as a republication after the duplicate window would: same event id,
    /// another message id, so JetStream stores and delivers it again.
    async fn publish_copy(&self, event: &Event) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{}-later", event.id).as_str());
        headers.insert(events::HEADER_EVENT_ID, event.id.as_str());
        headers.insert(events::HEADER_KEY, event.key.as_str());
        headers.insert(events::HEADER_CREATED_AT, event.created_at.as_str());
        let subject = format!("{}.{}", self.prefix, event.topic);
        let ack = self.js.publish_with_headers(subject, headers, event.payload.clone().into()).await.expect("publish");
        assert!(!ack.await.expect("puback").duplicate);
    }
}

/// Awaits `check` (bounded), polling it every few milliseconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let wait = async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(20), wait).await.is_err() {
        panic!("timed out waiting for {what}");
    }
}

/// The handler under test: records each application in `applied`.
fn recorder() -> impl for<'a> Fn(&'a mut Tx, &'a Event) -> BoxFuture<'a, civic_kit::Result<()>> + Send + Sync + 'static
{
    |tx, event| Box::pin(record(tx, event))
}

async fn record(tx: &mut Tx, event: &Event) -> civic_kit::Result<()> {
    sqlx::query("insert into applied (event_id, topic, event_key, payload, traceparent) values ($1, $2, $3, $4, $5)")
        .bind(&event.id)
        .bind(&event.topic)
        .bind(&event.key)
        .bind(&event.payload)
        .bind(&event.traceparent)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A handler that records the event and then fails on its first attempt, succeeding after.
fn fails_once(
    attempts: Arc<AtomicUsize>,
) -> impl for<'a> Fn(&'a mut Tx, &'a Event) -> BoxFuture<'a, civic_kit::Result<()>> + Send + Sync + 'static {
    move |tx, event| {
        let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            record(tx, event).await?;
            if attempt == 1 {
                return Err(civic_kit::Error::unavailable(std::io::Error::other("the first attempt fails")));
            }
            Ok(())
        })
    }
}

type AppliedRow = (String, String, String, Vec<u8>, Option<String>);

async fn applied(db: &Db) -> Vec<AppliedRow> {
    sqlx::query_as("select event_id, topic, event_key, payload, traceparent from applied order by event_id")
        .fetch_all(db.reader())
        .await
        .expect("applied rows")
}

async fn applied_count(db: &Db) -> usize {
    applied(db).await.len()
}

async fn inbox(db: &Db) -> Vec<String> {
    sqlx::query_scalar("select event_id from civic_inbox where consumer = $1 order by event_id")
        .bind(CONSUMER)
        .fetch_all(db.reader())
        .await
        .expect("inbox")
}

async fn pending(db: &Db) -> i64 {
    sqlx::query_scalar("select count(*) from civic_outbox where published_at is null")
        .fetch_one(db.reader())
        .await
        .expect("pending count")
}

async fn outbox_ids(db: &Db) -> Vec<String> {
    sqlx::query_scalar("select id from civic_outbox order by id").fetch_all(db.reader()).await.expect("outbox")
}

type OutboxRow = (String, String, String, Vec<u8>, Option<String>, String);

/// The pending events as the relay would read them.
async fn pending_events(db: &Db) -> Vec<Event> {
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "select id, topic, event_key, payload, traceparent, created_at from civic_outbox
         where published_at is null order by id",
    )
    .fetch_all(db.reader())
    .await
    .expect("pending events");
    rows.into_iter()
        .map(|(id, topic, key, payload, traceparent, created_at)| Event {
            id,
            topic,
            key,
            payload,
            traceparent,
            created_at,
        })
        .collect()
}

/// The message every test event carries: its key.
fn payload_of(key: &str) -> pbjson_types::StringValue {
    pbjson_types::StringValue { value: key.to_owned() }
}

/// Enqueues one event in a transaction of its own and commits or rolls back.
async fn write_event(db: &Db, key: &str, commit: bool) -> String {
    let mut tx = db.begin().await.expect("begin");
    let id = events::enqueue(&mut tx, TOPIC, key, &payload_of(key)).await.expect("enqueue");
    if commit {
        tx.commit().await.expect("commit");
    } else {
        tx.rollback().await.expect("rollback");
    }
    id
}

/// A committed event reaches a durable consumer through a running relay — woken by `notify`,
/// or, for a write it was not told about (another replica's), by its poll — and is applied
/// exactly once, intact.
async fn committed_events_are_applied_once(kind: Kind) {
    let Some(mut h) = harness(kind).await else { return };
    h.start_consumer(recorder()).await;
    let relay = h.relay();
    h.start_relay(&relay);

    let first = write_event(h.db(), "streets/a/things/1", true).await;
    relay.notify();
    let db = h.db();
    eventually("the first event applied", || async move { applied_count(db).await >= 1 }).await;
    // No notification: the poll finds it.
    let second = write_event(h.db(), "streets/a/things/2", true).await;
    eventually("the second event applied", || async move { applied_count(db).await >= 2 }).await;
    h.settle().await;

    let rows = applied(h.db()).await;
    assert_eq!(rows.len(), 2, "each event applied exactly once: {rows:?}");
    for ((id, topic, key, payload, _), (want_id, want_key)) in
        rows.iter().zip([(&first, "streets/a/things/1"), (&second, "streets/a/things/2")])
    {
        assert_eq!((id, topic.as_str(), key.as_str()), (want_id, TOPIC, want_key));
        let message = pbjson_types::StringValue::decode(payload.as_slice()).expect("the payload decodes");
        assert_eq!(message, payload_of(want_key));
    }
    assert_eq!(inbox(h.db()).await, vec![first, second]);
    assert_eq!(pending(h.db()).await, 0);
    h.finish().await;
}

/// A crash between commit and publish: the event is committed while no relay runs; the relay
/// of the restarted process delivers it at start, and it is applied exactly once.
async fn an_event_committed_before_a_crash_is_delivered_after_restart(kind: Kind) {
    let Some(mut h) = harness(kind).await else { return };
    h.start_consumer(recorder()).await;

    let id = write_event(h.db(), "streets/a/things/1", true).await;
    assert_eq!(pending(h.db()).await, 1, "committed and not yet published");
    assert_eq!(applied_count(h.db()).await, 0);

    // The restart: a new relay, never notified, drains what the crash left.
    let relay = h.relay();
    h.start_relay(&relay);
    let db = h.db();
    eventually("the event applied", || async move { applied_count(db).await >= 1 }).await;
    h.settle().await;

    assert_eq!(applied(h.db()).await.len(), 1, "applied exactly once");
    assert_eq!(inbox(h.db()).await, vec![id]);
    assert_eq!(pending(h.db()).await, 0);
    h.finish().await;
}

/// A crash between publish and stamping: the event reached the bus but its row stayed
/// pending; the restarted relay publishes it again, and the consumer still applies it once.
/// Over JetStream the relay's republication falls in the duplicate window and is dropped, so a
/// second copy is also published as it would be after the window; the inbox skips it.
async fn an_event_published_before_a_crash_is_applied_once(kind: Kind) {
    let Some(mut h) = harness(kind).await else { return };
    h.start_consumer(recorder()).await;

    let id = write_event(h.db(), "streets/a/things/1", true).await;
    let [event] = <[Event; 1]>::try_from(pending_events(h.db()).await).expect("one pending event");
    assert_eq!(event.id, id);
    h.bus.publish(&event).await.expect("publish by hand");
    let db = h.db();
    eventually("the event applied", || async move { applied_count(db).await >= 1 }).await;
    if let Some(nats) = &h.nats {
        nats.publish_copy(&event).await;
    }
    assert_eq!(pending(h.db()).await, 1, "published but never stamped");

    // The restarted relay publishes it again and stamps it. In-process, its publish returns
    // only once the consumer acknowledged that second delivery.
    let relay = h.relay();
    assert_eq!(relay.drain_once().await.expect("drain"), 1);
    h.settle().await;

    assert_eq!(applied(h.db()).await.len(), 1, "applied exactly once");
    assert_eq!(inbox(h.db()).await, vec![id]);
    assert_eq!(pending(h.db()).await, 0);
    if let Some(nats) = &h.nats {
        assert_eq!(nats.messages().await, 2, "the relay's republication was dropped as a duplicate; the copy was not");
        let info = nats.consumer_info().await;
        assert_eq!(info.ack_floor.stream_sequence, 2, "the consumer had both copies and acknowledged both");
    }
    h.finish().await;
}

/// An event enqueued in a transaction that rolls back is never delivered; one committed after
/// it is.
async fn a_rolled_back_event_is_never_delivered(kind: Kind) {
    let Some(mut h) = harness(kind).await else { return };
    h.start_consumer(recorder()).await;

    let never = write_event(h.db(), "streets/a/things/never", false).await;
    let later = write_event(h.db(), "streets/a/things/later", true).await;
    assert_eq!(outbox_ids(h.db()).await, vec![later.clone()], "the rolled-back event left no row");
    let relay = h.relay();
    assert_eq!(relay.drain_once().await.expect("drain"), 1);
    let db = h.db();
    eventually("the later event applied", || async move { applied_count(db).await >= 1 }).await;
    h.settle().await;

    let ids: Vec<String> = applied(h.db()).await.into_iter().map(|row| row.0).collect();
    assert_eq!(ids, vec![later.clone()]);
    assert!(!inbox(h.db()).await.contains(&never));
    if let Some(nats) = &h.nats {
        assert_eq!(nats.messages().await, 1, "only the committed event was published");
    }
    h.finish().await;
}

/// A failing handler's writes roll back and its event is not acknowledged; it comes again and
/// is applied once.
async fn a_failed_event_is_retried_and_applied_once(kind: Kind) {
    let Some(mut h) = harness(kind).await else { return };
    let attempts = Arc::new(AtomicUsize::new(0));
    h.start_consumer(fails_once(attempts.clone())).await;
    let relay = h.relay();
    h.start_relay(&relay);

    let id = write_event(h.db(), "streets/a/things/1", true).await;
    relay.notify();
    let db = h.db();
    eventually("the event applied", || async move { applied_count(db).await >= 1 }).await;
    h.settle().await;

    assert_eq!(attempts.load(Ordering::SeqCst), 2, "one failed attempt, one that succeeded");
    assert_eq!(applied(h.db()).await.len(), 1, "the failed attempt's write was rolled back");
    assert_eq!(inbox(h.db()).await, vec![id]);
    h.finish().await;
}

/// Two relays on one database (two replicas) drain it at once: every event is applied exactly
/// once and none is left pending.
async fn two_relays_on_one_database_apply_each_event_once(kind: Kind) {
    let Some(mut h) = harness(kind).await else { return };
    h.start_consumer(recorder()).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(write_event(h.db(), &format!("streets/a/things/{n}"), true).await);
    }
    let (one, two) = (h.relay(), h.relay());
    let (a, b) = tokio::join!(one.drain_once(), two.drain_once());
    let published = a.expect("first relay") + b.expect("second relay");
    assert!(published >= 20, "every event published by one relay or both ({published})");
    let db = h.db();
    eventually("every event applied", || async move { applied_count(db).await >= 20 }).await;
    h.settle().await;

    let applied_ids: Vec<String> = applied(h.db()).await.into_iter().map(|row| row.0).collect();
    assert_eq!(applied_ids, ids, "each event applied exactly once");
    assert_eq!(inbox(h.db()).await, ids);
    h.finish().await;
}

/// Listeners hear events published after they started, only on their topics, with every field.
async fn listeners_hear_events_live_on_their_topics(kind: Kind) {
    let Some(h) = harness(kind).await else { return };
    let mut things = h.bus.listen("test.thing.").await.expect("listen");
    let mut others = h.bus.listen("test.other").await.expect("listen");
    let event = |topic: &str| Event {
        id: uuid::Uuid::now_v7().to_string(),
        topic: topic.into(),
        key: "streets/a/things/9".into(),
        payload: vec![1, 2, 3],
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        created_at: "2026-11-28T00:00:00.000000Z".into(),
    };
    let (thing, other) = (event(TOPIC), event("test.other.happened"));
    h.bus.publish(&thing).await.expect("publish");
    h.bus.publish(&other).await.expect("publish");

    assert_eq!(heard(&mut things).await, Some(thing));
    // Had it heard the first event, it would come first.
    assert_eq!(heard(&mut others).await, Some(other), "a listener hears only its topics");
    h.finish().await;
}

async fn heard(listener: &mut events::Listener) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(10), listener.recv()).await.expect("heard in time")
}

/// An event with a topic that breaks the naming rules is refused at once.
async fn an_event_with_a_bad_topic_is_refused(kind: Kind) {
    let Some(h) = harness(kind).await else { return };
    let mut tx = h.db().begin().await.expect("begin");
    let refused = events::enqueue(&mut tx, "Test Thing", "streets/a", &payload_of("x")).await;
    assert_eq!(refused.expect_err("refused").code(), tonic::Code::Internal);
    tx.rollback().await.expect("rollback");
    assert!(h.bus.subscribe("bad.name", &["test."]).await.is_err(), "consumer names are JetStream names");
    assert!(h.bus.listen("test.*.").await.is_err(), "prefixes are whole tokens");
    h.finish().await;
}

/// Runs each scenario as a test on each bus.
macro_rules! on_both_buses {
    ($($scenario:ident),* $(,)?) => {
        mod events_in_process {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Kind::InProcess).await;
            })*
        }
        mod events_over_nats {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Kind::Nats).await;
            })*
        }
    };
}

on_both_buses!(
    committed_events_are_applied_once,
    an_event_committed_before_a_crash_is_delivered_after_restart,
    an_event_published_before_a_crash_is_applied_once,
    a_rolled_back_event_is_never_delivered,
    a_failed_event_is_retried_and_applied_once,
    two_relays_on_one_database_apply_each_event_once,
    a_refused_event_becomes_a_dead_letter_and_the_next_flows,
    listeners_hear_events_live_on_their_topics,
    an_event_with_a_bad_topic_is_refused,
);

/// A listener that falls behind is told so (`None`), rather than silently missing events.
#[tokio::test]
async fn events_in_process_a_lagging_listener_is_told_so() {
    let bus = Bus::in_process();
    let mut listener = bus.listen("test.").await.expect("listen");
    for n in 0..1100 {
        let event = Event {
            id: format!("id-{n}"),
            topic: TOPIC.into(),
            key: String::new(),
            payload: Vec::new(),
            traceparent: None,
            created_at: String::new(),
        };
        bus.publish(&event).await.expect("publish");
    }
    assert_eq!(listener.recv().await, None, "lag is reported");
    assert_eq!(listener.recv().await, None, "and the listener stays ended: listen again");
}

/// The trace context of the change travels with its event to the handler.
#[tokio::test]
async fn events_carry_the_trace_context_of_the_change() {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // The test's runtime is single-threaded, so a thread-local subscriber covers all of it.
    let _subscriber = tracing::subscriber::set_default(subscriber);

    let Some(mut h) = harness(Kind::InProcess).await else { return };
    h.start_consumer(recorder()).await;
    let change = tracing::info_span!("change");
    let trace_id = change.context().span().span_context().trace_id().to_string();
    let id = async {
        let mut tx = h.db().begin().await.expect("begin");
        let id = events::enqueue(&mut tx, TOPIC, "streets/a/things/1", &payload_of("x")).await.expect("enqueue");
        tx.commit().await.expect("commit");
        id
    }
    .instrument(change)
    .await;
    // Outside it, the event starts a trace of its own.
    let untraced = write_event(h.db(), "streets/a/things/2", true).await;
    assert_eq!(h.relay().drain_once().await.expect("drain"), 2);

    let rows = applied(h.db()).await;
    let traceparent = |id: &str| rows.iter().find(|r| r.0 == id).map(|r| r.4.clone()).expect("applied");
    let traced = traceparent(&id).expect("a traceparent");
    assert!(traced.starts_with(&format!("00-{trace_id}-")), "{traced} continues trace {trace_id}");
    assert!(!traceparent(&untraced).unwrap_or_default().contains(&trace_id), "another trace");
    h.finish().await;
}

/// Published rows, saved answers and inbox records go once they are older than their retention;
/// rows still to publish never do.
#[tokio::test]
async fn kept_rows_are_pruned_after_their_retention_and_pending_events_never() {
    let Some(mut harness) = harness(Kind::InProcess).await else { return };
    harness.start_consumer(recorder()).await;
    let db = harness.db().clone();
    for key in ["a", "b", "c"] {
        write_event(&db, key, true).await;
    }
    let relay = harness.relay();
    assert_eq!(relay.drain_once().await.expect("drain"), 3);
    let waiting = write_event(&db, "d", true).await;
    let mut tx = db.begin().await.expect("begin");
    let key = civic_kit::idempotency::RequestKey::new("users/a".into(), "Test", "r-1", &payload_of("a")).expect("key");
    civic_kit::idempotency::save(&mut tx, &key, &payload_of("answer")).await.expect("save");
    tx.commit().await.expect("commit");
    let count = |table: &'static str| {
        let db = db.clone();
        async move {
            let sql = format!("select count(*) from {table}");
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(db.reader()).await.expect("count")
        }
    };
    let hour = Duration::from_secs(3600);

    // Within the retention nothing goes.
    let keep = events::Retention { published: hour, answers: hour, inbox: hour };
    assert_eq!(relay.clone().keep(keep).prune().await.expect("prune"), 0);
    assert_eq!(outbox_ids(&db).await.len(), 4);
    // Past it, published rows, answers and inbox records go; the pending event stays.
    let gone = events::Retention { published: Duration::ZERO, answers: Duration::ZERO, inbox: Duration::ZERO };
    assert_eq!(relay.clone().keep(gone).prune().await.expect("prune"), 3 + 1 + 3);
    assert_eq!(outbox_ids(&db).await, vec![waiting]);
    assert_eq!(pending(&db).await, 1);
    assert_eq!((count("civic_idempotency").await, count("civic_inbox").await), (0, 0));
    harness.finish().await;
}

/// An event the bus keeps refusing — larger than NATS takes, or one the in-process consumer
/// keeps failing on — is set aside as a dead letter after the configured attempts, the events
/// after it flow on, and replayed it is delivered.
async fn a_refused_event_becomes_a_dead_letter_and_the_next_flows(kind: Kind) {
    let Some(mut h) = harness(kind).await else { return };
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heal = healed.clone();
    h.start_consumer(move |tx: &mut Tx, event: &Event| {
        let poison = event.key.ends_with("poison") && !heal.load(Ordering::SeqCst);
        Box::pin(async move {
            if poison {
                return Err(civic_kit::Error::unavailable(std::io::Error::other("this consumer cannot take it")));
            }
            record(tx, event).await
        })
    })
    .await;
    let relay = h.relay().dead_letter_after(3);
    h.start_relay(&relay);
    let poison = match kind {
        // Twice the NATS server's default maximum payload.
        Kind::Nats => {
            let mut tx = h.db().begin().await.expect("begin");
            let big = pbjson_types::StringValue { value: "x".repeat(2 << 20) };
            let id = events::enqueue(&mut tx, TOPIC, "streets/a/things/poison", &big).await.expect("enqueue");
            tx.commit().await.expect("commit");
            id
        }
        Kind::InProcess => write_event(h.db(), "streets/a/things/poison", true).await,
    };
    let next = write_event(h.db(), "streets/a/things/next", true).await;
    relay.notify();
    let db = h.db();
    eventually("the next event applied", || async move { applied_count(db).await >= 1 }).await;
    // The pass that published it records the dead letter as it ends.
    eventually("the refused event set aside", || async move {
        events::dead_letters(db, 10).await.is_ok_and(|letters| !letters.is_empty())
    })
    .await;
    let letters = events::dead_letters(h.db(), 10).await.expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (letters[0].event.id.as_str(), letters[0].consumer.as_str(), letters[0].attempts),
        (poison.as_str(), "", 3)
    );
    assert!(!letters[0].reason.is_empty());
    assert_eq!(applied(h.db()).await.into_iter().map(|r| r.0).collect::<Vec<_>>(), vec![next.clone()]);
    assert_eq!(pending(h.db()).await, 0, "nothing held up");

    if kind == Kind::InProcess {
        // Once the consumer can take it, a replay delivers it.
        healed.store(true, Ordering::SeqCst);
        assert!(events::replay(h.db(), &poison).await.expect("replay"));
        relay.notify();
        eventually("the replayed event applied", || async move { applied_count(db).await >= 2 }).await;
        assert!(events::dead_letters(h.db(), 10).await.expect("dead letters").is_empty());
    }
    h.finish().await;
}

/// Two relays on one PostgreSQL database claim their rows: each event is published once, not
/// once per relay.
#[tokio::test]
async fn two_relays_on_postgres_publish_each_event_once() {
    let Some(h) = harness(Kind::InProcess).await else { return };
    if h.db().backend() != civic_kit::db::Backend::Postgres {
        eprintln!("skipped: claims are PostgreSQL's (set CIVIC_TEST_POSTGRES_URL); SQLite has one writer");
        h.finish().await;
        return;
    }
    let mut subscription = h.bus.subscribe("counter", &["test.thing."]).await.expect("subscribe");
    let deliveries = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let seen = deliveries.clone();
    let counter = tokio::spawn(async move {
        while let Some(Ok(delivery)) = subscription.next().await {
            seen.lock().await.push(delivery.event.id.clone());
            // A slow consumer widens the window in which the two relays overlap.
            tokio::time::sleep(Duration::from_millis(2)).await;
            delivery.ack().await.expect("ack");
        }
    });
    let mut ids = Vec::new();
    for n in 0..150 {
        ids.push(write_event(h.db(), &format!("streets/a/things/{n}"), true).await);
    }
    let (one, two) = (h.relay(), h.relay());
    let (a, b) = tokio::join!(one.drain_once(), two.drain_once());
    assert_eq!(a.expect("first relay") + b.expect("second relay"), 150, "each row published by one relay");
    let mut delivered = deliveries.lock().await.clone();
    delivered.sort();
    assert_eq!(delivered, ids, "each event delivered once");
    counter.abort();
    h.finish().await;
}

/// The stream keeps events for the configured age, not for ever.
#[tokio::test]
async fn the_stream_keeps_events_for_its_configured_age() {
    let Some(h) = harness(Kind::Nats).await else { return };
    let nats = h.nats.as_ref().expect("a NATS case");
    let mut stream = nats.js.get_stream(&nats.stream).await.expect("the stream");
    let info = stream.info().await.expect("its settings");
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    h.finish().await;
}
