//! Who may take a need, and how well they fit it.
//!
//! A volunteer is **eligible** for a need when taking it keeps them within their monthly hours
//! cap and it does not overlap anything they have taken already. An eligible volunteer gets a
//! **score** in 0..=1: the weighted mean of five factors, each in 0..=1 and each returned with
//! its reason, so staff can see why one volunteer is put before another —
//!
//! | factor | 1 when | 0 when |
//! | --- | --- | --- |
//! | skills | the volunteer has every skill the need asks for (or it asks for none) | none of them |
//! | availability | the need's whole window falls in their weekly free time | none of it |
//! | distance | they live where the need is | `max_distance_km` or further |
//! | load | they have served no hours this month | they are at their cap |
//! | continuity | they have served this household before | they have not |
//!
//! Weights are configured per street; a factor of weight 0 is left out. A place that is not
//! known (no home, or a need without a place) counts one half, said so in its reason.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, Timelike, Utc};

/// The longest window a need may have whose availability is worked out day by day.
pub const MAX_WINDOW_DAYS: i64 = 62;

/// A weekly stretch of free time in the street's local time: `weekday` 1 (Monday) to 7
/// (Sunday), from `start_minute` up to `end_minute` after midnight (0..=1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeeklyRange {
    /// 1 (Monday) to 7 (Sunday).
    pub weekday: u8,
    /// Minutes after midnight it starts.
    pub start_minute: u16,
    /// Minutes after midnight it ends (after the start; 1440 is midnight at the end).
    pub end_minute: u16,
}

/// A volunteer as matching sees them.
#[derive(Debug, Clone, Copy)]
pub struct Volunteer<'a> {
    /// Their skills, from the street's vocabulary.
    pub skills: &'a [String],
    /// Their weekly free time.
    pub availability: &'a [WeeklyRange],
    /// Where they live (latitude, longitude), when known.
    pub home: Option<(f64, f64)>,
    /// Hours served this month so far (taken places count too).
    pub hours_this_month: f64,
    /// Their monthly hours cap.
    pub monthly_cap_hours: f64,
    /// What they have taken already: start and end of each.
    pub booked: &'a [(DateTime<Utc>, DateTime<Utc>)],
    /// Households they have served before (`streets/{street}/households/{household}`).
    pub served_households: &'a [String],
}

/// A need as matching sees it.
#[derive(Debug, Clone, Copy)]
pub struct Need<'a> {
    /// The skills it asks for.
    pub required_skills: &'a [String],
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends (after the start).
    pub end: DateTime<Utc>,
    /// Where it is (latitude, longitude), when it has a place.
    pub place: Option<(f64, f64)>,
    /// The household it is for, if any.
    pub household: &'a str,
}

impl Need<'_> {
    /// The hours it takes.
    pub fn hours(&self) -> f64 {
        (self.end - self.start).num_seconds().max(0) as f64 / 3600.0
    }
}

/// How much each factor counts, and the distance at which distance counts nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Skills.
    pub skills: f64,
    /// Availability.
    pub availability: f64,
    /// Distance.
    pub distance: f64,
    /// Fair load.
    pub load: f64,
    /// Continuity.
    pub continuity: f64,
    /// The distance, in kilometres, from which distance scores 0.
    pub max_distance_km: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self { skills: 0.35, availability: 0.25, distance: 0.2, load: 0.1, continuity: 0.1, max_distance_km: 5.0 }
    }
}

/// One of the five factors of a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// Skills asked for and had.
    Skills,
    /// The need's window inside the volunteer's free time.
    Availability,
    /// From home to the need's place.
    Distance,
    /// Hours this month against the cap.
    Load,
    /// This household served before.
    Continuity,
}

/// A factor's part in a score, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// The factor.
    pub factor: Factor,
    /// Its value, 0..=1.
    pub value: f64,
    /// Its weight.
    pub weight: f64,
    /// What it was worked out from, in words (`2 of 3 skills`, `1.2 km`).
    pub detail: String,
}

