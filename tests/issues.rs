//! The issues service end to end: intake placed in its grid through the grid service, the
//! three lists, the clock paused and resumed, referral with its closed loop, the resident's
//! public timeline and feedback, work orders of the city platform, bad input, who may do what,
//! visits' problems opened as issues exactly once (and linked back) however often the events
//! come, and overdue issues escalating.

mod common;

use std::time::Duration;

use chrono::Utc;
use civic::{Options, Target};
use civic_kit::auth::{Principal, Role};
use civic_proto::grid::visit_service_client::VisitServiceClient;
use civic_proto::issues::issue::{EscalationLevel, Placement, Source, State, Triage};
use civic_proto::issues::issue_service_client::IssueServiceClient;
use civic_proto::issues::issue_update::Visibility;
use civic_proto::issues::*;
use common::{DEV_KEY, Store, spawn_on, spawn_with, test_config, token, with_token};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";

fn admin() -> String {
    token("admin", &[Role::Admin], "zhongjie")
}

/// A token of `subject` with `roles`, scoped to `grids` of the street.
fn token_for_grids(subject: &str, roles: &[Role], grids: &[&str]) -> String {
    let settings = civic_kit::auth::AuthSettings { dev_key: Some(DEV_KEY.into()), ..Default::default() };
    let principal = Principal {
        subject: subject.into(),
        roles: roles.to_vec(),
        street: Some("zhongjie".into()),
        community: None,
        grids: grids.iter().map(|g| (*g).to_owned()).collect(),
    };
    civic_kit::auth::mint_dev_token(&settings, &principal, Duration::from_secs(3600)).expect("mint")
}

fn new_issue(category: &str, longitude: f64) -> Issue {
    Issue {
        source: Source::App as i32,
        category: category.into(),
        title: "路灯不亮".into(),
        description: "小区东侧路灯不亮两周了".into(),
        location: Some(Point { latitude: 35.05, longitude }),
        ..Default::default()
    }
}

async fn create(client: &mut IssueServiceClient<Channel>, issue: Issue, token: &str) -> Result<Issue, tonic::Status> {
    let request = CreateIssueRequest { parent: STREET.into(), issue: Some(issue), request_id: String::new() };
    client.create_issue(with_token(request, token)).await.map(|r| r.into_inner())
}

fn state(issue: &Issue) -> State {
    issue.state()
}

