//! Demo data beyond the register: the alliance's four organisations, a reward catalogue, and
//! needs across every state — served, confirmed and paid in points in the weeks before, under
//! way and open in the days after, called off and expired — through the same store paths as the
//! API, with their events. Running it again adds nothing.

use chrono::{DateTime, Duration, DurationRound, Utc};
use civic_kit::demo::Gen;
use civic_kit::error::Result;
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{Id, StreetId};
use civic_kit::time;
use civic_kit::write::Change;
use civic_proto::volunteer::need::Kind as NeedKind;
use civic_proto::volunteer::organisation::{Kind, Stage};
use civic_proto::volunteer::*;
use prost::Message;

use crate::Volunteers;
use crate::claims::{self, NewNeed};
use crate::organisations::{self, OrganisationName};
use crate::rewards;
use crate::tasks::{self, Party};

/// How many demo needs: about a third served and confirmed, the rest in the other states.
const NEEDS: usize = 60;

/// The demo rewards: (id, name, offered by, points, stock).
const REWARDS: [(&str, &str, &str, i64, i64); 6] = [
    ("oil", "食用油一桶", "惠民超市", 30, 40),
    ("rice", "大米十斤", "惠民超市", 40, 30),
    ("soap", "洗衣液一瓶", "中街便民店", 15, 60),
    ("haircut", "理发一次", "巧手理发店", 10, 100),
    ("checkup", "免费体检一次", "中街社区卫生服务站", 60, 20),
    ("movie", "电影票一张", "崆峒影城", 25, 50),
];

/// What the demo needs ask for: (kind, title, skill).
const WISHES: [(NeedKind, &str, &str); 8] = [
    (NeedKind::MicroWish, "想要一台收音机", "companionship"),
    (NeedKind::MicroWish, "孩子需要一套课外书", "tutoring"),
    (NeedKind::OneOnOne, "独居老人每周助餐", "cooking"),
    (NeedKind::OneOnOne, "空巢老人陪伴聊天", "companionship"),
    (NeedKind::Activity, "楼道环境清洁", "cleaning"),
    (NeedKind::Activity, "老旧电器义务维修", "repair"),
    (NeedKind::Activity, "应急救护知识培训", "first_aid"),
    (NeedKind::Activity, "红色故事宣讲", "culture_sport"),
];

fn organisation(
    id: &str,
    name: &str,
    kind: Kind,
    stage: Stage,
    project: (&str, &str),
    skills: &[&str],
) -> (String, Organisation) {
    let station = Station {
        display_name: "七彩志愿者服务站".into(),
        address: "中街党群服务中心一楼".into(),
        place: Some(Point { latitude: 35.545, longitude: 106.665 }),
        community: "streets/zhongjie/communities/dongyuan".into(),
    };
    let organisation = Organisation {
        display_name: name.into(),
        kind: kind as i32,
        stage: stage as i32,
        description: project.1.into(),
        projects: vec![Project {
            title: project.0.into(),
            description: project.1.into(),
            skills: skills.iter().map(|s| (*s).to_owned()).collect(),
        }],
        stations: vec![station],
        ..Default::default()
    };
    (id.to_owned(), organisation)
}

