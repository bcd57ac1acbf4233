//! What civic refuses, as an attacker would probe it: each test here is one finding of a review
//! of the code as an attacker reads it (docs/security.md), shown closed.

mod common;

use civic::{Application, Options, Target};
use civic_kit::auth::{AuthSettings, Principal, Role};
use civic_proto::catalogue::ListServiceItemsRequest;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use common::{Store, with_token};

fn admin() -> Principal {
    Principal {
        subject: "mallory".into(),
        roles: vec![Role::Admin],
        street: Some("zhongjie".into()),
        community: None,
        grids: Vec::new(),
    }
}

/// A target that runs on PostgreSQL or NATS never signs its own tokens unless told to: without
/// a JWKS source it refuses to start, naming `auth.dev_mode`.
#[tokio::test]
async fn a_service_on_postgres_or_nats_without_production_keys_refuses_to_start() {
    let store = Store::fresh().await;
    for (target, database_url, nats_url) in [
        (common::service("catalogue"), "postgres://127.0.0.1:1/unused", ""),
        (Target::Gateway, "", "nats://127.0.0.1:1"),
        (Target::All, "postgres://127.0.0.1:1/unused", ""),
    ] {
        let mut config = common::test_config(&store);
        config.auth = AuthSettings::default();
        config.database_url = database_url.into();
        config.nats_url = nats_url.into();
        config.directory.address_template = "http://civic-{service}:50051".into();
        let refused = Application::build(config, target, Options::default()).await.err().expect("refused");
        let message = format!("{refused:#}");
        assert!(message.contains("auth.dev_mode"), "{}: {message}", target.name());
    }
}

/// Development signing uses a key of its own: a token signed with the page-token secret —
/// which every replica shares and a split deployment keeps in a Secret — is refused. In one
/// process on the embedded store (the laptop default) development signing needs no setting.
#[tokio::test]
async fn the_page_token_secret_never_signs_tokens() {
    let store = Store::fresh().await;
    let mut config = common::test_config(&store);
    config.database_url = String::new();
    config.nats_url = String::new();
    // The laptop default turns development signing on by itself; split processes are told to.
    let dev_mode = if common::split() { Some(true) } else { None };
    config.auth = AuthSettings { dev_mode, ..AuthSettings::default() };
    let dev_key = config.dev_key().expect("the development key");
    let secret = String::from_utf8(config.secret().expect("the secret")).expect("hex");
    let app = common::spawn_with(config, Target::All, Options::default()).await;
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    let list = || ListServiceItemsRequest {
        parent: "streets/zhongjie".into(),
        filter: "state = DRAFT".into(),
        ..Default::default()
    };
    let mint = |key: &str| {
        let settings = AuthSettings { dev_key: Some(key.to_owned()), ..AuthSettings::default() };
        civic_kit::auth::mint_dev_token(&settings, &admin(), std::time::Duration::from_secs(600)).expect("minted")
    };
    let forged = client.list_service_items(with_token(list(), &mint(&secret))).await.expect_err("refused");
    assert_eq!(forged.code(), tonic::Code::Unauthenticated);
    client.list_service_items(with_token(list(), &mint(&dev_key))).await.expect("the development key's token");
    app.stop().await;
}

/// `civic token` mints nothing where tokens come from the identity provider.
#[test]
fn civic_token_refuses_beside_production_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_civic"))
        .args(["token", "--role", "admin", "--data-dir"])
        .arg(dir.path())
        .env("CIVIC_AUTH__JWKS_URL", "https://idp.example/jwks.json")
        .output()
        .expect("run civic");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no token printed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("development tokens only"), "{stderr}");
}

