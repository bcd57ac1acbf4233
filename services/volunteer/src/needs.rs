//! Needs over the API (群众点单、社区接单): placing one, reading and listing them as each caller
//! may, and a volunteer taking or giving back a place — on the [`claims`] store, with the
//! eligibility of [`matching`] checked in the same transaction.

use chrono::{DateTime, Duration, Utc};
use civic_kit::auth::{Caller, Role};
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::{RequestKey, etag};
use civic_kit::names::{Collection, Id, Name, StreetId};
use civic_kit::{filter, page, time};
use civic_proto::volunteer::need::{Kind, State};
use civic_proto::volunteer::volunteer::State as VolunteerState;
use civic_proto::volunteer::*;
use prost::Message;

use crate::Volunteers;
use crate::api::Staff;
use crate::claims::{self, NeedFilter, NewNeed, Stored};
use crate::matching::{self, Ineligible};
use crate::pool::{self, Households};
use crate::register::{self, VolunteerName};

/// The `needs` collection of a street.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeedsCollection;

impl Collection for NeedsCollection {
    const COLLECTION: &'static str = "needs";
}

/// A need's name, `streets/{street}/needs/{need}`.
pub type NeedName = Name<NeedsCollection>;

/// What a caller reaches among a street's needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    /// An admin (or a cadre whose token names no community): every need.
    Street,
    /// A cadre: their community's (an id).
    Community(String),
    /// A grid worker: the needs of their grids (ids).
    Grids(Vec<String>),
    /// Anyone else: the needs for them or placed by them (`users/{user}`), and, when they are an
    /// approved volunteer, open needs and those they hold a place in.
    Person { me: String, volunteer: bool },
}

fn denied() -> Error {
    Error::permission_denied("not a need you may see")
}

/// The longest a need may last.
const LONGEST: Duration = Duration::days(matching::MAX_WINDOW_DAYS);

impl Volunteers {
    /// What `caller` reaches in `street` (an approved registration is read for a person: it is
    /// their own).
    async fn need_reach(&self, caller: &Caller, street: &StreetId) -> Result<Reach> {
        let (p, staff) = crate::api::staff(caller, street)?;
        Ok(match staff {
            Some(Staff::Street) => Reach::Street,
            Some(Staff::Community(c)) => Reach::Community(c),
            None if p.has_role(Role::GridWorker) => Reach::Grids(p.grids.clone()),
            None => {
                Reach::Person { me: p.resource_name(), volunteer: self.approved(street, &p.subject).await?.is_some() }
            }
        })
    }

    /// The caller's registration in `street` when it is approved.
    async fn approved(&self, street: &StreetId, subject: &str) -> Result<Option<register::Record>> {
        let Ok(id) = Id::parse("volunteer", subject) else { return Ok(None) };
        let name = VolunteerName::new(street.clone(), id);
        let found = register::get(self.writer.db().reader(), &name).await?;
        Ok(found.filter(|r| r.volunteer.state() == VolunteerState::Approved))
    }

    /// Whether `reach` sees `need` (`holds`: the caller holds a place in it).
    fn sees_need(reach: &Reach, need: &Stored, holds: bool) -> bool {
        match reach {
            Reach::Street => true,
            Reach::Community(c) => need.community == *c,
            Reach::Grids(grids) => !need.grid.is_empty() && grids.contains(&need.grid),
            Reach::Person { me, volunteer } => {
                need.resident == *me || need.placed_by == *me || (*volunteer && (Self::taking(need) || holds))
            }
        }
    }

    /// Whether `need` takes volunteers: open, or under way with a place free.
    fn taking(need: &Stored) -> bool {
        let p = &need.places;
        p.state == "OPEN" || (p.state == "IN_PROGRESS" && p.claimed < p.places)
    }

