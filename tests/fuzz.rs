//! Malformed requests generated from the served OpenAPI document — bad path values, wrongly
//! typed query parameters and body fields, broken JSON, wrong content types, bad tokens — by
//! the thousand against a running civic: none may be answered 5xx, none may hang, and none may
//! change anything. The generator is seeded (`CIVIC_FUZZ_SEED`, printed on failure) so a
//! failing case can be replayed; `CIVIC_FUZZ_CASES` sets how many cases run.

mod common;

use std::time::Duration;

use civic_kit::auth::Role;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use civic_proto::catalogue::desk_service_client::DeskServiceClient;
use civic_proto::catalogue::{ListApplicationsRequest, ListInquiriesRequest, ListServiceItemsRequest};
use common::{Rng, token, with_token};
use serde_json::{Value, json};

/// One API operation from the document.
struct Operation {
    method: String,
    path: String,
    path_params: Vec<String>,
    query: Vec<(String, Value)>,
    body: Option<Value>,
}

/// Resolves `#/components/schemas/...` references (one level at a time, as needed).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if !["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                continue;
            }
            let mut path_params = Vec::new();
            let mut query = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().expect("a parameter name").to_owned();
                match p["in"].as_str() {
                    Some("path") => path_params.push(name),
                    Some("query") => query.push((name, resolve(doc, &p["schema"]).clone())),
                    _ => {}
                }
            }
            let body = op["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|_| resolve(doc, &op["requestBody"]["content"]["application/json"]["schema"]).clone());
            out.push(Operation { method: method.to_uppercase(), path: path.clone(), path_params, query, body });
        }
    }
    out
}

/// A value of the wrong type for `schema`.
fn wrong_value(rng: &mut Rng, schema: &Value) -> Value {
    let kind = schema["type"].as_str().unwrap_or(if schema.get("enum").is_some() { "string" } else { "object" });
    let choices: Vec<Value> = match (kind, schema.get("enum").is_some()) {
        ("string", true) => vec![json!("NO_SUCH_VALUE"), json!(true), json!({"a": 1}), json!(3.5)],
        ("string", false) => vec![json!(12), json!(true), json!({"a": 1}), json!([1, 2])],
        ("integer", _) => vec![json!("abc"), json!(true), json!({}), json!(1.5), json!("1e999")],
        ("number", _) => vec![json!("abc"), json!(true), json!({})],
        ("boolean", _) => vec![json!("yes"), json!(2), json!({})],
        ("array", _) => vec![json!("x"), json!(5), json!({"a": 1})],
        _ => vec![json!(5), json!("x"), json!([1]), json!(true)],
    };
    rng.pick(&choices).clone()
}

/// A query value that cannot parse as `schema`'s type.
fn wrong_query(rng: &mut Rng, schema: &Value) -> String {
    let choices: &[&str] = match schema["type"].as_str() {
        Some("integer") => &["abc", "1.5", "99999999999999999999999", "", "%FF"],
        Some("boolean") => &["maybe", "2", "%00"],
        _ if schema.get("enum").is_some() => &["NO_SUCH_VALUE", "%E4%B8", "1.5"],
        _ => &["%", "%zz", "%FF%FE", "%E4%B8"],
    };
    (*rng.pick(choices)).to_owned()
}

const BAD_SEGMENTS: &[&str] = &["", "%00", "A%20B", "..", "%2F", "%", "%zz", "%FF", "x%0Ay", "'%3B--"];
const BROKEN_JSON: &[&str] =
    &["{", "[1,2", "nul", "{\"a\":}", "\u{feff}{}", "{\"a\":1,}", "[]", "\"s\"", "42", "{\"noSuchField\": 1}", "1e400"];

