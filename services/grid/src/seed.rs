//! Demo data: Zhongjie Street's map — six communities, forty-eight grids tiling the street, a
//! grid worker on each — and a generated roster of fictional households and residents (valid
//! check digits, realistic shares of key groups), deterministic, written through the same
//! records, sealing and events as the API. Running it again adds nothing.

use chrono::{Duration, NaiveDate, Utc};
use civic_kit::error::Result;
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{Id, StreetId};
use civic_kit::time;
use civic_kit::write::Change;

use crate::Grids;
use crate::api::{grid_changed, place_households};
use crate::domain::{CommunityName, GridName, HouseholdName, ResidentName};
use crate::geometry::{Boundary, tiling};
use crate::map::StreetMap;
use crate::protect::{IdNumber, Phone};
use crate::store::{self, AssignmentRecord, CommunityRecord, GridRecord, HouseholdRecord, ResidentRecord};

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

const SURNAMES: &[&str] =
    &["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭"];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英",
    "桂兰", "建国",
];

/// A small deterministic generator (splitmix64).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

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
            self.writer
                .write(&RequestKey::unkeyed("seed"), async |change: &mut Change| {
                    store::insert_community(change.tx(), &record).await?;
                    for grid in &grids {
                        store::insert_grid(change.tx(), grid).await?;
                        change.emit(&grid.name.to_string(), &grid_changed(grid)).await?;
                    }
                    if let Some(first) = grids.first() {
                        let everywhere = [-180.0, -90.0, 180.0, 90.0];
                        place_households(change.tx(), &first.name, everywhere, &time::to_text(now)).await?;
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
        let mut rng = Gen(0x5EED_2026);
        let now = Utc::now();
        let today = now.date_naive();
        let (mut households, mut residents) = (0, 0);
        let batch = 250;
        let mut n = 0;
        while n < target {
            let mut rows: Vec<(HouseholdRecord, Vec<ResidentRecord>)> = Vec::with_capacity(batch);
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
                let household = HouseholdRecord {
                    name,
                    building,
                    address: format!("{}单元 {}{:02}", 1 + rng.below(4), 1 + rng.below(7), 1 + rng.below(4)),
                    latitude,
                    longitude,
                    place: map.place(longitude, latitude),
                    tags,
                    resident_count: people.len() as i64,
                    last_visit: None,
                    version: 1,
                    created: now - Duration::days(120),
                    updated: now,
                };
                rows.push((household, people));
            }
            self.writer
                .write(&RequestKey::unkeyed("seed"), async |change: &mut Change| {
                    for (household, people) in &rows {
                        store::insert_household(change.tx(), household).await?;
                        for person in people {
                            store::insert_resident(change.tx(), person).await?;
                        }
                    }
                    Ok(pbjson_types::Empty {})
                })
                .await?;
            households += rows.len();
            residents += rows.iter().map(|(_, p)| p.len()).sum::<usize>();
        }
        Ok((households, residents))
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
    use geo::BoundingRect;
    let bbox =
        boundary.polygon().bounding_rect().map(|r| [r.min().x, r.min().y, r.max().x, r.max().y]).unwrap_or_default();
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
        }],
        covers: Vec::new(),
        version: 1,
        created: now,
        updated: now,
    })
}
