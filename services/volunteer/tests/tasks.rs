//! Tasks against a real database — a fresh SQLite file, or a fresh PostgreSQL database when
//! `CIVIC_TEST_POSTGRES_URL` is set: minutes from check-in to check-out, counted and paid in
//! points only once both sides confirm, and once only.

use chrono::{DateTime, Duration, Utc};
use civic_kit::testing::{TestDb, test_db};
use civic_volunteer::claims::{self, NewNeed};
use civic_volunteer::ledger;
use civic_volunteer::tasks::{self, Party};

const STREET: &str = "zhongjie";
const VOLUNTEER: &str = "users/li";

/// A store with need `n1` (one place) taken by Li, who checked in at the returned time.
async fn checked_in() -> (TestDb, DateTime<Utc>) {
    let store = test_db("volunteer").await;
    store.migrate(civic_volunteer::MIGRATIONS).await.expect("migrate");
    let start = Utc::now() - Duration::hours(3);
    let need = NewNeed {
        street: STREET.into(),
        id: "n1".into(),
        kind: "ONE_ON_ONE".into(),
        community: "dongyuan".into(),
        grid: "g01".into(),
        household: "streets/zhongjie/households/h1".into(),
        resident: "users/res-1".into(),
        placed_by: "users/gw-01".into(),
        places: 1,
        start,
        end: start + Duration::hours(2),
        body: Vec::new(),
    };
    let mut tx = store.begin().await.expect("begin");
    claims::insert_need(&mut tx, &need).await.expect("need");
    claims::claim(&mut tx, STREET, "n1", VOLUNTEER, start).await.expect("claim");
    claims::check_in(&mut tx, STREET, "n1", VOLUNTEER, start).await.expect("check in");
    tx.commit().await.expect("commit");
    (store, start)
}

/// Need `n1`'s state.
async fn state(tx: &mut civic_kit::db::Tx) -> String {
    claims::places(&mut **tx, STREET, "n1").await.expect("read").expect("the need").state
}

#[tokio::test]
async fn points_come_only_with_both_confirmations_and_only_once() {
    let (store, start) = checked_in().await;
    let mut tx = store.begin().await.expect("begin");
    let early = tasks::confirm(&mut tx, STREET, "n1", VOLUNTEER, Party::Volunteer, start, 10).await;
    assert_eq!(early.expect_err("not done yet").reason(), "NOT_CHECKED_OUT");
    assert_eq!(state(&mut tx).await, "IN_PROGRESS", "under way from the first check-in");
    let done = tasks::check_out(&mut tx, STREET, "n1", VOLUNTEER, start + Duration::minutes(95)).await.expect("out");
    assert_eq!(done.minutes, 95);
    assert_eq!(state(&mut tx).await, "DONE", "done when everyone holding a place checked out");
    let again =
        tasks::check_out(&mut tx, STREET, "n1", VOLUNTEER, start + Duration::minutes(200)).await.expect("again");
    assert_eq!(again.minutes, 95, "the first check-out stands");
    // Once done, the place is no longer given back.
    assert!(!claims::release(&mut tx, STREET, "n1", VOLUNTEER, "withdrawn").await.expect("release"));

    let at = start + Duration::hours(2);
    let one = tasks::confirm(&mut tx, STREET, "n1", VOLUNTEER, Party::Volunteer, at, 10).await.expect("volunteer");
    assert!(one.volunteer_confirmed && one.confirmed_at.is_empty() && one.points_movement.is_empty());
    assert_eq!(ledger::balance(&mut *tx, STREET, VOLUNTEER).await.expect("balance"), 0, "not yet");
    let month = (at - Duration::days(1), at + Duration::days(1));
    assert_eq!(tasks::minutes_served(&mut *tx, STREET, VOLUNTEER, month).await.expect("minutes"), 0);

    let both = tasks::confirm(&mut tx, STREET, "n1", VOLUNTEER, Party::Resident("users/gw-01", 5), at, 10)
        .await
        .expect("resident");
    assert_eq!((both.resident_confirmed_by.as_str(), both.rating), ("users/gw-01", 5));
    assert_eq!(state(&mut tx).await, "CONFIRMED", "confirmed with every task confirmed by both");
    assert!(!both.confirmed_at.is_empty() && !both.points_movement.is_empty());
    // 95 minutes at 10 points an hour: 15.8, rounded up to 16.
    assert_eq!(ledger::balance(&mut *tx, STREET, VOLUNTEER).await.expect("balance"), 16);
    assert_eq!(tasks::minutes_served(&mut *tx, STREET, VOLUNTEER, month).await.expect("minutes"), 95);
    // Confirming again, by either side, pays nothing more.
    let later = at + Duration::hours(1);
    tasks::confirm(&mut tx, STREET, "n1", VOLUNTEER, Party::Resident("users/res-1", 3), later, 10)
        .await
        .expect("again");
    let last = tasks::confirm(&mut tx, STREET, "n1", VOLUNTEER, Party::Volunteer, later, 10).await.expect("again");
    assert_eq!(
        (last.resident_confirmed_by.as_str(), last.confirmed_at.as_str()),
        ("users/gw-01", both.confirmed_at.as_str())
    );
    assert_eq!(last.rating, 5, "the first confirmation's rating stands");
    assert_eq!(ledger::balance(&mut *tx, STREET, VOLUNTEER).await.expect("balance"), 16);
    tx.commit().await.expect("commit");
    store.cleanup().await;
}

#[tokio::test]
async fn a_task_is_checked_out_after_its_check_in_by_the_volunteer_who_holds_the_place() {
    let (store, start) = checked_in().await;
    let mut tx = store.begin().await.expect("begin");
    let before = tasks::check_out(&mut tx, STREET, "n1", VOLUNTEER, start - Duration::minutes(1)).await;
    assert_eq!(before.expect_err("before the check-in").violations()[0].field, "check_out_time");
    let stranger = tasks::check_out(&mut tx, STREET, "n1", "users/wang", start + Duration::hours(1)).await;
    assert_eq!(stranger.expect_err("no place").reason(), "NO_CLAIM");
    // A long day counts a day at most.
    let long = tasks::check_out(&mut tx, STREET, "n1", VOLUNTEER, start + Duration::hours(30)).await.expect("out");
    assert_eq!(long.minutes, tasks::MAX_MINUTES);
    tx.rollback().await.expect("rollback");
    store.cleanup().await;
}
