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
    /// Its weight: 0 when it does not count for the need (see [`Prepared`]).
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

/// What scores needs against volunteers, many at once: the weights (normalised once), the
/// street's time zone, and the skills the needs ask for, each given a bit, so a pair's skills
/// are compared with a mask rather than by name. Recommendations and batches score through
/// it alike, so a pair's score is the same whichever asks.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Each factor's weight (negative ones count as 0), in the order of [`Factor`]; a need
    /// turns them into its shares ([`Prepared`]).
    weight: [f64; 5],
    /// The weights as configured, for the reasons.
    weights: Weights,
    /// One over the distance from which distance counts nothing (0 when it is 0).
    per_km: f64,
    zone: FixedOffset,
    /// The skills asked for, by name, with their bit.
    skills: std::collections::HashMap<String, usize>,
}

/// Room for every skill of a vocabulary (at most 200).
type Mask = [u64; 4];

fn set(mask: &mut Mask, bit: usize) {
    mask[bit / 64] |= 1 << (bit % 64);
}

/// A need made ready to be scored against many volunteers: its skills as a mask, its window cut
/// into local days, its place in radians, worked out once.
#[derive(Debug, Clone)]
pub struct Prepared<'a> {
    /// The need.
    pub need: Need<'a>,
    mask: Mask,
    /// Distinct skills asked for, and one over it (1 when none are).
    asked: u32,
    per_skill: f64,
    /// The window in the street's local time, cut at midnights: (weekday 1–7, from minute, to
    /// minute) of each day it touches.
    segments: Vec<(u8, i64, i64)>,
    /// The window's length in minutes, and one over it (0 when availability cannot count).
    whole: i64,
    per_minute: f64,
    hours: f64,
    /// Its place: latitude and longitude in radians, and the cosine of the latitude.
    place: Option<(f64, f64, f64)>,
    /// Each factor's weight over the weights of the factors that count for this need, in the
    /// order of [`Factor`]: 0 for a factor of no weight, and for one that cannot tell one
    /// volunteer from another here (no skills asked for, no window to be free in, no place to
    /// be near, no household to have served), which would only lower every score alike.
    share: [f64; 5],
}

impl Prepared<'_> {
    /// Its window in the street's local time, cut at midnights: two needs of the same window
    /// find every volunteer free for as many minutes.
    pub fn window(&self) -> &[(u8, i64, i64)] {
        &self.segments
    }
}

/// A volunteer made ready to be scored against many needs.
#[derive(Debug, Clone, Copy)]
pub struct Fit<'a> {
    /// The volunteer.
    pub volunteer: Volunteer<'a>,
    mask: Mask,
    /// Their home in radians.
    home: Option<(f64, f64)>,
    /// The load factor's value: it does not depend on the need.
    load: f64,
}