impl Volunteers {
    /// The demo organisations, rewards and needs of `street`: how many of each were added.
    pub(crate) async fn seed_work(&self, street: &StreetId) -> Result<(usize, usize, usize)> {
        let organisations = [
            organisation(
                "lvyi-tongxin",
                "绿益童心公益联盟",
                Kind::Charity,
                Stage::Incubated,
                ("绿益童心", "为辖区孤残儿童提供生活帮助"),
                &["tutoring", "companionship"],
            ),
            organisation(
                "linli-huzhu",
                "中街邻里互助社",
                Kind::CommunityService,
                Stage::Incubating,
                ("邻里守望", "独居老人助餐、代购和探访"),
                &["elder_care", "cooking"],
            ),
            organisation(
                "zhaohua-xishi",
                "朝花夕拾兴趣联盟",
                Kind::CultureSport,
                Stage::Incubated,
                ("朝花夕拾", "书画、合唱、太极等兴趣小组"),
                &["culture_sport"],
            ),
            organisation(
                "heshilao",
                "和事佬调解工作室",
                Kind::Mediation,
                Stage::Incubating,
                ("和事佬", "邻里纠纷专业调处"),
                &["mediation", "legal_aid"],
            ),
        ];
        let now = Utc::now();
        let mut added = (0, 0, 0);
        for (id, o) in organisations {
            let name = OrganisationName::new(street.clone(), Id::parse("organisation", &id)?);
            let record = organisations::Record {
                name: name.clone(),
                organisation: Organisation {
                    create_time: Some(time::to_timestamp(now)),
                    update_time: Some(time::to_timestamp(now)),
                    ..o
                },
                version: 1,
            };
            let new = self
                .writer
                .write(&RequestKey::unkeyed("SeedOrganisation"), async |c: &mut Change| {
                    if organisations::exists(&mut **c.tx(), &name).await? {
                        return Ok(false);
                    }
                    organisations::insert(c.tx(), &record, &time::to_text(now)).await?;
                    Ok(true)
                })
                .await?;
            added.0 += usize::from(new);
        }
        for (id, display_name, offered_by, points, stock) in REWARDS {
            let reward = rewards::Reward {
                street: street.as_str().to_owned(),
                id: id.to_owned(),
                display_name: display_name.to_owned(),
                offered_by: offered_by.to_owned(),
                points,
                stock,
            };
            let new = self
                .writer
                .write(&RequestKey::unkeyed("SeedReward"), async |c: &mut Change| {
                    if rewards::get(&mut **c.tx(), street.as_str(), id).await?.is_some() {
                        return Ok(false);
                    }
                    rewards::offer(c.tx(), &reward).await?;
                    Ok(true)
                })
                .await?;
            added.1 += usize::from(new);
        }
        added.2 = self.seed_needs(street, now).await?;
        Ok(added)
    }

