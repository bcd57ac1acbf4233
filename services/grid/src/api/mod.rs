//! The gRPC face of the grid service: authorise → validate → rules → store, for the map
//! ([`map`]), the roster ([`roster`]) and visits ([`visits`]), and the one mapping of records to
//! wire messages.

mod import;
mod map;
mod roster;
mod visits;

use chrono::Utc;
use civic_kit::auth::{Caller, Principal, Role};
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::etag;
use civic_kit::names::StreetId;
use civic_kit::time;
use civic_proto::grid::{Community, Grid, Household, Point};
use tonic::Request;

use crate::Grids;
use crate::domain::{Reach, local_date, token_reach};
use crate::store::{self, CommunityRecord, GridRecord, HouseholdRecord};

pub(crate) use map::{grid_assigned, grid_changed, place_households};
pub(crate) use visits::recorded;

impl Grids {
    pub(crate) fn caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        self.auth.caller(request.metadata())
    }

    /// How far `principal` reaches in `street`: from the token (admins, cadres), this service's
    /// assignments and covers of today (grid workers) and its roster (residents).
    pub(crate) async fn reach_of(&self, principal: &Principal, street: &StreetId) -> Result<Reach> {
        let mut reach = token_reach(principal, street);
        if !principal.in_street(street.as_str()) {
            return Ok(reach);
        }
        let me = principal.resource_name();
        if principal.has_role(Role::GridWorker) {
            let today = local_date(Utc::now());
            reach.grids = store::grids_of_worker(self.writer.db().reader(), street, &me, today).await?;
            reach.staff_role.get_or_insert(Role::GridWorker);
        }
        if principal.has_role(Role::Resident) {
            reach.households = store::households_of_user(self.writer.db().reader(), street, &me).await?;
        }
        Ok(reach)
    }

    /// The caller as a user, and their reach in `street`.
    pub(crate) async fn reach<'c>(&self, caller: &'c Caller, street: &StreetId) -> Result<(&'c Principal, Reach)> {
        let principal = caller.require()?;
        let reach = self.reach_of(principal, street).await?;
        Ok((principal, reach))
    }
}

/// PERMISSION_DENIED that says nothing of whether the resource exists.
pub(crate) fn denied() -> Error {
    Error::permission_denied("you may not see or change this, or it does not exist")
}

/// A point checked: finite, latitude within ±90, longitude within ±180. Returns (longitude,
/// latitude).
pub(crate) fn check_point(field: &str, point: Option<&Point>) -> Result<(f64, f64)> {
    let point = point.ok_or_else(|| Error::invalid(field, "is required"))?;
    if !point.latitude.is_finite() || !(-90.0..=90.0).contains(&point.latitude) {
        return Err(Error::invalid(format!("{field}.latitude"), "must be a number from -90 to 90"));
    }
    if !point.longitude.is_finite() || !(-180.0..=180.0).contains(&point.longitude) {
        return Err(Error::invalid(format!("{field}.longitude"), "must be a number from -180 to 180"));
    }
    Ok((point.longitude, point.latitude))
}

/// Required text: not blank. Returns it trimmed.
pub(crate) fn required(field: &str, text: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() { Err(Error::invalid(field, "is required")) } else { Ok(text.to_owned()) }
}

pub(crate) fn community_to_wire(c: &CommunityRecord) -> Community {
    Community {
        name: c.name.to_string(),
        display_name: c.display_name.clone(),
        office: c.office.clone(),
        contacts: c.contacts.clone(),
        etag: etag(c.version),
        create_time: Some(time::to_timestamp(c.created)),
        update_time: Some(time::to_timestamp(c.updated)),
    }
}

pub(crate) fn grid_to_wire(g: &GridRecord) -> Grid {
    use civic_proto::grid::{Assignment, Cover};
    Grid {
        name: g.name.to_string(),
        display_name: g.display_name.clone(),
        boundary: g.boundary.clone(),
        boundary_revision: g.revision,
        workers: g
            .workers
            .iter()
            .map(|a| Assignment {
                worker: a.worker.clone(),
                duties: a.duties.clone(),
                display_name: a.display_name.clone(),
                phone: a.phone.clone(),
            })
            .collect(),
        covers: g
            .covers
            .iter()
            .map(|c| Cover {
                worker: c.worker.clone(),
                start_date: c.start.to_string(),
                end_date: c.end.to_string(),
                covers_for: c.covers_for.clone(),
            })
            .collect(),
        etag: etag(g.version),
        create_time: Some(time::to_timestamp(g.created)),
        update_time: Some(time::to_timestamp(g.updated)),
    }
}

/// The event of a household as the assessment counts it: its place, whether it is a key one and
/// how often the policy asks it to be visited.
pub(crate) fn household_changed(
    h: &HouseholdRecord,
    policy: &crate::domain::VisitPolicy,
    now: chrono::DateTime<Utc>,
) -> civic_proto::grid::HouseholdChanged {
    let wire = household_to_wire(h);
    civic_proto::grid::HouseholdChanged {
        household: h.name.to_string(),
        grid: wire.grid,
        community: wire.community,
        key: !h.tags.is_empty(),
        visit_interval_days: i32::try_from(policy.interval(&h.tags).0).unwrap_or(i32::MAX),
        version: h.version,
        event_time: Some(time::to_timestamp(now)),
    }
}

/// The event of a household's key-group tags as they now are.
pub(crate) fn tags_changed(h: &HouseholdRecord, now: chrono::DateTime<Utc>) -> civic_proto::grid::HouseholdTagsChanged {
    civic_proto::grid::HouseholdTagsChanged {
        household: h.name.to_string(),
        grid: household_to_wire(h).grid,
        tags: h.tags.clone(),
        event_time: Some(time::to_timestamp(now)),
    }
}

pub(crate) fn household_to_wire(h: &HouseholdRecord) -> Household {
    let street = h.name.street();
    let (community, grid) = if h.place.grid.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!("streets/{street}/communities/{}", h.place.community),
            format!("streets/{street}/communities/{}/grids/{}", h.place.community, h.place.grid),
        )
    };
    Household {
        name: h.name.to_string(),
        building: h.building.clone(),
        address: h.address.clone(),
        location: Some(Point { latitude: h.latitude, longitude: h.longitude }),
        grid,
        community,
        tags: h.tags.clone(),
        resident_count: h.resident_count as i32,
        etag: etag(h.version),
        create_time: Some(time::to_timestamp(h.created)),
        update_time: Some(time::to_timestamp(h.updated)),
    }
}