impl Matcher {
    /// A matcher for `needs` under `weights`, in the street's time zone `zone`.
    pub fn new<'n>(weights: &Weights, zone: FixedOffset, needs: impl IntoIterator<Item = &'n Need<'n>>) -> Self {
        let weight = [weights.skills, weights.availability, weights.distance, weights.load, weights.continuity]
            .map(|w| if w > 0.0 { w } else { 0.0 });
        let mut skills = std::collections::HashMap::new();
        for need in needs {
            for skill in need.required_skills {
                let next = skills.len();
                if next < 64 * 4 {
                    skills.entry(skill.clone()).or_insert(next);
                }
            }
        }
        let per_km = if weights.max_distance_km > 0.0 { 1.0 / weights.max_distance_km } else { 0.0 };
        Self { weight, weights: *weights, per_km, zone, skills }
    }

    fn mask(&self, skills: &[String]) -> Mask {
        let mut mask = [0; 4];
        for skill in skills {
            // A few skills asked for (one need's) are found by comparing names; many by hashing.
            let bit = if self.skills.len() <= 8 {
                self.skills.iter().find(|(name, _)| *name == skill).map(|(_, bit)| *bit)
            } else {
                self.skills.get(skill).copied()
            };
            if let Some(bit) = bit {
                set(&mut mask, bit);
            }
        }
        mask
    }

    /// `need` ready to be scored (one of the needs the matcher was made for: others' skills
    /// count as not had).
    pub fn need<'a>(&self, need: Need<'a>) -> Prepared<'a> {
        let whole = (need.end - need.start).num_minutes();
        let mut segments = Vec::new();
        if whole > 0 && whole <= MAX_WINDOW_DAYS * 24 * 60 {
            let (mut day_start, end) = (need.start.with_timezone(&self.zone), need.end.with_timezone(&self.zone));
            while day_start < end {
                let midnight = day_start.with_time(NaiveTime::MIN).single().unwrap_or(day_start) + Duration::days(1);
                let day_end = midnight.min(end);
                let weekday = day_start.weekday().number_from_monday() as u8;
                let from = i64::from(day_start.hour() * 60 + day_start.minute());
                segments.push((weekday, from, from + (day_end - day_start).num_minutes()));
                day_start = day_end;
            }
        }
        let mask = self.mask(need.required_skills);
        let asked = mask.iter().map(|w| w.count_ones()).sum();
        let place = need.place.map(|(lat, lon)| (lat.to_radians(), lon.to_radians(), lat.to_radians().cos()));
        let per_skill = if asked == 0 { 1.0 } else { 1.0 / f64::from(asked) };
        let per_minute = if whole <= 0 || whole > MAX_WINDOW_DAYS * 24 * 60 { 0.0 } else { 1.0 / whole as f64 };
        let counts = [asked > 0, per_minute > 0.0, place.is_some(), true, !need.household.is_empty()];
        let mut share = self.weight;
        for (share, counts) in share.iter_mut().zip(counts) {
            if !counts {
                *share = 0.0;
            }
        }
        let sum: f64 = share.iter().sum();
        let share = share.map(|w| if sum > 0.0 { w / sum } else { 0.0 });
        Prepared { mask, asked, per_skill, segments, whole, per_minute, hours: need.hours(), place, need, share }
    }

    /// `volunteer` ready to be scored.
    pub fn volunteer<'a>(&self, volunteer: Volunteer<'a>) -> Fit<'a> {
        let load = if volunteer.monthly_cap_hours <= 0.0 {
            0.0
        } else {
            (1.0 - volunteer.hours_this_month / volunteer.monthly_cap_hours).clamp(0.0, 1.0)
        };
        Fit {
            mask: self.mask(volunteer.skills),
            home: volunteer.home.map(|(lat, lon)| (lat.to_radians(), lon.to_radians())),
            load,
            volunteer,
        }
    }

    /// Whether the volunteer may take the need: [`eligible`], on the prepared pair.
    pub fn eligible(&self, fit: &Fit<'_>, need: &Prepared<'_>) -> bool {
        let v = &fit.volunteer;
        v.hours_this_month + need.hours <= v.monthly_cap_hours + 1e-9
            && !v.booked.iter().any(|(start, end)| *start < need.need.end && need.need.start < *end)
    }

    fn measure(&self, fit: &Fit<'_>, need: &Prepared<'_>) -> Measures {
        let had = skills_had(fit, need);
        let free = free_minutes(&need.segments, fit.volunteer.availability);
        let km = distance_km(fit.home, need.place);
        let served = served(fit, need);
        Measures {
            asked: need.asked,
            per_skill: need.per_skill,
            had,
            free,
            whole: need.whole,
            per_minute: need.per_minute,
            km,
            served,
        }
    }

    /// Each factor's value (0..=1), in the order of [`Factor`].
    fn values(&self, m: &Measures, fit: &Fit<'_>) -> [f64; 5] {
        let skills = if m.asked == 0 { 1.0 } else { f64::from(m.had) * m.per_skill };
        let availability = m.free as f64 * m.per_minute;
        let continuity = if m.served { 1.0 } else { 0.0 };
        [skills, availability, self.nearness(m.km), fit.load, continuity].map(|v| v.clamp(0.0, 1.0))
    }

    /// How well the volunteer fits the need, 0..=1: [`Matcher::score`]'s total, without the
    /// reasons (what a batch scores every pair with, so it works out only what counts for the
    /// need). Each factor's value is [`Matcher::values`]' and they are added in the same order,
    /// so the two agree to the last bit.
    #[inline]
    pub fn total(&self, fit: &Fit<'_>, need: &Prepared<'_>) -> f64 {
        self.total_with(fit, need, || free_minutes(&need.segments, fit.volunteer.availability))
    }

    /// [`Matcher::total`], with the minutes of the need's window in the volunteer's free time
    /// (what [`Matcher::free_minutes`] says) from `free`, asked only when availability counts
    /// for the need: a batch works them out once for all its needs of one window.
    #[inline]
    pub fn total_with(&self, fit: &Fit<'_>, need: &Prepared<'_>, free: impl FnOnce() -> i64) -> f64 {
        let share = &need.share;
        let mut total = 0.0;
        if share[0] > 0.0 {
            total += (f64::from(skills_had(fit, need)) * need.per_skill).clamp(0.0, 1.0) * share[0];
        }
        if share[1] > 0.0 {
            total += (free() as f64 * need.per_minute).clamp(0.0, 1.0) * share[1];
        }
        if share[2] > 0.0 {
            total += self.nearness(distance_km(fit.home, need.place)) * share[2];
        }
        total += fit.load * share[3];
        if share[4] > 0.0 && served(fit, need) {
            total += share[4];
        }
        total
    }

    /// Minutes of the need's window in the volunteer's weekly free time.
    pub fn free_minutes(&self, fit: &Fit<'_>, need: &Prepared<'_>) -> i64 {
        free_minutes(&need.segments, fit.volunteer.availability)
    }

    /// The distance factor's value for a distance (`None` when not known).
    #[inline]
    fn nearness(&self, km: Option<f64>) -> f64 {
        match km {
            Some(km) if self.per_km > 0.0 => (1.0 - km * self.per_km).clamp(0.0, 1.0),
            Some(_) => 0.0,
            None => 0.5,
        }
    }

    /// How well the volunteer fits the need, with a reason for each factor that counts.
    /// Eligibility is [`Matcher::eligible`]'s to say, not this.
    pub fn score(&self, fit: &Fit<'_>, need: &Prepared<'_>) -> Score {
        let m = self.measure(fit, need);
        let values = self.values(&m, fit);
        let v = &fit.volunteer;
        let detail = |factor: Factor| match factor {
            Factor::Skills if m.asked == 0 => "no skills asked for".to_owned(),
            Factor::Skills => format!("{} of {} skills", m.had, m.asked),
            Factor::Availability if m.whole <= 0 => "the need has no time".to_owned(),
            Factor::Availability if m.whole > MAX_WINDOW_DAYS * 24 * 60 => {
                format!("the need is longer than {MAX_WINDOW_DAYS} days")
            }
            Factor::Availability => format!("{} of {} minutes in their free time", m.free, m.whole),
            Factor::Distance if need.place.is_none() => "the need has no place".to_owned(),
            Factor::Distance => m.km.map_or_else(|| "distance not known".to_owned(), |km| format!("{km:.1} km")),
            Factor::Load => format!("{:.1} of {:.1} hours this month", v.hours_this_month, v.monthly_cap_hours),
            Factor::Continuity if need.need.household.is_empty() => "the need is for no household".to_owned(),
            Factor::Continuity if m.served => "served this household before".to_owned(),
            Factor::Continuity => "not served this household before".to_owned(),
        };
        // Every factor of some weight is shown; one that does not count for this need with no
        // weight, and its detail says why.
        let reasons = values
            .iter()
            .zip(FACTORS)
            .zip(self.weight.iter().zip(need.share))
            .filter(|(_, (weight, _))| **weight > 0.0)
            .map(|((value, factor), (_, share))| Reason {
                factor,
                value: *value,
                weight: if share > 0.0 { weight_of(&self.weights, factor) } else { 0.0 },
                detail: detail(factor),
            })
            .collect();
        Score { total: self.total(fit, need), reasons }
    }
}

