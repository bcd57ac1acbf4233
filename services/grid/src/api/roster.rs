//! `civic.grid.v1.RosterService`: households and residents. ID numbers and phones are sealed
//! before they reach the store, masked in every answer, and opened only for a full view with a
//! reason, which is logged first. The request fingerprints kept for idempotency hold look-up
//! hashes in place of the values, never the values.

use chrono::Utc;
use civic_kit::auth::{Caller, Role};
use civic_kit::db::Tx;
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::{RequestKey, check_etag, etag};
use civic_kit::names::{Id, StreetId, UserName};
use civic_kit::write::Change;
use civic_kit::{filter, page, time};
use civic_proto::grid::roster_service_server::RosterService;
use civic_proto::grid::*;
use tonic::{Request, Response, Status};

use super::{check_point, denied, household_to_wire, required};
use crate::Grids;
use crate::domain::{AccessRecordName, GridName, HouseholdName, Place, Reach, ResidentName, parse_date};
use crate::protect::{IdNumber, Keyring, Phone, mask_id_number, mask_phone};
use crate::store::{self, HouseholdFilter, HouseholdRecord, Lookup, ResidentRecord, Scope};

/// Kinds of sealed values, for their look-up hashes and their binding to a row and column.
pub(crate) const ID_NUMBER: &str = "id_number";
pub(crate) const PHONE: &str = "phone";

/// The most residents FindResidents answers with.
const MAX_FOUND: usize = 20;

fn aad(resident: &ResidentName, kind: &str) -> String {
    format!("{resident}#{kind}")
}

/// Seals a value for `resident`'s column `kind` (bound to both): the sealed text and its
/// look-up hash.
pub(crate) fn seal(keyring: &Keyring, resident: &ResidentName, kind: &str, value: &str) -> Result<(String, String)> {
    let sealed = keyring
        .seal(value, &aad(resident, kind))
        .map_err(|_| Error::internal(std::io::Error::other("sealing personal data failed")))?;
    Ok((sealed, keyring.lookup_hash(kind, value)))
}

/// A resident's ID number and phone as sent, checked.
struct Personal {
    id_number: Option<IdNumber>,
    phone: Option<Phone>,
}

impl Grids {
    /// The masked (or, with `full`, opened) wire form of a resident.
    fn resident_to_wire(&self, r: &ResidentRecord, full: bool) -> Result<Resident> {
        let open = |sealed: &str, kind: &str, mask: fn(&str) -> String| -> Result<String> {
            if sealed.is_empty() {
                return Ok(String::new());
            }
            let plain = self.keyring.open(sealed, &aad(&r.name, kind)).map_err(|e| {
                tracing::error!(resident = %r.name, kind, error = %e, "a sealed value does not open");
                Error::internal(std::io::Error::other("a resident's protected data could not be read"))
            })?;
            Ok(if full { plain } else { mask(&plain) })
        };
        Ok(Resident {
            name: r.name.to_string(),
            display_name: r.display_name.clone(),
            id_number: open(&r.id_number_sealed, ID_NUMBER, mask_id_number)?,
            phone: open(&r.phone_sealed, PHONE, mask_phone)?,
            birth_date: r.birth_date.clone(),
            tags: r.tags.clone(),
            consent_note: r.consent_note.clone(),
            user: r.user.clone(),
            full_view: full,
            etag: etag(r.version),
            create_time: Some(time::to_timestamp(r.created)),
            update_time: Some(time::to_timestamp(r.updated)),
        })
    }

    /// Seals a value for `resident`'s column `kind`: the sealed text and its look-up hash.
    pub(crate) fn seal_for(&self, resident: &ResidentName, kind: &str, value: &str) -> Result<(String, String)> {
        seal(&self.keyring, resident, kind, value)
    }

    /// A request with its ID number and phone replaced by their look-up hashes: what the
    /// idempotency key fingerprints.
    fn fingerprint(&self, resident: &mut Resident) {
        for (kind, value) in [(ID_NUMBER, &mut resident.id_number), (PHONE, &mut resident.phone)] {
            if !value.is_empty() {
                *value = self.keyring.lookup_hash(kind, value);
            }
        }
    }

