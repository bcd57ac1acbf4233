//! The grid service's types: typed names, key-group tags, the visit policy, and who may reach
//! what (a caller's [`Reach`] in a street). Pure rules, tested beside them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use civic_kit::auth::{Principal, Role};
use civic_kit::error::{Error, Result};
use civic_kit::names::{self, Collection, Id, Name, StreetId};
use serde::{Deserialize, Serialize};

pub use civic_kit::names::{CommunityName, GridName};

/// `streets/{street}/households/{household}`.
pub struct Households;
impl Collection for Households {
    const COLLECTION: &'static str = "households";
}
/// A household's name.
pub type HouseholdName = Name<Households>;

/// `streets/{street}/visits/{visit}`.
pub struct Visits;
impl Collection for Visits {
    const COLLECTION: &'static str = "visits";
}
/// A visit's name.
pub type VisitName = Name<Visits>;

/// `streets/{street}/accessRecords/{record}`.
pub struct AccessRecords;
impl Collection for AccessRecords {
    const COLLECTION: &'static str = "accessRecords";
}
/// An access record's name.
pub type AccessRecordName = Name<AccessRecords>;

/// A resident's name, `streets/{street}/households/{household}/residents/{resident}`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidentName {
    household: HouseholdName,
    resident: Id,
}

impl ResidentName {
    /// Parses a resident's name, reporting a malformed one on `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self> {
        let ids = names::parse(field, name, &["streets", "households", "residents"])?;
        let street = StreetId::parse(field, ids[0])?;
        Ok(Self {
            household: HouseholdName::new(street, Id::parse(field, ids[1])?),
            resident: Id::parse(field, ids[2])?,
        })
    }

    /// The resident `resident` of `household`.
    pub fn new(household: HouseholdName, resident: Id) -> Self {
        Self { household, resident }
    }

    /// The household.
    pub fn household(&self) -> &HouseholdName {
        &self.household
    }

    /// The resident's own id.
    pub fn id(&self) -> &Id {
        &self.resident
    }
}

impl fmt::Display for ResidentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/residents/{}", self.household, self.resident)
    }
}

impl fmt::Debug for ResidentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A date, `YYYY-MM-DD`, reporting a malformed one on `field`.
pub fn parse_date(field: &str, text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| Error::invalid(field, "must be a date, YYYY-MM-DD"))
}

/// The street's local date of an instant. Streets are in China, UTC+8 all year.
pub fn local_date(t: DateTime<Utc>) -> NaiveDate {
    (t + Duration::hours(8)).date_naive()
}

/// The instant a local day begins.
pub fn local_midnight(day: NaiveDate) -> Option<DateTime<Utc>> {
    day.and_hms_opt(0, 0, 0).map(|t| t.and_utc() - Duration::hours(8))
}

/// Where a household or grid sits: its community and grid ids (empty when outside every grid).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Place {
    /// The community's id, or empty.
    pub community: String,
    /// The grid's id, or empty.
    pub grid: String,
}

/// How far a caller reaches in one street: the whole street, some communities, some grids (by
/// `(community, grid)`), some households (a resident's own). Built per request from the token
/// and, for grid workers and residents, from the service's own assignments and roster.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// The whole street (admins; cadres of the street office, with no community in their token).
    pub street: bool,
    /// Communities by id (a community's cadres).
    pub communities: Vec<String>,
    /// Grids by `(community, grid)`: assigned, or covered today.
    pub grids: Vec<(String, String)>,
    /// Households by id: where the caller is a resident with their own account.
    pub households: Vec<String>,
    /// The strongest staff role that gave the reach, for the access log; `None` for a resident.
    pub staff_role: Option<Role>,
}

impl Reach {
    /// Whether the caller is staff reaching `place` (a household's or a grid's).
    pub fn staff_reaches(&self, place: &Place) -> bool {
        self.street
            || self.communities.contains(&place.community)
            || (!place.grid.is_empty() && self.grids.iter().any(|(c, g)| *c == place.community && *g == place.grid))
    }

    /// Whether the caller may see household `id` at `place`, as staff or as one of its residents.
    pub fn sees_household(&self, id: &str, place: &Place) -> bool {
        self.staff_reaches(place) || self.households.iter().any(|h| h == id)
    }