    pub(crate) async fn create_need(&self, caller: &Caller, req: CreateNeedRequest) -> Result<Need> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let reach = self.need_reach(caller, &street).await?;
        let mut need = req.need.clone().unwrap_or_default();
        let placed_by = caller.key();
        if need.resident.is_empty() {
            match &reach {
                Reach::Person { me, .. } => need.resident = me.clone(),
                _ => return Err(Error::invalid("need.resident", "is required: the resident the need is for")),
            }
        }
        let (community, mut grid) = self.check_need(&need, &street)?;
        if grid.is_empty()
            && let Some(place) = need.place
        {
            // A need with a place and no grid goes in the grid that holds the place, so the grid's
            // worker sees it.
            if let Some(found) = self.locate(&street, &community, place).await {
                need.grid = found.to_string();
                grid = found.id().to_string();
            }
        }
        match &reach {
            Reach::Street => {}
            Reach::Community(c) if *c == community => {}
            Reach::Grids(grids) if !grid.is_empty() && grids.contains(&grid) => {}
            Reach::Person { me, .. } if need.resident == *me => {}
            Reach::Grids(_) => return Err(Error::permission_denied("grid workers place needs in their own grids")),
            Reach::Person { .. } => return Err(Error::permission_denied("residents place needs for themselves")),
            Reach::Community(_) => return Err(Error::permission_denied("cadres place needs in their own community")),
        }
        if need.places == 0 {
            need.places = 1;
        }
        let id = Id::generate('n');
        let now = Utc::now();
        need.placed_by = placed_by;
        need.create_time = Some(time::to_timestamp(now));
        need.update_time = need.create_time;
        need.state = State::Open as i32;
        need.claimed = 0;
        need.name = format!("{}/needs/{id}", street.parent());
        let stored = NewNeed {
            street: street.as_str().to_owned(),
            id: id.as_str().to_owned(),
            kind: need.kind().as_str_name().to_owned(),
            community,
            grid,
            household: need.household.clone(),
            resident: need.resident.clone(),
            placed_by: need.placed_by.clone(),
            places: i64::from(need.places),
            start: at(need.start_time.as_ref()),
            end: at(need.end_time.as_ref()),
            body: Need { etag: String::new(), ..need.clone() }.encode_to_vec(),
        };
        let event = NeedCreated {
            need: need.name.clone(),
            kind: stored.kind.clone(),
            community: need.community.clone(),
            grid: need.grid.clone(),
            places: need.places,
            placed_by: need.placed_by.clone(),
            start_time: need.start_time,
            create_time: need.create_time,
        };
        let key = RequestKey::new(caller.key(), "CreateNeed", &req.request_id, &req)?;
        self.writer
            .write(&key, async |c| {
                claims::insert_need(c.tx(), &stored).await?;
                c.emit(&event.need.clone(), &event).await?;
                Ok(Need { etag: etag(1), ..need.clone() })
            })
            .await
    }

    /// The grid of the need's community holding `place`, by the grid service's LocateGrid; none
    /// when the place lies outside the community's grids or the grid service did not answer in
    /// time (the need is then placed without a grid, as one without a place).
    async fn locate(&self, street: &StreetId, community: &str, place: Point) -> Option<civic_kit::names::GridName> {
        self.grid_of(street, place).await.filter(|grid| grid.community_id().as_str() == community)
    }

    /// The street's grid holding `place`, by the grid service's LocateGrid (2 s at most).
    async fn grid_of(&self, street: &StreetId, place: Point) -> Option<civic_kit::names::GridName> {
        const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
        let message = civic_proto::grid::LocateGridRequest {
            parent: street.parent(),
            point: Some(civic_proto::grid::Point { latitude: place.latitude, longitude: place.longitude }),
        };
        let call = async {
            let request = self.directory.as_service(message, TIMEOUT).await?;
            let channel = self.directory.connect("grid")?;
            let mut client = civic_proto::grid::grid_service_client::GridServiceClient::new(channel);
            Ok::<_, Error>(client.locate_grid(request).await)
        };
        let found = match tokio::time::timeout(TIMEOUT, call).await {
            Ok(Ok(Ok(found))) => found.into_inner(),
            Ok(Ok(Err(status))) if status.code() == tonic::Code::NotFound => return None,
            _ => {
                tracing::warn!("the grid service did not place a need; it is placed without a grid");
                return None;
            }
        };
        let grid = civic_kit::names::GridName::parse("grid", &found.grid).ok()?;
        (grid.street() == street).then_some(grid)
    }

    /// Checks a new need: (community id, grid id), or INVALID_ARGUMENT naming each bad field.
    fn check_need(&self, need: &Need, street: &StreetId) -> Result<(String, String)> {
        let mut bad = Violations::new();
        if need.kind() == Kind::Unspecified {
            bad.add("need.kind", "is required: MICRO_WISH, ONE_ON_ONE or ACTIVITY");
        }
        if need.title.trim().is_empty() {
            bad.add("need.title", "is required");
        }
        if civic_kit::names::UserName::parse("need.resident", &need.resident).is_err() {
            bad.add("need.resident", "must be users/{user}");
        }
        let community = register::community_id(&need.community).to_owned();
        let in_street = need.community.split('/').nth(1) == Some(street.as_str());
        if community.is_empty() || !civic_kit::names::is_valid_id(&community) || !in_street {
            bad.add("need.community", "must be a community of the street: streets/{street}/communities/{community}");
        }
        let grid = if need.grid.is_empty() {
            String::new()
        } else {
            match civic_kit::names::GridName::parse("need.grid", &need.grid) {
                Ok(g) if g.community_id().as_str() == community && g.street() == street => g.id().to_string(),
                _ => {
                    bad.add("need.grid", "must be a grid of the need's community");
                    String::new()
                }
            }
        };
        if !need.household.is_empty() {
            let household = civic_kit::names::parse("need.household", &need.household, &["streets", "households"]);
            if household.map(|p| p[0] != street.as_str()).unwrap_or(true) {
                bad.add("need.household", "must be a household of the street: streets/{street}/households/{household}");
            }
        }
        for skill in &need.required_skills {
            if !self.vocabulary.skills.contains_key(skill) {
                bad.add("need.required_skills", format!("`{skill}` is not one of the street's skills"));
            }
        }
        match (need.start_time.as_ref(), need.end_time.as_ref()) {
            (None, _) => bad.add("need.start_time", "is required"),
            (_, None) => bad.add("need.end_time", "is required"),
            (Some(_), Some(_)) => {
                let (start, end) = (at(need.start_time.as_ref()), at(need.end_time.as_ref()));
                if end <= start || end - start > LONGEST {
                    bad.add("need.end_time", "must be after the start, within 62 days of it");
                }
            }
        }
        bad.finish()?;
        Ok((community, grid))
    }

    pub(crate) async fn get_need(&self, caller: &Caller, req: GetNeedRequest) -> Result<Need> {
        let name = NeedName::parse("name", &req.name)?;
        let reach = self.need_reach(caller, name.street()).await?;
        let street = name.street().as_str();
        let found = claims::get_need(self.writer.db().reader(), street, name.id().as_str()).await?;
        let holds = match (&reach, &found) {
            (Reach::Person { me, volunteer: true }, Some(_)) => {
                claims::holds(self.writer.db().reader(), street, name.id().as_str(), me).await?
            }
            _ => false,
        };
        match found {
            Some(need) if Self::sees_need(&reach, &need, holds) => to_wire(&need, street),
            None if reach == Reach::Street => Err(Error::not_found(name.to_string())),
            _ => Err(denied()),
        }
    }

    pub(crate) async fn list_needs(&self, caller: &Caller, req: ListNeedsRequest) -> Result<ListNeedsResponse> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let reach = self.need_reach(caller, &street).await?;
        let size = page::page_size(req.page_size, 50, 200)?;
        let mut f = NeedFilter::default();
        let not = |what: &str, value: &str| Error::invalid("filter", format!("`{value}` is not {what}"));
        let mut grid = String::new();
        for term in filter::parse(&req.filter, &["state", "kind", "community", "grid"])? {
            let value = term.value.as_str();
            match term.field.as_str() {
                "state" => {
                    f.state = State::from_str_name(value).ok_or_else(|| not("a state", value))?.as_str_name().into()
                }
                "kind" => f.kind = Kind::from_str_name(value).ok_or_else(|| not("a kind", value))?.as_str_name().into(),
                "community" => f.community = civic_kit::names::CommunityName::parse("filter", value)?.id().to_string(),
                _ => {
                    let g = civic_kit::names::GridName::parse("filter", value)?;
                    f.community = g.community_id().to_string();
                    grid = g.id().to_string();
                }
            }
        }
        match &reach {
            Reach::Street => {}
            Reach::Community(mine) => {
                if !f.community.is_empty() && f.community != *mine {
                    return Err(Error::permission_denied("cadres list their own community's needs"));
                }
                f.community = mine.clone();
            }
            Reach::Grids(mine) => {
                if !grid.is_empty() && !mine.contains(&grid) {
                    return Err(Error::permission_denied("grid workers list their own grids' needs"));
                }
                if mine.is_empty() {
                    return Ok(ListNeedsResponse::default());
                }
                f.grids = mine.clone();
            }
            Reach::Person { me, volunteer } => {
                f.person = me.clone();
                f.open_too = *volunteer;
            }
        }
        if !grid.is_empty() && f.grids.is_empty() {
            f.grids = vec![grid];
        } else if !grid.is_empty() {
            f.grids.retain(|g| *g == grid);
        }
        let query = format!("ListNeeds|{street}|{f:?}");
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let mut rows = claims::list_needs(self.writer.db().reader(), street.as_str(), &f, &after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |r| vec![r.id.clone()]);
        let needs = rows.iter().map(|n| to_wire(n, street.as_str())).collect::<Result<_>>()?;
        Ok(ListNeedsResponse { needs, next_page_token })
    }

    pub(crate) async fn claim_need(&self, caller: &Caller, req: ClaimNeedRequest) -> Result<Claim> {
        let name = NeedName::parse("name", &req.name)?;
        let street = name.street().clone();
        let (p, _) = crate::api::staff(caller, &street)?;
        let Some(registration) = self.approved(&street, &p.subject).await? else {
            return Err(Error::permission_denied("approved volunteers take needs: register and wait for approval"));
        };
        let key = RequestKey::new(caller.key(), "ClaimNeed", &req.request_id, &req)?;
        self.writer.write(&key, async |c| self.take_place(c, &name, &registration).await).await
    }

    /// Takes a place in `name` for the volunteer of `registration` (approved), in the change `c`:
    /// within their monthly cap and free at the time, checked under a lock on their bookings so
    /// two claims of theirs at once cannot both pass. Taking it again answers with the place
    /// held; a new place emits `NeedClaimed`.
    pub(crate) async fn take_place(
        &self,
        c: &mut civic_kit::write::Change,
        name: &NeedName,
        registration: &register::Record,
    ) -> Result<Claim> {
        let street = name.street();
        let me = format!("users/{}", registration.name.id());
        crate::lock::hold(c.tx(), "bookings", street.as_str(), &me).await?;
        let need = claims::get_need(&mut **c.tx(), street.as_str(), name.id().as_str())
            .await?
            .ok_or_else(|| Error::not_found(name.to_string()))?;
        let placed = Need::decode(need.body.as_slice()).map_err(Error::internal)?;
        let wanted = pool::need_of(&placed);
        let held = claims::holds(&mut **c.tx(), street.as_str(), name.id().as_str(), &me).await?;
        if !held {
            let month = matching::month_of(wanted.start, self.zone);
            let load = pool::load(c.tx(), street, month, Households::Of(""), Some(&me)).await?;
            let candidate = pool::Candidate::of(registration.name.id().to_string(), &registration.volunteer);
            match matching::eligible(&candidate.matching(load.of(&me)), &wanted) {
                Ok(()) => {}
                Err(e @ Ineligible::OverCap { .. }) => {
                    return Err(Error::failed_precondition("OVER_CAP", e.to_string()));
                }
                Err(e @ Ineligible::DoubleBooked) => {
                    return Err(Error::failed_precondition("DOUBLE_BOOKED", e.to_string()));
                }
            }
        }
        let claim =
            claims::claim(c.tx(), street.as_str(), name.id().as_str(), &me, wanted.start + self.check_in_grace).await?;
        let now = claims::places(&mut **c.tx(), street.as_str(), name.id().as_str()).await?.unwrap_or(need.places);
        let volunteer = registration.name.to_string();
        if !held {
            let event = NeedClaimed {
                need: name.to_string(),
                volunteer: volunteer.clone(),
                claimed: i32::try_from(now.claimed).unwrap_or(i32::MAX),
                places: i32::try_from(now.places).unwrap_or(i32::MAX),
                claim_time: Some(time::to_timestamp(Utc::now())),
            };
            c.emit(&name.to_string(), &event).await?;
        }
        Ok(Claim {
            need: name.to_string(),
            volunteer,
            active: true,
            check_in_by: Some(time::to_timestamp(claim.check_in_by)),
        })
    }

    pub(crate) async fn cancel_need(&self, caller: &Caller, req: CancelNeedRequest) -> Result<Need> {
        let name = NeedName::parse("name", &req.name)?;
        let reach = self.need_reach(caller, name.street()).await?;
        let by = caller.key();
        let key = RequestKey::new(caller.key(), "CancelNeed", &req.request_id, &req)?;
        let (street, id) = (name.street().as_str(), name.id().as_str());
        self.writer
            .write(&key, async |c| {
                let need = match claims::get_need(&mut **c.tx(), street, id).await? {
                    Some(need) if Self::may_call_off(&reach, &need) => need,
                    None if reach == Reach::Street => return Err(Error::not_found(name.to_string())),
                    _ => return Err(denied()),
                };
                civic_kit::idempotency::check_etag(&req.etag, need.version, &name.to_string())?;
                let told = claims::cancel(c.tx(), street, id).await?;
                let now = Some(time::to_timestamp(Utc::now()));
                for user in &told {
                    let released = NeedReleased {
                        need: name.to_string(),
                        volunteer: register::volunteer_of(name.street().as_str(), user),
                        because: "cancelled".into(),
                        release_time: now,
                    };
                    c.emit(&name.to_string(), &released).await?;
                }
                let placed = Need::decode(need.body.as_slice()).map_err(Error::internal)?;
                let closed = NeedClosed {
                    need: name.to_string(),
                    state: State::Cancelled.as_str_name().into(),
                    community: placed.community.clone(),
                    grid: placed.grid.clone(),
                    closed_by: by.clone(),
                    close_time: now,
                };
                c.emit(&name.to_string(), &closed).await?;
                let after = claims::get_need(&mut **c.tx(), street, id)
                    .await?
                    .ok_or_else(|| Error::not_found(name.to_string()))?;
                to_wire(&after, street)
            })
            .await
    }

    /// Whether `reach` may call `need` off: the resident it is for, who placed it, a grid worker
    /// of its grid, staff of its community or street.
    fn may_call_off(reach: &Reach, need: &Stored) -> bool {
        match reach {
            Reach::Person { me, .. } => need.resident == *me || need.placed_by == *me,
            _ => Self::sees_need(reach, need, false),
        }
    }

    pub(crate) async fn release_need(&self, caller: &Caller, req: ReleaseNeedRequest) -> Result<Claim> {
        let name = NeedName::parse("name", &req.name)?;
        let street = name.street().clone();
        let (p, _) = crate::api::staff(caller, &street)?;
        let me = p.resource_name();
        let volunteer = format!("{}/volunteers/{}", street.parent(), p.subject);
        let key = RequestKey::new(caller.key(), "ReleaseNeed", &req.request_id, &req)?;
        self.writer
            .write(&key, async |c| {
                if claims::get_need(&mut **c.tx(), street.as_str(), name.id().as_str()).await?.is_none() {
                    return Err(Error::not_found(name.to_string()));
                }
                if !claims::release(c.tx(), street.as_str(), name.id().as_str(), &me, "withdrawn").await? {
                    return Err(Error::failed_precondition("NO_CLAIM", "no place of yours to give back in this need"));
                }
                let event = NeedReleased {
                    need: name.to_string(),
                    volunteer: volunteer.clone(),
                    because: "withdrawn".into(),
                    release_time: Some(time::to_timestamp(Utc::now())),
                };
                c.emit(&name.to_string(), &event).await?;
                Ok(Claim { need: name.to_string(), volunteer: volunteer.clone(), active: false, check_in_by: None })
            })
            .await
    }
}

/// A need as the API gives it: its message as placed, with its state, places taken and etag.
fn to_wire(need: &Stored, street: &str) -> Result<Need> {
    let placed = Need::decode(need.body.as_slice()).map_err(Error::internal)?;
    let state = State::from_str_name(&need.places.state).unwrap_or(State::Unspecified);
    Ok(Need {
        name: format!("streets/{street}/needs/{}", need.id),
        state: state as i32,
        claimed: i32::try_from(need.places.claimed).unwrap_or(i32::MAX),
        etag: etag(need.version),
        ..placed
    })
}

/// A timestamp as a time (the epoch for none: checked before).
pub(crate) fn at(t: Option<&pbjson_types::Timestamp>) -> DateTime<Utc> {
    time::from_timestamp(t).unwrap_or_default()
}
