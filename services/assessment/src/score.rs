//! How a month is scored: the scheme checked into rules, a worker's figures of the month, and
//! the computation — each indicator's value and points, each deduction, the score within the
//! floor and cap, the stars — with every number's formula as text. Pure and deterministic: the
//! same rules and figures give the same computation, to the last bit.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use civic_kit::error::{Error, Result, Violations};
use civic_proto::assessment::scheme::deduction::Kind;
use civic_proto::assessment::{DeductionLine, Indicator, IndicatorScore, Input, Scheme};

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// Parses `YYYY-MM` (years 2000 to 2999), reporting anything else on `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self> {
        let bad = || Error::invalid(field, "must be a month, YYYY-MM");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let (year, month) = (y.parse::<i32>().map_err(|_| bad())?, m.parse::<u32>().map_err(|_| bad())?);
        if !(2000..=2999).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }

    /// The month a local day falls in.
    pub fn of(day: NaiveDate) -> Self {
        Self { year: day.year(), month: day.month() }
    }

    /// The month after.
    pub fn next(self) -> Self {
        if self.month == 12 { Self { year: self.year + 1, month: 1 } } else { Self { month: self.month + 1, ..self } }
    }

    /// The month before.
    pub fn previous(self) -> Self {
        if self.month == 1 { Self { year: self.year - 1, month: 12 } } else { Self { month: self.month - 1, ..self } }
    }

    /// Its first day.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// How many days it has.
    pub fn days(self) -> u32 {
        u32::try_from((self.next().first_day() - self.first_day()).num_days()).unwrap_or(31)
    }

    /// When it begins, in the street's time zone.
    pub fn start(self, zone: FixedOffset) -> DateTime<Utc> {
        let midnight = self.first_day().and_hms_opt(0, 0, 0).unwrap_or_default();
        zone.from_local_datetime(&midnight).single().map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    /// When it ends (the next month's start).
    pub fn end(self, zone: FixedOffset) -> DateTime<Utc> {
        self.next().start(zone)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The indicators that are counts (their target is a quota, not a rate).
fn is_count(indicator: Indicator) -> bool {
    matches!(indicator, Indicator::NeedsPlaced | Indicator::VolunteerHours)
}

/// A scheme's rules, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// `(indicator, weight, target)`, in the scheme's order.
    pub weights: Vec<(Indicator, f64, f64)>,
    /// `(kind, points each, at most)`; at most 0 is no limit.
    pub deductions: Vec<(Kind, f64, f64)>,
    /// The lowest and highest score after deductions.
    pub floor: f64,
    /// See `floor`.
    pub cap: f64,
    /// The least score for one to five stars.
    pub thresholds: [f64; 5],
    /// The small-sample guard.
    pub min_households: u32,
    /// See `min_households`.
    pub min_issues: u32,
}

impl Rules {
    /// Checks a scheme sent to CreateScheme, every problem named (`scheme.weights[1].weight`).
    pub fn check(s: &Scheme) -> Result<Self> {
        let mut v = Violations::new();
        if s.display_name.trim().is_empty() {
            v.add("scheme.display_name", "is required");
        }
        if Month::parse("scheme.effective_month", &s.effective_month).is_err() {
            v.add("scheme.effective_month", "must be a month, YYYY-MM");
        }
        if s.weights.is_empty() {
            v.add("scheme.weights", "name at least one indicator");
        }
        let mut weights = Vec::with_capacity(s.weights.len());
        for (i, w) in s.weights.iter().enumerate() {
            let at = |f: &str| format!("scheme.weights[{i}].{f}");
            let indicator = w.indicator();
            if indicator == Indicator::Unspecified {
                v.add(at("indicator"), "is required");
            } else if weights.iter().any(|(seen, _, _)| *seen == indicator) {
                v.add(at("indicator"), "is named twice");
            }
            if !(w.weight > 0.0 && w.weight <= 100.0) {
                v.add(at("weight"), "must be greater than 0 and at most 100");
            }
            let target = if w.target == 0.0 { 1.0 } else { w.target };
            if is_count(indicator) {
                if !(1.0..=100_000.0).contains(&target) {
                    v.add(at("target"), "must be a count of 1 to 100000 for this indicator");
                }
            } else if !(target > 0.0 && target <= 1.0) {
                v.add(at("target"), "must be a rate greater than 0 and at most 1 (1 when unset)");
            }
            weights.push((indicator, w.weight, target));
        }
        let sum: f64 = weights.iter().map(|(_, w, _)| w).sum();
        if !weights.is_empty() && (sum - 100.0).abs() > 1e-6 {
            v.add("scheme.weights", format!("the weights must add up to 100, not {}", round2(sum)));
        }
        let mut deductions = Vec::with_capacity(s.deductions.len());
        for (i, d) in s.deductions.iter().enumerate() {
            let at = |f: &str| format!("scheme.deductions[{i}].{f}");
            let kind = d.kind();
            if kind == Kind::Unspecified {
                v.add(at("kind"), "is required");
            } else if deductions.iter().any(|(seen, _, _)| *seen == kind) {
                v.add(at("kind"), "is named twice");
            }
            if !(d.points > 0.0 && d.points <= 100.0) {
                v.add(at("points"), "must be greater than 0 and at most 100");
            }
            if !(0.0..=100.0).contains(&d.at_most) {
                v.add(at("at_most"), "must be 0 (no limit) to 100");
            }
            deductions.push((kind, d.points, d.at_most));
        }
        let cap = if s.cap == 0.0 { 100.0 } else { s.cap };
        if !(0.0..=100.0).contains(&s.floor) {
            v.add("scheme.floor", "must be 0 to 100");
        }
        if !(cap > s.floor && cap <= 100.0) {
            v.add("scheme.cap", "must be above the floor and at most 100 (100 when unset)");
        }
        let mut thresholds = [0.0; 5];
        if s.star_thresholds.len() != 5 {
            v.add("scheme.star_thresholds", "give five thresholds, for one to five stars");
        } else {
            thresholds.copy_from_slice(&s.star_thresholds);
            if thresholds.windows(2).any(|w| w[0] >= w[1]) || thresholds.iter().any(|t| !(0.0..=100.0).contains(t)) {
                v.add("scheme.star_thresholds", "must ascend, each 0 to 100");
            }
        }
        let count = |field: &str, n: i32, max: i32, v: &mut Violations| {
            if !(0..=max).contains(&n) {
                v.add(field, format!("must be 0 to {max}"));
            }
            u32::try_from(n).unwrap_or(0)
        };
        if let Some(y) = &s.year_end {
            if !(y.months_weight > 0.0 && y.months_weight <= 100.0) {
                v.add("scheme.year_end.months_weight", "must be greater than 0 and at most 100");
            }
            if !(0.0..=100.0).contains(&y.award_score) {
                v.add("scheme.year_end.award_score", "must be 0 to 100");
            }
            if !(0..=12).contains(&y.award_months) {
                v.add("scheme.year_end.award_months", "must be 0 to 12");
            }
        }
        let min_households = count("scheme.min_households", s.min_households, 100_000, &mut v);
        let min_issues = count("scheme.min_issues", s.min_issues, 10_000, &mut v);
        v.finish()?;
        Ok(Self { weights, deductions, floor: s.floor, cap, thresholds, min_households, min_issues })
    }

    /// The stars a score earns.
    pub fn stars(&self, score: f64) -> i32 {
        self.thresholds.iter().filter(|t| score >= **t).count() as i32
    }
}

/// Whether a key household was visited as often as the policy asks all month: no gap between the
/// month's start, its visits (sorted) and the month's end longer than `interval_days` — the
/// grid service's rule for its monthly summary.
pub fn key_on_time(start: DateTime<Utc>, end: DateTime<Utc>, interval_days: i64, visits: &[DateTime<Utc>]) -> bool {
    let interval = Duration::days(interval_days.max(1));
    let mut last = start;
    for t in visits.iter().chain(std::iter::once(&end)) {
        if *t - last > interval {
            return false;
        }
        last = (*t).max(last);
    }
    true
}

/// A worker's figures of a month, from the facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Households of the worker's grids at the month's end.
    pub households: u32,
    /// Of those, visited in the month.
    pub households_visited: u32,
    /// Key households at the month's end.
    pub key_households: u32,
    /// Of those, visited as often as the policy asks all month.
    pub key_on_time: u32,
    /// Issues taken in the month in the worker's grids.
    pub issues: u32,
    /// Of those, answered by their response deadline.
    pub answered_on_time: u32,
    /// Of those, resolved or explained by the end of the review window.
    pub resolved: u32,
    /// Of the resolved, resolved by their deadline.
    pub resolved_on_time: u32,
    /// Residents' ratings given in the month, and their sum (1 to 5 each).
    pub ratings: u32,
    /// See `ratings`.
    pub rating_sum: u32,
    /// Escalations in the month.
    pub escalations: u32,
    /// The month's summary: `(days without a record, submitted on time)`, if submitted.
    pub summary: Option<(u32, bool)>,
    /// Days in the month.
    pub days: u32,
    /// Volunteer needs the worker placed in the month.
    pub needs_placed: u32,
    /// Volunteer minutes served in the worker's grids, confirmed in the month.
    pub volunteer_minutes: u64,
    /// The ratings of the month's closed satisfaction surveys of the worker's grids (those shown),
    /// and their sum.
    pub survey_ratings: u32,
    /// See `survey_ratings`.
    pub survey_rating_sum: u32,
}

