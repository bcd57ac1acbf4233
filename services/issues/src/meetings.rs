//! `civic.issues.v1.MeetingService`: the community's meetings (三会) — called, changed while
//! scheduled, held with minutes whose decisions open issues or add to them, or cancelled. Read by
//! the street's staff; called and recorded by the community's cadres and the street's admins.

use chrono::{DateTime, Utc};
use civic_kit::auth::Caller;
use civic_kit::db::Tx;
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::{RequestKey, check_etag, etag};
use civic_kit::names::{Collection, CommunityName, Id, Name, StreetId, UserName};
use civic_kit::write::Change;
use civic_kit::{filter, page, time};
use civic_proto::issues::decision::Action as DecisionAction;
use civic_proto::issues::issue::{Placement, Source};
use civic_proto::issues::meeting::{Kind, State};
use civic_proto::issues::meeting_service_server::MeetingService;
use civic_proto::issues::*;
use prost::Message;
use sqlx::AnyPool;
use tonic::{Request, Response, Status};

use crate::Issues;
use crate::api::{Access, record};
use crate::domain::{IssueName, Step, is_category};

/// `streets/{street}/meetings/{meeting}`.
pub struct Meetings;
impl Collection for Meetings {
    const COLLECTION: &'static str = "meetings";
}
/// A meeting's name.
pub type MeetingName = Name<Meetings>;

/// A meeting as kept: the message (without its etag) and its version.
struct Kept {
    name: MeetingName,
    version: i64,
    meeting: Meeting,
}

fn to_wire(kept: &Kept) -> Meeting {
    Meeting { etag: etag(kept.version), ..kept.meeting.clone() }
}

fn denied() -> Error {
    Error::permission_denied("you may not see or change this meeting, or it does not exist")
}

/// The community id of a meeting.
fn community_of(meeting: &Meeting) -> String {
    CommunityName::parse("community", &meeting.community).map(|c| c.id().to_string()).unwrap_or_default()
}

/// Whether `access` may read `meeting`: the street's staff; a community's cadres their own.
fn reads(access: &Access, meeting: &Meeting) -> bool {
    match access {
        Access::Street | Access::Grids(_) | Access::Officer(_) => true,
        Access::Community(c) => *c == community_of(meeting),
        Access::Resident(_) | Access::Platform(_) => false,
    }
}

/// Whether `access` may call and record `meeting`: admins and the street's cadres, and the
/// community's own cadres.
fn writes(access: &Access, meeting: &Meeting) -> bool {
    match access {
        Access::Street => true,
        Access::Community(c) => *c == community_of(meeting),
        _ => false,
    }
}

// --- the store --------------------------------------------------------------------------------

async fn insert(tx: &mut Tx, kept: &Kept) -> Result<()> {
    sqlx::query(
        "insert into meetings (street, meeting_id, community_id, kind, state, start_time, version, body, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(kept.name.street().as_str())
    .bind(kept.name.id().as_str())
    .bind(community_of(&kept.meeting))
    .bind(kept.meeting.kind().as_str_name())
    .bind(kept.meeting.state().as_str_name())
    .bind(crate::domain::at(kept.meeting.start_time.as_ref()).map(time::to_text).unwrap_or_default())
    .bind(kept.version)
    .bind(kept.meeting.encode_to_vec())
    .bind(time::now_text())
    .execute(&mut **tx)
    .await
    .map_err(|e| civic_kit::db::exists_on(e, "meetings_pkey", &kept.name))?;
    Ok(())
}

async fn save(tx: &mut Tx, kept: &Kept) -> Result<()> {
    sqlx::query(
        "update meetings set state = $3, start_time = $4, version = $5, body = $6, updated_at = $7
         where street = $1 and meeting_id = $2",
    )
    .bind(kept.name.street().as_str())
    .bind(kept.name.id().as_str())
    .bind(kept.meeting.state().as_str_name())
    .bind(crate::domain::at(kept.meeting.start_time.as_ref()).map(time::to_text).unwrap_or_default())
    .bind(kept.version)
    .bind(kept.meeting.encode_to_vec())
    .bind(time::now_text())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn decode(name: &MeetingName, version: i64, body: &[u8]) -> Result<Kept> {
    let meeting = Meeting::decode(body).map_err(Error::internal)?;
    Ok(Kept { name: name.clone(), version, meeting })
}

const SELECT_ONE: &str = "select version, body from meetings where street = $1 and meeting_id = $2";

async fn get_in(tx: &mut Tx, name: &MeetingName) -> Result<Option<Kept>> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(SELECT_ONE)
        .bind(name.street().as_str())
        .bind(name.id().as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|(v, b)| decode(name, v, &b)).transpose()
}

async fn get(pool: &AnyPool, name: &MeetingName) -> Result<Option<Kept>> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as(SELECT_ONE).bind(name.street().as_str()).bind(name.id().as_str()).fetch_optional(pool).await?;
    row.map(|(v, b)| decode(name, v, &b)).transpose()
}

