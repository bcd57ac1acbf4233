//! ImportRoster: a roster file's rows, streamed, checked whole before anything is written, then
//! written in one transaction — households matched by building and address, residents by their
//! ID number's look-up hash (or by name, without one) — so a file imports once, all of it or
//! (with `skip_bad_rows`) all of its good rows, and importing it again changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{Id, StreetId};
use civic_kit::write::Change;
use civic_proto::grid::{ImportRosterRequest, ImportRosterResponse, RosterRow, RowError};
use tonic::Streaming;

use super::check_point;
use super::roster::{ID_NUMBER, PHONE, seal};
use crate::Grids;
use crate::domain::{CommunityName, HouseholdName, Place, ResidentName, TagSets, parse_date};
use crate::map::StreetMap;
use crate::protect::{IdNumber, Keyring, Phone};
use crate::store::{self, HouseholdRecord, ResidentRecord};

/// The most rows one import takes.
const MAX_ROWS: usize = 200_000;
/// The most row errors an answer lists.
const MAX_ERRORS: usize = 1000;

/// A row that passed every check.
struct GoodRow {
    building: String,
    address: String,
    longitude: f64,
    latitude: f64,
    place: Place,
    display_name: String,
    id_number: Option<IdNumber>,
    phone: Option<Phone>,
    birth_date: String,
    tags: Vec<String>,
    consent_note: String,
}

/// Checks one row: the first fault found, as a field and a reason.
fn check_row(
    row: &RosterRow,
    street: &StreetId,
    community: &str,
    map: &StreetMap,
    tags: &TagSets,
) -> std::result::Result<GoodRow, (String, String)> {
    let fault = |field: &str, reason: &str| (field.to_owned(), reason.to_owned());
    let address = row.address.trim();
    if address.is_empty() {
        return Err(fault("address", "is required"));
    }
    let (longitude, latitude) = check_point("location", row.location.as_ref())
        .map_err(|_| fault("location", "must be a point: latitude -90 to 90, longitude -180 to 180"))?;
    let place = map.place(longitude, latitude);
    if place.community != community {
        return Err(fault("location", "lies outside every grid of the community"));
    }
    let display_name = row.display_name.trim();
    if display_name.is_empty() {
        return Err(fault("display_name", "is required"));
    }
    let id_number = match row.id_number.trim() {
        "" => None,
        text => Some(IdNumber::parse(text).map_err(|why| fault("id_number", why))?),
    };
    let phone = match row.phone.trim() {
        "" => None,
        text => Some(Phone::parse(text).map_err(|why| fault("phone", why))?),
    };
    let birth_date = match (&id_number, row.birth_date.trim()) {
        (Some(id), _) => id.birth_date().to_string(),
        (None, "") => String::new(),
        (None, text) => {
            parse_date("birth_date", text).map_err(|_| fault("birth_date", "must be a date, YYYY-MM-DD"))?.to_string()
        }
    };
    let tags = tags.check(street, "tags", &row.tags).map_err(|e| {
        let v = e.violations().first().map(|v| (v.field.clone(), v.description.clone()));
        v.unwrap_or_else(|| fault("tags", "holds an unknown tag"))
    })?;
    Ok(GoodRow {
        building: row.building.trim().to_owned(),
        address: address.to_owned(),
        longitude,
        latitude,
        place,
        display_name: display_name.to_owned(),
        id_number,
        phone,
        birth_date,
        tags,
        consent_note: row.consent_note.trim().to_owned(),
    })
}

/// What the import will write: new households, new residents (sealed), and the households
/// whose residents change.
#[derive(Default)]
struct Plan {
    /// New households, their tags and resident counts already those of their new residents.
    households: Vec<HouseholdRecord>,
    residents: Vec<ResidentRecord>,
    /// Households on the roster before that gain residents: their tags are counted again in
    /// the transaction.
    touched: Vec<HouseholdName>,
    unchanged: i64,
}

