//! The gRPC face of the issues service: authorise → validate → the issue's rules → store, the
//! timeline entry and the event every change writes, and the one mapping to the wire.

use chrono::{DateTime, NaiveDate, Utc};
use civic_kit::auth::{Caller, Role};
use civic_kit::db::Tx;
use civic_kit::error::{Error, Result, Violations};
use civic_kit::events::Event;
use civic_kit::idempotency::{RequestKey, check_etag, etag};
use civic_kit::names::{Id, StreetId, UserName};
use civic_kit::watch::{self, Update, WatchStream};
use civic_kit::write::Change;
use civic_kit::{filter, page, time};
use civic_proto::issues::issue::{EscalationLevel, Placement, Source, State, Triage};
use civic_proto::issues::issue_changed::Action;
use civic_proto::issues::issue_service_server::IssueService;
use civic_proto::issues::issue_update::Visibility;
use civic_proto::issues::*;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::Issues;
use crate::domain::{Case, IssueName, ReferralAnswer, Step, TriageChoice, at, distance_metres, is_category};
use crate::store::{self, IssueFilter, Scope};

/// What a caller reaches in a street.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// The whole street (admins, the street office's cadres).
    Street,
    /// A community (its cadres).
    Community(String),
    /// Grids (their workers).
    Grids(Vec<String>),
    /// The issues referred to departments (their officers).
    Officer(Vec<String>),
    /// The issues a resident reported.
    Resident(String),
    /// The work orders a platform filed (`services/{service}`).
    Platform(String),
}

impl Access {
    /// Whether the caller works on issues of the street (not a resident or a platform).
    fn is_staff(&self) -> bool {
        matches!(self, Access::Street | Access::Community(_) | Access::Grids(_))
    }
}

/// PERMISSION_DENIED that says nothing of whether the issue exists.
pub(crate) fn denied() -> Error {
    Error::permission_denied("you may not see or change this issue, or it does not exist")
}

fn ids_of(grid: &str) -> (&str, &str) {
    let parts: Vec<&str> = grid.split('/').collect();
    match parts.as_slice() {
        ["streets", _, "communities", c, "grids", g] => (c, g),
        _ => ("", ""),
    }
}

/// How the caller's action is to be authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Staff who handle the issue.
    Staff,
    /// Cadres and admins who handle it.
    Cadre,
    /// An officer of the department it is referred to.
    Officer,
    /// One of its reporters.
    Reporter,
}

/// The step a timeline action word records, as the event names it.
fn action_of(word: &str) -> Action {
    match word {
        "located" => Action::Located,
        "acknowledged" => Action::Acknowledged,
        "triaged" => Action::Triaged,
        "assigned" => Action::Assigned,
        "paused" => Action::Paused,
        "resumed" => Action::Resumed,
        "referred" => Action::Referred,
        "referral_accepted" => Action::ReferralAccepted,
        "referral_rejected" => Action::ReferralRejected,
        "referral_started" => Action::ReferralStarted,
        "referral_completed" => Action::ReferralCompleted,
        "resolved" => Action::Resolved,
        "explained" => Action::Explained,
        "reopened" => Action::Reopened,
        "merged" => Action::Merged,
        "duplicate_merged" => Action::DuplicateMerged,
        "closed" | "feedback" => Action::Closed,
        "escalated" => Action::Escalated,
        "attached" => Action::Attached,
        "note" => Action::Noted,
        _ => Action::Unspecified,
    }
}

/// The issue as the API shows it to a caller: reporters and platforms do not see who works on
/// it inside the office or the words of referrals.
pub(crate) fn to_wire(case: &Case, access: &Access) -> Issue {
    let mut issue = Issue { etag: etag(case.version), ..case.issue.clone() };
    if matches!(access, Access::Resident(_) | Access::Platform(_)) {
        issue.assignee.clear();
        for r in &mut issue.referrals {
            r.reason.clear();
            r.referred_by.clear();
            r.officer.clear();
            if r.state() != civic_proto::issues::referral::State::Completed {
                r.response.clear();
            }
        }
    }
    issue
}

/// The event of a step on `case` by `actor`.
pub(crate) fn changed(case: &Case, action: Action, actor: &str, public_updates: i32) -> IssueChanged {
    let issue = &case.issue;
    let clock = issue.clock.unwrap_or_default();
    IssueChanged {
        issue: case.name.to_string(),
        action: action as i32,
        state: issue.state,
        triage: issue.triage,
        category: issue.category.clone(),
        grid: issue.grid.clone(),
        community: issue.community.clone(),
        assignee: issue.assignee.clone(),
        department: case.referred_to().unwrap_or(&issue.assignee_department).to_owned(),
        actor: actor.to_owned(),
        create_time: issue.create_time,
        acknowledge_time: clock.acknowledge_time,
        resolve_time: clock.resolve_time,
        resolution_due_time: clock.resolution_due_time,
        escalation_level: issue.escalation_level,
        public_updates,
        version: case.version,
        event_time: issue.update_time,
    }
}

