//! Places in needs against a real database — a fresh SQLite file, or a fresh PostgreSQL
//! database when `CIVIC_TEST_POSTGRES_URL` is set: fifty claims at once on a need of three
//! places take exactly three; a released place is offered again; a claim not checked in by its
//! time is released.

use chrono::{Duration, Utc};
use civic_kit::testing::{TestDb, test_db};
use civic_volunteer::claims::{self, NewNeed, Places};

mod common;

const STREET: &str = "zhongjie";

async fn store() -> TestDb {
    let store = test_db("volunteer").await;
    store.migrate(civic_volunteer::MIGRATIONS).await.expect("migrate");
    store
}

async fn need(store: &TestDb, id: &str, places: i64) {
    let start = Utc::now() + Duration::days(2);
    let need = NewNeed {
        street: STREET.into(),
        id: id.into(),
        kind: "ACTIVITY".into(),
        community: "dongyuan".into(),
        grid: "g01".into(),
        household: String::new(),
        resident: "users/res-1".into(),
        placed_by: "users/gw-01".into(),
        places,
        start,
        end: start + Duration::hours(2),
        body: Vec::new(),
    };
    let mut tx = store.begin().await.expect("begin");
    claims::insert_need(&mut tx, &need).await.expect("insert");
    tx.commit().await.expect("commit");
}

async fn places(store: &TestDb, id: &str) -> Places {
    claims::places(store.reader(), STREET, id).await.expect("read").expect("the need")
}

async fn claim(store: &TestDb, id: &str, volunteer: &str) -> civic_kit::Result<claims::Claim> {
    let mut tx = store.begin().await.expect("begin");
    let claimed = claims::claim(&mut tx, STREET, id, volunteer, Utc::now() + Duration::hours(1)).await?;
    tx.commit().await.expect("commit");
    Ok(claimed)
}

#[tokio::test]
async fn fifty_claims_at_once_on_three_places_take_exactly_three() {
    let store = store().await;
    need(&store, "n1", 3).await;
    let (taken, refused) = common::at_once(50, |n| {
        let db = store.db.clone();
        async move {
            let mut tx = db.begin().await?;
            let (volunteer, by) = (format!("users/v{n}"), Utc::now() + Duration::hours(1));
            let claimed = claims::claim(&mut tx, STREET, "n1", &volunteer, by).await?;
            tx.commit().await?;
            Ok(claimed)
        }
    })
    .await;
    assert!(refused.iter().all(|e| e.reason() == "NEED_FULL"), "{refused:?}");
    let taken = taken.len();
    assert_eq!(taken, 3);
    assert_eq!(places(&store, "n1").await, Places { state: "CLAIMED".into(), places: 3, claimed: 3 });
    let active: i64 = sqlx::query_scalar("select count(*) from claims where state = 'ACTIVE'")
        .fetch_one(store.reader())
        .await
        .expect("count");
    assert_eq!(active, 3);
    store.cleanup().await;
}

#[tokio::test]
async fn a_place_given_back_is_taken_again_and_a_second_claim_is_the_first() {
    let store = store().await;
    need(&store, "n2", 2).await;
    let first = claim(&store, "n2", "users/li").await.expect("li");
    assert_eq!(claim(&store, "n2", "users/li").await.expect("li again"), first, "the same claim, no second place");
    claim(&store, "n2", "users/wang").await.expect("wang");
    assert_eq!(places(&store, "n2").await, Places { state: "CLAIMED".into(), places: 2, claimed: 2 });
    let full = claim(&store, "n2", "users/zhao").await.expect_err("full");
    assert_eq!((full.code(), full.reason()), (tonic::Code::FailedPrecondition, "NEED_FULL"));

    let mut tx = store.begin().await.expect("begin");
    assert!(claims::release(&mut tx, STREET, "n2", "users/li", "withdrawn").await.expect("release"));
    assert!(!claims::release(&mut tx, STREET, "n2", "users/li", "withdrawn").await.expect("again: nothing"));
    tx.commit().await.expect("commit");
    assert_eq!(places(&store, "n2").await, Places { state: "OPEN".into(), places: 2, claimed: 1 });
    claim(&store, "n2", "users/zhao").await.expect("zhao takes the place given back");
    // Li may take a place again once one is free; there is none now.
    assert_eq!(claim(&store, "n2", "users/li").await.expect_err("full").reason(), "NEED_FULL");

    let missing = claim(&store, "nope", "users/li").await.expect_err("no such need");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let mut tx = store.begin().await.expect("begin");
    let no_claim = claims::check_in(&mut tx, STREET, "n2", "users/li", Utc::now()).await.expect_err("li holds none");
    assert_eq!(no_claim.reason(), "NO_CLAIM");
    claims::check_in(&mut tx, STREET, "n2", "users/zhao", Utc::now()).await.expect("zhao checks in");
    claims::check_in(&mut tx, STREET, "n2", "users/zhao", Utc::now()).await.expect("twice is fine");
    tx.commit().await.expect("commit");
    store.cleanup().await;
}

