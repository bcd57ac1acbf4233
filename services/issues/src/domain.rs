//! The issues service's rules: typed names, the limits of each source and category, the
//! deadline clock (working time, pauses, escalation levels) and every transition of an issue
//! and its referrals. Pure: each rule takes the time it applies at, so the tests set the clock.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use civic_kit::calendar::WorkCalendar;
use civic_kit::error::{Error, Result};
use civic_kit::names::{Collection, Name};
use civic_kit::time;
use civic_proto::issues::issue::{EscalationLevel, Source, State, Triage};
use civic_proto::issues::referral::State as ReferralState;
use civic_proto::issues::{Clock, Feedback, Issue, PauseReason, Referral};
use serde::{Deserialize, Serialize};

pub use civic_kit::names::{CommunityName, GridName};

/// `streets/{street}/issues/{issue}`.
pub struct IssuesCollection;
impl Collection for IssuesCollection {
    const COLLECTION: &'static str = "issues";
}
/// An issue's name.
pub type IssueName = Name<IssuesCollection>;

/// The most referrals an issue keeps.
pub const MAX_REFERRALS: usize = 20;

/// A length of time a limit allows: working hours (office hours only) or working days (to the
/// end of the n-th working day after the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Office hours.
    Hours(u32),
    /// Working days.
    Days(u32),
}

impl Span {
    /// Parses `4h` or `5d` (0 to 999).
    pub fn parse(text: &str) -> Option<Span> {
        let (number, unit) = text.trim().split_at(text.trim().len().checked_sub(1)?);
        let n: u32 = number.parse().ok().filter(|n| *n < 1000)?;
        match unit {
            "h" => Some(Span::Hours(n)),
            "d" => Some(Span::Days(n)),
            _ => None,
        }
    }

    /// The instant this span after `start` falls on.
    pub fn after(self, calendar: &WorkCalendar, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Span::Hours(h) => calendar.add_working_time(start, Duration::hours(i64::from(h))),
            Span::Days(d) => calendar.deadline(start, d),
        }
    }
}

/// One rule of the limits, as configured: a source (`app`, `hotline` … or `*`), a category (or
/// `*`), and the time to answer and to resolve (`4h`, `5d`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    /// The source, as `Issue.Source` names it in lowercase (`city_platform`), or `*`.
    pub source: String,
    /// The category, or `*`.
    pub category: String,
    /// The time to acknowledge.
    pub respond: String,
    /// The time to resolve or explain.
    pub resolve: String,
}

/// The limits that apply to an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The time to acknowledge.
    pub respond: Span,
    /// The time to resolve.
    pub resolve: Span,
}

/// The configured limits: the most specific rule wins (source and category, then category,
/// then source, then `*`/`*`); without one, 1 working day to answer and 5 to resolve.
#[derive(Debug, Clone)]
pub struct Limits {
    rules: Vec<(String, String, Limit)>,
}

/// A source as the limits and filters name it (`city_platform`).
pub fn source_key(source: Source) -> String {
    source.as_str_name().to_ascii_lowercase()
}

impl Limits {
    /// The limits of `rules`; the error names the rule at fault.
    pub fn new(rules: &[LimitRule]) -> std::result::Result<Self, String> {
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let known = r.source == "*"
                || Source::from_str_name(&r.source.to_ascii_uppercase()).is_some_and(|s| s != Source::Unspecified);
            if !known {
                return Err(format!(
                    "rule {i}: {:?} is not a source (app, walk_in, hotline, visit, meeting, city_platform or *)",
                    r.source
                ));
            }
            if r.category.is_empty() || r.category.len() > 40 {
                return Err(format!("rule {i}: the category must be 1 to 40 characters, or *"));
            }
            let span = |text: &str| {
                Span::parse(text).ok_or_else(|| format!("rule {i}: {text:?} is not a limit such as 4h or 5d"))
            };
            out.push((
                r.source.clone(),
                r.category.clone(),
                Limit { respond: span(&r.respond)?, resolve: span(&r.resolve)? },
            ));
        }
        Ok(Self { rules: out })
    }

    /// The limit of an issue of `source` and `category`.
    pub fn of(&self, source: Source, category: &str) -> Limit {
        let source = source_key(source);
        let score = |(s, c, _): &&(String, String, Limit)| {
            let s_ok = s == "*" || *s == source;
            let c_ok = c == "*" || c == category;
            (s_ok && c_ok).then_some(u8::from(c != "*") * 2 + u8::from(s != "*"))
        };
        self.rules
            .iter()
            .filter_map(|r| score(&r).map(|sc| (sc, r)))
            .max_by_key(|(sc, _)| *sc)
            .map(|(_, (_, _, l))| *l)
            .unwrap_or(Limit { respond: Span::Days(1), resolve: Span::Days(5) })
    }
}

