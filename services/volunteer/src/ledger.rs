//! The moral bank (道德银行): points earned by confirmed service, redeemed against rewards,
//! adjusted by an admin with a reason — kept as an append-only double-entry ledger.
//!
//! Every movement is two entries that sum to zero: an earning moves points from `bank/issued`
//! to the person, a redemption from the person to `bank/redeemed`, an adjustment between the
//! person and `bank/adjustments`. Nothing is ever updated or deleted; a balance is the sum of an
//! account's entries. A movement that would take a person's balance below zero is refused, and
//! movements on one person's account are taken one at a time (SQLite's single writer; on
//! PostgreSQL a transaction-scoped advisory lock on the account), so two redemptions at once
//! cannot both spend the same points.
//!
//! The functions work in the caller's transaction, which commits or rolls back the movement
//! with whatever else it changes (the task whose confirmation earned the points).

use chrono::{DateTime, Utc};
use civic_kit::db::{Arg, Batch, Tx};
use civic_kit::error::{Error, Result};
use civic_kit::time;

/// The account points are issued from (it goes below zero by what was ever earned).
pub const ISSUED: &str = "bank/issued";
/// The account redeemed points go to.
pub const REDEEMED: &str = "bank/redeemed";
/// The account adjustments are made against.
pub const ADJUSTMENTS: &str = "bank/adjustments";

/// The most points one movement may move.
pub const MAX_POINTS: i64 = 100_000;

/// What a movement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Points for confirmed service.
    Earn,
    /// Points spent on a reward.
    Redeem,
    /// A correction by an admin, with a reason.
    Adjust,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Earn => "EARN",
            Kind::Redeem => "REDEEM",
            Kind::Adjust => "ADJUST",
        }
    }
}

/// One movement of a person's points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// Its id.
    pub id: String,
    /// What it is.
    pub kind: Kind,
    /// Whose points (`users/{user}`).
    pub person: String,
    /// What the person's balance moved by (negative for a redemption).
    pub points: i64,
    /// What earned it (a confirmed task's name), or empty.
    pub source: String,
    /// Why: the reward redeemed, the adjustment's reason.
    pub reason: String,
    /// Who made it.
    pub actor: String,
    /// When.
    pub time: DateTime<Utc>,
}

/// Credits `person` with `points` for `source` (what earned them, such as a confirmed task's
/// name). Once per source: a second earning for the same source returns the first and moves
/// nothing.
pub async fn earn(tx: &mut Tx, street: &str, person: &str, points: i64, source: &str, actor: &str) -> Result<Movement> {
    if !(1..=MAX_POINTS).contains(&points) {
        return Err(Error::invalid("points", format!("must be 1 to {MAX_POINTS}")));
    }
    if source.is_empty() {
        return Err(Error::invalid("source", "is required: what earned the points"));
    }
    lock(tx, street, person).await?;
    if let Some(first) = by_source(tx, street, source).await? {
        if first.person != person || first.points != points {
            return Err(Error::failed_precondition(
                "SOURCE_ALREADY_CREDITED",
                "points for this source were credited otherwise",
            ));
        }
        return Ok(first);
    }
    let movement = new(Kind::Earn, person, points, source, "", actor);
    write(tx, street, &movement, ISSUED).await?;
    Ok(movement)
}

/// Spends `points` of `person`'s on `reward`: FAILED_PRECONDITION (`INSUFFICIENT_POINTS`) when
/// their balance is smaller, and nothing is written.
pub async fn redeem(
    tx: &mut Tx,
    street: &str,
    person: &str,
    points: i64,
    reward: &str,
    actor: &str,
) -> Result<Movement> {
    if !(1..=MAX_POINTS).contains(&points) {
        return Err(Error::invalid("points", format!("must be 1 to {MAX_POINTS}")));
    }
    lock(tx, street, person).await?;
    let balance = balance(&mut **tx, street, person).await?;
    if balance < points {
        return Err(Error::failed_precondition(
            "INSUFFICIENT_POINTS",
            format!("the balance is {balance} points, {points} asked"),
        ));
    }
    let movement = new(Kind::Redeem, person, -points, "", reward, actor);
    write(tx, street, &movement, REDEEMED).await?;
    Ok(movement)
}

/// Corrects `person`'s balance by `points` (either sign, not zero) for `reason` (required). A
/// correction never takes a balance below zero.
pub async fn adjust(
    tx: &mut Tx,
    street: &str,
    person: &str,
    points: i64,
    reason: &str,
    actor: &str,
) -> Result<Movement> {
    if points == 0 || points.abs() > MAX_POINTS {
        return Err(Error::invalid("points", format!("must be -{MAX_POINTS} to {MAX_POINTS}, not 0")));
    }
    if reason.trim().is_empty() {
        return Err(Error::invalid("reason", "is required: why the balance is corrected"));
    }
    lock(tx, street, person).await?;
    if points < 0 {
        let balance = balance(&mut **tx, street, person).await?;
        if balance + points < 0 {
            return Err(Error::failed_precondition(
                "INSUFFICIENT_POINTS",
                format!("the balance is {balance} points; a correction of {points} would take it below zero"),
            ));
        }
    }
    let movement = new(Kind::Adjust, person, points, "", reason, actor);
    write(tx, street, &movement, ADJUSTMENTS).await?;
    Ok(movement)
}

