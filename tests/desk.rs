//! The reception desk end to end: every transition and its illegal ones, first-inquiry
//! ownership through hand-overs, due times, overdue lists, inquiries and who may do what.

mod common;

use civic_kit::auth::Role;
use civic_proto::catalogue::application::State;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use civic_proto::catalogue::desk_service_client::DeskServiceClient;
use civic_proto::catalogue::material::Form;
use civic_proto::catalogue::service_item::{Category, HandlingMode};
use civic_proto::catalogue::*;
use common::{spawn_app, token, with_token};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";

struct Desk {
    desk: DeskServiceClient<Channel>,
    staff: String,
    other_staff: String,
    resident_a: String,
    resident_b: String,
}

async fn published_item(channel: Channel, id: &str, mode: HandlingMode, promised_days: i32) -> String {
    let admin = token("admin", &[Role::Admin], "zhongjie");
    let mut catalogue = CatalogueServiceClient::new(channel);
    let item = ServiceItem {
        title: "高龄津贴申领".into(),
        category: Category::GovernmentAffairs as i32,
        handling_mode: mode as i32,
        materials: vec![
            common::id_card(),
            Material {
                name: "银行卡".into(),
                form: Form::Copy as i32,
                copies: 1,
                required: false,
                note: String::new(),
            },
        ],
        promised_days,
        ..Default::default()
    };
    let created = catalogue
        .create_service_item(with_token(
            CreateServiceItemRequest {
                parent: STREET.into(),
                service_item: Some(item),
                service_item_id: id.into(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .expect("create item")
        .into_inner();
    catalogue
        .publish_service_item(with_token(
            PublishServiceItemRequest { name: created.name.clone(), ..Default::default() },
            &admin,
        ))
        .await
        .expect("publish");
    created.name
}

fn desk(channel: Channel) -> Desk {
    Desk {
        desk: DeskServiceClient::new(channel),
        staff: token("wang", &[Role::Cadre], "zhongjie"),
        other_staff: token("li", &[Role::GridWorker], "zhongjie"),
        resident_a: token("resident-a", &[Role::Resident], "zhongjie"),
        resident_b: token("resident-b", &[Role::Resident], "zhongjie"),
    }
}

fn file(item: &str, applicant: &str) -> CreateApplicationRequest {
    CreateApplicationRequest {
        parent: STREET.into(),
        application: Some(Application { service_item: item.into(), applicant: applicant.into(), ..Default::default() }),
        request_id: String::new(),
    }
}

fn id_card() -> Vec<CheckedMaterial> {
    vec![CheckedMaterial { name: "身份证".into(), provided: true, note: String::new() }]
}

#[tokio::test]
async fn a_case_keeps_its_first_owner_through_hand_overs_to_completion() {
    let (app, store) = spawn_app().await;
    let item = published_item(app.channel.clone(), "elderly-allowance", HandlingMode::OnBehalf, 5).await;
    let mut d = desk(app.channel.clone());

    let received = d
        .desk
        .create_application(with_token(file(&item, "users/resident-a"), &d.staff))
        .await
        .expect("file")
        .into_inner();
    assert_eq!(received.state, State::Received as i32);
    assert_eq!(received.first_owner, "users/wang");
    assert_eq!(received.service_item_revision, format!("{item}/revisions/1"));
    assert!(received.due_time.is_some());

    let err = d
        .desk
        .accept_application(with_token(
            AcceptApplicationRequest { name: received.name.clone(), ..Default::default() },
            &d.staff,
        ))
        .await
        .expect_err("the ID card is required");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let accepted = d
        .desk
        .accept_application(with_token(
            AcceptApplicationRequest { name: received.name.clone(), materials: id_card(), ..Default::default() },
            &d.staff,
        ))
        .await
        .expect("accept")
        .into_inner();
    assert_eq!(accepted.state, State::Accepted as i32);
    assert_eq!(accepted.materials.len(), 2);

    let handed = d
        .desk
        .hand_over_application(with_token(
            HandOverApplicationRequest {
                name: received.name.clone(),
                handler: "users/li".into(),
                ..Default::default()
            },
            &d.staff,
        ))
        .await
        .expect("hand over")
        .into_inner();
    assert_eq!((handed.handler.as_str(), handed.first_owner.as_str()), ("users/li", "users/wang"));
    let started = d
        .desk
        .start_application(with_token(
            StartApplicationRequest { name: received.name.clone(), ..Default::default() },
            &d.other_staff,
        ))
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.state, State::InProgress as i32);
    let forwarded = d
        .desk
        .forward_application(with_token(
            ForwardApplicationRequest {
                name: received.name.clone(), office: "区民政局".into(), ..Default::default()
            },
            &d.other_staff,
        ))
        .await
        .expect("forward")
        .into_inner();
    assert_eq!((forwarded.state, forwarded.forwarded_to.as_str()), (State::Forwarded as i32, "区民政局"));
    let done = d
        .desk
        .complete_application(with_token(
            CompleteApplicationRequest { name: received.name.clone(), ..Default::default() },
            &d.other_staff,
        ))
        .await
        .expect("complete")
        .into_inner();
    assert_eq!(done.state, State::Completed as i32);
    assert_eq!(done.first_owner, "users/wang", "the first owner stays the owner");
    let actions: Vec<&str> = done.timeline.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["receive", "accept", "hand_over", "start", "forward", "complete"]);

    // Every change of the case wrote its event to the outbox, in order: the contract's
    // ApplicationChanged, with names and states and none of the case's free text.
    let url = common::test_config(&store).database_url_for("catalogue");
    let db = civic_kit::db::Db::connect(&url, "catalogue", 1).await.expect("db");
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("select topic, payload from civic_outbox where event_key = $1 order by id")
            .bind(&received.name)
            .fetch_all(db.reader())
            .await
            .expect("outbox");
    let mut event_actions = Vec::new();
    for (topic, payload) in &rows {
        assert_eq!(topic, <ApplicationChanged as civic_proto::Event>::TOPIC);
        let event = <ApplicationChanged as prost::Message>::decode(payload.as_slice()).expect("the contract's payload");
        assert_eq!((event.application.as_str(), event.first_owner.as_str()), (received.name.as_str(), "users/wang"));
        event_actions.push(event.action().as_str_name().to_ascii_lowercase());
    }
    assert_eq!(event_actions, actions);
    assert_eq!(
        rows.last().map(|(_, p)| <ApplicationChanged as prost::Message>::decode(p.as_slice()).expect("decodes").state),
        Some(State::Completed as i32)
    );
    db.close().await;

    let err = d
        .desk
        .reject_application(with_token(
            RejectApplicationRequest { name: received.name.clone(), reason: "x".into(), ..Default::default() },
            &d.staff,
        ))
        .await
        .expect_err("a completed case is final");
    assert_eq!(err.code(), Code::FailedPrecondition);

    // The resident sees the case; another resident does not.
    let mine =
        d.desk.get_application(with_token(GetApplicationRequest { name: received.name.clone() }, &d.resident_a)).await;
    assert!(mine.is_ok());
    let theirs =
        d.desk.get_application(with_token(GetApplicationRequest { name: received.name.clone() }, &d.resident_b)).await;
    assert_eq!(theirs.expect_err("not theirs").code(), Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test]
async fn a_retried_filing_returns_the_first_case_and_files_nothing_more() {
    let (app, _store) = spawn_app().await;
    let item = published_item(app.channel.clone(), "retry-item", HandlingMode::HandledHere, 1).await;
    let mut d = desk(app.channel.clone());
    let request =
        || CreateApplicationRequest { request_id: "b1946ac9-2a3f-4a8e-9d6e-35d8f1d0c7aa".into(), ..file(&item, "") };
    let first = d.desk.create_application(with_token(request(), &d.resident_a)).await.expect("file").into_inner();
    let again = d.desk.create_application(with_token(request(), &d.resident_a)).await.expect("retry").into_inner();
    assert_eq!(first, again);
    let mine = d
        .desk
        .list_applications(with_token(
            ListApplicationsRequest { parent: STREET.into(), ..Default::default() },
            &d.resident_a,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(mine.applications.len(), 1);
    // The same id from another caller is another request.
    let theirs = d.desk.create_application(with_token(request(), &d.resident_b)).await.expect("b files").into_inner();
    assert_ne!(theirs.name, first.name);
    app.stop().await;
}

#[tokio::test]
async fn illegal_transitions_fail_and_reasons_are_required() {
    let (app, _store) = spawn_app().await;
    let item = published_item(app.channel.clone(), "guided-item", HandlingMode::Guided, 3).await;
    let mut d = desk(app.channel.clone());
    let case = d.desk.create_application(with_token(file(&item, ""), &d.resident_a)).await.expect("file").into_inner();
    assert_eq!(case.applicant, "users/resident-a");
    assert!(case.first_owner.is_empty(), "nobody at the desk has taken it yet");

    let complete = d
        .desk
        .complete_application(with_token(
            CompleteApplicationRequest { name: case.name.clone(), ..Default::default() },
            &d.staff,
        ))
        .await
        .expect_err("received cannot complete");
    assert_eq!(complete.code(), Code::FailedPrecondition);
    let err = d
        .desk
        .reject_application(with_token(
            RejectApplicationRequest { name: case.name.clone(), ..Default::default() },
            &d.staff,
        ))
        .await
        .expect_err("reason required");
    assert_eq!(err.code(), Code::InvalidArgument);
    let accepted = d
        .desk
        .accept_application(with_token(
            AcceptApplicationRequest { name: case.name.clone(), materials: id_card(), ..Default::default() },
            &d.staff,
        ))
        .await
        .expect("accept")
        .into_inner();
    assert_eq!(accepted.first_owner, "users/wang", "the first staff member to act owns an app-filed case");
    let err = d
        .desk
        .forward_application(with_token(
            ForwardApplicationRequest { name: case.name.clone(), office: "区民政局".into(), ..Default::default() },
            &d.staff,
        ))
        .await
        .expect_err("guided items are not forwarded");
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Only the applicant withdraws; staff and other residents may not.
    let err = d
        .desk
        .withdraw_application(with_token(
            WithdrawApplicationRequest { name: case.name.clone(), ..Default::default() },
            &d.resident_b,
        ))
        .await
        .expect_err("not theirs");
    assert_eq!(err.code(), Code::PermissionDenied);
    let withdrawn = d
        .desk
        .withdraw_application(with_token(
            WithdrawApplicationRequest { name: case.name.clone(), ..Default::default() },
            &d.resident_a,
        ))
        .await
        .expect("withdraw")
        .into_inner();
    assert_eq!(withdrawn.state, State::Withdrawn as i32);
    let err = d
        .desk
        .start_application(with_token(
            StartApplicationRequest { name: case.name.clone(), ..Default::default() },
            &d.staff,
        ))
        .await
        .expect_err("withdrawn is final");
    assert_eq!(err.code(), Code::FailedPrecondition);
    app.stop().await;
}

#[tokio::test]
async fn residents_see_only_their_own_cases_and_overdue_cases_can_be_listed() {
    let (app, _store) = spawn_app().await;
    let on_the_spot = published_item(app.channel.clone(), "on-the-spot", HandlingMode::HandledHere, 0).await;
    let mut d = desk(app.channel.clone());
    d.desk.create_application(with_token(file(&on_the_spot, ""), &d.resident_a)).await.expect("a files");
    d.desk.create_application(with_token(file(&on_the_spot, ""), &d.resident_b)).await.expect("b files");
    let err = d
        .desk
        .create_application(with_token(file(&on_the_spot, "users/resident-b"), &d.resident_a))
        .await
        .expect_err("a files for b");
    assert_eq!(err.code(), Code::PermissionDenied);

    let list = |t: &str, filter: &str| {
        with_token(ListApplicationsRequest { parent: STREET.into(), filter: filter.into(), ..Default::default() }, t)
    };
    let a_sees = d.desk.list_applications(list(&d.resident_a, "")).await.expect("list").into_inner();
    assert_eq!(a_sees.applications.len(), 1);
    assert_eq!(a_sees.applications[0].applicant, "users/resident-a");
    let staff_sees = d.desk.list_applications(list(&d.staff, "")).await.expect("list").into_inner();
    assert_eq!(staff_sees.applications.len(), 2);
    // Due at the end of today (local): not overdue yet.
    let overdue = d.desk.list_applications(list(&d.staff, "overdue = true")).await.expect("list").into_inner();
    assert!(overdue.applications.is_empty());
    let other_street = token("zhao", &[Role::Cadre], "beijie");
    let err = d.desk.list_applications(list(&other_street, "")).await;
    assert_eq!(err.expect("another street's staff see only their own caseload").into_inner().applications.len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn inquiries_are_recorded_by_staff() {
    let (app, _store) = spawn_app().await;
    let mut d = desk(app.channel.clone());
    let request = |t: &str, question: &str| {
        with_token(
            CreateInquiryRequest {
                parent: STREET.into(),
                inquiry: Some(Inquiry {
                    question: question.into(),
                    answer: "请携带户口簿到三号窗口".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            t,
        )
    };
    let recorded =
        d.desk.create_inquiry(request(&d.staff, "孩子上学需要什么证明？")).await.expect("record").into_inner();
    assert_eq!(recorded.answered_by, "users/wang");
    let err = d.desk.create_inquiry(request(&d.staff, "  ")).await.expect_err("empty question");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = d.desk.create_inquiry(request(&d.resident_a, "?")).await.expect_err("residents do not record");
    assert_eq!(err.code(), Code::PermissionDenied);
    let listed = d
        .desk
        .list_inquiries(with_token(ListInquiriesRequest { parent: STREET.into(), ..Default::default() }, &d.staff))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.inquiries, vec![recorded]);
    app.stop().await;
}
