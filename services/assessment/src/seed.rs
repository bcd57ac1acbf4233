//! The demo data of Zhongjie Street: its scoring scheme, in force from a year before the demo's
//! months. The reviews themselves follow from the other services' demo data: their events become
//! facts here, and the periodic pass computes the current and the previous month from them.

use chrono::Utc;
use civic_kit::error::Result;
use civic_kit::idempotency::RequestKey;
use civic_kit::names::StreetId;
use civic_kit::time;
use civic_proto::assessment::scheme::deduction::Kind;
use civic_proto::assessment::scheme::{Deduction, Weight, YearEnd};
use civic_proto::assessment::{Indicator, Scheme};
use tonic::Code;

use crate::Assessment;
use crate::score::{Month, Rules};
use crate::store::{self, SchemeRecord};

/// The demo scheme's id.
const DEMO_SCHEME: &str = "zhongjie-grid-work";

/// The street's scheme as the demo has it: the seed's three measures weighed most — familiarity
/// (35), satisfaction (20), resolution (30) — then the diary (10) and engagement (5).
pub(crate) fn demo_scheme(effective_month: Month) -> Scheme {
    let w = |indicator: Indicator, weight: f64, target: f64| Weight { indicator: indicator as i32, weight, target };
    let d = |kind: Kind, points: f64, at_most: f64| Deduction { kind: kind as i32, points, at_most };
    Scheme {
        display_name: "中街街道网格员绩效月考核办法".into(),
        effective_month: effective_month.to_string(),
        weights: vec![
            w(Indicator::HouseholdCoverage, 20.0, 0.9),
            w(Indicator::KeyVisitsOnTime, 15.0, 1.0),
            w(Indicator::Satisfaction, 20.0, 0.9),
            w(Indicator::ResponseRate, 10.0, 1.0),
            w(Indicator::ResolutionRate, 15.0, 0.9),
            w(Indicator::OnTimeRate, 5.0, 1.0),
            w(Indicator::DiaryCompleteness, 10.0, 0.9),
            w(Indicator::NeedsPlaced, 3.0, 2.0),
            w(Indicator::VolunteerHours, 2.0, 10.0),
        ],
        deductions: vec![
            d(Kind::EscalatedIssue, 2.0, 10.0),
            d(Kind::LateSummary, 5.0, 0.0),
            d(Kind::MissedKeyVisit, 1.0, 5.0),
        ],
        floor: 0.0,
        cap: 100.0,
        star_thresholds: vec![60.0, 70.0, 80.0, 90.0, 95.0],
        min_households: 20,
        min_issues: 3,
        year_end: Some(YearEnd { months_weight: 80.0, award_score: 90.0, award_months: 10 }),
        ..Default::default()
    }
}

impl Assessment {
    /// The demo street's scheme, unless it is there already; says what was added.
    pub(crate) async fn seed_street(&self, street: &StreetId) -> Result<String> {
        let now = Utc::now();
        let from = (0..12).fold(Month::of(self.calendar.local_day(now)), |m, _| m.previous());
        let mut scheme = demo_scheme(from);
        Rules::check(&scheme)?;
        scheme.name = format!("streets/{street}/schemes/{DEMO_SCHEME}");
        scheme.created_by = "users/admin-demo".into();
        scheme.create_time = Some(time::to_timestamp(now));
        let record = SchemeRecord { id: DEMO_SCHEME.into(), scheme };
        let written = self
            .writer
            .write(&RequestKey::unkeyed("seed"), async |c| {
                store::insert_scheme(c.tx(), street, &record, &time::to_text(now)).await?;
                Ok(pbjson_types::Empty {})
            })
            .await;
        match written {
            Ok(_) => Ok("1 scheme".into()),
            Err(e) if e.code() == Code::AlreadyExists => Ok("nothing (the scheme is there)".into()),
            Err(e) => Err(e),
        }
    }
}
