//! The gRPC face of the reception desk.

use civic_kit::auth::{Caller, Principal};
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::{self, Begun, RequestKey, check_etag};
use civic_kit::{events, filter, names, page, time};
use civic_proto::catalogue::application::State;
use civic_proto::catalogue::desk_service_server::DeskService;
use civic_proto::catalogue::service_item::{HandlingMode, State as ItemState};
use civic_proto::catalogue::*;
use tonic::{Request, Response, Status};

use super::domain::{self, Action, ApplicationName};
use super::store::{self, ApplicationFilter, StoredApplication};
use crate::Catalogue;
use crate::domain::ItemName;

/// The prefix of the desk's event topics: `catalogue.application.<action>`.
pub const TOPIC_PREFIX: &str = "catalogue.application.";

fn staff_of<'a>(caller: &'a Caller, street: &str) -> Result<&'a Principal> {
    let principal = caller.require()?;
    if principal.is_staff_of(street) {
        Ok(principal)
    } else {
        Err(Error::permission_denied("only the street's staff may do this"))
    }
}

/// A new resource id: the prefix and a whole UUIDv7 (time-ordered). The whole of it: within one
/// millisecond v7 ids differ only in their last bits, so a shortened one repeats under load.
fn new_id(prefix: char) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

fn entry(actor: &str, action: &str, state: State, note: &str) -> TimelineEntry {
    TimelineEntry {
        time: Some(time::to_timestamp(chrono::Utc::now())),
        actor: actor.to_owned(),
        action: action.to_owned(),
        state: state as i32,
        note: note.to_owned(),
    }
}

/// Who does what to a case, and the note for its timeline.
struct Step<'a> {
    actor: &'a str,
    action: Action,
    note: &'a str,
}

