//! The issues service's authorisation matrix: every RPC, called by every kind of caller on an
//! issue of resident A in grid g1 of community `east`, gets exactly what the rules allow —
//! including a worker of another grid, a cadre of another community, an officer of a department
//! the issue is not referred to, staff of another street, the city platform and another service.
//! A refusal is PERMISSION_DENIED whether or not the issue exists.

mod common;

use civic::{Options, Target};
use civic_kit::auth::Role;
use civic_proto::grid::grid_service_client::GridServiceClient;
use civic_proto::issues::issue::{Source, Triage};
use civic_proto::issues::issue_service_client::IssueServiceClient;
use civic_proto::issues::issue_update::Visibility;
use civic_proto::issues::*;
use common::{Store, grid_token, service_token, spawn_on, token, token_in, with_token};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";

/// The callers, in the order of every expectation row.
const CALLERS: [&str; 13] = [
    "anonymous",
    "reporter",
    "another resident",
    "worker of g1",
    "worker of g2",
    "cadre of east",
    "cadre of west",
    "police officer",
    "judicial officer",
    "cadre of another street",
    "admin",
    "city platform",
    "another service",
];

const OK: Code = Code::Ok;
const UNAUTH: Code = Code::Unauthenticated;
const NO: Code = Code::PermissionDenied;

fn tokens() -> [String; 13] {
    [
        String::new(),
        token("res-a", &[Role::Resident], "zhongjie"),
        token("res-b", &[Role::Resident], "zhongjie"),
        grid_token("gw-1", "g1"),
        grid_token("gw-2", "g2"),
        token_in("cadre-e", &[Role::Cadre], "zhongjie", "east"),
        token_in("cadre-w", &[Role::Cadre], "zhongjie", "west"),
        token("po-1", &[Role::DepartmentOfficer], "zhongjie"),
        token("ju-1", &[Role::DepartmentOfficer], "zhongjie"),
        token("zhao", &[Role::Cadre], "beijie"),
        token("boss", &[Role::Admin], "zhongjie"),
        service_token("city_platform"),
        service_token("volunteer"),
    ]
}

/// Where an issue is brought before a call.
#[derive(Debug, Clone, Copy)]
enum Stage {
    New,
    Acknowledged,
    InProgress,
    Paused,
    Referred,
    ReferralAccepted,
    Resolved,
}

/// The calls of the matrix.
#[derive(Debug, Clone, Copy)]
enum Call {
    Get,
    ListUpdates,
    Duplicates,
    Watch,
    Acknowledge,
    Triage,
    Assign,
    PauseWaiting,
    PauseExtension,
    Resume,
    Refer,
    AcceptReferral,
    RejectReferral,
    StartReferral,
    CompleteReferral,
    Resolve,
    Feedback,
    Merge,
    PublicNote,
    InternalNote,
    Attach,
    GetAttachment,
}

/// A small PNG's skeleton.
fn png() -> Vec<u8> {
    let chunk = |kind: &[u8; 4], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&[0, 0, 0, 0]);
        c
    };
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
    out.extend(chunk(b"IDAT", &[1, 2, 3]));
    out.extend(chunk(b"IEND", &[]));
    out
}

struct World {
    client: IssueServiceClient<Channel>,
    tokens: [String; 13],
}

impl World {
    fn admin(&self) -> &str {
        &self.tokens[10]
    }

