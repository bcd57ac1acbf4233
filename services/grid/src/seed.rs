//! Demo data: Zhongjie Street's map — six communities, forty-eight grids tiling the street, a
//! grid worker on each — and a generated roster of fictional households and residents (valid
//! check digits, realistic shares of key groups), deterministic, written through the same
//! records, sealing and events as the API. Running it again adds nothing.

use chrono::{Duration, NaiveDate, Utc};
use civic_kit::demo::Gen;
use civic_kit::error::Result;
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{Id, StreetId};
use civic_kit::time;
use civic_kit::write::Change;

use crate::Grids;
use crate::api::{grid_assigned, grid_changed, household_changed, place_households};
use crate::domain::Place;
use crate::domain::{CommunityName, GridName, HouseholdName, ResidentName};
use crate::geometry::{Boundary, tiling};
use crate::map::StreetMap;
use crate::protect::{IdNumber, Phone};
use crate::store::{self, AssignmentRecord, CommunityRecord, GridRecord, HouseholdRecord, ResidentRecord, VisitRecord};

/// The street the demo data belongs to.
pub const ZHONGJIE_STREET: &str = "zhongjie";

/// The communities of the demo street: id and name.
const COMMUNITIES: [(&str, &str); 6] = [
    ("dongyuan", "东苑社区"),
    ("xiyuan", "西苑社区"),
    ("nanmen", "南门社区"),
    ("beiguan", "北关社区"),
    ("zhongshan", "中山社区"),
    ("liuhu", "柳湖社区"),
];

/// The street's extent: south-west corner and size in degrees (Pingliang, Gansu).
const EXTENT: (f64, f64, f64, f64) = (106.640, 35.530, 0.048, 0.030);
const COLUMNS: usize = 8;
const ROWS: usize = 6;

/// What a grid worker writes after an ordinary visit.
const NOTES: &[&str] = &[
    "老人身体尚好，叮嘱按时服药",
    "家中一切正常，宣传防诈骗知识",
    "了解就业需求，介绍社区招聘会",
    "检查燃气和用电安全，无隐患",
    "孩子上学情况良好，家长无诉求",
];

/// Problems households raise, by category.
const PROBLEMS: &[(&str, &str)] = &[
    ("environment", "楼道堆放杂物，影响通行"),
    ("facilities", "单元门禁损坏"),
    ("welfare", "咨询高龄津贴办理"),
    ("neighbour_dispute", "楼上漏水与邻居有矛盾"),
    ("safety", "小区路灯不亮"),
];

const SURNAMES: &[&str] =
    &["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭"];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英",
    "桂兰", "建国",
];

impl Grids {
    /// Seeds `street`: the map when it has no communities yet, then the roster up to the
    /// configured number of households. Says what it added.
    pub(crate) async fn seed_street(&self, street: &StreetId) -> Result<String> {
        let grids = self.seed_map(street).await?;
        let (households, residents) = self.seed_roster(street).await?;
        self.maps.forget(street);
        tracing::info!(street = %street, grids, households, residents, "seeded the grid service");
        Ok(format!("{grids} grids, {households} households and {residents} residents in {}", street.parent()))
    }

    async fn seed_map(&self, street: &StreetId) -> Result<usize> {
        let pool = self.writer.db().reader();
        if !store::list_communities(pool, street, "", 1).await?.is_empty() {
            return Ok(0);
        }
        let (west, south, width, height) = EXTENT;
        let cells = tiling(west, south, width, height, COLUMNS, ROWS, 20_261_130);
        let now = Utc::now();
        let per_community = cells.len().div_ceil(COMMUNITIES.len());
        let mut added = 0;
        for (c, (id, display_name)) in COMMUNITIES.iter().enumerate() {
            let community = CommunityName::new(street.clone(), Id::parse("seed", id)?);
            let record = CommunityRecord {
                name: community.clone(),
                display_name: (*display_name).to_owned(),
                office: format!("{display_name}党群服务中心，周一至周五 8:30–17:30"),
                contacts: community_contacts(c),
                version: 1,
                created: now,
                updated: now,
            };
            let grids: Vec<GridRecord> = cells
                .iter()
                .enumerate()
                .skip(c * per_community)
                .take(per_community)
                .map(|(n, boundary)| grid_record(&community, n, boundary, now))
                .collect::<Result<_>>()?;
            added += grids.len();
            let stations = demo_stations(&community, c, grids.first().map(|g| g.boundary.as_str()), now);
            self.writer
                .write(&RequestKey::unkeyed("seed"), async |change: &mut Change| {
                    store::insert_community(change.tx(), &record).await?;
                    for grid in &grids {
                        store::insert_grid(change.tx(), grid).await?;
                        change.emit(&grid.name.to_string(), &grid_changed(grid)).await?;
                        change.emit(&grid.name.to_string(), &grid_assigned(grid)).await?;
                    }
                    let now_text = time::to_text(now);
                    for (k, station) in stations.iter().enumerate() {
                        let id = format!("desk-{}", k + 1);
                        store::insert_station(change.tx(), street, id_of(&community), &id, 1, station, &now_text)
                            .await?;
                    }
                    if let Some(first) = grids.first() {
                        let everywhere = [-180.0, -90.0, 180.0, 90.0];
                        place_households(change, &first.name, everywhere, &self.policy, now).await?;
                    }
                    Ok(pbjson_types::Empty {})
                })
                .await?;
        }
        Ok(added)
    }

