//! Matching over the API: RecommendVolunteers (a need's best-fitting volunteers, with the reasons),
//! AssignNeeds (a community's open places proposed at once, at the least total cost) and
//! ConfirmAssignment (a proposal's places taken, every one or none). The community's staff only.
//!
//! Scoring and solving are CPU work over up to the whole community: they run on a blocking
//! thread, never on a runtime worker, and the search for the optimum has a deadline.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use civic_kit::auth::Caller;
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{CommunityName, StreetId};
use civic_proto::volunteer::reason::Factor as WireFactor;
use civic_proto::volunteer::volunteer::State as VolunteerState;
use civic_proto::volunteer::*;
use prost::Message;

use crate::Volunteers;
use crate::api::Staff;
use crate::batch::{self, Offer, Open};
use crate::claims;
use crate::matching::{self, Factor};
use crate::needs::{NeedName, at};
use crate::pool::{self, Households};
use crate::register::{self, VolunteerName};

/// The most needs one AssignNeeds looks at, the soonest first.
const MAX_BATCH_NEEDS: i64 = 2500;

/// The most refusals a ConfirmAssignment names.
const MAX_NAMED: usize = 20;

fn factor(f: Factor) -> WireFactor {
    match f {
        Factor::Skills => WireFactor::Skills,
        Factor::Availability => WireFactor::Availability,
        Factor::Distance => WireFactor::Distance,
        Factor::Load => WireFactor::Load,
        Factor::Continuity => WireFactor::Continuity,
    }
}

impl Volunteers {
    /// The caller's part in `street` when it reaches `community` (an id): its cadres and the
    /// street's admins; PERMISSION_DENIED for anyone else.
    fn manages(caller: &Caller, street: &StreetId, community: &str) -> Result<Staff> {
        match crate::api::staff(caller, street)?.1 {
            Some(Staff::Street) => Ok(Staff::Street),
            Some(Staff::Community(c)) if c == community => Ok(Staff::Community(c)),
            _ => Err(Error::permission_denied("the community's staff assign its needs")),
        }
    }