/// The escalation policy: the community's leaders see an issue when it misses a deadline, the
/// street's when it is still overdue `to_street` later.
#[derive(Debug, Clone, Copy)]
pub struct Escalation {
    /// How long after a missed deadline the street sees it.
    pub to_street: Span,
}

/// An issue as the service keeps it: the message (without its etag) and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Its name.
    pub name: IssueName,
    /// Its version, the etag's counter.
    pub version: i64,
    /// The issue.
    pub issue: Issue,
}

/// One step, recorded on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The step's action word (`acknowledged`).
    pub action: &'static str,
    /// What the step tells.
    pub text: String,
    /// Whether the resident sees it.
    pub public: bool,
}

impl Step {
    fn public(action: &'static str, text: impl Into<String>) -> Self {
        Self { action, text: text.into(), public: true }
    }
    fn internal(action: &'static str, text: impl Into<String>) -> Self {
        Self { action, text: text.into(), public: false }
    }
}

/// Whether an issue in `state` is still being handled (it can be assigned, paused, merged).
pub fn is_open(state: State) -> bool {
    matches!(state, State::New | State::Acknowledged | State::InProgress | State::Referred | State::Reopened)
}

fn illegal(what: &str, state: State) -> Error {
    Error::failed_precondition(
        "ILLEGAL_TRANSITION",
        format!("an issue that is {} cannot be {what}", state.as_str_name()),
    )
}

fn ts(t: DateTime<Utc>) -> Option<pbjson_types::Timestamp> {
    Some(time::to_timestamp(t))
}

/// A stored timestamp as a time (the epoch when missing).
pub fn at(t: Option<&pbjson_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32))
}

impl Case {
    /// A new issue taken at `now`: NEW, its clock set from `limit`.
    pub fn take(name: IssueName, mut issue: Issue, limit: Limit, calendar: &WorkCalendar, now: DateTime<Utc>) -> Self {
        issue.name = name.to_string();
        issue.state = State::New as i32;
        issue.triage = Triage::Unspecified as i32;
        issue.reporter_count = 1;
        issue.clock = Some(Clock {
            response_due_time: ts(limit.respond.after(calendar, now)),
            resolution_due_time: ts(limit.resolve.after(calendar, now)),
            ..Default::default()
        });
        issue.create_time = ts(now);
        issue.update_time = ts(now);
        Self { name, version: 1, issue }
    }

    /// The state.
    pub fn state(&self) -> State {
        self.issue.state()
    }

    fn clock(&mut self) -> &mut Clock {
        self.issue.clock.get_or_insert_with(Clock::default)
    }

    fn touched(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.issue.update_time = ts(now);
    }

    fn must_be_open(&self, what: &str) -> Result<()> {
        if is_open(self.state()) { Ok(()) } else { Err(illegal(what, self.state())) }
    }

    /// Answers a new issue.
    pub fn acknowledge(&mut self, note: &str, now: DateTime<Utc>) -> Result<Step> {
        if self.state() != State::New {
            return Err(illegal("acknowledged", self.state()));
        }
        self.issue.state = State::Acknowledged as i32;
        self.clock().acknowledge_time = ts(now);
        self.touched(now);
        Ok(Step::public("acknowledged", note))
    }

