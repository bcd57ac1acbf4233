//! The reward catalogue (积分兑换): what merchants and the community offer for moral-bank
//! points, each with its stock. Redeeming a reward takes one from its stock where one is left
//! (one conditional update) and spends the points in the [`ledger`], in the caller's
//! transaction: either both happen or neither, and many redemptions at once never take more
//! than the stock nor spend points a person does not have.
//!
//! Lock order, so two redemptions cannot wait on each other: the reward's row first, then the
//! person's account.

use civic_kit::db::Tx;
use civic_kit::error::{Error, Result};
use civic_kit::time;

use crate::ledger;

/// The most of one reward in stock.
pub const MAX_STOCK: i64 = 100_000;

/// A reward as offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reward {
    /// The street.
    pub street: String,
    /// Its id.
    pub id: String,
    /// What it is (一桶食用油).
    pub display_name: String,
    /// Who offers it.
    pub offered_by: String,
    /// Its price in points.
    pub points: i64,
    /// How many are left.
    pub stock: i64,
}

/// A reward redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    /// The ledger movement that paid for it.
    pub movement: String,
    /// The reward's id.
    pub reward: String,
    /// Who redeemed it (`users/{user}`).
    pub person: String,
    /// What it cost.
    pub points: i64,
}

/// Offers `reward`. INVALID_ARGUMENT naming the field for a bad price, stock or name.
pub async fn offer(tx: &mut Tx, reward: &Reward) -> Result<()> {
    if !(1..=ledger::MAX_POINTS).contains(&reward.points) {
        return Err(Error::invalid("reward.points", format!("must be 1 to {}", ledger::MAX_POINTS)));
    }
    if !(0..=MAX_STOCK).contains(&reward.stock) {
        return Err(Error::invalid("reward.stock", format!("must be 0 to {MAX_STOCK}")));
    }
    if reward.display_name.trim().is_empty() || reward.display_name.chars().count() > 100 {
        return Err(Error::invalid("reward.display_name", "is required, at most 100 characters"));
    }
    let now = time::now_text();
    sqlx::query(
        "insert into rewards (street, reward_id, display_name, offered_by, points, stock, offered, version,
             created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, 1, 1, $7, $7)",
    )
    .bind(&reward.street)
    .bind(&reward.id)
    .bind(&reward.display_name)
    .bind(&reward.offered_by)
    .bind(reward.points)
    .bind(reward.stock)
    .bind(&now)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        civic_kit::db::exists_on(e, "rewards_pkey", &format!("streets/{}/rewards/{}", reward.street, reward.id))
    })?;
    Ok(())
}

/// Withdraws a reward: it can no longer be redeemed. `false` when it was not offered.
pub async fn withdraw(tx: &mut Tx, street: &str, reward: &str) -> Result<bool> {
    let done = sqlx::query(
        "update rewards set offered = 0, version = version + 1, updated_at = $3
         where street = $1 and reward_id = $2 and offered = 1",
    )
    .bind(street)
    .bind(reward)
    .bind(time::now_text())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// `person` redeems one of `reward` (by `actor`: themselves, or staff at the counter): NOT_FOUND
/// without the reward; FAILED_PRECONDITION `REWARD_WITHDRAWN`, `OUT_OF_STOCK`, or the ledger's
/// `INSUFFICIENT_POINTS` — after which the caller rolls back (the stock taken goes back with it).
pub async fn redeem(tx: &mut Tx, street: &str, reward: &str, person: &str, actor: &str) -> Result<Redemption> {
    let now = time::now_text();
    let taken = sqlx::query(
        "update rewards set stock = stock - 1, version = version + 1, updated_at = $3
         where street = $1 and reward_id = $2 and offered = 1 and stock > 0",
    )
    .bind(street)
    .bind(reward)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    let found: Option<(i64, i64, i64)> =
        sqlx::query_as("select points, stock, offered from rewards where street = $1 and reward_id = $2")
            .bind(street)
            .bind(reward)
            .fetch_optional(&mut **tx)
            .await?;
    let points = match (taken.rows_affected(), found) {
        (_, None) => return Err(Error::not_found(format!("streets/{street}/rewards/{reward}"))),
        (0, Some((_, _, 0))) => {
            return Err(Error::failed_precondition("REWARD_WITHDRAWN", "the reward is no longer offered"));
        }
        (0, Some(_)) => return Err(Error::failed_precondition("OUT_OF_STOCK", "none of the reward is left")),
        (_, Some((points, _, _))) => points,
    };
    let paid = ledger::redeem(tx, street, person, points, &format!("rewards/{reward}"), actor).await?;
    sqlx::query(
        "insert into redemptions (street, movement_id, reward_id, person, points, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(street)
    .bind(&paid.id)
    .bind(reward)
    .bind(person)
    .bind(points)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    Ok(Redemption { movement: paid.id, reward: reward.to_owned(), person: person.to_owned(), points })
}

/// How many of `reward` are left, `None` without it.
pub async fn stock<'e, E>(executor: E, street: &str, reward: &str) -> Result<Option<i64>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<(i64,)> = sqlx::query_as("select stock from rewards where street = $1 and reward_id = $2")
        .bind(street)
        .bind(reward)
        .fetch_optional(executor)
        .await?;
    Ok(row.map(|(n,)| n))
}

/// A reward as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The reward.
    pub reward: Reward,
    /// Whether it can be redeemed.
    pub offered: bool,
    /// Bumped by every change.
    pub version: i64,
    /// When it was offered.
    pub created_at: String,
}

type Row = (String, String, String, String, i64, i64, i64, i64, String);

const COLUMNS: &str = "select street, reward_id, display_name, offered_by, points, stock, offered, version, created_at
     from rewards";

fn stored((street, id, display_name, offered_by, points, stock, offered, version, created_at): Row) -> Stored {
    Stored {
        reward: Reward { street, id, display_name, offered_by, points, stock },
        offered: offered == 1,
        version,
        created_at,
    }
}

/// The reward `reward` of `street`, if any.
pub async fn get<'e, E>(executor: E, street: &str, reward: &str) -> Result<Option<Stored>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!("{COLUMNS} where street = $1 and reward_id = $2");
    let row: Option<Row> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(street).bind(reward).fetch_optional(executor).await?;
    Ok(row.map(stored))
}

/// Up to `limit` rewards of `street` by id after `after`: those offered, or withdrawn ones too.
pub async fn list<'e, E>(
    executor: E,
    street: &str,
    withdrawn_too: bool,
    after: &str,
    limit: usize,
) -> Result<Vec<Stored>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!(
        "{COLUMNS} where street = $1 and reward_id > $2 and ($3 = 1 or offered = 1) order by reward_id limit $4"
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(street)
        .bind(after)
        .bind(i64::from(withdrawn_too))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().map(stored).collect())
}
