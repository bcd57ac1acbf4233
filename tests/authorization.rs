//! The authorisation matrix: every RPC of the catalogue and the desk, called by each kind of
//! caller, gets exactly what the rules allow. Unauthenticated callers get UNAUTHENTICATED where
//! a token is needed; authenticated callers without the right get PERMISSION_DENIED; a draft is
//! NOT_FOUND to whoever may not see it, as if it did not exist.

mod common;

use civic_kit::auth::Role;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use civic_proto::catalogue::desk_service_client::DeskServiceClient;
use civic_proto::catalogue::service_item::{Category, HandlingMode};
use civic_proto::catalogue::*;
use common::{TestApp, spawn_app, token, with_token};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";

/// The callers of the matrix, in the order of every expectation row.
const CALLERS: [&str; 6] = ["anonymous", "resident A", "resident B", "staff", "staff of another street", "admin"];

fn tokens() -> [String; 6] {
    [
        String::new(),
        token("resident-a", &[Role::Resident], "zhongjie"),
        token("resident-b", &[Role::Resident], "zhongjie"),
        token("wang", &[Role::Cadre], "zhongjie"),
        token("zhao", &[Role::Cadre], "beijie"),
        token("boss", &[Role::Admin], "zhongjie"),
    ]
}

const OK: Code = Code::Ok;
const UNAUTH: Code = Code::Unauthenticated;
const DENIED: Code = Code::PermissionDenied;
const MISSING: Code = Code::NotFound;
const PRECONDITION: Code = Code::FailedPrecondition;

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

fn check(rpc: &str, got: [Code; 6], expected: [Code; 6]) {
    for ((caller, got), expected) in CALLERS.iter().zip(got).zip(expected) {
        assert_eq!(got, expected, "{rpc} called by {caller}");
    }
}

struct World {
    catalogue: CatalogueServiceClient<Channel>,
    desk: DeskServiceClient<Channel>,
    tokens: [String; 6],
    admin: String,
    counter: usize,
}

impl World {
    fn new(app: &TestApp) -> Self {
        let tokens = tokens();
        let admin = tokens[5].clone();
        Self {
            catalogue: CatalogueServiceClient::new(app.channel.clone()),
            desk: DeskServiceClient::new(app.channel.clone()),
            tokens,
            admin,
            counter: 0,
        }
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}-{}", self.counter)
    }

    async fn draft(&mut self) -> String {
        let id = self.next_id("draft");
        let item = ServiceItem {
            title: "法律咨询".into(),
            category: Category::Legal as i32,
            handling_mode: HandlingMode::OnBehalf as i32,
            materials: vec![common::id_card()],
            ..Default::default()
        };
        let request = CreateServiceItemRequest {
            parent: STREET.into(),
            service_item: Some(item),
            service_item_id: id,
            request_id: String::new(),
        };
        self.catalogue.create_service_item(with_token(request, &self.admin)).await.expect("draft").into_inner().name
    }

    async fn published(&mut self) -> String {
        let name = self.draft().await;
        let request = PublishServiceItemRequest { name: name.clone(), ..Default::default() };
        self.catalogue.publish_service_item(with_token(request, &self.admin)).await.expect("publish");
        name
    }

    /// A case of resident A's, just received.
    async fn case(&mut self, item: &str) -> String {
        let request = CreateApplicationRequest {
            parent: STREET.into(),
            application: Some(Application { service_item: item.into(), ..Default::default() }),
            request_id: String::new(),
        };
        let a = self.tokens[1].clone();
        self.desk.create_application(with_token(request, &a)).await.expect("case").into_inner().name
    }
}