/// Writes a step: the case, its timeline entry and its event, in the change's transaction.
pub(crate) async fn record(c: &mut Change, case: &Case, step: &Step, actor: &str) -> Result<()> {
    store::save(c.tx(), case).await?;
    note(c, case, step, actor).await
}

/// Appends the step's timeline entry and writes its event.
pub(crate) async fn note(c: &mut Change, case: &Case, step: &Step, actor: &str) -> Result<()> {
    let update = IssueUpdate {
        name: String::new(),
        visibility: if step.public { Visibility::Public } else { Visibility::Internal } as i32,
        text: step.text.clone(),
        author: actor.to_owned(),
        state: case.issue.state,
        create_time: case.issue.update_time,
        action: step.action.to_owned(),
    };
    store::append_update(c.tx(), &case.name, &update).await?;
    let public = store::public_updates(&mut **c.tx(), &case.name).await?;
    let action = match (step.action, case.state()) {
        ("feedback", State::Reopened) => Action::Reopened,
        (word, _) => action_of(word),
    };
    c.emit(&case.name.to_string(), &changed(case, action, actor, public)).await
}

impl Issues {
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        self.auth.caller(request.metadata())
    }

    /// What `caller` reaches in `street`: PERMISSION_DENIED for a caller of another street or
    /// without a role here, UNAUTHENTICATED for no token — before anything is read.
    pub(crate) fn access(&self, caller: &Caller, street: &StreetId) -> Result<Access> {
        if let Caller::Service(service) = caller {
            return if self.rules.platform_services.contains(&service.service) {
                Ok(Access::Platform(service.resource_name()))
            } else {
                Err(Error::permission_denied("this service does not file issues"))
            };
        }
        let p = caller.require()?;
        if !p.in_street(street.as_str()) {
            return Err(denied());
        }
        if p.has_role(Role::Admin) {
            return Ok(Access::Street);
        }
        if p.has_role(Role::Cadre) {
            return Ok(p.community.clone().map_or(Access::Street, Access::Community));
        }
        if p.has_role(Role::GridWorker) {
            return Ok(Access::Grids(p.grids.clone()));
        }
        if p.has_role(Role::DepartmentOfficer) {
            let departments: Vec<String> = self
                .rules
                .departments
                .iter()
                .filter(|(_, d)| d.officers.contains(&p.subject))
                .map(|(id, _)| id.clone())
                .collect();
            return Ok(Access::Officer(departments));
        }
        if p.has_role(Role::Resident) {
            return Ok(Access::Resident(p.resource_name()));
        }
        Err(denied())
    }

    /// Whether `access` may see `case`.
    pub(crate) async fn sees(&self, access: &Access, case: &Case) -> Result<bool> {
        let (community, grid) = ids_of(&case.issue.grid);
        Ok(match access {
            Access::Street => true,
            Access::Community(c) => c == community,
            Access::Grids(grids) => !grid.is_empty() && grids.iter().any(|g| g == grid),
            Access::Officer(departments) => {
                case.issue.referrals.iter().any(|r| departments.contains(&r.department))
                    || departments.contains(&case.issue.assignee_department)
            }
            Access::Resident(me) => store::is_reporter(self.writer.db().reader(), &case.name, me).await?,
            Access::Platform(me) => case.issue.created_by == *me,
        })
    }

    /// Whether `access` may do what `who` allows on `case`.
    async fn may(&self, access: &Access, who: Who, case: &Case) -> Result<bool> {
        Ok(match who {
            Who::Staff => access.is_staff() && self.sees(access, case).await?,
            Who::Cadre => matches!(access, Access::Street | Access::Community(_)) && self.sees(access, case).await?,
            Who::Officer => match access {
                Access::Officer(departments) => case.referred_to().is_some_and(|d| departments.iter().any(|x| x == d)),
                _ => false,
            },
            Who::Reporter => matches!(access, Access::Resident(_)) && self.sees(access, case).await?,
        })
    }

    /// Whether `access` may work on `case` as staff (a meeting's decision on it, say).
    pub(crate) async fn may_handle(&self, access: &Access, case: &Case) -> Result<bool> {
        self.may(access, Who::Staff, case).await
    }

    /// Reads an issue the caller may see; PERMISSION_DENIED alike for one that does not exist
    /// and one out of reach (street-wide callers learn NOT_FOUND).
    pub(crate) async fn visible(&self, caller: &Caller, name: &IssueName) -> Result<(Case, Access)> {
        let access = self.access(caller, name.street())?;
        let case = store::get(self.writer.db().reader(), name).await?;
        match case {
            Some(case) if self.sees(&access, &case).await? => Ok((case, access)),
            None if matches!(access, Access::Street) => Err(Error::not_found(name.to_string())),
            _ => Err(denied()),
        }
    }

    /// Applies a step to an issue under the request's key: checks who may, the etag and the
    /// issue's rules, and writes the issue, its timeline entry and its event in one transaction.
    async fn act<R: Message>(
        &self,
        caller: &Caller,
        (method, request, request_id): (&'static str, &R, &str),
        (name, sent_etag): (&str, &str),
        who: Who,
        step: impl FnOnce(&mut Case, DateTime<Utc>) -> Result<Step>,
    ) -> Result<Issue> {
        let name = IssueName::parse("name", name)?;
        let access = self.access(caller, name.street())?;
        let actor = caller.key();
        let key = RequestKey::new(actor.clone(), method, request_id, request)?;
        self.writer
            .write(&key, async |c: &mut Change| {
                let case = store::get_in(c.tx(), &name).await?;
                let mut case = match case {
                    Some(case) if self.may(&access, who, &case).await? => case,
                    None if matches!(access, Access::Street) => return Err(Error::not_found(name.to_string())),
                    _ => return Err(denied()),
                };
                check_etag(sent_etag, case.version, &name.to_string())?;
                let done = step(&mut case, Utc::now())?;
                record(c, &case, &done, &actor).await?;
                Ok(to_wire(&case, &access))
            })
            .await
    }

    /// Places `point` in its grid through the grid service: `(placement, grid, community)`.
    pub(crate) async fn locate(&self, street: &StreetId, point: Option<(f64, f64)>) -> (Placement, String, String) {
        self.try_locate(street, point).await.unwrap_or_else(|why| {
            tracing::warn!(why, "the grid service did not place an issue; it is placed later");
            (Placement::ToLocate, String::new(), String::new())
        })
    }

    /// As [`Issues::locate`], saying why when the grid service did not answer (the issue is then
    /// `TO_LOCATE`), for a caller that reports it its own way (the seed, which runs before the
    /// process serves).
    pub(crate) async fn try_locate(
        &self,
        street: &StreetId,
        point: Option<(f64, f64)>,
    ) -> std::result::Result<(Placement, String, String), &'static str> {
        let Some((latitude, longitude)) = point else {
            return Ok((Placement::NoLocation, String::new(), String::new()));
        };
        let message = civic_proto::grid::LocateGridRequest {
            parent: street.parent(),
            point: Some(civic_proto::grid::Point { latitude, longitude }),
        };
        let call = async {
            let request = self.directory.as_service(message, self.rules.locate_timeout).await?;
            let channel = self.directory.connect("grid")?;
            let mut client = civic_proto::grid::grid_service_client::GridServiceClient::new(channel);
            Ok::<_, Error>(client.locate_grid(request).await)
        };
        match tokio::time::timeout(self.rules.locate_timeout, call).await {
            Ok(Ok(Ok(found))) => {
                let found = found.into_inner();
                Ok((Placement::Located, found.grid, found.community))
            }
            Ok(Ok(Err(status))) if status.code() == tonic::Code::NotFound => {
                Ok((Placement::Outside, String::new(), String::new()))
            }
            Ok(Ok(Err(_))) => Err("the grid service refused the call"),
            Ok(Err(_)) => Err("the grid service cannot be reached"),
            Err(_) => Err("the grid service did not answer in time"),
        }
    }

    /// Open issues that may be the same problem as `case`: the same category, within the radius
    /// and the window, nearest first, at most 10.
    pub(crate) async fn duplicates_of(&self, case: &Case) -> Result<Vec<(Case, f64)>> {
        let Some(p) = case.issue.location else { return Ok(Vec::new()) };
        let radius = self.rules.duplicate_radius_metres;
        let dlat = radius / 111_320.0;
        let dlon = radius / (111_320.0 * p.latitude.to_radians().cos().abs().max(0.01));
        let since = at(case.issue.create_time.as_ref()).unwrap_or_else(Utc::now) - self.rules.duplicate_window;
        let bbox = (p.latitude - dlat, p.longitude - dlon, p.latitude + dlat, p.longitude + dlon);
        let found = store::near(
            self.writer.db().reader(),
            case.name.street(),
            &case.issue.category,
            &time::to_text(since),
            bbox,
            200,
        )
        .await?;
        let mut out: Vec<(Case, f64)> = found
            .into_iter()
            .filter(|c| c.name != case.name)
            .filter_map(|c| {
                let q = c.issue.location?;
                let d = distance_metres((p.latitude, p.longitude), (q.latitude, q.longitude));
                (d <= radius).then_some((c, d))
            })
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out.truncate(10);
        Ok(out)
    }

    /// Takes a new issue in `tx` (its possible duplicates found before, outside the write),
    /// written with its first timeline entry. Returns it with the event to write — or, when an
    /// issue of the same origin (a visit's problem, a work order) exists already, that issue and
    /// no event.
    pub(crate) async fn take_in(&self, tx: &mut Tx, case: Case) -> Result<(Case, Option<IssueCreated>)> {
        let update = IssueUpdate {
            visibility: Visibility::Public as i32,
            author: case.issue.created_by.clone(),
            state: case.issue.state,
            create_time: case.issue.create_time,
            action: "created".into(),
            ..Default::default()
        };
        if let Some(existing) = store::insert(tx, &case, &update).await? {
            return Ok((existing, None));
        }
        let issue = &case.issue;
        let clock = issue.clock.unwrap_or_default();
        let event = IssueCreated {
            issue: case.name.to_string(),
            source: issue.source,
            category: issue.category.clone(),
            grid: issue.grid.clone(),
            community: issue.community.clone(),
            visit: issue.visit.clone(),
            visit_problem: issue.visit_problem,
            response_due_time: clock.response_due_time,
            resolution_due_time: clock.resolution_due_time,
            create_time: issue.create_time,
        };
        Ok((case, Some(event)))
    }

    /// A new case of `issue` (checked), taken now in `street`, placed as `placement` says.
    pub(crate) fn new_case(&self, street: &StreetId, issue: Issue, placed: (Placement, String, String)) -> Case {
        let now = Utc::now();
        let limit = self.rules.limits.of(issue.source(), &issue.category);
        let name = IssueName::new(street.clone(), Id::generate('i'));
        let mut case = Case::take(name, issue, limit, &self.calendar, now);
        let (placement, grid, community) = placed;
        case.issue.placement = placement as i32;
        case.issue.grid = grid;
        case.issue.community = community;
        case
    }
}

