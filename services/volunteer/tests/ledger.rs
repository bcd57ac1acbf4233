//! The moral bank's ledger against a real database — a fresh SQLite file, or a fresh PostgreSQL
//! database when `CIVIC_TEST_POSTGRES_URL` is set: movements balance, earnings are once per
//! source, and no balance goes below zero, also with many movements at once.

use civic_kit::testing::{TestDb, test_db};
use civic_volunteer::ledger::{self, ADJUSTMENTS, ISSUED, Kind, REDEEMED};

mod common;

const STREET: &str = "zhongjie";

async fn store() -> TestDb {
    let store = test_db("volunteer").await;
    store.migrate(civic_volunteer::MIGRATIONS).await.expect("migrate");
    store
}

async fn balance(store: &TestDb, account: &str) -> i64 {
    ledger::balance(store.reader(), STREET, account).await.expect("balance")
}

/// Movements whose entries do not sum to zero, or that have not exactly two entries.
async fn unbalanced(store: &TestDb) -> i64 {
    sqlx::query_scalar(
        "select count(*) from (select movement_id from ledger_entries group by movement_id
             having sum(amount) <> 0 or count(*) <> 2) as bad",
    )
    .fetch_one(store.reader())
    .await
    .expect("count")
}

#[tokio::test]
async fn earnings_redemptions_and_corrections_move_points_between_two_accounts() {
    let store = store().await;
    let mut tx = store.begin().await.expect("begin");
    let earned = ledger::earn(&mut tx, STREET, "users/li", 30, "streets/zhongjie/tasks/t1", "services/volunteer")
        .await
        .expect("earn");
    assert_eq!((earned.kind, earned.points), (Kind::Earn, 30));
    // The same source again credits nothing more and answers with the first.
    let again = ledger::earn(&mut tx, STREET, "users/li", 30, "streets/zhongjie/tasks/t1", "services/volunteer")
        .await
        .expect("earn again");
    assert_eq!(again.id, earned.id);
    let spent = ledger::redeem(&mut tx, STREET, "users/li", 12, "rewards/rice", "users/li").await.expect("redeem");
    assert_eq!(spent.points, -12);
    ledger::adjust(&mut tx, STREET, "users/li", -3, "a task counted twice", "users/admin").await.expect("adjust");
    tx.commit().await.expect("commit");
    assert_eq!(balance(&store, "users/li").await, 15);
    assert_eq!(
        (balance(&store, ISSUED).await, balance(&store, REDEEMED).await, balance(&store, ADJUSTMENTS).await),
        (-30, 12, 3)
    );
    assert_eq!(unbalanced(&store).await, 0);

    // Refusals write nothing: more than the balance, a correction below zero, bad input.
    let mut tx = store.begin().await.expect("begin");
    let over = ledger::redeem(&mut tx, STREET, "users/li", 16, "rewards/oil", "users/li").await.expect_err("over");
    assert_eq!((over.code(), over.reason()), (tonic::Code::FailedPrecondition, "INSUFFICIENT_POINTS"));
    let below = ledger::adjust(&mut tx, STREET, "users/li", -16, "too much", "users/admin").await.expect_err("below");
    assert_eq!(below.code(), tonic::Code::FailedPrecondition);
    let no_reason = ledger::adjust(&mut tx, STREET, "users/li", 5, " ", "users/admin").await.expect_err("no reason");
    assert_eq!(no_reason.violations()[0].field, "reason");
    let zero = ledger::earn(&mut tx, STREET, "users/li", 0, "streets/zhongjie/tasks/t2", "x").await.expect_err("0");
    assert_eq!(zero.violations()[0].field, "points");
    let other = ledger::earn(&mut tx, STREET, "users/wang", 30, "streets/zhongjie/tasks/t1", "x").await;
    assert_eq!(other.expect_err("another person's source").code(), tonic::Code::FailedPrecondition);
    tx.rollback().await.expect("rollback");
    assert_eq!(balance(&store, "users/li").await, 15);
    let movements: i64 =
        sqlx::query_scalar("select count(*) from ledger_movements").fetch_one(store.reader()).await.expect("count");
    assert_eq!(movements, 3);
    store.cleanup().await;
}

#[tokio::test]
async fn fifty_redemptions_at_once_never_spend_more_than_the_balance() {
    let store = store().await;
    let mut tx = store.begin().await.expect("begin");
    ledger::earn(&mut tx, STREET, "users/zhao", 10, "streets/zhongjie/tasks/seed", "services/volunteer")
        .await
        .expect("earn");
    tx.commit().await.expect("commit");
    let (spent, refused) = common::at_once(50, |n| {
        let db = store.db.clone();
        async move {
            let mut tx = db.begin().await?;
            let spent =
                ledger::redeem(&mut tx, STREET, "users/zhao", 3, &format!("rewards/r{n}"), "users/zhao").await?;
            tx.commit().await?;
            Ok(spent)
        }
    })
    .await;
    assert!(refused.iter().all(|e| e.reason() == "INSUFFICIENT_POINTS"), "{refused:?}");
    let spent = spent.len();
    assert_eq!(spent, 3, "10 points buy three rewards of 3");
    assert_eq!(balance(&store, "users/zhao").await, 1);
    assert_eq!(unbalanced(&store).await, 0);
    store.cleanup().await;
}

#[tokio::test]
async fn a_hundred_earnings_and_redemptions_at_once_keep_the_books() {
    let store = store().await;
    let people = ["users/p0", "users/p1", "users/p2", "users/p3", "users/p4"];
    let (moved, refused) = common::at_once(100, |n| {
        let db = store.db.clone();
        let person = people[n % 5];
        let points = 1 + (n as i64 * 7) % 9;
        async move {
            let mut tx = db.begin().await?;
            let moved = if n % 5 < 3 || n < 20 {
                let source = format!("streets/zhongjie/tasks/c{n}");
                ledger::earn(&mut tx, STREET, person, points, &source, "services/volunteer").await?
            } else {
                ledger::redeem(&mut tx, STREET, person, points, "rewards/any", person).await?
            };
            tx.commit().await?;
            Ok(moved.points)
        }
    })
    .await;
    assert!(refused.iter().all(|e| e.reason() == "INSUFFICIENT_POINTS"), "{refused:?}");
    let earned: i64 = moved.iter().filter(|p| **p > 0).sum();
    let redeemed: i64 = -moved.iter().filter(|p| **p < 0).sum::<i64>();
    assert!(redeemed > 0, "some redemptions went through");
    let mut total = 0;
    for person in people {
        let b = balance(&store, person).await;
        assert!(b >= 0, "{person}: {b}");
        total += b;
    }
    assert_eq!(total, earned - redeemed);
    assert_eq!((balance(&store, ISSUED).await, balance(&store, REDEEMED).await), (-earned, redeemed));
    assert_eq!(unbalanced(&store).await, 0);
    store.cleanup().await;
}
