//! The volunteer service's scenarios, on generated communities of their own in the demo street:
//!
//! - `volunteer-recommend`: a cadre asks for the ten who fit a need best among 100,000 approved
//!   volunteers of one community, over gRPC (every volunteer scored per request).
//! - `volunteer-assign`: AssignNeeds over 2,000 open places (of 800 needs on one weekend) and
//!   10,000 volunteers of another community, timed end to end, each call against the bare
//!   solver on the same matrix in this process right after it; its optimum checked against a
//!   second, independent solver (`lsap`), and its gain over greedy's plan reported.
//!
//! The volunteers are written straight into the service's database (as the register's
//! migrations lay it out, through its own insert), since registering 110,000 people one request
//! at a time would be the benchmark's whole run; the needs go through the API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DurationRound, FixedOffset, TimeZone, Utc};
use civic_kit::auth::Role;
use civic_kit::names::{Id, StreetId};
use civic_proto::volunteer::need::Kind;
use civic_proto::volunteer::volunteer::{Kind as VolunteerKind, State};
use civic_proto::volunteer::volunteer_service_client::VolunteerServiceClient;
use civic_proto::volunteer::*;
use civic_volunteer::register::{self, Record, VolunteerName};
use civic_volunteer::{assign, batch, pool};
use serde_json::{Value, json};

use super::load::{Call, Stats};
use super::{Target, bearer, mint};

const STREET: &str = civic_volunteer::ZHONGJIE_STREET;
/// The community of `volunteer-recommend`, and its size.
const RECOMMEND: (&str, usize) = ("bench-r", 100_000);
/// The community of `volunteer-assign`, its volunteers, and the places and needs it gives out.
const ASSIGN: (&str, usize) = ("bench-a", 10_000);
const PLACES: usize = 2_000;
const NEEDS: usize = 800;
/// The demo street's extent: west, south, width, height (degrees).
const EXTENT: (f64, f64, f64, f64) = (106.640, 35.530, 0.048, 0.030);
/// The skills of the default vocabulary most residents can offer.
const EVERYDAY: [&str; 5] = ["elder_care", "companionship", "cooking", "cleaning", "culture_sport"];
/// The skills of a trade or profession, which few volunteers have.
const SPECIALIST: [&str; 5] = ["repair", "tutoring", "first_aid", "legal_aid", "mediation"];
/// In a hundred volunteers, how many have a specialist skill; in a hundred needs, how many ask
/// for one.
const SPECIALIST_VOLUNTEERS: u64 = 15;
const SPECIALIST_NEEDS: u64 = 30;