    async fn seed_roster(&self, street: &StreetId) -> Result<(usize, usize)> {
        let pool = self.writer.db().reader();
        let target = self.demo_households;
        if target == 0
            || !store::list_households(
                pool,
                street,
                &Default::default(),
                &store::Scope { street: true, ..Default::default() },
                "",
                1,
            )
            .await?
            .is_empty()
        {
            return Ok((0, 0));
        }
        let map = StreetMap::build(store::boundaries(pool, street).await?);
        let (west, south, width, height) = EXTENT;
        let mut rng = Gen::new(0x5EED_2026);
        let now = Utc::now();
        let today = now.date_naive();
        let (mut households, mut residents) = (0, 0);
        let batch = 250;
        let mut n = 0;
        while n < target {
            let mut rows: Vec<(HouseholdRecord, Vec<ResidentRecord>, Vec<VisitRecord>)> = Vec::with_capacity(batch);
            for _ in 0..batch.min(target - n) {
                n += 1;
                let (longitude, latitude) = (west + rng.unit() * width, south + rng.unit() * height);
                let building = format!("{}号楼", 1 + rng.below(60));
                let name = HouseholdName::new(street.clone(), Id::parse("seed", &format!("h{n:06}"))?);
                let size = 1 + rng.below(4) as usize;
                let mut people = Vec::with_capacity(size);
                for k in 0..size {
                    people.push(self.demo_resident(&name, k, size, &mut rng, today, now)?);
                }
                let mut tags: Vec<String> = people.iter().flat_map(|p: &ResidentRecord| p.tags.clone()).collect();
                tags.sort();
                tags.dedup();
                let place = map.place(longitude, latitude);
                let visits = self.demo_visits(&name, &place, &tags, &mut rng, now)?;
                let household = HouseholdRecord {
                    name,
                    building,
                    address: format!("{}单元 {}{:02}", 1 + rng.below(4), 1 + rng.below(7), 1 + rng.below(4)),
                    latitude,
                    longitude,
                    place,
                    tags,
                    resident_count: people.len() as i64,
                    last_visit: visits
                        .iter()
                        .filter_map(|v| v.visit.visit_time)
                        .map(|t| t.seconds)
                        .max()
                        .and_then(|s| chrono::DateTime::from_timestamp(s, 0)),
                    version: 1,
                    created: now - Duration::days(120),
                    updated: now,
                };
                rows.push((household, people, visits));
            }
            self.writer
                .write(&RequestKey::unkeyed("seed"), async |change: &mut Change| {
                    let now_text = time::to_text(now);
                    for (household, people, visits) in &rows {
                        store::insert_household(change.tx(), household).await?;
                        change
                            .emit(&household.name.to_string(), &household_changed(household, &self.policy, now))
                            .await?;
                        for person in people {
                            store::insert_resident(change.tx(), person).await?;
                        }
                        for visit in visits {
                            let at = visit
                                .visit
                                .visit_time
                                .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                                .unwrap_or(now);
                            store::insert_visit(change.tx(), visit, &time::to_text(at), &now_text).await?;
                            change.emit(&visit.name.to_string(), &crate::api::recorded(&visit.visit)).await?;
                        }
                    }
                    Ok(pbjson_types::Empty {})
                })
                .await?;
            households += rows.len();
            residents += rows.iter().map(|(_, p, _)| p.len()).sum::<usize>();
        }
        Ok((households, residents))
    }

