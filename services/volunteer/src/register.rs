//! The register of volunteers: checking a registration, and its table (the registration kept as
//! its `Volunteer` message, with columns for what lists filter on).

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveTime};
use civic_kit::db::{Tx, exists_on};
use civic_kit::error::{Error, Result, Violations};
use civic_kit::names::{Collection, Id, Name, StreetId};
use civic_proto::volunteer::Volunteer;
use civic_proto::volunteer::volunteer::Kind;
use prost::Message;

/// The `volunteers` collection of a street.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VolunteersCollection;

impl Collection for VolunteersCollection {
    const COLLECTION: &'static str = "volunteers";
}

/// A volunteer's name, `streets/{street}/volunteers/{volunteer}`.
pub type VolunteerName = Name<VolunteersCollection>;

/// A registration as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its name.
    pub name: VolunteerName,
    /// The registration (its `name`, `etag` and times filled from the record on the way out).
    pub volunteer: Volunteer,
    /// Bumped by every change.
    pub version: i64,
}

impl Record {
    /// The community id of its `community`.
    pub fn community_id(&self) -> &str {
        community_id(&self.volunteer.community)
    }
}

/// The community id of a `streets/{street}/communities/{community}` name (empty for another shape).
pub fn community_id(community: &str) -> &str {
    let parts: Vec<&str> = community.split('/').collect();
    match parts.as_slice() {
        ["streets", _, "communities", id] => id,
        _ => "",
    }
}

/// The volunteer name of a person (`users/{user}`) in the street `street` (an id): a
/// volunteer's id is their user id.
pub fn volunteer_of(street: &str, user: &str) -> String {
    format!("streets/{street}/volunteers/{}", user.trim_start_matches("users/"))
}

/// The street's rules for registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    /// The skills, by id, with their names.
    pub skills: BTreeMap<String, String>,
    /// The hours cap of a volunteer who sets none.
    pub default_cap: i32,
}

/// Checks the fields of `v` a registration sets (`fields`: all of them, or an update's mask),
/// in `street`, reporting every problem under `prefix` (`volunteer.`).
pub fn check(v: &Volunteer, street: &StreetId, fields: &[&str], vocabulary: &Vocabulary) -> Result<()> {
    let mut bad = Violations::new();
    let has = |f: &str| fields.contains(&f);
    if has("display_name") && v.display_name.trim().is_empty() {
        bad.add("volunteer.display_name", "is required");
    }
    if has("kind") && v.kind() == Kind::Unspecified {
        bad.add(
            "volunteer.kind",
            "is required: IN_SERVICE_PARTY_MEMBER, SENIOR_PARTY_MEMBER, RESIDENT or ORGANISATION_MEMBER",
        );
    }
    if has("community") {
        let id = community_id(&v.community);
        let street_of = v.community.split('/').nth(1).unwrap_or_default();
        if id.is_empty() || !civic_kit::names::is_valid_id(id) || street_of != street.as_str() {
            bad.add(
                "volunteer.community",
                "must be a community of the street: streets/{street}/communities/{community}",
            );
        }
    }
    if has("registration_date")
        && !v.registration_date.is_empty()
        && NaiveDate::parse_from_str(&v.registration_date, "%Y-%m-%d").is_err()
    {
        bad.add("volunteer.registration_date", "must be a date, YYYY-MM-DD");
    }
    if has("skills") {
        for skill in &v.skills {
            if !vocabulary.skills.contains_key(skill) {
                bad.add("volunteer.skills", format!("`{skill}` is not one of the street's skills"));
            }
        }
    }
    if has("availability") {
        for (n, range) in v.availability.iter().enumerate() {
            let (start, end) = (minutes(&range.start_time), minutes(&range.end_time));
            match (start, end) {
                (Some(s), Some(e)) if s < e => {}
                _ => bad.add(
                    format!("volunteer.availability[{n}]"),
                    "start_time and end_time are HH:MM, the end after the start (24:00 for midnight)",
                ),
            }
        }
    }
    if has("organisation") && !v.organisation.is_empty() {
        let parts = civic_kit::names::parse("volunteer.organisation", &v.organisation, &["streets", "organisations"]);
        if parts.map(|p| p[0] != street.as_str()).unwrap_or(true) {
            bad.add(
                "volunteer.organisation",
                "must be an organisation of the street: streets/{street}/organisations/{organisation}",
            );
        }
    }
    if has("monthly_hours_cap") && !(0..=200).contains(&v.monthly_hours_cap) {
        bad.add("volunteer.monthly_hours_cap", "must be 1 to 200 (0 for the street's default)");
    }
    bad.finish()
}

/// Minutes after midnight of `HH:MM` (`24:00` is 1440).
pub fn minutes(text: &str) -> Option<u16> {
    if text == "24:00" {
        return Some(1440);
    }
    let t = NaiveTime::parse_from_str(text, "%H:%M").ok()?;
    u16::try_from(t.signed_duration_since(NaiveTime::MIN).num_minutes()).ok()
}

