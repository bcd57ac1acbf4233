//! The gRPC face of the reception desk: authorise → validate → the case's rules → store, and the
//! events every change of a case writes.

use chrono::Utc;
use civic_kit::auth::{Caller, Principal};
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::{RequestKey, check_etag, etag};
use civic_kit::names::{Id, StreetId, UserName};
use civic_kit::write::Change;
use civic_kit::{filter, page, time};
use civic_proto::catalogue::application::State;
use civic_proto::catalogue::application_changed::Action as EventAction;
use civic_proto::catalogue::desk_service_server::DeskService;
use civic_proto::catalogue::service_item::HandlingMode;
use civic_proto::catalogue::*;
use prost::Message;
use tonic::{Request, Response, Status};

use super::domain::{self, Action, ApplicationName, Case, Filing, InquiryName, Step};
use super::record;
use super::store::{self, ApplicationFilter};
use crate::Catalogue;
use crate::domain::{ItemName, ItemState, RevisionName};

fn staff_of<'a>(caller: &'a Caller, street: &StreetId) -> Result<&'a Principal> {
    let principal = caller.require()?;
    if principal.is_staff_of(street.as_str()) {
        Ok(principal)
    } else {
        Err(Error::permission_denied("only the street's staff may do this"))
    }
}

/// A case as the API shows it.
fn to_wire(case: &Case) -> Application {
    Application { etag: etag(case.version), ..record::to_message(case) }
}

/// The event of `action` on `case`, done by `actor`: names, the state and times only.
fn changed(case: &Case, action: Action, actor: &UserName) -> ApplicationChanged {
    let action = match action {
        Action::Receive => EventAction::Receive,
        Action::Accept => EventAction::Accept,
        Action::Start => EventAction::Start,
        Action::Forward => EventAction::Forward,
        Action::HandOver => EventAction::HandOver,
        Action::Complete => EventAction::Complete,
        Action::Reject => EventAction::Reject,
        Action::Withdraw => EventAction::Withdraw,
    };
    let name_of = |user: &Option<UserName>| user.as_ref().map(ToString::to_string).unwrap_or_default();
    ApplicationChanged {
        application: case.name.to_string(),
        action: action as i32,
        state: case.state as i32,
        actor: actor.to_string(),
        applicant: case.applicant.to_string(),
        first_owner: name_of(&case.first_owner),
        handler: name_of(&case.handler),
        service_item: case.revision.item.to_string(),
        service_item_revision: case.revision.to_string(),
        due_time: Some(time::to_timestamp(case.due_time)),
        event_time: Some(time::to_timestamp(case.updated)),
    }
}

/// A staff member's action on a case, as its request names it.
struct StaffAction<'a, R> {
    method: &'static str,
    request: &'a R,
    name: &'a str,
    etag: &'a str,
    request_id: &'a str,
    action: Action,
    note: &'a str,
}

