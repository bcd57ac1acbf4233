//! The outbox, relay, buses and inbox against a real database (SQLite, or PostgreSQL when
//! `CIVIC_TEST_POSTGRES_URL` is set) and, when `CIVIC_TEST_NATS_URL` is set, real NATS JetStream.

use std::sync::Arc;
use std::time::Duration;

use civic_kit::db::Db;
use civic_kit::events::{self, Bus, Event, Handler, Relay};
use civic_kit::server::shutdown_pair;
use civic_kit::testing::TestDatabase;

struct Store {
    db: Db,
    _dir: tempfile::TempDir,
    _pg: Option<TestDatabase>,
}

async fn store() -> Store {
    let dir = tempfile::tempdir().expect("temp dir");
    let pg = TestDatabase::from_env().await;
    let url = match &pg {
        Some(pg) => pg.url().to_owned(),
        None => format!("sqlite://{}", dir.path().join("events.db").display()),
    };
    let db = Db::connect(&url, "events_test", 4).await.expect("connect");
    db.migrate(&[civic_kit::db::Migration {
        version: 1,
        name: "applied",
        sql: "create table applied (event_id text primary key, topic text not null)",
    }])
    .await
    .expect("migrate");
    Store { db, _dir: dir, _pg: pg }
}

/// A handler that records each applied event in the `applied` table.
fn recorder() -> Handler {
    Arc::new(|tx, event: &Event| {
        Box::pin(async move {
            sqlx::query("insert into applied (event_id, topic) values ($1, $2)")
                .bind(&event.id)
                .bind(&event.topic)
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
    })
}

async fn applied(db: &Db) -> i64 {
    sqlx::query_scalar("select count(*) from applied").fetch_one(db.reader()).await.expect("count")
}

/// Waits until `applied` reaches `n` (bounded), polling the table the consumer writes.
async fn await_applied(db: &Db, n: i64) {
    let wait = async {
        while applied(db).await < n {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await.expect("events applied in time");
}

async fn pending(db: &Db) -> i64 {
    sqlx::query_scalar("select count(*) from civic_outbox where published_at is null")
        .fetch_one(db.reader())
        .await
        .expect("count")
}

async fn write_event(db: &Db, key: &str, commit: bool) -> String {
    let mut tx = db.begin().await.expect("begin");
    let id = events::enqueue(&mut tx, "test.thing.happened", key, &pbjson_types::StringValue { value: key.into() })
        .await
        .expect("enqueue");
    if commit {
        tx.commit().await.expect("commit");
    } else {
        tx.rollback().await.expect("rollback");
    }
    id
}

async fn bus_for_test() -> Option<(Bus, Option<String>)> {
    match std::env::var("CIVIC_TEST_NATS_URL") {
        Ok(url) => {
            let stream = format!("CIVIC_TEST_{}", uuid::Uuid::new_v4().simple());
            let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
            Some((Bus::nats(&url, &stream, &prefix).await.expect("nats"), Some(stream)))
        }
        Err(_) => None,
    }
}

async fn delete_stream(stream: Option<String>) {
    if let (Some(stream), Ok(url)) = (stream, std::env::var("CIVIC_TEST_NATS_URL")) {
        let client = async_nats::connect(url).await.expect("nats");
        let _ = async_nats::jetstream::new(client).delete_stream(stream).await;
    }
}

/// The scenario every bus must pass: a crash between commit and publish, a crash between
/// publish and stamping, and a rollback.
async fn exactly_once_through(bus: Bus) {
    let store = store().await;
    let db = store.db.clone();
    let subscription = bus.subscribe("test-consumer", &["test.thing."]).await.expect("subscribe");
    let (stop, shutdown) = shutdown_pair();
    let consumer =
        tokio::spawn(events::consume(db.clone(), subscription, "test-consumer", recorder(), shutdown.clone().wait()));

    // 1. Committed with no relay running: the "crash" between commit and publish.
    let first = write_event(&db, "streets/a/things/1", true).await;
    assert_eq!(pending(&db).await, 1);
    // A new relay, as after the restart, delivers it.
    let relay = Relay::new(db.clone(), bus.clone(), Duration::from_millis(50));
    assert_eq!(relay.drain_once().await.expect("drain"), 1);
    await_applied(&db, 1).await;
    assert_eq!(pending(&db).await, 0);

    // 2. Published, then a crash before stamping: publish by hand, leave the row pending.
    let second = write_event(&db, "streets/a/things/2", true).await;
    let row: (String, String, String, Vec<u8>) =
        sqlx::query_as("select id, topic, event_key, payload from civic_outbox where id = $1")
            .bind(&second)
            .fetch_one(db.reader())
            .await
            .expect("row");
    let event =
        Event { id: row.0, topic: row.1, key: row.2, payload: row.3, traceparent: None, created_at: String::new() };
    bus.publish(&event).await.expect("publish by hand");
    await_applied(&db, 2).await;
    // The restarted relay publishes it again; the inbox keeps it applied once.
    let runner = tokio::spawn(relay.clone().run(shutdown.clone().wait()));
    relay.notify();
    let wait_published = async {
        while pending(&db).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait_published).await.expect("relayed");
    // 3. A rolled-back event never leaves, and a later one still arrives after it.
    write_event(&db, "streets/a/things/never", false).await;
    let third = write_event(&db, "streets/a/things/3", true).await;
    relay.notify();
    await_applied(&db, 3).await;

    let ids: Vec<String> =
        sqlx::query_scalar("select event_id from applied order by event_id").fetch_all(db.reader()).await.expect("ids");
    assert_eq!(ids, vec![first.clone(), second.clone(), third.clone()], "each event applied exactly once");
    let inbox: i64 = sqlx::query_scalar("select count(*) from civic_inbox where consumer = 'test-consumer'")
        .fetch_one(db.reader())
        .await
        .expect("inbox");
    assert_eq!(inbox, 3);
    stop.trigger();
    runner.await.expect("relay stops");
    consumer.await.expect("consumer stops");
}

#[tokio::test]
async fn in_process_events_are_delivered_and_applied_exactly_once() {
    exactly_once_through(Bus::in_process()).await;
}

#[tokio::test]
async fn nats_events_are_delivered_and_applied_exactly_once() {
    let Some((bus, stream)) = bus_for_test().await else {
        eprintln!("skipped: set CIVIC_TEST_NATS_URL to run the NATS case");
        return;
    };
    exactly_once_through(bus).await;
    delete_stream(stream).await;
}

#[tokio::test]
async fn listeners_hear_published_events_live() {
    let buses = match bus_for_test().await {
        Some((nats, stream)) => vec![(Bus::in_process(), None), (nats, stream)],
        None => vec![(Bus::in_process(), None)],
    };
    for (bus, stream) in buses {
        let mut listener = bus.listen("test.thing.").await.expect("listen");
        let mut other = bus.listen("test.other.").await.expect("listen");
        let event = Event {
            id: uuid::Uuid::now_v7().to_string(),
            topic: "test.thing.happened".into(),
            key: "streets/a/things/9".into(),
            payload: vec![1, 2, 3],
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            created_at: "2026-11-28T00:00:00.000000Z".into(),
        };
        bus.publish(&event).await.expect("publish");
        let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await.expect("heard in time");
        assert_eq!(heard, Some(event));
        let unrelated = tokio::time::timeout(Duration::from_millis(200), other.recv()).await;
        assert!(unrelated.is_err(), "a listener hears only its topics");
        delete_stream(stream).await;
    }
}
