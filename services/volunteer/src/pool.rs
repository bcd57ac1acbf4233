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
    /// The volunteer `id` as registered.
    pub fn of(id: String, v: &civic_proto::volunteer::Volunteer) -> Self {
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

    /// The volunteer as matching sees them, with what they have taken and served (`taken`, from
    /// [`Load::of`] or [`each`]).
    pub fn matching<'a>(&'a self, taken: Option<&'a Taken>) -> matching::Volunteer<'a> {
        matching::Volunteer {
            skills: &self.skills,
            availability: &self.availability,
            home: self.home,
            hours_this_month: taken.map_or(0.0, |t| t.hours),
            monthly_cap_hours: self.cap_hours,
            booked: taken.map_or(&[], |t| t.booked.as_slice()),
            served_households: taken.map_or(&[], |t| t.served.as_slice()),
        }
    }
}

/// Each of `candidates` (sorted by person, as [`Pools::community`] gives them) as matching sees
/// them, with their index: what they have taken found by walking `load` beside them, so a
/// community of any size is matched without a look-up per volunteer.
pub fn each<'a>(candidates: &'a [Candidate], load: &'a Load) -> impl Iterator<Item = (usize, matching::Volunteer<'a>)> {
    let mut taken = load.people.iter().peekable();
    candidates.iter().enumerate().map(move |(i, c)| {
        while taken.peek().is_some_and(|(user, _)| user.as_str() < c.user.as_str()) {
            taken.next();
        }
        let mine = taken.peek().filter(|(user, _)| *user == c.user).map(|(_, t)| t);
        (i, c.matching(mine))
    })
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
    /// One reading of a register at a time: requests that find it stale at once wait for one
    /// read rather than each reading the whole register.
    reading: tokio::sync::Mutex<()>,
}