/// Streams are bounded: as many per caller and per process as configured (then
/// RESOURCE_EXHAUSTED with a retry hint), each for as long as configured (then UNAVAILABLE: watch
/// again); a closed stream gives its place back.
#[tokio::test]
async fn streams_are_capped_per_caller_and_per_process_and_end_after_their_lifetime() {
    use civic_proto::catalogue::WatchServiceItemsRequest;
    use tonic_types::StatusExt;
    let store = Store::fresh().await;
    let mut config = common::test_config(&store);
    config.server.max_streams_per_caller = 2;
    config.server.max_streams = 3;
    config.server.stream_lifetime_seconds = 2;
    let app = common::spawn_with(config, Target::All, Options::default()).await;
    let watch = || WatchServiceItemsRequest { parent: "streets/zhongjie".into() };
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    let first = client.watch_service_items(watch()).await.expect("first").into_inner();
    let _second = client.watch_service_items(watch()).await.expect("second").into_inner();
    let refused = client.watch_service_items(watch()).await.expect_err("a third of the same caller");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.get_details_retry_info().and_then(|r| r.retry_delay).is_some(), "with a retry hint");
    // Another caller has places of its own, until the process's cap.
    let user = common::token("u", &[Role::Resident], "zhongjie");
    let _third = client.watch_service_items(with_token(watch(), &user)).await.expect("another caller").into_inner();
    let full = client.watch_service_items(with_token(watch(), &user)).await.expect_err("the process is full");
    assert_eq!(full.code(), tonic::Code::ResourceExhausted);
    // A closed stream gives its place back.
    drop(first);
    let mut again = None;
    for _ in 0..100 {
        if let Ok(stream) = client.watch_service_items(watch()).await {
            again = Some(stream.into_inner());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut again = again.expect("a place freed by the closed stream");
    // A stream ends at its lifetime, telling the client to watch again.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match again.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return tonic::Code::Ok,
                Err(status) => return status.code(),
            }
        }
    })
    .await
    .expect("the stream ended");
    assert_eq!(ended, tonic::Code::Unavailable);
    app.stop().await;
}

/// Behind no trusted proxy, a client cannot pose as many by sending `X-Forwarded-For`: its
/// address is its connection's. Behind a trusted one, each forwarded address counts alone.
#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    async fn get(addr: std::net::SocketAddr, forwarded_for: &str) -> String {
        let head = format!(
            "GET /v1/streets/zhongjie/items HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: {forwarded_for}\r\n\r\n"
        );
        common::exchange(addr, &head).await.chars().take(12).collect()
    }
    for trusted in [false, true] {
        let store = Store::fresh().await;
        let mut config = common::test_config(&store);
        config.gateway.address_rate_per_second = 0.1;
        config.gateway.address_burst = 2;
        if trusted {
            config.server.trusted_proxies = vec!["127.0.0.1/32".into(), "::1/128".into()];
        }
        let app = common::spawn_with(config, Target::All, Options::default()).await;
        let mut statuses = Vec::new();
        for n in 0..4 {
            statuses.push(get(app.http_addr, &format!("198.51.100.{n}")).await);
        }
        let limited = statuses.iter().filter(|s| s.contains("429")).count();
        if trusted {
            assert_eq!(limited, 0, "four clients behind a trusted proxy: {statuses:?}");
        } else {
            assert_eq!(limited, 2, "one client, whatever it says: {statuses:?}");
        }
        app.stop().await;
    }
}

