//! The assessment service end to end: a grid worker's month computed from what the grid and
//! issues services announce (a visit, an issue answered, resolved and rated) — never by asking
//! them — every number explained; the same facts give the same month byte for byte; a reviewer
//! adjusts with a reason and approves; an approved month and earlier months never change; each
//! caller sees what is theirs; bad input names its field and changes nothing — in the layout
//! under test, on the store under test.

mod common;

use std::time::Duration;

use chrono::{FixedOffset, Utc};
use civic::Target;
use civic_kit::auth::{Principal, Role};
use civic_proto::assessment::assessment_service_client::AssessmentServiceClient;
use civic_proto::assessment::review::State;
use civic_proto::assessment::scheme::deduction::Kind;
use civic_proto::assessment::scheme::{Deduction, Weight};
use civic_proto::assessment::*;
use civic_proto::grid::visit_service_client::VisitServiceClient;
use civic_proto::grid::{CreateVisitRequest, Visit};
use civic_proto::issues::issue::{Source, Triage};
use civic_proto::issues::issue_service_client::IssueServiceClient;
use civic_proto::issues::{
    AcknowledgeIssueRequest, CreateIssueRequest, Issue, Point, ResolveIssueRequest, SubmitIssueFeedbackRequest,
    TriageIssueRequest,
};
use common::{DEV_KEY, Store, http, spawn_with, test_config, token, token_in, with_token};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";

fn admin() -> String {
    token("admin", &[Role::Admin], "zhongjie")
}

/// A grid worker's token for their grids.
fn worker(subject: &str, grid: &str) -> String {
    let settings = civic_kit::auth::AuthSettings { dev_key: Some(DEV_KEY.into()), ..Default::default() };
    let principal = Principal {
        subject: subject.into(),
        roles: vec![Role::GridWorker],
        street: Some("zhongjie".into()),
        community: None,
        grids: vec![grid.into()],
    };
    civic_kit::auth::mint_dev_token(&settings, &principal, Duration::from_secs(3600)).expect("mint")
}

/// A scheme of the seed's three measures, effective from `month`.
fn scheme(month: &str, satisfaction_weight: f64) -> Scheme {
    let w = |indicator: Indicator, weight: f64, target: f64| Weight { indicator: indicator as i32, weight, target };
    Scheme {
        display_name: "网格员绩效月考核办法".into(),
        effective_month: month.into(),
        weights: vec![
            w(Indicator::HouseholdCoverage, 40.0, 0.0),
            w(Indicator::Satisfaction, satisfaction_weight, 0.0),
            w(Indicator::ResolutionRate, 60.0 - satisfaction_weight, 0.0),
        ],
        deductions: vec![Deduction { kind: Kind::LateSummary as i32, points: 5.0, at_most: 0.0 }],
        star_thresholds: vec![60.0, 70.0, 80.0, 90.0, 95.0],
        min_households: 1,
        min_issues: 1,
        ..Default::default()
    }
}

/// The fields an INVALID_ARGUMENT names, in order.
fn violations(status: &tonic::Status) -> Vec<String> {
    let details = tonic_types::StatusExt::get_error_details(status);
    details.bad_request().expect("field violations").field_violations.iter().map(|v| v.field.clone()).collect()
}

fn code<T: std::fmt::Debug>(answer: Result<tonic::Response<T>, tonic::Status>) -> Code {
    answer.expect_err("refused").code()
}

/// The month a time falls in, in the street's time zone (the calendar's default, UTC+8).
fn month_of(t: chrono::DateTime<Utc>) -> String {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("offset")).format("%Y-%m").to_string()
}