    /// Puts the issue on a list. FIX_AT_ONCE is due by the end of today; FIX_BY_DEADLINE by
    /// `due` (in the future) or the deadline it has; CANNOT_FIX_NOW needs the explanation and a
    /// revisit date after today, and files the issue as EXPLAINED.
    pub fn triage(
        &mut self,
        triage: Triage,
        choice: TriageChoice,
        calendar: &WorkCalendar,
        now: DateTime<Utc>,
    ) -> Result<Step> {
        if !matches!(self.state(), State::Acknowledged | State::Reopened | State::InProgress) {
            return Err(illegal("triaged", self.state()));
        }
        if self.issue.clock.as_ref().is_some_and(|c| c.paused) {
            return Err(Error::failed_precondition("CLOCK_PAUSED", "resume the issue's clock before triaging it"));
        }
        let step = match triage {
            Triage::Unspecified => {
                return Err(Error::invalid("triage", "is required: FIX_AT_ONCE, FIX_BY_DEADLINE or CANNOT_FIX_NOW"));
            }
            Triage::FixAtOnce => {
                let end_of_day = calendar.deadline(now, 0);
                let clock = self.clock();
                let due = at(clock.resolution_due_time.as_ref()).map_or(end_of_day, |d| d.min(end_of_day));
                clock.resolution_due_time = ts(due);
                self.issue.state = State::InProgress as i32;
                Step::public("triaged", "")
            }
            Triage::FixByDeadline => {
                if let Some(due) = choice.due {
                    if due <= now {
                        return Err(Error::invalid("resolution_due_time", "must be in the future"));
                    }
                    self.clock().resolution_due_time = ts(due);
                }
                self.issue.state = State::InProgress as i32;
                Step::public("triaged", "")
            }
            Triage::CannotFixNow => {
                let explanation = choice.explanation.trim();
                if explanation.is_empty() {
                    return Err(Error::invalid("explanation", "the resident must be told why it cannot be fixed now"));
                }
                let today = calendar.local_day(now);
                match choice.revisit {
                    Some(day) if day > today => self.issue.revisit_date = day.to_string(),
                    Some(_) => return Err(Error::invalid("revisit_date", "must be after today")),
                    None => return Err(Error::invalid("revisit_date", "is required: when to look at it again")),
                }
                self.issue.explanation = explanation.to_owned();
                self.issue.state = State::Explained as i32;
                self.clock().resolve_time = ts(now);
                Step::public("explained", explanation)
            }
        };
        self.issue.triage = triage as i32;
        self.touched(now);
        Ok(step)
    }

    /// Gives the issue to a person, a department, or both.
    pub fn assign(&mut self, assignee: &str, department: &str, now: DateTime<Utc>) -> Result<Step> {
        self.must_be_open("assigned")?;
        self.issue.assignee = assignee.to_owned();
        self.issue.assignee_department = department.to_owned();
        self.touched(now);
        Ok(Step::internal("assigned", format!("{assignee} {department}").trim().to_owned()))
    }

    /// Stops the clock.
    pub fn pause(&mut self, reason: PauseReason, note: &str, now: DateTime<Utc>) -> Result<Step> {
        self.must_be_open("paused")?;
        if reason == PauseReason::Unspecified {
            return Err(Error::invalid("reason", "is required: WAITING_FOR_RESIDENT or EXTENSION_APPROVED"));
        }
        let clock = self.clock();
        if clock.paused {
            return Err(Error::failed_precondition("CLOCK_PAUSED", "the clock is paused already"));
        }
        clock.paused = true;
        clock.pause_reason = reason as i32;
        clock.pause_time = ts(now);
        self.touched(now);
        Ok(Step::internal("paused", note))
    }

    /// Starts the clock again: each deadline still ahead of the clock moves by the office hours
    /// it was paused.
    pub fn resume(&mut self, calendar: &WorkCalendar, now: DateTime<Utc>) -> Result<Step> {
        self.must_be_open("resumed")?;
        let acknowledged = self.state() != State::New;
        let clock = self.clock();
        if !clock.paused {
            return Err(Error::failed_precondition("CLOCK_RUNNING", "the clock is not paused"));
        }
        let since = at(clock.pause_time.as_ref()).unwrap_or(now);
        let lost = calendar.working_time_between(since, now);
        let shift = |due: &mut Option<pbjson_types::Timestamp>| {
            if let Some(d) = at(due.as_ref()) {
                *due = ts(calendar.add_working_time(d, lost));
            }
        };
        if !acknowledged {
            shift(&mut clock.response_due_time);
        }
        shift(&mut clock.resolution_due_time);
        clock.paused = false;
        clock.pause_reason = PauseReason::Unspecified as i32;
        clock.pause_time = None;
        clock.paused_seconds += lost.num_seconds();
        self.touched(now);
        Ok(Step::internal("resumed", ""))
    }

