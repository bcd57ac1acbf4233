//! The reward catalogue over the API (积分兑换): street admins offer and withdraw rewards, anyone
//! of the street reads them, and a person redeems one for their points — on the [`rewards`]
//! store, the points spent in the same transaction.

use chrono::Utc;
use civic_kit::auth::{Caller, Role};
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::{RequestKey, etag};
use civic_kit::names::{Collection, Id, Name, StreetId, UserName};
use civic_kit::{page, time};
use civic_proto::volunteer::*;

use crate::Volunteers;
use crate::api::Staff;
use crate::register::{self, VolunteerName};
use crate::rewards::{self, Stored};

/// The `rewards` collection of a street.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RewardsCollection;

impl Collection for RewardsCollection {
    const COLLECTION: &'static str = "rewards";
}

/// A reward's name, `streets/{street}/rewards/{reward}`.
pub type RewardName = Name<RewardsCollection>;

fn to_wire(r: &Stored) -> Reward {
    Reward {
        name: format!("streets/{}/rewards/{}", r.reward.street, r.reward.id),
        display_name: r.reward.display_name.clone(),
        offered_by: r.reward.offered_by.clone(),
        points: r.reward.points,
        stock: r.reward.stock,
        offered: r.offered,
        etag: etag(r.version),
        create_time: time::text_to_timestamp(&r.created_at),
    }
}

/// A street admin in `street`, or PERMISSION_DENIED.
fn admin(caller: &Caller, street: &StreetId) -> Result<()> {
    let (p, _) = crate::api::staff(caller, street)?;
    if p.has_role(Role::Admin) { Ok(()) } else { Err(Error::permission_denied("street admins manage the rewards")) }
}

impl Volunteers {
    pub(crate) async fn create_reward(&self, caller: &Caller, req: CreateRewardRequest) -> Result<Reward> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        admin(caller, &street)?;
        let sent = req.reward.clone().unwrap_or_default();
        let mut bad = Violations::new();
        if sent.display_name.trim().is_empty() {
            bad.add("reward.display_name", "is required");
        }
        if sent.offered_by.trim().is_empty() {
            bad.add("reward.offered_by", "is required: the merchant's or the community's name");
        }
        if !(1..=crate::ledger::MAX_POINTS).contains(&sent.points) {
            bad.add("reward.points", format!("must be 1 to {}", crate::ledger::MAX_POINTS));
        }
        if !(0..=rewards::MAX_STOCK).contains(&sent.stock) {
            bad.add("reward.stock", format!("must be 0 to {}", rewards::MAX_STOCK));
        }
        bad.finish()?;
        let reward = rewards::Reward {
            street: street.as_str().to_owned(),
            id: Id::generate('r').as_str().to_owned(),
            display_name: sent.display_name.trim().to_owned(),
            offered_by: sent.offered_by.trim().to_owned(),
            points: sent.points,
            stock: sent.stock,
        };
        let key = RequestKey::new(caller.key(), "CreateReward", &req.request_id, &req)?;
        self.writer
            .write(&key, async |c| {
                rewards::offer(c.tx(), &reward).await?;
                let stored = rewards::get(&mut **c.tx(), &reward.street, &reward.id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("streets/{}/rewards/{}", reward.street, reward.id)))?;
                Ok(to_wire(&stored))
            })
            .await
    }

    pub(crate) async fn get_reward(&self, caller: &Caller, req: GetRewardRequest) -> Result<Reward> {
        let name = RewardName::parse("name", &req.name)?;
        crate::api::staff(caller, name.street())?;
        let found = rewards::get(self.writer.db().reader(), name.street().as_str(), name.id().as_str()).await?;
        found.map(|r| to_wire(&r)).ok_or_else(|| Error::not_found(name.to_string()))
    }

    pub(crate) async fn list_rewards(&self, caller: &Caller, req: ListRewardsRequest) -> Result<ListRewardsResponse> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let (_, staff) = crate::api::staff(caller, &street)?;
        if req.show_withdrawn && staff.is_none() {
            return Err(Error::permission_denied("withdrawn rewards are for the street's staff"));
        }
        let size = page::page_size(req.page_size, 50, 200)?;
        let query = format!("ListRewards|{street}|{}", req.show_withdrawn);
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let mut rows =
            rewards::list(self.writer.db().reader(), street.as_str(), req.show_withdrawn, &after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |r| vec![r.reward.id.clone()]);
        Ok(ListRewardsResponse { rewards: rows.iter().map(to_wire).collect(), next_page_token })
    }

    pub(crate) async fn withdraw_reward(&self, caller: &Caller, req: WithdrawRewardRequest) -> Result<Reward> {
        let name = RewardName::parse("name", &req.name)?;
        admin(caller, name.street())?;
        let key = RequestKey::new(caller.key(), "WithdrawReward", &req.request_id, &req)?;
        let (street, id) = (name.street().as_str(), name.id().as_str());
        self.writer
            .write(&key, async |c| {
                if rewards::get(&mut **c.tx(), street, id).await?.is_none() {
                    return Err(Error::not_found(name.to_string()));
                }
                rewards::withdraw(c.tx(), street, id).await?;
                let stored =
                    rewards::get(&mut **c.tx(), street, id).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
                Ok(to_wire(&stored))
            })
            .await
    }

    pub(crate) async fn redeem_reward(&self, caller: &Caller, req: RedeemRewardRequest) -> Result<Redemption> {
        let name = RewardName::parse("name", &req.name)?;
        let street = name.street().clone();
        let (p, staff) = crate::api::staff(caller, &street)?;
        let me = p.resource_name();
        let person = if req.person.is_empty() || req.person == me {
            me
        } else {
            let person = UserName::parse("person", &req.person)?;
            let allowed = match &staff {
                Some(Staff::Street) => true,
                Some(Staff::Community(community)) => {
                    let id = person.as_str().trim_start_matches("users/");
                    match Id::parse("person", id) {
                        Ok(id) => {
                            let volunteer = VolunteerName::new(street.clone(), id);
                            let found = register::get(self.writer.db().reader(), &volunteer).await?;
                            found.is_some_and(|r| r.community_id() == community)
                        }
                        Err(_) => false,
                    }
                }
                None => false,
            };
            if !allowed {
                return Err(Error::permission_denied(
                    "a person redeems their own points; at the counter, their community's cadre or an admin",
                ));
            }
            person.as_str().to_owned()
        };
        let key = RequestKey::new(caller.key(), "RedeemReward", &req.request_id, &req)?;
        let actor = caller.key();
        self.writer
            .write(&key, async |c| {
                let (street, id) = (street.as_str(), name.id().as_str());
                let paid = rewards::redeem(c.tx(), street, id, &person, &actor).await?;
                let balance = crate::ledger::balance(&mut **c.tx(), street, &person).await?;
                let when = Some(time::to_timestamp(Utc::now()));
                let event = PointsRedeemed {
                    person: person.clone(),
                    points: paid.points,
                    reward: name.to_string(),
                    movement: paid.movement.clone(),
                    redeem_time: when,
                };
                c.emit(&person, &event).await?;
                Ok(Redemption {
                    reward: name.to_string(),
                    person: person.clone(),
                    points: paid.points,
                    movement: paid.movement,
                    balance,
                    redeem_time: when,
                })
            })
            .await
    }
}
