//! The writer and its batches against a real database — a fresh SQLite file, or a fresh
//! PostgreSQL database when `CIVIC_TEST_POSTGRES_URL` is set: statements sent together run in
//! order with their own arguments, a retried request gets its first answer and changes nothing
//! (also when its change would fail now), and twins sent at once make one change.

use std::time::Duration;

use civic_kit::db::{Arg, Batch, Migration, exists_on};
use civic_kit::error::Error;
use civic_kit::events::{Bus, Relay};
use civic_kit::idempotency::RequestKey;
use civic_kit::testing::{TestDb, test_db};
use civic_kit::write::{Change, Writer};
use civic_proto::issues::IssueCreated;
use pbjson_types::StringValue;

/// The test's own table.
const THINGS: Migration = Migration {
    version: 1,
    name: "things",
    sql: "create table things (id text primary key, n bigint not null, note text, x double precision not null,
          data blob not null)",
};

/// A row of `things`: id, n, note, x, data.
type Thing = (String, i64, Option<String>, f64, Vec<u8>);

const INSERT: &str = "insert into things (id, n, note, x, data) values ($1, $2, $3, $4, $5)";

async fn setup() -> (TestDb, Writer) {
    let store = test_db("write_test").await;
    store.migrate(&[THINGS]).await.expect("migrate");
    let relay = Relay::new(store.db.clone(), Bus::in_process(), Duration::from_secs(3600));
    let writer = Writer::new(store.db.clone(), relay);
    (store, writer)
}

fn thing(id: &str, n: i64, note: Option<&str>) -> Batch {
    let mut batch = Batch::new();
    batch.push(INSERT, vec![id.into(), n.into(), note.map(str::to_owned).into(), 1.5.into(), vec![1u8, 2, 3].into()]);
    batch
}

async fn count(store: &TestDb, table: &'static str) -> i64 {
    let sql = format!("select count(*) from {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(store.reader()).await.expect("count")
}

fn answer(text: &str) -> StringValue {
    StringValue { value: text.to_owned() }
}

fn key(request_id: &str, request: &str) -> RequestKey {
    RequestKey::new("users/a".into(), "Make", request_id, &answer(request)).expect("key")
}

/// A change that makes thing `id` (staged, with an event) and answers with its id.
async fn make(c: &mut Change, id: &str) -> civic_kit::Result<StringValue> {
    c.stage(thing(id, 1, None));
    c.emit(id, &IssueCreated { issue: id.to_owned(), ..Default::default() }).await?;
    Ok(answer(id))
}

#[tokio::test]
async fn a_batch_runs_its_statements_in_order_with_their_own_arguments() {
    let (store, _) = setup().await;
    let mut batch = thing("a", 1, Some("first"));
    batch.append(thing("b", 2, None));
    batch.push("update things set n = n + $1 where id = $2", vec![10i64.into(), Arg::from("a")]);
    let mut tx = store.begin().await.expect("begin");
    batch.run(&mut tx).await.expect("run");
    tx.commit().await.expect("commit");
    let rows: Vec<Thing> = sqlx::query_as("select id, n, note, x, data from things order by id")
        .fetch_all(store.reader())
        .await
        .expect("read");
    assert_eq!(
        rows,
        vec![("a".into(), 11, Some("first".into()), 1.5, vec![1, 2, 3]), ("b".into(), 2, None, 1.5, vec![1, 2, 3]),]
    );
    store.cleanup().await;
}

#[tokio::test]
async fn a_batch_that_fails_part_way_leaves_nothing() {
    let (store, _) = setup().await;
    let mut batch = thing("c", 1, None);
    batch.append(thing("c", 2, None));
    let mut tx = store.begin().await.expect("begin");
    let err = batch.run(&mut tx).await.expect_err("the second insert repeats the key");
    let err = exists_on(err, "things_pkey", &"c");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
    tx.rollback().await.expect("rollback");
    assert_eq!(count(&store, "things").await, 0);
    store.cleanup().await;
}

#[tokio::test]
async fn a_retried_request_gets_its_first_answer_and_changes_nothing() {
    let (store, writer) = setup().await;
    let first = writer.write(&key("r-1", "x"), async |c: &mut Change| make(c, "t1").await).await.expect("first");
    assert_eq!(first.value, "t1");
    // The retry's change would make another thing: it is rolled back and the first answer given.
    let again = writer.write(&key("r-1", "x"), async |c: &mut Change| make(c, "t2").await).await.expect("retry");
    assert_eq!(again.value, "t1");
    assert_eq!((count(&store, "things").await, count(&store, "civic_outbox").await), (1, 1));
    // A retry whose change fails now (its thing exists) still gets the first answer.
    let late = writer
        .write(&key("r-1", "x"), async |c: &mut Change| {
            sqlx::query(INSERT)
                .bind("t1")
                .bind(1i64)
                .bind(None::<String>)
                .bind(1.5f64)
                .bind(vec![0u8])
                .execute(&mut **c.tx())
                .await
                .map_err(|e| exists_on(e, "things_pkey", &"t1"))?;
            Ok(answer("never"))
        })
        .await
        .expect("late retry");
    assert_eq!(late.value, "t1");
    // The same id for another request is refused, naming the field.
    let reused = writer.write(&key("r-1", "y"), async |c: &mut Change| make(c, "t3").await).await;
    let reused = reused.expect_err("another request under the same id");
    assert_eq!(reused.code(), tonic::Code::InvalidArgument);
    assert_eq!(reused.violations()[0].field, "request_id");
    // A change that fails leaves neither its rows nor its events, and saves no answer.
    let failed = writer
        .write(&key("r-2", "z"), async |c: &mut Change| {
            make(c, "t4").await?;
            Err::<StringValue, _>(Error::failed_precondition("NOT_NOW", "not now"))
        })
        .await;
    assert_eq!(failed.expect_err("failed").code(), tonic::Code::FailedPrecondition);
    assert_eq!((count(&store, "things").await, count(&store, "civic_outbox").await), (1, 1));
    let later = writer.write(&key("r-2", "z"), async |c: &mut Change| make(c, "t4").await).await.expect("later");
    assert_eq!(later.value, "t4");
    assert_eq!((count(&store, "things").await, count(&store, "civic_outbox").await), (2, 2));
    store.cleanup().await;
}

#[tokio::test]
async fn twins_sent_at_once_make_one_change_and_get_one_answer() {
    let (store, writer) = setup().await;
    let twins: Vec<_> = (0..8)
        .map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let id = format!("twin-{n}");
                writer.write(&key("r-twin", "same"), async |c: &mut Change| make(c, &id).await).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for twin in twins {
        answers.push(twin.await.expect("join").expect("every twin is answered").value);
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "one answer for all: {answers:?}");
    assert_eq!((count(&store, "things").await, count(&store, "civic_outbox").await), (1, 1));
    store.cleanup().await;
}
