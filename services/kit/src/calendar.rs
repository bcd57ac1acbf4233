//! Working days and hours: the street's calendar of weekends, public holidays and the weekend
//! days made working days in exchange (调休), and the office hours of a working day — used for
//! every deadline counted in working days or working hours, and for clocks that pause.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// The calendar settings (`[calendar]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalendarSettings {
    /// Dates that are not working days although they fall on a weekday (`2026-10-01`).
    pub holidays: Vec<NaiveDate>,
    /// Weekend dates that are working days (make-up days).
    pub extra_workdays: Vec<NaiveDate>,
    /// The street's offset from UTC in hours; days begin and end at local midnight.
    pub utc_offset_hours: i32,
    /// The office hours of a working day, local time, in order: `"08:30-12:00"`. Deadlines in
    /// working hours count only these.
    pub working_hours: Vec<String>,
}

impl Default for CalendarSettings {
    fn default() -> Self {
        Self {
            holidays: Vec::new(),
            extra_workdays: Vec::new(),
            utc_offset_hours: 8,
            working_hours: vec!["08:30-12:00".into(), "14:00-17:30".into()],
        }
    }
}

/// How far a working-time count looks ahead before it gives up (a calendar of nothing but
/// holidays must not loop for ever).
const HORIZON_DAYS: u32 = 3 * 366;

impl CalendarSettings {
    /// The office hours as (start, end) times, checked: each `HH:MM-HH:MM` with its start before
    /// its end, in order, not overlapping, and at least one. The error says what is wrong.
    pub fn periods(&self) -> Result<Vec<(NaiveTime, NaiveTime)>, String> {
        let mut periods: Vec<(NaiveTime, NaiveTime)> = Vec::new();
        for text in &self.working_hours {
            let parsed = text.split_once('-').and_then(|(a, b)| {
                let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
                let b = NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?;
                Some((a, b))
            });
            let Some((start, end)) = parsed else {
                return Err(format!("{text:?} is not a period: HH:MM-HH:MM"));
            };
            if start >= end {
                return Err(format!("{text:?} ends before it starts"));
            }
            if periods.last().is_some_and(|(_, last_end)| *last_end > start) {
                return Err(format!("{text:?} overlaps or precedes the period before it"));
            }
            periods.push((start, end));
        }
        if periods.is_empty() {
            return Err("at least one period is needed".into());
        }
        Ok(periods)
    }
}

/// A working-day calendar.
#[derive(Debug, Clone)]
pub struct WorkCalendar {
    holidays: BTreeSet<NaiveDate>,
    extra_workdays: BTreeSet<NaiveDate>,
    offset: FixedOffset,
    periods: Vec<(NaiveTime, NaiveTime)>,
}

impl WorkCalendar {
    /// The calendar of `settings` (checked by the configuration: an offset outside ±14 h falls
    /// back to UTC+8 and office hours that do not parse to the default ones).
    pub fn new(settings: &CalendarSettings) -> Self {
        let offset = FixedOffset::east_opt(settings.utc_offset_hours * 3600)
            .or_else(|| FixedOffset::east_opt(8 * 3600))
            .expect("UTC+8 is a valid offset");
        let periods = settings
            .periods()
            .or_else(|_| CalendarSettings::default().periods())
            .expect("the default office hours parse");
        Self {
            holidays: settings.holidays.iter().copied().collect(),
            extra_workdays: settings.extra_workdays.iter().copied().collect(),
            offset,
            periods,
        }
    }

    /// The office hours of `day` as instants, in order (none on a day off).
    fn periods_of(&self, day: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if !self.is_working_day(day) {
            return Vec::new();
        }
        let at =
            |t: NaiveTime| self.offset.from_local_datetime(&day.and_time(t)).single().map(|t| t.with_timezone(&Utc));
        self.periods.iter().filter_map(|(a, b)| Some((at(*a)?, at(*b)?))).collect()
    }

    /// The street's offset from UTC.
    pub fn offset(&self) -> FixedOffset {
        self.offset
    }