    /// A fresh issue of the reporter's, in g1, brought to `stage`.
    async fn issue(&mut self, stage: Stage) -> String {
        let issue = Issue {
            source: Source::App as i32,
            category: "facilities".into(),
            description: "单元门禁损坏".into(),
            location: Some(Point { latitude: 35.05, longitude: 106.05 }),
            ..Default::default()
        };
        let request = CreateIssueRequest { parent: STREET.into(), issue: Some(issue), request_id: String::new() };
        let reporter = self.tokens[1].clone();
        let name = self.client.create_issue(with_token(request, &reporter)).await.expect("create").into_inner().name;
        let admin = self.admin().to_owned();
        let officer = self.tokens[7].clone();
        let c = &mut self.client;
        let n = || name.clone();
        if matches!(stage, Stage::New) {
            return name;
        }
        c.acknowledge_issue(with_token(AcknowledgeIssueRequest { name: n(), ..Default::default() }, &admin))
            .await
            .expect("ack");
        if matches!(stage, Stage::Acknowledged) {
            return name;
        }
        let triage = TriageIssueRequest { name: n(), triage: Triage::FixByDeadline as i32, ..Default::default() };
        c.triage_issue(with_token(triage, &admin)).await.expect("triage");
        match stage {
            Stage::Paused => {
                let pause = PauseIssueClockRequest {
                    name: n(),
                    reason: PauseReason::WaitingForResident as i32,
                    ..Default::default()
                };
                c.pause_issue_clock(with_token(pause, &admin)).await.expect("pause");
            }
            Stage::Referred | Stage::ReferralAccepted => {
                let refer = ReferIssueRequest {
                    name: n(),
                    department: "police".into(),
                    reason: "需协助".into(),
                    ..Default::default()
                };
                c.refer_issue(with_token(refer, &admin)).await.expect("refer");
                if matches!(stage, Stage::ReferralAccepted) {
                    let accept = AcceptReferralRequest { name: n(), ..Default::default() };
                    c.accept_referral(with_token(accept, &officer)).await.expect("accept");
                }
            }
            Stage::Resolved => {
                let resolve = ResolveIssueRequest { name: n(), resolution: "已修好".into(), ..Default::default() };
                c.resolve_issue(with_token(resolve, &admin)).await.expect("resolve");
            }
            _ => {}
        }
        name
    }