#[tokio::test]
async fn an_issue_goes_from_intake_through_referral_to_the_residents_feedback() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    common::east_street(app.channel.clone()).await;
    let mut issues = IssueServiceClient::new(app.channel.clone());
    let resident = token("res-1", &[Role::Resident], "zhongjie");
    let worker = token_for_grids("gw-1", &[Role::GridWorker], &["g1"]);
    let other_worker = token_for_grids("gw-2", &[Role::GridWorker], &["g2"]);
    let officer = token("po-1", &[Role::DepartmentOfficer], "zhongjie");
    let judicial = token("ju-1", &[Role::DepartmentOfficer], "zhongjie");

    // Taken from the app: placed in g1, clocked, retried once.
    let request = CreateIssueRequest {
        parent: STREET.into(),
        issue: Some(new_issue("facilities", 106.05)),
        request_id: "req-1".into(),
    };
    let taken = issues.create_issue(with_token(request.clone(), &resident)).await.expect("create").into_inner();
    assert_eq!(state(&taken), State::New);
    assert_eq!(taken.placement(), Placement::Located);
    assert_eq!(taken.grid, format!("{STREET}/communities/east/grids/g1"));
    assert_eq!(taken.reporter, "users/res-1");
    let clock = taken.clock.expect("clock");
    assert!(clock.response_due_time.is_some() && clock.resolution_due_time.is_some());
    let again = issues.create_issue(with_token(request, &resident)).await.expect("retry").into_inner();
    assert_eq!(again.name, taken.name, "a retry returns the first answer");

    // Bad input names the field and writes nothing.
    let mut blank = new_issue("environment", 106.05);
    blank.description = "  ".into();
    let mut far = new_issue("environment", 106.05);
    far.location = Some(Point { latitude: 35.05, longitude: 190.0 });
    for (bad, field) in [
        (new_issue("Not A Category", 106.05), "issue.category"),
        (blank, "issue.description"),
        (far, "issue.location.longitude"),
    ] {
        let status = create(&mut issues, bad, &resident).await.expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{field}: {}", status.message());
    }
    let listed = issues
        .list_issues(with_token(ListIssuesRequest { parent: STREET.into(), ..Default::default() }, &admin()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.issues.len(), 1, "the refused issue was not written");

    // Who sees it: its grid's worker yes, another grid's worker and another resident no.
    let name = taken.name.clone();
    let get = |token: &str| with_token(GetIssueRequest { name: name.clone() }, token);
    issues.get_issue(get(&worker)).await.expect("the grid's worker sees it");
    for outsider in [other_worker.clone(), token("res-2", &[Role::Resident], "zhongjie"), officer.clone()] {
        let status = issues.get_issue(get(&outsider)).await.expect_err("out of reach");
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let missing = GetIssueRequest { name: format!("{STREET}/issues/nope") };
    let status = issues.get_issue(with_token(missing.clone(), &other_worker)).await.expect_err("missing");
    assert_eq!(status.code(), Code::PermissionDenied, "existence is not revealed");

    // Triage comes after acknowledging.
    let triage = |triage: Triage, etag: &str| TriageIssueRequest {
        name: name.clone(),
        triage: triage as i32,
        etag: etag.into(),
        ..Default::default()
    };
    let status = issues.triage_issue(with_token(triage(Triage::FixByDeadline, ""), &worker)).await.expect_err("new");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = issues
        .acknowledge_issue(with_token(
            AcknowledgeIssueRequest { name: name.clone(), ..Default::default() },
            &other_worker,
        ))
        .await
        .expect_err("another grid's worker");
    assert_eq!(status.code(), Code::PermissionDenied);
    let acked = issues
        .acknowledge_issue(with_token(
            AcknowledgeIssueRequest {
                name: name.clone(), note: "已收到，明天上门查看".into(), ..Default::default()
            },
            &worker,
        ))
        .await
        .expect("acknowledge")
        .into_inner();
    assert!(acked.clock.as_ref().expect("clock").acknowledge_time.is_some());
    let status = issues.triage_issue(with_token(triage(Triage::FixByDeadline, &taken.etag), &worker)).await;
    assert_eq!(status.expect_err("stale etag").code(), Code::Aborted);
    let in_progress =
        issues.triage_issue(with_token(triage(Triage::FixByDeadline, &acked.etag), &worker)).await.expect("triage");
    assert_eq!(state(&in_progress.into_inner()), State::InProgress);

    // The clock pauses while waiting for the resident; only a cadre approves an extension.
    let pause = |reason: PauseReason| PauseIssueClockRequest {
        name: name.clone(),
        reason: reason as i32,
        note: "居民出差，下周回来".into(),
        ..Default::default()
    };
    let status = issues.pause_issue_clock(with_token(pause(PauseReason::ExtensionApproved), &worker)).await;
    assert_eq!(status.expect_err("a worker approves no extension").code(), Code::PermissionDenied);
    let paused = issues.pause_issue_clock(with_token(pause(PauseReason::WaitingForResident), &worker)).await;
    assert!(paused.expect("pause").into_inner().clock.expect("clock").paused);
    let resume = ResumeIssueClockRequest { name: name.clone(), ..Default::default() };
    let resumed = issues.resume_issue_clock(with_token(resume, &worker)).await.expect("resume").into_inner();
    assert!(!resumed.clock.expect("clock").paused);

    // Referred to the police: their officer answers, the judicial office's cannot.
    let refer = ReferIssueRequest {
        name: name.clone(),
        department: "police".into(),
        reason: "涉及私拉电线安全隐患".into(),
        ..Default::default()
    };
    let referred = issues.refer_issue(with_token(refer.clone(), &worker)).await.expect("refer").into_inner();
    assert_eq!(state(&referred), State::Referred);
    let mut unknown = refer;
    unknown.department = "fire".into();
    let status = issues.refer_issue(with_token(unknown, &worker)).await.expect_err("unknown department");
    assert_eq!(status.code(), Code::InvalidArgument);
    let accept = AcceptReferralRequest { name: name.clone(), ..Default::default() };
    let status = issues.accept_referral(with_token(accept.clone(), &judicial)).await.expect_err("another department");
    assert_eq!(status.code(), Code::PermissionDenied);
    issues.get_issue(get(&officer)).await.expect("the department sees what is referred to it");
    issues.accept_referral(with_token(accept, &officer)).await.expect("accept");
    let complete = CompleteReferralRequest {
        name: name.clone(),
        outcome: "已拆除私拉电线，并约谈住户".into(),
        ..Default::default()
    };
    let resolved = issues.complete_referral(with_token(complete, &officer)).await.expect("complete").into_inner();
    assert_eq!(state(&resolved), State::Resolved);

    // The resident sees the public timeline only, with the outcome; staff see everything.
    let timeline = |token: &str| {
        let mut client = issues.clone();
        let request = with_token(ListIssueUpdatesRequest { parent: name.clone(), ..Default::default() }, token);
        async move { client.list_issue_updates(request).await.expect("timeline").into_inner().issue_updates }
    };
    let public = timeline(&resident).await;
    let staff = timeline(&worker).await;
    assert!(public.iter().all(|u| u.visibility() == Visibility::Public));
    assert!(public.iter().any(|u| u.action == "referral_completed" && u.text.contains("私拉电线")));
    assert!(staff.iter().any(|u| u.action == "paused"), "the pause is on the internal timeline");
    assert!(!public.iter().any(|u| u.action == "paused"));
    let seen = issues.get_issue(get(&resident)).await.expect("the reporter sees it").into_inner();
    assert!(seen.referrals.iter().all(|r| r.reason.is_empty()), "referral reasons are internal");

    // Not fixed reopens it; fixed closes it. Only the reporter rates.
    let feedback = |fixed: bool| SubmitIssueFeedbackRequest {
        name: name.clone(),
        rating: if fixed { 5 } else { 2 },
        fixed,
        comment: String::new(),
        request_id: String::new(),
    };
    let status = issues.submit_issue_feedback(with_token(feedback(true), &worker)).await.expect_err("staff");
    assert_eq!(status.code(), Code::PermissionDenied);
    let reopened = issues.submit_issue_feedback(with_token(feedback(false), &resident)).await.expect("rate");
    assert_eq!(state(&reopened.into_inner()), State::Reopened);
    issues.triage_issue(with_token(triage(Triage::FixAtOnce, ""), &worker)).await.expect("again");
    let resolve =
        ResolveIssueRequest { name: name.clone(), resolution: "已更换灯泡".into(), ..Default::default() };
    issues.resolve_issue(with_token(resolve, &worker)).await.expect("resolve");
    let closed = issues.submit_issue_feedback(with_token(feedback(true), &resident)).await.expect("rate").into_inner();
    assert_eq!(state(&closed), State::Closed);
    assert_eq!(closed.feedback.expect("feedback").rating, 5);
    let status = issues.resolve_issue(with_token(
        ResolveIssueRequest { name: name.clone(), resolution: "again".into(), ..Default::default() },
        &worker,
    ));
    assert_eq!(status.await.expect_err("closed").code(), Code::FailedPrecondition);

    app.stop().await;
}

#[tokio::test]
async fn duplicates_are_suggested_and_merged_and_the_platform_files_its_work_orders_once() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    common::east_street(app.channel.clone()).await;
    let mut issues = IssueServiceClient::new(app.channel.clone());
    let first = create(&mut issues, new_issue("environment", 106.05), &token("res-1", &[Role::Resident], "zhongjie"))
        .await
        .expect("first");
    // 30 m away, same category: suggested; another category or 2 km away: not.
    let near = create(&mut issues, new_issue("environment", 106.0503), &token("res-2", &[Role::Resident], "zhongjie"))
        .await
        .expect("near");
    assert_eq!(near.possible_duplicates, vec![first.name.clone()]);
    let other = create(&mut issues, new_issue("safety", 106.0501), &admin()).await;
    assert_eq!(other.expect_err("staff file for a source").code(), Code::InvalidArgument, "admins name the source");
    let mut hotline = new_issue("safety", 106.0501);
    hotline.source = Source::Hotline as i32;
    let other = create(&mut issues, hotline, &admin()).await.expect("hotline");
    assert!(other.possible_duplicates.is_empty());

    let suggestions = issues
        .list_duplicate_suggestions(with_token(ListDuplicateSuggestionsRequest { name: first.name.clone() }, &admin()))
        .await
        .expect("suggestions")
        .into_inner()
        .suggestions;
    assert_eq!(suggestions.len(), 1);
    assert!((suggestions[0].distance_metres - 27.0).abs() < 5.0, "{}", suggestions[0].distance_metres);

    let merge = MergeIssueRequest { name: near.name.clone(), into: first.name.clone(), ..Default::default() };
    let merged = issues.merge_issue(with_token(merge, &admin())).await.expect("merge").into_inner();
    assert_eq!((state(&merged), merged.merged_into.as_str()), (State::Merged, first.name.as_str()));
    // The second reporter now follows the first issue, which counts both.
    let target = issues
        .get_issue(with_token(
            GetIssueRequest { name: first.name.clone() },
            &token("res-2", &[Role::Resident], "zhongjie"),
        ))
        .await
        .expect("the merged reporter follows it")
        .into_inner();
    assert_eq!(target.reporter_count, 2);

    // The city platform: its order id is the idempotency key; it reads only its own orders.
    let settings = civic_kit::auth::AuthSettings { dev_key: Some(DEV_KEY.into()), ..Default::default() };
    let platform =
        civic_kit::auth::mint_service_token(&settings, "city_platform", Duration::from_secs(600)).expect("mint");
    let order = Issue {
        source: Source::CityPlatform as i32,
        category: "environment".into(),
        description: "12345 工单：小区垃圾清运不及时".into(),
        location: Some(Point { latitude: 35.02, longitude: 106.15 }),
        external_id: "GD-2026-000123".into(),
        ..Default::default()
    };
    let filed = create(&mut issues, order.clone(), &platform).await.expect("work order");
    assert_eq!(filed.grid, format!("{STREET}/communities/east/grids/g2"));
    assert_eq!(filed.created_by, "services/city_platform");
    let again = create(&mut issues, order.clone(), &platform).await.expect("the same order again");
    assert_eq!(again.name, filed.name);
    let mut without_id = order;
    without_id.external_id.clear();
    let status = create(&mut issues, without_id, &platform).await.expect_err("no order id");
    assert!(status.message().contains("issue.external_id"));
    let listed = issues
        .list_issues(with_token(ListIssuesRequest { parent: STREET.into(), ..Default::default() }, &platform))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.issues.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), vec![filed.name.as_str()]);
    let status = issues.get_issue(with_token(GetIssueRequest { name: first.name.clone() }, &platform)).await;
    assert_eq!(status.expect_err("not its order").code(), Code::PermissionDenied);
    let stranger = civic_kit::auth::mint_service_token(&settings, "volunteer", Duration::from_secs(600)).expect("mint");
    let status = create(&mut issues, new_issue("environment", 106.05), &stranger).await;
    assert_eq!(status.expect_err("not a platform").code(), Code::PermissionDenied);

    app.stop().await;
}