    /// Refers the issue to `department`; it waits on the answer.
    pub fn refer(&mut self, department: &str, reason: &str, by: &str, now: DateTime<Utc>) -> Result<Step> {
        if !matches!(self.state(), State::Acknowledged | State::InProgress | State::Reopened) {
            return Err(illegal("referred", self.state()));
        }
        if self.issue.referrals.len() >= MAX_REFERRALS {
            return Err(Error::failed_precondition(
                "TOO_MANY_REFERRALS",
                format!("an issue is referred at most {MAX_REFERRALS} times"),
            ));
        }
        self.issue.referrals.push(Referral {
            department: department.to_owned(),
            state: ReferralState::Requested as i32,
            reason: reason.to_owned(),
            response: String::new(),
            referred_by: by.to_owned(),
            officer: String::new(),
            create_time: ts(now),
            update_time: ts(now),
        });
        self.issue.state = State::Referred as i32;
        self.touched(now);
        Ok(Step::public("referred", department))
    }

    /// The department of the current referral, while the issue waits on one.
    pub fn referred_to(&self) -> Option<&str> {
        (self.state() == State::Referred).then(|| self.issue.referrals.last().map(|r| r.department.as_str())).flatten()
    }

    fn current_referral(&mut self, what: &str, from: &[ReferralState]) -> Result<&mut Referral> {
        let state = self.state();
        let referral = self.issue.referrals.last_mut().filter(|_| state == State::Referred);
        match referral {
            Some(r) if from.contains(&r.state()) => Ok(r),
            Some(r) => Err(Error::failed_precondition(
                "ILLEGAL_TRANSITION",
                format!("a referral that is {} cannot be {what}", r.state().as_str_name()),
            )),
            None => Err(illegal(&format!("answered for a department ({what})"), state)),
        }
    }

    /// The department's answer to the current referral.
    pub fn answer_referral(
        &mut self,
        answer: ReferralAnswer,
        text: &str,
        officer: &str,
        now: DateTime<Utc>,
    ) -> Result<Step> {
        use ReferralState as R;
        let (from, to, action, what): (&[R], R, &'static str, &str) = match answer {
            ReferralAnswer::Accept => (&[R::Requested], R::Accepted, "referral_accepted", "accepted"),
            ReferralAnswer::Reject => (&[R::Requested, R::Accepted], R::Rejected, "referral_rejected", "rejected"),
            ReferralAnswer::Start => (&[R::Accepted], R::InProgress, "referral_started", "started"),
            ReferralAnswer::Complete => {
                (&[R::Accepted, R::InProgress], R::Completed, "referral_completed", "completed")
            }
        };
        let referral = self.current_referral(what, from)?;
        referral.state = to as i32;
        referral.officer = officer.to_owned();
        referral.update_time = ts(now);
        if matches!(answer, ReferralAnswer::Reject | ReferralAnswer::Complete) {
            referral.response = text.to_owned();
        }
        let step = match answer {
            ReferralAnswer::Accept | ReferralAnswer::Start => Step::internal(action, text),
            ReferralAnswer::Reject => {
                let back =
                    if self.issue.triage() == Triage::Unspecified { State::Acknowledged } else { State::InProgress };
                self.issue.state = back as i32;
                Step::internal(action, text)
            }
            ReferralAnswer::Complete => {
                self.issue.state = State::Resolved as i32;
                self.issue.resolution = text.to_owned();
                self.clock().resolve_time = ts(now);
                Step::public(action, text)
            }
        };
        self.touched(now);
        Ok(step)
    }

    /// Marks the issue done.
    pub fn resolve(&mut self, resolution: &str, now: DateTime<Utc>) -> Result<Step> {
        if self.state() != State::InProgress {
            return Err(illegal("resolved", self.state()));
        }
        self.issue.state = State::Resolved as i32;
        self.issue.resolution = resolution.to_owned();
        self.clock().resolve_time = ts(now);
        self.touched(now);
        Ok(Step::public("resolved", resolution))
    }

    /// The resident's rating: fixed closes the issue; not fixed reopens it with a fresh deadline.
    pub fn feedback(
        &mut self,
        feedback: Feedback,
        limit: Limit,
        calendar: &WorkCalendar,
        now: DateTime<Utc>,
    ) -> Result<Step> {
        if self.state() != State::Resolved {
            return Err(illegal("rated", self.state()));
        }
        let fixed = feedback.fixed;
        let text = feedback.comment.clone();
        self.issue.feedback = Some(Feedback { create_time: ts(now), ..feedback });
        if fixed {
            self.issue.state = State::Closed as i32;
            self.issue.close_time = ts(now);
        } else {
            self.reopen(limit, calendar, now);
        }
        self.touched(now);
        Ok(Step::public("feedback", text))
    }