    /// Makes `call` on a fresh issue as `caller` and returns the code.
    async fn code(&mut self, call: Call, caller: usize) -> Code {
        let stage = match call {
            Call::Triage => Stage::Acknowledged,
            Call::Refer | Call::Resolve => Stage::InProgress,
            Call::Resume => Stage::Paused,
            Call::AcceptReferral | Call::RejectReferral => Stage::Referred,
            Call::StartReferral | Call::CompleteReferral => Stage::ReferralAccepted,
            Call::Feedback => Stage::Resolved,
            _ => Stage::New,
        };
        let name = self.issue(stage).await;
        let token = self.tokens[caller].clone();
        let c = &mut self.client;
        let n = name.clone();
        let result: Result<(), tonic::Status> = match call {
            Call::Get => c.get_issue(with_token(GetIssueRequest { name: n }, &token)).await.map(drop),
            Call::ListUpdates => c
                .list_issue_updates(with_token(ListIssueUpdatesRequest { parent: n, ..Default::default() }, &token))
                .await
                .map(drop),
            Call::Duplicates => c
                .list_duplicate_suggestions(with_token(ListDuplicateSuggestionsRequest { name: n }, &token))
                .await
                .map(drop),
            Call::Watch => c.watch_issue(with_token(WatchIssueRequest { name: n }, &token)).await.map(drop),
            Call::Acknowledge => c
                .acknowledge_issue(with_token(AcknowledgeIssueRequest { name: n, ..Default::default() }, &token))
                .await
                .map(drop),
            Call::Triage => {
                let r = TriageIssueRequest { name: n, triage: Triage::FixAtOnce as i32, ..Default::default() };
                c.triage_issue(with_token(r, &token)).await.map(drop)
            }
            Call::Assign => {
                let r = AssignIssueRequest { name: n, assignee: "users/gw-1".into(), ..Default::default() };
                c.assign_issue(with_token(r, &token)).await.map(drop)
            }
            Call::PauseWaiting | Call::PauseExtension => {
                let reason = if matches!(call, Call::PauseWaiting) {
                    PauseReason::WaitingForResident
                } else {
                    PauseReason::ExtensionApproved
                };
                let r = PauseIssueClockRequest { name: n, reason: reason as i32, ..Default::default() };
                c.pause_issue_clock(with_token(r, &token)).await.map(drop)
            }
            Call::Resume => c
                .resume_issue_clock(with_token(ResumeIssueClockRequest { name: n, ..Default::default() }, &token))
                .await
                .map(drop),
            Call::Refer => {
                let r = ReferIssueRequest {
                    name: n,
                    department: "judicial".into(),
                    reason: "调解".into(),
                    ..Default::default()
                };
                c.refer_issue(with_token(r, &token)).await.map(drop)
            }
            Call::AcceptReferral => c
                .accept_referral(with_token(AcceptReferralRequest { name: n, ..Default::default() }, &token))
                .await
                .map(drop),
            Call::RejectReferral => {
                let r = RejectReferralRequest { name: n, reason: "不属本所职责".into(), ..Default::default() };
                c.reject_referral(with_token(r, &token)).await.map(drop)
            }
            Call::StartReferral => c
                .start_referral(with_token(StartReferralRequest { name: n, ..Default::default() }, &token))
                .await
                .map(drop),
            Call::CompleteReferral => {
                let r = CompleteReferralRequest { name: n, outcome: "已处理".into(), ..Default::default() };
                c.complete_referral(with_token(r, &token)).await.map(drop)
            }
            Call::Resolve => {
                let r = ResolveIssueRequest { name: n, resolution: "已修好".into(), ..Default::default() };
                c.resolve_issue(with_token(r, &token)).await.map(drop)
            }
            Call::Feedback => {
                let r = SubmitIssueFeedbackRequest { name: n, rating: 4, fixed: true, ..Default::default() };
                c.submit_issue_feedback(with_token(r, &token)).await.map(drop)
            }
            Call::Merge => {
                let into = self.issue(Stage::New).await;
                let r = MergeIssueRequest { name: n, into, ..Default::default() };
                self.client.merge_issue(with_token(r, &token)).await.map(drop)
            }
            Call::Attach => {
                let r = AddIssueAttachmentRequest { parent: n, content: png(), request_id: String::new() };
                c.add_issue_attachment(with_token(r, &token)).await.map(drop)
            }
            Call::GetAttachment => {
                let r = AddIssueAttachmentRequest { parent: n, content: png(), request_id: String::new() };
                let reporter = self.tokens[1].clone();
                let added = c.add_issue_attachment(with_token(r, &reporter)).await.expect("attach").into_inner();
                c.get_issue_attachment(with_token(GetIssueAttachmentRequest { name: added.name }, &token))
                    .await
                    .map(drop)
            }
            Call::PublicNote | Call::InternalNote => {
                let visibility =
                    if matches!(call, Call::PublicNote) { Visibility::Public } else { Visibility::Internal };
                let update = IssueUpdate { visibility: visibility as i32, text: "说明".into(), ..Default::default() };
                let r = CreateIssueUpdateRequest { parent: n, issue_update: Some(update), request_id: String::new() };
                c.create_issue_update(with_token(r, &token)).await.map(drop)
            }
        };
        match result {
            Ok(()) => Code::Ok,
            Err(status) => status.code(),
        }
    }
}

/// A street with community `east` of grids g1 and g2 side by side.
async fn street(channel: Channel, admin: &str) {
    use civic_proto::grid::*;
    let mut grids = GridServiceClient::new(channel);
    let community = CreateCommunityRequest {
        parent: STREET.into(),
        community: Some(Community { display_name: "东苑社区".into(), ..Default::default() }),
        community_id: "east".into(),
        request_id: String::new(),
    };
    grids.create_community(with_token(community, admin)).await.expect("community");
    for (id, west) in [("g1", 106.0), ("g2", 106.1)] {
        let boundary = format!(
            r#"{{"type":"Polygon","coordinates":[[[{west},35.0],[{e},35.0],[{e},35.1],[{west},35.1],[{west},35.0]]]}}"#,
            e = west + 0.1
        );
        let grid = CreateGridRequest {
            parent: format!("{STREET}/communities/east"),
            grid: Some(Grid { display_name: id.into(), boundary, ..Default::default() }),
            grid_id: id.into(),
            request_id: String::new(),
        };
        grids.create_grid(with_token(grid, admin)).await.expect("grid");
    }
}

