//! The assessment service's authorisation matrix: every RPC, called by every kind of caller on
//! the reviews of community `east` (gw-1 in g1, gw-2 in g2), gets exactly what the rules allow —
//! including a worker of another grid, a cadre of another community, a department officer, a
//! resident, staff of another street and a service. A refusal is PERMISSION_DENIED whether or not
//! the review exists.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use civic::Target;
use civic_kit::auth::Role;
use civic_proto::assessment::assessment_service_client::AssessmentServiceClient;
use civic_proto::assessment::scheme::Weight;
use civic_proto::assessment::*;
use common::{Store, grid_token, service_token, spawn_with, test_config, token, token_in, with_token};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";

/// The callers, in the order of every expectation row.
const CALLERS: [&str; 12] = [
    "anonymous",
    "worker of g1",
    "worker of g2",
    "cadre of east",
    "cadre of west",
    "cadre of the street",
    "admin",
    "resident",
    "department officer",
    "party volunteer",
    "admin of another street",
    "a service",
];

const OK: Code = Code::Ok;
const UNAUTH: Code = Code::Unauthenticated;
const NO: Code = Code::PermissionDenied;

fn tokens() -> [String; 12] {
    [
        String::new(),
        grid_token("gw-1", "g1"),
        grid_token("gw-2", "g2"),
        token_in("cadre-e", &[Role::Cadre], "zhongjie", "east"),
        token_in("cadre-w", &[Role::Cadre], "zhongjie", "west"),
        token("cadre-s", &[Role::Cadre], "zhongjie"),
        token("boss", &[Role::Admin], "zhongjie"),
        token("res-a", &[Role::Resident], "zhongjie"),
        token("po-1", &[Role::DepartmentOfficer], "zhongjie"),
        token("pv-1", &[Role::PartyVolunteer], "zhongjie"),
        token("boss", &[Role::Admin], "beijie"),
        service_token("volunteer"),
    ]
}

/// The calls of the matrix.
#[derive(Debug, Clone, Copy)]
enum Call {
    CreateScheme,
    GetScheme,
    ListSchemes,
    RecomputeMonth,
    GetReview,
    ListReviews,
    GetBulletin,
    GetMonthRates,
    AdjustReview,
    ApproveReview,
    CreateSurvey,
    GetSurvey,
    ListSurveys,
    AnswerSurvey,
    CloseSurvey,
    GetSurveyResults,
    GetYearEnd,
    ExportYearEnd,
}

impl Call {
    fn rpc(self) -> String {
        format!("{self:?}")
    }
}

/// A democratic review of gw-1 in community east, with the party volunteer as its reviewer.
fn survey(month: &str) -> Survey {
    Survey {
        display_name: "民主评议".into(),
        kind: civic_proto::assessment::survey::Kind::DemocraticReview as i32,
        month: month.into(),
        community: format!("{STREET}/communities/east"),
        subject: "users/gw-1".into(),
        questions: vec!["工作作风".into()],
        reviewers: vec!["users/pv-1".into()],
        ..Default::default()
    }
}

fn scheme(month: &str) -> Scheme {
    let w = |indicator: Indicator, weight: f64| Weight { indicator: indicator as i32, weight, target: 0.0 };
    Scheme {
        display_name: "考核办法".into(),
        effective_month: month.into(),
        weights: vec![w(Indicator::HouseholdCoverage, 50.0), w(Indicator::ResolutionRate, 50.0)],
        star_thresholds: vec![60.0, 70.0, 80.0, 90.0, 95.0],
        ..Default::default()
    }
}

struct World {
    client: AssessmentServiceClient<Channel>,
    tokens: [String; 12],
    month: chrono::NaiveDate,
    /// Months used so far for approvals (each approval needs a review not yet approved).
    used: u32,
}

impl World {
    fn admin(&self) -> String {
        self.tokens[6].clone()
    }

    fn month_name(&self, ahead: u32) -> String {
        let m = self.month.checked_add_months(chrono::Months::new(ahead)).expect("a month");
        format!("{STREET}/months/{}", m.format("%Y-%m"))
    }