    fn reopen(&mut self, limit: Limit, calendar: &WorkCalendar, now: DateTime<Utc>) {
        self.issue.state = State::Reopened as i32;
        self.issue.triage = Triage::Unspecified as i32;
        self.issue.escalation_level = EscalationLevel::Unspecified as i32;
        let clock = self.clock();
        clock.resolve_time = None;
        clock.resolution_due_time = ts(limit.resolve.after(calendar, now));
    }

    /// Closes a resolved issue the resident did not rate in time.
    pub fn close_unrated(&mut self, now: DateTime<Utc>) -> Result<Step> {
        if self.state() != State::Resolved {
            return Err(illegal("closed", self.state()));
        }
        self.issue.state = State::Closed as i32;
        self.issue.close_time = ts(now);
        self.touched(now);
        Ok(Step::public("closed", ""))
    }

    /// Reopens an explained issue whose revisit date has come.
    pub fn revisit(&mut self, limit: Limit, calendar: &WorkCalendar, now: DateTime<Utc>) -> Result<Step> {
        if self.state() != State::Explained {
            return Err(illegal("revisited", self.state()));
        }
        self.reopen(limit, calendar, now);
        self.touched(now);
        Ok(Step::internal("reopened", "revisit date reached"))
    }

    /// Merges this duplicate into `into` (both open, different): its reporters count there.
    pub fn merge_into(&mut self, into: &mut Case, now: DateTime<Utc>) -> Result<(Step, Step)> {
        if self.name == into.name {
            return Err(Error::invalid("into", "an issue cannot be merged into itself"));
        }
        self.must_be_open("merged")?;
        if !is_open(into.state()) {
            return Err(Error::failed_precondition(
                "TARGET_NOT_OPEN",
                format!("{} is {} and takes no duplicates", into.name, into.state().as_str_name()),
            ));
        }
        self.issue.state = State::Merged as i32;
        self.issue.merged_into = into.name.to_string();
        self.issue.close_time = ts(now);
        into.issue.reporter_count = into.issue.reporter_count.saturating_add(self.issue.reporter_count.max(1));
        self.touched(now);
        into.touched(now);
        Ok((Step::public("merged", into.name.to_string()), Step::internal("duplicate_merged", self.name.to_string())))
    }

    /// Raises the escalation level if a deadline has passed at `now`: COMMUNITY once the
    /// response (unanswered) or resolution deadline has passed, STREET once `policy.to_street`
    /// more has gone by. A paused clock does not escalate. Returns the new level, the deadline
    /// missed (`response` or `resolution`) and its time, when the level rose.
    pub fn escalate(
        &mut self,
        policy: Escalation,
        calendar: &WorkCalendar,
        now: DateTime<Utc>,
    ) -> Option<(EscalationLevel, &'static str, DateTime<Utc>)> {
        let due = self.missed_deadline(now)?;
        let (which, due_time) = due;
        let level = if policy.to_street.after(calendar, due_time) <= now {
            EscalationLevel::Street
        } else {
            EscalationLevel::Community
        };
        if (level as i32) <= self.issue.escalation_level {
            return None;
        }
        self.issue.escalation_level = level as i32;
        self.touched(now);
        Some((level, which, due_time))
    }

    /// The deadline the issue has missed at `now`, if it has and its clock runs.
    pub fn missed_deadline(&self, now: DateTime<Utc>) -> Option<(&'static str, DateTime<Utc>)> {
        let clock = self.issue.clock.as_ref()?;
        if clock.paused || !is_open(self.state()) {
            return None;
        }
        if self.state() == State::New
            && let Some(due) = at(clock.response_due_time.as_ref()).filter(|d| *d < now)
        {
            return Some(("response", due));
        }
        at(clock.resolution_due_time.as_ref()).filter(|d| *d < now).map(|d| ("resolution", d))
    }

    /// Whether it was resolved (or explained) by its deadline.
    pub fn on_time(&self) -> bool {
        let Some(clock) = self.issue.clock.as_ref() else { return false };
        match (at(clock.resolve_time.as_ref()), at(clock.resolution_due_time.as_ref())) {
            (Some(done), Some(due)) => done <= due,
            _ => false,
        }
    }
}

/// What a triage chose beyond the list.
#[derive(Debug, Clone, Default)]
pub struct TriageChoice {
    /// FIX_BY_DEADLINE: the deadline.
    pub due: Option<DateTime<Utc>>,
    /// CANNOT_FIX_NOW: why.
    pub explanation: String,
    /// CANNOT_FIX_NOW: when to look again.
    pub revisit: Option<NaiveDate>,
}