    /// The demo needs, each with its story so far.
    async fn seed_needs(&self, street: &StreetId, now: DateTime<Utc>) -> Result<usize> {
        let mut rng = Gen::new(0x0000_DE5E_ED00);
        let approved = crate::register::approved(self.writer.db().reader(), street).await?;
        if approved.is_empty() {
            return Ok(0);
        }
        let hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
        let mut added = 0;
        for n in 0..NEEDS {
            let id = format!("demo-{n:03}");
            let (kind, title, skill) = WISHES[n % WISHES.len()];
            // In a volunteer's community, at a place of the street. (No grid: the seed runs before
            // the process serves, when the grid service's map cannot be asked.)
            let place = Point { latitude: 35.530 + rng.unit() * 0.030, longitude: 106.640 + rng.unit() * 0.048 };
            let community = crate::register::community_id(&approved[n % approved.len()].1.community).to_owned();
            // Story by n: 0 served and confirmed (weeks before), 1 open, 2 taken, 3 called off,
            // 4 expired, 5 served and waiting for the resident's confirmation.
            let story = [0, 1, 2, 0, 3, 0, 4, 5, 1, 0][n % 10];
            let start = match story {
                0 | 4 | 5 => hour - Duration::days(1 + rng.below(40) as i64),
                _ => hour + Duration::days(1 + rng.below(14) as i64),
            };
            let end = start + Duration::hours(2);
            // The grid service's demo households are h000001 onwards.
            let household = format!("{}/households/h{:06}", street.parent(), 1 + n % 150);
            let resident = format!("users/res-{:04}", n % 150);
            let places = if kind == NeedKind::Activity { 3 } else { 1 };
            let need = Need {
                name: format!("{}/needs/{id}", street.parent()),
                kind: kind as i32,
                title: title.into(),
                description: String::new(),
                resident: resident.clone(),
                household: if kind == NeedKind::Activity { String::new() } else { household },
                community: format!("{}/communities/{community}", street.parent()),
                place: Some(place),
                required_skills: vec![skill.into()],
                start_time: Some(time::to_timestamp(start)),
                end_time: Some(time::to_timestamp(end)),
                places,
                budget_fen: if kind == NeedKind::MicroWish { 5000 + 1000 * rng.below(10) as i64 } else { 0 },
                placed_by: resident.clone(),
                create_time: Some(time::to_timestamp(start - Duration::days(3))),
                update_time: Some(time::to_timestamp(start - Duration::days(3))),
                ..Default::default()
            };
            let stored = NewNeed {
                street: street.as_str().to_owned(),
                id: id.clone(),
                kind: kind.as_str_name().to_owned(),
                community: community.clone(),
                grid: String::new(),
                household: need.household.clone(),
                resident: resident.clone(),
                placed_by: resident.clone(),
                places: i64::from(places),
                start,
                end,
                body: need.encode_to_vec(),
            };
            // The volunteers: the community's approved ones, from n on.
            let takers: Vec<String> = approved
                .iter()
                .filter(|(_, v)| crate::register::community_id(&v.community) == community)
                .cycle()
                .skip(n)
                .take(usize::try_from(places).unwrap_or(1))
                .map(|(id, _)| format!("users/{id}"))
                .collect();
            let rate = self.points_per_hour.get(kind.as_str_name()).copied().unwrap_or(0);
            let new = self
                .writer
                .write(&RequestKey::unkeyed("SeedNeed"), async |c: &mut Change| {
                    if claims::get_need(&mut **c.tx(), &stored.street, &id).await?.is_some() {
                        return Ok(false);
                    }
                    claims::insert_need(c.tx(), &stored).await?;
                    let created = NeedCreated {
                        need: need.name.clone(),
                        kind: stored.kind.clone(),
                        community: need.community.clone(),
                        grid: need.grid.clone(),
                        places,
                        placed_by: resident.clone(),
                        start_time: need.start_time,
                        create_time: need.create_time,
                    };
                    c.emit(&need.name, &created).await?;
                    let street = stored.street.as_str();
                    match story {
                        1 | 4 => {}
                        3 => {
                            claims::cancel(c.tx(), street, &id).await?;
                        }
                        2 => {
                            for user in &takers {
                                claims::claim(c.tx(), street, &id, user, start + self.check_in_grace).await?;
                            }
                        }
                        _ => {
                            // Everyone takes their place and comes before anyone leaves.
                            for user in &takers {
                                claims::claim(c.tx(), street, &id, user, start + self.check_in_grace).await?;
                            }
                            for user in &takers {
                                claims::check_in(c.tx(), street, &id, user, start).await?;
                            }
                            for user in &takers {
                                tasks::check_out(c.tx(), street, &id, user, end).await?;
                                tasks::confirm(c.tx(), street, &id, user, Party::Volunteer, end, rate).await?;
                                if story == 5 {
                                    continue;
                                }
                                let rating = 4 + i64::from(rng.chance(600));
                                let task = tasks::confirm(
                                    c.tx(),
                                    street,
                                    &id,
                                    user,
                                    Party::Resident(&resident, rating),
                                    end,
                                    rate,
                                )
                                .await?;
                                let volunteer = crate::register::volunteer_of(street, user);
                                let when = Some(time::to_timestamp(end));
                                let confirmed = NeedConfirmed {
                                    need: need.name.clone(),
                                    volunteer,
                                    minutes: task.minutes,
                                    confirm_time: when,
                                    rating: i32::try_from(task.rating).unwrap_or(0),
                                };
                                c.emit(&need.name, &confirmed).await?;
                                if !task.points_movement.is_empty() {
                                    let earned = PointsEarned {
                                        person: user.clone(),
                                        points: task.points,
                                        source: format!("{}/claims/{user}", need.name),
                                        movement: task.points_movement.clone(),
                                        earn_time: when,
                                    };
                                    c.emit(user, &earned).await?;
                                }
                            }
                        }
                    }
                    if story == 4 {
                        claims::expire(c.tx(), street, &id, now).await?;
                    }
                    Ok(true)
                })
                .await?;
            added += usize::from(new);
        }
        if added == NEEDS {
            self.seed_redemptions(street, &approved).await?;
        }
        Ok(added)
    }

    /// A few rewards redeemed by volunteers who earned enough, for the statements.
    async fn seed_redemptions(&self, street: &StreetId, approved: &[(String, Volunteer)]) -> Result<()> {
        for (id, _) in approved.iter().take(80) {
            let person = format!("users/{id}");
            let balance = crate::ledger::balance(self.writer.db().reader(), street.as_str(), &person).await?;
            let reward = match balance {
                25.. => "movie",
                10.. => "haircut",
                _ => continue,
            };
            self.writer
                .write(&RequestKey::unkeyed("SeedRedemption"), async |c: &mut Change| {
                    let paid = rewards::redeem(c.tx(), street.as_str(), reward, &person, "users/cadre-counter").await?;
                    let event = PointsRedeemed {
                        person: person.clone(),
                        points: paid.points,
                        reward: format!("{}/rewards/{reward}", street.parent()),
                        movement: paid.movement,
                        redeem_time: Some(time::to_timestamp(Utc::now())),
                    };
                    c.emit(&person, &event).await
                })
                .await?;
        }
        Ok(())
    }
}
