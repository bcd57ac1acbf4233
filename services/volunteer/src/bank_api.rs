//! The moral bank over the API: an account's balance and statement, and an admin's correction —
//! on the [`ledger`].

use chrono::{NaiveDate, TimeZone, Utc};
use civic_kit::auth::{Caller, Role};
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{Collection, Id, Name};
use civic_kit::{page, time};
use civic_proto::volunteer::movement::Kind;
use civic_proto::volunteer::*;

use crate::Volunteers;
use crate::api::Staff;
use crate::ledger;
use crate::register::{self, VolunteerName};

/// The `accounts` collection of a street.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountsCollection;

impl Collection for AccountsCollection {
    const COLLECTION: &'static str = "accounts";
}

/// An account's name, `streets/{street}/accounts/{account}` (the person's user id).
pub type AccountName = Name<AccountsCollection>;

fn to_wire(m: &ledger::Movement) -> Movement {
    Movement {
        id: m.id.clone(),
        kind: match m.kind {
            ledger::Kind::Earn => Kind::Earn,
            ledger::Kind::Redeem => Kind::Redeem,
            ledger::Kind::Adjust => Kind::Adjust,
        } as i32,
        points: m.points,
        source: m.source.clone(),
        reason: m.reason.clone(),
        actor: m.actor.clone(),
        create_time: Some(time::to_timestamp(m.time)),
    }
}

impl Volunteers {
    /// Whether `caller` may read `account`: its person, an admin (or a cadre of the street), or a
    /// cadre of the community the person volunteers in. PERMISSION_DENIED otherwise, before the
    /// account is read.
    async fn may_read(&self, caller: &Caller, account: &AccountName) -> Result<()> {
        let (p, staff) = crate::api::staff(caller, account.street())?;
        let allowed = match staff {
            _ if p.subject == account.id().as_str() => true,
            Some(Staff::Street) => true,
            Some(Staff::Community(community)) => {
                let volunteer = VolunteerName::new(account.street().clone(), account.id().clone());
                let found = register::get(self.writer.db().reader(), &volunteer).await?;
                found.is_some_and(|r| r.community_id() == community)
            }
            None => false,
        };
        if allowed { Ok(()) } else { Err(Error::permission_denied("not an account you may see")) }
    }

    pub(crate) async fn get_account(&self, caller: &Caller, req: GetAccountRequest) -> Result<Account> {
        let name = AccountName::parse("name", &req.name)?;
        self.may_read(caller, &name).await?;
        let person = format!("users/{}", name.id());
        let balance = ledger::balance(self.writer.db().reader(), name.street().as_str(), &person).await?;
        Ok(Account { name: name.to_string(), person, balance })
    }

    pub(crate) async fn list_movements(
        &self,
        caller: &Caller,
        req: ListMovementsRequest,
    ) -> Result<ListMovementsResponse> {
        let name = AccountName::parse("parent", &req.parent)?;
        self.may_read(caller, &name).await?;
        let size = page::page_size(req.page_size, 50, 200)?;
        // A year, or a month of it, in the street's time zone; everything without a year.
        let within = if req.year == 0 {
            None
        } else {
            let (first, next) = if req.month == 0 {
                (NaiveDate::from_ymd_opt(req.year, 1, 1), NaiveDate::from_ymd_opt(req.year + 1, 1, 1))
            } else {
                let month = u32::try_from(req.month).unwrap_or(1);
                let first = NaiveDate::from_ymd_opt(req.year, month, 1);
                (first, first.and_then(|f| f.checked_add_months(chrono::Months::new(1))))
            };
            let at = |day: Option<NaiveDate>| {
                day.and_then(|d| self.zone.from_local_datetime(&d.and_time(chrono::NaiveTime::MIN)).single())
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default()
            };
            Some((at(first), at(next)))
        };
        let query = format!("ListMovements|{name}|{}|{}", req.year, req.month);
        let before = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let person = format!("users/{}", name.id());
        let mut rows =
            ledger::movements(self.writer.db().reader(), name.street().as_str(), &person, within, &before, size + 1)
                .await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |m| vec![m.id.clone()]);
        Ok(ListMovementsResponse { movements: rows.iter().map(to_wire).collect(), next_page_token })
    }

    pub(crate) async fn adjust_account(&self, caller: &Caller, req: AdjustAccountRequest) -> Result<Movement> {
        let name = AccountName::parse("name", &req.name)?;
        let (p, _) = crate::api::staff(caller, name.street())?;
        if !p.has_role(Role::Admin) {
            return Err(Error::permission_denied("street admins correct balances"));
        }
        // The id must be a person's: a user id as a resource id.
        Id::parse("name", name.id().as_str())?;
        let key = RequestKey::new(caller.key(), "AdjustAccount", &req.request_id, &req)?;
        let (person, actor) = (format!("users/{}", name.id()), caller.key());
        self.writer
            .write(&key, async |c| {
                let m =
                    ledger::adjust(c.tx(), name.street().as_str(), &person, req.points, &req.reason, &actor).await?;
                Ok(to_wire(&m))
            })
            .await
    }
}