/// What a score is worked out from, for one volunteer and one need: no allocation, so a batch
/// can work it out for every pair.
#[derive(Debug, Clone, Copy)]
struct Measures {
    /// Distinct skills asked for (and one over it), and had of them.
    asked: u32,
    per_skill: f64,
    had: u32,
    /// Minutes of the window in the volunteer's free time, and of the whole window (and one
    /// over it, 0 when availability cannot count).
    free: i64,
    whole: i64,
    per_minute: f64,
    /// Kilometres from home to the need's place, when both are known.
    km: Option<f64>,
    /// Whether they served the need's household before.
    served: bool,
}

const EARTH_KM: f64 = 6371.0;

/// How many of the skills the need asks for the volunteer has.
#[inline]
fn skills_had(fit: &Fit<'_>, need: &Prepared<'_>) -> u32 {
    need.mask.iter().zip(&fit.mask).map(|(a, b)| (a & b).count_ones()).sum()
}

/// Minutes of a need's window (cut into local days: weekday, from, to) inside a volunteer's
/// weekly free time.
#[inline]
fn free_minutes(segments: &[(u8, i64, i64)], availability: &[WeeklyRange]) -> i64 {
    let mut free = 0;
    for &(weekday, from, to) in segments {
        for r in availability.iter().filter(|r| r.weekday == weekday) {
            free += (to.min(i64::from(r.end_minute)) - from.max(i64::from(r.start_minute))).max(0);
        }
    }
    free
}

