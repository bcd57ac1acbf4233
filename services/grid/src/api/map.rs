//! `civic.grid.v1.GridService`: communities, grids and LocateGrid.

use chrono::{DateTime, NaiveDate, Utc};
use civic_kit::auth::Role;
use civic_kit::db::Tx;
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::{RequestKey, check_etag};
use civic_kit::names::{Id, StreetId, UserName};
use civic_kit::write::Change;
use civic_kit::{page, time};
use civic_proto::grid::grid_service_server::GridService;
use civic_proto::grid::*;
use tonic::{Request, Response, Status};

use super::{community_to_wire, denied, grid_to_wire, required};
use crate::Grids;
use crate::domain::{CommunityName, GridName, HouseholdName, Place, VisitPolicy, parse_date, staff_phone};
use crate::geometry::Boundary;
use crate::map::StreetMap;
use crate::store::{self, AssignmentRecord, CommunityRecord, CoverRecord, GridRecord};

/// The longest cover, in days.
const MAX_COVER_DAYS: i64 = 366;

/// The event of a grid's boundary drawn anew.
pub(crate) fn grid_changed(grid: &GridRecord) -> GridBoundaryChanged {
    GridBoundaryChanged {
        grid: grid.name.to_string(),
        community: grid.name.community().to_string(),
        boundary_revision: grid.revision,
        event_time: Some(time::to_timestamp(grid.updated)),
    }
}

/// Places again, inside the write that changed the street's grids, the households whose
/// location lies in `bbox` or that were in `grid`: from the street's boundaries as the write
/// left them. Returns how many moved.
/// Each household moved is announced (`HouseholdChanged`).
pub(crate) async fn place_households(
    c: &mut Change,
    grid: &GridName,
    bbox: [f64; 4],
    policy: &VisitPolicy,
    now: DateTime<Utc>,
) -> Result<usize> {
    let street = grid.street();
    let now_text = time::to_text(now);
    let candidates = store::households_to_relocate(c.tx(), grid, bbox).await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let boundaries = store::boundaries(&mut **c.tx(), street).await?;
    let map = StreetMap::build(boundaries);
    let mut moved = 0;
    for (household, longitude, latitude, community, grid_id) in candidates {
        let place = map.place(longitude, latitude);
        if place != (Place { community, grid: grid_id }) {
            store::set_place(c.tx(), street, &household, &place, &now_text).await?;
            let name = HouseholdName::new(street.clone(), Id::parse("household", &household)?);
            if let Some(h) = store::get_household(&mut **c.tx(), &name).await? {
                c.emit(&name.to_string(), &super::household_changed(&h, policy, now)).await?;
            }
            moved += 1;
        }
    }
    Ok(moved)
}

/// The event of a grid's workers as they now are.
pub(crate) fn grid_assigned(grid: &GridRecord) -> GridAssigned {
    GridAssigned {
        grid: grid.name.to_string(),
        community: grid.name.community().to_string(),
        workers: grid.workers.iter().map(|w| w.worker.clone()).collect(),
        version: grid.version,
        event_time: Some(time::to_timestamp(grid.updated)),
    }
}

fn union(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]
}

/// The workers of a grid, checked.
fn workers(v: &mut Violations, field: &str, sent: &[Assignment]) -> Vec<AssignmentRecord> {
    let mut out: Vec<AssignmentRecord> = Vec::with_capacity(sent.len());
    for (i, a) in sent.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        let phone =
            if a.phone.trim().is_empty() { Some(String::new()) } else { v.check(staff_phone(&at("phone"), &a.phone)) };
        if let (Some(worker), Some(phone)) = (v.check(UserName::parse(&at("worker"), &a.worker)), phone) {
            if out.iter().any(|o| o.worker == worker.as_str()) {
                v.add(at("worker"), "names a worker already assigned");
            } else {
                out.push(AssignmentRecord {
                    worker: worker.to_string(),
                    duties: a.duties.trim().to_owned(),
                    display_name: a.display_name.trim().to_owned(),
                    phone,
                });
            }
        }
    }
    out
}