/// A page of a street's meetings, newest start first, after (start_time, id).
async fn list(
    pool: &AnyPool,
    street: &StreetId,
    (community, kind, state): (&str, &str, &str),
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<(Kept, String, String)>> {
    let (start, id) = after.unwrap_or_default();
    let rows: Vec<(String, i64, Vec<u8>, String)> = sqlx::query_as(
        "select meeting_id, version, body, start_time from meetings
         where street = $1 and ($2 = '' or community_id = $2) and ($3 = '' or kind = $3) and ($4 = '' or state = $4)
           and ($5 = '' or start_time < $5 or (start_time = $5 and meeting_id < $6))
         order by start_time desc, meeting_id desc limit $7",
    )
    .bind(street.as_str())
    .bind(community)
    .bind(kind)
    .bind(state)
    .bind(start)
    .bind(id)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, v, b, start)| {
            let name = MeetingName::new(street.clone(), Id::parse("meeting", &id)?);
            Ok((decode(&name, v, &b)?, start, id))
        })
        .collect()
}

// --- checks -----------------------------------------------------------------------------------

fn check_attendees(v: &mut Violations, attendees: &[Attendee]) {
    for (i, a) in attendees.iter().enumerate() {
        if a.display_name.trim().is_empty() {
            v.add(format!("meeting.attendees[{i}].display_name"), "is required");
        }
        if !a.user.is_empty() {
            v.check(UserName::parse(&format!("meeting.attendees[{i}].user"), &a.user));
        }
    }
}

fn check_agenda(v: &mut Violations, street: &StreetId, agenda: &[AgendaItem]) {
    for (i, item) in agenda.iter().enumerate() {
        if item.title.trim().is_empty() {
            v.add(format!("meeting.agenda[{i}].title"), "is required");
        }
        if !item.issue.is_empty() {
            let field = format!("meeting.agenda[{i}].issue");
            if let Some(issue) = v.check(IssueName::parse(&field, &item.issue))
                && issue.street() != street
            {
                v.add(field, "must be an issue of the same street");
            }
        }
    }
}

fn check_start(v: &mut Violations, start: Option<&pbjson_types::Timestamp>) -> Option<DateTime<Utc>> {
    match start {
        None => {
            v.add("meeting.start_time", "is required");
            None
        }
        Some(t) => {
            let at = crate::domain::at(Some(t));
            if at.is_none() {
                v.add("meeting.start_time", "is not a valid time");
            }
            at
        }
    }
}

/// A checked decision: for CREATE_ISSUE, its placement found before the write.
struct Checked {
    decision: Decision,
    issue: Option<IssueName>,
}