/// From a home to a place (both in radians, the place with the cosine of its latitude), when
/// both are known. At a street's scale (a few kilometres) the flat-earth distance differs from
/// the great-circle one by far less than a metre.
#[inline]
fn distance_km(home: Option<(f64, f64)>, place: Option<(f64, f64, f64)>) -> Option<f64> {
    match (home, place) {
        (Some((lat, lon)), Some((nlat, nlon, cos))) => {
            let (dy, dx) = (lat - nlat, (lon - nlon) * cos);
            Some(EARTH_KM * (dx * dx + dy * dy).sqrt())
        }
        _ => None,
    }
}

/// Whether the volunteer served the need's household before.
#[inline]
fn served(fit: &Fit<'_>, need: &Prepared<'_>) -> bool {
    let household = need.need.household;
    !household.is_empty() && fit.volunteer.served_households.iter().any(|h| h == household)
}

const FACTORS: [Factor; 5] = [Factor::Skills, Factor::Availability, Factor::Distance, Factor::Load, Factor::Continuity];

fn weight_of(weights: &Weights, factor: Factor) -> f64 {
    match factor {
        Factor::Skills => weights.skills,
        Factor::Availability => weights.availability,
        Factor::Distance => weights.distance,
        Factor::Load => weights.load,
        Factor::Continuity => weights.continuity,
    }
}

/// How well `volunteer` fits `need` under `weights`, in the street's time zone `zone` (for
/// weekly availability), with a reason for each factor. Eligibility is [`eligible`]'s to say,
/// not this.
pub fn score(volunteer: &Volunteer<'_>, need: &Need<'_>, weights: &Weights, zone: FixedOffset) -> Score {
    let matcher = Matcher::new(weights, zone, [need]);
    matcher.score(&matcher.volunteer(*volunteer), &matcher.need(*need))
}

