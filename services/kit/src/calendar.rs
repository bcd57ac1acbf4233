//! Working days: the street's calendar of weekends, public holidays and the weekend days made
//! working days in exchange (调休), used for every deadline counted in working days.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc, Weekday};
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
}

impl Default for CalendarSettings {
    fn default() -> Self {
        Self { holidays: Vec::new(), extra_workdays: Vec::new(), utc_offset_hours: 8 }
    }
}

/// A working-day calendar.
#[derive(Debug, Clone)]
pub struct WorkCalendar {
    holidays: BTreeSet<NaiveDate>,
    extra_workdays: BTreeSet<NaiveDate>,
    offset: FixedOffset,
}

impl WorkCalendar {
    /// The calendar of `settings`; an offset outside ±14 h falls back to UTC+8.
    pub fn new(settings: &CalendarSettings) -> Self {
        let offset = FixedOffset::east_opt(settings.utc_offset_hours * 3600)
            .or_else(|| FixedOffset::east_opt(8 * 3600))
            .expect("UTC+8 is a valid offset");
        Self {
            holidays: settings.holidays.iter().copied().collect(),
            extra_workdays: settings.extra_workdays.iter().copied().collect(),
            offset,
        }
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
            utc_offset_hours: 8,
        };
        let calendar = WorkCalendar::new(&settings);
        // Wednesday 30 September; 2 working days: Oct 1, 2 holidays, 3-4 weekend, 5 holiday,
        // so Oct 6 and 7.
        assert_eq!(calendar.deadline(local("2026-09-30T09:00:00+08:00"), 2), local("2026-10-08T00:00:00+08:00"));
        // Friday 9 October; the make-up Saturday the 10th counts.
        assert_eq!(calendar.deadline(local("2026-10-09T09:00:00+08:00"), 1), local("2026-10-11T00:00:00+08:00"));
    }

    #[test]
    fn the_local_day_decides() {
        let calendar = WorkCalendar::new(&CalendarSettings::default());
        // 23:30 UTC on Friday is already Saturday in Beijing: the count starts from Saturday.
        assert_eq!(calendar.deadline(local("2026-11-27T23:30:00Z"), 1), local("2026-12-01T00:00:00+08:00"));
    }
}
