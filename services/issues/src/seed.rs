//! Demo data: Zhongjie Street's issues across sources, categories, grids and states, written
//! through the same intake and steps as the API. The issues of the seeded visits' problems
//! come by themselves, from the grid service's events.

use chrono::{Duration, Utc};
use civic_kit::demo::Gen;
use civic_kit::error::Result;
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{Id, StreetId};
use civic_kit::write::Change;
use civic_proto::issues::issue::{Placement, Source, Triage};
use civic_proto::issues::{Feedback, Issue, IssueCreated, Point};

use crate::Issues;
use crate::api::record;
use crate::domain::{Case, IssueName, TriageChoice};

/// The street's extent: south-west corner and size in degrees (as the grid service's demo map).
const EXTENT: (f64, f64, f64, f64) = (106.640, 35.530, 0.048, 0.030);

/// What residents raise, by category.
const PROBLEMS: &[(&str, &str, &str)] = &[
    ("environment", "楼道杂物", "三单元楼道堆放杂物，影响通行"),
    ("environment", "垃圾清运", "小区垃圾桶满溢两天未清运"),
    ("facilities", "门禁损坏", "单元门禁损坏，外来人员随意进出"),
    ("facilities", "路灯不亮", "小区东侧路灯不亮，夜间出行不便"),
    ("safety", "电动车充电", "楼道内私拉电线给电动车充电"),
    ("neighbour_dispute", "漏水纠纷", "楼上漏水与邻居协商不成"),
    ("welfare", "高龄津贴", "咨询高龄津贴如何办理"),
    ("elderly_care", "助餐服务", "独居老人希望有助餐服务"),
];

const SOURCES: [Source; 4] = [Source::WalkIn, Source::Hotline, Source::App, Source::Meeting];

impl Issues {
    /// The street's demo issues: taken from every source, placed through the grid service, and
    /// carried through the steps of the API to a spread of states. Running it again adds
    /// nothing.
    pub(crate) async fn seed_street(&self, street: &StreetId) -> Result<String> {
        let mut rng = Gen::new(0x155E_5EED);
        let mut added = 0;
        let mut unplaced = 0;
        let cadre = "users/cadre-demo";
        for k in 0..self.rules.demo_issues {
            let name = IssueName::new(street.clone(), Id::parse("seed", &format!("demo-{k}"))?);
            let (category, title, description) = PROBLEMS[rng.below(PROBLEMS.len() as u64) as usize];
            let source = SOURCES[rng.below(SOURCES.len() as u64) as usize];
            let point = (EXTENT.1 + rng.unit() * EXTENT.3, EXTENT.0 + rng.unit() * EXTENT.2);
            let roll = rng.below(100);
            if crate::store::get(self.writer.db().reader(), &name).await?.is_some() {
                continue;
            }
            let issue = Issue {
                source: source as i32,
                reporter: if source == Source::App { format!("users/resident-{}", k % 97) } else { String::new() },
                category: category.into(),
                title: title.into(),
                description: description.into(),
                location: Some(Point { latitude: point.0, longitude: point.1 }),
                created_by: cadre.into(),
                ..Default::default()
            };
            // Seeding may run before the grid service serves: such issues are placed by the
            // sweep once it does (said once, below).
            let placed = self.try_locate(street, Some(point)).await.unwrap_or_else(|_| {
                unplaced += 1;
                (Placement::ToLocate, String::new(), String::new())
            });
            let mut case = self.new_case(street, issue, placed);
            case.name = name;
            case.issue.name = case.name.to_string();
            let duplicates = self.duplicates_of(&case).await?;
            case.issue.possible_duplicates = duplicates.iter().map(|(d, _)| d.name.to_string()).collect();
            let (rules, calendar) = (self.rules.clone(), self.calendar.clone());
            let written = self
                .writer
                .write(&RequestKey::unkeyed("SeedIssue"), async |c: &mut Change| {
                    let (mut case, created): (Case, Option<IssueCreated>) = self.take_in(c.tx(), case).await?;
                    if let Some(event) = created {
                        c.emit(&case.name.to_string(), &event).await?;
                    }
                    let now = Utc::now();
                    let limit = rules.limits.of(case.issue.source(), &case.issue.category);
                    // New 15%, acknowledged 10%, in progress 25%, referred 5%, explained 5%,
                    // resolved 15%, closed 25%.
                    if roll < 15 {
                        return Ok(());
                    }
                    let step = case.acknowledge("已收到，正在安排处理", now)?;
                    record(c, &case, &step, cadre).await?;
                    if roll < 25 {
                        return Ok(());
                    }
                    if roll < 30 {
                        let choice = TriageChoice {
                            explanation: "涉及小区整体改造，已纳入明年老旧小区改造计划".into(),
                            revisit: Some(calendar.local_day(now) + Duration::days(90)),
                            ..Default::default()
                        };
                        let step = case.triage(Triage::CannotFixNow, choice, &calendar, now)?;
                        return record(c, &case, &step, cadre).await;
                    }
                    let triage = if roll.is_multiple_of(2) { Triage::FixAtOnce } else { Triage::FixByDeadline };
                    let step = case.triage(triage, TriageChoice::default(), &calendar, now)?;
                    record(c, &case, &step, cadre).await?;
                    if roll < 35 {
                        let step = case.refer("police", "需要派出所协助处理", cadre, now)?;
                        return record(c, &case, &step, cadre).await;
                    }
                    if roll < 60 {
                        return Ok(());
                    }
                    let step = case.resolve("已安排物业处理完毕", now)?;
                    record(c, &case, &step, cadre).await?;
                    if roll < 75 || case.issue.reporter.is_empty() {
                        return Ok(());
                    }
                    let feedback = Feedback { rating: 3 + (roll % 3) as i32, fixed: true, ..Default::default() };
                    let step = case.feedback(feedback, limit, &calendar, now)?;
                    record(c, &case, &step, &case.issue.reporter.clone()).await
                })
                .await;
            match written {
                Ok(()) => added += 1,
                Err(e) if e.code() == tonic::Code::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        if unplaced > 0 {
            tracing::info!(unplaced, "demo issues taken before the grid service answered; the sweep places them");
        }
        let meetings = self.seed_meetings(street).await?;
        Ok(format!("{added} issues, {meetings} meetings"))
    }
}
