//! The gRPC API of the register: authorise (before anything is read), validate, write through
//! the writer (idempotent, etags), and map to the wire.

use chrono::Utc;
use civic_kit::auth::{Caller, Principal, Role};
use civic_kit::error::{Error, Result};
use civic_kit::filter;
use civic_kit::idempotency::{RequestKey, check_etag, etag};
use civic_kit::names::{Id, StreetId};
use civic_kit::page;
use civic_kit::time;
use civic_kit::write::Change;
use civic_proto::volunteer::volunteer::{Kind, State};
use civic_proto::volunteer::volunteer_service_server::VolunteerService;
use civic_proto::volunteer::*;
use tonic::{Request, Response, Status};

use crate::Volunteers;
use crate::register::{self, Filter, Record, VolunteerName};

/// Every field a registration sets.
const ALL_FIELDS: [&str; 9] = [
    "display_name",
    "kind",
    "community",
    "registration_date",
    "skills",
    "availability",
    "monthly_hours_cap",
    "employer",
    "organisation",
];

/// What a caller reaches in a street.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    /// An admin: every volunteer of the street (a cadre whose token names no community too).
    Street,
    /// A cadre: the volunteers of their community (an id).
    Community(String),
    /// Anyone else of the street: their own registration only (their user id).
    Own(String),
}

fn denied() -> Error {
    Error::permission_denied("not a volunteer you may see")
}

/// A caller's part as the street's staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Staff {
    /// An admin, or a cadre whose token names no community: the street.
    Street,
    /// A cadre of a community (its id).
    Community(String),
}

/// The user calling in `street`, and their part as its staff if they are: UNAUTHENTICATED
/// without a token, PERMISSION_DENIED for another street's user or a service — before anything
/// is read.
pub(crate) fn staff<'c>(caller: &'c Caller, street: &StreetId) -> Result<(&'c Principal, Option<Staff>)> {
    let p = caller.require()?;
    if !p.in_street(street.as_str()) {
        return Err(Error::permission_denied("not of this street"));
    }
    let staff = if p.has_role(Role::Admin) {
        Some(Staff::Street)
    } else if p.has_role(Role::Cadre) {
        Some(p.community.clone().map_or(Staff::Street, Staff::Community))
    } else {
        None
    };
    Ok((p, staff))
}

impl Volunteers {
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        self.auth.caller(request.metadata())
    }

    /// What `caller` reaches in `street` (see [`staff`]).
    fn reach(&self, caller: &Caller, street: &StreetId) -> Result<Reach> {
        let (p, staff) = staff(caller, street)?;
        Ok(match staff {
            Some(Staff::Street) => Reach::Street,
            Some(Staff::Community(c)) => Reach::Community(c),
            None => Reach::Own(p.subject.clone()),
        })
    }

    /// INVALID_ARGUMENT unless `organisation` is empty or an organisation of the street (its
    /// form is checked before).
    async fn known_organisation(c: &mut Change, organisation: &str) -> Result<()> {
        if organisation.is_empty() {
            return Ok(());
        }
        let name = crate::organisations::OrganisationName::parse("volunteer.organisation", organisation)?;
        if crate::organisations::exists(&mut **c.tx(), &name).await? {
            Ok(())
        } else {
            Err(Error::invalid("volunteer.organisation", "is not an organisation of the street"))
        }
    }

    /// Whether `reach` may see `record`.
    fn sees(reach: &Reach, record: &Record) -> bool {
        match reach {
            Reach::Street => true,
            Reach::Community(c) => record.community_id() == c,
            Reach::Own(me) => record.name.id().as_str() == me,
        }
    }

    /// The registration `name` as `reach` may see it: PERMISSION_DENIED for one they may not
    /// see and, but for their own or an admin's, for one that does not exist (existence is not
    /// told).
    async fn visible<'e, E>(&self, executor: E, reach: &Reach, name: &VolunteerName) -> Result<Record>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        if let Reach::Own(me) = reach
            && name.id().as_str() != me
        {
            return Err(denied());
        }
        match register::get(executor, name).await? {
            Some(record) if Self::sees(reach, &record) => Ok(record),
            None if !matches!(reach, Reach::Community(_)) => Err(Error::not_found(name.to_string())),
            _ => Err(denied()),
        }
    }
}