/// How well a volunteer fits a need: the weighted mean of its reasons' values.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// 0..=1; higher is better.
    pub total: f64,
    /// Each factor with a weight above 0.
    pub reasons: Vec<Reason>,
}

/// Why a volunteer may not take a need.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Ineligible {
    /// Taking it would pass their monthly cap.
    #[error("{hours:.1} hours this month with this need, over the cap of {cap:.1}")]
    OverCap {
        /// Hours with the need.
        hours: f64,
        /// Their cap.
        cap: f64,
    },
    /// It overlaps something they have taken.
    #[error("already booked at that time")]
    DoubleBooked,
}

/// Whether `volunteer` may take `need`.
pub fn eligible(volunteer: &Volunteer<'_>, need: &Need<'_>) -> Result<(), Ineligible> {
    let hours = volunteer.hours_this_month + need.hours();
    if hours > volunteer.monthly_cap_hours + 1e-9 {
        return Err(Ineligible::OverCap { hours, cap: volunteer.monthly_cap_hours });
    }
    if volunteer.booked.iter().any(|(start, end)| *start < need.end && need.start < *end) {
        return Err(Ineligible::DoubleBooked);
    }
    Ok(())
}

/// How well `volunteer` fits `need` under `weights`, in the street's time zone `zone` (for
/// weekly availability). Eligibility is [`eligible`]'s to say, not this.
pub fn score(volunteer: &Volunteer<'_>, need: &Need<'_>, weights: &Weights, zone: FixedOffset) -> Score {
    let mut reasons = Vec::with_capacity(5);
    let mut add = |factor, weight: f64, (value, detail): (f64, String)| {
        if weight > 0.0 {
            reasons.push(Reason { factor, value: value.clamp(0.0, 1.0), weight, detail });
        }
    };
    add(Factor::Skills, weights.skills, skills(volunteer, need));
    add(Factor::Availability, weights.availability, availability(volunteer, need, zone));
    add(Factor::Distance, weights.distance, distance(volunteer, need, weights.max_distance_km));
    add(Factor::Load, weights.load, load(volunteer));
    add(Factor::Continuity, weights.continuity, continuity(volunteer, need));
    let weight: f64 = reasons.iter().map(|r| r.weight).sum();
    let total = if weight > 0.0 { reasons.iter().map(|r| r.weight * r.value).sum::<f64>() / weight } else { 0.0 };
    Score { total, reasons }
}

fn skills(volunteer: &Volunteer<'_>, need: &Need<'_>) -> (f64, String) {
    if need.required_skills.is_empty() {
        return (1.0, "no skills asked for".into());
    }
    let had = need.required_skills.iter().filter(|s| volunteer.skills.contains(s)).count();
    (had as f64 / need.required_skills.len() as f64, format!("{had} of {} skills", need.required_skills.len()))
}

fn availability(volunteer: &Volunteer<'_>, need: &Need<'_>, zone: FixedOffset) -> (f64, String) {
    let whole = (need.end - need.start).num_minutes();
    if whole <= 0 {
        return (0.0, "the need has no time".into());
    }
    if whole > MAX_WINDOW_DAYS * 24 * 60 {
        return (0.0, format!("the need is longer than {MAX_WINDOW_DAYS} days"));
    }
    let free = free_minutes(volunteer.availability, need.start.with_timezone(&zone), need.end.with_timezone(&zone));
    (free as f64 / whole as f64, format!("{free} of {whole} minutes in their free time"))
}

/// Minutes of `[start, end)` (local time, at most [`MAX_WINDOW_DAYS`] long) inside `ranges`.
fn free_minutes(ranges: &[WeeklyRange], start: DateTime<FixedOffset>, end: DateTime<FixedOffset>) -> i64 {
    let mut total = 0;
    let mut day_start = start;
    while day_start < end {
        let midnight = day_start.with_time(NaiveTime::MIN).single().unwrap_or(day_start) + Duration::days(1);
        let day_end = midnight.min(end);
        let weekday = day_start.weekday().number_from_monday() as u8;
        let from = i64::from(day_start.hour() * 60 + day_start.minute());
        let to = from + (day_end - day_start).num_minutes();
        for r in ranges.iter().filter(|r| r.weekday == weekday) {
            let overlap = to.min(i64::from(r.end_minute)) - from.max(i64::from(r.start_minute));
            total += overlap.max(0);
        }
        day_start = day_end;
    }
    total
}