    /// The local day of `t`.
    pub fn local_day(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.offset).date_naive()
    }

    /// The instant `work` of office hours after `start`: office hours only are counted, so a
    /// count that begins out of hours begins at the next period. Zero work is `start` itself.
    /// Beyond three years of days off the count stops there.
    pub fn add_working_time(&self, start: DateTime<Utc>, work: Duration) -> DateTime<Utc> {
        if work <= Duration::zero() {
            return start;
        }
        let mut left = work;
        let mut day = self.local_day(start);
        for _ in 0..HORIZON_DAYS {
            for (a, b) in self.periods_of(day) {
                let from = a.max(start);
                if from >= b {
                    continue;
                }
                if b - from >= left {
                    return from + left;
                }
                left -= b - from;
            }
            day = day.succ_opt().unwrap_or(day);
        }
        start + Duration::days(i64::from(HORIZON_DAYS))
    }

    /// The office hours between `from` and `to` (zero when `to` is not after `from`).
    pub fn working_time_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let mut total = Duration::zero();
        if to <= from {
            return total;
        }
        let mut day = self.local_day(from);
        let last = self.local_day(to);
        for _ in 0..=HORIZON_DAYS {
            for (a, b) in self.periods_of(day) {
                let (a, b) = (a.max(from), b.min(to));
                if a < b {
                    total += b - a;
                }
            }
            if day >= last {
                break;
            }
            day = day.succ_opt().unwrap_or(day);
        }
        total
    }

    /// Whether `day` is a working day.
    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        if self.extra_workdays.contains(&day) {
            return true;
        }
        !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&day)
    }

    /// The deadline `days` working days after `start`: the end (local midnight) of the
    /// `days`-th working day after the day of `start`. Zero days means the end of the day of
    /// `start` itself (done on the spot).
    pub fn deadline(&self, start: DateTime<Utc>, days: u32) -> DateTime<Utc> {
        let mut day = start.with_timezone(&self.offset).date_naive();
        let mut left = days;
        while left > 0 {
            day = day.succ_opt().unwrap_or(day);
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        let end = day.succ_opt().unwrap_or(day).and_hms_opt(0, 0, 0).unwrap_or_default();
        self.offset
            .from_local_datetime(&end)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(start + Duration::days(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn local(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn weekends_are_skipped() {
        let calendar = WorkCalendar::new(&CalendarSettings::default());
        // Friday 27 November 2026, 10:00 in Beijing; 1 working day → end of Monday 30th.
        let due = calendar.deadline(local("2026-11-27T10:00:00+08:00"), 1);
        assert_eq!(due, local("2026-12-01T00:00:00+08:00"));
        assert_eq!(calendar.deadline(local("2026-11-27T10:00:00+08:00"), 0), local("2026-11-28T00:00:00+08:00"));
    }

    #[test]
    fn holidays_are_skipped_and_make_up_days_count() {
        let settings = CalendarSettings {
            holidays: vec![date("2026-10-01"), date("2026-10-02"), date("2026-10-05")],
            extra_workdays: vec![date("2026-10-10")],
            ..Default::default()
        };
        let calendar = WorkCalendar::new(&settings);
        // Wednesday 30 September; 2 working days: Oct 1, 2 holidays, 3-4 weekend, 5 holiday,
        // so Oct 6 and 7.
        assert_eq!(calendar.deadline(local("2026-09-30T09:00:00+08:00"), 2), local("2026-10-08T00:00:00+08:00"));
        // Friday 9 October; the make-up Saturday the 10th counts.
        assert_eq!(calendar.deadline(local("2026-10-09T09:00:00+08:00"), 1), local("2026-10-11T00:00:00+08:00"));
    }

    #[test]
    fn working_time_counts_office_hours_only() {
        let calendar = WorkCalendar::new(&CalendarSettings::default());
        let add = |start: &str, hours: i64, minutes: i64| {
            calendar.add_working_time(local(start), Duration::hours(hours) + Duration::minutes(minutes))
        };
        // (start, hours, minutes, expected): 08:30-12:00 and 14:00-17:30, weekends off.
        let table = [
            ("2026-11-30T09:00:00+08:00", 2, 0, "2026-11-30T11:00:00+08:00"), // within a period
            ("2026-11-30T11:00:00+08:00", 2, 0, "2026-11-30T15:00:00+08:00"), // over lunch
            ("2026-11-30T07:00:00+08:00", 1, 0, "2026-11-30T09:30:00+08:00"), // before opening
            ("2026-11-30T12:30:00+08:00", 0, 30, "2026-11-30T14:30:00+08:00"), // at lunch
            ("2026-11-30T17:00:00+08:00", 1, 0, "2026-12-01T09:00:00+08:00"), // over the night
            ("2026-11-27T17:00:00+08:00", 1, 0, "2026-11-30T09:00:00+08:00"), // over a weekend
            ("2026-11-28T10:00:00+08:00", 7, 0, "2026-11-30T17:30:00+08:00"), // from a Saturday
            ("2026-11-30T09:00:00+08:00", 0, 0, "2026-11-30T09:00:00+08:00"), // nothing to add
        ];
        for (start, hours, minutes, expected) in table {
            assert_eq!(add(start, hours, minutes), local(expected), "{start} + {hours}h{minutes}m");
        }
    }

    #[test]
    fn working_time_between_is_the_inverse_of_adding_it() {
        let settings = CalendarSettings { holidays: vec![date("2026-12-02")], ..Default::default() };
        let calendar = WorkCalendar::new(&settings);
        let table = [
            ("2026-11-30T09:00:00+08:00", "2026-11-30T11:00:00+08:00", 120),
            ("2026-11-30T11:00:00+08:00", "2026-11-30T15:00:00+08:00", 120),
            ("2026-11-30T20:00:00+08:00", "2026-12-01T08:00:00+08:00", 0),
            ("2026-11-27T17:00:00+08:00", "2026-11-30T09:00:00+08:00", 60),
            // Tuesday 17:00 to Thursday 09:00: Wednesday is a holiday.
            ("2026-12-01T17:00:00+08:00", "2026-12-03T09:00:00+08:00", 60),
            ("2026-11-30T11:00:00+08:00", "2026-11-30T10:00:00+08:00", 0),
        ];
        for (from, to, minutes) in table {
            let between = calendar.working_time_between(local(from), local(to));
            assert_eq!(between, Duration::minutes(minutes), "{from} → {to}");
            if minutes > 0 {
                assert_eq!(calendar.add_working_time(local(from), between), local(to), "{from} + {minutes}m");
            }
        }
    }

    #[test]
    fn office_hours_are_checked() {
        let hours = |periods: &[&str]| CalendarSettings {
            working_hours: periods.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        };
        assert!(hours(&["08:30-12:00", "14:00-17:30"]).periods().is_ok());
        assert!(hours(&[]).periods().is_err());
        assert!(hours(&["12:00-08:30"]).periods().is_err());
        assert!(hours(&["08:00-12:00", "11:00-17:00"]).periods().is_err());
        assert!(hours(&["8h-12h"]).periods().is_err());
    }

    #[test]
    fn the_local_day_decides() {
        let calendar = WorkCalendar::new(&CalendarSettings::default());
        // 23:30 UTC on Friday is already Saturday in Beijing: the count starts from Saturday.
        assert_eq!(calendar.deadline(local("2026-11-27T23:30:00Z"), 1), local("2026-12-01T00:00:00+08:00"));
    }
}