/// The computed part of a review.
#[derive(Debug, Clone, PartialEq)]
pub struct Computation {
    /// Each indicator's part.
    pub indicators: Vec<IndicatorScore>,
    /// Each deduction's part.
    pub deductions: Vec<DeductionLine>,
    /// The score as computed.
    pub score: f64,
    /// Whether the worker is ranked.
    pub enough_data: bool,
    /// The computation as text.
    pub explanation: String,
}

/// `x` to two decimals (how every score is kept and shown).
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `x` to four decimals (how every rate is kept and shown).
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn input(name: &str, value: f64) -> Input {
    Input { name: name.into(), value }
}

/// An indicator's value, inputs and how the value was found; `None` for the value when there
/// was nothing to measure (the indicator then earns its whole weight).
fn measure(indicator: Indicator, f: &Figures) -> (Option<f64>, Vec<Input>, String) {
    let rate = |part: u32, whole: u32, what: &str, of: &str| {
        let inputs = vec![input(what, f64::from(part)), input(of, f64::from(whole))];
        if whole == 0 {
            (None, inputs, format!("no {of}"))
        } else {
            let value = round4(f64::from(part) / f64::from(whole));
            (Some(value), inputs, format!("{part} {what} ÷ {whole} {of} = {value}"))
        }
    };
    match indicator {
        Indicator::HouseholdCoverage => rate(f.households_visited, f.households, "households visited", "households"),
        Indicator::KeyVisitsOnTime => {
            rate(f.key_on_time, f.key_households, "key households visited on time", "key households")
        }
        Indicator::Satisfaction => {
            let inputs = vec![input("ratings", f64::from(f.ratings)), input("sum of ratings", f64::from(f.rating_sum))];
            if f.ratings == 0 {
                (None, inputs, "no ratings".into())
            } else {
                let mean = f64::from(f.rating_sum) / f64::from(f.ratings);
                let value = round4(mean / 5.0);
                (Some(value), inputs, format!("{} ÷ {} ratings ÷ 5 stars = {value}", f.rating_sum, f.ratings))
            }
        }
        Indicator::SurveyRating => {
            let inputs = vec![
                input("survey ratings", f64::from(f.survey_ratings)),
                input("sum of survey ratings", f64::from(f.survey_rating_sum)),
            ];
            if f.survey_ratings == 0 {
                (None, inputs, "no survey closed".into())
            } else {
                let value = round4(f64::from(f.survey_rating_sum) / f64::from(f.survey_ratings) / 5.0);
                let formula =
                    format!("{} ÷ {} survey ratings ÷ 5 stars = {value}", f.survey_rating_sum, f.survey_ratings);
                (Some(value), inputs, formula)
            }
        }
        Indicator::ResponseRate => rate(f.answered_on_time, f.issues, "answered on time", "issues taken"),
        Indicator::ResolutionRate => rate(f.resolved, f.issues, "resolved", "issues taken"),
        Indicator::OnTimeRate => rate(f.resolved_on_time, f.resolved, "resolved on time", "issues resolved"),
        Indicator::DiaryCompleteness => {
            let days = f.days.max(1);
            match f.summary {
                Some((missing, _)) => {
                    let with = days.saturating_sub(missing);
                    let value = round4(f64::from(with) / f64::from(days));
                    let inputs = vec![input("days with a record", f64::from(with)), input("days", f64::from(days))];
                    (Some(value), inputs, format!("{with} days with a record ÷ {days} days = {value}"))
                }
                None => (Some(0.0), vec![input("days", f64::from(days))], "no summary submitted = 0".into()),
            }
        }
        Indicator::NeedsPlaced => {
            let n = f64::from(f.needs_placed);
            (Some(n), vec![input("needs placed", n)], format!("{} needs placed", f.needs_placed))
        }
        Indicator::VolunteerHours => {
            let hours = round2(f.volunteer_minutes as f64 / 60.0);
            let inputs = vec![input("minutes served", f.volunteer_minutes as f64)];
            (Some(hours), inputs, format!("{} minutes ÷ 60 = {hours} hours", f.volunteer_minutes))
        }
        Indicator::Unspecified => (None, Vec::new(), "not an indicator".into()),
    }
}