/// A department's answer to a referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralAnswer {
    /// It takes it.
    Accept,
    /// It refuses it, saying why.
    Reject,
    /// It starts work.
    Start,
    /// It reports the outcome.
    Complete,
}

/// The distance between two points in metres (haversine, on a sphere of the Earth's mean
/// radius).
pub fn distance_metres((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    const R: f64 = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * a.sqrt().min(1.0).asin()
}

/// A category as the service takes it: 1 to 40 lowercase letters, digits and `_`.
pub fn is_category(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 40
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use civic_kit::calendar::CalendarSettings;
    use civic_kit::names::{Id, StreetId};

    use super::*;

    fn local(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn calendar() -> WorkCalendar {
        // Office hours 08:30-12:00 and 14:00-17:30; Wednesday 2 December 2026 a holiday.
        WorkCalendar::new(&CalendarSettings {
            holidays: vec!["2026-12-02".parse().expect("date")],
            ..Default::default()
        })
    }

    fn case(limit: Limit, now: &str) -> Case {
        let name = IssueName::new(StreetId::parse("s", "zhongjie").expect("street"), Id::parse("i", "i1").expect("id"));
        let issue = Issue { source: Source::App as i32, category: "environment".into(), ..Default::default() };
        Case::take(name, issue, limit, &calendar(), local(now))
    }

    fn due(c: &Case) -> (DateTime<Utc>, DateTime<Utc>) {
        let clock = c.issue.clock.as_ref().expect("clock");
        (
            at(clock.response_due_time.as_ref()).expect("response"),
            at(clock.resolution_due_time.as_ref()).expect("resolution"),
        )
    }

    const HOURS: Limit = Limit { respond: Span::Hours(2), resolve: Span::Hours(8) };

    #[test]
    fn spans_parse() {
        assert_eq!(Span::parse("4h"), Some(Span::Hours(4)));
        assert_eq!(Span::parse("5d"), Some(Span::Days(5)));
        for bad in ["", "h", "4", "4w", "-1d", "1000h", "四h"] {
            assert_eq!(Span::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_most_specific_limit_wins() {
        let rule = |source: &str, category: &str, respond: &str| LimitRule {
            source: source.into(),
            category: category.into(),
            respond: respond.into(),
            resolve: "5d".into(),
        };
        let limits = Limits::new(&[
            rule("*", "*", "1d"),
            rule("hotline", "*", "4h"),
            rule("*", "safety", "2h"),
            rule("hotline", "safety", "1h"),
        ])
        .expect("limits");
        let table = [
            (Source::App, "environment", Span::Days(1)),
            (Source::Hotline, "environment", Span::Hours(4)),
            (Source::App, "safety", Span::Hours(2)),
            (Source::Hotline, "safety", Span::Hours(1)),
        ];
        for (source, category, respond) in table {
            assert_eq!(limits.of(source, category).respond, respond, "{source:?} {category}");
        }
        assert!(Limits::new(&[rule("fax", "*", "1d")]).is_err());
        assert!(Limits::new(&[rule("*", "*", "soon")]).is_err());
        assert_eq!(Limits::new(&[]).expect("none").of(Source::App, "x").resolve, Span::Days(5));
    }

    #[test]
    fn deadlines_count_working_time() {
        // (taken at, limit, response due, resolution due)
        let table = [
            // Monday 10:00, 2h/8h: 12:00 is lunch, so 8h ends Tuesday 10:00.
            ("2026-11-30T10:00:00+08:00", HOURS, "2026-11-30T12:00:00+08:00", "2026-12-01T11:00:00+08:00"),
            // Friday 17:00: the weekend does not count.
            ("2026-12-04T17:00:00+08:00", HOURS, "2026-12-07T10:00:00+08:00", "2026-12-08T09:00:00+08:00"),
            // Tuesday 16:00 and a holiday on Wednesday.
            ("2026-12-01T16:00:00+08:00", HOURS, "2026-12-03T09:00:00+08:00", "2026-12-03T17:00:00+08:00"),
            // Days: to the end of the n-th working day, skipping the holiday.
            (
                "2026-12-01T16:00:00+08:00",
                Limit { respond: Span::Days(0), resolve: Span::Days(2) },
                "2026-12-02T00:00:00+08:00",
                "2026-12-05T00:00:00+08:00",
            ),
        ];
        for (now, limit, response, resolution) in table {
            let c = case(limit, now);
            assert_eq!(due(&c), (local(response), local(resolution)), "taken {now}");
        }
    }

    #[test]
    fn a_pause_moves_the_deadlines_by_the_office_hours_it_lasted() {
        let cal = calendar();
        // Taken Monday 10:00: answer by 12:00, resolve by Tuesday 11:00.
        let mut c = case(HOURS, "2026-11-30T10:00:00+08:00");
        c.pause(PauseReason::WaitingForResident, "", local("2026-11-30T11:00:00+08:00")).expect("pause");
        assert!(c.pause(PauseReason::WaitingForResident, "", local("2026-11-30T11:05:00+08:00")).is_err());
        // Paused 11:00 → 15:00: two office hours (lunch does not count).
        c.resume(&cal, local("2026-11-30T15:00:00+08:00")).expect("resume");
        assert_eq!(due(&c), (local("2026-11-30T16:00:00+08:00"), local("2026-12-01T15:00:00+08:00")));
        assert_eq!(c.issue.clock.as_ref().expect("clock").paused_seconds, 7200);
        assert!(c.resume(&cal, local("2026-11-30T15:30:00+08:00")).is_err());
        // Once acknowledged, a pause moves only the resolution deadline; over a weekend and a
        // holiday only office hours count (Friday 17:00 → Wednesday-holiday → Thursday 09:00).
        c.acknowledge("", local("2026-11-30T15:10:00+08:00")).expect("ack");
        c.pause(PauseReason::ExtensionApproved, "", local("2026-12-01T17:00:00+08:00")).expect("pause");
        c.resume(&cal, local("2026-12-03T09:00:00+08:00")).expect("resume");
        // 17:00–17:30 Tuesday and 08:30–09:00 Thursday: one hour.
        assert_eq!(due(&c).1, local("2026-12-01T16:00:00+08:00"));
    }

    #[test]
    fn escalation_rises_by_levels_and_not_while_paused() {
        let cal = calendar();
        let policy = Escalation { to_street: Span::Hours(3) };
        let mut c = case(HOURS, "2026-11-30T10:00:00+08:00");
        // (now, expected new level)
        assert_eq!(c.escalate(policy, &cal, local("2026-11-30T11:59:00+08:00")), None);
        let first = c.escalate(policy, &cal, local("2026-11-30T12:01:00+08:00"));
        assert_eq!(first, Some((EscalationLevel::Community, "response", local("2026-11-30T12:00:00+08:00"))));
        assert_eq!(c.escalate(policy, &cal, local("2026-11-30T14:30:00+08:00")), None, "same level once");
        // Three office hours after noon: 17:00 (lunch does not count).
        assert_eq!(c.escalate(policy, &cal, local("2026-11-30T16:59:00+08:00")), None);
        let second = c.escalate(policy, &cal, local("2026-11-30T17:01:00+08:00"));
        assert_eq!(second.map(|s| s.0), Some(EscalationLevel::Street));

        let mut paused = case(HOURS, "2026-11-30T10:00:00+08:00");
        paused.pause(PauseReason::WaitingForResident, "", local("2026-11-30T11:00:00+08:00")).expect("pause");
        assert_eq!(paused.escalate(policy, &cal, local("2026-12-04T11:00:00+08:00")), None);
        // An acknowledged issue escalates on its resolution deadline only.
        let mut answered = case(HOURS, "2026-11-30T10:00:00+08:00");
        answered.acknowledge("", local("2026-11-30T11:00:00+08:00")).expect("ack");
        assert_eq!(answered.escalate(policy, &cal, local("2026-11-30T17:00:00+08:00")), None);
        let late = answered.escalate(policy, &cal, local("2026-12-01T11:01:00+08:00"));
        assert_eq!(late.map(|l| (l.0, l.1)), Some((EscalationLevel::Community, "resolution")));
    }

    #[test]
    fn transitions_follow_the_states() {
        let cal = calendar();
        let now = local("2026-11-30T10:00:00+08:00");
        let mut c = case(HOURS, "2026-11-30T09:00:00+08:00");
        // Triage before acknowledging, resolve before triage: refused.
        let code = |r: Result<Step>| r.expect_err("illegal").code();
        assert_eq!(
            code(c.triage(Triage::FixAtOnce, TriageChoice::default(), &cal, now)),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(code(c.resolve("done", now)), tonic::Code::FailedPrecondition);
        c.acknowledge("", now).expect("ack");
        assert_eq!(code(c.acknowledge("", now)), tonic::Code::FailedPrecondition);
        c.triage(Triage::FixAtOnce, TriageChoice::default(), &cal, now).expect("triage");
        assert_eq!(c.state(), State::InProgress);
        assert_eq!(due(&c).1, local("2026-12-01T00:00:00+08:00"), "the earlier of the limit and the end of the day");
        c.refer("police", "needs the police", "users/cadre", now).expect("refer");
        assert_eq!(c.referred_to(), Some("police"));
        assert_eq!(
            code(c.answer_referral(ReferralAnswer::Start, "", "users/po", now)),
            tonic::Code::FailedPrecondition
        );
        c.answer_referral(ReferralAnswer::Accept, "", "users/po", now).expect("accept");
        c.answer_referral(ReferralAnswer::Complete, "mediated", "users/po", now).expect("complete");
        assert_eq!(c.state(), State::Resolved);
        assert_eq!(c.issue.resolution, "mediated");
        assert!(c.on_time());
        let limit = HOURS;
        c.feedback(Feedback { rating: 2, fixed: false, ..Default::default() }, limit, &cal, now).expect("feedback");
        assert_eq!(c.state(), State::Reopened);
        assert_eq!(c.issue.triage(), Triage::Unspecified);
        c.triage(
            Triage::FixByDeadline,
            TriageChoice { due: Some(now + Duration::days(3)), ..Default::default() },
            &cal,
            now,
        )
        .expect("again");
        c.resolve("fixed properly", now).expect("resolve");
        c.feedback(Feedback { rating: 5, fixed: true, ..Default::default() }, limit, &cal, now).expect("feedback");
        assert_eq!(c.state(), State::Closed);
        assert_eq!(code(c.assign("users/x", "", now)), tonic::Code::FailedPrecondition);
        assert_eq!(c.version, 10);
    }

    #[test]
    fn cannot_fix_now_needs_words_and_a_date() {
        let cal = calendar();
        let now = local("2026-11-30T10:00:00+08:00");
        let mut c = case(HOURS, "2026-11-30T09:00:00+08:00");
        c.acknowledge("", now).expect("ack");
        let choice = |explanation: &str, revisit: &str| TriageChoice {
            explanation: explanation.into(),
            revisit: revisit.parse().ok(),
            ..Default::default()
        };
        let field = |r: Result<Step>| r.expect_err("invalid").violations()[0].field.clone();
        assert_eq!(field(c.triage(Triage::CannotFixNow, choice("  ", "2027-03-01"), &cal, now)), "explanation");
        assert_eq!(field(c.triage(Triage::CannotFixNow, choice("no budget", ""), &cal, now)), "revisit_date");
        assert_eq!(field(c.triage(Triage::CannotFixNow, choice("no budget", "2026-11-30"), &cal, now)), "revisit_date");
        c.triage(Triage::CannotFixNow, choice("no budget this year", "2027-03-01"), &cal, now).expect("explain");
        assert_eq!(c.state(), State::Explained);
        c.revisit(HOURS, &cal, local("2027-03-01T09:00:00+08:00")).expect("revisit");
        assert_eq!(c.state(), State::Reopened);
    }

    #[test]
    fn a_merge_counts_the_reporters() {
        let now = local("2026-11-30T10:00:00+08:00");
        let mut a = case(HOURS, "2026-11-30T09:00:00+08:00");
        let mut b = case(HOURS, "2026-11-30T09:00:00+08:00");
        assert!(a.merge_into(&mut b, now).is_err(), "an issue is not merged into itself");
        b.name = IssueName::parse("n", "streets/zhongjie/issues/i2").expect("name");
        a.merge_into(&mut b, now).expect("merge");
        assert_eq!((a.state(), b.issue.reporter_count), (State::Merged, 2));
        let mut c = case(HOURS, "2026-11-30T09:00:00+08:00");
        c.name = IssueName::parse("n", "streets/zhongjie/issues/i3").expect("name");
        assert!(c.merge_into(&mut a, now).is_err(), "a merged issue takes no duplicates");
    }

    #[test]
    fn distances_are_metres() {
        let d = distance_metres((35.0, 106.0), (35.0, 106.001));
        assert!((d - 91.1).abs() < 1.0, "{d}");
        assert_eq!(distance_metres((35.0, 106.0), (35.0, 106.0)), 0.0);
    }
}