    /// Reads a household the caller reaches as staff (`staff`) or may see; anything else is
    /// PERMISSION_DENIED whether or not it exists.
    async fn household_for(&self, reach: &Reach, name: &HouseholdName, staff: bool) -> Result<HouseholdRecord> {
        if !reach.is_staff() && (staff || !reach.households.iter().any(|h| h == name.id().as_str())) {
            return Err(denied());
        }
        let found = store::get_household(self.writer.db().reader(), name).await?;
        match found {
            Some(h)
                if (staff && reach.staff_reaches(&h.place))
                    || (!staff && reach.sees_household(name.id().as_str(), &h.place)) =>
            {
                Ok(h)
            }
            None if reach.street => Err(Error::not_found(name.to_string())),
            _ => Err(denied()),
        }
    }

    /// Recomputes a household's tags and resident count after its residents changed, with the
    /// event when the tags did.
    pub(crate) async fn retag(
        &self,
        c: &mut Change,
        household: &HouseholdName,
        now: chrono::DateTime<Utc>,
    ) -> Result<()> {
        let mut h = store::get_household(&mut **c.tx(), household)
            .await?
            .ok_or_else(|| Error::not_found(household.to_string()))?;
        let (tags, count) = store::household_tags(c.tx(), household).await?;
        let changed = tags != h.tags;
        h.tags = tags;
        h.resident_count = count;
        h.version += 1;
        h.updated = now;
        store::save_household(c.tx(), &h).await?;
        if changed {
            c.emit(&household.to_string(), &super::tags_changed(&h, now)).await?;
            c.emit(&household.to_string(), &super::household_changed(&h, &self.policy, now)).await?;
        }
        Ok(())
    }

    /// The place of a location, and whether the caller may put a household there.
    async fn place_for(&self, reach: &Reach, street: &StreetId, longitude: f64, latitude: f64) -> Result<Place> {
        let map = self.maps.of(self.writer.db().reader(), street).await?;
        let place = map.place(longitude, latitude);
        let allowed =
            if place.grid.is_empty() { reach.street && reach.is_staff() } else { reach.staff_reaches(&place) };
        if allowed { Ok(place) } else { Err(denied()) }
    }
}

/// A resident's ID number and phone and its other fields, checked (`field` is the message's).
fn personal(v: &mut Violations, field: &str, r: &Resident) -> Personal {
    let id_number = (!r.id_number.is_empty())
        .then(|| IdNumber::parse(&r.id_number).map_err(|why| v.add(format!("{field}.id_number"), why)).ok())
        .flatten();
    let phone = (!r.phone.is_empty())
        .then(|| Phone::parse(&r.phone).map_err(|why| v.add(format!("{field}.phone"), why)).ok())
        .flatten();
    Personal { id_number, phone }
}

/// The birth date: the ID number's, or the one sent (which must then agree with it).
fn birth_date(v: &mut Violations, field: &str, sent: &str, id_number: Option<&IdNumber>) -> String {
    let sent_date = if sent.is_empty() { None } else { v.check(parse_date(&format!("{field}.birth_date"), sent)) };
    match (id_number.map(IdNumber::birth_date), sent_date) {
        (Some(from_id), Some(given)) if from_id != given => {
            v.add(format!("{field}.birth_date"), "does not match the ID number's birth date");
            String::new()
        }
        (Some(from_id), _) => from_id.to_string(),
        (None, Some(given)) => given.to_string(),
        (None, None) => String::new(),
    }
}

fn optional_user(v: &mut Violations, field: &str, user: &str) -> String {
    if user.is_empty() {
        String::new()
    } else {
        v.check(UserName::parse(field, user)).map(|u| u.to_string()).unwrap_or_default()
    }
}