/// Waits up to 20 s for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visit_with_two_problems_opens_two_issues_and_two_links_exactly_once() {
    use civic_proto::grid::{CreateVisitRequest, GetVisitRequest, Problem, Visit, visit::Kind};
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let household = common::east_street(app.channel.clone()).await;
    let worker = token_for_grids("gw-1", &[Role::GridWorker], &["g1"]);
    let mut visits = VisitServiceClient::new(app.channel.clone());
    let at = Utc::now() - chrono::Duration::minutes(30);
    let problem = |category: &str, words: &str| Problem {
        category: category.into(),
        description: words.into(),
        location: None,
        issue: String::new(),
    };
    let visit = visits
        .create_visit(with_token(
            CreateVisitRequest {
                parent: STREET.into(),
                visit: Some(Visit {
                    household: household.clone(),
                    kind: Kind::DoorToDoor as i32,
                    visit_time: Some(pbjson_types::Timestamp { seconds: at.timestamp(), nanos: 0 }),
                    problems: vec![problem("environment", "楼道堆放杂物"), problem("welfare", "咨询高龄津贴")],
                    ..Default::default()
                }),
                visit_id: "v-two".into(),
                request_id: String::new(),
            },
            &worker,
        ))
        .await
        .expect("visit")
        .into_inner();

    let mut issues = IssueServiceClient::new(app.channel.clone());
    let from_visits = || {
        let mut client = issues.clone();
        async move {
            let request =
                ListIssuesRequest { parent: STREET.into(), filter: "source = VISIT".into(), ..Default::default() };
            client.list_issues(with_token(request, &admin())).await.expect("list").into_inner().issues
        }
    };
    let linked = || {
        let mut client = visits.clone();
        let name = visit.name.clone();
        let token = worker.clone();
        async move {
            let visit =
                client.get_visit(with_token(GetVisitRequest { name }, &token)).await.expect("visit").into_inner();
            visit.problems.iter().filter(|p| !p.issue.is_empty()).map(|p| p.issue.clone()).collect::<Vec<_>>()
        }
    };
    eventually("two issues with the problems' words, and two links", || async {
        let opened = from_visits().await;
        opened.len() == 2 && opened.iter().all(|i| !i.description.is_empty()) && linked().await.len() == 2
    })
    .await;
    let opened = from_visits().await;
    let mut categories: Vec<&str> = opened.iter().map(|i| i.category.as_str()).collect();
    categories.sort_unstable();
    assert_eq!(categories, ["environment", "welfare"]);
    assert!(opened.iter().all(|i| i.visit == visit.name && i.grid.ends_with("/grids/g1")));
    assert!(opened.iter().any(|i| i.description == "咨询高龄津贴"));
    let mut links = linked().await;
    links.sort();
    let mut names: Vec<String> = opened.iter().map(|i| i.name.clone()).collect();
    names.sort();
    assert_eq!(links, names, "each problem links to its own issue");

    // Every event delivered again, with the same ids: nothing more is opened or linked.
    let config = test_config(&store);
    for (service, topic) in [("grid", "grid.visit.recorded"), ("issues", "issues.issue.created")] {
        let db = civic_kit::db::Db::connect(&config.database_url_for(service), service, 2).await.expect("db");
        sqlx::query("update civic_outbox set published_at = null where topic = $1")
            .bind(topic)
            .execute(db.writer())
            .await
            .expect("send again");
        let pending = || {
            let db = db.clone();
            async move {
                let (n,): (i64,) = sqlx::query_as("select count(*) from civic_outbox where published_at is null")
                    .fetch_one(db.reader())
                    .await
                    .expect("count");
                n == 0
            }
        };
        eventually("the events were delivered again", pending).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(from_visits().await.len(), 2, "still two issues");
    assert_eq!(linked().await.len(), 2, "still two links");
    let _ = issues
        .list_issues(with_token(ListIssuesRequest { parent: STREET.into(), ..Default::default() }, &admin()))
        .await;

    app.stop().await;
}

