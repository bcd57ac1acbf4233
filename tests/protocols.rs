//! Every catalogue and desk RPC three ways — native gRPC on the gRPC address, gRPC-Web and
//! HTTP/JSON on the HTTP address — with the same answers. Writes are made once per protocol on
//! resources of their own and compared with the resource's own id, times and etag left out;
//! reads are made of the same resource and compared whole.

mod common;

use std::net::SocketAddr;

use civic_kit::auth::Role;
use civic_proto::catalogue::application::State as AppState;
use civic_proto::catalogue::service_item::{Category, HandlingMode, State as ItemState};
use civic_proto::catalogue::*;
use common::{http, spawn_app, token, with_token};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Native,
    Web,
    Json,
}

const VIAS: [Via; 3] = [Via::Native, Via::Web, Via::Json];

impl Via {
    fn tag(self) -> &'static str {
        match self {
            Via::Native => "native",
            Via::Web => "web",
            Via::Json => "json",
        }
    }
}

/// An HTTP rule applied by hand: the method, the path with its query, and the body.
struct Rule {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

fn get(path: impl Into<String>) -> Rule {
    Rule { method: "GET", path: path.into(), body: None }
}

fn post(path: impl Into<String>, body: Value) -> Rule {
    Rule { method: "POST", path: path.into(), body: Some(body) }
}

type WebClient = tonic_web::GrpcWebClientService<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic_web::GrpcWebCall<tonic::body::Body>,
    >,
>;

/// The three ways in.
struct Ways {
    channel: Channel,
    web: WebClient,
    http: SocketAddr,
}

impl Ways {
    fn new(app: &common::TestApp) -> Self {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let web = tower::ServiceBuilder::new().layer(tonic_web::GrpcWebClientLayer::new()).service(client);
        Self { channel: app.channel.clone(), web, http: app.http_addr }
    }

    /// Calls `method` (`/package.Service/Method`) with `request` over `via`, as `token`.
    async fn call<Req, Resp>(
        &self,
        via: Via,
        method: &'static str,
        request: Req,
        rule: Rule,
        token: &str,
    ) -> Result<Resp, Code>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + DeserializeOwned + Send + Sync + 'static,
    {
        let path = http::uri::PathAndQuery::from_static(method);
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        match via {
            Via::Native => {
                let mut grpc = tonic::client::Grpc::new(self.channel.clone());
                grpc.ready().await.map_err(|_| Code::Unavailable)?;
                grpc.unary(with_token(request, token), path, codec).await.map(|r| r.into_inner()).map_err(|s| s.code())
            }
            Via::Web => {
                let origin: http::Uri = format!("http://{}", self.http).parse().expect("origin");
                let mut grpc = tonic::client::Grpc::with_origin(self.web.clone(), origin);
                grpc.ready().await.map_err(|_| Code::Unavailable)?;
                grpc.unary(with_token(request, token), path, codec).await.map(|r| r.into_inner()).map_err(|s| s.code())
            }
            Via::Json => {
                let body = rule.body.map(|b| b.to_string());
                let (status, body) = http(self.http, rule.method, &rule.path, token, body.as_deref()).await;
                if status == 200 {
                    Ok(serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method}: not the answer ({e}): {body}")))
                } else {
                    let status: Value = serde_json::from_str(&body).expect("a google.rpc.Status");
                    Err(Code::from_i32(status["code"].as_i64().expect("a code") as i32))
                }
            }
        }
    }
}

/// The message as JSON with what differs between resources of the same content — the
/// top-level name, the times, the etag — left out.
fn content<T: Serialize>(message: &T) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|k, _| !k.ends_with("Time") && k != "time" && k != "etag" && k != "firstOwner");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(message).expect("JSON");
    if let Value::Object(map) = &mut value {
        map.remove("name");
    }
    strip(&mut value);
    value
}

/// All three answers have the same content.
fn same_content<T: Serialize + std::fmt::Debug>(what: &str, answers: &[T]) {
    assert_eq!(answers.len(), 3, "{what}: three answers");
    let first = content(&answers[0]);
    for (i, answer) in answers.iter().enumerate().skip(1) {
        assert_eq!(content(answer), first, "{what}: {:?} differs from native", VIAS[i]);
    }
}

/// All three answers are the same message.
fn identical<T: PartialEq + std::fmt::Debug>(what: &str, answers: &[T]) {
    for (i, answer) in answers.iter().enumerate().skip(1) {
        assert_eq!(answer, &answers[0], "{what}: {:?} differs from native", VIAS[i]);
    }
}

fn item_json(item: &ServiceItem) -> Value {
    serde_json::to_value(item).expect("JSON")
}