/// A client's request id is kept only when it is sane: an overlong one is replaced.
#[tokio::test]
async fn an_overlong_request_id_is_replaced() {
    use civic_proto::catalogue::GetServiceItemRequest;
    let (app, _store) = common::spawn_app().await;
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    for (sent, kept) in [("req-7f3a".to_owned(), true), ("x".repeat(4096), false)] {
        let mut request = tonic::Request::new(GetServiceItemRequest { name: "streets/zhongjie/items/none".into() });
        request.metadata_mut().insert("x-request-id", sent.parse().expect("header"));
        let err = client.get_service_item(request).await.expect_err("no such item");
        let echoed = err.metadata().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(echoed == sent, kept, "{} chars", sent.len());
        assert!(!echoed.is_empty() && echoed.len() <= 128);
    }
    let (status, _) = common::http(app.http_addr, "GET", "/v1/streets/zhongjie/items", "", None).await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// Calls to paths no service has are labelled `unknown` in the metrics, whatever they are
/// answered: an attacker cannot grow the label set.
#[tokio::test]
async fn metrics_label_only_known_methods() {
    let (app, _store) = common::spawn_app().await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    for n in 0..5 {
        grpc.ready().await.expect("ready");
        let path: http::uri::PathAndQuery = format!("/attacker.Service{n}/Method{n}").parse().expect("path");
        let codec = tonic_prost::ProstCodec::<String, String>::default();
        let err = grpc.unary(tonic::Request::new(String::new()), path, codec).await.expect_err("no such method");
        assert_eq!(err.code(), tonic::Code::Unimplemented);
    }
    let (_, metrics) = common::http(app.http_addr, "GET", "/metrics", "", None).await;
    assert!(!metrics.contains("attacker"), "unknown paths are not labels");
    assert!(metrics.lines().any(|l| l.contains("method=\"unknown\"")), "they are counted as unknown");
    app.stop().await;
}

/// `civic config` shows whether credentials are set, never what they are.
#[test]
fn civic_config_hides_credentials() {
    let dir = tempfile::tempdir().expect("dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_civic"))
        .args(["config", "--data-dir"])
        .arg(dir.path())
        .env("CIVIC_DATABASE_URL", "postgres://civic:pg-s3cret@db.internal:5432/civic")
        .env("CIVIC_NATS_URL", "nats://nats-t0ken@nats.internal:4222")
        .env("CIVIC_AUTH__JWKS_URL", "https://idp.example/jwks.json")
        .env("CIVIC_SECRET_KEY", "page-token-secret-of-at-least-32-bytes")
        .output()
        .expect("run civic");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    for secret in ["pg-s3cret", "nats-t0ken", "page-token-secret"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    assert!(printed.contains("db.internal"), "the rest of the URL is shown");
}

/// Where callers are not trusted with tracing, a caller's `traceparent` is not continued: the
/// change's event carries a trace of this process's own.
#[tokio::test]
async fn an_untrusted_callers_trace_is_not_continued() {
    use civic_proto::catalogue::{CreateServiceItemRequest, ServiceItem};
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    for trusted in [true, false] {
        let store = Store::fresh().await;
        let mut config = common::test_config(&store);
        config.server.trust_traceparent = trusted;
        let app = common::spawn_with(config.clone(), Target::All, Options::default()).await;
        let mut client = CatalogueServiceClient::new(app.channel.clone());
        let admin = common::token("a", &[Role::Admin], "zhongjie");
        let item = ServiceItem {
            title: "公证办理指引".into(),
            category: civic_proto::catalogue::service_item::Category::Legal as i32,
            handling_mode: civic_proto::catalogue::service_item::HandlingMode::Guided as i32,
            ..Default::default()
        };
        let created = client
            .create_service_item(with_token(
                CreateServiceItemRequest {
                    parent: "streets/zhongjie".into(),
                    service_item: Some(item),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .expect("create")
            .into_inner();
        let mut request = with_token(
            civic_proto::catalogue::PublishServiceItemRequest { name: created.name, ..Default::default() },
            &admin,
        );
        request
            .metadata_mut()
            .insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().expect("header"));
        client.publish_service_item(request).await.expect("publish");
        let db = civic_kit::db::Db::connect(&config.database_url_for("catalogue"), "catalogue", 1).await.expect("db");
        let traceparent: Option<String> =
            sqlx::query_scalar("select traceparent from civic_outbox where topic = 'catalogue.item.published'")
                .fetch_one(db.reader())
                .await
                .expect("the event");
        db.close().await;
        let continued = traceparent.is_some_and(|tp| tp.contains(trace_id));
        assert_eq!(continued, trusted, "trust_traceparent = {trusted}");
        app.stop().await;
    }
}