#[tokio::test]
async fn overdue_issues_escalate_and_are_listed_per_level() {
    let store = Store::fresh().await;
    let mut config = test_config(&store);
    // Nothing may wait: every issue is overdue as soon as it is taken.
    config.set(
        "issues.limits",
        [std::collections::BTreeMap::from([("source", "*"), ("category", "*"), ("respond", "0h"), ("resolve", "0h")])],
    );
    config.set("issues.escalate_to_street_after", "30d");
    let app = spawn_with(config, Target::All, Options::default()).await;
    common::east_street(app.channel.clone()).await;
    let mut issues = IssueServiceClient::new(app.channel.clone());
    let late = create(&mut issues, new_issue("environment", 106.05), &token("res-1", &[Role::Resident], "zhongjie"))
        .await
        .expect("create");
    let lister = issues.clone();
    let list = |filter: &str| {
        let mut client = lister.clone();
        let request = ListIssuesRequest { parent: STREET.into(), filter: filter.into(), ..Default::default() };
        async move { client.list_issues(with_token(request, &admin())).await.expect("list").into_inner().issues }
    };
    eventually("the issue escalates to the community", || async {
        list("escalation_level = COMMUNITY").await.iter().any(|i| i.name == late.name)
    })
    .await;
    assert!(list("escalation_level = STREET").await.is_empty());
    assert_eq!(list("overdue = true").await.len(), 1);
    let escalated = list("escalation_level = COMMUNITY").await.remove(0);
    assert_eq!(escalated.escalation_level(), EscalationLevel::Community);
    // A paused clock keeps an issue off the overdue list.
    let worker = token_for_grids("gw-1", &[Role::GridWorker], &["g1"]);
    let ack = AcknowledgeIssueRequest { name: late.name.clone(), ..Default::default() };
    issues.acknowledge_issue(with_token(ack, &worker)).await.expect("ack");
    let pause = PauseIssueClockRequest {
        name: late.name.clone(),
        reason: PauseReason::WaitingForResident as i32,
        ..Default::default()
    };
    issues.pause_issue_clock(with_token(pause, &worker)).await.expect("pause");
    assert!(list("overdue = true").await.is_empty());

    app.stop().await;
}