/// The skills' column: each between bars.
fn skills_column(v: &Volunteer) -> String {
    if v.skills.is_empty() { String::new() } else { format!("|{}|", v.skills.join("|")) }
}

/// Inserts a new registration; an existing one of the same person is ALREADY_EXISTS.
pub async fn insert(tx: &mut Tx, record: &Record, now: &str) -> Result<()> {
    let v = &record.volunteer;
    sqlx::query(
        "insert into volunteers (street, volunteer_id, person, kind, state, community_id, skills, version, body,
             created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(record.name.street().as_str())
    .bind(record.name.id().as_str())
    .bind(&v.person)
    .bind(v.kind().as_str_name())
    .bind(v.state().as_str_name())
    .bind(record.community_id())
    .bind(skills_column(v))
    .bind(record.version)
    .bind(v.encode_to_vec())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| exists_on(e, "volunteers_pkey", &record.name))?;
    bump(tx, record.name.street()).await
}

/// Saves a changed registration (its version already bumped).
pub async fn save(tx: &mut Tx, record: &Record, now: &str) -> Result<()> {
    let v = &record.volunteer;
    sqlx::query(
        "update volunteers set kind = $3, state = $4, community_id = $5, skills = $6, version = $7, body = $8,
             updated_at = $9
         where street = $1 and volunteer_id = $2",
    )
    .bind(record.name.street().as_str())
    .bind(record.name.id().as_str())
    .bind(v.kind().as_str_name())
    .bind(v.state().as_str_name())
    .bind(record.community_id())
    .bind(skills_column(v))
    .bind(record.version)
    .bind(v.encode_to_vec())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    bump(tx, record.name.street()).await
}

/// Counts a change of `street`'s register.
async fn bump(tx: &mut Tx, street: &StreetId) -> Result<()> {
    sqlx::query(
        "insert into register_versions (street, version) values ($1, 1)
         on conflict (street) do update set version = register_versions.version + 1",
    )
    .bind(street.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How many times `street`'s register has changed (0 before the first registration).
pub async fn version<'e, E>(executor: E, street: &StreetId) -> Result<i64>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<(i64,)> = sqlx::query_as("select version from register_versions where street = $1")
        .bind(street.as_str())
        .fetch_optional(executor)
        .await?;
    Ok(row.map_or(0, |(v,)| v))
}

/// Every approved registration of `street`, as (volunteer id, registration), by id.
pub async fn approved<'e, E>(executor: E, street: &StreetId) -> Result<Vec<(String, Volunteer)>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "select volunteer_id, body from volunteers where street = $1 and state = 'APPROVED' order by volunteer_id",
    )
    .bind(street.as_str())
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(|(id, body)| Ok((id, Volunteer::decode(body.as_slice()).map_err(Error::internal)?))).collect()
}

type Row = (String, String, i64, Vec<u8>);

fn from_row((street, id, version, body): Row) -> Result<Record> {
    let name = VolunteerName::new(StreetId::parse("street", &street)?, Id::parse("volunteer", &id)?);
    let volunteer = Volunteer::decode(body.as_slice()).map_err(Error::internal)?;
    Ok(Record { name, volunteer, version })
}

/// The registration `name`, if any.
pub async fn get<'e, E>(executor: E, name: &VolunteerName) -> Result<Option<Record>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<Row> = sqlx::query_as(
        "select street, volunteer_id, version, body from volunteers where street = $1 and volunteer_id = $2",
    )
    .bind(name.street().as_str())
    .bind(name.id().as_str())
    .fetch_optional(executor)
    .await?;
    row.map(from_row).transpose()
}

/// What a list asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this community's (an id), when set.
    pub community: String,
    /// Only in this state, when set.
    pub state: String,
    /// Only of this kind, when set.
    pub kind: String,
    /// Only with this skill, when set.
    pub skill: String,
}

/// Up to `limit` registrations of `street` matching `filter`, by id after `after`.
pub async fn list<'e, E>(
    executor: E,
    street: &StreetId,
    filter: &Filter,
    after: &str,
    limit: usize,
) -> Result<Vec<Record>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // Every condition is always bound: an empty value matches everything.
    let rows: Vec<Row> = sqlx::query_as(
        "select street, volunteer_id, version, body from volunteers
         where street = $1 and volunteer_id > $2
             and ($3 = '' or community_id = $3) and ($4 = '' or state = $4) and ($5 = '' or kind = $5)
             and ($6 = '' or skills like $7)
         order by volunteer_id limit $8",
    )
    .bind(street.as_str())
    .bind(after)
    .bind(&filter.community)
    .bind(&filter.state)
    .bind(&filter.kind)
    .bind(&filter.skill)
    .bind(format!("%|{}|%", filter.skill))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(executor)
    .await?;
    rows.into_iter().map(from_row).collect()
}
