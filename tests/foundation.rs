//! The foundation end to end: reflection, health, metrics, authentication at the service,
//! idempotent replays and page tokens, on a real server with real clients.

mod common;

use civic_kit::auth::Role;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use civic_proto::catalogue::service_item::{Category, HandlingMode};
use civic_proto::catalogue::{CreateServiceItemRequest, ListServiceItemsRequest, ServiceItem};
use common::{spawn_app, token, with_token};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn draft(title: &str) -> ServiceItem {
    ServiceItem {
        title: title.into(),
        category: Category::Legal as i32,
        handling_mode: HandlingMode::Guided as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn reflection_lists_the_services_in_both_versions_and_health_is_serving() {
    let (app, _store) = spawn_app().await;

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient as V1;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest as V1Request;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse as V1Response;
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(V1Request::ListServices(String::new())),
    };
    let mut stream = V1::new(app.channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("v1")
        .into_inner();
    let Some(Ok(response)) = stream.next().await else { panic!("no v1 reflection answer") };
    let Some(V1Response::ListServicesResponse(list)) = response.message_response else { panic!("not a list") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in
        ["civic.catalogue.v1.CatalogueService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]
    {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }

    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as V1Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol("civic.catalogue.v1.CatalogueService".into())),
    };
    let mut stream = V1Alpha::new(app.channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("v1alpha")
        .into_inner();
    let Some(Ok(response)) = stream.next().await else { panic!("no v1alpha reflection answer") };
    let Some(AlphaResponse::FileDescriptorResponse(files)) = response.message_response else { panic!("not a file") };
    assert!(!files.file_descriptor_proto.is_empty());

    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "civic.catalogue.v1.CatalogueService", civic_kit::server::LIVENESS] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.expect("check").into_inner();
        assert_eq!(status.status, ServingStatus::Serving as i32, "service {service:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_rpcs_by_method_and_code() {
    let (app, _store) = spawn_app().await;
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    let _ = client
        .list_service_items(ListServiceItemsRequest { parent: "streets/zhongjie".into(), ..Default::default() })
        .await
        .expect("list");
    let err = client
        .list_service_items(ListServiceItemsRequest { parent: "nonsense".into(), ..Default::default() })
        .await
        .expect_err("bad parent");
    assert_eq!(err.code(), Code::InvalidArgument);

    let body = reqwest_get(app.http_addr, "/metrics").await;
    let method = "/civic.catalogue.v1.CatalogueService/ListServiceItems";
    assert!(body.contains("# TYPE civic_rpc_requests_total counter"), "{body}");
    assert!(
        body.lines()
            .any(|l| l.starts_with("civic_rpc_requests_total") && l.contains(method) && l.contains("code=\"0\"")),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("civic_rpc_requests_total") && l.contains(method) && l.contains("code=\"3\"")),
        "{body}"
    );
    assert!(body.contains("civic_rpc_duration_seconds_bucket"), "{body}");
    assert_eq!(reqwest_get(app.http_addr, "/readyz").await, "ready");
    app.stop().await;
}

/// The body of a GET that must answer 200.
async fn reqwest_get(addr: std::net::SocketAddr, path: &str) -> String {
    let (status, body) = common::http(addr, "GET", path, "", None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_and_wrong_roles_permission_denied() {
    let (app, _store) = spawn_app().await;
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    let create = || CreateServiceItemRequest {
        parent: "streets/zhongjie".into(),
        service_item: Some(draft("法律咨询")),
        ..Default::default()
    };
    let other_key = civic_kit::auth::AuthSettings {
        dev_key: Some("another-key-that-is-thirty-two-bytes-long".into()),
        ..Default::default()
    };
    let admin = civic_kit::auth::Principal {
        subject: "a".into(),
        roles: vec![Role::Admin],
        street: Some("zhongjie".into()),
        community: None,
        grids: vec![],
    };
    let wrongly_signed =
        civic_kit::auth::mint_dev_token(&other_key, &admin, std::time::Duration::from_secs(60)).expect("mint");
    let wrong_audience = civic_kit::auth::mint_dev_token(
        &civic_kit::auth::AuthSettings {
            dev_key: Some(common::DEV_KEY.into()),
            audience: "elsewhere".into(),
            ..Default::default()
        },
        &admin,
        std::time::Duration::from_secs(60),
    )
    .expect("mint");
    let none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let exp = chrono::Utc::now().timestamp() + 600;
        let claims =
            format!(r#"{{"sub":"a","iss":"civic","aud":"civic","exp":{exp},"roles":["admin"],"street":"zhongjie"}}"#);
        format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), b64.encode(claims))
    };
    for (what, bad) in [
        ("wrong signature", wrongly_signed),
        ("wrong audience", wrong_audience),
        ("alg none", none),
        ("garbage", "x.y.z".into()),
    ] {
        let err = client.create_service_item(with_token(create(), &bad)).await.expect_err(what);
        assert_eq!(err.code(), Code::Unauthenticated, "{what}");
    }
    let err = client.create_service_item(with_token(create(), "")).await.expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated);
    let resident = token("r1", &[Role::Resident], "zhongjie");
    let err = client.create_service_item(with_token(create(), &resident)).await.expect_err("resident");
    assert_eq!(err.code(), Code::PermissionDenied);
    let other_street = token("c1", &[Role::Cadre], "beijie");
    let err = client.create_service_item(with_token(create(), &other_street)).await.expect_err("other street");
    assert_eq!(err.code(), Code::PermissionDenied);
    let cadre = token("c2", &[Role::Cadre], "zhongjie");
    client.create_service_item(with_token(create(), &cadre)).await.expect("cadre of the street may create");
    app.stop().await;
}

#[tokio::test]
async fn a_replayed_request_id_returns_the_first_answer_and_writes_nothing() {
    let (app, _store) = spawn_app().await;
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    let admin = token("a", &[Role::Admin], "zhongjie");
    let request = || CreateServiceItemRequest {
        parent: "streets/zhongjie".into(),
        service_item: Some(draft("人民调解申请")),
        request_id: "6f1c2a52-6c43-4b43-9b7e-1f6d1bb0c1a1".into(),
        ..Default::default()
    };
    let first = client.create_service_item(with_token(request(), &admin)).await.expect("first").into_inner();
    let second = client.create_service_item(with_token(request(), &admin)).await.expect("replay").into_inner();
    assert_eq!(first, second, "the replay returns the first answer, name and etag included");
    let list = client
        .list_service_items(with_token(
            ListServiceItemsRequest {
                parent: "streets/zhongjie".into(),
                filter: "state = DRAFT".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.service_items.len(), 1, "the replay created nothing");

    let mut different = request();
    different.service_item = Some(draft("另一个事项"));
    let err = client.create_service_item(with_token(different, &admin)).await.expect_err("reused id");
    assert_eq!(err.code(), Code::InvalidArgument);
    app.stop().await;
}

#[tokio::test]
async fn a_tampered_or_foreign_page_token_is_invalid_argument() {
    let (app, _store) = spawn_app().await;
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    let admin = token("a", &[Role::Admin], "zhongjie");
    for i in 0..3 {
        let request = CreateServiceItemRequest {
            parent: "streets/zhongjie".into(),
            service_item: Some(draft(&format!("事项{i}"))),
            ..Default::default()
        };
        client.create_service_item(with_token(request, &admin)).await.expect("create");
    }
    let list = |page_token: String, filter: &str| {
        with_token(
            ListServiceItemsRequest {
                parent: "streets/zhongjie".into(),
                page_size: 1,
                page_token,
                filter: filter.into(),
            },
            &admin,
        )
    };
    let first = client.list_service_items(list(String::new(), "state = DRAFT")).await.expect("page 1").into_inner();
    assert!(!first.next_page_token.is_empty());
    let mut tampered = first.next_page_token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let err = client
        .list_service_items(list(String::from_utf8(tampered).expect("ascii"), "state = DRAFT"))
        .await
        .expect_err("tampered");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .list_service_items(list(first.next_page_token.clone(), "category = LEGAL"))
        .await
        .expect_err("another query's token");
    assert_eq!(err.code(), Code::InvalidArgument);
    let second =
        client.list_service_items(list(first.next_page_token, "state = DRAFT")).await.expect("page 2").into_inner();
    assert_ne!(first.service_items[0].name, second.service_items[0].name);
    app.stop().await;
}

#[test]
fn a_bad_config_value_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_civic"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("CIVIC_SERVER__REQUEST_TIMEOUT_MS", "soon")
        .output()
        .expect("run civic");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.request_timeout_ms"), "{stderr}");
}

#[tokio::test]
async fn trace_context_from_the_caller_reaches_the_events_of_the_change() {
    let store = common::Store::fresh().await;
    let config = common::test_config(&store);
    let app = common::spawn_with(config.clone(), civic::Target::All, civic::Options::default()).await;
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    let admin = token("a", &[Role::Admin], "zhongjie");
    let created = client
        .create_service_item(with_token(
            CreateServiceItemRequest {
                parent: "streets/zhongjie".into(),
                service_item: Some(draft("公证办理指引")),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("create")
        .into_inner();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = with_token(
        civic_proto::catalogue::PublishServiceItemRequest { name: created.name, ..Default::default() },
        &admin,
    );
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().expect("header"));
    request.metadata_mut().insert("x-request-id", "req-7f3a".parse().expect("header"));
    let response = client.publish_service_item(request).await.expect("publish");
    assert_eq!(response.metadata().get("x-request-id").and_then(|v| v.to_str().ok()), Some("req-7f3a"));

    let db = civic_kit::db::Db::connect(&config.database_url_for("catalogue"), "catalogue", 1).await.expect("db");
    let traceparent: Option<String> =
        sqlx::query_scalar("select traceparent from civic_outbox where topic = 'catalogue.item.published'")
            .fetch_one(db.reader())
            .await
            .expect("the publish event");
    let traceparent = traceparent.expect("the event carries trace context");
    assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "{traceparent}");
    db.close().await;

    // Without a request id, one is made up and returned.
    let generated = client
        .list_service_items(ListServiceItemsRequest { parent: "streets/zhongjie".into(), ..Default::default() })
        .await
        .expect("list");
    assert!(generated.metadata().get("x-request-id").is_some_and(|v| !v.is_empty()));
    app.stop().await;
}

#[tokio::test]
async fn stopping_reports_not_serving_before_the_drain() {
    let (app, _store) = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest { service: "civic.catalogue.v1.CatalogueService".into() })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("status").expect("open");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let mut alive = health
        .watch(HealthCheckRequest { service: civic_kit::server::LIVENESS.into() })
        .await
        .expect("watch liveness")
        .into_inner();
    assert_eq!(alive.message().await.expect("status").expect("open").status, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(app.stop());
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), watch.message()).await.expect("in time");
    let update = next.expect("the watch stays open until the status changes").expect("an update before the end");
    assert_eq!(update.status, ServingStatus::NotServing as i32);
    // Not ready any more, but alive through the drain: a liveness probe does not kill it.
    let liveness = tokio::time::timeout(std::time::Duration::from_millis(300), alive.message()).await;
    assert!(
        !matches!(liveness, Ok(Ok(Some(ref u))) if u.status != ServingStatus::Serving as i32),
        "liveness changed while draining: {liveness:?}"
    );
    stopping.await.expect("stopped cleanly");
}

#[tokio::test]
async fn grpc_web_requests_are_served_on_the_same_port() {
    use prost::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (app, _store) = spawn_app().await;
    let message = ListServiceItemsRequest { parent: "streets/zhongjie".into(), ..Default::default() }.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let mut stream = tokio::net::TcpStream::connect(app.grpc_addr).await.expect("connect");
    let head = format!(
        "POST /civic.catalogue.v1.CatalogueService/ListServiceItems HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.grpc_addr,
        frame.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(&frame).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: application/grpc-web+proto"), "{text}");
    assert!(text.contains("grpc-status:0"), "the trailer frame reports OK: {text}");
    app.stop().await;
}

#[test]
fn an_otlp_collector_that_never_answers_neither_fails_nor_stalls_civic() {
    use std::io::{BufRead, BufReader};
    // A collector that accepts connections and never says a word.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", blackhole.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_civic"))
        .args(["serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("CIVIC_LOG__FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start civic");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let listening = lines.by_ref().map_while(Result::ok).find(|l| l.contains("\"listening\""));
    assert!(listening.is_some(), "civic started and logged its addresses");
    let started = std::time::Instant::now();
    let pid = child.id().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    let status = child.wait().expect("wait");
    assert!(status.success(), "civic stopped cleanly: {status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "shutdown took {:?}", started.elapsed());
    drop(blackhole);
}