#[tokio::test]
async fn a_meetings_decisions_open_issues_and_add_to_them() {
    use civic_proto::issues::decision::Action as DecisionAction;
    use civic_proto::issues::meeting::{Kind, State as MeetingState};
    use civic_proto::issues::meeting_service_client::MeetingServiceClient;
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    common::east_street(app.channel.clone()).await;
    let mut issues = IssueServiceClient::new(app.channel.clone());
    let mut meetings = MeetingServiceClient::new(app.channel.clone());
    let resident = token("res-1", &[Role::Resident], "zhongjie");
    let cadre = common::token_in("cadre-e", &[Role::Cadre], "zhongjie", "east");
    let other_cadre = common::token_in("cadre-w", &[Role::Cadre], "zhongjie", "west");
    let raised = create(&mut issues, new_issue("environment", 106.05), &resident).await.expect("issue");

    let start = Utc::now() + chrono::Duration::days(2);
    let meeting = Meeting {
        kind: Kind::Opinion as i32,
        community: format!("{STREET}/communities/east"),
        title: "东苑社区社情民意建言会".into(),
        start_time: Some(pbjson_types::Timestamp { seconds: start.timestamp(), nanos: 0 }),
        place: "社区活动室".into(),
        attendees: vec![
            Attendee { display_name: "王大爷".into(), represents: "3号楼居民".into(), ..Default::default() },
            Attendee {
                display_name: "物业李经理".into(), represents: "物业公司".into(), ..Default::default()
            },
        ],
        agenda: vec![AgendaItem { title: "楼道杂物清理".into(), issue: raised.name.clone() }],
        ..Default::default()
    };
    let request =
        CreateMeetingRequest { parent: STREET.into(), meeting: Some(meeting.clone()), request_id: String::new() };
    let status =
        meetings.create_meeting(with_token(request.clone(), &other_cadre)).await.expect_err("another community");
    assert_eq!(status.code(), Code::PermissionDenied);
    let called = meetings.create_meeting(with_token(request, &cadre)).await.expect("called").into_inner();
    assert_eq!(called.state(), MeetingState::Scheduled);
    let status = meetings.get_meeting(with_token(GetMeetingRequest { name: called.name.clone() }, &resident)).await;
    assert_eq!(status.expect_err("residents do not read minutes").code(), Code::PermissionDenied);
    let status = meetings.get_meeting(with_token(GetMeetingRequest { name: called.name.clone() }, &other_cadre)).await;
    assert_eq!(status.expect_err("another community's cadre").code(), Code::PermissionDenied);

    let decision = |action: DecisionAction, text: &str| Decision {
        text: text.into(),
        action: action as i32,
        ..Default::default()
    };
    let mut open = decision(DecisionAction::CreateIssue, "3号楼南侧增设电动车充电桩");
    open.category = "safety".into();
    open.location = Some(Point { latitude: 35.05, longitude: 106.15 });
    let mut update = decision(DecisionAction::UpdateIssue, "物业承诺本周五前清理楼道杂物");
    update.issue = raised.name.clone();
    update.agenda_item = 1;
    let mut bad = decision(DecisionAction::CreateIssue, "没有类别");
    bad.agenda_item = 2;
    let record = |decisions: Vec<Decision>| RecordMeetingMinutesRequest {
        name: called.name.clone(),
        minutes: "与会居民反映楼道杂物和充电难问题，物业现场答复。".into(),
        present: vec!["王大爷".into()],
        decisions,
        etag: String::new(),
        request_id: String::new(),
    };
    let status = meetings.record_meeting_minutes(with_token(record(vec![bad]), &cadre)).await.expect_err("bad");
    assert_eq!(status.code(), Code::InvalidArgument);
    let held = meetings
        .record_meeting_minutes(with_token(
            record(vec![open, update, decision(DecisionAction::Record, "下次会议在一月召开")]),
            &cadre,
        ))
        .await
        .expect("held")
        .into_inner();
    assert_eq!(held.state(), MeetingState::Held);
    assert_eq!(held.attendees.iter().filter(|a| a.present).count(), 1);
    let opened = &held.decisions[0].issue;
    let new_issue = issues.get_issue(with_token(GetIssueRequest { name: opened.clone() }, &cadre)).await;
    let new_issue = new_issue.expect("the decision's issue").into_inner();
    assert_eq!(
        (new_issue.source(), new_issue.grid.as_str()),
        (Source::Meeting, format!("{STREET}/communities/east/grids/g2").as_str())
    );
    // The resident's issue carries the decision on its public timeline.
    let timeline = issues
        .list_issue_updates(with_token(
            ListIssueUpdatesRequest { parent: raised.name.clone(), ..Default::default() },
            &resident,
        ))
        .await
        .expect("timeline")
        .into_inner()
        .issue_updates;
    assert!(timeline.iter().any(|u| u.text == "物业承诺本周五前清理楼道杂物"));
    let again = meetings.record_meeting_minutes(with_token(record(Vec::new()), &cadre)).await;
    assert_eq!(again.expect_err("held once").code(), Code::FailedPrecondition);
    let listed = meetings
        .list_meetings(with_token(
            ListMeetingsRequest { parent: STREET.into(), filter: "state = HELD".into(), ..Default::default() },
            &cadre,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.meetings.len(), 1);

    app.stop().await;
}

/// A JPEG's skeleton with an EXIF block that holds a position.
fn photo(tag: u8) -> Vec<u8> {
    let segment = |marker: u8, payload: &[u8]| {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    };
    let mut out = vec![0xFF, 0xD8];
    out.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    out.extend(segment(0xE1, b"Exif\0\0GPSLatitude 35.05N GPSLongitude 106.05E"));
    out.extend(segment(0xDB, &[tag; 65]));
    out.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
    out.extend_from_slice(&[0x12, 0x34, 0x56, 0xFF, 0xD9]);
    out
}

#[tokio::test]
async fn photos_are_checked_stripped_of_their_location_and_stored_once() {
    use base64::Engine as _;
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    common::east_street(app.channel.clone()).await;
    let mut issues = IssueServiceClient::new(app.channel.clone());
    let resident = token("res-1", &[Role::Resident], "zhongjie");
    let stranger = token("res-2", &[Role::Resident], "zhongjie");
    let worker = token_for_grids("gw-1", &[Role::GridWorker], &["g1"]);
    let first = create(&mut issues, new_issue("environment", 106.05), &resident).await.expect("first");
    let second = create(&mut issues, new_issue("facilities", 106.07), &resident).await.expect("second");
    let attach = |parent: &str, content: Vec<u8>| AddIssueAttachmentRequest {
        parent: parent.into(),
        content,
        request_id: String::new(),
    };

    let added = issues.add_issue_attachment(with_token(attach(&first.name, photo(7)), &resident)).await;
    let added = added.expect("attached").into_inner();
    assert_eq!(added.content_type, "image/jpeg");
    let got = issues
        .get_issue_attachment(with_token(GetIssueAttachmentRequest { name: added.name.clone() }, &worker))
        .await
        .expect("the grid's worker reads it")
        .into_inner();
    assert!(!got.content.windows(11).any(|w| w == b"GPSLatitude"), "the position is gone");
    assert!(got.content.ends_with(&[0x12, 0x34, 0x56, 0xFF, 0xD9]), "the image is kept");
    assert_eq!(got.content.len() as i64, added.size_bytes);

    // The same photo on another issue, by staff, through HTTP/JSON: stored once.
    let body = serde_json::json!({"content": base64::engine::general_purpose::STANDARD.encode(photo(7))}).to_string();
    let (status, answer) =
        common::http(app.http_addr, "POST", &format!("/v1/{}/attachments", second.name), &worker, Some(&body)).await;
    assert_eq!(status, 200, "{answer}");
    let again: Attachment = serde_json::from_str(&answer).expect("an attachment");
    assert_eq!(again.sha256, added.sha256);
    let db =
        civic_kit::db::Db::connect(&test_config(&store).database_url_for("issues"), "issues", 1).await.expect("db");
    let (stored,): (i64,) =
        sqlx::query_as("select count(*) from attachments").fetch_one(db.reader()).await.expect("count");
    let (links,): (i64,) =
        sqlx::query_as("select count(*) from issue_attachments").fetch_one(db.reader()).await.expect("count");
    db.close().await;
    assert_eq!((stored, links), (1, 2));
    let issue = issues.get_issue(with_token(GetIssueRequest { name: first.name.clone() }, &resident)).await;
    assert_eq!(issue.expect("issue").into_inner().attachments.len(), 1);

    // Not an image, too large, someone else's issue: refused, nothing written.
    let status = issues
        .add_issue_attachment(with_token(attach(&first.name, b"%PDF-1.7 not a photo".to_vec()), &resident))
        .await
        .expect_err("a PDF");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("content"), "{}", status.message());
    let mut huge = photo(8);
    huge.resize(1_200_000, 0);
    let status = issues.add_issue_attachment(with_token(attach(&first.name, huge), &resident)).await;
    assert_eq!(status.expect_err("too large").code(), Code::InvalidArgument);
    let status = issues.add_issue_attachment(with_token(attach(&first.name, photo(9)), &stranger)).await;
    assert_eq!(status.expect_err("not theirs").code(), Code::PermissionDenied);
    let status = issues
        .get_issue_attachment(with_token(GetIssueAttachmentRequest { name: added.name.clone() }, &stranger))
        .await;
    assert_eq!(status.expect_err("not theirs").code(), Code::PermissionDenied);
    let issue = issues.get_issue(with_token(GetIssueRequest { name: first.name.clone() }, &resident)).await;
    assert_eq!(issue.expect("issue").into_inner().attachments.len(), 1, "nothing more was attached");

    app.stop().await;
}