#[tokio::test]
async fn every_catalogue_rpc_answers_the_same_over_grpc_grpc_web_and_http() {
    let (app, _store) = spawn_app().await;
    let ways = Ways::new(&app);
    let admin = token("admin", &[Role::Admin], "zhongjie");
    let draft = ServiceItem {
        title: "社区茶室预约".into(),
        title_en: "Tea room booking".into(),
        category: Category::Culture as i32,
        handling_mode: HandlingMode::HandledHere as i32,
        summary: "居民可预约社区茶室".into(),
        materials: vec![common::id_card()],
        steps: vec![Step { title: "登记".into(), actor: "社区工作人员".into(), ..Default::default() }],
        ..Default::default()
    };

    // CreateServiceItem: one item per protocol.
    let mut created: Vec<ServiceItem> = Vec::new();
    for via in VIAS {
        let id = format!("tea-{}", via.tag());
        let request = CreateServiceItemRequest {
            parent: STREET.into(),
            service_item: Some(draft.clone()),
            service_item_id: id.clone(),
            request_id: format!("create-{id}"),
        };
        let rule = post(format!("/v1/{STREET}/items?serviceItemId={id}&requestId=create-{id}"), item_json(&draft));
        let answer: ServiceItem = ways
            .call(via, "/civic.catalogue.v1.CatalogueService/CreateServiceItem", request, rule, &admin)
            .await
            .expect("create");
        assert_eq!(answer.name, format!("{STREET}/items/{id}"));
        created.push(answer);
    }
    same_content("CreateServiceItem", &created);

    // GetServiceItem: the same item three ways.
    let mut got: Vec<ServiceItem> = Vec::new();
    for via in VIAS {
        let name = created[0].name.clone();
        let rule = get(format!("/v1/{name}"));
        let request = GetServiceItemRequest { name };
        got.push(
            ways.call(via, "/civic.catalogue.v1.CatalogueService/GetServiceItem", request, rule, &admin)
                .await
                .expect("get"),
        );
    }
    identical("GetServiceItem", &got);
    assert_eq!(got[0], created[0]);

    // UpdateServiceItem on each protocol's own item.
    let mut updated: Vec<ServiceItem> = Vec::new();
    for (via, item) in VIAS.into_iter().zip(&created) {
        let change = ServiceItem {
            name: item.name.clone(),
            summary: "请提前一天预约".into(),
            etag: item.etag.clone(),
            ..Default::default()
        };
        let rule = Rule {
            method: "PATCH",
            path: format!("/v1/{}?updateMask=summary", item.name),
            body: Some(json!({"summary": change.summary, "etag": change.etag})),
        };
        let request = UpdateServiceItemRequest {
            service_item: Some(change),
            update_mask: Some(pbjson_types::FieldMask { paths: vec!["summary".into()] }),
            request_id: String::new(),
        };
        updated.push(
            ways.call(via, "/civic.catalogue.v1.CatalogueService/UpdateServiceItem", request, rule, &admin)
                .await
                .expect("update"),
        );
    }
    same_content("UpdateServiceItem", &updated);
    assert_eq!(updated[0].summary, "请提前一天预约");

    // PublishServiceItem.
    let mut published: Vec<ServiceItem> = Vec::new();
    for (via, item) in VIAS.into_iter().zip(&updated) {
        let rule = post(format!("/v1/{}:publish", item.name), json!({"etag": item.etag}));
        let request =
            PublishServiceItemRequest { name: item.name.clone(), etag: item.etag.clone(), ..Default::default() };
        published.push(
            ways.call(via, "/civic.catalogue.v1.CatalogueService/PublishServiceItem", request, rule, &admin)
                .await
                .expect("publish"),
        );
    }
    same_content("PublishServiceItem", &published);
    assert_eq!(published[0].state, ItemState::Published as i32);

    // ListServiceItems, SearchServiceItems, ListServiceItemRevisions: reads, compared whole.
    let mut lists: Vec<ListServiceItemsResponse> = Vec::new();
    for via in VIAS {
        let request = ListServiceItemsRequest { parent: STREET.into(), page_size: 2, ..Default::default() };
        lists.push(
            ways.call(
                via,
                "/civic.catalogue.v1.CatalogueService/ListServiceItems",
                request,
                get(format!("/v1/{STREET}/items?pageSize=2")),
                "",
            )
            .await
            .expect("list"),
        );
    }
    assert_eq!(lists[0].service_items.len(), 2);
    // Page tokens are sealed with a fresh nonce each time: compare the pages, then follow one.
    for list in &lists[1..] {
        assert_eq!(list.service_items, lists[0].service_items);
        assert!(!list.next_page_token.is_empty());
    }
    let mut searches: Vec<SearchServiceItemsResponse> = Vec::new();
    for via in VIAS {
        let request = SearchServiceItemsRequest { parent: STREET.into(), query: "茶室".into(), ..Default::default() };
        let rule = get(format!("/v1/{STREET}/items:search?query=%E8%8C%B6%E5%AE%A4"));
        searches.push(
            ways.call(via, "/civic.catalogue.v1.CatalogueService/SearchServiceItems", request, rule, "")
                .await
                .expect("search"),
        );
    }
    identical("SearchServiceItems", &searches);
    assert_eq!(searches[0].service_items.len(), 3);
    let mut revisions: Vec<ListServiceItemRevisionsResponse> = Vec::new();
    for via in VIAS {
        let name = published[0].name.clone();
        let rule = get(format!("/v1/{name}:listRevisions"));
        let request = ListServiceItemRevisionsRequest { name, ..Default::default() };
        revisions.push(
            ways.call(via, "/civic.catalogue.v1.CatalogueService/ListServiceItemRevisions", request, rule, "")
                .await
                .unwrap_or_else(|c| panic!("revisions over {via:?}: {c:?}")),
        );
    }
    identical("ListServiceItemRevisions", &revisions);
    assert!(!revisions[0].revisions.is_empty());

    // RetireServiceItem.
    let mut retired: Vec<ServiceItem> = Vec::new();
    for (via, item) in VIAS.into_iter().zip(&published) {
        let rule = post(format!("/v1/{}:retire", item.name), json!({}));
        let request = RetireServiceItemRequest { name: item.name.clone(), ..Default::default() };
        retired.push(
            ways.call(via, "/civic.catalogue.v1.CatalogueService/RetireServiceItem", request, rule, &admin)
                .await
                .expect("retire"),
        );
    }
    same_content("RetireServiceItem", &retired);
    assert_eq!(retired[0].state, ItemState::Retired as i32);

    // DeleteServiceItem: fresh drafts, one per protocol; then each is gone.
    for via in VIAS {
        let id = format!("scratch-{}", via.tag());
        let mut grpc =
            civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient::new(app.channel.clone());
        let request = CreateServiceItemRequest {
            parent: STREET.into(),
            service_item: Some(draft.clone()),
            service_item_id: id.clone(),
            request_id: String::new(),
        };
        let scratch = grpc.create_service_item(with_token(request, &admin)).await.expect("create").into_inner();
        let rule = Rule { method: "DELETE", path: format!("/v1/{}", scratch.name), body: None };
        let request = DeleteServiceItemRequest { name: scratch.name.clone(), ..Default::default() };
        let _: pbjson_types::Empty = ways
            .call(via, "/civic.catalogue.v1.CatalogueService/DeleteServiceItem", request, rule, &admin)
            .await
            .expect("delete");
        let gone = grpc.get_service_item(with_token(GetServiceItemRequest { name: scratch.name }, &admin)).await;
        assert_eq!(gone.expect_err("deleted").code(), Code::NotFound, "{via:?}");
    }

    // The same refusals: a malformed name, a missing token, a wrong role.
    for via in VIAS {
        let bad = ways
            .call::<_, ServiceItem>(
                via,
                "/civic.catalogue.v1.CatalogueService/PublishServiceItem",
                PublishServiceItemRequest { name: "streets/zhongjie/items/x".into(), ..Default::default() },
                post("/v1/streets/zhongjie/items/x:publish", json!({})),
                "",
            )
            .await;
        assert_eq!(bad, Err(Code::Unauthenticated), "{via:?}");
        let resident = token("r", &[Role::Resident], "zhongjie");
        let bad = ways
            .call::<_, ServiceItem>(
                via,
                "/civic.catalogue.v1.CatalogueService/PublishServiceItem",
                PublishServiceItemRequest { name: created[0].name.clone(), ..Default::default() },
                post(format!("/v1/{}:publish", created[0].name), json!({})),
                &resident,
            )
            .await;
        assert_eq!(bad, Err(Code::PermissionDenied), "{via:?}");
        let bad = ways
            .call::<_, ServiceItem>(
                via,
                "/civic.catalogue.v1.CatalogueService/GetServiceItem",
                GetServiceItemRequest { name: "streets/zhongjie/items/no-such-item".into() },
                get("/v1/streets/zhongjie/items/no-such-item"),
                &admin,
            )
            .await;
        assert_eq!(bad, Err(Code::NotFound), "{via:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_watch_stream_is_the_same_over_grpc_grpc_web_and_http() {
    use tokio_stream::StreamExt;
    let store = common::Store::fresh().await;
    let app = common::spawn_on(&store, civic::Target::All, civic::Options { seed: true, ..Default::default() }).await;
    let ways = Ways::new(&app);
    let request = || WatchServiceItemsRequest { parent: STREET.into() };
    let path = http::uri::PathAndQuery::from_static("/civic.catalogue.v1.CatalogueService/WatchServiceItems");
    let until_current = async |mut stream: tonic::Streaming<WatchServiceItemsResponse>| {
        let mut seen = Vec::new();
        while let Some(message) = stream.next().await {
            let message = message.expect("a change");
            let current = message.change_type == watch_service_items_response::ChangeType::Current as i32;
            seen.push(message);
            if current {
                break;
            }
        }
        seen
    };
    let codec = || tonic_prost::ProstCodec::<WatchServiceItemsRequest, WatchServiceItemsResponse>::default();
    let mut native = tonic::client::Grpc::new(ways.channel.clone());
    native.ready().await.expect("ready");
    let native = until_current(
        native
            .server_streaming(tonic::Request::new(request()), path.clone(), codec())
            .await
            .expect("watch")
            .into_inner(),
    )
    .await;
    let origin: http::Uri = format!("http://{}", ways.http).parse().expect("origin");
    let mut web = tonic::client::Grpc::with_origin(ways.web.clone(), origin);
    web.ready().await.expect("ready");
    let web = until_current(
        web.server_streaming(tonic::Request::new(request()), path, codec()).await.expect("watch").into_inner(),
    )
    .await;
    assert!(native.len() > 40, "the seeded catalogue, then CURRENT: {}", native.len());
    assert_eq!(web, native);

    // HTTP: newline-delimited JSON, read until CURRENT.
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(ways.http).await.expect("connect");
    let head = format!("GET /v1/{STREET}/items:watch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let mut json_answers: Vec<WatchServiceItemsResponse> = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str::<WatchServiceItemsResponse>(&line) else { continue };
        let current = message.change_type == watch_service_items_response::ChangeType::Current as i32;
        json_answers.push(message);
        if current {
            break;
        }
    }
    assert_eq!(json_answers, native);
    app.stop().await;
}

#[tokio::test]
async fn every_desk_rpc_answers_the_same_over_grpc_grpc_web_and_http() {
    let (app, _store) = spawn_app().await;
    let ways = Ways::new(&app);
    let admin = token("admin", &[Role::Admin], "zhongjie");
    let staff = token("wang", &[Role::Cadre], "zhongjie");
    let resident = token("resident-a", &[Role::Resident], "zhongjie");
    let mut catalogue =
        civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient::new(app.channel.clone());
    let mut item_names = Vec::new();
    for (id, mode) in [("allowance", HandlingMode::OnBehalf), ("stamp", HandlingMode::HandledHere)] {
        let item = ServiceItem {
            title: "高龄津贴申领".into(),
            category: Category::GovernmentAffairs as i32,
            handling_mode: mode as i32,
            materials: vec![common::id_card()],
            promised_days: 5,
            ..Default::default()
        };
        let request = CreateServiceItemRequest {
            parent: STREET.into(),
            service_item: Some(item),
            service_item_id: id.into(),
            request_id: String::new(),
        };
        let item = catalogue.create_service_item(with_token(request, &admin)).await.expect("create").into_inner();
        let request = PublishServiceItemRequest { name: item.name.clone(), ..Default::default() };
        catalogue.publish_service_item(with_token(request, &admin)).await.expect("publish");
        item_names.push(item.name);
    }
    let id_card = vec![CheckedMaterial { name: "身份证".into(), provided: true, note: String::new() }];

    // CreateApplication: three per protocol, for the three ends of the lifecycle below.
    let mut apps: Vec<Vec<Application>> = vec![Vec::new(); 3];
    for (i, via) in VIAS.into_iter().enumerate() {
        for n in 0..3 {
            let item = if n == 0 { &item_names[0] } else { &item_names[1] };
            let application =
                Application { service_item: item.clone(), applicant: "users/resident-a".into(), ..Default::default() };
            let request_id = format!("file-{}-{n}", via.tag());
            let rule = post(
                format!("/v1/{STREET}/applications?requestId={request_id}"),
                serde_json::to_value(&application).expect("JSON"),
            );
            let request =
                CreateApplicationRequest { parent: STREET.into(), application: Some(application), request_id };
            let answer: Application = ways
                .call(via, "/civic.catalogue.v1.DeskService/CreateApplication", request, rule, &staff)
                .await
                .expect("file");
            assert_eq!(answer.state, AppState::Received as i32);
            apps[i].push(answer);
        }
    }
    same_content("CreateApplication", &[apps[0][0].clone(), apps[1][0].clone(), apps[2][0].clone()]);

    // GetApplication and ListApplications: reads.
    let mut got: Vec<Application> = Vec::new();
    for via in VIAS {
        let name = apps[0][0].name.clone();
        let rule = get(format!("/v1/{name}"));
        got.push(
            ways.call(
                via,
                "/civic.catalogue.v1.DeskService/GetApplication",
                GetApplicationRequest { name },
                rule,
                &staff,
            )
            .await
            .expect("get"),
        );
    }
    identical("GetApplication", &got);
    let mut lists: Vec<ListApplicationsResponse> = Vec::new();
    for via in VIAS {
        let request = ListApplicationsRequest { parent: STREET.into(), page_size: 100, ..Default::default() };
        let rule = get(format!("/v1/{STREET}/applications?pageSize=100"));
        lists.push(
            ways.call(via, "/civic.catalogue.v1.DeskService/ListApplications", request, rule, &resident)
                .await
                .expect("list"),
        );
    }
    identical("ListApplications", &lists);
    assert_eq!(lists[0].applications.len(), 9, "the resident sees their own applications");

    // Each transition once per protocol on its own applications, compared by content:
    // 0 accept → start → forward → complete; 1 accept → hand over → reject; 2 withdraw.
    let of = |n: usize| [apps[0][n].name.clone(), apps[1][n].name.clone(), apps[2][n].name.clone()];
    let accept = |name: String| AcceptApplicationRequest { name, materials: id_card.clone(), ..Default::default() };
    let accepted = each(&ways, "AcceptApplication", "accept", &staff, of(0), accept).await;
    assert_eq!(accepted[0].state, AppState::Accepted as i32);
    let start = |name: String| StartApplicationRequest { name, ..Default::default() };
    let started = each(&ways, "StartApplication", "start", &staff, of(0), start).await;
    assert_eq!(started[0].state, AppState::InProgress as i32);
    let forward =
        |name: String| ForwardApplicationRequest { name, office: "区民政局".into(), ..Default::default() };
    let forwarded = each(&ways, "ForwardApplication", "forward", &staff, of(0), forward).await;
    assert_eq!(forwarded[0].state, AppState::Forwarded as i32);
    let complete = |name: String| CompleteApplicationRequest { name, note: "已办结".into(), ..Default::default() };
    let completed = each(&ways, "CompleteApplication", "complete", &staff, of(0), complete).await;
    assert_eq!(completed[0].state, AppState::Completed as i32);
    each(&ways, "AcceptApplication", "accept", &staff, of(1), accept).await;
    let hand_over = |name: String| HandOverApplicationRequest {
        name,
        handler: "users/li".into(),
        note: "换班".into(),
        ..Default::default()
    };
    let handed = each(&ways, "HandOverApplication", "handOver", &staff, of(1), hand_over).await;
    assert_eq!(handed[0].handler, "users/li");
    let reject = |name: String| RejectApplicationRequest { name, reason: "材料不全".into(), ..Default::default() };
    let rejected = each(&ways, "RejectApplication", "reject", &staff, of(1), reject).await;
    assert_eq!(rejected[0].state, AppState::Rejected as i32);
    let withdraw = |name: String| WithdrawApplicationRequest { name, note: "不办了".into(), ..Default::default() };
    let withdrawn = each(&ways, "WithdrawApplication", "withdraw", &resident, of(2), withdraw).await;
    assert_eq!(withdrawn[0].state, AppState::Withdrawn as i32);
    // An illegal transition is refused alike.
    for (i, via) in VIAS.into_iter().enumerate() {
        let name = apps[i][2].name.clone();
        let rule = post(format!("/v1/{name}:start"), json!({}));
        let refused = ways
            .call::<_, Application>(
                via,
                "/civic.catalogue.v1.DeskService/StartApplication",
                StartApplicationRequest { name, ..Default::default() },
                rule,
                &staff,
            )
            .await;
        assert_eq!(refused, Err(Code::FailedPrecondition), "{via:?}");
    }

    // Inquiries: created once per protocol, read three ways.
    let mut inquiries: Vec<Inquiry> = Vec::new();
    for via in VIAS {
        let inquiry = Inquiry {
            service_item: item_names[0].clone(),
            question: "要带户口本吗？".into(),
            answer: "带身份证即可".into(),
            ..Default::default()
        };
        let rule = post(format!("/v1/{STREET}/inquiries"), serde_json::to_value(&inquiry).expect("JSON"));
        let request = CreateInquiryRequest { parent: STREET.into(), inquiry: Some(inquiry), request_id: String::new() };
        inquiries.push(
            ways.call(via, "/civic.catalogue.v1.DeskService/CreateInquiry", request, rule, &staff)
                .await
                .expect("inquiry"),
        );
    }
    same_content("CreateInquiry", &inquiries);
    let mut got: Vec<Inquiry> = Vec::new();
    for via in VIAS {
        let name = inquiries[0].name.clone();
        let rule = get(format!("/v1/{name}"));
        got.push(
            ways.call(via, "/civic.catalogue.v1.DeskService/GetInquiry", GetInquiryRequest { name }, rule, &staff)
                .await
                .expect("get inquiry"),
        );
    }
    identical("GetInquiry", &got);
    let mut lists: Vec<ListInquiriesResponse> = Vec::new();
    for via in VIAS {
        let request = ListInquiriesRequest { parent: STREET.into(), page_size: 10, ..Default::default() };
        let rule = get(format!("/v1/{STREET}/inquiries?pageSize=10"));
        lists.push(
            ways.call(via, "/civic.catalogue.v1.DeskService/ListInquiries", request, rule, &staff)
                .await
                .expect("list inquiries"),
        );
    }
    identical("ListInquiries", &lists);
    assert_eq!(lists[0].inquiries.len(), 3);
    app.stop().await;
}

/// One desk transition (`verb`, `POST /v1/{name}:verb`) on each protocol's own application,
/// the HTTP body being the request without its name; the answers have the same content.
async fn each<Req, F>(
    ways: &Ways,
    method: &'static str,
    verb: &str,
    token: &str,
    names: [String; 3],
    make: F,
) -> Vec<Application>
where
    Req: prost::Message + Serialize + Send + Sync + 'static,
    F: Fn(String) -> Req,
{
    let answers = transition("civic.catalogue.v1.DeskService", ways, method, verb, token, names, make).await;
    same_content(method, &answers);
    answers
}

/// A custom method (`verb`, `POST /v1/{name}:verb`) of `service` on each protocol's own
/// resource, the HTTP body being the request without its name.
async fn transition<Req, Resp, F>(
    service: &str,
    ways: &Ways,
    method: &'static str,
    verb: &str,
    token: &str,
    names: [String; 3],
    make: F,
) -> Vec<Resp>
where
    Req: prost::Message + Serialize + Send + Sync + 'static,
    Resp: prost::Message + Default + DeserializeOwned + Send + Sync + 'static,
    F: Fn(String) -> Req,
{
    let path: &'static str = Box::leak(format!("/{service}/{method}").into_boxed_str());
    let mut answers = Vec::new();
    for (via, name) in VIAS.into_iter().zip(names) {
        let request = make(name.clone());
        let mut body = serde_json::to_value(&request).expect("JSON");
        if let Value::Object(map) = &mut body {
            map.remove("name");
        }
        let rule = post(format!("/v1/{name}:{verb}"), body);
        let answer: Resp = ways
            .call(via, path, request, rule, token)
            .await
            .unwrap_or_else(|code| panic!("{method} over {via:?}: {code:?}"));
        answers.push(answer);
    }
    answers
}

/// The grid service's reads and writes three ways: the same answers over gRPC, gRPC-Web and
/// HTTP/JSON, and the same refusal of a bad ID number.
#[tokio::test]
async fn grid_rpcs_answer_the_same_over_grpc_grpc_web_and_http() {
    use civic_proto::grid::grid_service_client::GridServiceClient;
    use civic_proto::grid::roster_service_client::RosterServiceClient;
    use civic_proto::grid::*;
    let (app, _store) = spawn_app().await;
    let ways = Ways::new(&app);
    let admin = token("admin", &[Role::Admin], "zhongjie");
    let worker = token("gw-p", &[Role::GridWorker], "zhongjie");
    let mut grids = GridServiceClient::new(app.channel.clone());
    let mut roster = RosterServiceClient::new(app.channel.clone());
    grids
        .create_community(with_token(
            CreateCommunityRequest {
                parent: STREET.into(),
                community: Some(Community { display_name: "协议社区".into(), ..Default::default() }),
                community_id: "proto".into(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .expect("community");
    let grid = grids
        .create_grid(with_token(
            CreateGridRequest {
                parent: format!("{STREET}/communities/proto"),
                grid: Some(Grid {
                    display_name: "协议网格".into(),
                    boundary:
                        r#"{"type":"Polygon","coordinates":[[[104,30],[104.1,30],[104.1,30.1],[104,30.1],[104,30]]]}"#
                            .into(),
                    workers: vec![Assignment { worker: "users/gw-p".into(), ..Default::default() }],
                    ..Default::default()
                }),
                grid_id: "p1".into(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .expect("grid")
        .into_inner();
    let household = roster
        .create_household(with_token(
            CreateHouseholdRequest {
                parent: STREET.into(),
                household: Some(Household {
                    address: "1单元 101".into(),
                    location: Some(Point { latitude: 30.05, longitude: 104.05 }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .expect("household")
        .into_inner();
    let resident = roster
        .create_resident(with_token(
            CreateResidentRequest {
                parent: household.name.clone(),
                resident: Some(Resident {
                    display_name: "王秀英".into(),
                    id_number: "11010519491231002X".into(),
                    phone: "13812345678".into(),
                    tags: vec!["elderly_alone".into()],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .expect("resident")
        .into_inner();

    let mut located = Vec::new();
    let mut got_grids = Vec::new();
    let mut residents = Vec::new();
    let mut due = Vec::new();
    let mut cards = Vec::new();
    let mut revealed = Vec::new();
    for via in VIAS {
        let request =
            LocateGridRequest { parent: STREET.into(), point: Some(Point { latitude: 30.05, longitude: 104.05 }) };
        let rule = get(format!("/v1/{STREET}:locateGrid?point.latitude=30.05&point.longitude=104.05"));
        let answer: LocateGridResponse =
            ways.call(via, "/civic.grid.v1.GridService/LocateGrid", request, rule, &worker).await.expect("locate");
        located.push(answer);
        let rule = get(format!("/v1/{}", grid.name));
        let answer: Grid = ways
            .call(via, "/civic.grid.v1.GridService/GetGrid", GetGridRequest { name: grid.name.clone() }, rule, &worker)
            .await
            .expect("get grid");
        got_grids.push(answer);
        let rule = get(format!("/v1/{}", resident.name));
        let request = GetResidentRequest { name: resident.name.clone() };
        let answer: Resident =
            ways.call(via, "/civic.grid.v1.RosterService/GetResident", request, rule, &worker).await.expect("resident");
        residents.push(answer);
        let rule = get(format!("/v1/{STREET}/dueVisits?windowDays=8"));
        let request = ListDueVisitsRequest { parent: STREET.into(), window_days: 8, ..Default::default() };
        let answer: ListDueVisitsResponse =
            ways.call(via, "/civic.grid.v1.VisitService/ListDueVisits", request, rule, &worker).await.expect("due");
        due.push(answer);
        let rule = get(format!("/v1/{}/contactCard", household.name));
        let request = GetContactCardRequest { household: household.name.clone() };
        let answer: ContactCard =
            ways.call(via, "/civic.grid.v1.RosterService/GetContactCard", request, rule, &worker).await.expect("card");
        cards.push(answer);
        let rule = post(format!("/v1/{}:reveal", resident.name), json!({"reason": "核实身份信息"}));
        let request = RevealResidentRequest { name: resident.name.clone(), reason: "核实身份信息".into() };
        let answer: Resident = ways
            .call(via, "/civic.grid.v1.RosterService/RevealResident", request, rule, &worker)
            .await
            .expect("reveal");
        revealed.push(answer);
        // The same refusal of a bad ID number, every way.
        let bad =
            Resident { display_name: "李四".into(), id_number: "110105194912310021".into(), ..Default::default() };
        let rule = post(
            format!("/v1/{}/residents", household.name),
            json!({"displayName": "李四", "idNumber": "110105194912310021"}),
        );
        let request =
            CreateResidentRequest { parent: household.name.clone(), resident: Some(bad), request_id: String::new() };
        let refused: Result<Resident, Code> =
            ways.call(via, "/civic.grid.v1.RosterService/CreateResident", request, rule, &admin).await;
        assert_eq!(refused.expect_err("a bad ID number"), Code::InvalidArgument, "{via:?}");
    }
    identical("LocateGrid", &located);
    assert_eq!(located[0].grid, grid.name);
    identical("GetGrid", &got_grids);
    identical("GetResident", &residents);
    assert_eq!(residents[0].id_number, "110***********002X");
    identical("ListDueVisits", &due);
    assert_eq!(due[0].due_visits.len(), 1);
    identical("GetContactCard", &cards);
    identical("RevealResident", &revealed);
    assert_eq!(revealed[0].phone, "13812345678");

    // Writes: a visit each way, the same content.
    let mut visits = Vec::new();
    for via in VIAS {
        let at = chrono::Utc::now() - chrono::Duration::minutes(5);
        let visit = Visit {
            household: household.name.clone(),
            kind: visit::Kind::DoorToDoor as i32,
            visit_time: Some(pbjson_types::Timestamp { seconds: at.timestamp(), nanos: 0 }),
            notes: "一切正常".into(),
            ..Default::default()
        };
        let id = format!("pv-{}", via.tag());
        let rule = post(format!("/v1/{STREET}/visits?visitId={id}"), serde_json::to_value(&visit).expect("JSON"));
        let request =
            CreateVisitRequest { parent: STREET.into(), visit: Some(visit), visit_id: id, request_id: String::new() };
        let answer: Visit =
            ways.call(via, "/civic.grid.v1.VisitService/CreateVisit", request, rule, &worker).await.expect("visit");
        visits.push(answer);
    }
    same_content("CreateVisit", &visits);
    assert_eq!(visits[2].grid, grid.name);
    app.stop().await;
}

/// An issue's content as the three ways compare it: the duplicates each protocol's issue was
/// suggested (the issues filed before it) left out.
fn issue_content(issue: &civic_proto::issues::Issue) -> Value {
    let mut value = content(issue);
    if let Value::Object(map) = &mut value {
        map.remove("possibleDuplicates");
    }
    value
}

fn same_issues(what: &str, answers: &[civic_proto::issues::Issue]) {
    for (i, answer) in answers.iter().enumerate().skip(1) {
        assert_eq!(issue_content(answer), issue_content(&answers[0]), "{what}: {:?} differs from native", VIAS[i]);
    }
}

/// The issues service three ways: an issue filed, carried to its close and read back, with the
/// same answers and the same refusal of bad input over gRPC, gRPC-Web and HTTP/JSON.
#[tokio::test]
async fn issue_rpcs_answer_the_same_over_grpc_grpc_web_and_http() {
    use civic_proto::grid::grid_service_client::GridServiceClient;
    use civic_proto::issues::issue::{Source, State, Triage};
    use civic_proto::issues::*;
    let (app, _store) = spawn_app().await;
    let ways = Ways::new(&app);
    let admin = token("admin", &[Role::Admin], "zhongjie");
    let resident = token("res-p", &[Role::Resident], "zhongjie");
    let mut grids = GridServiceClient::new(app.channel.clone());
    let community = civic_proto::grid::CreateCommunityRequest {
        parent: STREET.into(),
        community: Some(civic_proto::grid::Community { display_name: "协议社区".into(), ..Default::default() }),
        community_id: "proto".into(),
        request_id: String::new(),
    };
    grids.create_community(with_token(community, &admin)).await.expect("community");
    let grid = civic_proto::grid::CreateGridRequest {
        parent: format!("{STREET}/communities/proto"),
        grid: Some(civic_proto::grid::Grid {
            display_name: "协议网格".into(),
            boundary: r#"{"type":"Polygon","coordinates":[[[104,30],[104.1,30],[104.1,30.1],[104,30.1],[104,30]]]}"#
                .into(),
            ..Default::default()
        }),
        grid_id: "p1".into(),
        request_id: String::new(),
    };
    grids.create_grid(with_token(grid, &admin)).await.expect("grid");

    let draft = Issue {
        source: Source::App as i32,
        category: "facilities".into(),
        title: "路灯不亮".into(),
        description: "小区东侧路灯不亮两周了".into(),
        location: Some(Point { latitude: 30.05, longitude: 104.05 }),
        ..Default::default()
    };
    let mut filed = Vec::new();
    for via in VIAS {
        let request = CreateIssueRequest {
            parent: STREET.into(),
            issue: Some(draft.clone()),
            request_id: format!("file-{}", via.tag()),
        };
        let rule = post(
            format!("/v1/{STREET}/issues?requestId=file-{}", via.tag()),
            serde_json::to_value(&draft).expect("JSON"),
        );
        let issue: Issue =
            ways.call(via, "/civic.issues.v1.IssueService/CreateIssue", request, rule, &resident).await.expect("file");
        filed.push(issue);
    }
    same_issues("CreateIssue", &filed);
    assert_eq!(filed[0].grid, format!("{STREET}/communities/proto/grids/p1"));
    let names = || -> [String; 3] { std::array::from_fn(|i| filed[i].name.clone()) };
    let service = "civic.issues.v1.IssueService";
    let steps: Vec<Vec<Issue>> = vec![
        transition(service, &ways, "AcknowledgeIssue", "acknowledge", &admin, names(), |name| {
            AcknowledgeIssueRequest { name, note: "已收到".into(), ..Default::default() }
        })
        .await,
        transition(service, &ways, "TriageIssue", "triage", &admin, names(), |name| TriageIssueRequest {
            name,
            triage: Triage::FixByDeadline as i32,
            ..Default::default()
        })
        .await,
        transition(service, &ways, "ResolveIssue", "resolve", &admin, names(), |name| ResolveIssueRequest {
            name,
            resolution: "已更换灯泡".into(),
            ..Default::default()
        })
        .await,
        transition(service, &ways, "SubmitIssueFeedback", "feedback", &resident, names(), |name| {
            SubmitIssueFeedbackRequest { name, rating: 5, fixed: true, ..Default::default() }
        })
        .await,
    ];
    for (answers, method) in
        steps.iter().zip(["AcknowledgeIssue", "TriageIssue", "ResolveIssue", "SubmitIssueFeedback"])
    {
        same_issues(method, answers);
    }
    assert_eq!(steps[3][0].state(), State::Closed);

    let mut read = Vec::new();
    let mut timelines = Vec::new();
    for (via, name) in VIAS.into_iter().zip(names()) {
        let rule = get(format!("/v1/{name}"));
        let issue: Issue = ways
            .call(
                via,
                "/civic.issues.v1.IssueService/GetIssue",
                GetIssueRequest { name: name.clone() },
                rule,
                &resident,
            )
            .await
            .expect("get");
        read.push(issue);
        let rule = get(format!("/v1/{name}/updates"));
        let request = ListIssueUpdatesRequest { parent: name.clone(), ..Default::default() };
        let updates: ListIssueUpdatesResponse = ways
            .call(via, "/civic.issues.v1.IssueService/ListIssueUpdates", request, rule, &resident)
            .await
            .expect("timeline");
        timelines.push(updates.issue_updates.iter().map(|u| (u.action.clone(), u.text.clone())).collect::<Vec<_>>());
        // The same refusal of an issue without a category, every way.
        let bad = Issue { category: String::new(), ..draft.clone() };
        let rule = post(format!("/v1/{STREET}/issues"), serde_json::to_value(&bad).expect("JSON"));
        let request = CreateIssueRequest { parent: STREET.into(), issue: Some(bad), request_id: String::new() };
        let refused: Result<Issue, Code> =
            ways.call(via, "/civic.issues.v1.IssueService/CreateIssue", request, rule, &resident).await;
        assert_eq!(refused.expect_err("no category"), Code::InvalidArgument, "{via:?}");
    }
    same_issues("GetIssue", &read);
    identical("ListIssueUpdates", &timelines);
    assert!(timelines[0].iter().any(|(action, text)| action == "resolved" && text == "已更换灯泡"));
    app.stop().await;
}

/// The volunteer service three ways: needs placed, taken and read, a recommendation asked for,
/// with the same answers and the same refusal of bad input over gRPC, gRPC-Web and HTTP/JSON.
#[tokio::test]
async fn volunteer_rpcs_answer_the_same_over_grpc_grpc_web_and_http() {
    use civic_proto::volunteer::volunteer_service_client::VolunteerServiceClient;
    use civic_proto::volunteer::*;
    let (app, _store) = spawn_app().await;
    let ways = Ways::new(&app);
    let cadre = common::token_in("cadre-p", &[Role::Cadre], "zhongjie", "proto");
    let resident = token("res-p", &[Role::Resident], "zhongjie");
    let community = format!("{STREET}/communities/proto");
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let volunteer = Volunteer {
        display_name: "李秀英".into(),
        kind: civic_proto::volunteer::volunteer::Kind::Resident as i32,
        community: community.clone(),
        skills: vec!["cleaning".into()],
        ..Default::default()
    };
    let register = CreateVolunteerRequest {
        parent: STREET.into(),
        volunteer: Some(volunteer),
        volunteer_id: "v-p".into(),
        request_id: String::new(),
    };
    client.create_volunteer(with_token(register, &cadre)).await.expect("a volunteer");
    let v = token("v-p", &[Role::Resident], "zhongjie");

    let start = chrono::Utc::now() + chrono::Duration::days(2);
    let stamp = |t: chrono::DateTime<chrono::Utc>| pbjson_types::Timestamp { seconds: t.timestamp(), nanos: 0 };
    let draft = Need {
        kind: civic_proto::volunteer::need::Kind::Activity as i32,
        title: "楼道清洁".into(),
        community: community.clone(),
        required_skills: vec!["cleaning".into()],
        places: 2,
        ..Default::default()
    };
    let mut placed = Vec::new();
    for (n, via) in VIAS.into_iter().enumerate() {
        // Each way's need at an hour of its own, so the volunteer can take all three.
        let at = start + chrono::Duration::hours(3 * n as i64);
        let need = Need {
            start_time: Some(stamp(at)),
            end_time: Some(stamp(at + chrono::Duration::hours(2))),
            ..draft.clone()
        };
        let request = CreateNeedRequest { parent: STREET.into(), need: Some(need.clone()), request_id: String::new() };
        let rule = post(format!("/v1/{STREET}/needs"), serde_json::to_value(&need).expect("JSON"));
        let answer: Need = ways
            .call(via, "/civic.volunteer.v1.VolunteerService/CreateNeed", request, rule, &resident)
            .await
            .expect("placed");
        placed.push(answer);
    }
    same_content("CreateNeed", &placed);
    assert_eq!(placed[0].resident, "users/res-p");

    let names = || -> [String; 3] { std::array::from_fn(|i| placed[i].name.clone()) };
    let claims: Vec<Claim> =
        transition("civic.volunteer.v1.VolunteerService", &ways, "ClaimNeed", "claim", &v, names(), |name| {
            ClaimNeedRequest { name, request_id: String::new() }
        })
        .await;
    for (claim, name) in claims.iter().zip(names()) {
        assert_eq!(
            (claim.need.as_str(), claim.volunteer.as_str(), claim.active),
            (name.as_str(), "streets/zhongjie/volunteers/v-p", true)
        );
    }

    // A fourth need, no one's yet: whom the cadre is recommended for it.
    let at = start + chrono::Duration::hours(12);
    let spare =
        Need { start_time: Some(stamp(at)), end_time: Some(stamp(at + chrono::Duration::hours(2))), ..draft.clone() };
    let request = CreateNeedRequest { parent: STREET.into(), need: Some(spare), request_id: String::new() };
    let spare = client.create_need(with_token(request, &resident)).await.expect("placed").into_inner();
    let mut read = Vec::new();
    let mut ranked = Vec::new();
    for via in VIAS {
        let name = placed[0].name.clone();
        let rule = get(format!("/v1/{name}"));
        let need: Need = ways
            .call(
                via,
                "/civic.volunteer.v1.VolunteerService/GetNeed",
                GetNeedRequest { name: name.clone() },
                rule,
                &cadre,
            )
            .await
            .expect("get");
        read.push(need);
        let rule = get(format!("/v1/{}:recommendVolunteers?pageSize=5", spare.name));
        let request = RecommendVolunteersRequest { name: spare.name.clone(), page_size: 5 };
        let answer: RecommendVolunteersResponse = ways
            .call(via, "/civic.volunteer.v1.VolunteerService/RecommendVolunteers", request, rule, &cadre)
            .await
            .expect("recommend");
        ranked.push(answer);
        // The same refusal of a need without a title, every way.
        let bad = Need {
            title: String::new(),
            start_time: Some(stamp(start)),
            end_time: Some(stamp(start + chrono::Duration::hours(1))),
            ..draft.clone()
        };
        let rule = post(format!("/v1/{STREET}/needs"), serde_json::to_value(&bad).expect("JSON"));
        let request = CreateNeedRequest { parent: STREET.into(), need: Some(bad), request_id: String::new() };
        let refused: Result<Need, Code> =
            ways.call(via, "/civic.volunteer.v1.VolunteerService/CreateNeed", request, rule, &resident).await;
        assert_eq!(refused.expect_err("no title"), Code::InvalidArgument, "{via:?}");
    }
    identical("GetNeed", &read);
    assert_eq!(read[0].claimed, 1);
    identical("RecommendVolunteers", &ranked);
    let best = &ranked[0].recommendations;
    assert_eq!(best.len(), 1, "{:?}", ranked[0]);
    assert_eq!((best[0].volunteer.as_str(), best[0].reasons.len()), ("streets/zhongjie/volunteers/v-p", 5));
    app.stop().await;
}

/// The assessment service three ways: a scheme created, a month recomputed, a review read,
/// adjusted and refused — the same answers over gRPC, gRPC-Web and HTTP/JSON.
#[tokio::test]
async fn assessment_rpcs_answer_the_same_over_grpc_grpc_web_and_http() {
    use civic_proto::assessment::scheme::Weight;
    use civic_proto::assessment::*;
    let (app, _store) = spawn_app().await;
    let ways = Ways::new(&app);
    common::east_street(app.channel.clone()).await;
    let admin = token("admin", &[Role::Admin], "zhongjie");
    let cadre = common::token_in("cadre-e", &[Role::Cadre], "zhongjie", "east");
    let month = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("offset"))
        .format("%Y-%m")
        .to_string();
    const SERVICE: &str = "civic.assessment.v1.AssessmentService";

    let mut schemes = Vec::new();
    for (n, via) in VIAS.into_iter().enumerate() {
        let scheme = Scheme {
            display_name: "考核办法".into(),
            effective_month: month.clone(),
            weights: vec![Weight { indicator: Indicator::HouseholdCoverage as i32, weight: 100.0, target: 0.0 }],
            star_thresholds: vec![60.0, 70.0, 80.0, 90.0, 95.0],
            ..Default::default()
        };
        let id = format!("s-{n}");
        let rule = post(format!("/v1/{STREET}/schemes?schemeId={id}"), serde_json::to_value(&scheme).expect("JSON"));
        let request = CreateSchemeRequest {
            parent: STREET.into(),
            scheme: Some(scheme),
            scheme_id: id,
            request_id: String::new(),
        };
        let answer: Scheme = ways
            .call(via, "/civic.assessment.v1.AssessmentService/CreateScheme", request, rule, &admin)
            .await
            .expect("scheme");
        schemes.push(answer);
    }
    same_content("CreateScheme", &schemes);

    // The month, once gw-1's grid has come in as a fact; then computed the same way thrice.
    let month_name = format!("{STREET}/months/{month}");
    let review = format!("{month_name}/reviews/gw-1");
    let mut client = assessment_service_client::AssessmentServiceClient::new(app.channel.clone());
    let ready = async {
        loop {
            let request = RecomputeMonthRequest { name: month_name.clone(), request_id: String::new() };
            client.recompute_month(with_token(request, &admin)).await.expect("recompute");
            if client.get_review(with_token(GetReviewRequest { name: review.clone() }, &admin)).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), ready).await.expect("the review within 30 s");
    let mut recomputed = Vec::new();
    let mut read = Vec::new();
    for via in VIAS {
        let rule = post(format!("/v1/{month_name}:recompute"), serde_json::json!({}));
        let request = RecomputeMonthRequest { name: month_name.clone(), request_id: String::new() };
        let answer: RecomputeMonthResponse = ways
            .call(via, "/civic.assessment.v1.AssessmentService/RecomputeMonth", request, rule, &admin)
            .await
            .expect("recompute");
        recomputed.push(answer);
        let rule = get(format!("/v1/{review}"));
        let answer: Review = ways
            .call(
                via,
                "/civic.assessment.v1.AssessmentService/GetReview",
                GetReviewRequest { name: review.clone() },
                rule,
                &cadre,
            )
            .await
            .expect("review");
        read.push(answer);
        // The same refusal of an adjustment without a reason, every way.
        let rule = post(format!("/v1/{review}:adjust"), serde_json::json!({"points": 2}));
        let request = AdjustReviewRequest { name: review.clone(), points: 2.0, ..Default::default() };
        let refused: Result<Review, Code> =
            ways.call(via, "/civic.assessment.v1.AssessmentService/AdjustReview", request, rule, &cadre).await;
        assert_eq!(refused.expect_err("no reason"), Code::InvalidArgument, "{via:?}");
    }
    identical("RecomputeMonth", &recomputed);
    identical("GetReview", &read);
    assert_eq!(recomputed[0].computed, 0, "nothing changed");
    let adjusted: Vec<Review> = transition(
        SERVICE,
        &ways,
        "AdjustReview",
        "adjust",
        &cadre,
        [review.clone(), review.clone(), review.clone()],
        |name| AdjustReviewRequest { name, points: 1.0, reason: "表扬".into(), ..Default::default() },
    )
    .await;
    let scores: Vec<f64> = adjusted.iter().map(|r| r.score).collect();
    // No visit yet: the computed score is 0, and each way's adjustment adds its point.
    assert_eq!((read[0].computed_score, scores), (0.0, vec![1.0, 2.0, 3.0]));
    app.stop().await;
}
