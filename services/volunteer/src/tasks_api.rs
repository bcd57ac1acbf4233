//! Tasks over the API: a volunteer checks in and out of a need they hold a place in, and both
//! sides confirm — on the [`tasks`] store, the points going to the [`crate::ledger`] with the
//! second confirmation.

use chrono::{Duration, Utc};
use civic_kit::auth::{Caller, Role};
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::RequestKey;
use civic_kit::names::StreetId;
use civic_kit::time;
use civic_proto::volunteer::*;
use prost::Message;

use crate::Volunteers;
use crate::api::Staff;
use crate::claims::{self, Stored};
use crate::needs::NeedName;
use crate::register::VolunteerName;
use crate::tasks::{self, Party};

/// How long before a need starts its volunteers may check in.
const EARLY: Duration = Duration::hours(1);

/// The calling volunteer in `street`: their user name (`users/{user}`) and volunteer name.
fn me(caller: &Caller, street: &StreetId) -> Result<(String, String)> {
    let (p, _) = crate::api::staff(caller, street)?;
    Ok((p.resource_name(), format!("{}/volunteers/{}", street.parent(), p.subject)))
}

/// A task as the API gives it.
fn to_wire(task: &tasks::Task, need: &NeedName, volunteer: &str) -> Task {
    let stamp = time::text_to_timestamp;
    Task {
        need: need.to_string(),
        volunteer: volunteer.to_owned(),
        check_in_time: stamp(&task.checked_in_at),
        check_out_time: stamp(&task.checked_out_at),
        minutes: task.minutes,
        volunteer_confirmed: task.volunteer_confirmed,
        resident_confirmed_by: task.resident_confirmed_by.clone(),
        confirm_time: stamp(&task.confirmed_at),
        points: task.points,
        rating: i32::try_from(task.rating).unwrap_or(0),
    }
}

/// The need `name` in `tx`, NOT_FOUND without it.
async fn need_in(tx: &mut civic_kit::db::Tx, name: &NeedName) -> Result<Stored> {
    claims::get_need(&mut **tx, name.street().as_str(), name.id().as_str())
        .await?
        .ok_or_else(|| Error::not_found(name.to_string()))
}

impl Volunteers {
    pub(crate) async fn check_in(&self, caller: &Caller, req: CheckInRequest) -> Result<Task> {
        let name = NeedName::parse("name", &req.name)?;
        let (user, volunteer) = me(caller, name.street())?;
        let key = RequestKey::new(caller.key(), "CheckIn", &req.request_id, &req)?;
        self.writer
            .write(&key, async |c| {
                let need = need_in(c.tx(), &name).await?;
                let placed = Need::decode(need.body.as_slice()).map_err(Error::internal)?;
                let now = Utc::now();
                let (start, end) =
                    (crate::needs::at(placed.start_time.as_ref()), crate::needs::at(placed.end_time.as_ref()));
                if now < start - EARLY || now > end {
                    return Err(Error::failed_precondition(
                        "NOT_NOW",
                        "check in from an hour before the need starts to its end",
                    ));
                }
                claims::check_in(c.tx(), name.street().as_str(), name.id().as_str(), &user, now).await?;
                let task = tasks::task(c.tx(), name.street().as_str(), name.id().as_str(), &user).await?;
                Ok(to_wire(&task, &name, &volunteer))
            })
            .await
    }

    pub(crate) async fn check_out(&self, caller: &Caller, req: CheckOutRequest) -> Result<Task> {
        let name = NeedName::parse("name", &req.name)?;
        let (user, volunteer) = me(caller, name.street())?;
        let key = RequestKey::new(caller.key(), "CheckOut", &req.request_id, &req)?;
        self.writer
            .write(&key, async |c| {
                need_in(c.tx(), &name).await?;
                let (street, need) = (name.street().as_str(), name.id().as_str());
                let before = tasks::task(c.tx(), street, need, &user).await?;
                let task = tasks::check_out(c.tx(), street, need, &user, Utc::now()).await?;
                if before.checked_out_at.is_empty() {
                    let event = NeedCompleted {
                        need: name.to_string(),
                        volunteer: volunteer.clone(),
                        minutes: task.minutes,
                        complete_time: Some(time::to_timestamp(Utc::now())),
                    };
                    c.emit(&name.to_string(), &event).await?;
                }
                Ok(to_wire(&task, &name, &volunteer))
            })
            .await
    }

    pub(crate) async fn confirm_task(&self, caller: &Caller, req: ConfirmTaskRequest) -> Result<Task> {
        let name = NeedName::parse("name", &req.name)?;
        let street = name.street().clone();
        let (p, staff) = crate::api::staff(caller, &street)?;
        let (user, own) = me(caller, &street)?;
        // Whose task: the caller's own, or the named volunteer's.
        let (volunteer, target) = if req.volunteer.is_empty() || req.volunteer == own {
            (own.clone(), user.clone())
        } else {
            let named = VolunteerName::parse("volunteer", &req.volunteer)?;
            if named.street() != &street {
                return Err(Error::invalid("volunteer", "must be a volunteer of the need's street"));
            }
            (named.to_string(), format!("users/{}", named.id()))
        };
        if !(0..=5).contains(&req.rating) {
            return Err(Error::invalid("rating", "must be 1 to 5, or 0 for none"));
        }
        if req.rating != 0 && target == user {
            return Err(Error::invalid("rating", "is the resident's: a volunteer does not rate their own task"));
        }
        let key = RequestKey::new(caller.key(), "ConfirmTask", &req.request_id, &req)?;
        let grids = if p.has_role(Role::GridWorker) { p.grids.clone() } else { Vec::new() };
        self.writer
            .write(&key, async |c| {
                let need = need_in(c.tx(), &name).await?;
                let party = if target == user {
                    Party::Volunteer
                } else {
                    let for_resident = need.resident == user
                        || (!need.grid.is_empty() && grids.contains(&need.grid))
                        || match &staff {
                            Some(Staff::Street) => true,
                            Some(Staff::Community(community)) => *community == need.community,
                            None => false,
                        };
                    if !for_resident {
                        return Err(Error::permission_denied(
                            "the volunteer, the resident, their grid worker or the community's staff confirm a task",
                        ));
                    }
                    Party::Resident(&user, i64::from(req.rating))
                };
                let placed = Need::decode(need.body.as_slice()).map_err(Error::internal)?;
                let rate = self.points_per_hour.get(placed.kind().as_str_name()).copied().unwrap_or(0);
                let (street, id) = (name.street().as_str(), name.id().as_str());
                let before = tasks::task(c.tx(), street, id, &target).await?;
                let task = tasks::confirm(c.tx(), street, id, &target, party, Utc::now(), rate).await?;
                if before.confirmed_at.is_empty() && !task.confirmed_at.is_empty() {
                    let when = Some(time::to_timestamp(Utc::now()));
                    let confirmed = NeedConfirmed {
                        need: name.to_string(),
                        volunteer: volunteer.clone(),
                        minutes: task.minutes,
                        confirm_time: when,
                        rating: i32::try_from(task.rating).unwrap_or(0),
                    };
                    c.emit(&name.to_string(), &confirmed).await?;
                    if !task.points_movement.is_empty() {
                        let earned = PointsEarned {
                            person: target.clone(),
                            points: task.points,
                            source: format!("{name}/claims/{target}"),
                            movement: task.points_movement.clone(),
                            earn_time: when,
                        };
                        c.emit(&target, &earned).await?;
                    }
                }
                Ok(to_wire(&task, &name, &volunteer))
            })
            .await
    }
}