/// A deterministic stream of numbers (splitmix64).
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

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The `n`-th generated volunteer of `community`: one or two everyday skills, and one in
/// [`SPECIALIST_VOLUNTEERS`] a hundred a specialist one too; two weekly stretches of free time
/// (mornings, afternoons or evenings), a home in the street, a cap of 10 to 25 hours.
fn volunteer(seed: u64, n: usize, community: &str) -> Volunteer {
    let mut g = Gen(seed ^ (n as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut skills = vec![EVERYDAY[g.below(5) as usize].to_owned()];
    if g.below(2) == 0 {
        let second = EVERYDAY[g.below(5) as usize].to_owned();
        if !skills.contains(&second) {
            skills.push(second);
        }
    }
    if g.below(100) < SPECIALIST_VOLUNTEERS {
        skills.push(SPECIALIST[g.below(5) as usize].to_owned());
    }
    let stretch = |g: &mut Gen| {
        let (start, end) = [("08:00", "12:00"), ("14:00", "18:00"), ("18:30", "21:30")][g.below(3) as usize];
        WeeklyRange { weekday: 1 + g.below(7) as i32, start_time: start.into(), end_time: end.into() }
    };
    let (west, south, width, height) = EXTENT;
    Volunteer {
        person: format!("users/{}", volunteer_id(community, n)),
        display_name: format!("志愿者{n}"),
        kind: VolunteerKind::Resident as i32,
        community: format!("streets/{STREET}/communities/{community}"),
        skills,
        availability: vec![stretch(&mut g), stretch(&mut g)],
        home: Some(Point { latitude: south + g.unit() * height, longitude: west + g.unit() * width }),
        monthly_hours_cap: 10 + 5 * g.below(4) as i32,
        state: State::Approved as i32,
        approved_by: "users/bench-admin".into(),
        ..Default::default()
    }
}

fn volunteer_id(community: &str, n: usize) -> String {
    format!("{community}-{n:06}")
}

/// The `n`-th generated need of `community`: a skill (a specialist one for
/// [`SPECIALIST_NEEDS`] in a hundred), a place, two hours on the morning, afternoon or evening
/// of the next Saturday or Sunday (the street's time: a community's weekend of activities, when
/// needs crowd the same hours), `places` volunteers.
fn need(seed: u64, n: usize, community: &str, places: i32, today: chrono::DateTime<Utc>) -> Need {
    use chrono::Datelike;
    let mut g = Gen(seed ^ (n as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let zone = FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    let local = today.with_timezone(&zone).date_naive();
    let to_saturday = (6 + 7 - u64::from(local.weekday().number_from_monday())) % 7;
    let day = local + chrono::Days::new(if to_saturday == 0 { 7 } else { to_saturday } + g.below(2));
    let hour = [9, 14, 19][g.below(3) as usize];
    let start = zone
        .from_local_datetime(&day.and_hms_opt(hour, 0, 0).unwrap_or_default())
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(today);
    let (west, south, width, height) = EXTENT;
    Need {
        kind: Kind::Activity as i32,
        title: "压测活动".into(),
        resident: format!("users/bench-res-{n}"),
        community: format!("streets/{STREET}/communities/{community}"),
        place: Some(Point { latitude: south + g.unit() * height, longitude: west + g.unit() * width }),
        required_skills: vec![
            if g.below(100) < SPECIALIST_NEEDS {
                SPECIALIST[g.below(5) as usize]
            } else {
                EVERYDAY[g.below(5) as usize]
            }
            .to_owned(),
        ],
        start_time: Some(civic_kit::time::to_timestamp(start)),
        end_time: Some(civic_kit::time::to_timestamp(start + chrono::Duration::hours(2))),
        places,
        ..Default::default()
    }
}

/// Writes `count` generated volunteers of `community` into the service's database, a thousand a
/// transaction.
async fn register(target: &Target, seed: u64, community: &str, count: usize) -> anyhow::Result<()> {
    let db = target.service_db("volunteer").await?;
    let street = StreetId::parse("street", STREET)?;
    let now = civic_kit::time::now_text();
    for first in (0..count).step_by(1000) {
        let mut tx = db.begin().await.context("a transaction")?;
        for n in first..(first + 1000).min(count) {
            let name = VolunteerName::new(street.clone(), Id::parse("volunteer", &volunteer_id(community, n))?);
            let record = Record { name, volunteer: volunteer(seed, n, community), version: 1 };
            register::insert(&mut tx, &record, &now).await.context("registering a generated volunteer")?;
        }
        tx.commit().await.context("committing the volunteers")?;
    }
    db.close().await;
    Ok(())
}

/// The street admin's token.
fn admin(target: &Target) -> anyhow::Result<String> {
    mint(target, "bench-admin", Role::Admin, STREET)
}

/// `volunteer-recommend`: the community of 100,000 and one need in it; the call asks for its
/// ten best.
pub async fn recommend(target: &Target) -> anyhow::Result<Call> {
    let (community, count) = RECOMMEND;
    register(target, 0x00BE_7C40, community, count).await?;
    let admin = admin(target)?;
    let mut client = VolunteerServiceClient::new(target.grpc[0].clone());
    let placed = client
        .create_need(bearer(
            CreateNeedRequest {
                parent: format!("streets/{STREET}"),
                need: Some(need(7, 0, community, 3, Utc::now())),
                request_id: "bench-recommend-need".into(),
            },
            &admin,
        ))
        .await
        .context("placing the need to recommend for")?
        .into_inner();
    let channels = target.grpc.clone();
    let name = placed.name;
    Ok(Arc::new(move |n| {
        let mut client = VolunteerServiceClient::new(channels[n as usize % channels.len()].clone());
        let request = bearer(RecommendVolunteersRequest { name: name.clone(), page_size: 10 }, &admin);
        Box::pin(async move {
            let answer = client.recommend_volunteers(request).await.map_err(|s| s.to_string())?;
            if answer.get_ref().recommendations.len() == 10 { Ok(()) } else { Err("fewer than ten".into()) }
        })
    }))
}

/// `volunteer-assign`: see the module docs. Returns the end-to-end timings (as stats of
/// `runs` calls) and the figures beside them.
pub async fn assign(target: &Target, runs: usize) -> anyhow::Result<(Stats, Value)> {
    let (community, count) = ASSIGN;
    let seed = 0x00A5_5167;
    register(target, seed, community, count).await?;
    let admin = admin(target)?;
    let mut client = VolunteerServiceClient::new(target.grpc[0].clone());
    // 800 needs, 2,000 places: one in two takes one volunteer, the rest two to six.
    let today = Utc::now().duration_trunc(chrono::Duration::days(1)).unwrap_or_else(|_| Utc::now());
    let mut g = Gen(seed);
    let mut sizes: Vec<i32> = (0..NEEDS).map(|n| if n % 2 == 0 { 1 } else { 2 + g.below(5) as i32 }).collect();
    let mut total: i32 = sizes.iter().sum();
    let wanted = i32::try_from(PLACES).unwrap_or(i32::MAX);
    for s in sizes.iter_mut().rev() {
        while total > wanted && *s > 1 {
            *s -= 1;
            total -= 1;
        }
        while total < wanted && *s < 8 {
            *s += 1;
            total += 1;
        }
    }
    let mut needs = Vec::with_capacity(NEEDS);
    for (n, places) in sizes.iter().enumerate() {
        let need = need(seed, n, community, *places, today);
        let request = CreateNeedRequest {
            parent: format!("streets/{STREET}"),
            need: Some(need.clone()),
            request_id: format!("bench-assign-need-{n}"),
        };
        client.create_need(bearer(request, &admin)).await.with_context(|| format!("placing need {n}"))?;
        needs.push(need);
    }

    // The same problem in this process: the volunteers and needs as generated (no one has
    // taken anything), the service's default weights, the demo street's time zone.
    let settings = civic_volunteer::Settings::default();
    let weights = settings.weights.weights();
    let zone = FixedOffset::east_opt(8 * 3600).context("UTC+8")?;
    let candidates: Vec<pool::Candidate> =
        (0..count).map(|n| pool::Candidate::of(volunteer_id(community, n), &volunteer(seed, n, community))).collect();
    let load = pool::Load::default();
    let opens: Vec<batch::Open<'_>> = needs
        .iter()
        .map(|n| batch::Open { need: pool::need_of(n), places: usize::try_from(n.places).unwrap_or(1) })
        .collect();
    let shortest = opens.iter().map(|o| o.need.hours()).fold(f64::INFINITY, f64::min);
    let offers: Vec<batch::Offer<'_>> = candidates
        .iter()
        .map(|c| {
            let volunteer = c.matching(load.of(&c.user));
            batch::Offer {
                volunteer,
                slots: batch::slots(&volunteer, shortest, settings.assign_places_per_volunteer, opens.len()),
            }
        })
        .filter(|o| o.slots > 0)
        .collect();
    let costs = batch::matrix(&opens, &offers, &weights, zone).map_err(|e| anyhow::anyhow!("{e}"))?;
    // End to end through the API, each call followed by the bare solver on the same matrix in
    // this process, so that both are timed on the machine as it is at that moment (a shared
    // machine's speed drifts over a run).
    let ask =
        AssignNeedsRequest { community: format!("streets/{STREET}/communities/{community}"), deadline_ms: 60_000 };
    let mut stats = Stats::counted(0, Duration::ZERO);
    let mut proposal = AssignmentProposal::default();
    let mut bare = assign::optimal(&costs);
    let (mut times, mut ratios) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let answer = client.assign_needs(bearer(ask.clone(), &admin)).await;
        let took = started.elapsed();
        stats.elapsed += took;
        match answer {
            Ok(answer) => {
                stats.requests += 1;
                let _ = stats.latency.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                proposal = answer.into_inner();
            }
            Err(status) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(status.to_string());
            }
        }
        let started = Instant::now();
        bare = assign::optimal(&costs);
        let solved = started.elapsed().as_secs_f64();
        times.push(solved);
        ratios.push(took.as_secs_f64() / solved.max(1e-9));
    }
    times.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    let bare_seconds = times[times.len() / 2];
    let solver_ratio = ratios[ratios.len() / 2];
    if proposal.places == 0 {
        bail!("AssignNeeds answered no proposal: {:?}", stats.first_error);
    }

    // Where the service's time goes, in this process: scoring every pair, then the whole plan
    // (scoring, solving, greedy beside it, settling).
    let started = Instant::now();
    let by_pair = batch::pair_matrix(&opens, &offers, &weights, zone).map_err(|e| anyhow::anyhow!("{e}"))?;
    let scoring_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let in_process =
        batch::plan(&opens, &offers, &weights, zone, Duration::from_secs(60)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let as_kept = assign::optimal(&by_pair);
    let by_pair_seconds = started.elapsed().as_secs_f64();
    drop(by_pair);
    let (lsap_filled, lsap_total) = by_lsap(&costs)?;
    let greedy = assign::greedy(&costs);
    let end_to_end = stats.ms(0.5) / 1000.0;
    let gain = 1.0 - proposal.total_cost as f64 / proposal.greedy_cost.max(1) as f64;
    let extra = json!({
        "places": proposal.places,
        "filled": proposal.filled,
        "columns": costs.columns(),
        "optimal": proposal.optimal,
        "total_cost": proposal.total_cost,
        "greedy_cost": proposal.greedy_cost,
        "greedy_filled": proposal.greedy_filled,
        "below_greedy": (gain * 1000.0).round() / 1000.0,
        "bare_total_cost": bare.total,
        "lsap_total_cost": lsap_total,
        "same_optimum": bare.total == proposal.total_cost
            && lsap_total == bare.total
            && lsap_filled == bare.filled
            && as_kept.total == bare.total
            && in_process.best.total == bare.total,
        "bare_by_pair_s": (by_pair_seconds * 1000.0).round() / 1000.0,
        "scoring_s": (scoring_seconds * 1000.0).round() / 1000.0,
        "plan_in_process_s": (plan_seconds * 1000.0).round() / 1000.0,
        "bare_greedy_cost": greedy.total,
        "end_to_end_s": (end_to_end * 1000.0).round() / 1000.0,
        "bare_solver_s": (bare_seconds * 1000.0).round() / 1000.0,
        // Each call against the bare solver right after it; the median of those.
        "solver_ratio": (solver_ratio * 1000.0).round() / 1000.0,
        "solver_ratio_runs": ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
    });
    Ok((stats, extra))
}

/// The same problem solved by shortest augmenting paths (`lsap`, as SciPy's): places filled
/// and their total cost.
fn by_lsap(costs: &assign::Costs) -> anyhow::Result<(usize, i64)> {
    let (rows, columns) = (costs.rows(), costs.columns());
    let cells: Vec<f64> = (0..rows)
        .flat_map(|r| (0..columns).map(move |c| costs.get(r, c).map_or(assign::FORBIDDEN as f64, |v| v as f64)))
        .collect();
    let (found_rows, found_columns) =
        lsap::solve(rows, columns, &cells, false).map_err(|e| anyhow::anyhow!("lsap: {e:?}"))?;
    let allowed: Vec<i64> = found_rows.iter().zip(&found_columns).filter_map(|(&r, &c)| costs.get(r, c)).collect();
    Ok((allowed.len(), allowed.iter().sum()))
}