#[tokio::test]
async fn claims_not_checked_in_by_their_time_are_released_and_the_place_offered_again() {
    let store = store().await;
    need(&store, "n3", 2).await;
    let soon = Utc::now() + Duration::minutes(10);
    let mut tx = store.begin().await.expect("begin");
    claims::claim(&mut tx, STREET, "n3", "users/late", soon).await.expect("late");
    claims::claim(&mut tx, STREET, "n3", "users/early", soon).await.expect("early");
    claims::check_in(&mut tx, STREET, "n3", "users/early", Utc::now()).await.expect("early checks in");
    tx.commit().await.expect("commit");
    assert_eq!(places(&store, "n3").await.state, "IN_PROGRESS", "under way from the first check-in");

    // Before their time nothing goes; after it, only the claim not checked in.
    assert!(claims::stale(store.reader(), Utc::now(), 100).await.expect("sweep").is_empty());
    let later = soon + Duration::minutes(1);
    let due = claims::stale(store.reader(), later, 100).await.expect("sweep");
    assert_eq!(due, vec![(STREET.to_owned(), "n3".to_owned(), "users/late".to_owned())]);
    let mut tx = store.begin().await.expect("begin");
    assert!(claims::release_stale(&mut tx, (STREET, "n3", "users/late"), later).await.expect("release"));
    assert!(!claims::release_stale(&mut tx, (STREET, "n3", "users/late"), later).await.expect("again"), "once");
    assert!(!claims::release_stale(&mut tx, (STREET, "n3", "users/early"), later).await.expect("in"), "checked in");
    tx.commit().await.expect("commit");
    // Someone checked in: the need is under way, with a place free.
    assert_eq!(places(&store, "n3").await, Places { state: "IN_PROGRESS".into(), places: 2, claimed: 1 });
    assert!(claims::stale(store.reader(), later, 100).await.expect("again").is_empty(), "once");
    // The free place is offered again while the need is under way.
    claim(&store, "n3", "users/newcomer").await.expect("the place is taken again");
    assert_eq!(places(&store, "n3").await, Places { state: "IN_PROGRESS".into(), places: 2, claimed: 2 });
    assert_eq!(claim(&store, "n3", "users/third").await.expect_err("full").reason(), "NEED_FULL");
    let because: String = sqlx::query_scalar("select released_because from claims where volunteer = 'users/late'")
        .fetch_one(store.reader())
        .await
        .expect("read");
    assert_eq!(because, "stale");
    store.cleanup().await;
}

#[tokio::test]
async fn a_need_without_places_or_time_is_refused() {
    let store = store().await;
    let start = Utc::now();
    let mut bad = NewNeed {
        street: STREET.into(),
        id: "n4".into(),
        kind: "MICRO_WISH".into(),
        community: String::new(),
        grid: String::new(),
        household: String::new(),
        resident: "users/res-1".into(),
        placed_by: "users/res-1".into(),
        places: 0,
        start,
        end: start + Duration::hours(1),
        body: Vec::new(),
    };
    let mut tx = store.begin().await.expect("begin");
    let none = claims::insert_need(&mut tx, &bad).await.expect_err("no places");
    assert_eq!(none.violations()[0].field, "need.places");
    bad.places = 1;
    bad.end = start;
    let timeless = claims::insert_need(&mut tx, &bad).await.expect_err("no time");
    assert_eq!(timeless.violations()[0].field, "need.end_time");
    tx.rollback().await.expect("rollback");
    assert!(claims::places(store.reader(), STREET, "n4").await.expect("read").is_none());
    store.cleanup().await;
}

#[tokio::test]
async fn a_need_is_called_off_only_before_anyone_checks_in_and_open_needs_past_their_end_expire() {
    let store = store().await;
    need(&store, "n5", 2).await;
    claim(&store, "n5", "users/a").await.expect("a");
    claim(&store, "n5", "users/b").await.expect("b");
    let mut tx = store.begin().await.expect("begin");
    let told = claims::cancel(&mut tx, STREET, "n5").await.expect("called off");
    assert_eq!(told, vec!["users/a".to_owned(), "users/b".to_owned()], "every volunteer holding a place is told");
    let again = claims::cancel(&mut tx, STREET, "n5").await.expect_err("once");
    assert_eq!(again.reason(), "NOT_CANCELLABLE");
    tx.commit().await.expect("commit");
    assert_eq!(places(&store, "n5").await, Places { state: "CANCELLED".into(), places: 2, claimed: 0 });
    assert_eq!(claim(&store, "n5", "users/c").await.expect_err("closed").reason(), "NEED_NOT_OPEN");

    need(&store, "n6", 1).await;
    claim(&store, "n6", "users/a").await.expect("a");
    let mut tx = store.begin().await.expect("begin");
    claims::check_in(&mut tx, STREET, "n6", "users/a", Utc::now()).await.expect("in");
    assert_eq!(claims::cancel(&mut tx, STREET, "n6").await.expect_err("under way").reason(), "NOT_CANCELLABLE");
    tx.commit().await.expect("commit");

    // Expiry: an open need with no place taken, past its end. `need` starts in two days and
    // ends two hours later; seen from a week on, it is over.
    need(&store, "n7", 1).await;
    let week = Utc::now() + Duration::days(7);
    let due = claims::expiring(store.reader(), week, 100).await.expect("due");
    assert!(due.contains(&(STREET.to_owned(), "n7".to_owned())));
    assert!(!due.iter().any(|(_, n)| n == "n5" || n == "n6"), "not the cancelled nor the one under way");
    assert!(claims::expiring(store.reader(), Utc::now(), 100).await.expect("due").is_empty(), "not before its end");
    let mut tx = store.begin().await.expect("begin");
    assert!(claims::expire(&mut tx, STREET, "n7", week).await.expect("expire"));
    assert!(!claims::expire(&mut tx, STREET, "n7", week).await.expect("again"), "once");
    tx.commit().await.expect("commit");
    assert_eq!(places(&store, "n7").await.state, "EXPIRED");
    store.cleanup().await;
}