/// The issue a create request describes, checked for `access` (violations name the fields).
fn check_new(req: &CreateIssueRequest, street: &StreetId, access: &Access, caller: &Caller) -> Result<Issue> {
    let draft = req.issue.clone().unwrap_or_default();
    let mut v = Violations::new();
    let source = draft.source();
    if source == Source::Unspecified {
        v.add("issue.source", "is required: VISIT, WALK_IN, HOTLINE, APP, MEETING or CITY_PLATFORM");
    }
    if !is_category(&draft.category) {
        v.add("issue.category", "is required: 1 to 40 lowercase letters, digits and _");
    }
    if draft.description.trim().is_empty() {
        v.add("issue.description", "is required");
    }
    // The location's ranges (NaN included) are the codec's, declared on `Point`.
    if !draft.household.is_empty() {
        let parts = civic_kit::names::parse("issue.household", &draft.household, &["streets", "households"]);
        if let Some(p) = v.check(parts)
            && p[0] != street.as_str()
        {
            v.add("issue.household", "must be a household of the same street");
        }
    }
    let reporter = match access {
        Access::Resident(me) => {
            if !draft.reporter.is_empty() && draft.reporter != *me {
                return Err(Error::permission_denied("residents report issues for themselves only"));
            }
            if source != Source::App && source != Source::Unspecified {
                return Err(Error::permission_denied("residents report issues through the app (source APP)"));
            }
            me.clone()
        }
        _ if draft.reporter.is_empty() => String::new(),
        _ => v.check(UserName::parse("issue.reporter", &draft.reporter)).map(|u| u.to_string()).unwrap_or_default(),
    };
    match access {
        Access::Platform(_) => {
            if source != Source::CityPlatform && source != Source::Unspecified {
                v.add("issue.source", "a platform files CITY_PLATFORM work orders");
            }
            let ok = !draft.external_id.is_empty()
                && draft.external_id.len() <= 64
                && draft.external_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if !ok {
                v.add("issue.external_id", "is required: the platform's order id (letters, digits, - _ . :)");
            }
        }
        _ => {
            if source == Source::CityPlatform {
                v.add("issue.source", "CITY_PLATFORM work orders are filed by the city platform");
            }
            if source == Source::App && !matches!(access, Access::Resident(_)) {
                v.add("issue.source", "APP issues are filed by residents; staff name where they heard of it");
            }
            if !draft.external_id.is_empty() {
                v.add("issue.external_id", "is set by the city platform only");
            }
        }
    }
    if matches!(access, Access::Officer(_)) {
        return Err(Error::permission_denied("departments answer referrals; they do not take issues"));
    }
    v.finish()?;
    Ok(Issue {
        source: draft.source,
        reporter,
        category: draft.category.clone(),
        title: draft.title.trim().to_owned(),
        description: draft.description.trim().to_owned(),
        location: draft.location,
        address: draft.address.trim().to_owned(),
        household: draft.household.clone(),
        external_id: draft.external_id.clone(),
        created_by: caller.key(),
        ..Default::default()
    })
}

