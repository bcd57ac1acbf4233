//! The reward catalogue against a real database — a fresh SQLite file, or a fresh PostgreSQL
//! database when `CIVIC_TEST_POSTGRES_URL` is set: many redemptions at once never take more
//! than the stock nor spend points a person does not have, and a refused one changes nothing.

use civic_kit::testing::{TestDb, test_db};
use civic_volunteer::ledger;
use civic_volunteer::rewards::{self, Reward};

mod common;

const STREET: &str = "zhongjie";

/// A store with reward `oil` (5 points, `stock` of them) and `people` each holding 12 points.
async fn store(stock: i64, people: usize) -> TestDb {
    let store = test_db("volunteer").await;
    store.migrate(civic_volunteer::MIGRATIONS).await.expect("migrate");
    let mut tx = store.begin().await.expect("begin");
    let oil = Reward {
        street: STREET.into(),
        id: "oil".into(),
        display_name: "一桶食用油".into(),
        offered_by: "东苑超市".into(),
        points: 5,
        stock,
    };
    rewards::offer(&mut tx, &oil).await.expect("offer");
    for n in 0..people {
        let source = format!("streets/zhongjie/needs/seed/claims/p{n}");
        ledger::earn(&mut tx, STREET, &format!("users/p{n}"), 12, &source, "services/volunteer").await.expect("earn");
    }
    tx.commit().await.expect("commit");
    store
}

#[tokio::test]
async fn twenty_redemptions_at_once_take_the_three_in_stock() {
    let store = store(3, 20).await;
    let (done, refused) = common::at_once(20, |n| {
        let db = store.db.clone();
        async move {
            let mut tx = db.begin().await?;
            let person = format!("users/p{n}");
            let redeemed = rewards::redeem(&mut tx, STREET, "oil", &person, &person).await?;
            tx.commit().await?;
            Ok(redeemed)
        }
    })
    .await;
    assert_eq!(done.len(), 3);
    assert!(refused.iter().all(|e| e.reason() == "OUT_OF_STOCK"), "{refused:?}");
    assert_eq!(rewards::stock(store.reader(), STREET, "oil").await.expect("stock"), Some(0));
    assert_eq!(ledger::balance(store.reader(), STREET, ledger::REDEEMED).await.expect("balance"), 15);
    for r in &done {
        assert_eq!(ledger::balance(store.reader(), STREET, &r.person).await.expect("balance"), 7);
    }
    store.cleanup().await;
}

#[tokio::test]
async fn one_person_redeeming_at_once_spends_only_what_they_have() {
    // Plenty in stock; one person with 12 points tries ten times at once: two go through.
    let store = store(100, 1).await;
    let (done, refused) = common::at_once(10, |_| {
        let db = store.db.clone();
        async move {
            let mut tx = db.begin().await?;
            let redeemed = rewards::redeem(&mut tx, STREET, "oil", "users/p0", "users/p0").await?;
            tx.commit().await?;
            Ok(redeemed)
        }
    })
    .await;
    assert_eq!(done.len(), 2);
    assert!(refused.iter().all(|e| e.reason() == "INSUFFICIENT_POINTS"), "{refused:?}");
    // The refused ones rolled back the stock they took.
    assert_eq!(rewards::stock(store.reader(), STREET, "oil").await.expect("stock"), Some(98));
    assert_eq!(ledger::balance(store.reader(), STREET, "users/p0").await.expect("balance"), 2);
    store.cleanup().await;
}

#[tokio::test]
async fn a_withdrawn_or_unknown_reward_is_not_redeemed_and_bad_offers_are_refused() {
    let store = store(5, 1).await;
    let mut tx = store.begin().await.expect("begin");
    assert!(rewards::withdraw(&mut tx, STREET, "oil").await.expect("withdraw"));
    assert!(!rewards::withdraw(&mut tx, STREET, "oil").await.expect("again: nothing"));
    let gone = rewards::redeem(&mut tx, STREET, "oil", "users/p0", "users/p0").await.expect_err("withdrawn");
    assert_eq!(gone.reason(), "REWARD_WITHDRAWN");
    let unknown = rewards::redeem(&mut tx, STREET, "rice", "users/p0", "users/p0").await.expect_err("unknown");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let free = Reward {
        street: STREET.into(),
        id: "free".into(),
        display_name: "免费".into(),
        offered_by: String::new(),
        points: 0,
        stock: 1,
    };
    assert_eq!(rewards::offer(&mut tx, &free).await.expect_err("no price").violations()[0].field, "reward.points");
    let nameless = Reward { points: 1, display_name: " ".into(), ..free.clone() };
    let refused = rewards::offer(&mut tx, &nameless).await.expect_err("no name");
    assert_eq!(refused.violations()[0].field, "reward.display_name");
    tx.rollback().await.expect("rollback");
    assert_eq!(ledger::balance(store.reader(), STREET, "users/p0").await.expect("balance"), 12);
    store.cleanup().await;
}