    /// Whether the caller may see the community `community` (its record and grids list).
    pub fn sees_community(&self, community: &str) -> bool {
        self.street || self.communities.iter().any(|c| c == community) || self.grids.iter().any(|(c, _)| c == community)
    }

    /// Whether the caller has any reach at all as staff.
    pub fn is_staff(&self) -> bool {
        self.staff_role.is_some()
    }
}

/// The street-level part of a principal's reach in `street`, from its token alone: admins and
/// cadres without a community reach the street; cadres with one, their community. Grid workers'
/// grids and residents' households come from the roster (see the store).
pub fn token_reach(principal: &Principal, street: &StreetId) -> Reach {
    let mut reach = Reach::default();
    if !principal.in_street(street.as_str()) {
        return reach;
    }
    if principal.has_role(Role::Admin) {
        reach.street = true;
        reach.staff_role = Some(Role::Admin);
    }
    if principal.has_role(Role::Cadre) {
        match &principal.community {
            None => reach.street = true,
            Some(community) => reach.communities.push(community.clone()),
        }
        reach.staff_role.get_or_insert(Role::Cadre);
    }
    reach
}

/// One rule of the visit policy: households with `tag` are visited every `every_days` days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// The key-group tag.
    pub tag: String,
    /// The longest gap between two visits, in days.
    pub every_days: u32,
}

/// How often households must be visited: the shortest interval of the rules whose tag the
/// household has, or the default.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitPolicy {
    rules: Vec<PolicyRule>,
    default_days: u32,
}

impl VisitPolicy {
    /// The policy of `rules`, with `default_days` for households no rule matches.
    pub fn new(rules: Vec<PolicyRule>, default_days: u32) -> Self {
        Self { rules, default_days }
    }

    /// The interval in days for a household with `tags`, and why.
    pub fn interval(&self, tags: &[String]) -> (u32, String) {
        self.rules
            .iter()
            .filter(|r| tags.contains(&r.tag))
            .min_by_key(|r| r.every_days)
            .map(|r| (r.every_days, format!("tag {}: every {} days", r.tag, r.every_days)))
            .unwrap_or_else(|| (self.default_days, format!("no key-group tag: every {} days", self.default_days)))
    }

    /// When a household is next due: `interval` days after its last visit, or after it joined
    /// the roster when it was never visited.
    pub fn due(&self, tags: &[String], last_visit: Option<DateTime<Utc>>, joined: DateTime<Utc>) -> Due {
        let (days, reason) = self.interval(tags);
        let from = last_visit.unwrap_or(joined);
        Due { due_time: from + Duration::days(i64::from(days)), interval_days: days, reason }
    }
}

/// When a household is due, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// When the next visit is due.
    pub due_time: DateTime<Utc>,
    /// The interval, in days.
    pub interval_days: u32,
    /// The rule that set it.
    pub reason: String,
}

/// The key-group tags a street may use: its own set, or the default set.
#[derive(Debug, Clone, Default)]
pub struct TagSets {
    default: Vec<String>,
    streets: BTreeMap<String, Vec<String>>,
}

impl TagSets {
    /// The default set, and the streets' own sets.
    pub fn new(default: Vec<String>, streets: BTreeMap<String, Vec<String>>) -> Self {
        Self { default, streets }
    }

    /// The tags `street` may use.
    pub fn of(&self, street: &StreetId) -> &[String] {
        self.streets.get(street.as_str()).unwrap_or(&self.default)
    }