fn distance(volunteer: &Volunteer<'_>, need: &Need<'_>, max_km: f64) -> (f64, String) {
    match (volunteer.home, need.place) {
        (Some(home), Some(place)) => {
            let km = haversine_km(home, place);
            let value = if max_km > 0.0 { 1.0 - km / max_km } else { 0.0 };
            (value, format!("{km:.1} km"))
        }
        _ => (0.5, "distance not known".into()),
    }
}

/// The great-circle distance between two (latitude, longitude) points, in kilometres.
pub fn haversine_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    const EARTH_KM: f64 = 6371.0;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_KM * a.sqrt().min(1.0).asin()
}

fn load(volunteer: &Volunteer<'_>) -> (f64, String) {
    let detail = format!("{:.1} of {:.1} hours this month", volunteer.hours_this_month, volunteer.monthly_cap_hours);
    if volunteer.monthly_cap_hours <= 0.0 {
        return (0.0, detail);
    }
    (1.0 - volunteer.hours_this_month / volunteer.monthly_cap_hours, detail)
}

fn continuity(volunteer: &Volunteer<'_>, need: &Need<'_>) -> (f64, String) {
    if !need.household.is_empty() && volunteer.served_households.iter().any(|h| h == need.household) {
        (1.0, "served this household before".into())
    } else {
        (0.0, "not served this household before".into())
    }
}

/// The month `t` falls in, in the street's time zone `zone`: its first instant and the first of
/// the next, in UTC. Hours against a monthly cap count in it.
pub fn month_of(t: DateTime<Utc>, zone: FixedOffset) -> (DateTime<Utc>, DateTime<Utc>) {
    use chrono::TimeZone;
    let local = t.with_timezone(&zone);
    let (year, month) = (local.year(), local.month());
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let first = |y, m| zone.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().map(|d| d.with_timezone(&Utc));
    match (first(year, month), first(next_year, next_month)) {
        (Some(from), Some(to)) => (from, to),
        _ => (t, t),
    }
}

