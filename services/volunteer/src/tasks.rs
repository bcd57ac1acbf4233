//! The task done in a place: the volunteer checks in (see [`crate::claims::check_in`]) and out,
//! which gives the minutes served; then both sides confirm — the volunteer, and the resident (or
//! a grid worker for them). Only when both have confirmed do the minutes count and the points
//! go to the volunteer's moral-bank account, once, at the rate the caller gives for the kind of
//! service.
//!
//! The functions work in the caller's transaction.

use chrono::{DateTime, Utc};
use civic_kit::db::Tx;
use civic_kit::error::{Error, Result};
use civic_kit::time;

use crate::ledger;

/// The longest task counted, in minutes (a day).
pub const MAX_MINUTES: i64 = 24 * 60;

/// Who confirms a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party<'a> {
    /// The volunteer who did it.
    Volunteer,
    /// The resident it was for, or a grid worker for them: who (`users/{user}`), and the
    /// resident's rating of the service, 1 to 5 (0 for none).
    Resident(&'a str, i64),
}

/// A task as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The need's id.
    pub need: String,
    /// The volunteer (`users/{user}`).
    pub volunteer: String,
    /// When they checked in, or empty.
    pub checked_in_at: String,
    /// When they checked out, or empty.
    pub checked_out_at: String,
    /// Minutes served (from check-in to check-out).
    pub minutes: i64,
    /// Whether the volunteer has confirmed.
    pub volunteer_confirmed: bool,
    /// Who confirmed for the resident, or empty.
    pub resident_confirmed_by: String,
    /// When the second confirmation came (the minutes count from then), or empty.
    pub confirmed_at: String,
    /// The ledger's movement of the points earned, or empty.
    pub points_movement: String,
    /// The points earned (0 before).
    pub points: i64,
    /// The resident's rating, 1 to 5 (0 for none).
    pub rating: i64,
}

/// The volunteer leaves at `at`: the minutes from check-in (at least one, at most
/// [`MAX_MINUTES`]) are the task's. Checking out again answers with the task as it is;
/// FAILED_PRECONDITION `NOT_CHECKED_IN` before a check-in.
pub async fn check_out(tx: &mut Tx, street: &str, need: &str, volunteer: &str, at: DateTime<Utc>) -> Result<Task> {
    let task = task(tx, street, need, volunteer).await?;
    if !task.checked_out_at.is_empty() {
        return Ok(task);
    }
    let Some(start) = parse(&task.checked_in_at) else {
        return Err(Error::failed_precondition("NOT_CHECKED_IN", "check in before checking out"));
    };
    if at < start {
        return Err(Error::invalid("check_out_time", "must not be before the check-in"));
    }
    let minutes = (at - start).num_minutes().clamp(1, MAX_MINUTES);
    sqlx::query(
        "update claims set checked_out_at = $4, minutes = $5, updated_at = $4
         where street = $1 and need_id = $2 and volunteer = $3",
    )
    .bind(street)
    .bind(need)
    .bind(volunteer)
    .bind(time::to_text(at))
    .bind(minutes)
    .execute(&mut **tx)
    .await?;
    crate::claims::settle(tx, street, need).await?;
    self::task(tx, street, need, volunteer).await
}