    /// Checks `tags` against the street's set: each known, none twice; returns them sorted.
    pub fn check(&self, street: &StreetId, field: &str, tags: &[String]) -> Result<Vec<String>> {
        let allowed = self.of(street);
        let mut out: Vec<String> = Vec::with_capacity(tags.len());
        for (i, tag) in tags.iter().enumerate() {
            if !allowed.contains(tag) {
                return Err(Error::invalid(
                    format!("{field}[{i}]"),
                    format!("is not a tag of this street; the tags are {}", allowed.join(", ")),
                ));
            }
            if !out.contains(tag) {
                out.push(tag.clone());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Tags as stored: sorted, each wrapped in commas (`,disabled,elderly_alone,`), so one tag is
/// found with `like '%,tag,%'`.
pub fn tags_to_text(tags: &[String]) -> String {
    if tags.is_empty() { String::new() } else { format!(",{},", tags.join(",")) }
}

/// The tags of a stored text.
pub fn tags_from_text(text: &str) -> Vec<String> {
    text.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// A staff member's work phone: a mainland mobile, or a landline with its area code
/// (`0933-8212345`). Returned normalised (digits, and the landline's hyphen).
pub fn staff_phone(field: &str, text: &str) -> Result<String> {
    let text = text.trim();
    if let Ok(mobile) = crate::protect::Phone::parse(text) {
        return Ok(mobile.as_str().to_owned());
    }
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    let shaped = text.chars().all(|c| c.is_ascii_digit() || c == '-' || c == ' ');
    if shaped && digits.starts_with('0') && (10..=12).contains(&digits.len()) {
        // Area codes are three digits for 01x and 02x (Beijing, Shanghai…), four elsewhere.
        let area = if matches!(digits.as_bytes()[1], b'1' | b'2') { 3 } else { 4 };
        let local = &digits[area..];
        if (7..=8).contains(&local.len()) {
            return Ok(format!("{}-{local}", &digits[..area]));
        }
    }
    Err(Error::invalid(field, "must be a mobile number or a landline with its area code, such as 0933-8212345"))
}

/// A month of the street's calendar (China's time, UTC+8), as far as it has gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Month {
    /// `YYYY-MM`.
    pub text: String,
    /// Its first instant.
    pub start: DateTime<Utc>,
    /// Its end, or now if it has not ended.
    pub until: DateTime<Utc>,
    /// Its first day.
    pub first_day: NaiveDate,
    /// Days gone so far (all of them once it has ended).
    pub days: u32,
    /// The last day a summary of it counts as on time: the fifth of the next month.
    pub due_day: NaiveDate,
}

impl Month {
    /// Parses `YYYY-MM` (field `field`) as of `now`: a month that has not begun is refused.
    pub fn parse(field: &str, text: &str, now: DateTime<Utc>) -> Result<Self> {
        let month = Self::any(field, text, now)?;
        if month.start > now {
            return Err(Error::invalid(field, "must be a month that has begun"));
        }
        Ok(month)
    }

    /// Parses `YYYY-MM` as of `now`, a month to come included: nothing has happened in it yet
    /// (no days gone).
    pub fn any(field: &str, text: &str, now: DateTime<Utc>) -> Result<Self> {
        let bad = || Error::invalid(field, "must be a month, YYYY-MM");
        let first_day = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| bad())?;
        if text.len() != 7 {
            return Err(bad());
        }
        let next = first_day.checked_add_months(chrono::Months::new(1)).ok_or_else(bad)?;
        let start = local_midnight(first_day).ok_or_else(bad)?;
        let end = local_midnight(next).ok_or_else(bad)?;
        if start > now {
            let due_day = next + Duration::days(4);
            return Ok(Self { text: text.to_owned(), start, until: start, first_day, days: 0, due_day });
        }
        let until = end.min(now);
        let last = if until == end { next.pred_opt().unwrap_or(first_day) } else { local_date(now) };
        let days = (last - first_day).num_days() as u32 + 1;
        let due_day = next + Duration::days(4);
        Ok(Self { text: text.to_owned(), start, until, first_day, days, due_day })
    }
}

/// The figures of a month for a set of households and the visits made to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Visits made.
    pub visits: u32,
    /// Households in the scope.
    pub households: u32,
    /// Households visited at least once.
    pub covered: u32,
    /// Households with a key-group tag.
    pub key_households: u32,
    /// Of those, visited as often as the policy asks, all month.
    pub key_on_time: u32,
    /// Problems raised.
    pub problems: u32,
    /// Days with a visit.
    pub days_with_records: u32,
    /// Days without one.
    pub days_without_record: u32,
}

/// Sums up `month` for `households` (id and tags) and `visits` (household id, time, problems
/// raised) made in it: a key household is on time when no gap between the month's start, its
/// visits and the month's end (or now) is longer than its interval.
pub fn summarise(
    month: &Month,
    households: &[(String, Vec<String>)],
    visits: &[(String, DateTime<Utc>, u32)],
    policy: &VisitPolicy,
) -> Figures {
    use std::collections::{BTreeMap, BTreeSet};
    let mut by_household: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
    let mut days = BTreeSet::new();
    let mut problems = 0;
    for (household, at, raised) in visits {
        by_household.entry(household.as_str()).or_default().push(*at);
        days.insert(local_date(*at));
        problems += raised;
    }
    let mut figures = Figures {
        visits: visits.len() as u32,
        households: households.len() as u32,
        problems,
        days_with_records: days.len() as u32,
        days_without_record: month.days.saturating_sub(days.len() as u32),
        ..Figures::default()
    };
    for (id, tags) in households {
        let seen = by_household.get(id.as_str());
        if seen.is_some() {
            figures.covered += 1;
        }
        if tags.is_empty() {
            continue;
        }
        figures.key_households += 1;
        let interval = Duration::days(i64::from(policy.interval(tags).0));
        let mut times = vec![month.start];
        times.extend(seen.into_iter().flatten().copied());
        times.push(month.until);
        times.sort();
        if times.windows(2).all(|w| w[1] - w[0] <= interval) {
            figures.key_on_time += 1;
        }
    }
    figures
}

/// `part` of `whole` in percent, one decimal; 0 when `whole` is 0.
pub fn percent(part: u32, whole: u32) -> f64 {
    if whole == 0 { 0.0 } else { (f64::from(part) * 1000.0 / f64::from(whole)).round() / 10.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[Role], street: &str, community: Option<&str>) -> Principal {
        Principal {
            subject: "u".into(),
            roles: roles.to_vec(),
            street: Some(street.into()),
            community: community.map(Into::into),
            grids: vec![],
        }
    }

    #[test]
    fn grid_and_resident_names_round_trip() {
        let grid = GridName::parse("name", "streets/zhongjie/communities/dongyuan/grids/g-03").expect("valid");
        assert_eq!(grid.to_string(), "streets/zhongjie/communities/dongyuan/grids/g-03");
        assert_eq!(grid.community().to_string(), "streets/zhongjie/communities/dongyuan");
        let resident = ResidentName::parse("name", "streets/zhongjie/households/h1/residents/r1").expect("valid");
        assert_eq!(resident.household().to_string(), "streets/zhongjie/households/h1");
        assert_eq!(resident.to_string(), "streets/zhongjie/households/h1/residents/r1");
        for bad in ["streets/zhongjie/grids/g", "streets/zhongjie/communities/c/grids/G", ""] {
            assert_eq!(GridName::parse("grid", bad).expect_err(bad).violations()[0].field, "grid");
        }
    }

    #[test]
    fn reach_follows_roles_and_places() {
        let street = StreetId::parse("s", "zhongjie").expect("valid");
        let admin = token_reach(&principal(&[Role::Admin], "zhongjie", None), &street);
        let place = Place { community: "c1".into(), grid: "g1".into() };
        assert!(admin.staff_reaches(&place) && admin.staff_role == Some(Role::Admin));
        let other_street = token_reach(&principal(&[Role::Admin], "xijie", None), &street);
        assert!(!other_street.staff_reaches(&place) && !other_street.is_staff());
        let cadre = token_reach(&principal(&[Role::Cadre], "zhongjie", Some("c1")), &street);
        assert!(cadre.staff_reaches(&place));
        assert!(!cadre.staff_reaches(&Place { community: "c2".into(), grid: "g1".into() }));
        let mut worker =
            Reach { grids: vec![("c1".into(), "g1".into())], staff_role: Some(Role::GridWorker), ..Reach::default() };
        assert!(worker.staff_reaches(&place));
        assert!(!worker.staff_reaches(&Place { community: "c1".into(), grid: "g2".into() }));
        assert!(!worker.staff_reaches(&Place { community: "c1".into(), grid: String::new() }));
        worker.households.push("h9".into());
        assert!(worker.sees_household("h9", &Place::default()));
        let resident = token_reach(&principal(&[Role::Resident], "zhongjie", Some("c1")), &street);
        assert!(!resident.staff_reaches(&place), "a resident's community claim gives no staff reach");
    }

    #[test]
    fn the_policy_takes_the_shortest_matching_interval() {
        let policy = VisitPolicy::new(
            vec![
                PolicyRule { tag: "elderly_alone".into(), every_days: 7 },
                PolicyRule { tag: "disabled".into(), every_days: 14 },
            ],
            90,
        );
        assert_eq!(policy.interval(&["disabled".into(), "elderly_alone".into()]).0, 7);
        assert_eq!(policy.interval(&["disabled".into()]).0, 14);
        let (days, why) = policy.interval(&[]);
        assert_eq!(days, 90);
        assert!(why.contains("90"));
        let joined = Utc::now() - Duration::days(100);
        let due = policy.due(&[], None, joined);
        assert_eq!(due.due_time, joined + Duration::days(90));
    }

    #[test]
    fn a_month_is_summed_up_from_its_visits() {
        let now = Utc::now();
        let month = Month::parse("month", &local_date(now - Duration::days(40)).format("%Y-%m").to_string(), now)
            .expect("a past month");
        assert!(month.days >= 28 && month.until > month.start);
        let policy = VisitPolicy::new(vec![PolicyRule { tag: "elderly_alone".into(), every_days: 7 }], 90);
        let households = vec![
            ("a".to_owned(), vec!["elderly_alone".to_owned()]),
            ("b".to_owned(), vec!["elderly_alone".to_owned()]),
            ("c".to_owned(), vec![]),
        ];
        // `a` weekly all month; `b` once, mid-month; `c` not at all.
        let mut visits: Vec<(String, DateTime<Utc>, u32)> =
            (0..6).map(|w| ("a".to_owned(), month.start + Duration::days(6 * w) + Duration::hours(3), 1)).collect();
        visits.push(("b".to_owned(), month.start + Duration::days(14), 0));
        let f = summarise(&month, &households, &visits, &policy);
        assert_eq!((f.visits, f.households, f.covered, f.key_households, f.key_on_time), (7, 3, 2, 2, 1));
        assert_eq!(f.problems, 6);
        assert_eq!(f.days_with_records, 7);
        assert_eq!(f.days_without_record, month.days - 7);
        assert_eq!(percent(2, 3), 66.7);
        assert_eq!(percent(1, 0), 0.0);
        let future = local_date(now + Duration::days(40)).format("%Y-%m").to_string();
        assert_eq!(Month::parse("month", &future, now).expect_err("not begun").violations()[0].field, "month");
        let ahead = Month::any("month", &future, now).expect("a month to come");
        assert_eq!((ahead.days, ahead.until), (0, ahead.start));
        assert!(Month::parse("month", "2026-13", now).is_err() && Month::parse("month", "2026-1", now).is_err());
    }

    #[test]
    fn staff_phones_are_mobiles_or_landlines() {
        assert_eq!(staff_phone("p", "138 0013 8000").expect("mobile"), "13800138000");
        assert_eq!(staff_phone("p", "0933-8212345").expect("landline"), "0933-8212345");
        assert_eq!(staff_phone("p", "010 12345678").expect("Beijing"), "010-12345678");
        for bad in ["12345", "abc", "9933-8212345"] {
            assert_eq!(staff_phone("p", bad).expect_err(bad).violations()[0].field, "p");
        }
    }

    #[test]
    fn tags_are_checked_against_the_streets_set_and_stored_findably() {
        let street = StreetId::parse("s", "zhongjie").expect("valid");
        let sets = TagSets::new(vec!["disabled".into(), "veteran".into()], BTreeMap::new());
        let tags = sets.check(&street, "resident.tags", &["veteran".into(), "disabled".into(), "veteran".into()]);
        assert_eq!(tags.expect("known"), ["disabled", "veteran"]);
        let err = sets.check(&street, "resident.tags", &["veteran".into(), "vip".into()]).expect_err("unknown");
        assert_eq!(err.violations()[0].field, "resident.tags[1]");
        assert_eq!(tags_to_text(&["a".into(), "b".into()]), ",a,b,");
        assert_eq!(tags_from_text(",a,b,"), ["a", "b"]);
        assert!(tags_from_text("").is_empty());
    }
}