/// The great-circle distance between two (latitude, longitude) points, in kilometres.
pub fn haversine_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_KM * a.sqrt().min(1.0).asin()
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
/// heap of `k` on the totals alone; the reasons are worked out for the `k` kept.
pub fn recommend<'a>(
    need: &Need<'_>,
    candidates: impl IntoIterator<Item = (usize, Volunteer<'a>)>,
    k: usize,
    weights: &Weights,
    zone: FixedOffset,
) -> Vec<(usize, Score)> {
    use std::cmp::{Ordering, Reverse};
    use std::collections::BinaryHeap;

    /// A candidate in the heap: ordered by total, then earlier first.
    struct Ranked<'a>(usize, f64, Fit<'a>);
    impl PartialEq for Ranked<'_> {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other) == Ordering::Equal
        }
    }
    impl Eq for Ranked<'_> {}
    impl PartialOrd for Ranked<'_> {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Ranked<'_> {
        fn cmp(&self, other: &Self) -> Ordering {
            self.1.total_cmp(&other.1).then_with(|| other.0.cmp(&self.0))
        }
    }

    if k == 0 {
        return Vec::new();
    }
    let matcher = Matcher::new(weights, zone, [need]);
    let prepared = matcher.need(*need);
    let mut best: BinaryHeap<Reverse<Ranked<'a>>> = BinaryHeap::with_capacity(k + 1);
    for (index, volunteer) in candidates {
        let fit = matcher.volunteer(volunteer);
        if !matcher.eligible(&fit, &prepared) {
            continue;
        }
        let ranked = Ranked(index, matcher.total(&fit, &prepared), fit);
        if best.len() < k {
            best.push(Reverse(ranked));
        } else if best.peek().is_some_and(|Reverse(worst)| ranked > *worst) {
            best.pop();
            best.push(Reverse(ranked));
        }
    }
    let mut ranked: Vec<Ranked<'a>> = best.into_iter().map(|Reverse(r)| r).collect();
    ranked.sort_by(|a, b| b.cmp(a));
    ranked.into_iter().map(|Ranked(index, _, fit)| (index, matcher.score(&fit, &prepared))).collect()
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
        // No skills asked for: shown, but of no weight (everyone has all of none); no home:
        // one half, said so, and the whole score.
        assert_eq!((s.reasons[0].weight, s.reasons[0].detail.as_str()), (0.0, "no skills asked for"));
        assert!((s.total - 0.5).abs() < 1e-9, "{s:?}");
        assert_eq!((s.reasons[1].weight, s.reasons[1].detail.as_str()), (1.0, "distance not known"));
    }

    #[test]
    fn a_factor_that_tells_no_one_apart_does_not_lower_every_score() {
        // An activity for no household, at no place: a volunteer with the skill, free at the
        // time and unloaded fits it perfectly.
        let (have, free) = (strings(&["cooking"]), [WeeklyRange { weekday: 6, start_minute: 0, end_minute: 1440 }]);
        let v = Volunteer {
            skills: &have,
            availability: &free,
            home: Some((35.545, 106.660)),
            hours_this_month: 0.0,
            monthly_cap_hours: 10.0,
            booked: &[],
            served_households: &[],
        };
        let n = Need { place: None, ..need(&have, "") };
        let s = score(&v, &n, &Weights::default(), zone());
        assert!((s.total - 1.0).abs() < 1e-9, "{s:?}");
        let of = |f| s.reasons.iter().find(|r| r.factor == f).map(|r| (r.weight, r.detail.clone())).expect("shown");
        assert_eq!(of(Factor::Continuity), (0.0, "the need is for no household".into()));
        assert_eq!(of(Factor::Distance), (0.0, "the need has no place".into()));
        assert_eq!(of(Factor::Skills).0, 0.35);
    }

    #[test]
    fn availability_follows_the_local_week_across_midnight() {
        // Sunday 23:00 to Monday 01:00 local; free Sunday 22:00–24:00 and Monday 00:30–02:00.
        let free = [
            WeeklyRange { weekday: 7, start_minute: 22 * 60, end_minute: 1440 },
            WeeklyRange { weekday: 1, start_minute: 30, end_minute: 120 },
        ];
        let v = Volunteer {
            skills: &[],
            availability: &free,
            home: None,
            hours_this_month: 0.0,
            monthly_cap_hours: 10.0,
            booked: &[],
            served_households: &[],
        };
        let mut n = need(&[], "");
        (n.start, n.end) = (at("2026-12-06T23:00:00+08:00"), at("2026-12-07T01:00:00+08:00"));
        let free_in = |zone: FixedOffset| {
            let m = Matcher::new(&Weights::default(), zone, [&n]);
            m.measure(&m.volunteer(v), &m.need(n)).free
        };
        assert_eq!(free_in(zone()), 60 + 30);
        // The same instants read in UTC fall on other days and hours: the zone matters.
        assert_eq!(free_in(FixedOffset::east_opt(0).expect("UTC")), 0);
    }

    #[test]
    fn the_total_alone_is_the_scores_and_distance_is_the_great_circles_at_a_streets_scale() {
        let free = [WeeklyRange { weekday: 6, start_minute: 9 * 60, end_minute: 10 * 60 }];
        let (skills, want) = (strings(&["cooking"]), strings(&["cooking", "repair"]));
        let served = strings(&["streets/zhongjie/households/h1"]);
        for (n, home) in [(35.54, 106.66), (35.56, 106.70), (35.50, 106.62)].into_iter().enumerate() {
            let v = Volunteer {
                skills: &skills,
                availability: &free,
                home: Some(home),
                hours_this_month: n as f64 * 3.0,
                monthly_cap_hours: 20.0,
                booked: &[],
                served_households: if n == 1 { &served } else { &[] },
            };
            let mut wanted = need(&want, "streets/zhongjie/households/h1");
            wanted.place = Some((35.545, 106.665));
            let m = Matcher::new(&Weights::default(), zone(), [&wanted]);
            let (fit, prepared) = (m.volunteer(v), m.need(wanted));
            let s = score(&v, &wanted, &Weights::default(), zone());
            assert_eq!(m.total(&fit, &prepared), s.total, "{s:?}");
            // The total is the mean of the reasons shown, by their weights.
            let weights: f64 = s.reasons.iter().map(|r| r.weight).sum();
            let mean = s.reasons.iter().map(|r| r.value * r.weight).sum::<f64>() / weights;
            assert!((mean - s.total).abs() < 1e-12, "{mean} against {s:?}");
            assert_eq!(m.eligible(&fit, &prepared), eligible(&v, &wanted).is_ok());
            let km = haversine_km(home, (35.545, 106.665));
            let flat = m.measure(&fit, &prepared).km.expect("both places known");
            assert!((flat - km).abs() < 0.001, "{flat} km against {km} km");
        }
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
        let s = score(&v, &n, &Weights::default(), zone());
        assert_eq!((s.reasons[1].value, s.reasons[1].detail.as_str()), (0.0, "the need is longer than 62 days"));
    }
}