    pub(crate) async fn recommend_volunteers(
        &self,
        caller: &Caller,
        req: RecommendVolunteersRequest,
    ) -> Result<RecommendVolunteersResponse> {
        let name = NeedName::parse("name", &req.name)?;
        let street = name.street().clone();
        let Some(staff) = crate::api::staff(caller, &street)?.1 else {
            return Err(Error::permission_denied("the community's staff ask for recommendations"));
        };
        let k = civic_kit::page::page_size(req.page_size, 10, 50)?;
        let reader = self.writer.db().reader();
        let need = match (claims::get_need(reader, street.as_str(), name.id().as_str()).await?, &staff) {
            (Some(need), Staff::Street) => need,
            (Some(need), Staff::Community(c)) if need.community == *c => need,
            (None, Staff::Street) => return Err(Error::not_found(name.to_string())),
            _ => return Err(Error::permission_denied("not a need of your community")),
        };
        if !matches!(need.places.state.as_str(), "OPEN" | "CLAIMED" | "IN_PROGRESS") {
            return Err(Error::failed_precondition("NEED_NOT_OPEN", "the need is no longer taking volunteers"));
        }
        let placed = Need::decode(need.body.as_slice()).map_err(Error::internal)?;
        let candidates = self.pools.community(reader, &street, &need.community).await?;
        let month = matching::month_of(at(placed.start_time.as_ref()), self.zone);
        let mut conn = reader.acquire().await?;
        let load = pool::load(&mut conn, &street, month, Households::Of(&placed.household), None).await?;
        drop(conn);
        let (weights, zone, pool) = (self.weights, self.zone, candidates.clone());
        let ranked = tokio::task::spawn_blocking(move || {
            let candidates = pool::each(&pool, &load);
            matching::recommend(&pool::need_of(&placed), candidates, k, &weights, zone)
        })
        .await
        .map_err(Error::internal)?;
        let recommendations = ranked
            .into_iter()
            .map(|(i, score)| {
                let c = &candidates[i];
                Recommendation {
                    volunteer: format!("{}/volunteers/{}", street.parent(), c.id),
                    display_name: c.display_name.clone(),
                    score: score.total,
                    reasons: score
                        .reasons
                        .into_iter()
                        .map(|r| Reason {
                            factor: factor(r.factor) as i32,
                            value: r.value,
                            weight: r.weight,
                            detail: r.detail,
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(RecommendVolunteersResponse {
            recommendations,
            considered: i32::try_from(candidates.len()).unwrap_or(i32::MAX),
        })
    }

    pub(crate) async fn assign_needs(&self, caller: &Caller, req: AssignNeedsRequest) -> Result<AssignmentProposal> {
        let community = CommunityName::parse("community", &req.community)?;
        let street = community.street().clone();
        Self::manages(caller, &street, community.id().as_str())?;
        let deadline = match req.deadline_ms {
            0 => self.assign_deadline,
            1..=60_000 => std::time::Duration::from_millis(u64::try_from(req.deadline_ms).unwrap_or(1)),
            _ => return Err(Error::invalid("deadline_ms", "must be 1 to 60000")),
        };
        let reader = self.writer.db().reader();
        let now = Utc::now();
        let mut placed = Vec::new();
        for need in claims::open_needs(reader, street.as_str(), community.id().as_str(), now, MAX_BATCH_NEEDS).await? {
            let message = Need::decode(need.body.as_slice()).map_err(Error::internal)?;
            let free = usize::try_from(need.places.places - need.places.claimed).unwrap_or(0);
            placed.push((need.id, message, free));
        }
        let candidates = self.pools.community(reader, &street, community.id().as_str()).await?;
        let month = matching::month_of(now, self.zone);
        let mut conn = reader.acquire().await?;
        let load =
            pool::load(&mut conn, &street, month, Households::InCommunity(community.id().as_str()), None).await?;
        drop(conn);
        let (weights, zone, most) = (self.weights, self.zone, self.assign_places);
        let pool = Arc::clone(&candidates);
        let needs_meta: Vec<String> = placed.iter().map(|(id, _, _)| id.clone()).collect();
        let (plan, offered) = tokio::task::spawn_blocking(move || {
            let needs: Vec<Open<'_>> =
                placed.iter().map(|(_, n, free)| Open { need: pool::need_of(n), places: *free }).collect();
            let shortest = needs.iter().map(|n| n.need.hours()).fold(f64::INFINITY, f64::min);
            // Each volunteer offers as many places as their hours left hold of the shortest need.
            let mut offered = Vec::new();
            let mut offers = Vec::new();
            for (j, volunteer) in pool::each(&pool, &load) {
                let slots = batch::slots(&volunteer, shortest, most, needs.len());
                if slots > 0 {
                    offered.push(j);
                    offers.push(Offer { volunteer, slots });
                }
            }
            (batch::plan(&needs, &offers, &weights, zone, deadline), offered)
        })
        .await
        .map_err(Error::internal)?;
        let plan = plan.map_err(|too| {
            Error::failed_precondition(
                "TOO_LARGE",
                format!("{too}: place the needs in smaller batches (fewer needs, or a shorter period)"),
            )
        })?;
        let places: usize = plan.best.pairings.len() + plan.best.unfilled;
        let assignments = plan
            .best
            .pairings
            .iter()
            .map(|p| Assignment {
                need: format!("{}/needs/{}", street.parent(), needs_meta[p.need]),
                volunteer: format!("{}/volunteers/{}", street.parent(), candidates[offered[p.volunteer]].id),
                cost: p.cost,
            })
            .collect::<Vec<_>>();
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(AssignmentProposal {
            total_cost: plan.best.total,
            optimal: plan.optimal,
            greedy_filled: count(plan.greedy.pairings.len()),
            greedy_cost: plan.greedy.total,
            places: count(places),
            filled: count(assignments.len()),
            needs: count(needs_meta.len()),
            volunteers: count(offered.len()),
            rounds: count(plan.rounds),
            assignments,
        })
    }

    pub(crate) async fn confirm_assignment(
        &self,
        caller: &Caller,
        req: ConfirmAssignmentRequest,
    ) -> Result<ConfirmAssignmentResponse> {
        let community = CommunityName::parse("community", &req.community)?;
        let street = community.street().clone();
        let staff = Self::manages(caller, &street, community.id().as_str())?;
        if req.assignments.is_empty() {
            return Err(Error::invalid("assignments", "name at least one place to take"));
        }
        if req.assignments.len() > 2500 {
            return Err(Error::invalid("assignments", "at most 2500 at once"));
        }
        let mut pairs = Vec::with_capacity(req.assignments.len());
        let mut seen = HashSet::new();
        for (n, a) in req.assignments.iter().enumerate() {
            let need = NeedName::parse(&format!("assignments[{n}].need"), &a.need)?;
            let volunteer = VolunteerName::parse(&format!("assignments[{n}].volunteer"), &a.volunteer)?;
            if need.street() != &street || volunteer.street() != &street {
                return Err(Error::invalid(
                    format!("assignments[{n}]"),
                    "must name a need and a volunteer of the street",
                ));
            }
            if !seen.insert((need.id().to_string(), volunteer.id().to_string())) {
                return Err(Error::invalid(format!("assignments[{n}]"), "names a volunteer in a need twice"));
            }
            pairs.push((need, volunteer));
        }
        // Volunteers in one order, so two confirmations at once take their locks in the same order.
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by(|&a, &b| {
            (pairs[a].1.id().as_str(), pairs[a].0.id().as_str())
                .cmp(&(pairs[b].1.id().as_str(), pairs[b].0.id().as_str()))
        });
        let key = RequestKey::new(caller.key(), "ConfirmAssignment", &req.request_id, &req)?;
        let mine = community.id().as_str();
        self.writer
            .write(&key, async |c| {
                let mut taken: Vec<Option<Claim>> = vec![None; pairs.len()];
                let mut refused = Vec::new();
                for &i in &order {
                    let (need, volunteer) = &pairs[i];
                    match claims::get_need(&mut **c.tx(), street.as_str(), need.id().as_str()).await? {
                        Some(stored) if stored.community == mine => {}
                        Some(_) => return Err(Error::permission_denied("needs of the community only")),
                        None => {
                            refused.push(format!("{need}: not found"));
                            continue;
                        }
                    }
                    let registration = register::get(&mut **c.tx(), volunteer)
                        .await?
                        .filter(|r| r.volunteer.state() == VolunteerState::Approved);
                    let Some(registration) = registration else {
                        refused.push(format!("{volunteer}: not an approved volunteer"));
                        continue;
                    };
                    if matches!(staff, Staff::Community(_)) && registration.community_id() != mine {
                        return Err(Error::permission_denied("cadres assign their own community's volunteers"));
                    }
                    match self.take_place(c, need, &registration).await {
                        Ok(claim) => taken[i] = Some(claim),
                        Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                            refused.push(format!("{need} for {volunteer}: {}", e.reason()));
                        }
                        Err(e) => return Err(e),
                    }
                }
                if !refused.is_empty() {
                    let more = refused.len().saturating_sub(MAX_NAMED);
                    let mut named = refused.into_iter().take(MAX_NAMED).collect::<Vec<_>>().join("; ");
                    if more > 0 {
                        named.push_str(&format!("; and {more} more"));
                    }
                    return Err(Error::failed_precondition("TAKEN_MEANWHILE", format!("nothing was taken: {named}")));
                }
                Ok(ConfirmAssignmentResponse { claims: taken.into_iter().flatten().collect() })
            })
            .await
    }
}