#[tokio::test]
async fn the_resident_watches_their_issue_change() {
    use civic_proto::issues::watch_issue_response::ChangeType;
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    common::east_street(app.channel.clone()).await;
    let mut issues = IssueServiceClient::new(app.channel.clone());
    let resident = token("res-1", &[Role::Resident], "zhongjie");
    let filed = create(&mut issues, new_issue("facilities", 106.05), &resident).await.expect("filed");
    let mut stream = issues
        .watch_issue(with_token(WatchIssueRequest { name: filed.name.clone() }, &resident))
        .await
        .expect("watch")
        .into_inner();
    let next = async |stream: &mut tonic::Streaming<WatchIssueResponse>| {
        tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("a message")
    };
    let first = next(&mut stream).await;
    assert_eq!(first.change_type(), ChangeType::Existing);
    let status = first.status.expect("status");
    assert_eq!((status.state(), status.public_updates), (State::New, 1));
    assert_eq!(next(&mut stream).await.change_type(), ChangeType::Current);

    let admin = admin();
    let ack = AcknowledgeIssueRequest { name: filed.name.clone(), note: "已收到".into(), ..Default::default() };
    issues.acknowledge_issue(with_token(ack, &admin)).await.expect("ack");
    let changed = next(&mut stream).await;
    assert_eq!(changed.change_type(), ChangeType::Changed);
    let status = changed.status.expect("status");
    assert_eq!((status.state(), status.public_updates), (State::Acknowledged, 2));
    // An internal note changes the issue but not what the resident may read.
    let note =
        IssueUpdate { visibility: Visibility::Internal as i32, text: "内部备注".into(), ..Default::default() };
    let request =
        CreateIssueUpdateRequest { parent: filed.name.clone(), issue_update: Some(note), request_id: String::new() };
    issues.create_issue_update(with_token(request, &admin)).await.expect("note");
    let noted = next(&mut stream).await.status.expect("status");
    assert_eq!(noted.public_updates, 2, "internal notes are not counted for the resident");
    drop(stream);
    app.stop().await;
}
