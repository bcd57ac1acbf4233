//! The social organisations of the incubation alliance (孵化联盟) — charity, community service,
//! culture and sport, professional mediation — with their projects and volunteer stations: their
//! table (the organisation kept as its message, with columns for what lists filter on) and the
//! API. Anyone of the street reads them; street admins register and change them, a cadre those of
//! their community.

use chrono::Utc;
use civic_kit::auth::Caller;
use civic_kit::db::{Tx, exists_on};
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::{RequestKey, check_etag, etag};
use civic_kit::names::{Collection, CommunityName, Id, Name, StreetId};
use civic_kit::{filter, page, time};
use civic_proto::volunteer::organisation::{Kind, Stage};
use civic_proto::volunteer::*;
use prost::Message;

use crate::Volunteers;
use crate::api::Staff;
use crate::register::{Vocabulary, community_id};

/// The `organisations` collection of a street.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrganisationsCollection;

impl Collection for OrganisationsCollection {
    const COLLECTION: &'static str = "organisations";
}

/// An organisation's name, `streets/{street}/organisations/{organisation}`.
pub type OrganisationName = Name<OrganisationsCollection>;

/// Every field an organisation sets.
const ALL_FIELDS: [&str; 7] = ["display_name", "kind", "stage", "description", "community", "projects", "stations"];

/// An organisation as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) name: OrganisationName,
    pub(crate) organisation: Organisation,
    pub(crate) version: i64,
}

/// Checks the fields of `o` in `fields`, every problem named.
fn check(o: &Organisation, street: &StreetId, fields: &[&str], vocabulary: &Vocabulary) -> Result<()> {
    let mut bad = Violations::new();
    let has = |f: &str| fields.contains(&f);
    let in_street = |community: &str| {
        let id = community_id(community);
        !id.is_empty() && civic_kit::names::is_valid_id(id) && community.split('/').nth(1) == Some(street.as_str())
    };
    if has("display_name") && o.display_name.trim().is_empty() {
        bad.add("organisation.display_name", "is required");
    }
    if has("kind") && o.kind() == Kind::Unspecified {
        bad.add("organisation.kind", "is required: CHARITY, COMMUNITY_SERVICE, CULTURE_SPORT or MEDIATION");
    }
    if has("community") && !o.community.is_empty() && !in_street(&o.community) {
        bad.add("organisation.community", "must be a community of the street, or empty for the street's own");
    }
    if has("projects") {
        for (n, p) in o.projects.iter().enumerate() {
            if p.title.trim().is_empty() {
                bad.add(format!("organisation.projects[{n}].title"), "is required");
            }
            for skill in &p.skills {
                if !vocabulary.skills.contains_key(skill) {
                    bad.add(
                        format!("organisation.projects[{n}].skills"),
                        format!("`{skill}` is not one of the street's skills"),
                    );
                }
            }
        }
    }
    if has("stations") {
        for (n, s) in o.stations.iter().enumerate() {
            if s.display_name.trim().is_empty() {
                bad.add(format!("organisation.stations[{n}].display_name"), "is required");
            }
            if !s.community.is_empty() && !in_street(&s.community) {
                bad.add(format!("organisation.stations[{n}].community"), "must be a community of the street");
            }
            if let Some(p) = s.place
                && !((-90.0..=90.0).contains(&p.latitude) && (-180.0..=180.0).contains(&p.longitude))
            {
                bad.add(format!("organisation.stations[{n}].place"), "latitude -90 to 90, longitude -180 to 180");
            }
        }
    }
    bad.finish()
}

type Row = (String, String, i64, Vec<u8>);

fn from_row((street, id, version, body): Row) -> Result<Record> {
    let name = OrganisationName::new(StreetId::parse("street", &street)?, Id::parse("organisation", &id)?);
    let organisation = Organisation::decode(body.as_slice()).map_err(Error::internal)?;
    Ok(Record { name, organisation, version })
}