impl<'a, R> StaffAction<'a, R> {
    /// `action` by the request to `method`, whose case name, etag and request id are `ids`.
    fn new(method: &'static str, request: &'a R, ids: [&'a str; 3], action: Action, note: &'a str) -> Self {
        let [name, etag, request_id] = ids;
        Self { method, request, name, etag, request_id, action, note }
    }
}

impl Catalogue {
    /// Applies a step to a case under the request's key: checks the etag and the case's rules,
    /// lets `set` fill in what the action sets, and writes the case and its event in one
    /// transaction.
    async fn act(
        &self,
        key: &RequestKey,
        name: &ApplicationName,
        sent_etag: &str,
        step: Step<'_>,
        set: impl FnOnce(&mut Case),
    ) -> Result<Application> {
        self.writer
            .write(key, async |c: &mut Change| {
                let mut case = store::get_in(c.tx(), name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
                check_etag(sent_etag, case.version, &name.to_string())?;
                let on_behalf = crate::store::get_in(c.tx(), &case.revision.item)
                    .await?
                    .is_some_and(|i| i.content.handling_mode() == HandlingMode::OnBehalf);
                case.act(step, on_behalf, set)?;
                store::save(c.tx(), &case).await?;
                c.emit(&case.name.to_string(), &changed(&case, step.action, step.actor)).await?;
                Ok(to_wire(&case))
            })
            .await
    }

    /// A staff member's action: the caller must be staff of the case's street.
    async fn staff_action<R: Message>(
        &self,
        caller: &Caller,
        action: StaffAction<'_, R>,
        set: impl FnOnce(&mut Case),
    ) -> Result<Application> {
        let name = ApplicationName::parse("name", action.name)?;
        let actor = staff_of(caller, name.street())?.user_name();
        let key = RequestKey::new(caller.key(), action.method, action.request_id, action.request)?;
        let step = Step { actor: &actor, action: action.action, note: action.note, at: Utc::now() };
        self.act(&key, &name, action.etag, step, set).await
    }

    /// Reads a case the caller may see: its applicant, or the street's staff. Anyone else is
    /// PERMISSION_DENIED whether or not the case exists (AIP-211).
    async fn visible_application(&self, caller: &Caller, name: &ApplicationName) -> Result<Case> {
        let principal = caller.require()?;
        let case = store::get(self.writer.db().reader(), name).await?;
        let staff = principal.is_staff_of(name.street().as_str());
        match case {
            Some(c) if staff || c.applicant == principal.user_name() => Ok(c),
            None if staff => Err(Error::not_found(name.to_string())),
            _ => Err(Error::permission_denied("you may see only your own applications")),
        }
    }

    /// The materials list of a published revision.
    async fn materials_of(&self, revision: &RevisionName) -> Result<Vec<Material>> {
        let found = crate::store::get_revision(self.writer.db().reader(), revision).await?;
        Ok(found.map(|r| r.content.message().materials.clone()).unwrap_or_default())
    }
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
        let street = v.check(StreetId::parse_parent("parent", &req.parent));
        let draft = req.application.clone().unwrap_or_default();
        let item_name = v.check(ItemName::parse("application.service_item", &draft.service_item));
        let staff = street.as_ref().is_some_and(|s| principal.is_staff_of(s.as_str()));
        let applicant = if staff {
            v.check(UserName::parse("application.applicant", &draft.applicant))
        } else if draft.applicant.is_empty() || draft.applicant == principal.resource_name() {
            Some(principal.user_name())
        } else {
            return Err(Error::permission_denied("residents file applications for themselves only").into());
        };
        v.finish()?;
        let (Some(street), Some(item_name), Some(applicant)) = (street, item_name, applicant) else {
            return Err(Error::invalid("application", "is incomplete").into());
        };
        if item_name.street() != &street {
            return Err(Error::invalid("application.service_item", "must be an item of the same street").into());
        }
        if !staff && principal.street.as_deref() != Some(street.as_str()) {
            return Err(Error::permission_denied("residents file applications in their own street").into());
        }
        let key = RequestKey::new(caller.key(), "CreateApplication", &req.request_id, &req)?;
        let filer = principal.user_name();
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let item = crate::store::get_in(c.tx(), &item_name)
                    .await?
                    .filter(|i| i.state == ItemState::Published)
                    .ok_or_else(|| {
                        Error::failed_precondition("ITEM_NOT_PUBLISHED", format!("{item_name} is not a published item"))
                    })?;
                let now = Utc::now();
                let filing = Filing {
                    name: ApplicationName::new(street.clone(), Id::generate('a')),
                    applicant: applicant.clone(),
                    revision: RevisionName { item: item_name.clone(), revision: item.revision },
                    received_by: staff.then(|| filer.clone()),
                    filed_by: filer.clone(),
                    note: draft.note.clone(),
                    due_time: self.calendar.deadline(now, item.content.promised_days()),
                };
                let case = Case::receive(filing, now);
                store::insert(c.tx(), &case).await?;
                c.emit(&case.name.to_string(), &changed(&case, Action::Receive, &filer)).await?;
                Ok(to_wire(&case))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_application(&self, request: Request<GetApplicationRequest>) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let name = ApplicationName::parse("name", &request.get_ref().name)?;
        Ok(Response::new(to_wire(&self.visible_application(&caller, &name).await?)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_applications(
        &self,
        request: Request<ListApplicationsRequest>,
    ) -> Result<Response<ListApplicationsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let principal = caller.require()?;
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 50, 1000)?;
        let mut list_filter = ApplicationFilter::default();
        for term in filter::parse(&req.filter, &["state", "applicant", "handler", "overdue"])? {
            match term.field.as_str() {
                "state" => {
                    let state = State::from_str_name(&term.value)
                        .ok_or_else(|| Error::invalid("filter", format!("`{}` is not a state", term.value)))?;
                    list_filter.state = Some(state);
                }
                "applicant" => list_filter.applicant = UserName::parse("filter", &term.value)?.to_string(),
                "handler" => list_filter.handler = UserName::parse("filter", &term.value)?.to_string(),
                _ => match term.value.as_str() {
                    "true" => list_filter.overdue_at = time::now_text(),
                    "false" => {}
                    _ => return Err(Error::invalid("filter", "overdue is true or false").into()),
                },
            }
        }
        if !principal.is_staff_of(street.as_str()) {
            let me = principal.resource_name();
            if !list_filter.applicant.is_empty() && list_filter.applicant != me {
                return Err(Error::permission_denied("you may list only your own applications").into());
            }
            list_filter.applicant = me;
        }
        let query = format!(
            "ListApplications|{street}|{}|{}|{}|{}|{}",
            list_filter.state.map(|s| s.as_str_name()).unwrap_or_default(),
            list_filter.applicant,
            list_filter.handler,
            !list_filter.overdue_at.is_empty(),
            caller.key()
        );
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let mut rows = store::list(self.writer.db().reader(), &street, &list_filter, after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(_, c, i)| vec![c.clone(), i.clone()]);
        Ok(Response::new(ListApplicationsResponse {
            applications: rows.iter().map(|(case, _, _)| to_wire(case)).collect(),
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
        staff_of(&caller, name.street())?;
        // The item's list, as of the revision the case was filed under.
        let case =
            store::get(self.writer.db().reader(), &name).await?.ok_or_else(|| Error::not_found(name.to_string()))?;
        let required = self.materials_of(&case.revision).await?;
        let checked = domain::check_materials(&required, &req.materials)?;
        let ids = [req.name.as_str(), &req.etag, &req.request_id];
        let action = StaffAction::new("AcceptApplication", &req, ids, Action::Accept, "");
        let out = self.staff_action(&caller, action, move |c| c.materials = checked).await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn start_application(
        &self,
        request: Request<StartApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let ids = [req.name.as_str(), &req.etag, &req.request_id];
        let action = StaffAction::new("StartApplication", &req, ids, Action::Start, "");
        Ok(Response::new(self.staff_action(&caller, action, |_| {}).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn forward_application(
        &self,
        request: Request<ForwardApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let office = req.office.trim().to_owned();
        if office.is_empty() {
            return Err(Error::invalid("office", "must name the office the case goes to").into());
        }
        let ids = [req.name.as_str(), &req.etag, &req.request_id];
        let action = StaffAction::new("ForwardApplication", &req, ids, Action::Forward, &req.office);
        Ok(Response::new(self.staff_action(&caller, action, move |c| c.forwarded_to = office).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn hand_over_application(
        &self,
        request: Request<HandOverApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let handler = UserName::parse("handler", &req.handler)?;
        let note = format!("{} {}", req.handler, req.note).trim().to_owned();
        let ids = [req.name.as_str(), &req.etag, &req.request_id];
        let action = StaffAction::new("HandOverApplication", &req, ids, Action::HandOver, &note);
        Ok(Response::new(self.staff_action(&caller, action, move |c| c.handler = Some(handler)).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn complete_application(
        &self,
        request: Request<CompleteApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let ids = [req.name.as_str(), &req.etag, &req.request_id];
        let action = StaffAction::new("CompleteApplication", &req, ids, Action::Complete, &req.note);
        Ok(Response::new(self.staff_action(&caller, action, |_| {}).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn reject_application(
        &self,
        request: Request<RejectApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let reason = req.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(Error::invalid("reason", "the resident must be told why").into());
        }
        let ids = [req.name.as_str(), &req.etag, &req.request_id];
        let action = StaffAction::new("RejectApplication", &req, ids, Action::Reject, &req.reason);
        Ok(Response::new(self.staff_action(&caller, action, move |c| c.rejection_reason = reason).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn withdraw_application(
        &self,
        request: Request<WithdrawApplicationRequest>,
    ) -> Result<Response<Application>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = ApplicationName::parse("name", &req.name)?;
        let me = caller.require()?.user_name();
        let case = store::get(self.writer.db().reader(), &name).await?;
        if case.is_none_or(|c| c.applicant != me) {
            return Err(Error::permission_denied("only the applicant may withdraw an application").into());
        }
        let key = RequestKey::new(caller.key(), "WithdrawApplication", &req.request_id, &req)?;
        let step = Step { actor: &me, action: Action::Withdraw, note: &req.note, at: Utc::now() };
        Ok(Response::new(self.act(&key, &name, &req.etag, step, |_| {}).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_inquiry(&self, request: Request<CreateInquiryRequest>) -> Result<Response<Inquiry>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let actor = staff_of(&caller, &street)?.user_name();
        let draft = req.inquiry.clone().unwrap_or_default();
        let mut v = Violations::new();
        if draft.question.trim().is_empty() {
            v.add("inquiry.question", "must not be empty");
        }
        let asker = match draft.asker.as_str() {
            "" => None,
            asker => v.check(UserName::parse("inquiry.asker", asker)),
        };
        let service_item = match draft.service_item.as_str() {
            "" => None,
            item => v.check(ItemName::parse("inquiry.service_item", item)),
        };
        v.finish()?;
        let key = RequestKey::new(caller.key(), "CreateInquiry", &req.request_id, &req)?;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let inquiry = domain::Inquiry {
                    name: InquiryName::new(street.clone(), Id::generate('q')),
                    asker,
                    service_item,
                    question: draft.question.trim().to_owned(),
                    answer: draft.answer.trim().to_owned(),
                    answered_by: actor.clone(),
                    created: Utc::now(),
                };
                store::insert_inquiry(c.tx(), &inquiry).await?;
                let out = record::inquiry_to_message(&inquiry);
                let event = InquiryRecorded {
                    inquiry: out.name.clone(),
                    service_item: out.service_item.clone(),
                    answered_by: out.answered_by.clone(),
                    create_time: out.create_time,
                };
                c.emit(&out.name, &event).await?;
                Ok(out)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_inquiry(&self, request: Request<GetInquiryRequest>) -> Result<Response<Inquiry>, Status> {
        let caller = self.caller(&request)?;
        let name = InquiryName::parse("name", &request.get_ref().name)?;
        staff_of(&caller, name.street())?;
        let inquiry = store::get_inquiry(self.writer.db().reader(), &name)
            .await?
            .ok_or_else(|| Error::not_found(name.to_string()))?;
        Ok(Response::new(record::inquiry_to_message(&inquiry)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_inquiries(
        &self,
        request: Request<ListInquiriesRequest>,
    ) -> Result<Response<ListInquiriesResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        staff_of(&caller, &street)?;
        let size = page::page_size(req.page_size, 50, 1000)?;
        let query = format!("ListInquiries|{street}");
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let mut rows = store::list_inquiries(self.writer.db().reader(), &street, after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(_, c, i)| vec![c.clone(), i.clone()]);
        Ok(Response::new(ListInquiriesResponse {
            inquiries: rows.iter().map(|(i, _, _)| record::inquiry_to_message(i)).collect(),
            next_page_token,
        }))
    }
}