async fn insert_access(
    tx: &mut Tx,
    reader: &str,
    role: Role,
    resident: &ResidentName,
    reason: &str,
) -> Result<AccessRecordName> {
    let name = AccessRecordName::new(resident.household().street().clone(), Id::generate('a'));
    let resident = resident.to_string();
    let at = time::now_text();
    let entry = store::AccessEntry { reader, role: role.as_str(), resident: &resident, reason, at: &at };
    store::insert_access(tx, &name, &entry).await?;
    Ok(name)
}

#[tonic::async_trait]
impl RosterService for Grids {
    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_household(&self, request: Request<CreateHouseholdRequest>) -> Result<Response<Household>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let (_, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() {
            return Err(denied().into());
        }
        let draft = req.household.clone().unwrap_or_default();
        let mut v = Violations::new();
        let address = v.check(required("household.address", &draft.address));
        let location = v.check(check_point("household.location", draft.location.as_ref()));
        v.finish()?;
        let (Some(address), Some((longitude, latitude))) = (address, location) else {
            return Err(Error::invalid("household", "is incomplete").into());
        };
        let place = self.place_for(&reach, &street, longitude, latitude).await?;
        let key = RequestKey::new(caller.key(), "CreateHousehold", &req.request_id, &req)?;
        let now = Utc::now();
        let record = HouseholdRecord {
            name: HouseholdName::new(street, Id::generate('h')),
            building: draft.building.trim().to_owned(),
            address,
            latitude,
            longitude,
            place,
            tags: Vec::new(),
            resident_count: 0,
            last_visit: None,
            version: 1,
            created: now,
            updated: now,
        };
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                store::insert_household(c.tx(), &record).await?;
                c.emit(&record.name.to_string(), &super::household_changed(&record, &self.policy, now)).await?;
                Ok(household_to_wire(&record))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_household(&self, request: Request<GetHouseholdRequest>) -> Result<Response<Household>, Status> {
        let caller = self.caller(&request)?;
        let name = HouseholdName::parse("name", &request.get_ref().name)?;
        let (_, reach) = self.reach(&caller, name.street()).await?;
        let household = self.household_for(&reach, &name, false).await?;
        Ok(Response::new(household_to_wire(&household)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_households(
        &self,
        request: Request<ListHouseholdsRequest>,
    ) -> Result<Response<ListHouseholdsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 100, 500)?;
        let mut list_filter = HouseholdFilter::default();
        for term in filter::parse(&req.filter, &["grid", "community", "tag"])? {
            match term.field.as_str() {
                "grid" => {
                    let grid = GridName::parse("filter", &term.value)?;
                    if grid.street() != &street {
                        return Err(Error::invalid("filter", "names a grid of another street").into());
                    }
                    if !list_filter.community.is_empty() && list_filter.community != grid.community_id().as_str() {
                        return Err(Error::invalid("filter", "the grid is not in the community").into());
                    }
                    list_filter.community = grid.community_id().to_string();
                    list_filter.grid = grid.id().to_string();
                }
                "community" => {
                    let community = crate::domain::CommunityName::parse("filter", &term.value)?;
                    if community.street() != &street {
                        return Err(Error::invalid("filter", "names a community of another street").into());
                    }
                    if !list_filter.community.is_empty() && list_filter.community != community.id().as_str() {
                        return Err(Error::invalid("filter", "the grid is not in the community").into());
                    }
                    list_filter.community = community.id().to_string();
                }
                _ => {
                    self.tags.check(&street, "filter", std::slice::from_ref(&term.value))?;
                    list_filter.tag = term.value;
                }
            }
        }
        let (_, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() && reach.households.is_empty() {
            return Err(denied().into());
        }
        let scope = Scope {
            street: reach.street,
            communities: reach.communities.clone(),
            grids: reach.grids.clone(),
            households: reach.households.clone(),
        };
        let query = format!(
            "ListHouseholds|{street}|{}|{}|{}|{}",
            list_filter.community,
            list_filter.grid,
            list_filter.tag,
            caller.key()
        );
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let mut rows =
            store::list_households(self.writer.db().reader(), &street, &list_filter, &scope, &after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |h| vec![h.name.id().to_string()]);
        Ok(Response::new(ListHouseholdsResponse {
            households: rows.iter().map(household_to_wire).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().household.as_ref().map(|h| h.name.as_str()).unwrap_or_default()))]
    async fn update_household(&self, request: Request<UpdateHouseholdRequest>) -> Result<Response<Household>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let sent = req.household.clone().unwrap_or_default();
        let name = HouseholdName::parse("household.name", &sent.name)?;
        let (_, reach) = self.reach(&caller, name.street()).await?;
        self.household_for(&reach, &name, true).await?;
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "name the fields to change").into());
        }
        let mut v = Violations::new();
        let (mut building, mut address, mut location) = (None, None, None);
        for path in &paths {
            match path.as_str() {
                "building" => building = Some(sent.building.trim().to_owned()),
                "address" => address = v.check(required("household.address", &sent.address)),
                "location" => location = v.check(check_point("household.location", sent.location.as_ref())),
                other => v.add("update_mask", format!("`{other}` cannot be changed; use building, address, location")),
            }
        }
        v.finish()?;
        let place = match location {
            Some((longitude, latitude)) => Some(self.place_for(&reach, name.street(), longitude, latitude).await?),
            None => None,
        };
        let key = RequestKey::new(caller.key(), "UpdateHousehold", &req.request_id, &req)?;
        let now = Utc::now();
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let mut h = store::get_household(&mut **c.tx(), &name)
                    .await?
                    .ok_or_else(|| Error::not_found(name.to_string()))?;
                check_etag(&sent.etag, h.version, &name.to_string())?;
                if let Some(building) = building.clone() {
                    h.building = building;
                }
                if let Some(address) = address.clone() {
                    h.address = address;
                }
                if let (Some((longitude, latitude)), Some(place)) = (location, place.clone()) {
                    h.longitude = longitude;
                    h.latitude = latitude;
                    h.place = place;
                }
                h.version += 1;
                h.updated = now;
                store::save_household(c.tx(), &h).await?;
                if location.is_some() {
                    c.emit(&name.to_string(), &super::household_changed(&h, &self.policy, now)).await?;
                }
                Ok(household_to_wire(&h))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(household = %request.get_ref().household))]
    async fn get_contact_card(&self, request: Request<GetContactCardRequest>) -> Result<Response<ContactCard>, Status> {
        let caller = self.caller(&request)?;
        let name = HouseholdName::parse("household", &request.get_ref().household)?;
        let (_, reach) = self.reach(&caller, name.street()).await?;
        let household = self.household_for(&reach, &name, false).await?;
        let mut card = ContactCard { household: name.to_string(), ..Default::default() };
        if household.place.community.is_empty() {
            return Ok(Response::new(card));
        }
        let pool = self.writer.db().reader();
        let community = crate::domain::CommunityName::new(
            name.street().clone(),
            Id::parse("community", &household.place.community)?,
        );
        if let Some(c) = store::get_community(pool, &community).await? {
            card.community = community.to_string();
            card.community_display_name = c.display_name;
            card.community_office = c.office;
            card.community_contacts = c.contacts;
        }
        let grid = GridName::new(&community, Id::parse("grid", &household.place.grid)?);
        if let Some(g) = store::get_grid(pool, &grid).await? {
            card.grid = grid.to_string();
            card.grid_display_name = g.display_name.clone();
            card.grid_workers = g
                .workers
                .iter()
                .map(|a| StaffContact {
                    role: "网格员".into(),
                    display_name: a.display_name.clone(),
                    phone: a.phone.clone(),
                    user: a.worker.clone(),
                })
                .collect();
            let today = crate::domain::local_date(Utc::now());
            for cover in g.covers.iter().filter(|c| c.start <= today && today <= c.end) {
                card.grid_workers.push(StaffContact {
                    role: format!("代班网格员（至 {}）", cover.end),
                    display_name: String::new(),
                    phone: String::new(),
                    user: cover.worker.clone(),
                });
            }
        }
        card.stations = store::list_stations(pool, name.street(), &household.place.community, "", 50)
            .await?
            .into_iter()
            .map(|(_, _, s)| s)
            .collect();
        Ok(Response::new(card))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_resident(&self, request: Request<CreateResidentRequest>) -> Result<Response<Resident>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let household = HouseholdName::parse("parent", &req.parent)?;
        let (_, reach) = self.reach(&caller, household.street()).await?;
        self.household_for(&reach, &household, true).await?;
        let draft = req.resident.clone().unwrap_or_default();
        let mut v = Violations::new();
        let display_name = v.check(required("resident.display_name", &draft.display_name));
        let personal = personal(&mut v, "resident", &draft);
        let birth = birth_date(&mut v, "resident", &draft.birth_date, personal.id_number.as_ref());
        let tags = v.check(self.tags.check(household.street(), "resident.tags", &draft.tags));
        let user = optional_user(&mut v, "resident.user", &draft.user);
        v.finish()?;
        let (Some(display_name), Some(tags)) = (display_name, tags) else {
            return Err(Error::invalid("resident", "is incomplete").into());
        };
        let mut fingerprint = req.clone();
        if let Some(r) = fingerprint.resident.as_mut() {
            self.fingerprint(r);
        }
        let key = RequestKey::new(caller.key(), "CreateResident", &req.request_id, &fingerprint)?;
        let name = ResidentName::new(household.clone(), Id::generate('r'));
        let (id_number_sealed, id_number_hash) = match &personal.id_number {
            Some(id) => self.seal_for(&name, ID_NUMBER, id.as_str())?,
            None => Default::default(),
        };
        let (phone_sealed, phone_hash) = match &personal.phone {
            Some(p) => self.seal_for(&name, PHONE, p.as_str())?,
            None => Default::default(),
        };
        let now = Utc::now();
        let record = ResidentRecord {
            name,
            display_name,
            id_number_sealed,
            id_number_hash,
            phone_sealed,
            phone_hash,
            birth_date: birth,
            tags,
            consent_note: draft.consent_note.trim().to_owned(),
            user,
            version: 1,
            created: now,
            updated: now,
        };
        let answer = self.resident_to_wire(&record, false)?;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                store::insert_resident(c.tx(), &record).await?;
                self.retag(c, &household, now).await?;
                Ok(answer.clone())
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_resident(&self, request: Request<GetResidentRequest>) -> Result<Response<Resident>, Status> {
        let caller = self.caller(&request)?;
        let name = ResidentName::parse("name", &request.get_ref().name)?;
        let (_, reach) = self.reach(&caller, name.household().street()).await?;
        self.household_for(&reach, name.household(), false).await?;
        let resident = store::get_resident(self.writer.db().reader(), &name)
            .await?
            .ok_or_else(|| if reach.is_staff() { Error::not_found(name.to_string()) } else { denied() })?;
        Ok(Response::new(self.resident_to_wire(&resident, false)?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn reveal_resident(&self, request: Request<RevealResidentRequest>) -> Result<Response<Resident>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ResidentName::parse("name", &req.name)?;
        let (principal, reach) = self.reach(&caller, name.household().street()).await?;
        let role = reach.staff_role.ok_or_else(denied)?;
        let reason = req.reason.trim().to_owned();
        if reason.chars().count() < 4 {
            return Err(Error::invalid(
                "reason",
                "say why the full ID number and phone are needed (4 to 500 characters)",
            )
            .into());
        }
        self.household_for(&reach, name.household(), true).await?;
        let resident = store::get_resident(self.writer.db().reader(), &name)
            .await?
            .ok_or_else(|| Error::not_found(name.to_string()))?;
        let answer = self.resident_to_wire(&resident, true)?;
        let reader = principal.resource_name();
        // The read is logged before the values are answered: no full read goes unrecorded.
        let logged = self
            .writer
            .write(&RequestKey::unkeyed("RevealResident"), async |c: &mut Change| {
                let record = insert_access(c.tx(), &reader, role, &name, &reason).await?;
                Ok(AccessRecord { name: record.to_string(), ..Default::default() })
            })
            .await?;
        tracing::info!(resident = %name, access_record = %logged.name, role = role.as_str(), "full view of a resident");
        Ok(Response::new(answer))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_residents(
        &self,
        request: Request<ListResidentsRequest>,
    ) -> Result<Response<ListResidentsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let household = HouseholdName::parse("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 50, 100)?;
        let (_, reach) = self.reach(&caller, household.street()).await?;
        self.household_for(&reach, &household, false).await?;
        let query = format!("ListResidents|{household}");
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let mut rows = store::list_residents(self.writer.db().reader(), &household, &after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |r| vec![r.name.id().to_string()]);
        let residents = rows.iter().map(|r| self.resident_to_wire(r, false)).collect::<Result<Vec<_>>>()?;
        Ok(Response::new(ListResidentsResponse { residents, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().resident.as_ref().map(|r| r.name.as_str()).unwrap_or_default()))]
    async fn update_resident(&self, request: Request<UpdateResidentRequest>) -> Result<Response<Resident>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let sent = req.resident.clone().unwrap_or_default();
        let name = ResidentName::parse("resident.name", &sent.name)?;
        let street = name.household().street().clone();
        let (_, reach) = self.reach(&caller, &street).await?;
        self.household_for(&reach, name.household(), true).await?;
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "name the fields to change").into());
        }
        let mut v = Violations::new();
        let personal = personal(&mut v, "resident", &sent);
        let mut display_name = None;
        let mut tags = None;
        let mut birth = None;
        let mut user = None;
        let mut consent = None;
        let mut id_number = None;
        let mut phone = None;
        for path in &paths {
            match path.as_str() {
                "display_name" => display_name = v.check(required("resident.display_name", &sent.display_name)),
                "id_number" => id_number = Some(personal.id_number.clone()),
                "phone" => phone = Some(personal.phone.clone()),
                "birth_date" => {
                    birth = Some(birth_date(&mut v, "resident", &sent.birth_date, personal.id_number.as_ref()))
                }
                "tags" => tags = v.check(self.tags.check(&street, "resident.tags", &sent.tags)),
                "consent_note" => consent = Some(sent.consent_note.trim().to_owned()),
                "user" => user = Some(optional_user(&mut v, "resident.user", &sent.user)),
                other => v.add(
                    "update_mask",
                    format!(
                        "`{other}` cannot be changed; use display_name, id_number, phone, birth_date, tags, consent_note, user"
                    ),
                ),
            }
        }
        v.finish()?;
        let mut fingerprint = req.clone();
        if let Some(r) = fingerprint.resident.as_mut() {
            self.fingerprint(r);
        }
        let key = RequestKey::new(caller.key(), "UpdateResident", &req.request_id, &fingerprint)?;
        let now = Utc::now();
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let mut r = store::get_resident(&mut **c.tx(), &name)
                    .await?
                    .ok_or_else(|| Error::not_found(name.to_string()))?;
                check_etag(&sent.etag, r.version, &name.to_string())?;
                let tags_before = r.tags.clone();
                if let Some(d) = display_name.clone() {
                    r.display_name = d;
                }
                if let Some(id) = &id_number {
                    (r.id_number_sealed, r.id_number_hash) = match id {
                        Some(id) => {
                            if birth.is_none() {
                                r.birth_date = id.birth_date().to_string();
                            }
                            self.seal_for(&name, ID_NUMBER, id.as_str())?
                        }
                        None => Default::default(),
                    };
                }
                if let Some(p) = &phone {
                    (r.phone_sealed, r.phone_hash) = match p {
                        Some(p) => self.seal_for(&name, PHONE, p.as_str())?,
                        None => Default::default(),
                    };
                }
                if let Some(b) = birth.clone() {
                    r.birth_date = b;
                }
                if let Some(t) = tags.clone() {
                    r.tags = t;
                }
                if let Some(cn) = consent.clone() {
                    r.consent_note = cn;
                }
                if let Some(u) = user.clone() {
                    r.user = u;
                }
                r.version += 1;
                r.updated = now;
                store::save_resident(c.tx(), &r).await?;
                if r.tags != tags_before {
                    self.retag(c, name.household(), now).await?;
                }
                self.resident_to_wire(&r, false)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn delete_resident(
        &self,
        request: Request<DeleteResidentRequest>,
    ) -> Result<Response<pbjson_types::Empty>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ResidentName::parse("name", &req.name)?;
        let (_, reach) = self.reach(&caller, name.household().street()).await?;
        self.household_for(&reach, name.household(), true).await?;
        let key = RequestKey::new(caller.key(), "DeleteResident", &req.request_id, &req)?;
        let now = Utc::now();
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let r = store::get_resident(&mut **c.tx(), &name)
                    .await?
                    .ok_or_else(|| Error::not_found(name.to_string()))?;
                check_etag(&req.etag, r.version, &name.to_string())?;
                store::remove_resident(c.tx(), &name, &time::to_text(now)).await?;
                self.retag(c, name.household(), now).await?;
                Ok(pbjson_types::Empty {})
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn find_residents(
        &self,
        request: Request<FindResidentsRequest>,
    ) -> Result<Response<FindResidentsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let (_, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() {
            return Err(denied().into());
        }
        let (lookup, hash) = match (req.id_number.is_empty(), req.phone.is_empty()) {
            (false, true) => {
                let id = IdNumber::parse(&req.id_number).map_err(|why| Error::invalid("id_number", why))?;
                (Lookup::IdNumber, self.keyring.lookup_hash(ID_NUMBER, id.as_str()))
            }
            (true, false) => {
                let phone = Phone::parse(&req.phone).map_err(|why| Error::invalid("phone", why))?;
                (Lookup::Phone, self.keyring.lookup_hash(PHONE, phone.as_str()))
            }
            _ => return Err(Error::invalid("id_number", "give exactly one of id_number and phone").into()),
        };
        let mut residents = Vec::new();
        for r in store::find_residents(self.writer.db().reader(), &street, lookup, &hash).await? {
            if residents.len() == MAX_FOUND {
                break;
            }
            let Some(h) = store::get_household(self.writer.db().reader(), r.name.household()).await? else { continue };
            if reach.staff_reaches(&h.place) {
                residents.push(self.resident_to_wire(&r, false)?);
            }
        }
        Ok(Response::new(FindResidentsResponse { residents }))
    }

    #[tracing::instrument(skip_all)]
    async fn import_roster(
        &self,
        request: Request<tonic::Streaming<ImportRosterRequest>>,
    ) -> Result<Response<ImportRosterResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(self.import(&caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_access_records(
        &self,
        request: Request<ListAccessRecordsRequest>,
    ) -> Result<Response<ListAccessRecordsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        require_admin(&caller, &street)?;
        let size = page::page_size(req.page_size, 100, 500)?;
        let query = format!("ListAccessRecords|{street}");
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let mut rows = store::list_access(self.writer.db().reader(), &street, after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |r| vec![r.5.clone(), r.0.clone()]);
        let access_records = rows
            .into_iter()
            .map(|(id, reader, role, resident, reason, at)| AccessRecord {
                name: format!("streets/{street}/accessRecords/{id}"),
                reader,
                role,
                resident,
                reason,
                access_time: time::text_to_timestamp(&at),
            })
            .collect();
        Ok(Response::new(ListAccessRecordsResponse { access_records, next_page_token }))
    }
}

fn require_admin(caller: &Caller, street: &StreetId) -> Result<()> {
    caller.require_role_in(street.as_str(), &[Role::Admin]).map(|_| ()).map_err(|e| match e.code() {
        tonic::Code::Unauthenticated => e,
        _ => denied(),
    })
}