fn check_decisions(street: &StreetId, agenda: usize, decisions: &[Decision]) -> Result<Vec<Checked>> {
    let mut v = Violations::new();
    let mut out = Vec::new();
    for (i, d) in decisions.iter().enumerate() {
        let at = |f: &str| format!("decisions[{i}].{f}");
        if d.text.trim().is_empty() {
            v.add(at("text"), "is required");
        }
        if d.agenda_item < 0 || d.agenda_item as usize > agenda {
            v.add(at("agenda_item"), format!("must be 0 (none) or an agenda item's number, 1 to {agenda}"));
        }
        let mut issue = None;
        match d.action() {
            DecisionAction::Unspecified => v.add(at("action"), "is required: RECORD, CREATE_ISSUE or UPDATE_ISSUE"),
            DecisionAction::Record => {}
            DecisionAction::CreateIssue => {
                if !is_category(&d.category) {
                    v.add(at("category"), "is required: 1 to 40 lowercase letters, digits and _");
                }
            }
            DecisionAction::UpdateIssue => {
                if let Some(name) = v.check(IssueName::parse(&at("issue"), &d.issue)) {
                    if name.street() != street {
                        v.add(at("issue"), "must be an issue of the same street");
                    }
                    issue = Some(name);
                }
            }
        }
        out.push(Checked { decision: Decision { text: d.text.trim().to_owned(), ..d.clone() }, issue });
    }
    v.finish()?;
    Ok(out)
}

impl Issues {
    fn meeting_caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        self.auth.caller(request.metadata())
    }

    /// Reads a meeting the caller may see; PERMISSION_DENIED alike for a meeting that does not
    /// exist and one out of reach (street-wide callers learn NOT_FOUND).
    async fn visible_meeting(&self, caller: &Caller, name: &MeetingName) -> Result<(Kept, Access)> {
        let access = self.access(caller, name.street())?;
        match get(self.writer.db().reader(), name).await? {
            Some(kept) if reads(&access, &kept.meeting) => Ok((kept, access)),
            None if matches!(access, Access::Street) => Err(Error::not_found(name.to_string())),
            _ => Err(denied()),
        }
    }

    /// Changes a meeting the caller may write, under the request's key.
    async fn change_meeting<R: Message>(
        &self,
        caller: &Caller,
        (method, request, request_id): (&'static str, &R, &str),
        (name, sent_etag): (&MeetingName, &str),
        change: impl AsyncFnOnce(&mut Change, &mut Kept, &str) -> Result<()>,
    ) -> Result<Meeting> {
        let access = self.access(caller, name.street())?;
        let actor = caller.key();
        let key = RequestKey::new(actor.clone(), method, request_id, request)?;
        self.writer
            .write(&key, async |c: &mut Change| {
                let mut kept = match get_in(c.tx(), name).await? {
                    Some(kept) if writes(&access, &kept.meeting) => kept,
                    None if matches!(access, Access::Street) => return Err(Error::not_found(name.to_string())),
                    _ => return Err(denied()),
                };
                check_etag(sent_etag, kept.version, &name.to_string())?;
                if kept.meeting.state() != State::Scheduled {
                    return Err(Error::failed_precondition(
                        "ILLEGAL_TRANSITION",
                        format!("a meeting that is {} cannot change", kept.meeting.state().as_str_name()),
                    ));
                }
                change(c, &mut kept, &actor).await?;
                kept.version += 1;
                kept.meeting.update_time = Some(time::to_timestamp(Utc::now()));
                save(c.tx(), &kept).await?;
                Ok(to_wire(&kept))
            })
            .await
    }
}