    /// A month of its own, computed: gw-1's review in it, not yet approved.
    async fn fresh_review(&mut self) -> String {
        self.used += 1;
        let month = self.month_name(self.used);
        let admin = self.admin();
        self.client
            .recompute_month(with_token(RecomputeMonthRequest { name: month.clone(), ..Default::default() }, &admin))
            .await
            .expect("recompute");
        format!("{month}/reviews/gw-1")
    }

    /// A new survey, opened by the admin.
    async fn new_survey(&mut self) -> String {
        let admin = self.admin();
        let request = CreateSurveyRequest {
            parent: STREET.into(),
            survey: Some(survey(&self.month.format("%Y-%m").to_string())),
            ..Default::default()
        };
        self.client.create_survey(with_token(request, &admin)).await.expect("a survey").into_inner().name
    }

    async fn code(&mut self, call: Call, caller: usize) -> Code {
        let token = self.tokens[caller].clone();
        let month = self.month_name(0);
        let review = format!("{month}/reviews/gw-1");
        let c = &mut self.client.clone();
        let result: Result<(), tonic::Status> = match call {
            Call::CreateScheme => {
                let request = CreateSchemeRequest {
                    parent: STREET.into(),
                    scheme: Some(scheme(&self.month.format("%Y-%m").to_string())),
                    ..Default::default()
                };
                c.create_scheme(with_token(request, &token)).await.map(drop)
            }
            Call::GetScheme => c
                .get_scheme(with_token(GetSchemeRequest { name: format!("{STREET}/schemes/s1") }, &token))
                .await
                .map(drop),
            Call::ListSchemes => c
                .list_schemes(with_token(ListSchemesRequest { parent: STREET.into(), ..Default::default() }, &token))
                .await
                .map(drop),
            Call::RecomputeMonth => c
                .recompute_month(with_token(RecomputeMonthRequest { name: month, ..Default::default() }, &token))
                .await
                .map(drop),
            Call::GetReview => c.get_review(with_token(GetReviewRequest { name: review }, &token)).await.map(drop),
            Call::ListReviews => c
                .list_reviews(with_token(ListReviewsRequest { parent: month, ..Default::default() }, &token))
                .await
                .map(drop),
            Call::GetBulletin => c
                .get_bulletin(with_token(GetBulletinRequest { name: month, community: String::new() }, &token))
                .await
                .map(drop),
            Call::GetMonthRates => {
                c.get_month_rates(with_token(GetMonthRatesRequest { name: month }, &token)).await.map(drop)
            }
            Call::AdjustReview => {
                let request =
                    AdjustReviewRequest { name: review, points: 1.0, reason: "表扬".into(), ..Default::default() };
                c.adjust_review(with_token(request, &token)).await.map(drop)
            }
            Call::CreateSurvey => {
                let request = CreateSurveyRequest {
                    parent: STREET.into(),
                    survey: Some(survey(&self.month.format("%Y-%m").to_string())),
                    ..Default::default()
                };
                c.create_survey(with_token(request, &token)).await.map(drop)
            }
            Call::GetSurvey => c
                .get_survey(with_token(GetSurveyRequest { name: format!("{STREET}/surveys/dr") }, &token))
                .await
                .map(drop),
            Call::ListSurveys => c
                .list_surveys(with_token(ListSurveysRequest { parent: STREET.into(), ..Default::default() }, &token))
                .await
                .map(drop),
            Call::AnswerSurvey => {
                let request = AnswerSurveyRequest {
                    name: format!("{STREET}/surveys/dr"),
                    ratings: vec![4],
                    request_id: String::new(),
                };
                c.answer_survey(with_token(request, &token)).await.map(drop)
            }
            Call::CloseSurvey => {
                let name = self.new_survey().await;
                let c = &mut self.client;
                c.close_survey(with_token(CloseSurveyRequest { name, ..Default::default() }, &token)).await.map(drop)
            }
            Call::GetSurveyResults => c
                .get_survey_results(with_token(
                    GetSurveyResultsRequest { name: format!("{STREET}/surveys/dr") },
                    &token,
                ))
                .await
                .map(drop),
            Call::GetYearEnd => {
                let request = GetYearEndRequest {
                    parent: STREET.into(),
                    year: chrono::Datelike::year(&self.month),
                    community: String::new(),
                };
                c.get_year_end(with_token(request, &token)).await.map(drop)
            }
            Call::ExportYearEnd => {
                let request = ExportYearEndRequest {
                    parent: STREET.into(),
                    year: chrono::Datelike::year(&self.month),
                    ..Default::default()
                };
                c.export_year_end(with_token(request, &token)).await.map(drop)
            }
            Call::ApproveReview => {
                let name = self.fresh_review().await;
                let c = &mut self.client;
                c.approve_review(with_token(ApproveReviewRequest { name, ..Default::default() }, &token))
                    .await
                    .map(drop)
            }
        };
        result.map(|_| OK).unwrap_or_else(|s| s.code())
    }
}