impl Catalogue {
    /// Applies `action` to a case under the request's key: checks the etag and the transition,
    /// lets `change` fill in what the action sets, appends the timeline entry, and writes the
    /// event, all in one transaction.
    async fn act(
        &self,
        key: &RequestKey,
        name: &ApplicationName,
        etag: &str,
        step: Step<'_>,
        change: impl FnOnce(&mut Application) -> Result<()>,
    ) -> Result<Application> {
        let Step { actor, action, note } = step;
        let mut m = match idempotency::begin::<Application>(&self.db, key).await? {
            Begun::Replayed(saved) => return Ok(saved),
            Begun::Fresh(m) => m,
        };
        let tx = m.tx();
        {
            let mut stored = store::get_in(tx, name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
            check_etag(etag, stored.version, &name.to_string())?;
            let item = ItemName::parse("service_item", &stored.application.service_item)?;
            let on_behalf = crate::store::get_in(tx, &item)
                .await?
                .is_some_and(|i| i.content.handling_mode == HandlingMode::OnBehalf as i32);
            let next = domain::transition(stored.state(), action, on_behalf)?;
            let a = &mut stored.application;
            change(a)?;
            // The first staff member to act on a case filed from the app becomes its owner.
            if a.first_owner.is_empty() && action != Action::Withdraw {
                a.first_owner = actor.to_owned();
                if a.handler.is_empty() {
                    a.handler = actor.to_owned();
                }
            }
            a.state = next as i32;
            a.timeline.push(entry(actor, action.as_str(), next, note));
            let now = time::now_text();
            a.update_time = time::text_to_timestamp(&now);
            stored.version += 1;
            store::save(tx, name, &stored, &now).await?;
            let out = stored.to_proto();
            events::enqueue(tx, &format!("{TOPIC_PREFIX}{}", action.as_str()), &out.name, &out).await?;
            m.commit(&out).await?;
            self.relay.notify();
            Ok(out)
        }
    }

    /// Reads a case the caller may see: its applicant, or the street's staff. Anyone else is
    /// PERMISSION_DENIED whether or not the case exists (AIP-211).
    async fn visible_application(&self, caller: &Caller, name: &ApplicationName) -> Result<StoredApplication> {
        let principal = caller.require()?;
        let stored = store::get(self.db.reader(), name).await?;
        let staff = principal.is_staff_of(&name.street);
        match stored {
            Some(s) if staff || s.application.applicant == principal.resource_name() => Ok(s),
            None if staff => Err(Error::not_found(name.to_string())),
            _ => Err(Error::permission_denied("you may see only your own applications")),
        }
    }
}

macro_rules! staff_action {
    ($self:ident, $request:ident, $method:literal, $action:expr, $note:expr, $change:expr) => {{
        let caller = $self.caller(&$request)?;
        let req = $request.into_inner();
        let name = ApplicationName::parse("name", &req.name)?;
        let actor = staff_of(&caller, &name.street)?.resource_name();
        let key = RequestKey::new(caller.key(), $method, &req.request_id, &req)?;
        let change = $change(&req)?;
        let step = Step { actor: &actor, action: $action, note: &$note(&req) };
        let out = $self.act(&key, &name, &req.etag, step, change).await?;
        Ok(Response::new(out))
    }};
}

type Change = Box<dyn FnOnce(&mut Application) -> Result<()> + Send>;

fn no_change<T>(_: &T) -> Result<Change> {
    Ok(Box::new(|_| Ok(())))
}

#[tonic::async_trait]
impl DeskService for Catalogue {
    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_application(
        &self,
        request: Request<CreateApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let principal = caller.require()?;
        let mut v = Violations::new();
        let street = v.check(names::parse_street("parent", &req.parent)).map(str::to_owned);
        let draft = req.application.clone().unwrap_or_default();
        let item_name = v.check(ItemName::parse("application.service_item", &draft.service_item));
        let staff = street.as_deref().is_some_and(|s| principal.is_staff_of(s));
        let applicant = if staff {
            v.check(domain::parse_user("application.applicant", &draft.applicant))
        } else if draft.applicant.is_empty() || draft.applicant == principal.resource_name() {
            Some(principal.resource_name())
        } else {
            return Err(Error::permission_denied("residents file applications for themselves only").into());
        };
        if draft.note.chars().count() > 2000 {
            v.add("application.note", "must be at most 2000 characters");
        }
        v.finish()?;
        let (Some(street), Some(item_name), Some(applicant)) = (street, item_name, applicant) else {
            return Err(Error::invalid("application", "is incomplete").into());
        };
        if item_name.street != street {
            return Err(Error::invalid("application.service_item", "must be an item of the same street").into());
        }
        if !staff && principal.street.as_deref() != Some(street.as_str()) {
            return Err(Error::permission_denied("residents file applications in their own street").into());
        }
        let key = RequestKey::new(caller.key(), "CreateApplication", &req.request_id, &req)?;
        let actor = principal.resource_name();
        let mut m = match idempotency::begin::<Application>(&self.db, &key).await? {
            Begun::Replayed(saved) => return Ok(Response::new(saved)),
            Begun::Fresh(m) => m,
        };
        let tx = m.tx();
        let out = {
            let item =
                crate::store::get_in(tx, &item_name).await?.filter(|i| i.state == ItemState::Published).ok_or_else(
                    || Error::failed_precondition("ITEM_NOT_PUBLISHED", format!("{item_name} is not a published item")),
                )?;
            let name = ApplicationName { street: street.clone(), id: new_id('a') };
            let now = chrono::Utc::now();
            let due = self.calendar.deadline(now, item.content.promised_days.max(0) as u32);
            let owner = if staff { actor.clone() } else { String::new() };
            let application = Application {
                name: name.to_string(),
                applicant: applicant.clone(),
                service_item: item_name.to_string(),
                service_item_revision: format!("{item_name}/revisions/{}", item.revision),
                first_owner: owner.clone(),
                handler: owner,
                materials: Vec::new(),
                state: State::Received as i32,
                forwarded_to: String::new(),
                rejection_reason: String::new(),
                due_time: Some(time::to_timestamp(due)),
                timeline: vec![entry(&actor, "receive", State::Received, "")],
                note: draft.note.clone(),
                etag: String::new(),
                create_time: Some(time::to_timestamp(now)),
                update_time: Some(time::to_timestamp(now)),
            };
            let stored = StoredApplication { application, version: 1 };
            let now_text = time::to_text(now);
            store::insert(tx, &name, &stored, &now_text).await?;
            let out = stored.to_proto();
            events::enqueue(tx, &format!("{TOPIC_PREFIX}receive"), &out.name, &out).await?;
            out
        };
        m.commit(&out).await?;
        self.relay.notify();
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_application(&self, request: Request<GetApplicationRequest>) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let name = ApplicationName::parse("name", &request.get_ref().name)?;
        Ok(Response::new(self.visible_application(&caller, &name).await?.to_proto()))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_applications(
        &self,
        request: Request<ListApplicationsRequest>,
    ) -> Result<Response<ListApplicationsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let principal = caller.require()?;
        let street = names::parse_street("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 50, 1000)?;
        let mut list_filter = ApplicationFilter::default();
        for term in filter::parse(&req.filter, &["state", "applicant", "handler", "overdue"])? {
            match term.field.as_str() {
                "state" => {
                    let state = State::from_str_name(&term.value)
                        .ok_or_else(|| Error::invalid("filter", format!("`{}` is not a state", term.value)))?;
                    list_filter.state = state.as_str_name().to_owned();
                }
                "applicant" => list_filter.applicant = domain::parse_user("filter", &term.value)?,
                "handler" => list_filter.handler = domain::parse_user("filter", &term.value)?,
                _ => match term.value.as_str() {
                    "true" => list_filter.overdue_at = time::now_text(),
                    "false" => {}
                    _ => return Err(Error::invalid("filter", "overdue is true or false").into()),
                },
            }
        }
        if !principal.is_staff_of(street) {
            let me = principal.resource_name();
            if !list_filter.applicant.is_empty() && list_filter.applicant != me {
                return Err(Error::permission_denied("you may list only your own applications").into());
            }
            list_filter.applicant = me;
        }
        let query = format!(
            "ListApplications|{street}|{}|{}|{}|{}|{}",
            list_filter.state,
            list_filter.applicant,
            list_filter.handler,
            !list_filter.overdue_at.is_empty(),
            caller.key()
        );
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let mut rows = store::list(self.db.reader(), street, &list_filter, after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(_, c, i)| vec![c.clone(), i.clone()]);
        Ok(Response::new(ListApplicationsResponse {
            applications: rows.iter().map(|(s, _, _)| s.to_proto()).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn accept_application(
        &self,
        request: Request<AcceptApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ApplicationName::parse("name", &req.name)?;
        let actor = staff_of(&caller, &name.street)?.resource_name();
        let key = RequestKey::new(caller.key(), "AcceptApplication", &req.request_id, &req)?;
        // The item's list, as of the revision the case was filed under (its current content
        // while it stays on that revision; later revisions are kept apart).
        let stored = store::get(self.db.reader(), &name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
        let required = self.materials_of(&stored.application.service_item_revision).await?;
        let checked = domain::check_materials(&required, &req.materials)?;
        let out = self
            .act(&key, &name, &req.etag, Step { actor: &actor, action: Action::Accept, note: "" }, move |a| {
                a.materials = checked;
                Ok(())
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn start_application(
        &self,
        request: Request<StartApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        staff_action!(
            self,
            request,
            "StartApplication",
            Action::Start,
            |_: &StartApplicationRequest| String::new(),
            no_change
        )
    }

    async fn forward_application(
        &self,
        request: Request<ForwardApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        staff_action!(
            self,
            request,
            "ForwardApplication",
            Action::Forward,
            |r: &ForwardApplicationRequest| r.office.clone(),
            |r: &ForwardApplicationRequest| -> Result<Change> {
                let office = r.office.trim().to_owned();
                if office.is_empty() {
                    return Err(Error::invalid("office", "must name the office the case goes to"));
                }
                Ok(Box::new(move |a: &mut Application| {
                    a.forwarded_to = office;
                    Ok(())
                }))
            }
        )
    }

    async fn hand_over_application(
        &self,
        request: Request<HandOverApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        staff_action!(
            self,
            request,
            "HandOverApplication",
            Action::HandOver,
            |r: &HandOverApplicationRequest| format!("{} {}", r.handler, r.note).trim().to_owned(),
            |r: &HandOverApplicationRequest| -> Result<Change> {
                let handler = domain::parse_user("handler", &r.handler)?;
                Ok(Box::new(move |a: &mut Application| {
                    a.handler = handler;
                    Ok(())
                }))
            }
        )
    }

    async fn complete_application(
        &self,
        request: Request<CompleteApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        staff_action!(
            self,
            request,
            "CompleteApplication",
            Action::Complete,
            |r: &CompleteApplicationRequest| r.note.clone(),
            no_change
        )
    }

    async fn reject_application(
        &self,
        request: Request<RejectApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        staff_action!(
            self,
            request,
            "RejectApplication",
            Action::Reject,
            |r: &RejectApplicationRequest| r.reason.clone(),
            |r: &RejectApplicationRequest| -> Result<Change> {
                let reason = r.reason.trim().to_owned();
                if reason.is_empty() {
                    return Err(Error::invalid("reason", "the resident must be told why"));
                }
                Ok(Box::new(move |a: &mut Application| {
                    a.rejection_reason = reason;
                    Ok(())
                }))
            }
        )
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn withdraw_application(
        &self,
        request: Request<WithdrawApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ApplicationName::parse("name", &req.name)?;
        let principal = caller.require()?;
        let me = principal.resource_name();
        let stored = store::get(self.db.reader(), &name).await?;
        if stored.as_ref().is_none_or(|s| s.application.applicant != me) {
            return Err(Error::permission_denied("only the applicant may withdraw an application").into());
        }
        let key = RequestKey::new(caller.key(), "WithdrawApplication", &req.request_id, &req)?;
        let step = Step { actor: &me, action: Action::Withdraw, note: &req.note };
        let out = self.act(&key, &name, &req.etag, step, |_| Ok(())).await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_inquiry(&self, request: Request<CreateInquiryRequest>) -> Result<Response<Inquiry>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = names::parse_street("parent", &req.parent)?.to_owned();
        let actor = staff_of(&caller, &street)?.resource_name();
        let draft = req.inquiry.clone().unwrap_or_default();
        let mut v = Violations::new();
        if draft.question.trim().is_empty() {
            v.add("inquiry.question", "must not be empty");
        }
        if !draft.asker.is_empty() {
            v.check(domain::parse_user("inquiry.asker", &draft.asker));
        }
        if !draft.service_item.is_empty() {
            v.check(ItemName::parse("inquiry.service_item", &draft.service_item));
        }
        for (field, text) in [("inquiry.question", &draft.question), ("inquiry.answer", &draft.answer)] {
            if text.chars().count() > 4000 {
                v.add(field, "must be at most 4000 characters");
            }
        }
        v.finish()?;
        let key = RequestKey::new(caller.key(), "CreateInquiry", &req.request_id, &req)?;
        let mut m = match idempotency::begin::<Inquiry>(&self.db, &key).await? {
            Begun::Replayed(saved) => return Ok(Response::new(saved)),
            Begun::Fresh(m) => m,
        };
        let tx = m.tx();
        let out = {
            let id = new_id('q');
            let now = chrono::Utc::now();
            let inquiry = Inquiry {
                name: format!("streets/{street}/inquiries/{id}"),
                asker: draft.asker.clone(),
                service_item: draft.service_item.clone(),
                question: draft.question.trim().to_owned(),
                answer: draft.answer.trim().to_owned(),
                answered_by: actor.clone(),
                create_time: Some(time::to_timestamp(now)),
            };
            store::insert_inquiry(tx, &street, &id, &inquiry, &time::to_text(now)).await?;
            events::enqueue(tx, "catalogue.inquiry.recorded", &inquiry.name, &inquiry).await?;
            inquiry
        };
        m.commit(&out).await?;
        self.relay.notify();
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_inquiry(&self, request: Request<GetInquiryRequest>) -> Result<Response<Inquiry>, Status> {
        let caller = self.caller(&request)?;
        let ids = names::parse("name", &request.get_ref().name, &["streets", "inquiries"])?;
        staff_of(&caller, ids[0])?;
        let inquiry = store::get_inquiry(self.db.reader(), ids[0], ids[1])
            .await?
            .ok_or_else(|| Error::not_found(request.get_ref().name.clone()))?;
        Ok(Response::new(inquiry))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_inquiries(
        &self,
        request: Request<ListInquiriesRequest>,
    ) -> Result<Response<ListInquiriesResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = names::parse_street("parent", &req.parent)?;
        staff_of(&caller, street)?;
        let size = page::page_size(req.page_size, 50, 1000)?;
        let query = format!("ListInquiries|{street}");
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let mut rows = store::list_inquiries(self.db.reader(), street, after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(_, c, i)| vec![c.clone(), i.clone()]);
        Ok(Response::new(ListInquiriesResponse {
            inquiries: rows.into_iter().map(|(i, _, _)| i).collect(),
            next_page_token,
        }))
    }
}

impl Catalogue {
    /// The materials list of a published revision, `streets/{s}/items/{i}/revisions/{n}`.
    async fn materials_of(&self, revision: &str) -> Result<Vec<Material>> {
        let (item, number) = revision
            .rsplit_once("/revisions/")
            .and_then(|(item, n)| n.parse::<i64>().ok().map(|n| (item, n)))
            .ok_or_else(|| Error::internal(BadRevision))?;
        let item = ItemName::parse("service_item", item)?;
        let revisions = crate::store::list_revisions(self.db.reader(), &item, number + 1, 1).await?;
        Ok(revisions.into_iter().next().and_then(|r| r.service_item).map(|i| i.materials).unwrap_or_default())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("an application names an unreadable revision")]
struct BadRevision;

#[cfg(test)]
mod tests {
    #[test]
    fn ids_made_in_the_same_millisecond_differ() {
        let ids: std::collections::HashSet<String> = (0..100_000).map(|_| super::new_id('a')).collect();
        assert_eq!(ids.len(), 100_000);
        assert!(ids.iter().all(|id| id.len() == 33 && id.starts_with('a')));
    }
}