/// How many times a deduction's kind happened.
fn occurrences(kind: Kind, f: &Figures) -> (u32, &'static str) {
    match kind {
        Kind::EscalatedIssue => (f.escalations, "escalations"),
        Kind::LateSummary => (u32::from(!matches!(f.summary, Some((_, true)))), "summaries late or missing"),
        Kind::MissedKeyVisit => (f.key_households.saturating_sub(f.key_on_time), "key households not visited on time"),
        Kind::Unspecified => (0, "nothing"),
    }
}

/// Scores a worker's month by `rules`.
pub fn compute(rules: &Rules, f: &Figures) -> Computation {
    let mut text = String::new();
    let mut indicators = Vec::with_capacity(rules.weights.len());
    let mut earned = 0.0;
    for &(indicator, weight, target) in &rules.weights {
        let (value, inputs, found) = measure(indicator, f);
        let (points, formula) = match value {
            Some(value) => {
                let share = (value / target).min(1.0);
                let points = round2(weight * share);
                (points, format!("{found}; {weight} × min(1, {value} ÷ {target}) = {points}"))
            }
            None => (weight, format!("{found}: the whole weight, {weight}")),
        };
        earned += points;
        let _ = writeln!(text, "{}: {formula}", indicator.as_str_name());
        indicators.push(IndicatorScore {
            indicator: indicator as i32,
            value: value.unwrap_or(0.0),
            weight,
            target,
            points,
            inputs,
            formula,
        });
    }
    let earned = round2(earned);
    let mut deductions = Vec::with_capacity(rules.deductions.len());
    let mut taken = 0.0;
    for &(kind, each, at_most) in &rules.deductions {
        let (count, what) = occurrences(kind, f);
        let raw = round2(f64::from(count) * each);
        let points = if at_most > 0.0 { raw.min(at_most) } else { raw };
        let limit = if at_most > 0.0 { format!(", at most {at_most}") } else { String::new() };
        let formula = format!("{count} {what} × {each}{limit} = {points}");
        let _ = writeln!(text, "{}: −{formula}", kind.as_str_name());
        taken += points;
        deductions.push(DeductionLine {
            kind: kind as i32,
            count: i32::try_from(count).unwrap_or(i32::MAX),
            points,
            formula,
        });
    }
    let taken = round2(taken);
    let score = round2((earned - taken).clamp(rules.floor, rules.cap));
    let _ =
        writeln!(text, "score: {earned} earned − {taken} deducted, within {} and {} = {score}", rules.floor, rules.cap);
    let enough_data = f.households >= rules.min_households && f.issues >= rules.min_issues;
    if !enough_data {
        let _ = writeln!(
            text,
            "not enough data to rank: {} households (at least {}), {} issues (at least {})",
            f.households, rules.min_households, f.issues, rules.min_issues
        );
    }
    Computation { indicators, deductions, score, enough_data, explanation: text }
}