/// The balance of `account` (a person's `users/{user}`, or one of the bank's).
pub async fn balance<'e, E>(executor: E, street: &str, account: &str) -> Result<i64>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (sum,): (i64,) = sqlx::query_as(
        "select cast(coalesce(sum(amount), 0) as bigint) from ledger_entries where street = $1 and account = $2",
    )
    .bind(street)
    .bind(account)
    .fetch_one(executor)
    .await?;
    Ok(sum)
}

/// Up to `limit` movements of `person`'s, newest first, before the movement `before` (all when
/// empty), made within `within` (all when `None`).
pub async fn movements<'e, E>(
    executor: E,
    street: &str,
    person: &str,
    within: Option<(DateTime<Utc>, DateTime<Utc>)>,
    before: &str,
    limit: usize,
) -> Result<Vec<Movement>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    type Row = (String, String, i64, String, String, String, String);
    let (from, to) = within.map(|(f, t)| (time::to_text(f), time::to_text(t))).unwrap_or_default();
    let rows: Vec<Row> = sqlx::query_as(
        "select movement_id, kind, points, source, reason, actor, created_at from ledger_movements
         where street = $1 and person = $2 and ($3 = '' or movement_id < $3)
             and ($4 = '' or (created_at >= $4 and created_at < $5))
         order by movement_id desc limit $6",
    )
    .bind(street)
    .bind(person)
    .bind(before)
    .bind(&from)
    .bind(&to)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, points, source, reason, actor, created)| Movement {
            id,
            kind: match kind.as_str() {
                "EARN" => Kind::Earn,
                "REDEEM" => Kind::Redeem,
                _ => Kind::Adjust,
            },
            person: person.to_owned(),
            points,
            source,
            reason,
            actor,
            time: time::from_text(&created).unwrap_or_default(),
        })
        .collect())
}

fn new(kind: Kind, person: &str, points: i64, source: &str, reason: &str, actor: &str) -> Movement {
    Movement {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        person: person.to_owned(),
        points,
        source: source.to_owned(),
        reason: reason.to_owned(),
        actor: actor.to_owned(),
        time: Utc::now(),
    }
}

/// The movement and its two entries: the person's by `points`, `bank`'s by the opposite.
async fn write(tx: &mut Tx, street: &str, m: &Movement, bank: &str) -> Result<()> {
    let now = time::to_text(m.time);
    let source_key = if m.source.is_empty() { format!("self|{}", m.id) } else { m.source.clone() };
    let mut batch = Batch::new();
    batch.push(
        "insert into ledger_movements (street, movement_id, kind, person, points, source, source_key, reason, actor,
             created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        vec![
            street.into(),
            Arg::from(&m.id),
            m.kind.as_str().into(),
            Arg::from(&m.person),
            m.points.into(),
            Arg::from(&m.source),
            source_key.into(),
            Arg::from(&m.reason),
            Arg::from(&m.actor),
            Arg::from(&now),
        ],
    );
    const ENTRY: &str = "insert into ledger_entries (street, movement_id, account, amount, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $5)";
    for (account, amount) in [(m.person.as_str(), m.points), (bank, -m.points)] {
        batch.push(ENTRY, vec![street.into(), Arg::from(&m.id), account.into(), amount.into(), Arg::from(&now)]);
    }
    batch
        .run(tx)
        .await
        .map_err(|e| civic_kit::db::exists_on(e, "ledger_movements_source", &format!("points for {}", m.source)))?;
    Ok(())
}

/// The earning recorded for `source`, if any.
async fn by_source(tx: &mut Tx, street: &str, source: &str) -> Result<Option<Movement>> {
    type Row = (String, String, i64, String, String, String, String);
    let row: Option<Row> = sqlx::query_as(
        "select movement_id, person, points, source, reason, actor, created_at from ledger_movements
         where street = $1 and source_key = $2",
    )
    .bind(street)
    .bind(source)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(id, person, points, source, reason, actor, created)| Movement {
        id,
        kind: Kind::Earn,
        person,
        points,
        source,
        reason,
        actor,
        time: time::from_text(&created).unwrap_or_default(),
    }))
}

/// Takes `account`'s movements one at a time until the transaction ends.
async fn lock(tx: &mut Tx, street: &str, account: &str) -> Result<()> {
    crate::lock::hold(tx, "ledger", street, account).await
}