/// The registration as the API gives it.
fn to_wire(record: &Record) -> Volunteer {
    Volunteer { name: record.name.to_string(), etag: etag(record.version), ..record.volunteer.clone() }
}

#[tonic::async_trait]
impl VolunteerService for Volunteers {
    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_volunteer(&self, request: Request<CreateVolunteerRequest>) -> Result<Response<Volunteer>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let reach = self.reach(&caller, &street)?;
        let mut v = req.volunteer.clone().unwrap_or_default();
        let id = match &reach {
            Reach::Own(me) if req.volunteer_id.is_empty() || req.volunteer_id == *me => Id::parse("volunteer_id", me)
                .map_err(|_| {
                Error::invalid(
                    "volunteer_id",
                    "your user id cannot name a volunteer: ask the community to register you",
                )
            })?,
            Reach::Own(_) => return Err(Error::permission_denied("residents register themselves only").into()),
            _ if req.volunteer_id.is_empty() => {
                return Err(Error::invalid("volunteer_id", "is required: the person's user id").into());
            }
            _ => Id::parse("volunteer_id", &req.volunteer_id)?,
        };
        register::check(&v, &street, &ALL_FIELDS, &self.vocabulary)?;
        if let Reach::Community(c) = &reach
            && register::community_id(&v.community) != c
        {
            return Err(Error::permission_denied("cadres register volunteers of their own community").into());
        }
        let name = VolunteerName::new(street, id);
        let now = Utc::now();
        v.person = format!("users/{}", name.id());
        if v.monthly_hours_cap == 0 {
            v.monthly_hours_cap = self.vocabulary.default_cap;
        }
        (v.state, v.approved_by) = match &reach {
            Reach::Own(_) => (State::Pending as i32, String::new()),
            _ => (State::Approved as i32, caller.key()),
        };
        v.create_time = Some(time::to_timestamp(now));
        v.update_time = v.create_time;
        let record =
            Record { name, volunteer: Volunteer { name: String::new(), etag: String::new(), ..v }, version: 1 };
        let key = RequestKey::new(caller.key(), "CreateVolunteer", &req.request_id, &req)?;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                Self::known_organisation(c, &record.volunteer.organisation).await?;
                register::insert(c.tx(), &record, &time::to_text(now)).await?;
                Ok(to_wire(&record))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_volunteer(&self, request: Request<GetVolunteerRequest>) -> Result<Response<Volunteer>, Status> {
        let caller = self.caller(&request)?;
        let name = VolunteerName::parse("name", &request.get_ref().name)?;
        let reach = self.reach(&caller, name.street())?;
        let record = self.visible(self.writer.db().reader(), &reach, &name).await?;
        Ok(Response::new(to_wire(&record)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_volunteers(
        &self,
        request: Request<ListVolunteersRequest>,
    ) -> Result<Response<ListVolunteersResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let reach = self.reach(&caller, &street)?;
        if matches!(reach, Reach::Own(_)) {
            return Err(Error::permission_denied("the register is for the community's staff").into());
        }
        let size = page::page_size(req.page_size, 50, 200)?;
        let mut f = Filter::default();
        let not = |what: &str, value: &str| Error::invalid("filter", format!("`{value}` is not {what}"));
        for term in filter::parse(&req.filter, &["state", "kind", "community", "skill"])? {
            let value = term.value.as_str();
            match term.field.as_str() {
                "state" => {
                    f.state = State::from_str_name(value).ok_or_else(|| not("a state", value))?.as_str_name().into()
                }
                "kind" => f.kind = Kind::from_str_name(value).ok_or_else(|| not("a kind", value))?.as_str_name().into(),
                "community" => {
                    let community = civic_kit::names::CommunityName::parse("filter", value)?;
                    f.community = community.id().to_string();
                }
                _ => {
                    if !self.vocabulary.skills.contains_key(value) {
                        return Err(not("one of the street's skills", value).into());
                    }
                    f.skill = value.into();
                }
            }
        }
        if let Reach::Community(mine) = &reach {
            if !f.community.is_empty() && f.community != *mine {
                return Err(Error::permission_denied("cadres list their own community's volunteers").into());
            }
            f.community = mine.clone();
        }
        let query = format!("ListVolunteers|{street}|{f:?}");
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let mut rows = register::list(self.writer.db().reader(), &street, &f, &after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |r| vec![r.name.id().to_string()]);
        Ok(Response::new(ListVolunteersResponse { volunteers: rows.iter().map(to_wire).collect(), next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().volunteer.as_ref().map(|v| v.name.as_str()).unwrap_or_default()))]
    async fn update_volunteer(&self, request: Request<UpdateVolunteerRequest>) -> Result<Response<Volunteer>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let sent = req.volunteer.clone().unwrap_or_default();
        let name = VolunteerName::parse("volunteer.name", &sent.name)?;
        let reach = self.reach(&caller, name.street())?;
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "name the fields to change").into());
        }
        let mut fields: Vec<&str> = Vec::with_capacity(paths.len());
        for path in &paths {
            match path.as_str() {
                "community" if matches!(reach, Reach::Own(_)) => {
                    return Err(Error::permission_denied("the community moves a volunteer").into());
                }
                "display_name" | "kind" | "employer" | "registration_date" | "skills" | "availability" | "home"
                | "monthly_hours_cap" | "organisation" | "community" => fields.push(path.as_str()),
                other => return Err(Error::invalid("update_mask", format!("`{other}` cannot be changed")).into()),
            }
        }
        register::check(&sent, name.street(), &fields, &self.vocabulary)?;
        if let Reach::Community(c) = &reach
            && fields.contains(&"community")
            && register::community_id(&sent.community) != c
        {
            return Err(Error::permission_denied("cadres keep volunteers in their own community").into());
        }
        let key = RequestKey::new(caller.key(), "UpdateVolunteer", &req.request_id, &req)?;
        let default_cap = self.vocabulary.default_cap;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let mut record = self.visible(&mut **c.tx(), &reach, &name).await?;
                check_etag(&sent.etag, record.version, &name.to_string())?;
                let v = &mut record.volunteer;
                for field in &fields {
                    match *field {
                        "display_name" => v.display_name = sent.display_name.clone(),
                        "kind" => v.kind = sent.kind,
                        "employer" => v.employer = sent.employer.clone(),
                        "registration_date" => v.registration_date = sent.registration_date.clone(),
                        "skills" => v.skills = sent.skills.clone(),
                        "availability" => v.availability = sent.availability.clone(),
                        "home" => v.home = sent.home,
                        "monthly_hours_cap" => {
                            v.monthly_hours_cap =
                                if sent.monthly_hours_cap == 0 { default_cap } else { sent.monthly_hours_cap }
                        }
                        "organisation" => {
                            Self::known_organisation(c, &sent.organisation).await?;
                            v.organisation = sent.organisation.clone();
                        }
                        _ => v.community = sent.community.clone(),
                    }
                }
                let now = Utc::now();
                v.update_time = Some(time::to_timestamp(now));
                record.version += 1;
                register::save(c.tx(), &record, &time::to_text(now)).await?;
                Ok(to_wire(&record))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn approve_volunteer(
        &self,
        request: Request<ApproveVolunteerRequest>,
    ) -> Result<Response<Volunteer>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = VolunteerName::parse("name", &req.name)?;
        let reach = self.reach(&caller, name.street())?;
        if matches!(reach, Reach::Own(_)) {
            return Err(Error::permission_denied("the community's staff approve volunteers").into());
        }
        let key = RequestKey::new(caller.key(), "ApproveVolunteer", &req.request_id, &req)?;
        let approver = caller.key();
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let mut record = self.visible(&mut **c.tx(), &reach, &name).await?;
                check_etag(&req.etag, record.version, &name.to_string())?;
                if record.volunteer.state() != State::Pending {
                    return Err(Error::failed_precondition("NOT_PENDING", "only a pending registration is approved"));
                }
                let now = Utc::now();
                record.volunteer.state = State::Approved as i32;
                record.volunteer.approved_by = approver.clone();
                record.volunteer.update_time = Some(time::to_timestamp(now));
                record.version += 1;
                register::save(c.tx(), &record, &time::to_text(now)).await?;
                Ok(to_wire(&record))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_organisation(
        &self,
        request: Request<CreateOrganisationRequest>,
    ) -> Result<Response<Organisation>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::create_organisation(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_organisation(
        &self,
        request: Request<GetOrganisationRequest>,
    ) -> Result<Response<Organisation>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::get_organisation(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_organisations(
        &self,
        request: Request<ListOrganisationsRequest>,
    ) -> Result<Response<ListOrganisationsResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::list_organisations(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().organisation.as_ref().map(|o| o.name.as_str()).unwrap_or_default()))]
    async fn update_organisation(
        &self,
        request: Request<UpdateOrganisationRequest>,
    ) -> Result<Response<Organisation>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::update_organisation(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn get_service_report(
        &self,
        request: Request<GetServiceReportRequest>,
    ) -> Result<Response<ServiceReport>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::service_report(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn export_service_report(
        &self,
        request: Request<ExportServiceReportRequest>,
    ) -> Result<Response<civic_proto::google::api::HttpBody>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::export_service_report(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_need(&self, request: Request<CreateNeedRequest>) -> Result<Response<Need>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::create_need(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_need(&self, request: Request<GetNeedRequest>) -> Result<Response<Need>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::get_need(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_needs(&self, request: Request<ListNeedsRequest>) -> Result<Response<ListNeedsResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::list_needs(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn cancel_need(&self, request: Request<CancelNeedRequest>) -> Result<Response<Need>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::cancel_need(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn claim_need(&self, request: Request<ClaimNeedRequest>) -> Result<Response<Claim>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::claim_need(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn recommend_volunteers(
        &self,
        request: Request<RecommendVolunteersRequest>,
    ) -> Result<Response<RecommendVolunteersResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::recommend_volunteers(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(community = %request.get_ref().community))]
    async fn assign_needs(&self, request: Request<AssignNeedsRequest>) -> Result<Response<AssignmentProposal>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::assign_needs(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(community = %request.get_ref().community))]
    async fn confirm_assignment(
        &self,
        request: Request<ConfirmAssignmentRequest>,
    ) -> Result<Response<ConfirmAssignmentResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::confirm_assignment(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn release_need(&self, request: Request<ReleaseNeedRequest>) -> Result<Response<Claim>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::release_need(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn check_in(&self, request: Request<CheckInRequest>) -> Result<Response<Task>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::check_in(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn check_out(&self, request: Request<CheckOutRequest>) -> Result<Response<Task>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::check_out(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn confirm_task(&self, request: Request<ConfirmTaskRequest>) -> Result<Response<Task>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::confirm_task(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_account(&self, request: Request<GetAccountRequest>) -> Result<Response<Account>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::get_account(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_movements(
        &self,
        request: Request<ListMovementsRequest>,
    ) -> Result<Response<ListMovementsResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::list_movements(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_reward(&self, request: Request<CreateRewardRequest>) -> Result<Response<Reward>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::create_reward(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_reward(&self, request: Request<GetRewardRequest>) -> Result<Response<Reward>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::get_reward(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_rewards(
        &self,
        request: Request<ListRewardsRequest>,
    ) -> Result<Response<ListRewardsResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::list_rewards(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn withdraw_reward(&self, request: Request<WithdrawRewardRequest>) -> Result<Response<Reward>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::withdraw_reward(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn redeem_reward(&self, request: Request<RedeemRewardRequest>) -> Result<Response<Redemption>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::redeem_reward(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn adjust_account(&self, request: Request<AdjustAccountRequest>) -> Result<Response<Movement>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Volunteers::adjust_account(self, &caller, request.into_inner()).await?))
    }
}