#[cfg(test)]
mod tests {
    use civic_proto::assessment::scheme::{Deduction, Weight};

    use super::*;

    fn scheme() -> Scheme {
        let w = |i: Indicator, weight: f64, target: f64| Weight { indicator: i as i32, weight, target };
        Scheme {
            display_name: "考核办法".into(),
            effective_month: "2026-01".into(),
            weights: vec![
                w(Indicator::HouseholdCoverage, 30.0, 0.9),
                w(Indicator::Satisfaction, 30.0, 0.0),
                w(Indicator::ResolutionRate, 20.0, 0.0),
                w(Indicator::NeedsPlaced, 20.0, 4.0),
            ],
            deductions: vec![Deduction { kind: Kind::EscalatedIssue as i32, points: 2.0, at_most: 5.0 }],
            floor: 0.0,
            cap: 0.0,
            star_thresholds: vec![60.0, 70.0, 80.0, 90.0, 95.0],
            min_households: 10,
            min_issues: 1,
            ..Default::default()
        }
    }

    #[test]
    fn months_parse_strictly_and_know_their_bounds() {
        let m = Month::parse("month", "2026-02").expect("valid");
        assert_eq!(
            (m.to_string(), m.days(), m.next().to_string(), m.previous().to_string()),
            ("2026-02".into(), 28, "2026-03".into(), "2026-01".into())
        );
        assert_eq!(Month::parse("m", "2026-12").expect("valid").next().to_string(), "2027-01");
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-00", "abcd-ef", "1999-12"] {
            assert!(Month::parse("m", bad).is_err(), "{bad}");
        }
        let beijing = FixedOffset::east_opt(8 * 3600).expect("valid");
        assert_eq!(m.start(beijing).to_rfc3339(), "2026-01-31T16:00:00+00:00");
    }

    #[test]
    fn a_scheme_is_checked_field_by_field() {
        assert!(Rules::check(&scheme()).is_ok());
        let mut s = scheme();
        s.weights[0].weight = 40.0;
        s.weights[3].target = 0.5;
        s.star_thresholds = vec![60.0, 50.0, 80.0, 90.0, 95.0];
        s.effective_month = "2026-1".into();
        let e = Rules::check(&s).expect_err("invalid");
        let fields: Vec<&str> = e.violations().iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["scheme.effective_month", "scheme.weights[3].target", "scheme.weights", "scheme.star_thresholds"]
        );
    }

    #[test]
    fn every_number_is_explained_and_adds_up() {
        let rules = Rules::check(&scheme()).expect("valid");
        let f = Figures {
            households: 40,
            households_visited: 30,
            issues: 4,
            resolved: 3,
            ratings: 2,
            rating_sum: 9,
            escalations: 4,
            needs_placed: 2,
            days: 30,
            ..Default::default()
        };
        let c = compute(&rules, &f);
        let points: Vec<f64> = c.indicators.iter().map(|i| i.points).collect();
        // 30 × min(1, 0.75 ÷ 0.9) = 25; 30 × 0.9 = 27; 20 × 0.75 = 15; 20 × 2 ÷ 4 = 10.
        assert_eq!(points, vec![25.0, 27.0, 15.0, 10.0]);
        assert_eq!(c.deductions[0].points, 5.0, "four escalations × 2, at most 5");
        assert_eq!(c.score, 72.0);
        assert_eq!(rules.stars(c.score), 2);
        assert!(c.enough_data);
        assert!(c.explanation.contains("30 households visited ÷ 40 households = 0.75"), "{}", c.explanation);
        assert!(c.explanation.contains("score: 77 earned − 5 deducted, within 0 and 100 = 72"), "{}", c.explanation);
        assert_eq!(compute(&rules, &f), c, "the same figures, the same computation");
    }

    #[test]
    fn nothing_to_measure_earns_the_weight_and_too_little_is_not_ranked() {
        let rules = Rules::check(&scheme()).expect("valid");
        let c = compute(&rules, &Figures { households: 3, days: 30, needs_placed: 9, ..Default::default() });
        assert_eq!(c.indicators[1].points, 30.0);
        assert!(c.indicators[1].formula.contains("no ratings"));
        assert_eq!(c.indicators[3].points, 20.0, "more than the quota earns the weight, no more");
        assert!(!c.enough_data);
    }

    #[test]
    fn a_key_household_is_on_time_when_no_gap_is_longer_than_its_interval() {
        let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single().expect("valid");
        let end = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid");
        let day = |d: u32| Utc.with_ymd_and_hms(2026, 10, d, 10, 0, 0).single().expect("valid");
        assert!(key_on_time(start, end, 14, &[day(10), day(22)]));
        assert!(!key_on_time(start, end, 14, &[day(20)]));
        assert!(
            !key_on_time(start, end, 7, &[day(5), day(12), day(19)]),
            "the month's end is a week after the 19th and more"
        );
        assert!(key_on_time(start, end, 31, &[]));
    }
}