/// Staff contacts, checked: a role and a name, a work phone if any, an account if any.
pub(crate) fn contacts(v: &mut Violations, field: &str, sent: &[StaffContact]) -> Vec<StaffContact> {
    let mut out = Vec::with_capacity(sent.len());
    for (i, c) in sent.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        let role = v.check(required(&at("role"), &c.role));
        let display_name = v.check(required(&at("display_name"), &c.display_name));
        let phone =
            if c.phone.trim().is_empty() { Some(String::new()) } else { v.check(staff_phone(&at("phone"), &c.phone)) };
        let user = if c.user.is_empty() {
            Some(String::new())
        } else {
            v.check(UserName::parse(&at("user"), &c.user)).map(|u| u.to_string())
        };
        if let (Some(role), Some(display_name), Some(phone), Some(user)) = (role, display_name, phone, user) {
            out.push(StaffContact { role, display_name, phone, user });
        }
    }
    out
}

/// A station as sent, checked (`field` is its field): name and place required, a location in
/// range, members with their contacts, a rota of their duties.
fn station_of(v: &mut Violations, field: &str, sent: &Station) -> Station {
    let at = |name: &str| format!("{field}.{name}");
    let display_name = v.check(required(&at("display_name"), &sent.display_name)).unwrap_or_default();
    let place = v.check(required(&at("place"), &sent.place)).unwrap_or_default();
    if sent.location.is_some() {
        v.check(super::check_point(&at("location"), sent.location.as_ref()));
    }
    let members = contacts(v, &at("members"), &sent.members);
    let rota = rota(v, &at("rota"), &sent.rota, &members);
    Station { display_name, place, location: sent.location, members, rota, ..sent.clone() }
}

/// `HH:MM`, as minutes of the day.
fn clock(v: &mut Violations, field: &str, text: &str) -> Option<u32> {
    match chrono::NaiveTime::parse_from_str(text, "%H:%M") {
        Ok(t) if text.len() == 5 => Some(chrono::Timelike::hour(&t) * 60 + chrono::Timelike::minute(&t)),
        _ => {
            v.add(field, "must be a time of day, HH:MM");
            None
        }
    }
}

/// A station's rota, checked: each duty within a day, on a member of the station.
fn rota(v: &mut Violations, field: &str, sent: &[DutySlot], members: &[StaffContact]) -> Vec<DutySlot> {
    let mut out = Vec::with_capacity(sent.len());
    for (i, slot) in sent.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        let start = clock(v, &at("start_time"), &slot.start_time);
        let end = clock(v, &at("end_time"), &slot.end_time);
        if let (Some(start), Some(end)) = (start, end)
            && end <= start
        {
            v.add(at("end_time"), "must be after start_time");
        }
        if !members.iter().any(|m| m.display_name == slot.member) {
            v.add(at("member"), "must be the display_name of one of the station's members");
        }
        out.push(slot.clone());
    }
    out
}

/// The covers of a grid, checked: a worker, a first and last day in order, at most a year apart.
fn covers(v: &mut Violations, field: &str, sent: &[Cover]) -> Vec<CoverRecord> {
    let mut out = Vec::with_capacity(sent.len());
    for (i, c) in sent.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        let worker = v.check(UserName::parse(&at("worker"), &c.worker));
        let start: Option<NaiveDate> = v.check(parse_date(&at("start_date"), &c.start_date));
        let end: Option<NaiveDate> = v.check(parse_date(&at("end_date"), &c.end_date));
        let covers_for = if c.covers_for.is_empty() {
            Some(String::new())
        } else {
            v.check(UserName::parse(&at("covers_for"), &c.covers_for)).map(|u| u.to_string())
        };
        if let (Some(worker), Some(start), Some(end), Some(covers_for)) = (worker, start, end, covers_for) {
            if end < start {
                v.add(at("end_date"), "must not be before start_date");
            } else if (end - start).num_days() > MAX_COVER_DAYS {
                v.add(at("end_date"), "a cover lasts at most 366 days");
            } else {
                out.push(CoverRecord { worker: worker.to_string(), start, end, covers_for });
            }
        }
    }
    out
}