/// `party` confirms the task at `at` (again: nothing changes). With both confirmations the
/// minutes count from `at` and the volunteer earns `points_per_hour` pro rata, rounded up to
/// a whole point (nothing at a rate of 0), once. FAILED_PRECONDITION `NOT_CHECKED_OUT` before the check-out.
pub async fn confirm(
    tx: &mut Tx,
    street: &str,
    need: &str,
    volunteer: &str,
    party: Party<'_>,
    at: DateTime<Utc>,
    points_per_hour: i64,
) -> Result<Task> {
    let task = task(tx, street, need, volunteer).await?;
    if task.checked_out_at.is_empty() {
        return Err(Error::failed_precondition("NOT_CHECKED_OUT", "a task is confirmed once it is done"));
    }
    let when = time::to_text(at);
    let sql = match party {
        Party::Volunteer => {
            "update claims set volunteer_confirmed_at = $4, updated_at = $4
             where street = $1 and need_id = $2 and volunteer = $3 and volunteer_confirmed_at = ''"
        }
        Party::Resident(..) => {
            "update claims set resident_confirmed_at = $4, resident_confirmed_by = $5, rating = $6, updated_at = $4
             where street = $1 and need_id = $2 and volunteer = $3 and resident_confirmed_at = ''"
        }
    };
    let mut update = sqlx::query(sql).bind(street).bind(need).bind(volunteer).bind(&when);
    if let Party::Resident(who, rating) = party {
        update = update.bind(who).bind(rating.clamp(0, 5));
    }
    update.execute(&mut **tx).await?;
    let task = self::task(tx, street, need, volunteer).await?;
    if !task.volunteer_confirmed || task.resident_confirmed_by.is_empty() || !task.confirmed_at.is_empty() {
        return Ok(task);
    }
    let points = ((task.minutes * points_per_hour.clamp(0, 10_000) + 59) / 60).min(ledger::MAX_POINTS);
    let movement = if points > 0 {
        let source = format!("streets/{street}/needs/{need}/claims/{volunteer}");
        ledger::earn(tx, street, volunteer, points, &source, "services/volunteer").await?.id
    } else {
        String::new()
    };
    sqlx::query(
        "update claims set confirmed_at = $4, points_movement = $5, updated_at = $4
         where street = $1 and need_id = $2 and volunteer = $3",
    )
    .bind(street)
    .bind(need)
    .bind(volunteer)
    .bind(&when)
    .bind(&movement)
    .execute(&mut **tx)
    .await?;
    crate::claims::settle(tx, street, need).await?;
    self::task(tx, street, need, volunteer).await
}

/// The minutes `volunteer` served in tasks confirmed from `from` up to `to`.
pub async fn minutes_served<'e, E>(
    executor: E,
    street: &str,
    volunteer: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> Result<i64>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (minutes,): (i64,) = sqlx::query_as(
        "select cast(coalesce(sum(minutes), 0) as bigint) from claims
         where street = $1 and volunteer = $2 and confirmed_at <> '' and confirmed_at >= $3 and confirmed_at < $4",
    )
    .bind(street)
    .bind(volunteer)
    .bind(time::to_text(from))
    .bind(time::to_text(to))
    .fetch_one(executor)
    .await?;
    Ok(minutes)
}

/// The task of `volunteer`'s active claim on `need`; FAILED_PRECONDITION `NO_CLAIM` without one.
pub async fn task(tx: &mut Tx, street: &str, need: &str, volunteer: &str) -> Result<Task> {
    type Row = (String, String, i64, String, String, String, String, i64, i64);
    let row: Option<Row> = sqlx::query_as(
        "select c.checked_in_at, c.checked_out_at, c.minutes, c.volunteer_confirmed_at, c.resident_confirmed_by,
             c.confirmed_at, c.points_movement, coalesce(m.points, 0), c.rating
         from claims c left join ledger_movements m on m.street = c.street and m.movement_id = c.points_movement
         where c.street = $1 and c.need_id = $2 and c.volunteer = $3 and c.state = 'ACTIVE'",
    )
    .bind(street)
    .bind(need)
    .bind(volunteer)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((
        checked_in_at,
        checked_out_at,
        minutes,
        volunteer_confirmed_at,
        resident_confirmed_by,
        confirmed_at,
        movement,
        points,
        rating,
    )) = row
    else {
        return Err(Error::failed_precondition("NO_CLAIM", "no place taken in this need"));
    };
    Ok(Task {
        need: need.to_owned(),
        volunteer: volunteer.to_owned(),
        checked_in_at,
        checked_out_at,
        minutes,
        volunteer_confirmed: !volunteer_confirmed_at.is_empty(),
        resident_confirmed_by,
        confirmed_at,
        points_movement: movement,
        points,
        rating,
    })
}

fn parse(text: &str) -> Option<DateTime<Utc>> {
    time::from_text(text)
}