#[tokio::test]
async fn every_assessment_rpc_answers_each_caller_as_the_rules_say() {
    let store = Store::fresh().await;
    let mut config = test_config(&store);
    config.set("assessment.recompute_every_seconds", 0);
    let app = spawn_with(config, Target::All, civic::Options::default()).await;
    common::east_street(app.channel.clone()).await;
    let today =
        chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("offset")).date_naive();
    let month = chrono::NaiveDate::from_ymd_opt(chrono::Datelike::year(&today), chrono::Datelike::month(&today), 1)
        .expect("the month's first day");
    let mut world =
        World { client: AssessmentServiceClient::new(app.channel.clone()), tokens: tokens(), month, used: 0 };
    let admin = world.admin();
    let create = CreateSchemeRequest {
        parent: STREET.into(),
        scheme: Some(scheme(&month.format("%Y-%m").to_string())),
        scheme_id: "s1".into(),
        request_id: String::new(),
    };
    world.client.create_scheme(with_token(create, &admin)).await.expect("the scheme");
    let dr = CreateSurveyRequest {
        parent: STREET.into(),
        survey: Some(survey(&month.format("%Y-%m").to_string())),
        survey_id: "dr".into(),
        request_id: String::new(),
    };
    world.client.create_survey(with_token(dr, &admin)).await.expect("the survey");
    // Both workers' reviews of the month, once the grids' assignments have come in as facts.
    let month_name = world.month_name(0);
    let ready = async {
        loop {
            let request = RecomputeMonthRequest { name: month_name.clone(), ..Default::default() };
            world.client.recompute_month(with_token(request, &admin)).await.expect("recompute");
            let list = ListReviewsRequest { parent: month_name.clone(), ..Default::default() };
            let reviews = world.client.list_reviews(with_token(list, &admin)).await.expect("list").into_inner().reviews;
            if reviews.len() == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ready).await.expect("the reviews within 30 s");

    //                      anon    gw-1 gw-2 c-east c-west c-street admin res officer pv other service
    let admins = [UNAUTH, NO, NO, NO, NO, NO, OK, NO, NO, NO, NO, NO];
    let staff = [UNAUTH, OK, OK, OK, OK, OK, OK, NO, OK, NO, NO, NO];
    let street_reviewers = [UNAUTH, NO, NO, NO, NO, OK, OK, NO, NO, NO, NO, NO];
    let gw1_readers = [UNAUTH, OK, NO, OK, NO, OK, OK, NO, NO, NO, NO, NO];
    let review_readers = [UNAUTH, OK, OK, OK, OK, OK, OK, NO, NO, NO, NO, NO];
    let east_reviewers = [UNAUTH, NO, NO, OK, NO, OK, OK, NO, NO, NO, NO, NO];
    let rate_readers = [UNAUTH, NO, NO, OK, OK, OK, OK, NO, NO, NO, NO, NO];
    let table: Vec<(Call, [Code; 12])> = vec![
        (Call::CreateScheme, admins),
        (Call::GetScheme, staff),
        (Call::ListSchemes, staff),
        (Call::RecomputeMonth, street_reviewers),
        (Call::GetReview, gw1_readers),
        (Call::ListReviews, review_readers),
        (Call::GetBulletin, review_readers),
        (Call::GetMonthRates, rate_readers),
        (Call::AdjustReview, east_reviewers),
        (Call::ApproveReview, east_reviewers),
        (Call::CreateSurvey, east_reviewers),
        (Call::GetSurvey, [UNAUTH, NO, NO, OK, NO, OK, OK, NO, NO, OK, NO, NO]),
        (Call::ListSurveys, [UNAUTH, NO, NO, OK, OK, OK, OK, NO, NO, NO, NO, NO]),
        (Call::AnswerSurvey, [UNAUTH, NO, NO, NO, NO, NO, NO, NO, NO, OK, NO, NO]),
        (Call::CloseSurvey, east_reviewers),
        (Call::GetSurveyResults, east_reviewers),
        (Call::GetYearEnd, review_readers),
        (Call::ExportYearEnd, review_readers),
    ];

    // Every RPC the service declares has a row.
    let pool = prost_reflect::DescriptorPool::decode(civic_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let service = pool.get_service_by_name("civic.assessment.v1.AssessmentService").expect("the service");
    let declared: BTreeSet<String> = service.methods().map(|m| m.name().to_owned()).collect();
    let covered: BTreeSet<String> = table.iter().map(|(call, _)| call.rpc()).collect();
    assert_eq!(declared, covered, "every RPC of AssessmentService in the matrix");

    for (call, expected) in table {
        for (caller, want) in expected.iter().enumerate() {
            let got = world.code(call, caller).await;
            assert_eq!(got, *want, "{call:?} by {}", CALLERS[caller]);
        }
    }

    // A review that does not exist is refused alike to whoever may not reach the street; the
    // street's admin learns it is missing.
    let missing = format!("{month_name}/reviews/gw-9");
    for (caller, want) in [(1, NO), (3, NO), (4, NO), (7, NO), (10, NO), (6, Code::NotFound), (5, Code::NotFound)] {
        let token = world.tokens[caller].clone();
        let got = world.client.get_review(with_token(GetReviewRequest { name: missing.clone() }, &token)).await;
        assert_eq!(
            got.map(drop).map_err(|s| s.code()).err().unwrap_or(OK),
            want,
            "a missing review, {}",
            CALLERS[caller]
        );
        let approve = ApproveReviewRequest { name: missing.clone(), ..Default::default() };
        let got = world.client.approve_review(with_token(approve, &token)).await;
        assert_eq!(got.map(drop).map_err(|s| s.code()).err().unwrap_or(OK), want, "approving it, {}", CALLERS[caller]);
    }

    // So is a survey that does not exist.
    let missing = format!("{STREET}/surveys/none");
    for (caller, want) in [(3, NO), (4, NO), (7, NO), (9, NO), (10, NO), (6, Code::NotFound)] {
        let token = world.tokens[caller].clone();
        let got = world.client.get_survey(with_token(GetSurveyRequest { name: missing.clone() }, &token)).await;
        assert_eq!(
            got.map(drop).map_err(|s| s.code()).err().unwrap_or(OK),
            want,
            "a missing survey, {}",
            CALLERS[caller]
        );
        let close = CloseSurveyRequest { name: missing.clone(), ..Default::default() };
        let got = world.client.close_survey(with_token(close, &token)).await;
        assert_eq!(got.map(drop).map_err(|s| s.code()).err().unwrap_or(OK), want, "closing it, {}", CALLERS[caller]);
    }

    // Lists are scoped: each caller sees only what they reach.
    for (caller, sees) in [
        (1, vec!["users/gw-1"]),
        (2, vec!["users/gw-2"]),
        (3, vec!["users/gw-1", "users/gw-2"]),
        (4, vec![]),
        (6, vec!["users/gw-1", "users/gw-2"]),
    ] {
        let token = world.tokens[caller].clone();
        let request = ListReviewsRequest { parent: month_name.clone(), ..Default::default() };
        let listed = world.client.list_reviews(with_token(request, &token)).await.expect("list").into_inner().reviews;
        let workers: Vec<String> = listed.into_iter().map(|r| r.worker).collect();
        assert_eq!(workers, sees, "ListReviews by {}", CALLERS[caller]);
    }
    app.stop().await;
}