#[tokio::test]
async fn every_catalogue_rpc_allows_exactly_its_callers() {
    let (app, _store) = spawn_app().await;
    let mut w = World::new(&app);
    let published = w.published().await;
    let draft = w.draft().await;
    let t = w.tokens.clone();

    let mut got = [OK; 6];
    for (i, token) in t.iter().enumerate() {
        got[i] = code(
            w.catalogue.get_service_item(with_token(GetServiceItemRequest { name: published.clone() }, token)).await,
        );
    }
    check("GetServiceItem (published)", got, [OK; 6]);

    for (i, token) in t.iter().enumerate() {
        got[i] =
            code(w.catalogue.get_service_item(with_token(GetServiceItemRequest { name: draft.clone() }, token)).await);
    }
    check("GetServiceItem (draft)", got, [MISSING, MISSING, MISSING, OK, MISSING, OK]);

    for (i, token) in t.iter().enumerate() {
        let request = ListServiceItemsRequest { parent: STREET.into(), ..Default::default() };
        got[i] = code(w.catalogue.list_service_items(with_token(request, token)).await);
    }
    check("ListServiceItems", got, [OK; 6]);

    for (i, token) in t.iter().enumerate() {
        let request =
            ListServiceItemsRequest { parent: STREET.into(), filter: "state = DRAFT".into(), ..Default::default() };
        got[i] = code(w.catalogue.list_service_items(with_token(request, token)).await);
    }
    check("ListServiceItems (drafts)", got, [UNAUTH, DENIED, DENIED, OK, DENIED, OK]);

    let editors = [UNAUTH, DENIED, DENIED, OK, DENIED, OK];
    for (i, token) in t.iter().enumerate() {
        let item = ServiceItem {
            title: "新事项".into(),
            category: Category::Culture as i32,
            handling_mode: HandlingMode::Guided as i32,
            ..Default::default()
        };
        let request =
            CreateServiceItemRequest { parent: STREET.into(), service_item: Some(item), ..Default::default() };
        got[i] = code(w.catalogue.create_service_item(with_token(request, token)).await);
    }
    check("CreateServiceItem", got, editors);

    for (i, token) in t.iter().enumerate() {
        let name = w.draft().await;
        let request = UpdateServiceItemRequest {
            service_item: Some(ServiceItem { name, summary: "更新".into(), ..Default::default() }),
            update_mask: Some(pbjson_types::FieldMask { paths: vec!["summary".into()] }),
            request_id: String::new(),
        };
        got[i] = code(w.catalogue.update_service_item(with_token(request, token)).await);
    }
    check("UpdateServiceItem", got, editors);

    for (i, token) in t.iter().enumerate() {
        let name = w.draft().await;
        got[i] = code(
            w.catalogue
                .delete_service_item(with_token(DeleteServiceItemRequest { name, ..Default::default() }, token))
                .await,
        );
    }
    check("DeleteServiceItem", got, editors);

    for (i, token) in t.iter().enumerate() {
        let name = w.draft().await;
        got[i] = code(
            w.catalogue
                .publish_service_item(with_token(PublishServiceItemRequest { name, ..Default::default() }, token))
                .await,
        );
    }
    check("PublishServiceItem", got, editors);

    for (i, token) in t.iter().enumerate() {
        let name = w.published().await;
        got[i] = code(
            w.catalogue
                .retire_service_item(with_token(RetireServiceItemRequest { name, ..Default::default() }, token))
                .await,
        );
    }
    check("RetireServiceItem", got, editors);

    for (i, token) in t.iter().enumerate() {
        let request = SearchServiceItemsRequest { parent: STREET.into(), query: "法律".into(), ..Default::default() };
        got[i] = code(w.catalogue.search_service_items(with_token(request, token)).await);
    }
    check("SearchServiceItems", got, [OK; 6]);

    for (i, token) in t.iter().enumerate() {
        let request = ListServiceItemRevisionsRequest { name: published.clone(), ..Default::default() };
        got[i] = code(w.catalogue.list_service_item_revisions(with_token(request, token)).await);
    }
    check("ListServiceItemRevisions", got, [OK; 6]);

    for (i, token) in t.iter().enumerate() {
        let request = ListServiceItemRevisionsRequest { name: draft.clone(), ..Default::default() };
        got[i] = code(w.catalogue.list_service_item_revisions(with_token(request, token)).await);
    }
    check("ListServiceItemRevisions (draft)", got, [MISSING, MISSING, MISSING, OK, MISSING, OK]);

    for (i, token) in t.iter().enumerate() {
        let request = WatchServiceItemsRequest { parent: STREET.into() };
        got[i] = code(w.catalogue.watch_service_items(with_token(request, token)).await);
    }
    check("WatchServiceItems", got, [OK; 6]);
    app.stop().await;
}