/// The `k` best fits for `need` among `candidates` (each with the caller's index), best first:
/// the eligible ones only, by score, equal scores in the candidates' order. One pass with a
/// heap of `k`, so a street's every volunteer can be ranked per request.
pub fn recommend<'a>(
    need: &Need<'_>,
    candidates: impl IntoIterator<Item = (usize, Volunteer<'a>)>,
    k: usize,
    weights: &Weights,
    zone: FixedOffset,
) -> Vec<(usize, Score)> {
    use std::cmp::{Ordering, Reverse};
    use std::collections::BinaryHeap;

    /// A candidate in the heap: ordered by score, then earlier first.
    struct Ranked(usize, Score);
    impl PartialEq for Ranked {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other) == Ordering::Equal
        }
    }
    impl Eq for Ranked {}
    impl PartialOrd for Ranked {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Ranked {
        fn cmp(&self, other: &Self) -> Ordering {
            self.1.total.total_cmp(&other.1.total).then_with(|| other.0.cmp(&self.0))
        }
    }

    if k == 0 {
        return Vec::new();
    }
    let mut best: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(k + 1);
    for (index, volunteer) in candidates {
        if eligible(&volunteer, need).is_err() {
            continue;
        }
        let ranked = Ranked(index, score(&volunteer, need, weights, zone));
        if best.len() < k {
            best.push(Reverse(ranked));
        } else if best.peek().is_some_and(|Reverse(worst)| ranked > *worst) {
            best.pop();
            best.push(Reverse(ranked));
        }
    }
    let mut ranked: Vec<Ranked> = best.into_iter().map(|Reverse(r)| r).collect();
    ranked.sort_by(|a, b| b.cmp(a));
    ranked.into_iter().map(|Ranked(index, score)| (index, score)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A time written in RFC 3339.
    pub(crate) fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("a time").with_timezone(&Utc)
    }

    /// The demo street's time zone.
    pub(crate) fn zone() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).expect("UTC+8")
    }

    #[test]
    fn a_month_is_the_streets_local_month() {
        // 2026-11-30 20:00 UTC is already December in UTC+8.
        let (from, to) = month_of(at("2026-11-30T20:00:00Z"), zone());
        assert_eq!((from, to), (at("2026-11-30T16:00:00Z"), at("2026-12-31T16:00:00Z")));
        let (from, to) = month_of(at("2026-12-31T15:59:59Z"), zone());
        assert_eq!((from, to), (at("2026-11-30T16:00:00Z"), at("2026-12-31T16:00:00Z")));
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Saturday 2026-12-05, 09:00–11:00 in UTC+8.
    fn need<'a>(skills: &'a [String], household: &'a str) -> Need<'a> {
        Need {
            required_skills: skills,
            start: at("2026-12-05T09:00:00+08:00"),
            end: at("2026-12-05T11:00:00+08:00"),
            place: Some((35.545, 106.660)),
            household,
        }
    }

    #[test]
    fn every_factor_is_scored_with_its_reason() {
        let (have, want) = (strings(&["elder_care", "cooking"]), strings(&["elder_care", "first_aid"]));
        let free = [WeeklyRange { weekday: 6, start_minute: 10 * 60, end_minute: 12 * 60 }];
        let served = strings(&["streets/zhongjie/households/h1"]);
        let v = Volunteer {
            skills: &have,
            availability: &free,
            home: Some((35.545, 106.660 + 0.011)), // about 1 km east
            hours_this_month: 5.0,
            monthly_cap_hours: 20.0,
            booked: &[],
            served_households: &served,
        };
        let n = need(&want, "streets/zhongjie/households/h1");
        let s = score(&v, &n, &Weights::default(), zone());
        let value = |f| s.reasons.iter().find(|r| r.factor == f).map(|r| (r.value, r.detail.clone())).expect("factor");
        assert_eq!(value(Factor::Skills), (0.5, "1 of 2 skills".into()));
        assert_eq!(value(Factor::Availability), (0.5, "60 of 120 minutes in their free time".into()));
        let (d, words) = value(Factor::Distance);
        assert!((d - 0.8).abs() < 0.01, "{d} {words}");
        assert_eq!(words, "1.0 km");
        assert_eq!(value(Factor::Load), (0.75, "5.0 of 20.0 hours this month".into()));
        assert_eq!(value(Factor::Continuity).0, 1.0);
        let expected = (0.35 * 0.5 + 0.25 * 0.5 + 0.2 * d + 0.1 * 0.75 + 0.1 * 1.0) / 1.0;
        assert!((s.total - expected).abs() < 1e-9, "{} vs {expected}", s.total);
    }

    #[test]
    fn a_factor_of_no_weight_is_left_out_and_the_rest_are_averaged() {
        let v = Volunteer {
            skills: &[],
            availability: &[],
            home: None,
            hours_this_month: 0.0,
            monthly_cap_hours: 10.0,
            booked: &[],
            served_households: &[],
        };
        let n = need(&[], "");
        let weights =
            Weights { skills: 1.0, availability: 0.0, distance: 1.0, load: 0.0, continuity: 0.0, ..Default::default() };
        let s = score(&v, &n, &weights, zone());
        assert_eq!(s.reasons.len(), 2);
        // No skills asked for: 1; no home: one half, said so.
        assert!((s.total - 0.75).abs() < 1e-9, "{s:?}");
        assert_eq!(s.reasons[1].detail, "distance not known");
    }

    #[test]
    fn availability_follows_the_local_week_across_midnight() {
        // Sunday 23:00 to Monday 01:00 local; free Sunday 22:00–24:00 and Monday 00:30–02:00.
        let free = [
            WeeklyRange { weekday: 7, start_minute: 22 * 60, end_minute: 1440 },
            WeeklyRange { weekday: 1, start_minute: 30, end_minute: 120 },
        ];
        let start = at("2026-12-06T23:00:00+08:00").with_timezone(&zone());
        let end = at("2026-12-07T01:00:00+08:00").with_timezone(&zone());
        assert_eq!(free_minutes(&free, start, end), 60 + 30);
        // The same instants read in UTC fall on other days and hours: the zone matters.
        let utc = FixedOffset::east_opt(0).expect("UTC");
        assert_eq!(free_minutes(&free, start.with_timezone(&utc), end.with_timezone(&utc)), 0);
    }

    #[test]
    fn over_the_cap_or_booked_at_the_time_is_not_eligible() {
        let booked = [(at("2026-12-05T10:30:00+08:00"), at("2026-12-05T12:00:00+08:00"))];
        let mut v = Volunteer {
            skills: &[],
            availability: &[],
            home: None,
            hours_this_month: 19.0,
            monthly_cap_hours: 20.0,
            booked: &[],
            served_households: &[],
        };
        let n = need(&[], "");
        assert_eq!(eligible(&v, &n), Err(Ineligible::OverCap { hours: 21.0, cap: 20.0 }));
        v.hours_this_month = 18.0;
        assert_eq!(eligible(&v, &n), Ok(()), "exactly at the cap is allowed");
        v.booked = &booked;
        assert_eq!(eligible(&v, &n), Err(Ineligible::DoubleBooked));
        // Back to back is not an overlap.
        let after = [(at("2026-12-05T11:00:00+08:00"), at("2026-12-05T12:00:00+08:00"))];
        v.booked = &after;
        assert_eq!(eligible(&v, &n), Ok(()));
    }

    #[test]
    fn the_best_eligible_come_first_and_the_ineligible_never() {
        let want = strings(&["elder_care"]);
        let (with, without) = (strings(&["elder_care"]), Vec::new());
        let booked = [(at("2026-12-05T09:30:00+08:00"), at("2026-12-05T10:00:00+08:00"))];
        let base = Volunteer {
            skills: &without,
            availability: &[],
            home: None,
            hours_this_month: 0.0,
            monthly_cap_hours: 20.0,
            booked: &[],
            served_households: &[],
        };
        let candidates = [
            Volunteer { hours_this_month: 10.0, ..base },         // 0: half loaded
            Volunteer { skills: &with, ..base },                  // 1: the skill, no load
            Volunteer { skills: &with, booked: &booked, ..base }, // 2: best, but booked
            Volunteer { skills: &with, hours_this_month: 19.0, ..base }, // 3: over the cap with it
            base,                                                 // 4: as 0, no load
            Volunteer { skills: &with, hours_this_month: 10.0, ..base }, // 5: the skill, half loaded
        ];
        let n = need(&want, "");
        let top = recommend(&n, candidates.iter().copied().enumerate(), 3, &Weights::default(), zone());
        let order: Vec<usize> = top.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, vec![1, 5, 4]);
        assert!(top.windows(2).all(|w| w[0].1.total >= w[1].1.total));
        // All of them when k is large; none when k is 0.
        let all = recommend(&n, candidates.iter().copied().enumerate(), 100, &Weights::default(), zone());
        assert_eq!(all.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 5, 4, 0]);
        assert!(recommend(&n, candidates.iter().copied().enumerate(), 0, &Weights::default(), zone()).is_empty());
    }

    #[test]
    fn a_window_too_long_to_walk_scores_no_availability() {
        let free = [WeeklyRange { weekday: 1, start_minute: 0, end_minute: 1440 }];
        let v = Volunteer {
            skills: &[],
            availability: &free,
            home: None,
            hours_this_month: 0.0,
            monthly_cap_hours: 10_000.0,
            booked: &[],
            served_households: &[],
        };
        let mut n = need(&[], "");
        n.end = n.start + Duration::days(MAX_WINDOW_DAYS + 1);
        assert_eq!(availability(&v, &n, zone()).0, 0.0);
    }
}
