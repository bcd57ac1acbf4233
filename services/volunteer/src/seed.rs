//! Demo data: the volunteers of Zhongjie Street, registered through the same path as the API,
//! in the grid service's demo communities, of every kind; most approved, some waiting.

use chrono::Utc;
use civic_kit::demo::Gen;
use civic_kit::error::Result;
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{Id, StreetId};
use civic_kit::time;
use civic_kit::write::Change;
use civic_proto::volunteer::volunteer::{Kind, State};
use civic_proto::volunteer::{Point, Volunteer, WeeklyRange};

use crate::Volunteers;
use crate::register::{self, Record, VolunteerName};

/// The grid service's demo communities (their ids).
const COMMUNITIES: [&str; 6] = ["dongyuan", "xiyuan", "nanmen", "beiguan", "zhongshan", "liuhu"];
const SURNAMES: [&str; 12] = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙"];
const GIVEN: [&str; 12] =
    ["建国", "秀英", "志强", "桂兰", "海燕", "德明", "丽娟", "文博", "玉梅", "子涵", "春生", "晓东"];
const EMPLOYERS: [&str; 5] = ["平凉市税务局", "崆峒区教育局", "平凉市人民医院", "国网平凉供电公司", "中街街道办事处"];
/// The demo organisations' ids.
const ORGANISATIONS: [&str; 4] = ["lvyi-tongxin", "linli-huzhu", "zhaohua-xishi", "heshilao"];

impl Volunteers {
    /// Registers the demo volunteers of `street` not registered yet; returns how many.
    pub(crate) async fn seed_street(&self, street: &StreetId) -> Result<usize> {
        let mut rng = Gen::new(0x00C1_71C0);
        let skills: Vec<&String> = self.vocabulary.skills.keys().collect();
        let mut added = 0;
        for n in 0..self.demo_volunteers {
            let kind = [Kind::InServicePartyMember, Kind::SeniorPartyMember, Kind::Resident, Kind::OrganisationMember]
                [(rng.below(100) / 25) as usize];
            let community = COMMUNITIES[n % COMMUNITIES.len()];
            let mut listed: Vec<String> = Vec::new();
            for _ in 0..=rng.below(3) {
                let skill = skills[rng.below(skills.len() as u64) as usize].clone();
                if !skills.is_empty() && !listed.contains(&skill) {
                    listed.push(skill);
                }
            }
            let day = 1 + rng.below(7) as i32;
            let evening = rng.chance(500);
            let availability = vec![
                WeeklyRange {
                    weekday: day,
                    start_time: if evening { "18:30".into() } else { "09:00".into() },
                    end_time: if evening { "21:00".into() } else { "11:30".into() },
                },
                WeeklyRange { weekday: 6 + (n % 2) as i32, start_time: "14:00".into(), end_time: "17:00".into() },
            ];
            let now = Utc::now();
            let approved = rng.chance(900);
            let volunteer = Volunteer {
                person: format!("users/vol-{n:04}"),
                display_name: format!(
                    "{}{}",
                    SURNAMES[rng.below(SURNAMES.len() as u64) as usize],
                    GIVEN[rng.below(GIVEN.len() as u64) as usize]
                ),
                kind: kind as i32,
                employer: if kind == Kind::InServicePartyMember {
                    EMPLOYERS[rng.below(EMPLOYERS.len() as u64) as usize].into()
                } else {
                    String::new()
                },
                registration_date: if kind == Kind::InServicePartyMember {
                    format!("2026-{:02}-{:02}", 1 + rng.below(10), 1 + rng.below(28))
                } else {
                    String::new()
                },
                community: format!("{}/communities/{community}", street.parent()),
                skills: listed,
                availability,
                home: Some(Point { latitude: 35.530 + rng.unit() * 0.030, longitude: 106.640 + rng.unit() * 0.048 }),
                monthly_hours_cap: 10 + 5 * rng.below(4) as i32,
                organisation: if kind == Kind::OrganisationMember {
                    format!(
                        "{}/organisations/{}",
                        street.parent(),
                        ORGANISATIONS[rng.below(ORGANISATIONS.len() as u64) as usize]
                    )
                } else {
                    String::new()
                },
                state: if approved { State::Approved as i32 } else { State::Pending as i32 },
                approved_by: if approved { format!("users/cadre-{community}") } else { String::new() },
                etag: String::new(),
                create_time: Some(time::to_timestamp(now)),
                update_time: Some(time::to_timestamp(now)),
                name: String::new(),
            };
            let name = VolunteerName::new(street.clone(), Id::parse("volunteer", &format!("vol-{n:04}"))?);
            let record = Record { name: name.clone(), volunteer, version: 1 };
            let new = self
                .writer
                .write(&RequestKey::unkeyed("SeedVolunteer"), async |c: &mut Change| {
                    if register::get(&mut **c.tx(), &name).await?.is_some() {
                        return Ok(false);
                    }
                    register::insert(c.tx(), &record, &time::to_text(now)).await?;
                    Ok(true)
                })
                .await?;
            added += usize::from(new);
        }
        tracing::info!(street = %street, added, "seeded the volunteers");
        Ok(added)
    }
}