#[tonic::async_trait]
impl MeetingService for Issues {
    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_meeting(&self, request: Request<CreateMeetingRequest>) -> Result<Response<Meeting>, Status> {
        let caller = self.meeting_caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let access = self.access(&caller, &street)?;
        let draft = req.meeting.clone().unwrap_or_default();
        let mut v = Violations::new();
        if draft.kind() == Kind::Unspecified {
            v.add("meeting.kind", "is required: OPINION, JOINT_WORKING, AFFAIRS_REVIEW or RESIDENTS_COUNCIL");
        }
        if let Some(c) = v.check(CommunityName::parse("meeting.community", &draft.community))
            && c.street() != &street
        {
            v.add("meeting.community", "must be a community of the same street");
        }
        if draft.title.trim().is_empty() {
            v.add("meeting.title", "is required");
        }
        let start = check_start(&mut v, draft.start_time.as_ref());
        check_attendees(&mut v, &draft.attendees);
        check_agenda(&mut v, &street, &draft.agenda);
        v.finish()?;
        let now = Utc::now();
        let name = MeetingName::new(street.clone(), Id::generate('m'));
        let meeting = Meeting {
            name: name.to_string(),
            kind: draft.kind,
            community: draft.community.clone(),
            title: draft.title.trim().to_owned(),
            start_time: start.map(time::to_timestamp),
            place: draft.place.trim().to_owned(),
            attendees: draft.attendees.iter().map(|a| Attendee { present: false, ..a.clone() }).collect(),
            agenda: draft.agenda.clone(),
            state: State::Scheduled as i32,
            created_by: caller.key(),
            create_time: Some(time::to_timestamp(now)),
            update_time: Some(time::to_timestamp(now)),
            ..Default::default()
        };
        if !writes(&access, &meeting) {
            return Err(
                Error::permission_denied("a community's cadres and the street's admins call its meetings").into()
            );
        }
        let key = RequestKey::new(caller.key(), "CreateMeeting", &req.request_id, &req)?;
        let kept = Kept { name, version: 1, meeting };
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                insert(c.tx(), &kept).await?;
                Ok(to_wire(&kept))
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_meeting(&self, request: Request<GetMeetingRequest>) -> Result<Response<Meeting>, Status> {
        let caller = self.meeting_caller(&request)?;
        let name = MeetingName::parse("name", &request.get_ref().name)?;
        let (kept, _) = self.visible_meeting(&caller, &name).await?;
        Ok(Response::new(to_wire(&kept)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_meetings(
        &self,
        request: Request<ListMeetingsRequest>,
    ) -> Result<Response<ListMeetingsResponse>, Status> {
        let caller = self.meeting_caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let access = self.access(&caller, &street)?;
        if matches!(access, Access::Resident(_) | Access::Platform(_)) {
            return Err(Error::permission_denied("meetings are read by the street's staff").into());
        }
        let size = page::page_size(req.page_size, 50, 200)?;
        let (mut community, mut kind, mut state) = (String::new(), String::new(), String::new());
        for term in filter::parse(&req.filter, &["community", "kind", "state"])? {
            let value = term.value.as_str();
            match term.field.as_str() {
                "community" => community = CommunityName::parse("filter", value)?.id().to_string(),
                "kind" => {
                    let k = Kind::from_str_name(value)
                        .ok_or_else(|| Error::invalid("filter", format!("`{value}` is not a kind of meeting")))?;
                    kind = k.as_str_name().to_owned();
                }
                _ => {
                    let s = State::from_str_name(value)
                        .ok_or_else(|| Error::invalid("filter", format!("`{value}` is not a state")))?;
                    state = s.as_str_name().to_owned();
                }
            }
        }
        if let Access::Community(own) = &access {
            if !community.is_empty() && community != *own {
                return Err(Error::permission_denied("you may list your own community's meetings").into());
            }
            community = own.clone();
        }
        let query = format!("ListMeetings|{street}|{community}|{kind}|{state}");
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let filters = (community.as_str(), kind.as_str(), state.as_str());
        let mut rows = list(self.writer.db().reader(), &street, filters, after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(_, s, i)| vec![s.clone(), i.clone()]);
        Ok(Response::new(ListMeetingsResponse {
            meetings: rows.iter().map(|(k, _, _)| to_wire(k)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_meeting(&self, request: Request<UpdateMeetingRequest>) -> Result<Response<Meeting>, Status> {
        let caller = self.meeting_caller(&request)?;
        let req = request.into_inner();
        let sent = req.meeting.clone().unwrap_or_default();
        let name = MeetingName::parse("meeting.name", &sent.name)?;
        let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::invalid("update_mask", "name the fields to change").into());
        }
        let mut v = Violations::new();
        let mut start = None;
        for path in &paths {
            match path.as_str() {
                "title" if sent.title.trim().is_empty() => v.add("meeting.title", "is required"),
                "start_time" => start = check_start(&mut v, sent.start_time.as_ref()),
                "attendees" => check_attendees(&mut v, &sent.attendees),
                "agenda" => check_agenda(&mut v, name.street(), &sent.agenda),
                "title" | "place" => {}
                other => v.add(
                    "update_mask",
                    format!("`{other}` cannot be changed; use title, start_time, place, attendees, agenda"),
                ),
            }
        }
        v.finish()?;
        let out = self
            .change_meeting(
                &caller,
                ("UpdateMeeting", &req, &req.request_id),
                (&name, &sent.etag),
                async |_, kept, _| {
                    let m = &mut kept.meeting;
                    for path in &paths {
                        match path.as_str() {
                            "title" => m.title = sent.title.trim().to_owned(),
                            "start_time" => m.start_time = start.map(time::to_timestamp),
                            "place" => m.place = sent.place.trim().to_owned(),
                            "attendees" => {
                                m.attendees =
                                    sent.attendees.iter().map(|a| Attendee { present: false, ..a.clone() }).collect()
                            }
                            _ => m.agenda = sent.agenda.clone(),
                        }
                    }
                    Ok(())
                },
            )
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn record_meeting_minutes(
        &self,
        request: Request<RecordMeetingMinutesRequest>,
    ) -> Result<Response<Meeting>, Status> {
        let caller = self.meeting_caller(&request)?;
        let req = request.into_inner();
        let name = MeetingName::parse("name", &req.name)?;
        if req.minutes.trim().is_empty() {
            return Err(Error::invalid("minutes", "is required").into());
        }
        // The agenda's length bounds the decisions' item numbers; the meeting is read again in
        // the write.
        let (current, _) = self.visible_meeting(&caller, &name).await?;
        let checked = check_decisions(name.street(), current.meeting.agenda.len(), &req.decisions)?;
        // New issues are placed before the write begins (a call to the grid service).
        let mut placed = Vec::new();
        for d in &checked {
            placed.push(if d.decision.action() == DecisionAction::CreateIssue {
                Some(self.locate(name.street(), d.decision.location.map(|p| (p.latitude, p.longitude))).await)
            } else {
                None
            });
        }
        let minutes = req.minutes.trim().to_owned();
        let present = req.present.clone();
        let out = self
            .change_meeting(
                &caller,
                ("RecordMeetingMinutes", &req, &req.request_id),
                (&name, &req.etag),
                async |c, kept, actor| {
                    let mut created = Vec::new();
                    let mut updated = Vec::new();
                    let mut decisions = Vec::new();
                    for (d, place) in checked.into_iter().zip(placed) {
                        let mut decision = d.decision;
                        match (decision.action(), d.issue, place) {
                            (DecisionAction::CreateIssue, _, Some(place)) => {
                                let issue = Issue {
                                    source: Source::Meeting as i32,
                                    category: decision.category.clone(),
                                    title: kept.meeting.title.clone(),
                                    description: decision.text.clone(),
                                    location: decision.location,
                                    created_by: actor.to_owned(),
                                    ..Default::default()
                                };
                                let place = if place.0 == Placement::NoLocation {
                                    // Without a location the meeting's community is where it is.
                                    (Placement::NoLocation, String::new(), kept.meeting.community.clone())
                                } else {
                                    place
                                };
                                let case = self.new_case(name.street(), issue, place);
                                let (case, event) = self.take_in(c.tx(), case).await?;
                                if let Some(event) = event {
                                    c.emit(&event.issue.clone(), &event).await?;
                                }
                                decision.issue = case.name.to_string();
                                created.push(decision.issue.clone());
                            }
                            (DecisionAction::UpdateIssue, Some(issue_name), _) => {
                                let found = crate::store::get_in(c.tx(), &issue_name).await?;
                                let access = self.access(&caller, name.street())?;
                                let Some(mut case) = found else {
                                    return Err(Error::invalid(
                                        "decisions.issue",
                                        format!("{issue_name} does not exist"),
                                    ));
                                };
                                if !self.may_handle(&access, &case).await? {
                                    return Err(denied());
                                }
                                case.version += 1;
                                case.issue.update_time = Some(time::to_timestamp(Utc::now()));
                                let step = Step { action: "note", text: decision.text.clone(), public: true };
                                record(c, &case, &step, actor).await?;
                                updated.push(issue_name.to_string());
                            }
                            _ => {}
                        }
                        decisions.push(decision);
                    }
                    let m = &mut kept.meeting;
                    for a in &mut m.attendees {
                        a.present = present.contains(&a.display_name);
                    }
                    m.minutes = minutes.clone();
                    m.decisions = decisions;
                    m.state = State::Held as i32;
                    let held = MeetingHeld {
                        meeting: name.to_string(),
                        community: m.community.clone(),
                        kind: m.kind().as_str_name().to_owned(),
                        start_time: m.start_time,
                        present: m.attendees.iter().filter(|a| a.present).count() as i32,
                        decisions: m.decisions.len() as i32,
                        issues_created: created,
                        issues_updated: updated,
                        event_time: Some(time::to_timestamp(Utc::now())),
                    };
                    c.emit(&name.to_string(), &held).await
                },
            )
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn cancel_meeting(&self, request: Request<CancelMeetingRequest>) -> Result<Response<Meeting>, Status> {
        let caller = self.meeting_caller(&request)?;
        let req = request.into_inner();
        let name = MeetingName::parse("name", &req.name)?;
        let reason = req.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(Error::invalid("reason", "is required").into());
        }
        let out = self
            .change_meeting(
                &caller,
                ("CancelMeeting", &req, &req.request_id),
                (&name, &req.etag),
                async |_, kept, _| {
                    kept.meeting.state = State::Cancelled as i32;
                    kept.meeting.cancel_reason = reason.clone();
                    Ok(())
                },
            )
            .await?;
        Ok(Response::new(out))
    }
}

/// The demo street's communities (as the grid service's demo map names them).
const DEMO_COMMUNITIES: [(&str, &str); 6] = [
    ("dongyuan", "东苑社区"),
    ("xiyuan", "西苑社区"),
    ("nanmen", "南门社区"),
    ("beiguan", "北关社区"),
    ("zhongshan", "中山社区"),
    ("liuhu", "柳湖社区"),
];

impl Issues {
    /// A residents' opinion meeting called in each of the demo street's communities for next
    /// week. Running it again adds nothing.
    pub(crate) async fn seed_meetings(&self, street: &StreetId) -> Result<usize> {
        let mut added = 0;
        let start = Utc::now() + chrono::Duration::days(7);
        for (id, display) in DEMO_COMMUNITIES {
            let name = MeetingName::new(street.clone(), Id::parse("seed", &format!("demo-{id}"))?);
            if get(self.writer.db().reader(), &name).await?.is_some() {
                continue;
            }
            let meeting = Meeting {
                name: name.to_string(),
                kind: Kind::Opinion as i32,
                community: format!("{}/communities/{id}", street.parent()),
                title: format!("{display}社情民意建言会"),
                start_time: Some(time::to_timestamp(start)),
                place: format!("{display}党群服务中心"),
                agenda: vec![
                    AgendaItem { title: "听取居民对小区环境的意见".into(), issue: String::new() },
                    AgendaItem { title: "通报上月问题办理情况".into(), issue: String::new() },
                ],
                state: State::Scheduled as i32,
                created_by: "users/cadre-demo".into(),
                create_time: Some(time::to_timestamp(Utc::now())),
                update_time: Some(time::to_timestamp(Utc::now())),
                ..Default::default()
            };
            let kept = Kept { name, version: 1, meeting };
            self.writer
                .write(&RequestKey::unkeyed("SeedMeeting"), async |c: &mut Change| insert(c.tx(), &kept).await)
                .await?;
            added += 1;
        }
        Ok(added)
    }
}