/// Recomputes `month` until the worker's review shows what `ready` waits for (the facts come in
/// as events, a moment after the writes): at most 30 s.
async fn recompute_until(
    client: &mut AssessmentServiceClient<Channel>,
    month: &str,
    review: &str,
    ready: impl Fn(&Review) -> bool,
) -> (RecomputeMonthResponse, Review) {
    let wait = async {
        loop {
            let request = RecomputeMonthRequest { name: format!("{STREET}/months/{month}"), ..Default::default() };
            let done = client.recompute_month(with_token(request, &admin())).await.expect("recompute").into_inner();
            let got = client.get_review(with_token(GetReviewRequest { name: review.into() }, &admin())).await;
            if let Ok(r) = got
                && ready(r.get_ref())
            {
                return (done, r.into_inner());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("the facts arrived within 30 s")
}

#[tokio::test]
async fn a_workers_month_is_computed_from_events_explained_adjusted_and_approved() {
    let store = Store::fresh().await;
    let mut config = test_config(&store);
    config.set("assessment.recompute_every_seconds", 0);
    let app = spawn_with(config, Target::All, civic::Options::default()).await;
    let household = common::east_street(app.channel.clone()).await;
    let mut client = AssessmentServiceClient::new(app.channel.clone());
    let mut issues = IssueServiceClient::new(app.channel.clone());
    let gw1 = worker("gw-1", "g1");
    let resident = token("res-1", &[Role::Resident], "zhongjie");

    // A resident's problem in g1: answered, resolved, rated 4.
    let issue = CreateIssueRequest {
        parent: STREET.into(),
        issue: Some(Issue {
            source: Source::App as i32,
            category: "facilities".into(),
            title: "路灯不亮".into(),
            description: "小区东侧路灯不亮两周了".into(),
            location: Some(Point { latitude: 35.05, longitude: 106.05 }),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let taken = issues.create_issue(with_token(issue, &resident)).await.expect("issue").into_inner();
    let created = civic_kit::time::from_timestamp(taken.create_time.as_ref()).expect("a time");
    let month = month_of(created);
    let name = taken.name.clone();
    issues
        .acknowledge_issue(with_token(AcknowledgeIssueRequest { name: name.clone(), ..Default::default() }, &gw1))
        .await
        .expect("answer");
    let triage = TriageIssueRequest { name: name.clone(), triage: Triage::FixAtOnce as i32, ..Default::default() };
    issues.triage_issue(with_token(triage, &gw1)).await.expect("triage");
    let resolve =
        ResolveIssueRequest { name: name.clone(), resolution: "已更换灯泡".into(), ..Default::default() };
    issues.resolve_issue(with_token(resolve, &gw1)).await.expect("resolve");
    let rate = SubmitIssueFeedbackRequest { name: name.clone(), rating: 4, fixed: true, ..Default::default() };
    issues.submit_issue_feedback(with_token(rate, &resident)).await.expect("rate");
    // gw-1 visits the one household of g1.
    let visit = CreateVisitRequest {
        parent: STREET.into(),
        visit: Some(Visit {
            household: household.clone(),
            kind: civic_proto::grid::visit::Kind::DoorToDoor as i32,
            visit_time: Some(civic_kit::time::to_timestamp(created)),
            ..Default::default()
        }),
        visit_id: "v-assessed".into(),
        request_id: String::new(),
    };
    VisitServiceClient::new(app.channel.clone()).create_visit(with_token(visit, &gw1)).await.expect("visit");

    // No scheme yet: nothing to score by.
    let month_name = format!("{STREET}/months/{month}");
    let request = || RecomputeMonthRequest { name: month_name.clone(), ..Default::default() };
    let status = client.recompute_month(with_token(request(), &admin())).await.expect_err("no scheme");
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Only admins create schemes, and a bad one is refused field by field, nothing written.
    let create = |s: Scheme, id: &str| CreateSchemeRequest {
        parent: STREET.into(),
        scheme: Some(s),
        scheme_id: id.into(),
        request_id: String::new(),
    };
    let cadre = token_in("cadre-east", &[Role::Cadre], "zhongjie", "east");
    assert_eq!(
        code(client.create_scheme(with_token(create(scheme(&month, 30.0), "s1"), &cadre)).await),
        Code::PermissionDenied
    );
    let mut bad = scheme(&month, 30.0);
    bad.weights[0].weight = 50.0;
    bad.star_thresholds = vec![90.0, 80.0, 70.0, 60.0, 50.0];
    let status = client.create_scheme(with_token(create(bad, "s1"), &admin())).await.expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), vec!["scheme.weights", "scheme.star_thresholds"]);
    let listed = client
        .list_schemes(with_token(ListSchemesRequest { parent: STREET.into(), ..Default::default() }, &admin()))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.schemes.is_empty(), "nothing written");
    let s1 = client.create_scheme(with_token(create(scheme(&month, 30.0), "s1"), &admin())).await.expect("scheme");
    assert_eq!(s1.get_ref().name, format!("{STREET}/schemes/s1"));

    // The month from the facts: one household, visited; one issue, resolved, rated 4 of 5.
    let review_name = format!("{month_name}/reviews/gw-1");
    let (first, review) = recompute_until(&mut client, &month, &review_name, |r| {
        let inputs = |i: Indicator| r.indicators.iter().find(|x| x.indicator() == i).map(|x| x.value);
        inputs(Indicator::HouseholdCoverage) == Some(1.0) && inputs(Indicator::Satisfaction) == Some(0.8)
    })
    .await;
    assert_eq!(review.worker, "users/gw-1");
    assert_eq!(review.grids, vec![format!("{STREET}/communities/east/grids/g1")]);
    assert_eq!(review.scheme, format!("{STREET}/schemes/s1"));
    assert_eq!(review.state(), State::Computed);
    let points: Vec<f64> = review.indicators.iter().map(|i| i.points).collect();
    // 40 × 1; 30 × 0.8; 30 × 1 (resolved within the window); no summary: −5.
    assert_eq!(points, vec![40.0, 24.0, 30.0]);
    assert_eq!((review.computed_score, review.score, review.stars), (89.0, 89.0, 3));
    assert!(review.explanation.contains("1 households visited ÷ 1 households = 1"), "{}", review.explanation);
    assert!(
        review.explanation.contains("LATE_SUMMARY: −1 summaries late or missing × 5 = 5"),
        "{}",
        review.explanation
    );
    assert!(review.enough_data);

    // The same facts, the same month, byte for byte; nothing recomputed.
    let again = client.recompute_month(with_token(request(), &admin())).await.expect("again").into_inner();
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.computed, 0);
    let same = client.get_review(with_token(GetReviewRequest { name: review_name.clone() }, &admin())).await;
    assert_eq!(same.expect("review").into_inner(), review);

    // Who sees it: the worker their own, the community's cadre; not another worker, another
    // community's cadre, a resident or another street's admin.
    let get = |token: &str| with_token(GetReviewRequest { name: review_name.clone() }, token);
    client.get_review(get(&gw1)).await.expect("the worker's own");
    client.get_review(get(&cadre)).await.expect("the community's cadre");
    let other_cadre = token_in("cadre-west", &[Role::Cadre], "zhongjie", "west");
    for outsider in
        [worker("gw-2", "g2"), other_cadre.clone(), resident.clone(), token("admin", &[Role::Admin], "other")]
    {
        assert_eq!(code(client.get_review(get(&outsider)).await), Code::PermissionDenied);
    }
    let missing = format!("{month_name}/reviews/gw-9");
    let status = client.get_review(with_token(GetReviewRequest { name: missing.clone() }, &other_cadre)).await;
    assert_eq!(code(status), Code::PermissionDenied, "a community's cadre is not told what exists");
    let status = client.get_review(with_token(GetReviewRequest { name: missing }, &admin())).await;
    assert_eq!(code(status), Code::NotFound);
    let list = |token: &str| {
        let mut client = client.clone();
        let request = with_token(ListReviewsRequest { parent: month_name.clone(), ..Default::default() }, token);
        async move { client.list_reviews(request).await.map(|r| r.into_inner().reviews) }
    };
    let workers = |reviews: Vec<Review>| reviews.into_iter().map(|r| r.worker).collect::<Vec<_>>();
    assert_eq!(workers(list(&admin()).await.expect("all")), vec!["users/gw-1", "users/gw-2"]);
    assert_eq!(workers(list(&gw1).await.expect("own")), vec!["users/gw-1"]);
    assert!(list(&other_cadre).await.expect("none").is_empty());

    // A reviewer adjusts, with a reason; bad input names its field and changes nothing; a
    // grid worker cannot adjust.
    let adjust = |points: f64, reason: &str, etag: &str| AdjustReviewRequest {
        name: review_name.clone(),
        points,
        reason: reason.into(),
        etag: etag.into(),
        request_id: String::new(),
    };
    let status = client.adjust_review(with_token(adjust(0.0, " ", ""), &cadre)).await.expect_err("bad");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), vec!["points", "reason"]);
    assert_eq!(
        code(client.adjust_review(with_token(adjust(3.0, "主动化解纠纷", ""), &gw1)).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(client.adjust_review(with_token(adjust(3.0, "主动化解纠纷", ""), &other_cadre)).await),
        Code::PermissionDenied
    );
    let unchanged = client.get_review(get(&admin())).await.expect("review").into_inner();
    assert_eq!(unchanged, review, "nothing changed");
    let adjusted = client
        .adjust_review(with_token(adjust(3.0, "主动化解邻里纠纷，群众来信表扬", &review.etag), &cadre))
        .await
        .expect("adjust")
        .into_inner();
    assert_eq!((adjusted.state(), adjusted.score, adjusted.stars), (State::Adjusted, 92.0, 4));
    assert_eq!(adjusted.adjustments[0].adjusted_by, "users/cadre-east");
    assert_eq!(
        code(client.adjust_review(with_token(adjust(1.0, "again", &review.etag), &cadre)).await),
        Code::Aborted,
        "a stale etag"
    );
    // A recomputation keeps the adjustment.
    client.recompute_month(with_token(request(), &admin())).await.expect("recompute");
    let kept = client.get_review(get(&admin())).await.expect("review").into_inner();
    assert_eq!((kept.score, kept.adjustments.len()), (92.0, 1));

    // Approved: final. No adjustment, no recomputation, no later scheme changes it.
    let approve =
        ApproveReviewRequest { name: review_name.clone(), etag: adjusted.etag.clone(), request_id: "a-1".into() };
    let approved = client.approve_review(with_token(approve.clone(), &cadre)).await.expect("approve").into_inner();
    assert_eq!((approved.state(), approved.approved_by.as_str()), (State::Approved, "users/cadre-east"));
    let retried = client.approve_review(with_token(approve, &cadre)).await.expect("retry").into_inner();
    assert_eq!(retried, approved, "a retry answers as the first time");
    assert_eq!(code(client.adjust_review(with_token(adjust(1.0, "晚了", ""), &cadre)).await), Code::FailedPrecondition);
    let later = month_of(created + chrono::Duration::days(40));
    client.create_scheme(with_token(create(scheme(&later, 50.0), "s2"), &admin())).await.expect("a later scheme");
    client.create_scheme(with_token(create(scheme(&month, 10.0), "s3"), &admin())).await.expect("a new scheme now");
    let recomputed = client.recompute_month(with_token(request(), &admin())).await.expect("recompute").into_inner();
    assert_eq!(recomputed.scheme, format!("{STREET}/schemes/s3"), "the latest scheme of the month is in force");
    assert_eq!(recomputed.approved, 1);
    assert_eq!(client.get_review(get(&admin())).await.expect("review").into_inner(), approved);
    let gw2 = client
        .get_review(with_token(GetReviewRequest { name: format!("{month_name}/reviews/gw-2") }, &admin()))
        .await
        .expect("gw-2")
        .into_inner();
    assert_eq!(gw2.scheme, format!("{STREET}/schemes/s3"), "an unapproved review follows the new scheme");

    // The bulletin: gw-1 ranked; gw-2, with no household and no issue, not ranked.
    let bulletin = |token: &str| {
        let mut client = client.clone();
        let request = with_token(GetBulletinRequest { name: month_name.clone(), community: String::new() }, token);
        async move { client.get_bulletin(request).await.map(|r| r.into_inner()) }
    };
    let b = bulletin(&admin()).await.expect("bulletin");
    let lines: Vec<(&str, i32, bool)> = b.entries.iter().map(|e| (e.worker.as_str(), e.rank, e.enough_data)).collect();
    assert_eq!(lines, vec![("users/gw-1", 1, true), ("users/gw-2", 0, false)]);
    assert_eq!(b.star_counts, vec![0, 0, 0, 0, 1, 1], "gw-1 92 (four stars), gw-2 95 (five)");
    let grids: Vec<(&str, f64, i32)> = b.grids.iter().map(|g| (g.grid.as_str(), g.score, g.stars)).collect();
    let g = |id: &str| format!("{STREET}/communities/east/grids/{id}");
    assert_eq!(grids, vec![(g("g1").as_str(), 92.0, 4), (g("g2").as_str(), 95.0, 5)]);
    assert_eq!(bulletin(&gw1).await.expect("a worker's community").entries.len(), 2);
    assert_eq!(bulletin(&cadre).await.expect("the cadre's").entries.len(), 2);
    assert!(bulletin(&other_cadre).await.expect("another community's").entries.is_empty());
    assert_eq!(bulletin(&worker("gw-7", "g7")).await.expect_err("no review").code(), Code::PermissionDenied);
    assert_eq!(bulletin(&resident).await.expect_err("a resident").code(), Code::PermissionDenied);

    // The rates reported upward: the street's and each community's.
    let rates = |token: &str| {
        let mut client = client.clone();
        let request = with_token(GetMonthRatesRequest { name: month_name.clone() }, token);
        async move { client.get_month_rates(request).await.map(|r| r.into_inner()) }
    };
    let r = rates(&admin()).await.expect("rates");
    let street = r.street.expect("the street's");
    assert_eq!((street.issues, street.answered_on_time, street.resolved, street.ratings), (1, 1, 1, 1));
    assert_eq!(
        (street.response_rate, street.resolution_rate, street.mean_rating, street.satisfaction_rate),
        (1.0, 1.0, 4.0, 1.0)
    );
    assert_eq!(
        r.communities.iter().map(|c| c.scope.as_str()).collect::<Vec<_>>(),
        vec![format!("{STREET}/communities/east")]
    );
    let east = rates(&cadre).await.expect("the cadre's");
    assert!(east.street.is_none(), "a community's cadre reads their community's only");
    assert_eq!(east.communities.len(), 1);
    assert!(rates(&other_cadre).await.expect("another community's").communities.is_empty());
    assert_eq!(rates(&gw1).await.expect_err("a worker").code(), Code::PermissionDenied);

    // The year-end evaluation: the year's months combined (this scheme says nothing of the
    // year: the months alone), ranked in the community; a worker reads their own line.
    let year: i32 = month[..4].parse().expect("a year");
    let year_end = |token: &str, community: &str| {
        let mut client = client.clone();
        let request = with_token(GetYearEndRequest { parent: STREET.into(), year, community: community.into() }, token);
        async move { client.get_year_end(request).await.map(|r| r.into_inner()) }
    };
    let e = year_end(&admin(), "").await.expect("year end");
    let lines: Vec<(&str, f64, i32, i32, bool)> =
        e.entries.iter().map(|x| (x.worker.as_str(), x.score, x.rank, x.approved_months, x.award)).collect();
    assert_eq!(lines, vec![("users/gw-2", 95.0, 1, 0, false), ("users/gw-1", 92.0, 2, 1, false)]);
    assert!(e.entries[1].explanation.contains("no democratic review shown"), "{}", e.entries[1].explanation);
    let own = year_end(&gw1, "").await.expect("own");
    assert_eq!(own.entries.iter().map(|x| x.worker.as_str()).collect::<Vec<_>>(), vec!["users/gw-1"]);
    assert!(year_end(&other_cadre, "").await.expect("none").entries.is_empty());
    let east = format!("{STREET}/communities/east");
    assert_eq!(year_end(&other_cadre, &east).await.expect_err("not theirs").code(), Code::PermissionDenied);
    let (status, csv) =
        http(app.http_addr, "GET", &format!("/v1/{STREET}/yearEnd:export?year={year}"), &cadre, None).await;
    assert_eq!(status, 200, "{csv}");
    assert!(csv.contains("users/gw-1,streets/zhongjie/communities/east,1,1,92.00,,92.00,4,2,否"), "{csv}");
    let (status, page) =
        http(app.http_addr, "GET", &format!("/v1/{STREET}/yearEnd:export?year={year}&format=HTML"), &cadre, None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("年度网格员考评") && page.contains("<td>users/gw-2</td>"), "{page}");

    // Over HTTP/JSON too.
    let path = format!("/v1/{review_name}");
    let (status, body) = http(app.http_addr, "GET", &path, &gw1, None).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["state"], "APPROVED");
    assert_eq!(json["score"], 92.0);
    let (status, body) = http(app.http_addr, "POST", &format!("/v1/{month_name}:recompute"), &gw1, Some("{}")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) =
        http(app.http_addr, "GET", &format!("/v1/{STREET}/months/2026-13/reviews"), &admin(), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("parent"), "{body}");
    app.stop().await;
}