/// One malformed request for `op`: (method, path and query, content type, body, token).
fn case(rng: &mut Rng, op: &Operation, admin: &str) -> (String, String, String, Vec<u8>, String) {
    let writes = op.method != "GET";
    // The kinds of damage this operation allows; a write always carries one that must refuse it.
    let mut kinds = vec!["json", "token"];
    if !op.path_params.is_empty() {
        kinds.push("path");
    }
    if op.body.as_ref().and_then(|b| b["properties"].as_object()).is_some_and(|p| !p.is_empty()) {
        kinds.push("field");
    }
    if !op.query.is_empty() && !writes {
        kinds.push("query");
    }
    if op.body.is_some() {
        kinds.push("content-type");
        kinds.push("deep");
    }
    let kind = *rng.pick(&kinds);
    let mut params: Vec<String> =
        op.path_params.iter().map(|p| if p == "street" { "zhongjie".into() } else { "fuzz-target".into() }).collect();
    if kind == "path" {
        let i = rng.below(params.len());
        params[i] = (*rng.pick(BAD_SEGMENTS)).to_owned();
    }
    let mut path = op.path.clone();
    for (name, value) in op.path_params.iter().zip(&params) {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    if kind == "query" {
        let (name, schema) = rng.pick(&op.query);
        path = format!("{path}?{name}={}", wrong_query(rng, schema));
    }
    let mut content_type = "application/json".to_owned();
    let mut token = admin.to_owned();
    let body: Vec<u8> = match kind {
        "json" if writes || rng.below(2) == 0 => rng.pick(BROKEN_JSON).as_bytes().to_vec(),
        "field" => {
            let properties = op.body.as_ref().and_then(|b| b["properties"].as_object()).expect("properties");
            let names: Vec<&String> = properties.keys().collect();
            let name = *rng.pick(&names);
            let mut body = serde_json::Map::new();
            body.insert(name.clone(), wrong_value(rng, &properties[name]));
            serde_json::to_vec(&Value::Object(body)).expect("JSON")
        }
        "content-type" => {
            content_type = (*rng.pick(&["text/plain", "application/xml", "multipart/form-data", ""])).to_owned();
            b"title=x".to_vec()
        }
        "deep" => {
            let depth = 2000;
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        "token" => {
            token = (*rng.pick(&["x", "eyJhbGciOiJub25lIn0.e30.", "Bearer", "%00", "a.b.c"])).to_owned();
            if writes { b"{}".to_vec() } else { Vec::new() }
        }
        _ => rng.pick(BROKEN_JSON).as_bytes().to_vec(),
    };
    (op.method.clone(), path, content_type, body, token)
}

/// Everything the fuzzing could have changed, as the service reports it.
async fn state(channel: tonic::transport::Channel, admin: &str) -> String {
    let mut catalogue = CatalogueServiceClient::new(channel.clone());
    let mut desk = DeskServiceClient::new(channel);
    let mut all = String::new();
    for filter in ["state = DRAFT", "state = PUBLISHED", "state = RETIRED"] {
        let request = ListServiceItemsRequest {
            parent: "streets/zhongjie".into(),
            page_size: 1000,
            filter: filter.into(),
            ..Default::default()
        };
        let items = catalogue.list_service_items(with_token(request, admin)).await.expect("items").into_inner();
        all.push_str(&format!("{:?}", items.service_items));
    }
    let request = ListApplicationsRequest { parent: "streets/zhongjie".into(), page_size: 1000, ..Default::default() };
    all.push_str(&format!(
        "{:?}",
        desk.list_applications(with_token(request, admin)).await.expect("apps").into_inner()
    ));
    let request = ListInquiriesRequest { parent: "streets/zhongjie".into(), page_size: 1000, ..Default::default() };
    all.push_str(&format!("{:?}", desk.list_inquiries(with_token(request, admin)).await.expect("inq").into_inner()));
    all
}

/// Sends one request; the status, or `None` if the server did not answer in time or dropped
/// the connection without an answer.
async fn send(
    addr: std::net::SocketAddr,
    (method, path, content_type, body, token): &(String, String, String, Vec<u8>, String),
) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        if !content_type.is_empty() {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes()).await.ok()?;
        stream.write_all(body).await.ok()?;
        // The head is the answer (a valid watch would stream on for ever).
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&raw).get(9..12).and_then(|s| s.parse().ok())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.ok().flatten()
}

#[tokio::test]
async fn thousands_of_malformed_requests_get_4xx_and_change_nothing() {
    let seed: u64 = std::env::var("CIVIC_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_C1C1C);
    let cases: usize = std::env::var("CIVIC_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let store = common::Store::fresh().await;
    let mut config = common::test_config(&store);
    config.gateway.rate_per_second = 0.0;
    config.gateway.address_rate_per_second = 0.0;
    let app = common::spawn_with(config, civic::Target::All, civic::Options { seed: true, ..Default::default() }).await;
    let admin = token("fuzz-admin", &[Role::Admin, Role::Cadre], "zhongjie");

    let (status, body) = common::http(app.http_addr, "GET", "/openapi.json", "", None).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).expect("the OpenAPI document");
    let ops = operations(&doc);
    assert!(ops.len() >= 23, "every HTTP rule is in the document: {}", ops.len());
    let before = state(app.channel.clone(), &admin).await;

    let mut rng = Rng(seed | 1);
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..cases {
        let op = &ops[n % ops.len()];
        let request = case(&mut rng, op, &admin);
        let status = send(app.http_addr, &request).await;
        let (method, path, content_type, body, _) = &request;
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        match status {
            None => panic!("case {n} (seed {seed}) hung or was dropped: {method} {path} [{content_type}] {shown}"),
            Some(s) if s >= 500 => {
                panic!("case {n} (seed {seed}) answered {s}: {method} {path} [{content_type}] {shown}")
            }
            Some(s) if op.method != "GET" && s < 400 => {
                panic!("case {n} (seed {seed}): a malformed write answered {s}: {method} {path} {shown}")
            }
            Some(s) => *by_status.entry(s).or_default() += 1,
        }
    }
    eprintln!("{cases} malformed requests (seed {seed}), answered by status: {by_status:?}");
    assert_eq!(state(app.channel.clone(), &admin).await, before, "malformed requests changed nothing");
    // The cases reached the API's checks, not only the front door.
    assert!(by_status.get(&400).copied().unwrap_or(0) > cases / 10, "{by_status:?}");
    assert!(by_status.get(&401).copied().unwrap_or(0) > 0, "{by_status:?}");
    app.stop().await;
}