pub(crate) async fn insert(tx: &mut Tx, r: &Record, now: &str) -> Result<()> {
    let o = &r.organisation;
    sqlx::query(
        "insert into organisations (street, organisation_id, kind, stage, community_id, version, body, created_at,
             updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(r.name.street().as_str())
    .bind(r.name.id().as_str())
    .bind(o.kind().as_str_name())
    .bind(o.stage().as_str_name())
    .bind(community_id(&o.community))
    .bind(r.version)
    .bind(o.encode_to_vec())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| exists_on(e, "organisations_pkey", &r.name))?;
    Ok(())
}

async fn save(tx: &mut Tx, r: &Record, now: &str) -> Result<()> {
    let o = &r.organisation;
    sqlx::query(
        "update organisations set kind = $3, stage = $4, community_id = $5, version = $6, body = $7, updated_at = $8
         where street = $1 and organisation_id = $2",
    )
    .bind(r.name.street().as_str())
    .bind(r.name.id().as_str())
    .bind(o.kind().as_str_name())
    .bind(o.stage().as_str_name())
    .bind(community_id(&o.community))
    .bind(r.version)
    .bind(o.encode_to_vec())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn get<'e, E>(executor: E, name: &OrganisationName) -> Result<Option<Record>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<Row> = sqlx::query_as(
        "select street, organisation_id, version, body from organisations where street = $1 and organisation_id = $2",
    )
    .bind(name.street().as_str())
    .bind(name.id().as_str())
    .fetch_optional(executor)
    .await?;
    row.map(from_row).transpose()
}

/// Whether `name` is an organisation of the street (for a volunteer naming it).
pub(crate) async fn exists<'e, E>(executor: E, name: &OrganisationName) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(get(executor, name).await?.is_some())
}

fn to_wire(r: &Record) -> Organisation {
    Organisation { name: r.name.to_string(), etag: etag(r.version), ..r.organisation.clone() }
}

impl Volunteers {
    /// Whether `staff` may register or change an organisation of `community` (a name, empty for
    /// the street's own).
    fn manages_organisation(staff: Option<&Staff>, community: &str) -> bool {
        match staff {
            Some(Staff::Street) => true,
            Some(Staff::Community(c)) => community_id(community) == c,
            None => false,
        }
    }