impl Grids {
    /// Whether the caller may draw in `community`: a street admin, or a cadre of the street or
    /// of that community.
    pub(crate) async fn may_draw(&self, caller: &civic_kit::auth::Caller, community: &CommunityName) -> Result<()> {
        let (principal, reach) = self.reach(caller, community.street()).await?;
        let drafter = principal.has_role(Role::Admin) || principal.has_role(Role::Cadre);
        if drafter && (reach.street || reach.communities.iter().any(|c| c == community.id().as_str())) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// Refuses a boundary that shares more than the tolerance with another grid of the street.
    async fn check_overlaps(&self, tx: &mut Tx, name: &GridName, boundary: &Boundary, bbox: [f64; 4]) -> Result<()> {
        for (other, text) in store::grids_meeting(tx, name, bbox).await? {
            let Ok(other_boundary) = Boundary::from_geojson(&text) else { continue };
            let share = boundary.overlap_ratio(&other_boundary);
            if share > self.overlap_tolerance {
                return Err(Error::invalid(
                    "grid.boundary",
                    format!(
                        "overlaps {other} by {:.1}% of the smaller grid (at most {:.1}% allowed)",
                        share * 100.0,
                        self.overlap_tolerance * 100.0
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl GridService for Grids {
    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_community(&self, request: Request<CreateCommunityRequest>) -> Result<Response<Community>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        caller.require_role_in(street.as_str(), &[Role::Admin])?;
        let draft = req.community.clone().unwrap_or_default();
        let mut v = Violations::new();
        let id = v.check(Id::parse("community_id", &req.community_id));
        let display_name = v.check(required("community.display_name", &draft.display_name));
        let staff = contacts(&mut v, "community.contacts", &draft.contacts);
        v.finish()?;
        let (Some(id), Some(display_name)) = (id, display_name) else {
            return Err(Error::invalid("community", "is incomplete").into());
        };
        let key = RequestKey::new(caller.key(), "CreateCommunity", &req.request_id, &req)?;
        let now = Utc::now();
        let record = CommunityRecord {
            name: CommunityName::new(street, id),
            display_name,
            office: draft.office.trim().to_owned(),
            contacts: staff,
            version: 1,
            created: now,
            updated: now,
        };
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                store::insert_community(c.tx(), &record).await?;
                Ok(community_to_wire(&record))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_community(&self, request: Request<GetCommunityRequest>) -> Result<Response<Community>, Status> {
        let caller = self.caller(&request)?;
        let name = CommunityName::parse("name", &request.get_ref().name)?;
        let (_, reach) = self.reach(&caller, name.street()).await?;
        if !reach.sees_community(name.id().as_str()) {
            return Err(denied().into());
        }
        let found = store::get_community(self.writer.db().reader(), &name).await?;
        Ok(Response::new(community_to_wire(&found.ok_or_else(|| Error::not_found(name.to_string()))?)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_communities(
        &self,
        request: Request<ListCommunitiesRequest>,
    ) -> Result<Response<ListCommunitiesResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 50, 200)?;
        let (_, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() {
            return Err(denied().into());
        }
        let query = format!("ListCommunities|{street}");
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let mut rows = store::list_communities(self.writer.db().reader(), &street, &after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |c| vec![c.name.id().to_string()]);
        let communities =
            rows.iter().filter(|c| reach.sees_community(c.name.id().as_str())).map(community_to_wire).collect();
        Ok(Response::new(ListCommunitiesResponse { communities, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().community.as_ref().map(|c| c.name.as_str()).unwrap_or_default()))]
    async fn update_community(&self, request: Request<UpdateCommunityRequest>) -> Result<Response<Community>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let sent = req.community.clone().unwrap_or_default();
        let name = CommunityName::parse("community.name", &sent.name)?;
        self.may_draw(&caller, &name).await?;
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "name the fields to change").into());
        }
        let mut v = Violations::new();
        let (mut display_name, mut office, mut staff) = (None, None, None);
        for path in &paths {
            match path.as_str() {
                "display_name" => display_name = v.check(required("community.display_name", &sent.display_name)),
                "office" => office = Some(sent.office.trim().to_owned()),
                "contacts" => staff = Some(contacts(&mut v, "community.contacts", &sent.contacts)),
                other => {
                    v.add("update_mask", format!("`{other}` cannot be changed; use display_name, office, contacts"))
                }
            }
        }
        v.finish()?;
        let key = RequestKey::new(caller.key(), "UpdateCommunity", &req.request_id, &req)?;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let mut community =
                    store::get_community_in(c.tx(), &name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
                check_etag(&sent.etag, community.version, &name.to_string())?;
                if let Some(d) = display_name.clone() {
                    community.display_name = d;
                }
                if let Some(o) = office.clone() {
                    community.office = o;
                }
                if let Some(s) = staff.clone() {
                    community.contacts = s;
                }
                community.version += 1;
                community.updated = Utc::now();
                store::save_community(c.tx(), &community).await?;
                Ok(community_to_wire(&community))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_station(&self, request: Request<CreateStationRequest>) -> Result<Response<Station>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let community = CommunityName::parse("parent", &req.parent)?;
        self.may_draw(&caller, &community).await?;
        let draft = req.station.clone().unwrap_or_default();
        let mut v = Violations::new();
        let id = v.check(Id::parse("station_id", &req.station_id));
        let station = station_of(&mut v, "station", &draft);
        v.finish()?;
        let Some(id) = id else { return Err(Error::invalid("station_id", "is required").into()) };
        let key = RequestKey::new(caller.key(), "CreateStation", &req.request_id, &req)?;
        let now = Utc::now();
        let station = Station {
            name: format!("{community}/stations/{id}"),
            etag: civic_kit::idempotency::etag(1),
            create_time: Some(time::to_timestamp(now)),
            update_time: Some(time::to_timestamp(now)),
            ..station
        };
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                if !store::community_exists(c.tx(), &community).await? {
                    return Err(Error::not_found(community.to_string()));
                }
                let (street, cid) = (community.street(), community.id().as_str());
                store::insert_station(c.tx(), street, cid, id.as_str(), 1, &station, &time::to_text(now)).await?;
                Ok(station.clone())
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_stations(
        &self,
        request: Request<ListStationsRequest>,
    ) -> Result<Response<ListStationsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let community = CommunityName::parse("parent", &req.parent)?;
        let principal = caller.require()?;
        if !principal.in_street(community.street().as_str()) {
            return Err(denied().into());
        }
        let size = page::page_size(req.page_size, 50, 100)?;
        let query = format!("ListStations|{community}");
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let mut rows = store::list_stations(
            self.writer.db().reader(),
            community.street(),
            community.id().as_str(),
            &after,
            size + 1,
        )
        .await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(id, _, _)| vec![id.clone()]);
        let stations = rows.into_iter().map(|(_, _, s)| s).collect();
        Ok(Response::new(ListStationsResponse { stations, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().station.as_ref().map(|s| s.name.as_str()).unwrap_or_default()))]
    async fn update_station(&self, request: Request<UpdateStationRequest>) -> Result<Response<Station>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let sent = req.station.clone().unwrap_or_default();
        let ids = civic_kit::names::parse("station.name", &sent.name, &["streets", "communities", "stations"])?;
        let street = StreetId::parse("station.name", ids[0])?;
        let community = CommunityName::new(street.clone(), Id::parse("station.name", ids[1])?);
        let station_id = ids[2].to_owned();
        self.may_draw(&caller, &community).await?;
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        let allowed = ["display_name", "place", "location", "members", "rota"];
        if paths.is_empty() || paths.iter().any(|p| !allowed.contains(&p.as_str())) {
            return Err(Error::invalid(
                "update_mask",
                "name the fields to change: display_name, place, location, members, rota",
            )
            .into());
        }
        let key = RequestKey::new(caller.key(), "UpdateStation", &req.request_id, &req)?;
        let now = Utc::now();
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let (version, mut station) = store::get_station(c.tx(), &street, community.id().as_str(), &station_id)
                    .await?
                    .ok_or_else(|| Error::not_found(sent.name.clone()))?;
                check_etag(&sent.etag, version, &sent.name)?;
                for path in &paths {
                    match path.as_str() {
                        "display_name" => station.display_name = sent.display_name.clone(),
                        "place" => station.place = sent.place.clone(),
                        "location" => station.location = sent.location,
                        "members" => station.members = sent.members.clone(),
                        _ => station.rota = sent.rota.clone(),
                    }
                }
                let mut v = Violations::new();
                let checked = station_of(&mut v, "station", &station);
                v.finish()?;
                let station = Station {
                    etag: civic_kit::idempotency::etag(version + 1),
                    update_time: Some(time::to_timestamp(now)),
                    ..checked
                };
                let (cid, text) = (community.id().as_str(), time::to_text(now));
                store::save_station(c.tx(), &street, cid, &station_id, version + 1, &station, &text).await?;
                Ok(station)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_grid(&self, request: Request<CreateGridRequest>) -> Result<Response<Grid>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let community = CommunityName::parse("parent", &req.parent)?;
        self.may_draw(&caller, &community).await?;
        let draft = req.grid.clone().unwrap_or_default();
        let mut v = Violations::new();
        let id = v.check(Id::parse("grid_id", &req.grid_id));
        let display_name = v.check(required("grid.display_name", &draft.display_name));
        let boundary = match Boundary::from_geojson(&draft.boundary) {
            Ok(b) => Some(b),
            Err(e) => {
                v.add("grid.boundary", e.to_string());
                None
            }
        };
        let staff = workers(&mut v, "grid.workers", &draft.workers);
        let cover = covers(&mut v, "grid.covers", &draft.covers);
        v.finish()?;
        let (Some(id), Some(display_name), Some(boundary)) = (id, display_name, boundary) else {
            return Err(Error::invalid("grid", "is incomplete").into());
        };
        let key = RequestKey::new(caller.key(), "CreateGrid", &req.request_id, &req)?;
        let now = Utc::now();
        let bbox = boundary.bbox();
        let record = GridRecord {
            name: GridName::new(&community, id),
            display_name,
            boundary: boundary.to_geojson(),
            bbox,
            revision: 1,
            workers: staff,
            covers: cover,
            version: 1,
            created: now,
            updated: now,
        };
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                if !store::community_exists(c.tx(), &community).await? {
                    return Err(Error::not_found(community.to_string()));
                }
                self.check_overlaps(c.tx(), &record.name, &boundary, bbox).await?;
                store::insert_grid(c.tx(), &record).await?;
                let moved = place_households(c, &record.name, bbox, &self.policy, now).await?;
                tracing::debug!(moved, "households placed in the new grid");
                c.emit(&record.name.to_string(), &grid_changed(&record)).await?;
                c.emit(&record.name.to_string(), &grid_assigned(&record)).await?;
                Ok(grid_to_wire(&record))
            })
            .await?;
        self.maps.forget(community.street());
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_grid(&self, request: Request<GetGridRequest>) -> Result<Response<Grid>, Status> {
        let caller = self.caller(&request)?;
        let name = GridName::parse("name", &request.get_ref().name)?;
        let (_, reach) = self.reach(&caller, name.street()).await?;
        let place = Place { community: name.community_id().to_string(), grid: name.id().to_string() };
        if !reach.staff_reaches(&place) {
            return Err(denied().into());
        }
        let grid = store::get_grid(self.writer.db().reader(), &name).await?;
        Ok(Response::new(grid_to_wire(&grid.ok_or_else(|| Error::not_found(name.to_string()))?)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_grids(&self, request: Request<ListGridsRequest>) -> Result<Response<ListGridsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let (street, community) = match req.parent.strip_suffix("/communities/-") {
            Some(street) => (StreetId::parse_parent("parent", street)?, String::new()),
            None => {
                let c = CommunityName::parse("parent", &req.parent)?;
                (c.street().clone(), c.id().to_string())
            }
        };
        let size = page::page_size(req.page_size, 50, 200)?;
        let (_, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() || (!community.is_empty() && !reach.sees_community(&community)) {
            return Err(denied().into());
        }
        let query = format!("ListGrids|{street}|{community}");
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.unwrap_or_else(|| vec![String::new(); 2]);
        let mut rows =
            store::list_grids(self.writer.db().reader(), &street, &community, (&after[0], &after[1]), size + 1).await?;
        let next_page_token = self
            .pages
            .next_page(&query, &mut rows, size, |g| vec![g.name.community_id().to_string(), g.name.id().to_string()]);
        let grids = rows
            .iter()
            .filter(|g| {
                reach.staff_reaches(&Place {
                    community: g.name.community_id().to_string(),
                    grid: g.name.id().to_string(),
                })
            })
            .map(grid_to_wire)
            .collect();
        Ok(Response::new(ListGridsResponse { grids, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().grid.as_ref().map(|g| g.name.as_str()).unwrap_or_default()))]
    async fn update_grid(&self, request: Request<UpdateGridRequest>) -> Result<Response<Grid>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let sent = req.grid.clone().unwrap_or_default();
        let name = GridName::parse("grid.name", &sent.name)?;
        self.may_draw(&caller, &name.community()).await?;
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "name the fields to change").into());
        }
        let mut v = Violations::new();
        let mut display_name = None;
        let mut boundary = None;
        let mut staff = None;
        let mut cover = None;
        for path in &paths {
            match path.as_str() {
                "display_name" => display_name = v.check(required("grid.display_name", &sent.display_name)),
                "boundary" => match Boundary::from_geojson(&sent.boundary) {
                    Ok(b) => boundary = Some(b),
                    Err(e) => v.add("grid.boundary", e.to_string()),
                },
                "workers" => staff = Some(workers(&mut v, "grid.workers", &sent.workers)),
                "covers" => cover = Some(covers(&mut v, "grid.covers", &sent.covers)),
                other => v.add(
                    "update_mask",
                    format!("`{other}` cannot be changed; use display_name, boundary, workers, covers"),
                ),
            }
        }
        v.finish()?;
        let key = RequestKey::new(caller.key(), "UpdateGrid", &req.request_id, &req)?;
        let now = Utc::now();
        let redrawn = boundary.is_some();
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let mut grid =
                    store::get_grid_in(c.tx(), &name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
                check_etag(&sent.etag, grid.version, &name.to_string())?;
                let old_bbox = grid.bbox;
                if let Some(display_name) = display_name.clone() {
                    grid.display_name = display_name;
                }
                if let Some(staff) = staff.clone() {
                    grid.workers = staff;
                }
                if let Some(cover) = cover.clone() {
                    grid.covers = cover;
                }
                grid.version += 1;
                grid.updated = now;
                if let Some(boundary) = &boundary {
                    let bbox = boundary.bbox();
                    self.check_overlaps(c.tx(), &name, boundary, bbox).await?;
                    grid.boundary = boundary.to_geojson();
                    grid.bbox = bbox;
                    grid.revision += 1;
                }
                store::save_grid(c.tx(), &grid, redrawn).await?;
                if redrawn {
                    let moved = place_households(c, &name, union(old_bbox, grid.bbox), &self.policy, now).await?;
                    tracing::debug!(moved, "households placed again after a re-drawing");
                    c.emit(&name.to_string(), &grid_changed(&grid)).await?;
                }
                if staff.is_some() {
                    c.emit(&name.to_string(), &grid_assigned(&grid)).await?;
                }
                Ok(grid_to_wire(&grid))
            })
            .await?;
        if redrawn {
            self.maps.forget(name.street());
        }
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn list_grid_revisions(
        &self,
        request: Request<ListGridRevisionsRequest>,
    ) -> Result<Response<ListGridRevisionsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = GridName::parse("name", &req.name)?;
        let size = page::page_size(req.page_size, 20, 100)?;
        let (_, reach) = self.reach(&caller, name.street()).await?;
        if !reach.staff_reaches(&Place { community: name.community_id().to_string(), grid: name.id().to_string() }) {
            return Err(denied().into());
        }
        let query = format!("ListGridRevisions|{name}");
        let before = match self.pages.decode_position(&req.page_token, &query, 1)? {
            Some(p) => p[0].parse::<i64>().map_err(|_| Error::invalid("page_token", "is not a token of this query"))?,
            None => 0,
        };
        let mut rows = store::list_revisions(self.writer.db().reader(), &name, before, size + 1).await?;
        if rows.is_empty() && before == 0 && store::get_grid(self.writer.db().reader(), &name).await?.is_none() {
            return Err(Error::not_found(name.to_string()).into());
        }
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(r, _, _)| vec![r.to_string()]);
        let revisions = rows
            .into_iter()
            .map(|(revision, boundary, at)| GridRevision {
                grid: name.to_string(),
                revision,
                boundary,
                create_time: Some(time::to_timestamp(at)),
            })
            .collect();
        Ok(Response::new(ListGridRevisionsResponse { revisions, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn locate_grid(&self, request: Request<LocateGridRequest>) -> Result<Response<LocateGridResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.get_ref();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        match caller.service() {
            Some(_) => {}
            None => {
                let principal = caller.require()?;
                if !principal.in_street(street.as_str()) {
                    return Err(denied().into());
                }
            }
        }
        let (longitude, latitude) = super::check_point("point", req.point.as_ref())?;
        let map = self.maps.of(self.writer.db().reader(), &street).await?;
        let found = map.locate(longitude, latitude).ok_or_else(|| {
            Error::new(
                tonic::Code::NotFound,
                "OUTSIDE_EVERY_GRID",
                format!("the point lies outside every grid of {}", street.parent()),
            )
        })?;
        Ok(Response::new(LocateGridResponse {
            grid: found.grid.clone(),
            community: found.community.clone(),
            boundary_revision: found.revision,
        }))
    }
}