/// Text that must not be blank, trimmed.
fn required(field: &str, text: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() { Err(Error::invalid(field, "is required")) } else { Ok(text.to_owned()) }
}

#[tonic::async_trait]
impl IssueService for Issues {
    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_issue(&self, request: Request<CreateIssueRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let access = self.access(&caller, &street)?;
        let issue = check_new(&req, &street, &access, &caller)?;
        // A work order is idempotent on its order id; anything else on its request id.
        let request_id = if req.request_id.is_empty() { issue.external_id.clone() } else { req.request_id.clone() };
        let key = RequestKey::new(caller.key(), "CreateIssue", &request_id, &req)?;
        let point = issue.location.map(|p| (p.latitude, p.longitude));
        let placed = self.locate(&street, point).await;
        let mut case = self.new_case(&street, issue, placed);
        // Read before the write begins: the suggestions need not hold the writer.
        let duplicates = self.duplicates_of(&case).await?;
        case.issue.possible_duplicates = duplicates.iter().map(|(d, _)| d.name.to_string()).collect();
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let (case, created) = self.take_in(c.tx(), case).await?;
                if let Some(event) = created {
                    c.emit(&event.issue.clone(), &event).await?;
                }
                Ok(to_wire(&case, &access))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_issue(&self, request: Request<GetIssueRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let name = IssueName::parse("name", &request.get_ref().name)?;
        let (case, access) = self.visible(&caller, &name).await?;
        Ok(Response::new(to_wire(&case, &access)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_issues(&self, request: Request<ListIssuesRequest>) -> Result<Response<ListIssuesResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let access = self.access(&caller, &street)?;
        let size = page::page_size(req.page_size, 50, 200)?;
        let allowed = [
            "state",
            "triage",
            "source",
            "category",
            "escalation_level",
            "grid",
            "community",
            "assignee",
            "reporter",
            "department",
            "overdue",
        ];
        let mut f = IssueFilter::default();
        let not = |what: &str, value: &str| Error::invalid("filter", format!("`{value}` is not {what}"));
        for term in filter::parse(&req.filter, &allowed)? {
            let value = term.value.as_str();
            match term.field.as_str() {
                "state" => {
                    f.state = State::from_str_name(value).ok_or_else(|| not("a state", value))?.as_str_name().into()
                }
                "triage" => {
                    f.triage =
                        Triage::from_str_name(value).ok_or_else(|| not("a triage list", value))?.as_str_name().into()
                }
                "source" => {
                    let s = Source::from_str_name(value).ok_or_else(|| not("a source", value))?;
                    f.source = crate::domain::source_key(s);
                }
                "category" => {
                    if !is_category(value) {
                        return Err(not("a category", value).into());
                    }
                    f.category = value.into();
                }
                "escalation_level" => {
                    let level =
                        EscalationLevel::from_str_name(value).ok_or_else(|| not("an escalation level", value))?;
                    f.escalation = Some(i64::from(level as i32));
                }
                "grid" => {
                    let grid = civic_kit::names::GridName::parse("filter", value)?;
                    f.community = grid.community_id().to_string();
                    f.grid = grid.id().to_string();
                }
                "community" => {
                    let community = civic_kit::names::CommunityName::parse("filter", value)?;
                    f.community = community.id().to_string();
                }
                "assignee" => f.assignee = UserName::parse("filter", value)?.to_string(),
                "reporter" => f.reporter = UserName::parse("filter", value)?.to_string(),
                "department" => {
                    if !civic_kit::names::is_valid_id(value) {
                        return Err(not("a department", value).into());
                    }
                    f.department = value.into();
                }
                _ => match value {
                    "true" => f.overdue_at = time::now_text(),
                    "false" => {}
                    _ => return Err(Error::invalid("filter", "overdue is true or false").into()),
                },
            }
        }
        f.scope = match &access {
            Access::Street => Scope::Street,
            Access::Community(c) => Scope::Community(c.clone()),
            Access::Grids(g) => Scope::Grids(g.clone()),
            Access::Officer(d) => match (d.as_slice(), f.department.as_str()) {
                ([one], "") => Scope::Department(vec![one.clone()]),
                (all, wanted) if all.iter().any(|x| x == wanted) => Scope::Department(vec![wanted.to_owned()]),
                ([], _) => return Ok(Response::new(ListIssuesResponse::default())),
                _ => return Err(Error::invalid("filter", "name one of your departments: department = <id>").into()),
            },
            Access::Resident(me) => Scope::Reporter(me.clone()),
            Access::Platform(me) => Scope::CreatedBy(me.clone()),
        };
        let query = format!("ListIssues|{street}|{}|{:?}|{}", req.filter, f.scope, caller.key());
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let mut rows = store::list(self.writer.db().reader(), &street, &f, after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(_, c, i)| vec![c.clone(), i.clone()]);
        Ok(Response::new(ListIssuesResponse {
            issues: rows.iter().map(|(case, _, _)| to_wire(case, &access)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn acknowledge_issue(&self, request: Request<AcknowledgeIssueRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let note = req.note.trim().to_owned();
        let out = self
            .act(&caller, ("AcknowledgeIssue", &req, &req.request_id), (&req.name, &req.etag), Who::Staff, |c, now| {
                c.acknowledge(&note, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn triage_issue(&self, request: Request<TriageIssueRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let due = match req.resolution_due_time.as_ref() {
            None => None,
            Some(t) => {
                let due = at(Some(t));
                if due.is_none() {
                    v.add("resolution_due_time", "is not a valid time");
                }
                due
            }
        };
        let revisit = match req.revisit_date.as_str() {
            "" => None,
            text => {
                let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
                if day.is_none() {
                    v.add("revisit_date", "must be a date, YYYY-MM-DD");
                }
                day
            }
        };
        v.finish()?;
        let triage = req.triage();
        let choice = TriageChoice { due, explanation: req.explanation.clone(), revisit };
        let calendar = self.calendar.clone();
        let out = self
            .act(&caller, ("TriageIssue", &req, &req.request_id), (&req.name, &req.etag), Who::Staff, |c, now| {
                c.triage(triage, choice, &calendar, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn assign_issue(&self, request: Request<AssignIssueRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let assignee = match req.assignee.as_str() {
            "" => String::new(),
            a => v.check(UserName::parse("assignee", a)).map(|u| u.to_string()).unwrap_or_default(),
        };
        if !req.department.is_empty() && !self.rules.departments.contains_key(&req.department) {
            v.add("department", "is not a configured department");
        }
        if req.assignee.is_empty() && req.department.is_empty() {
            v.add("assignee", "name a person, a department, or both");
        }
        v.finish()?;
        let department = req.department.clone();
        let out = self
            .act(&caller, ("AssignIssue", &req, &req.request_id), (&req.name, &req.etag), Who::Staff, |c, now| {
                c.assign(&assignee, &department, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn pause_issue_clock(&self, request: Request<PauseIssueClockRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let reason = req.reason();
        if reason == PauseReason::Unspecified {
            return Err(Error::invalid("reason", "is required: WAITING_FOR_RESIDENT or EXTENSION_APPROVED").into());
        }
        // An extension is a cadre's to approve.
        let who = if reason == PauseReason::ExtensionApproved { Who::Cadre } else { Who::Staff };
        let note = req.note.trim().to_owned();
        let out = self
            .act(&caller, ("PauseIssueClock", &req, &req.request_id), (&req.name, &req.etag), who, |c, now| {
                c.pause(reason, &note, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn resume_issue_clock(&self, request: Request<ResumeIssueClockRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let calendar = self.calendar.clone();
        let out = self
            .act(&caller, ("ResumeIssueClock", &req, &req.request_id), (&req.name, &req.etag), Who::Staff, |c, now| {
                c.resume(&calendar, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn refer_issue(&self, request: Request<ReferIssueRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        if !self.rules.departments.contains_key(&req.department) {
            v.add("department", "is not a configured department");
        }
        let reason = v.check(required("reason", &req.reason));
        v.finish()?;
        let reason = reason.unwrap_or_default();
        let by = caller.key();
        let department = req.department.clone();
        let out = self
            .act(&caller, ("ReferIssue", &req, &req.request_id), (&req.name, &req.etag), Who::Staff, |c, now| {
                c.refer(&department, &reason, &by, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn accept_referral(&self, request: Request<AcceptReferralRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let (note, officer) = (req.note.trim().to_owned(), caller.key());
        let out = self
            .act(&caller, ("AcceptReferral", &req, &req.request_id), (&req.name, &req.etag), Who::Officer, |c, now| {
                c.answer_referral(ReferralAnswer::Accept, &note, &officer, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn reject_referral(&self, request: Request<RejectReferralRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let reason = required("reason", &req.reason)?;
        let officer = caller.key();
        let out = self
            .act(&caller, ("RejectReferral", &req, &req.request_id), (&req.name, &req.etag), Who::Officer, |c, now| {
                c.answer_referral(ReferralAnswer::Reject, &reason, &officer, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn start_referral(&self, request: Request<StartReferralRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let officer = caller.key();
        let out = self
            .act(&caller, ("StartReferral", &req, &req.request_id), (&req.name, &req.etag), Who::Officer, |c, now| {
                c.answer_referral(ReferralAnswer::Start, "", &officer, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn complete_referral(&self, request: Request<CompleteReferralRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let outcome = required("outcome", &req.outcome)?;
        let officer = caller.key();
        let out = self
            .act(
                &caller,
                ("CompleteReferral", &req, &req.request_id),
                (&req.name, &req.etag),
                Who::Officer,
                |c, now| c.answer_referral(ReferralAnswer::Complete, &outcome, &officer, now),
            )
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn resolve_issue(&self, request: Request<ResolveIssueRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let resolution = required("resolution", &req.resolution)?;
        let out = self
            .act(&caller, ("ResolveIssue", &req, &req.request_id), (&req.name, &req.etag), Who::Staff, |c, now| {
                c.resolve(&resolution, now)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn submit_issue_feedback(
        &self,
        request: Request<SubmitIssueFeedbackRequest>,
    ) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        if !(1..=5).contains(&req.rating) {
            return Err(Error::invalid("rating", "must be 1 to 5").into());
        }
        let feedback = Feedback {
            rating: req.rating,
            fixed: req.fixed,
            comment: req.comment.trim().to_owned(),
            create_time: None,
        };
        let (rules, calendar) = (self.rules.clone(), self.calendar.clone());
        let name = IssueName::parse("name", &req.name)?;
        let access = self.access(&caller, name.street())?;
        let actor = caller.key();
        let key = RequestKey::new(actor.clone(), "SubmitIssueFeedback", &req.request_id, &req)?;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let case = store::get_in(c.tx(), &name).await?;
                let mut case = match case {
                    Some(case) if self.may(&access, Who::Reporter, &case).await? => case,
                    _ => return Err(denied()),
                };
                let limit = rules.limits.of(case.issue.source(), &case.issue.category);
                let on_time = case.on_time();
                let step = case.feedback(feedback.clone(), limit, &calendar, Utc::now())?;
                record(c, &case, &step, &actor).await?;
                let issue = &case.issue;
                let given = IssueFeedbackGiven {
                    issue: case.name.to_string(),
                    rating: feedback.rating,
                    fixed: feedback.fixed,
                    category: issue.category.clone(),
                    grid: issue.grid.clone(),
                    community: issue.community.clone(),
                    assignee: issue.assignee.clone(),
                    on_time,
                    event_time: issue.update_time,
                };
                c.emit(&case.name.to_string(), &given).await?;
                Ok(to_wire(&case, &access))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn merge_issue(&self, request: Request<MergeIssueRequest>) -> Result<Response<Issue>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = IssueName::parse("name", &req.name)?;
        let into = IssueName::parse("into", &req.into)?;
        if into.street() != name.street() {
            return Err(Error::invalid("into", "must be an issue of the same street").into());
        }
        let access = self.access(&caller, name.street())?;
        let actor = caller.key();
        let key = RequestKey::new(actor.clone(), "MergeIssue", &req.request_id, &req)?;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let (a, b) = (store::get_in(c.tx(), &name).await?, store::get_in(c.tx(), &into).await?);
                let (mut dup, mut target) = match (a, b) {
                    (Some(a), Some(b))
                        if self.may(&access, Who::Staff, &a).await? && self.may(&access, Who::Staff, &b).await? =>
                    {
                        (a, b)
                    }
                    _ => return Err(denied()),
                };
                check_etag(&req.etag, dup.version, &name.to_string())?;
                let now = Utc::now();
                let (step, target_step) = dup.merge_into(&mut target, now)?;
                store::copy_reporters(c.tx(), &dup.name, &target.name, &time::to_text(now)).await?;
                record(c, &dup, &step, &actor).await?;
                record(c, &target, &target_step, &actor).await?;
                Ok(to_wire(&dup, &access))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn list_duplicate_suggestions(
        &self,
        request: Request<ListDuplicateSuggestionsRequest>,
    ) -> Result<Response<ListDuplicateSuggestionsResponse>, Status> {
        let caller = self.caller(&request)?;
        let name = IssueName::parse("name", &request.get_ref().name)?;
        let (case, access) = self.visible(&caller, &name).await?;
        if !access.is_staff() {
            return Err(denied().into());
        }
        let mut suggestions = Vec::new();
        for (other, distance) in self.duplicates_of(&case).await? {
            if self.sees(&access, &other).await? {
                suggestions
                    .push(DuplicateSuggestion { issue: Some(to_wire(&other, &access)), distance_metres: distance });
            }
        }
        Ok(Response::new(ListDuplicateSuggestionsResponse { suggestions }))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_issue_update(
        &self,
        request: Request<CreateIssueUpdateRequest>,
    ) -> Result<Response<IssueUpdate>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = IssueName::parse("parent", &req.parent)?;
        let draft = req.issue_update.clone().unwrap_or_default();
        let mut v = Violations::new();
        let text = v.check(required("issue_update.text", &draft.text));
        let visibility = draft.visibility();
        if visibility == Visibility::Unspecified {
            v.add("issue_update.visibility", "is required: PUBLIC or INTERNAL");
        }
        v.finish()?;
        let text = text.unwrap_or_default();
        let access = self.access(&caller, name.street())?;
        let actor = caller.key();
        let key = RequestKey::new(actor.clone(), "CreateIssueUpdate", &req.request_id, &req)?;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let case = store::get_in(c.tx(), &name).await?;
                let allowed = match &case {
                    Some(case) => {
                        self.may(&access, Who::Staff, case).await?
                            || self.may(&access, Who::Officer, case).await?
                            || (visibility == Visibility::Public && self.may(&access, Who::Reporter, case).await?)
                    }
                    None => false,
                };
                let Some(mut case) = case.filter(|_| allowed) else {
                    return Err(if case_missing_is_visible(&access) {
                        Error::not_found(name.to_string())
                    } else {
                        denied()
                    });
                };
                let now = Utc::now();
                case.version += 1;
                case.issue.update_time = Some(time::to_timestamp(now));
                store::save(c.tx(), &case).await?;
                let update = IssueUpdate {
                    visibility: visibility as i32,
                    text: text.clone(),
                    author: actor.clone(),
                    state: case.issue.state,
                    create_time: Some(time::to_timestamp(now)),
                    action: "note".into(),
                    ..Default::default()
                };
                let written = store::append_update(c.tx(), &case.name, &update).await?;
                let public = store::public_updates(&mut **c.tx(), &case.name).await?;
                c.emit(&case.name.to_string(), &changed(&case, Action::Noted, &actor, public)).await?;
                Ok(written)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_issue_updates(
        &self,
        request: Request<ListIssueUpdatesRequest>,
    ) -> Result<Response<ListIssueUpdatesResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let name = IssueName::parse("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 100, 500)?;
        let (_, access) = self.visible(&caller, &name).await?;
        let public_only = matches!(access, Access::Resident(_) | Access::Platform(_));
        let query = format!("ListIssueUpdates|{name}|{public_only}");
        let after = match self.pages.decode_position(&req.page_token, &query, 1)? {
            Some(p) => {
                p[0].parse::<i64>().map_err(|_| Error::invalid("page_token", "is not a token this query returned"))?
            }
            None => 0,
        };
        let mut rows = store::updates(self.writer.db().reader(), &name, public_only, after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(_, seq)| vec![seq.to_string()]);
        Ok(Response::new(ListIssueUpdatesResponse {
            issue_updates: rows.into_iter().map(|(u, _)| u).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn add_issue_attachment(
        &self,
        request: Request<AddIssueAttachmentRequest>,
    ) -> Result<Response<Attachment>, Status> {
        Ok(Response::new(self.add_attachment(request).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_issue_attachment(
        &self,
        request: Request<GetIssueAttachmentRequest>,
    ) -> Result<Response<AttachmentContent>, Status> {
        Ok(Response::new(self.get_attachment(request).await?))
    }

    type WatchIssueStream = WatchStream<WatchIssueResponse>;

    async fn list_issue_categories(
        &self,
        request: Request<ListIssueCategoriesRequest>,
    ) -> Result<Response<ListIssueCategoriesResponse>, Status> {
        Ok(Response::new(self.issue_categories(request.get_ref())?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_issue_reports(
        &self,
        request: Request<ListIssueReportsRequest>,
    ) -> Result<Response<ListIssueReportsResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(self.issue_reports(&caller, request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn watch_issue(
        &self,
        request: Request<WatchIssueRequest>,
    ) -> Result<Response<Self::WatchIssueStream>, Status> {
        let caller = self.caller(&request)?;
        let name = IssueName::parse("name", &request.get_ref().name)?;
        self.visible(&caller, &name).await?;
        let permit = self.streams.open(&caller, &request)?;
        // Listen before reading the snapshot, so no change falls between the two.
        let listener = self.bus.listen("issues.issue.changed").await?;
        let (case, _) = self.visible(&caller, &name).await?;
        let public = store::public_updates(self.writer.db().reader(), &name).await?;
        let snapshot = vec![status_of(&changed(&case, Action::Unspecified, "", public))];
        let watch = IssueWatch { name: name.to_string() };
        Ok(Response::new(watch::stream(watch, snapshot, listener, permit, self.shutdown.clone())))
    }
}

/// Whether a caller that may not reach a missing issue is told it is missing (street-wide
/// callers only).
fn case_missing_is_visible(access: &Access) -> bool {
    matches!(access, Access::Street)
}

/// The status an issue's change event tells.
fn status_of(e: &IssueChanged) -> IssueStatus {
    IssueStatus {
        issue: e.issue.clone(),
        state: e.state,
        triage: e.triage,
        escalation_level: e.escalation_level,
        resolution_due_time: e.resolution_due_time,
        public_updates: e.public_updates,
        etag: etag(e.version),
        update_time: e.event_time,
    }
}

/// One issue's changes, from its events.
struct IssueWatch {
    name: String,
}

impl watch::Watch for IssueWatch {
    type Resource = IssueStatus;
    type Kind = ();
    type Response = WatchIssueResponse;

    fn identity(status: &IssueStatus) -> (String, i64) {
        let version = civic_kit::idempotency::version_of(&status.etag).unwrap_or_default();
        (status.issue.clone(), version)
    }

    fn change(&self, event: &Event) -> Option<((), IssueStatus)> {
        if event.key != self.name {
            return None;
        }
        event.decode::<IssueChanged>().map(|e| ((), status_of(&e)))
    }

    fn respond(update: Update<IssueStatus, ()>) -> WatchIssueResponse {
        use civic_proto::issues::watch_issue_response::ChangeType;
        let (change_type, status) = match update {
            Update::Existing(s) => (ChangeType::Existing, Some(s)),
            Update::Current => (ChangeType::Current, None),
            Update::Changed((), s) => (ChangeType::Changed, Some(s)),
        };
        WatchIssueResponse { change_type: change_type as i32, status }
    }
}