    /// The last month's visits to a household by its grid's worker: as often as the visit
    /// policy asks of a key household (now and then one missed), a visit to one in four others.
    fn demo_visits(
        &self,
        household: &HouseholdName,
        place: &Place,
        tags: &[String],
        rng: &mut Gen,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<VisitRecord>> {
        use civic_proto::grid::visit::{Kind, Mood};
        if place.grid.is_empty() {
            return Ok(Vec::new());
        }
        let (interval, _) = self.policy.interval(tags);
        let count = if tags.is_empty() {
            usize::from(rng.chance(250))
        } else {
            (30 / interval.max(1) as usize).max(1) - usize::from(rng.chance(150))
        };
        let worker = format!("users/gw-{}", place.grid.trim_start_matches('g'));
        let grid = format!("{}/communities/{}/grids/{}", household.street().parent(), place.community, place.grid);
        let mut out = Vec::with_capacity(count);
        for k in 0..count {
            let at = now - Duration::minutes((k as i64 * i64::from(interval) * 1440) + 60 + rng.below(1200) as i64);
            let problems = if rng.chance(120) {
                let (category, description) = PROBLEMS[rng.below(PROBLEMS.len() as u64) as usize];
                vec![civic_proto::grid::Problem {
                    category: category.into(),
                    description: description.into(),
                    location: None,
                    issue: String::new(),
                }]
            } else {
                Vec::new()
            };
            let id = Id::parse("seed", &format!("v-{}-{k}", household.id()))?;
            let name = crate::domain::VisitName::new(household.street().clone(), id);
            let visit = civic_proto::grid::Visit {
                name: name.to_string(),
                household: household.to_string(),
                worker: worker.clone(),
                grid: grid.clone(),
                grid_revision: 1,
                kind: Kind::DoorToDoor as i32,
                key_visit: !tags.is_empty(),
                visit_time: Some(time::to_timestamp(at)),
                duration_minutes: 10 + rng.below(40) as i32,
                notes: NOTES[rng.below(NOTES.len() as u64) as usize].into(),
                mood: if problems.is_empty() { Mood::Content as i32 } else { Mood::Troubled as i32 },
                problems,
                follow_up_date: String::new(),
                create_time: Some(time::to_timestamp(at)),
                update_time: Some(time::to_timestamp(at)),
            };
            out.push(VisitRecord {
                name,
                household: household.id().to_string(),
                worker: worker.clone(),
                place: place.clone(),
                visit,
            });
        }
        Ok(out)
    }

    /// A fictional resident: a name, a valid ID number and phone, key-group tags in roughly the
    /// shares of an old street of a small city.
    fn demo_resident(
        &self,
        household: &HouseholdName,
        k: usize,
        size: usize,
        rng: &mut Gen,
        today: NaiveDate,
        now: chrono::DateTime<Utc>,
    ) -> Result<ResidentRecord> {
        let name = ResidentName::new(household.clone(), Id::parse("seed", &format!("r{k}"))?);
        let age = if k == 0 { 25 + rng.below(65) as i64 } else { 1 + rng.below(85) as i64 };
        let birth = today - Duration::days(age * 365 + rng.below(365) as i64);
        let id = IdNumber::generate("620802", birth, rng.below(1000) as u16);
        let phone = Phone::parse(&format!("1{}{:09}", 3 + rng.below(7), rng.below(1_000_000_000)))
            .map_err(|why| civic_kit::Error::invalid("seed.phone", why))?;
        let mut tags = Vec::new();
        if age >= 70 && size == 1 && rng.chance(700) {
            tags.push("elderly_alone".to_owned());
        } else if age >= 65 && rng.chance(150) {
            tags.push("empty_nest_elderly".to_owned());
        }
        if rng.chance(40) {
            tags.push("disabled".to_owned());
        }
        if rng.chance(50) {
            tags.push("low_income".to_owned());
        }
        if age < 16 && rng.chance(60) {
            tags.push("left_behind_child".to_owned());
        }
        if age >= 40 && rng.chance(15) {
            tags.push("veteran".to_owned());
        }
        if age >= 60 && rng.chance(40) {
            tags.push("senior_party_member".to_owned());
        }
        let allowed = self.tags.of(household.street());
        tags.retain(|t| allowed.contains(t));
        tags.sort();
        let display_name = format!(
            "{}{}",
            SURNAMES[rng.below(SURNAMES.len() as u64) as usize],
            GIVEN[rng.below(GIVEN.len() as u64) as usize]
        );
        let (id_number_sealed, id_number_hash) = self.seal_for(&name, "id_number", id.as_str())?;
        let (phone_sealed, phone_hash) = self.seal_for(&name, "phone", phone.as_str())?;
        Ok(ResidentRecord {
            name,
            display_name,
            id_number_sealed,
            id_number_hash,
            phone_sealed,
            phone_hash,
            birth_date: id.birth_date().to_string(),
            tags,
            consent_note: String::new(),
            user: String::new(),
            version: 1,
            created: now,
            updated: now,
        })
    }
}

fn grid_record(
    community: &CommunityName,
    n: usize,
    boundary: &Boundary,
    now: chrono::DateTime<Utc>,
) -> Result<GridRecord> {
    let bbox = boundary.bbox();
    let grid = GridName::new(community, Id::parse("seed", &format!("g{:02}", n + 1))?);
    Ok(GridRecord {
        name: grid,
        display_name: format!("第{}网格", n + 1),
        boundary: boundary.to_geojson(),
        bbox,
        revision: 1,
        workers: vec![AssignmentRecord {
            worker: format!("users/gw-{:02}", n + 1),
            duties: "入户走访、民情日记、矛盾排查".to_owned(),
            display_name: format!("{}{}", SURNAMES[n % SURNAMES.len()], GIVEN[(n * 7) % GIVEN.len()]),
            phone: format!("139{:08}", 9_330_000 + n),
        }],
        covers: Vec::new(),
        version: 1,
        created: now,
        updated: now,
    })
}

/// A community's staff as its contact cards print them.
fn community_contacts(c: usize) -> Vec<civic_proto::grid::StaffContact> {
    let contact = |role: &str, name: String, phone: String| civic_proto::grid::StaffContact {
        role: role.to_owned(),
        display_name: name,
        phone,
        user: String::new(),
    };
    vec![
        contact(
            "社区党委书记",
            format!("{}书记", SURNAMES[(c * 3) % SURNAMES.len()]),
            format!("0933-82{:05}", 10_000 + c),
        ),
        contact(
            "社区主任",
            format!("{}主任", SURNAMES[(c * 5 + 1) % SURNAMES.len()]),
            format!("0933-82{:05}", 20_000 + c),
        ),
        contact(
            "包片民警",
            format!("{}警官", SURNAMES[(c * 7 + 2) % SURNAMES.len()]),
            format!("137{:08}", 9_330_100 + c),
        ),
    ]
}

fn id_of(community: &CommunityName) -> &str {
    community.id().as_str()
}

/// A community's senior Party members' desks (fifteen across the street): two members each,
/// on duty on weekday mornings in turn.
fn demo_stations(
    community: &CommunityName,
    c: usize,
    boundary: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Vec<civic_proto::grid::Station> {
    use civic_proto::grid::{DutySlot, StaffContact, Station};
    let location = boundary
        .and_then(|b| Boundary::from_geojson(b).ok())
        .map(|b| b.interior_point())
        .map(|(longitude, latitude)| civic_proto::grid::Point { latitude, longitude });
    let count = if c < 3 { 3 } else { 2 };
    (0..count)
        .map(|k| {
            let compound = ["东苑小区", "南门家属院", "柳湖花园", "中山苑", "北关新村", "西苑小区"][(c + k) % 6];
            let members: Vec<StaffContact> = (0..2)
                .map(|m| StaffContact {
                    role: "老党员".into(),
                    display_name: format!(
                        "{}{}",
                        SURNAMES[(c * 5 + k * 3 + m) % SURNAMES.len()],
                        ["老师", "大爷", "阿姨"][(k + m) % 3]
                    ),
                    phone: format!("135{:08}", 9_330_000 + c * 100 + k * 10 + m),
                    user: String::new(),
                })
                .collect();
            let rota = (1..=5)
                .map(|weekday| DutySlot {
                    weekday,
                    start_time: "09:00".into(),
                    end_time: "11:30".into(),
                    member: members[(weekday as usize) % 2].display_name.clone(),
                })
                .collect();
            Station {
                name: format!("{community}/stations/desk-{}", k + 1),
                display_name: format!("{compound}老党员办公桌"),
                place: format!("{compound} {}号楼下", k + 1),
                location,
                members,
                rota,
                etag: civic_kit::idempotency::etag(1),
                create_time: Some(time::to_timestamp(now)),
                update_time: Some(time::to_timestamp(now)),
            }
        })
        .collect()
}