    pub(crate) async fn create_organisation(
        &self,
        caller: &Caller,
        req: CreateOrganisationRequest,
    ) -> Result<Organisation> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let (_, staff) = crate::api::staff(caller, &street)?;
        if staff.is_none() {
            return Err(Error::permission_denied("the street's staff register organisations"));
        }
        let mut o = req.organisation.clone().unwrap_or_default();
        check(&o, &street, &ALL_FIELDS, &self.vocabulary)?;
        if !Self::manages_organisation(staff.as_ref(), &o.community) {
            return Err(Error::permission_denied("cadres register organisations of their own community"));
        }
        if o.stage() == Stage::Unspecified {
            o.stage = Stage::Incubating as i32;
        }
        let now = Utc::now();
        o.create_time = Some(time::to_timestamp(now));
        o.update_time = o.create_time;
        let name = OrganisationName::new(street, Id::generate('o'));
        let record =
            Record { name, organisation: Organisation { name: String::new(), etag: String::new(), ..o }, version: 1 };
        let key = RequestKey::new(caller.key(), "CreateOrganisation", &req.request_id, &req)?;
        self.writer
            .write(&key, async |c| {
                insert(c.tx(), &record, &time::to_text(now)).await?;
                Ok(to_wire(&record))
            })
            .await
    }

    pub(crate) async fn get_organisation(&self, caller: &Caller, req: GetOrganisationRequest) -> Result<Organisation> {
        let name = OrganisationName::parse("name", &req.name)?;
        crate::api::staff(caller, name.street())?;
        let found = get(self.writer.db().reader(), &name).await?;
        found.map(|r| to_wire(&r)).ok_or_else(|| Error::not_found(name.to_string()))
    }

    pub(crate) async fn list_organisations(
        &self,
        caller: &Caller,
        req: ListOrganisationsRequest,
    ) -> Result<ListOrganisationsResponse> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        crate::api::staff(caller, &street)?;
        let size = page::page_size(req.page_size, 50, 200)?;
        let (mut kind, mut stage, mut community) = (String::new(), String::new(), String::new());
        let not = |what: &str, value: &str| Error::invalid("filter", format!("`{value}` is not {what}"));
        for term in filter::parse(&req.filter, &["kind", "stage", "community"])? {
            let value = term.value.as_str();
            match term.field.as_str() {
                "kind" => kind = Kind::from_str_name(value).ok_or_else(|| not("a kind", value))?.as_str_name().into(),
                "stage" => {
                    stage = Stage::from_str_name(value).ok_or_else(|| not("a stage", value))?.as_str_name().into()
                }
                _ => community = CommunityName::parse("filter", value)?.id().to_string(),
            }
        }
        let query = format!("ListOrganisations|{street}|{kind}|{stage}|{community}");
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let rows: Vec<Row> = sqlx::query_as(
            "select street, organisation_id, version, body from organisations
             where street = $1 and organisation_id > $2 and ($3 = '' or kind = $3) and ($4 = '' or stage = $4)
                 and ($5 = '' or community_id = $5)
             order by organisation_id limit $6",
        )
        .bind(street.as_str())
        .bind(&after)
        .bind(&kind)
        .bind(&stage)
        .bind(&community)
        .bind(i64::try_from(size + 1).unwrap_or(i64::MAX))
        .fetch_all(self.writer.db().reader())
        .await?;
        let mut records = rows.into_iter().map(from_row).collect::<Result<Vec<_>>>()?;
        let next_page_token = self.pages.next_page(&query, &mut records, size, |r| vec![r.name.id().to_string()]);
        Ok(ListOrganisationsResponse { organisations: records.iter().map(to_wire).collect(), next_page_token })
    }

    pub(crate) async fn update_organisation(
        &self,
        caller: &Caller,
        req: UpdateOrganisationRequest,
    ) -> Result<Organisation> {
        let sent = req.organisation.clone().unwrap_or_default();
        let name = OrganisationName::parse("organisation.name", &sent.name)?;
        let (_, staff) = crate::api::staff(caller, name.street())?;
        if staff.is_none() {
            return Err(Error::permission_denied("the street's staff change organisations"));
        }
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "name the fields to change"));
        }
        let mut fields: Vec<&str> = Vec::with_capacity(paths.len());
        for path in &paths {
            match ALL_FIELDS.iter().find(|f| **f == path.as_str()) {
                Some(field) => fields.push(field),
                None => return Err(Error::invalid("update_mask", format!("`{path}` cannot be changed"))),
            }
        }
        check(&sent, name.street(), &fields, &self.vocabulary)?;
        let key = RequestKey::new(caller.key(), "UpdateOrganisation", &req.request_id, &req)?;
        self.writer
            .write(&key, async |c| {
                let mut record = match get(&mut **c.tx(), &name).await? {
                    Some(r) if Self::manages_organisation(staff.as_ref(), &r.organisation.community) => r,
                    Some(_) => {
                        return Err(Error::permission_denied("cadres change their own community's organisations"));
                    }
                    None => return Err(Error::not_found(name.to_string())),
                };
                check_etag(&sent.etag, record.version, &name.to_string())?;
                let o = &mut record.organisation;
                for field in &fields {
                    match *field {
                        "display_name" => o.display_name = sent.display_name.clone(),
                        "kind" => o.kind = sent.kind,
                        "stage" => o.stage = if sent.stage == 0 { Stage::Incubating as i32 } else { sent.stage },
                        "description" => o.description = sent.description.clone(),
                        "projects" => o.projects = sent.projects.clone(),
                        "stations" => o.stations = sent.stations.clone(),
                        _ => {
                            if !Self::manages_organisation(staff.as_ref(), &sent.community) {
                                return Err(Error::permission_denied(
                                    "cadres keep organisations in their own community",
                                ));
                            }
                            o.community = sent.community.clone();
                        }
                    }
                }
                let now = Utc::now();
                o.update_time = Some(time::to_timestamp(now));
                record.version += 1;
                save(c.tx(), &record, &time::to_text(now)).await?;
                Ok(to_wire(&record))
            })
            .await
    }
}