#[tokio::test]
async fn every_issue_rpc_answers_each_caller_as_the_rules_say() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let mut world = World { client: IssueServiceClient::new(app.channel.clone()), tokens: tokens() };
    street(app.channel.clone(), world.admin()).await;
    // anon, reporter, res-b, gw-1, gw-2, cadre-e, cadre-w, police, judicial, other street,
    // admin, platform, other service
    let staff = [UNAUTH, NO, NO, OK, NO, OK, NO, NO, NO, NO, OK, NO, NO];
    let readers = [UNAUTH, OK, NO, OK, NO, OK, NO, NO, NO, NO, OK, NO, NO];
    let police = [UNAUTH, NO, NO, NO, NO, NO, NO, OK, NO, NO, NO, NO, NO];
    let cadres = [UNAUTH, NO, NO, NO, NO, OK, NO, NO, NO, NO, OK, NO, NO];
    let reporter = [UNAUTH, OK, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO];
    let public_note = [UNAUTH, OK, NO, OK, NO, OK, NO, NO, NO, NO, OK, NO, NO];
    let table: [(Call, [Code; 13]); 22] = [
        (Call::Get, readers),
        (Call::ListUpdates, readers),
        (Call::Watch, readers),
        (Call::Duplicates, staff),
        (Call::Acknowledge, staff),
        (Call::Triage, staff),
        (Call::Assign, staff),
        (Call::PauseWaiting, staff),
        (Call::PauseExtension, cadres),
        (Call::Resume, staff),
        (Call::Refer, staff),
        (Call::AcceptReferral, police),
        (Call::RejectReferral, police),
        (Call::StartReferral, police),
        (Call::CompleteReferral, police),
        (Call::Resolve, staff),
        (Call::Feedback, reporter),
        (Call::Merge, staff),
        (Call::PublicNote, public_note),
        (Call::InternalNote, staff),
        (Call::Attach, public_note),
        (Call::GetAttachment, readers),
    ];
    for (call, expected) in table {
        for (caller, want) in expected.iter().enumerate() {
            let got = world.code(call, caller).await;
            assert_eq!(got, *want, "{call:?} by {}", CALLERS[caller]);
        }
    }

    // An issue that does not exist is refused alike to whoever may not reach it; the street's
    // admin learns it is missing.
    let missing = format!("{STREET}/issues/nope");
    for (caller, want) in [(2, NO), (3, NO), (7, NO), (9, NO), (11, NO), (10, Code::NotFound)] {
        let token = world.tokens[caller].clone();
        let got = world.client.get_issue(with_token(GetIssueRequest { name: missing.clone() }, &token)).await;
        assert_eq!(
            got.map(drop).map_err(|s| s.code()).err().unwrap_or(OK),
            want,
            "a missing issue, {}",
            CALLERS[caller]
        );
    }

    // Lists are scoped: each caller sees only what they reach.
    let reporter_issue = world.issue(Stage::New).await;
    for (caller, sees) in [(1, true), (2, false), (3, true), (4, false), (5, true), (6, false), (7, false), (10, true)]
    {
        let token = world.tokens[caller].clone();
        let request = ListIssuesRequest { parent: STREET.into(), page_size: 200, ..Default::default() };
        let listed = world.client.list_issues(with_token(request, &token)).await.expect("list").into_inner().issues;
        assert_eq!(listed.iter().any(|i| i.name == reporter_issue), sees, "ListIssues by {}", CALLERS[caller]);
    }
    for caller in [0, 9, 12] {
        let token = world.tokens[caller].clone();
        let request = ListIssuesRequest { parent: STREET.into(), ..Default::default() };
        let got = world.client.list_issues(with_token(request, &token)).await.map(drop).map_err(|s| s.code());
        assert_eq!(got.err(), Some(if caller == 0 { UNAUTH } else { NO }), "ListIssues by {}", CALLERS[caller]);
    }

    // Reports: without a token the public board (a public category: there, without its words);
    // with one, what the caller reaches, in full; strangers refused.
    let public_note =
        IssueUpdate { visibility: Visibility::Public as i32, text: "已联系物业".into(), ..Default::default() };
    let note = CreateIssueUpdateRequest {
        parent: reporter_issue.clone(),
        issue_update: Some(public_note),
        request_id: String::new(),
    };
    world.client.create_issue_update(with_token(note, world.admin())).await.expect("a public note");
    for (caller, sees) in [
        (0, Some(false)),
        (1, Some(true)),
        (2, None),
        (3, Some(true)),
        (4, None),
        (5, Some(true)),
        (6, None),
        (7, None),
        (8, None),
        (10, Some(true)),
        (11, None),
    ] {
        let token = world.tokens[caller].clone();
        let request = ListIssueReportsRequest {
            parent: STREET.into(),
            issues: vec![reporter_issue.clone()],
            ..Default::default()
        };
        let listed = world
            .client
            .list_issue_reports(with_token(request, &token))
            .await
            .expect("reports")
            .into_inner()
            .issue_reports;
        let who = CALLERS[caller];
        match sees {
            None => assert!(listed.is_empty(), "ListIssueReports by {who}: {listed:?}"),
            Some(full) => {
                let report = listed.first().unwrap_or_else(|| panic!("ListIssueReports by {who}: not listed"));
                assert_eq!(report.full, full, "{who}");
                assert_eq!(report.description.is_empty(), !full, "{who}: the words only in full");
                assert_eq!(report.status_notes == "已联系物业", full, "{who}: {}", report.status_notes);
                let place = report.location.expect("a place");
                assert!((place.latitude - 35.05).abs() < 1e-9, "{who}: {place:?}");
            }
        }
    }
    for (caller, want) in [(9, NO), (12, NO)] {
        let token = world.tokens[caller].clone();
        let request = ListIssueReportsRequest { parent: STREET.into(), ..Default::default() };
        let got = world.client.list_issue_reports(with_token(request, &token)).await.map(drop).map_err(|s| s.code());
        assert_eq!(got.err(), Some(want), "ListIssueReports by {}", CALLERS[caller]);
    }
    for (caller, token) in world.tokens.clone().iter().enumerate() {
        let request = ListIssueCategoriesRequest { parent: STREET.into() };
        let got = world.client.list_issue_categories(with_token(request, token)).await;
        let categories = got.unwrap_or_else(|s| panic!("ListIssueCategories by {}: {s}", CALLERS[caller]));
        assert!(categories.into_inner().issue_categories.iter().any(|c| c.category == "facilities" && c.public));
    }

    // Creating: residents from the app, staff for a source, officers and strangers not at all.
    for (caller, source, want) in [
        (0, Source::App, UNAUTH),
        (1, Source::App, OK),
        (3, Source::WalkIn, OK),
        (5, Source::Hotline, OK),
        (7, Source::Hotline, NO),
        (9, Source::Hotline, NO),
        (10, Source::Meeting, OK),
        (12, Source::CityPlatform, NO),
    ] {
        let issue = Issue {
            source: source as i32,
            category: "environment".into(),
            description: "垃圾清运不及时".into(),
            ..Default::default()
        };
        let token = world.tokens[caller].clone();
        let request = CreateIssueRequest { parent: STREET.into(), issue: Some(issue), request_id: String::new() };
        let got = world.client.create_issue(with_token(request, &token)).await.map(drop).map_err(|s| s.code());
        assert_eq!(got.err().unwrap_or(OK), want, "CreateIssue by {}", CALLERS[caller]);
    }

    app.stop().await;
}

