//! The HTTP/JSON API: every annotated RPC answers over HTTP with the canonical proto3 JSON
//! mapping, the same as over gRPC, and errors come back with the standard HTTP status and a
//! `google.rpc.Status` body.

mod common;

use civic_kit::auth::Role;
use civic_proto::catalogue::GetServiceItemRequest;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use common::{http, spawn_app, token, with_token};
use serde_json::{Value, json};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn catalogue_methods_answer_over_http_as_over_grpc() {
    let (app, _store) = spawn_app().await;
    let admin = token("a", &[Role::Admin], "zhongjie");
    let item = json!({
        "title": "社区茶室预约",
        "titleEn": "Tea room booking",
        "category": "CULTURE",
        "handlingMode": "HANDLED_HERE",
        "materials": [{"name": "居民身份证", "form": "ORIGINAL", "copies": 1, "required": true}],
        "feeFen": "0"
    });
    let (status, body) = http(
        app.http_addr,
        "POST",
        "/v1/streets/zhongjie/items?serviceItemId=tea-room&requestId=r-1",
        &admin,
        Some(&item.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let created = parse(&body);
    assert_eq!(created["name"], "streets/zhongjie/items/tea-room");
    assert_eq!(created["state"], "DRAFT");
    assert_eq!(created["materials"][0]["form"], "ORIGINAL");

    // The same resource over gRPC.
    let mut grpc = CatalogueServiceClient::new(app.channel.clone());
    let native = grpc
        .get_service_item(with_token(GetServiceItemRequest { name: "streets/zhongjie/items/tea-room".into() }, &admin))
        .await
        .expect("grpc get")
        .into_inner();
    let (status, body) = http(app.http_addr, "GET", "/v1/streets/zhongjie/items/tea-room", &admin, None).await;
    assert_eq!(status, 200);
    // The JSON reads back into exactly the message gRPC returns.
    let fetched: civic_proto::catalogue::ServiceItem = serde_json::from_str(&body).expect("a ServiceItem in JSON");
    assert_eq!(fetched, native);
    assert!(parse(&body)["createTime"].as_str().is_some_and(|t| t.ends_with('Z')), "RFC 3339 in UTC: {body}");

    let (status, body) =
        http(app.http_addr, "POST", "/v1/streets/zhongjie/items/tea-room:publish", &admin, Some("{}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["state"], "PUBLISHED");
    assert_eq!(parse(&body)["revision"], "1", "int64 travels as a string");

    let patch = json!({"summary": "提前一天预约", "etag": parse(&body)["etag"]});
    let (status, body) = http(
        app.http_addr,
        "PATCH",
        "/v1/streets/zhongjie/items/tea-room?updateMask=summary",
        &admin,
        Some(&patch.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["summary"], "提前一天预约");
    assert_eq!(parse(&body)["revision"], "2");

    let (status, body) =
        http(app.http_addr, "GET", "/v1/streets/zhongjie/items:search?query=%E8%8C%B6%E5%AE%A4", "", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["serviceItems"][0]["name"], "streets/zhongjie/items/tea-room");

    let (status, body) =
        http(app.http_addr, "GET", "/v1/streets/zhongjie/items?pageSize=1&filter=category%20%3D%20CULTURE", "", None)
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["serviceItems"].as_array().map(Vec::len), Some(1));
    app.stop().await;
}

#[tokio::test]
async fn errors_carry_the_http_status_and_the_rpc_status() {
    let (app, _store) = spawn_app().await;
    let resident = token("r", &[Role::Resident], "zhongjie");
    let item = json!({"title": "", "category": "CULTURE", "handlingMode": "GUIDED"}).to_string();

    let (status, body) = http(app.http_addr, "POST", "/v1/streets/zhongjie/items", "", Some(&item)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(parse(&body)["code"], 16);

    let (status, _) = http(app.http_addr, "POST", "/v1/streets/zhongjie/items", &resident, Some(&item)).await;
    assert_eq!(status, 403);

    let admin = token("a", &[Role::Admin], "zhongjie");
    let (status, body) = http(app.http_addr, "POST", "/v1/streets/zhongjie/items", &admin, Some(&item)).await;
    assert_eq!(status, 400, "{body}");
    let error = parse(&body);
    assert_eq!(error["code"], 3);
    let details = error["details"].as_array().expect("details");
    assert!(
        details
            .iter()
            .any(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" && d["reason"] == "INVALID_ARGUMENT"),
        "{body}"
    );
    assert!(
        details.iter().any(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest"
            && d["fieldViolations"][0]["field"] == "service_item.title"),
        "{body}"
    );

    for (method, path, body, expected) in [
        ("POST", "/v1/streets/zhongjie/items", Some("{not json"), 400),
        ("POST", "/v1/streets/zhongjie/items", Some(r#"{"category": "NO_SUCH_CATEGORY"}"#), 400),
        ("POST", "/v1/streets/zhongjie/items", Some(r#"{"title": 42}"#), 400),
        ("POST", "/v1/streets/zhongjie/items", Some(r#"{"unknownField": 1}"#), 400),
        ("GET", "/v1/streets/zhongjie/items?pageSize=many", None, 400),
        ("GET", "/v1/streets/zhongjie/items/NOT_AN_ID", None, 400),
        ("GET", "/v1/no/such/path", None, 404),
        ("DELETE", "/v1/streets/zhongjie/items", None, 405),
        ("GET", "/v1/streets/zhongjie/items/missing", None, 404),
    ] {
        let (status, answer) = http(app.http_addr, method, path, &admin, body).await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {answer}");
        assert!(parse(&answer)["message"].is_string(), "{answer}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_watch_stream_comes_as_newline_delimited_json() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (app, _store) = spawn_app().await;
    let admin = token("a", &[Role::Admin], "zhongjie");
    let mut stream = tokio::net::TcpStream::connect(app.http_addr).await.expect("connect");
    let request = format!("GET /v1/streets/zhongjie/items:watch HTTP/1.1\r\nHost: {}\r\n\r\n", app.http_addr);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut lines = BufReader::new(stream).lines();
    let mut next_json = async || -> Value {
        let read = async {
            loop {
                let line = lines.next_line().await.expect("read").expect("stream open");
                if line.starts_with('{') {
                    return parse(&line);
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), read).await.expect("a message in time")
    };
    assert_eq!(next_json().await["changeType"], "CURRENT", "an empty catalogue, then the changes");

    let item = json!({"title": "四点半课堂", "category": "CULTURE", "handlingMode": "HANDLED_HERE"}).to_string();
    let (status, _) =
        http(app.http_addr, "POST", "/v1/streets/zhongjie/items?serviceItemId=after-school", &admin, Some(&item)).await;
    assert_eq!(status, 200);
    let (status, _) =
        http(app.http_addr, "POST", "/v1/streets/zhongjie/items/after-school:publish", &admin, Some("{}")).await;
    assert_eq!(status, 200);
    let change = next_json().await;
    assert_eq!(change["changeType"], "PUBLISHED");
    assert_eq!(change["serviceItem"]["name"], "streets/zhongjie/items/after-school");
    app.stop().await;
}

#[tokio::test]
async fn the_edge_limits_rate_and_body_and_returns_the_request_id() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = common::Store::fresh().await;
    let mut config = common::test_config(&store);
    config.gateway.rate_per_second = 0.5;
    config.gateway.burst = 3;
    config.gateway.address_rate_per_second = 0.5;
    config.gateway.address_burst = 3;
    let app = common::spawn_with(config, civic::Target::All, civic::Options::default()).await;

    // A request id given is returned; none given, one is made up.
    let exchange = async |head: String| {
        let mut stream = tokio::net::TcpStream::connect(app.http_addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        String::from_utf8_lossy(&raw).to_ascii_lowercase()
    };
    let get =
        |extra: &str| format!("GET /v1/streets/zhongjie/items HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    let answer = exchange(get("X-Request-Id: edge-42\r\n")).await;
    assert!(answer.starts_with("http/1.1 200") && answer.contains("x-request-id: edge-42"), "{answer}");
    let answer = exchange(get("")).await;
    assert!(answer.contains("x-request-id: "), "{answer}");

    // The burst is spent (3 requests from this address): the next waits, with a hint.
    let answer = exchange(get("")).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    let answer = exchange(get("")).await;
    assert!(answer.starts_with("http/1.1 429"), "{answer}");
    assert!(answer.contains("retry-after: "), "{answer}");
    assert!(answer.contains("google.rpc.retryinfo"), "{answer}");
    // Every request pays its address first, so a flood of bad tokens costs its sender before
    // any signature is checked: with the address's burst spent, a bad token is 429, not 401.
    let (status, body) = http(app.http_addr, "GET", "/v1/streets/zhongjie/items", "not-a-token", None).await;
    assert_eq!(status, 429, "{body}");
    app.stop().await;

    // With addresses unlimited, a principal has a bucket of its own, shared by all its tokens,
    // and a bad token is refused at the edge, before any service.
    let store = common::Store::fresh().await;
    let mut config = common::test_config(&store);
    config.gateway.rate_per_second = 0.5;
    config.gateway.burst = 3;
    config.gateway.address_rate_per_second = 0.0;
    let app = common::spawn_with(config, civic::Target::All, civic::Options::default()).await;
    let admin = token("a", &[Role::Admin], "zhongjie");
    let (status, _) = http(app.http_addr, "GET", "/v1/streets/zhongjie/items", &admin, None).await;
    assert_eq!(status, 200);
    let same_subject = token("a", &[Role::Cadre], "zhongjie");
    for _ in 0..2 {
        let (status, _) = http(app.http_addr, "GET", "/v1/streets/zhongjie/items", &same_subject, None).await;
        assert_eq!(status, 200);
    }
    let (status, body) = http(app.http_addr, "GET", "/v1/streets/zhongjie/items", &admin, None).await;
    assert_eq!(status, 429, "the principal's burst of 3 is spent: {body}");
    let (status, body) = http(app.http_addr, "GET", "/v1/streets/zhongjie/items", "not-a-token", None).await;
    assert_eq!(status, 401, "{body}");
    let admin = token("b", &[Role::Admin], "zhongjie");

    // Bodies over the limit are refused whole.
    let big = format!(r#"{{"title": "{}"}}"#, "长".repeat(civic_gateway::MAX_BODY / 3 + 10));
    let (status, body) = http(app.http_addr, "POST", "/v1/streets/zhongjie/items", &admin, Some(&big)).await;
    assert_eq!(status, 413, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_request_past_the_gateway_deadline_is_504_and_writes_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = common::Store::fresh().await;
    let mut config = common::test_config(&store);
    config.gateway.request_timeout_ms = 300;
    let app = common::spawn_with(config, civic::Target::All, civic::Options::default()).await;
    let admin = token("a", &[Role::Admin], "zhongjie");

    // A client that announces a body and sends only part of it holds the request past the deadline.
    let mut stream = tokio::net::TcpStream::connect(app.http_addr).await.expect("connect");
    let head = format!(
        "POST /v1/streets/zhongjie/items?serviceItemId=slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\nX-Request-Id: slow-1\r\n\r\n{{\"title\": \"慢"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut raw))
        .await
        .expect("the gateway answers at its deadline, not never")
        .expect("read");
    let answer = String::from_utf8_lossy(&raw[..read]).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 504"), "{answer}");
    assert!(answer.contains("x-request-id: slow-1"), "{answer}");
    assert!(answer.contains(r#""code":4"#), "a google.rpc.Status with DEADLINE_EXCEEDED: {answer}");

    let mut grpc = CatalogueServiceClient::new(app.channel.clone());
    let gone = grpc
        .get_service_item(with_token(GetServiceItemRequest { name: "streets/zhongjie/items/slow".into() }, &admin))
        .await;
    assert_eq!(gone.expect_err("nothing written").code(), tonic::Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn the_http_address_passes_native_grpc_through_with_the_edge_policy() {
    use civic_proto::catalogue::ListServiceItemsRequest;
    let store = common::Store::fresh().await;
    let mut config = common::test_config(&store);
    config.gateway.rate_per_second = 0.5;
    config.gateway.burst = 2;
    let app = common::spawn_with(config, civic::Target::All, civic::Options { seed: true, ..Default::default() }).await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", app.http_addr)).expect("uri").connect_lazy();

    // Health and the services, over HTTP/2 on the HTTP address.
    common::await_serving(channel.clone(), "civic.catalogue.v1.CatalogueService").await;
    let mut grpc = CatalogueServiceClient::new(channel);
    let list = || ListServiceItemsRequest { parent: "streets/zhongjie".into(), page_size: 5, ..Default::default() };
    let items = grpc.list_service_items(list()).await.expect("list over the HTTP address").into_inner();
    assert_eq!(items.service_items.len(), 5);

    // The edge refuses in gRPC's own terms: a bad token, then a spent bucket.
    let refused = grpc.list_service_items(with_token(list(), "not-a-token")).await.expect_err("bad token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let admin = token("a", &[Role::Admin], "zhongjie");
    for _ in 0..2 {
        grpc.list_service_items(with_token(list(), &admin)).await.expect("within the burst");
    }
    let refused = grpc.list_service_items(with_token(list(), &admin)).await.expect_err("over the burst");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let retry = tonic_types::StatusExt::get_details_retry_info(&refused).expect("a retry hint");
    assert!(retry.retry_delay.is_some_and(|d| d.as_secs() >= 1), "{refused:?}");
    app.stop().await;
}