impl Pools {
    /// The approved volunteers of `community` (an id) in `street`, by id.
    pub async fn community(&self, pool: &AnyPool, street: &StreetId, community: &str) -> Result<Arc<Vec<Candidate>>> {
        let version = register::version(pool, street).await?;
        let held = |pools: &Self| pools.streets.read().ok().and_then(|s| s.get(street).cloned());
        let register = match held(self) {
            Some(r) if r.version == version => r,
            _ => {
                let _reading = self.reading.lock().await;
                // Read by the request this one waited for?
                if let Some(r) = held(self).filter(|r| r.version >= version) {
                    return Ok(r.by_community.get(community).cloned().unwrap_or_default());
                }
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

/// What one volunteer has taken and served.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    /// The windows of the places they hold whose tasks are not confirmed yet.
    pub booked: Vec<Window>,
    /// Hours in the month: confirmed in it, and places held that start in it.
    pub hours: f64,
    /// The households they have served (confirmed tasks).
    pub served: Vec<String>,
}

/// A need as matching sees it, borrowing from its message.
pub fn need_of(placed: &civic_proto::volunteer::Need) -> matching::Need<'_> {
    matching::Need {
        required_skills: &placed.required_skills,
        start: time::from_timestamp(placed.start_time.as_ref()).unwrap_or_default(),
        end: time::from_timestamp(placed.end_time.as_ref()).unwrap_or_default(),
        place: placed.place.map(|p| (p.latitude, p.longitude)),
        household: &placed.household,
    }
}

/// What volunteers have taken and served, as of one read: by person (`users/{user}`), sorted.
#[derive(Debug, Default)]
pub struct Load {
    people: Vec<(String, Taken)>,
}

impl Load {
    /// What `user` has taken and served, if anything.
    pub fn of(&self, user: &str) -> Option<&Taken> {
        self.people.binary_search_by(|(u, _)| u.as_str().cmp(user)).ok().map(|i| &self.people[i].1)
    }
}

/// Which households' service counts for continuity.
#[derive(Debug, Clone, Copy)]
pub enum Households<'a> {
    /// One household's (a need's), or none when empty.
    Of(&'a str),
    /// Those of a community's needs (an id).
    InCommunity(&'a str),
}

/// What the volunteers of `street` — or only `person` (`users/{user}`) — have taken and
/// served, with hours in `month` (from, to): the one reading of hours against a cap, for a
/// claim, a recommendation and a batch alike.
pub async fn load(
    conn: &mut sqlx::AnyConnection,
    street: &StreetId,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    households: Households<'_>,
    person: Option<&str>,
) -> Result<Load> {
    let person = person.unwrap_or_default();
    let mut people: std::collections::BTreeMap<String, Taken> = std::collections::BTreeMap::new();
    let taken: Vec<(String, String, String)> = sqlx::query_as(
        "select c.volunteer, n.start_time, n.end_time from claims c
             join needs n on n.street = c.street and n.need_id = c.need_id
         where c.street = $1 and c.state = 'ACTIVE' and c.confirmed_at = '' and ($2 = '' or c.volunteer = $2)",
    )
    .bind(street.as_str())
    .bind(person)
    .fetch_all(&mut *conn)
    .await?;
    for (user, start, end) in taken {
        let (Some(start), Some(end)) = (time::from_text(&start), time::from_text(&end)) else { continue };
        let mine = people.entry(user).or_default();
        if start >= from && start < to {
            mine.hours += (end - start).num_minutes() as f64 / 60.0;
        }
        mine.booked.push((start, end));
    }
    let served: Vec<(String, i64)> = sqlx::query_as(
        "select volunteer, cast(coalesce(sum(minutes), 0) as bigint) from claims
         where street = $1 and state = 'ACTIVE' and confirmed_at <> '' and confirmed_at >= $2 and confirmed_at < $3
             and ($4 = '' or volunteer = $4)
         group by volunteer",
    )
    .bind(street.as_str())
    .bind(time::to_text(from))
    .bind(time::to_text(to))
    .bind(person)
    .fetch_all(&mut *conn)
    .await?;
    for (user, minutes) in served {
        people.entry(user).or_default().hours += minutes as f64 / 60.0;
    }
    let (household, community) = match households {
        Households::Of("") => return Ok(Load { people: people.into_iter().collect() }),
        Households::Of(h) => (h, ""),
        Households::InCommunity(c) => ("", c),
    };
    let pairs: Vec<(String, String)> = sqlx::query_as(
        "select distinct c.volunteer, n.household from claims c
             join needs n on n.street = c.street and n.need_id = c.need_id
         where c.street = $1 and c.state = 'ACTIVE' and c.confirmed_at <> '' and n.household <> ''
             and ($2 = '' or n.household = $2) and ($3 = '' or n.community_id = $3) and ($4 = '' or c.volunteer = $4)",
    )
    .bind(street.as_str())
    .bind(household)
    .bind(community)
    .bind(person)
    .fetch_all(&mut *conn)
    .await?;
    for (user, household) in pairs {
        people.entry(user).or_default().served.push(household);
    }
    Ok(Load { people: people.into_iter().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str) -> Candidate {
        Candidate {
            id: id.into(),
            user: format!("users/{id}"),
            display_name: String::new(),
            skills: Vec::new(),
            availability: Vec::new(),
            home: None,
            cap_hours: 20.0,
        }
    }

    #[test]
    fn walking_the_load_beside_the_candidates_finds_what_each_has_taken() {
        let candidates: Vec<Candidate> = ["a", "b", "c", "d"].map(candidate).into();
        let taken = |hours: f64| Taken { hours, ..Default::default() };
        // Someone not among the candidates, before, between and after them.
        let load = Load {
            people: vec![
                ("users/0".into(), taken(9.0)),
                ("users/b".into(), taken(2.0)),
                ("users/bb".into(), taken(9.0)),
                ("users/d".into(), taken(4.0)),
                ("users/e".into(), taken(9.0)),
            ],
        };
        let hours: Vec<(usize, f64)> = each(&candidates, &load).map(|(i, v)| (i, v.hours_this_month)).collect();
        assert_eq!(hours, [(0, 0.0), (1, 2.0), (2, 0.0), (3, 4.0)]);
        assert_eq!(load.of("users/d").map(|t| t.hours), Some(4.0));
        assert!(load.of("users/c").is_none());
    }
}