/// The meetings' part of the matrix: the street's staff read them, a community's cadres (and
/// the street's admins) call, change, record and cancel them.
#[tokio::test]
async fn every_meeting_rpc_answers_each_caller_as_the_rules_say() {
    use civic_proto::issues::decision::Action as DecisionAction;
    use civic_proto::issues::meeting::Kind;
    use civic_proto::issues::meeting_service_client::MeetingServiceClient;
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let tokens = tokens();
    let admin = tokens[10].clone();
    street(app.channel.clone(), &admin).await;
    let mut meetings = MeetingServiceClient::new(app.channel.clone());
    let draft = Meeting {
        kind: Kind::JointWorking as i32,
        community: format!("{STREET}/communities/east"),
        title: "联席会".into(),
        start_time: Some(pbjson_types::Timestamp { seconds: 1_900_000_000, nanos: 0 }),
        ..Default::default()
    };
    let create = |meeting: Meeting| CreateMeetingRequest {
        parent: STREET.into(),
        meeting: Some(meeting),
        request_id: String::new(),
    };
    let fresh = async || -> String {
        let mut client = MeetingServiceClient::new(app.channel.clone());
        client.create_meeting(with_token(create(draft.clone()), &admin)).await.expect("meeting").into_inner().name
    };
    // anon, reporter, res-b, gw-1, gw-2, cadre-e, cadre-w, police, judicial, other street,
    // admin, platform, other service
    let readers = [UNAUTH, NO, NO, OK, OK, OK, NO, OK, OK, NO, OK, NO, NO];
    let listers = [UNAUTH, NO, NO, OK, OK, OK, OK, OK, OK, NO, OK, NO, NO];
    let writers = [UNAUTH, NO, NO, NO, NO, OK, NO, NO, NO, NO, OK, NO, NO];
    let code = |r: Result<(), tonic::Status>| r.err().map_or(OK, |s| s.code());
    for (caller, token) in tokens.iter().enumerate() {
        let who = CALLERS[caller];
        let name = fresh().await;
        let got =
            code(meetings.get_meeting(with_token(GetMeetingRequest { name: name.clone() }, token)).await.map(drop));
        assert_eq!(got, readers[caller], "GetMeeting by {who}");
        let list = ListMeetingsRequest { parent: STREET.into(), ..Default::default() };
        let got = code(meetings.list_meetings(with_token(list, token)).await.map(drop));
        assert_eq!(got, listers[caller], "ListMeetings by {who}");
        let got = code(meetings.create_meeting(with_token(create(draft.clone()), token)).await.map(drop));
        assert_eq!(got, writers[caller], "CreateMeeting by {who}");
        let update = UpdateMeetingRequest {
            meeting: Some(Meeting { name: name.clone(), place: "会议室".into(), ..Default::default() }),
            update_mask: Some(pbjson_types::FieldMask { paths: vec!["place".into()] }),
            request_id: String::new(),
        };
        let got = code(meetings.update_meeting(with_token(update, token)).await.map(drop));
        assert_eq!(got, writers[caller], "UpdateMeeting by {who}");
        let record = RecordMeetingMinutesRequest {
            name: name.clone(),
            minutes: "纪要".into(),
            decisions: vec![Decision {
                text: "记录".into(),
                action: DecisionAction::Record as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let got = code(meetings.record_meeting_minutes(with_token(record, token)).await.map(drop));
        assert_eq!(got, writers[caller], "RecordMeetingMinutes by {who}");
        let cancel = CancelMeetingRequest { name: fresh().await, reason: "改期".into(), ..Default::default() };
        let got = code(meetings.cancel_meeting(with_token(cancel, token)).await.map(drop));
        assert_eq!(got, writers[caller], "CancelMeeting by {who}");
    }
    app.stop().await;
}
