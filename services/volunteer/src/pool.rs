//! The volunteers a need can be offered to, as [`matching`] sees them: a street's approved
//! volunteers by community, kept in memory and read again only when the street's register has
//! changed (one small read tells: [`register::version`]), and what changes with every claim —
//! what each has taken, their hours this month, the households they have served — read per
//! request, so eligibility is never judged on an old picture.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use civic_kit::error::{Error, Result};
use civic_kit::names::StreetId;
use civic_kit::time;
use sqlx::AnyPool;

use crate::matching::{self, WeeklyRange};
use crate::register;

/// An approved volunteer, as matching needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The volunteer's id (the person's user id).
    pub id: String,
    /// The person, `users/{user}`: how claims name them.
    pub user: String,
    /// Their name as registered.
    pub display_name: String,
    /// Their skills.
    pub skills: Vec<String>,
    /// Their weekly free time.
    pub availability: Vec<WeeklyRange>,
    /// Where they live, when known.
    pub home: Option<(f64, f64)>,
    /// Their monthly hours cap.
    pub cap_hours: f64,
}

impl Candidate {
    fn of(id: String, v: &civic_proto::volunteer::Volunteer) -> Self {
        let availability = v
            .availability
            .iter()
            .filter_map(|r| {
                Some(WeeklyRange {
                    weekday: u8::try_from(r.weekday).ok()?,
                    start_minute: register::minutes(&r.start_time)?,
                    end_minute: register::minutes(&r.end_time)?,
                })
            })
            .collect();
        Self {
            user: format!("users/{id}"),
            id,
            display_name: v.display_name.clone(),
            skills: v.skills.clone(),
            availability,
            home: v.home.map(|p| (p.latitude, p.longitude)),
            cap_hours: f64::from(v.monthly_hours_cap),
        }
    }

    /// The volunteer as matching sees them, with what they have taken and served in `load`.
    pub fn matching<'a>(&'a self, load: &'a Load) -> matching::Volunteer<'a> {
        matching::Volunteer {
            skills: &self.skills,
            availability: &self.availability,
            home: self.home,
            hours_this_month: load.hours.get(&self.user).copied().unwrap_or(0.0),
            monthly_cap_hours: self.cap_hours,
            booked: load.booked.get(&self.user).map_or(&[], Vec::as_slice),
            served_households: load.served.get(&self.user).map_or(&[], Vec::as_slice),
        }
    }
}

/// A street's approved volunteers by community id, as of a version of its register.
#[derive(Debug)]
struct Register {
    version: i64,
    by_community: HashMap<String, Arc<Vec<Candidate>>>,
}

/// The registers of the streets asked about so far.
#[derive(Debug, Default)]
pub struct Pools {
    #[expect(clippy::disallowed_types, reason = "held only to clone or swap an Arc, never across .await")]
    streets: std::sync::RwLock<HashMap<StreetId, Arc<Register>>>,
}

impl Pools {
    /// The approved volunteers of `community` (an id) in `street`, by id.
    pub async fn community(&self, pool: &AnyPool, street: &StreetId, community: &str) -> Result<Arc<Vec<Candidate>>> {
        let version = register::version(pool, street).await?;
        let held = self.streets.read().ok().and_then(|s| s.get(street).cloned());
        let register = match held {
            Some(r) if r.version == version => r,
            _ => {
                // Read after the version: a change meanwhile makes the next request read again.
                let rows = register::approved(pool, street).await?;
                let register = tokio::task::spawn_blocking(move || {
                    let mut by_community: HashMap<String, Vec<Candidate>> = HashMap::new();
                    for (id, v) in rows {
                        let community = register::community_id(&v.community).to_owned();
                        by_community.entry(community).or_default().push(Candidate::of(id, &v));
                    }
                    Register {
                        version,
                        by_community: by_community.into_iter().map(|(c, v)| (c, Arc::new(v))).collect(),
                    }
                })
                .await
                .map_err(Error::internal)?;
                let register = Arc::new(register);
                if let Ok(mut streets) = self.streets.write()
                    && streets.get(street).is_none_or(|r| r.version <= version)
                {
                    streets.insert(street.clone(), register.clone());
                }
                register
            }
        };
        Ok(register.by_community.get(community).cloned().unwrap_or_default())
    }
}

/// When a need starts and ends.
pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// What volunteers have taken and served, as of one read.
#[derive(Debug, Default)]
pub struct Load {
    /// By person: the windows of the places they hold whose tasks are not confirmed yet.
    pub booked: HashMap<String, Vec<Window>>,
    /// By person: hours in the month — confirmed in it, and places held that start in it.
    pub hours: HashMap<String, f64>,
    /// By person: the households they have served (confirmed tasks).
    pub served: HashMap<String, Vec<String>>,
}

/// Which households' service counts for continuity.
#[derive(Debug, Clone, Copy)]
pub enum Households<'a> {
    /// One household's (a need's), or none when empty.
    Of(&'a str),
    /// Those of a community's needs (an id).
    InCommunity(&'a str),
}

/// What the volunteers of `street` have taken and served, with hours in `month` (from, to).
pub async fn load(
    pool: &AnyPool,
    street: &StreetId,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    households: Households<'_>,
) -> Result<Load> {
    let mut load = Load::default();
    let taken: Vec<(String, String, String)> = sqlx::query_as(
        "select c.volunteer, n.start_time, n.end_time from claims c
             join needs n on n.street = c.street and n.need_id = c.need_id
         where c.street = $1 and c.state = 'ACTIVE' and c.confirmed_at = ''",
    )
    .bind(street.as_str())
    .fetch_all(pool)
    .await?;
    for (user, start, end) in taken {
        let (Some(start), Some(end)) = (time::from_text(&start), time::from_text(&end)) else { continue };
        if start >= from && start < to {
            *load.hours.entry(user.clone()).or_default() += (end - start).num_minutes() as f64 / 60.0;
        }
        load.booked.entry(user).or_default().push((start, end));
    }
    let served: Vec<(String, i64)> = sqlx::query_as(
        "select volunteer, cast(coalesce(sum(minutes), 0) as bigint) from claims
         where street = $1 and state = 'ACTIVE' and confirmed_at <> '' and confirmed_at >= $2 and confirmed_at < $3
         group by volunteer",
    )
    .bind(street.as_str())
    .bind(time::to_text(from))
    .bind(time::to_text(to))
    .fetch_all(pool)
    .await?;
    for (user, minutes) in served {
        *load.hours.entry(user).or_default() += minutes as f64 / 60.0;
    }
    let (household, community) = match households {
        Households::Of("") => return Ok(load),
        Households::Of(h) => (h, ""),
        Households::InCommunity(c) => ("", c),
    };
    let pairs: Vec<(String, String)> = sqlx::query_as(
        "select distinct c.volunteer, n.household from claims c
             join needs n on n.street = c.street and n.need_id = c.need_id
         where c.street = $1 and c.state = 'ACTIVE' and c.confirmed_at <> '' and n.household <> ''
             and ($2 = '' or n.household = $2) and ($3 = '' or n.community_id = $3)",
    )
    .bind(street.as_str())
    .bind(household)
    .bind(community)
    .fetch_all(pool)
    .await?;
    for (user, household) in pairs {
        load.served.entry(user).or_default().push(household);
    }
    Ok(load)
}