/// Matches the good rows against the roster as it is and seals what is new (CPU work: run off
/// the runtime's workers).
fn plan(
    street: &StreetId,
    rows: Vec<GoodRow>,
    existing_households: HashMap<(String, String), String>,
    existing_residents: (HashSet<String>, HashSet<(String, String)>),
    keyring: &Keyring,
) -> Result<Plan> {
    let now = Utc::now();
    let (mut by_id, mut by_name) = existing_residents;
    let mut households = existing_households;
    let mut plan = Plan::default();
    let mut touched = HashSet::new();
    // The new households by id: their place in `plan.households`.
    let mut new_households: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let key = (row.building.clone(), row.address.clone());
        let household_id = match households.get(&key) {
            Some(id) => id.clone(),
            None => {
                let id = Id::generate('h');
                plan.households.push(HouseholdRecord {
                    name: HouseholdName::new(street.clone(), id.clone()),
                    building: row.building.clone(),
                    address: row.address.clone(),
                    latitude: row.latitude,
                    longitude: row.longitude,
                    place: row.place.clone(),
                    tags: Vec::new(),
                    resident_count: 0,
                    last_visit: None,
                    version: 1,
                    created: now,
                    updated: now,
                });
                households.insert(key, id.to_string());
                new_households.insert(id.to_string(), plan.households.len() - 1);
                id.to_string()
            }
        };
        let id_hash = row.id_number.as_ref().map(|id| keyring.lookup_hash(ID_NUMBER, id.as_str()));
        let known = match &id_hash {
            Some(hash) => !by_id.insert(hash.clone()),
            None => !by_name.insert((household_id.clone(), row.display_name.clone())),
        };
        if known {
            plan.unchanged += 1;
            continue;
        }
        let household = HouseholdName::new(street.clone(), Id::parse("household", &household_id)?);
        let name = ResidentName::new(household.clone(), Id::generate('r'));
        let (id_number_sealed, id_number_hash) = match &row.id_number {
            Some(id) => seal(keyring, &name, ID_NUMBER, id.as_str())?,
            None => Default::default(),
        };
        let (phone_sealed, phone_hash) = match &row.phone {
            Some(p) => seal(keyring, &name, PHONE, p.as_str())?,
            None => Default::default(),
        };
        if let Some(&at) = new_households.get(&household_id) {
            let h = &mut plan.households[at];
            h.resident_count += 1;
            for tag in &row.tags {
                if !h.tags.contains(tag) {
                    h.tags.push(tag.clone());
                    h.tags.sort();
                }
            }
        } else if touched.insert(household_id.clone()) {
            plan.touched.push(household.clone());
        }
        plan.residents.push(ResidentRecord {
            name,
            display_name: row.display_name,
            id_number_sealed,
            id_number_hash,
            phone_sealed,
            phone_hash,
            birth_date: row.birth_date,
            tags: row.tags,
            consent_note: row.consent_note,
            user: String::new(),
            version: 1,
            created: now,
            updated: now,
        });
    }
    Ok(plan)
}

impl Grids {
    /// Runs an import from its stream.
    pub(crate) async fn import(
        &self,
        caller: &civic_kit::auth::Caller,
        mut stream: Streaming<ImportRosterRequest>,
    ) -> std::result::Result<ImportRosterResponse, tonic::Status> {
        let first = stream.message().await?.ok_or_else(|| Error::invalid("parent", "send at least one message"))?;
        let street = StreetId::parse_parent("parent", &first.parent)?;
        let community = CommunityName::parse("community", &first.community)?;
        if community.street() != &street {
            return Err(Error::invalid("community", "must be a community of the street").into());
        }
        self.may_draw(caller, &community).await?;
        let skip = first.skip_bad_rows;
        let mut rows = first.rows;
        while let Some(next) = stream.message().await? {
            if next.parent != first.parent || next.community != first.community || next.skip_bad_rows != skip {
                let why = "every message of an import names the same street, community and mode";
                return Err(Error::invalid("parent", why).into());
            }
            if rows.len() + next.rows.len() > MAX_ROWS {
                let why = format!("an import takes at most {MAX_ROWS} rows; split the file");
                return Err(Error::invalid("rows", why).into());
            }
            rows.extend(next.rows);
        }
        let received = rows.len() as i64;
        let map = self.maps.of(self.writer.db().reader(), &street).await?;
        let tags = self.tags.clone();
        let (checked_street, community_id) = (street.clone(), community.id().to_string());
        // Checking a hundred thousand rows is CPU work: off the runtime's workers.
        let (good, errors) = tokio::task::spawn_blocking(move || {
            let mut good = Vec::with_capacity(rows.len());
            let mut errors = Vec::new();
            for row in &rows {
                match check_row(row, &checked_street, &community_id, &map, &tags) {
                    Ok(g) => good.push(g),
                    Err((field, reason)) => errors.push(RowError { row_number: row.row_number, field, reason }),
                }
            }
            (good, errors)
        })
        .await
        .map_err(Error::internal)?;
        let bad_rows = errors.len() as i64;
        let mut answer = ImportRosterResponse {
            rows: received,
            bad_rows,
            errors: errors.into_iter().take(MAX_ERRORS).collect(),
            ..Default::default()
        };
        if bad_rows > 0 && !skip {
            return Ok(answer);
        }
        let pool = self.writer.db().reader();
        let existing_households = store::household_keys(pool, &street).await?;
        let existing_residents = store::resident_keys(pool, &street).await?;
        let keyring = Arc::clone(&self.keyring);
        let plan_street = street.clone();
        let plan = tokio::task::spawn_blocking(move || {
            plan(&plan_street, good, existing_households, existing_residents, &keyring)
        })
        .await
        .map_err(Error::internal)??;
        let now = Utc::now();
        let plan = &plan;
        self.writer
            .write(&RequestKey::unkeyed("ImportRoster"), async |c: &mut Change| {
                for h in &plan.households {
                    store::insert_household(c.tx(), h).await?;
                    if !h.tags.is_empty() {
                        c.emit(&h.name.to_string(), &super::tags_changed(h, now)).await?;
                    }
                    c.emit(&h.name.to_string(), &super::household_changed(h, &self.policy, now)).await?;
                }
                for r in &plan.residents {
                    store::insert_resident(c.tx(), r).await?;
                }
                for household in &plan.touched {
                    self.retag(c, household, now).await?;
                }
                Ok(pbjson_types::Empty {})
            })
            .await?;
        tracing::info!(
            street = %street,
            rows = received,
            bad_rows,
            households = plan.households.len(),
            residents = plan.residents.len(),
            "roster imported"
        );
        answer.imported = true;
        answer.households_created = plan.households.len() as i64;
        answer.residents_created = plan.residents.len() as i64;
        answer.unchanged = plan.unchanged;
        Ok(answer)
    }
}