/// A resident with an account in `household`.
async fn resident_of(channel: Channel, household: &str, user: &str) {
    use civic_proto::grid::roster_service_client::RosterServiceClient;
    use civic_proto::grid::{CreateResidentRequest, Resident};
    let resident = Resident { display_name: "王秀英".into(), user: format!("users/{user}"), ..Default::default() };
    let request =
        CreateResidentRequest { parent: household.into(), resident: Some(resident), request_id: String::new() };
    RosterServiceClient::new(channel).create_resident(with_token(request, &admin())).await.expect("a resident");
}

#[tokio::test]
async fn residents_and_reviewers_answer_once_and_results_show_only_from_enough_answers() {
    let store = Store::fresh().await;
    let mut config = test_config(&store);
    config.set("assessment.recompute_every_seconds", 0);
    config.set("assessment.min_survey_answers", 2);
    let app = spawn_with(config, Target::All, civic::Options::default()).await;
    let household = common::east_street(app.channel.clone()).await;
    for user in ["res-1", "res-2", "res-3"] {
        resident_of(app.channel.clone(), &household, user).await;
    }
    let mut client = AssessmentServiceClient::new(app.channel.clone());
    let cadre = token_in("cadre-east", &[Role::Cadre], "zhongjie", "east");
    let other_cadre = token_in("cadre-west", &[Role::Cadre], "zhongjie", "west");
    let resident = |user: &str| token(user, &[Role::Resident], "zhongjie");
    let month = month_of(Utc::now());
    let g1 = format!("{STREET}/communities/east/grids/g1");
    let satisfaction = Survey {
        display_name: "网格服务满意度测评".into(),
        kind: civic_proto::assessment::survey::Kind::Satisfaction as i32,
        month: month.clone(),
        community: format!("{STREET}/communities/east"),
        questions: vec!["网格员上门走访及时吗？".into(), "反映的问题解决得好吗？".into()],
        grids: vec![g1.clone()],
        ..Default::default()
    };
    let create = |survey: Survey, id: &str| CreateSurveyRequest {
        parent: STREET.into(),
        survey: Some(survey),
        survey_id: id.into(),
        request_id: String::new(),
    };

    // A cadre opens surveys of their own community; bad ones are refused field by field.
    let status = client.create_survey(with_token(create(satisfaction.clone(), "s-1"), &other_cadre)).await;
    assert_eq!(code(status), Code::PermissionDenied);
    let bad = Survey {
        questions: vec![],
        grids: vec![format!("{STREET}/communities/west/grids/w1")],
        min_answers: 1,
        ..satisfaction.clone()
    };
    let status = client.create_survey(with_token(create(bad, "s-1"), &cadre)).await.expect_err("bad");
    assert_eq!(violations(&status), vec!["survey.questions", "survey.min_answers", "survey.grids[0]"]);
    let survey =
        client.create_survey(with_token(create(satisfaction, "s-1"), &cadre)).await.expect("open").into_inner();
    assert_eq!((survey.min_answers, survey.state()), (2, civic_proto::assessment::survey::State::Open));

    // Residents of g1 answer, once each; someone of another household may not.
    let answer =
        |ratings: Vec<i32>| AnswerSurveyRequest { name: survey.name.clone(), ratings, request_id: String::new() };
    let seen = client.get_survey(with_token(GetSurveyRequest { name: survey.name.clone() }, &resident("res-1"))).await;
    assert_eq!(seen.expect("a resident reads the questions").into_inner().questions.len(), 2);
    client.answer_survey(with_token(answer(vec![5, 4]), &resident("res-1"))).await.expect("answer");
    let status = client.answer_survey(with_token(answer(vec![1, 1]), &resident("res-1"))).await;
    assert_eq!(code(status), Code::AlreadyExists, "once");
    assert_eq!(
        code(client.answer_survey(with_token(answer(vec![5]), &resident("res-2"))).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(client.answer_survey(with_token(answer(vec![5, 6]), &resident("res-2"))).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(client.answer_survey(with_token(answer(vec![3, 3]), &resident("res-9"))).await),
        Code::PermissionDenied
    );
    assert_eq!(code(client.answer_survey(with_token(answer(vec![3, 3]), &cadre)).await), Code::PermissionDenied);

    // One answer is fewer than the minimum: the results are withheld.
    let reader = client.clone();
    let results = |token: &str| {
        let mut client = reader.clone();
        let request = with_token(GetSurveyResultsRequest { name: survey.name.clone() }, token);
        async move { client.get_survey_results(request).await.map(|r| r.into_inner()) }
    };
    let few = results(&cadre).await.expect("results");
    assert_eq!((few.answer_count, few.shown, few.questions.len()), (1, false, 0));
    assert_eq!(code(results(&resident("res-1")).await.map(tonic::Response::new)), Code::PermissionDenied);
    assert_eq!(code(results(&other_cadre).await.map(tonic::Response::new)), Code::PermissionDenied);
    client.answer_survey(with_token(answer(vec![3, 4]), &resident("res-2"))).await.expect("answer");
    let shown = results(&cadre).await.expect("results");
    assert!(shown.shown);
    assert_eq!(shown.questions[0].counts, vec![0, 0, 1, 0, 1]);
    assert_eq!((shown.questions[0].mean, shown.questions[1].mean, shown.mean), (4.0, 4.0, 4.0));

    // Closed: no more answers; the month's review of g1's worker counts it.
    let close = CloseSurveyRequest { name: survey.name.clone(), ..Default::default() };
    let closed = client.close_survey(with_token(close, &cadre)).await.expect("close").into_inner();
    assert_eq!(closed.state(), civic_proto::assessment::survey::State::Closed);
    assert_eq!(
        code(client.answer_survey(with_token(answer(vec![5, 5]), &resident("res-3"))).await),
        Code::FailedPrecondition
    );
    let mut s = scheme(&month, 30.0);
    s.weights[1].indicator = Indicator::SurveyRating as i32;
    let request = CreateSchemeRequest {
        parent: STREET.into(),
        scheme: Some(s),
        scheme_id: "s1".into(),
        request_id: String::new(),
    };
    client.create_scheme(with_token(request, &admin())).await.expect("scheme");
    let review = format!("{STREET}/months/{month}/reviews/gw-1");
    let (_, review) = recompute_until(&mut client, &month, &review, |_| true).await;
    let survey_part = review.indicators.iter().find(|i| i.indicator() == Indicator::SurveyRating).expect("surveys");
    assert_eq!((survey_part.value, survey_part.points), (0.8, 24.0), "{}", survey_part.formula);

    // A democratic review: its named reviewers answer, no one else.
    let review_survey = Survey {
        display_name: "网格员民主评议".into(),
        kind: civic_proto::assessment::survey::Kind::DemocraticReview as i32,
        month: month.clone(),
        community: format!("{STREET}/communities/east"),
        subject: "users/gw-1".into(),
        questions: vec!["工作作风".into()],
        reviewers: vec!["users/pm-1".into(), "users/pm-2".into()],
        ..Default::default()
    };
    let dr = client.create_survey(with_token(create(review_survey, "dr-1"), &cadre)).await.expect("open").into_inner();
    let answer = |ratings: Vec<i32>| AnswerSurveyRequest { name: dr.name.clone(), ratings, request_id: String::new() };
    let member = |user: &str| token(user, &[Role::PartyVolunteer], "zhongjie");
    client.answer_survey(with_token(answer(vec![4]), &member("pm-1"))).await.expect("a reviewer");
    assert_eq!(code(client.answer_survey(with_token(answer(vec![4]), &member("pm-3"))).await), Code::PermissionDenied);
    assert_eq!(
        code(client.answer_survey(with_token(answer(vec![4]), &resident("res-1"))).await),
        Code::PermissionDenied
    );
    let listed = client
        .list_surveys(with_token(ListSurveysRequest { parent: STREET.into(), ..Default::default() }, &cadre))
        .await
        .expect("list")
        .into_inner()
        .surveys;
    assert_eq!(
        listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        vec![dr.name.as_str(), survey.name.as_str()]
    );
    let none = ListSurveysRequest { parent: STREET.into(), ..Default::default() };
    assert!(client.list_surveys(with_token(none, &other_cadre)).await.expect("list").into_inner().surveys.is_empty());
    app.stop().await;
}