#[tokio::test]
async fn every_desk_rpc_allows_exactly_its_callers() {
    let (app, _store) = spawn_app().await;
    let mut w = World::new(&app);
    let item = w.published().await;
    let t = w.tokens.clone();
    let staff = [UNAUTH, DENIED, DENIED, OK, DENIED, OK];
    let mut got = [OK; 6];

    for (i, token) in t.iter().enumerate() {
        // Staff name the applicant; residents file for themselves.
        let applicant = if i == 3 || i == 5 { "users/resident-a" } else { "" };
        let request = CreateApplicationRequest {
            parent: STREET.into(),
            application: Some(Application {
                service_item: item.clone(),
                applicant: applicant.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        };
        got[i] = code(w.desk.create_application(with_token(request, token)).await);
    }
    check("CreateApplication", got, [UNAUTH, OK, OK, OK, DENIED, OK]);

    let case = w.case(&item).await;
    for (i, token) in t.iter().enumerate() {
        got[i] = code(w.desk.get_application(with_token(GetApplicationRequest { name: case.clone() }, token)).await);
    }
    check("GetApplication", got, [UNAUTH, OK, DENIED, OK, DENIED, OK]);

    let missing = "streets/zhongjie/applications/a00000000000000000000".to_owned();
    for (i, token) in t.iter().enumerate() {
        got[i] = code(w.desk.get_application(with_token(GetApplicationRequest { name: missing.clone() }, token)).await);
    }
    check("GetApplication (no such case)", got, [UNAUTH, DENIED, DENIED, MISSING, DENIED, MISSING]);

    for (i, token) in t.iter().enumerate() {
        let request = ListApplicationsRequest { parent: STREET.into(), ..Default::default() };
        let result = w.desk.list_applications(with_token(request, token)).await;
        got[i] = match &result {
            // Whatever a caller lists, only their own cases or (staff) the street's come back.
            Ok(list) => {
                let apps = &list.get_ref().applications;
                let own = |who: &str| apps.iter().all(|a| a.applicant == who);
                match i {
                    1 => assert!(!apps.is_empty() && own("users/resident-a")),
                    2 => assert!(!apps.is_empty() && own("users/resident-b")),
                    4 => assert!(own("users/zhao")),
                    _ => {
                        assert!(apps.iter().any(|a| a.applicant == "users/resident-b"), "staff see the street's cases")
                    }
                }
                OK
            }
            Err(status) => status.code(),
        };
    }
    check("ListApplications", got, [UNAUTH, OK, OK, OK, OK, OK]);

    for (i, token) in t.iter().enumerate() {
        let name = w.case(&item).await;
        let materials = vec![CheckedMaterial { name: "身份证".into(), provided: true, note: String::new() }];
        let request = AcceptApplicationRequest { name, materials, ..Default::default() };
        got[i] = code(w.desk.accept_application(with_token(request, token)).await);
    }
    check("AcceptApplication", got, staff);

    for (i, token) in t.iter().enumerate() {
        let name = w.case(&item).await;
        let request = HandOverApplicationRequest { name, handler: "users/li".into(), ..Default::default() };
        got[i] = code(w.desk.hand_over_application(with_token(request, token)).await);
    }
    check("HandOverApplication", got, staff);

    for (i, token) in t.iter().enumerate() {
        let name = w.case(&item).await;
        let request = RejectApplicationRequest { name, reason: "材料不全".into(), ..Default::default() };
        got[i] = code(w.desk.reject_application(with_token(request, token)).await);
    }
    check("RejectApplication", got, staff);

    // A received case can be neither started, forwarded nor completed: staff get past the
    // authorisation and meet the lifecycle; everyone else is stopped before it.
    let after_gate = [UNAUTH, DENIED, DENIED, PRECONDITION, DENIED, PRECONDITION];
    for (i, token) in t.iter().enumerate() {
        let name = w.case(&item).await;
        got[i] = code(
            w.desk.start_application(with_token(StartApplicationRequest { name, ..Default::default() }, token)).await,
        );
    }
    check("StartApplication (received)", got, after_gate);
    for (i, token) in t.iter().enumerate() {
        let name = w.case(&item).await;
        let request = ForwardApplicationRequest { name, office: "区民政局".into(), ..Default::default() };
        got[i] = code(w.desk.forward_application(with_token(request, token)).await);
    }
    check("ForwardApplication (received)", got, after_gate);
    for (i, token) in t.iter().enumerate() {
        let name = w.case(&item).await;
        got[i] = code(
            w.desk
                .complete_application(with_token(CompleteApplicationRequest { name, ..Default::default() }, token))
                .await,
        );
    }
    check("CompleteApplication (received)", got, after_gate);

    for (i, token) in t.iter().enumerate() {
        let name = w.case(&item).await;
        got[i] = code(
            w.desk
                .withdraw_application(with_token(WithdrawApplicationRequest { name, ..Default::default() }, token))
                .await,
        );
    }
    check("WithdrawApplication", got, [UNAUTH, OK, DENIED, DENIED, DENIED, DENIED]);

    let mut inquiry = String::new();
    for (i, token) in t.iter().enumerate() {
        let request = CreateInquiryRequest {
            parent: STREET.into(),
            inquiry: Some(Inquiry { question: "几点开门？".into(), answer: "8:30".into(), ..Default::default() }),
            request_id: String::new(),
        };
        let result = w.desk.create_inquiry(with_token(request, token)).await;
        if let Ok(r) = &result {
            inquiry = r.get_ref().name.clone();
        }
        got[i] = code(result);
    }
    check("CreateInquiry", got, staff);

    for (i, token) in t.iter().enumerate() {
        got[i] = code(w.desk.get_inquiry(with_token(GetInquiryRequest { name: inquiry.clone() }, token)).await);
    }
    check("GetInquiry", got, staff);

    for (i, token) in t.iter().enumerate() {
        let request = ListInquiriesRequest { parent: STREET.into(), ..Default::default() };
        got[i] = code(w.desk.list_inquiries(with_token(request, token)).await);
    }
    check("ListInquiries", got, staff);
    app.stop().await;
}
