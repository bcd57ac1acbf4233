//! The published contract holds: requests generated from the served OpenAPI document within
//! what it declares — ids that match the id pattern, strings and lists within their bounds,
//! page sizes in range, enum values it lists — are never refused as malformed (400 other than
//! FAILED_PRECONDITION, which is a state, not a shape), nor fail
//! (5xx); a 405 names the methods the path takes. Page tokens and filters are left out: the
//! document marks them as what a previous answer returned (`page-token`) and as AIP-160
//! expressions (`filter`). Seeded (`CIVIC_CONTRACT_SEED`), so a failing case can be replayed.

mod common;

use civic_kit::auth::Role;
use common::{Rng, http, token};
use serde_json::Value;

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            resolve(doc, &doc["components"]["schemas"][reference.trim_start_matches("#/components/schemas/")])
        }
        None => schema,
    }
}

/// An id the document's pattern allows; often one that exists.
fn id(rng: &mut Rng, name: &str) -> String {
    if name == "street" && rng.below(3) > 0 {
        return "zhongjie".into();
    }
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-";
    let mut out = String::from(char::from(b'a' + rng.below(26) as u8));
    for _ in 0..rng.below(20) {
        out.push(char::from(alphabet[rng.below(alphabet.len())]));
    }
    if out.ends_with('-') {
        out.push('x');
    }
    out
}

/// A value the schema allows, as query text; `None` for what is left out (page tokens, filters).
fn value(rng: &mut Rng, doc: &Value, schema: &Value) -> Option<String> {
    let schema = resolve(doc, schema);
    if matches!(schema["format"].as_str(), Some("page-token" | "filter")) {
        return None;
    }
    if let Some(values) = schema["enum"].as_array() {
        return values.get(rng.below(values.len())).and_then(Value::as_str).map(str::to_owned);
    }
    if schema["format"] == "user-name" {
        return Some(format!("users/{}", id(rng, "user")));
    }
    if let Some(pattern) = schema["x-resource-pattern"].as_str() {
        // A name of the referenced resource: each `{variable}` an id.
        let name: Vec<String> = pattern
            .split('/')
            .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(variable) => id(rng, variable),
                None => segment.to_owned(),
            })
            .collect();
        return Some(name.join("/"));
    }
    match schema["type"].as_str() {
        Some("integer") => {
            let min = schema["minimum"].as_i64().unwrap_or(-1000);
            let max = schema["maximum"].as_i64().unwrap_or(1000).min(min + 2000);
            Some((min + rng.below((max - min + 1) as usize) as i64).to_string())
        }
        Some("number") => {
            let min = schema["minimum"].as_f64().unwrap_or(-1000.0);
            let max = schema["maximum"].as_f64().unwrap_or(1000.0);
            Some(format!("{}", min + (max - min) * rng.below(10_001) as f64 / 10_000.0))
        }
        Some("boolean") => Some(if rng.below(2) == 0 { "true" } else { "false" }.into()),
        Some("string") => {
            let max = schema["maxLength"].as_u64().unwrap_or(40).min(40) as usize;
            let alphabet: Vec<char> = "abcxyz019低保社区".chars().collect();
            Some((0..1 + rng.below(max)).map(|_| alphabet[rng.below(alphabet.len())]).collect())
        }
        _ => None,
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn requests_the_document_allows_are_never_refused_as_malformed() {
    let store = common::Store::fresh().await;
    let mut config = common::test_config(&store);
    // Hundreds of calls in a few seconds from one principal and one address: this test is about
    // the contract, not the rate limits (tests/security.rs has those).
    config.gateway.rate_per_second = 0.0;
    config.gateway.address_rate_per_second = 0.0;
    let app = common::spawn_with(config, civic::Target::All, civic::Options::default()).await;
    let (status, text) = http(app.http_addr, "GET", "/openapi.json", "", None).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).expect("the document");
    let admin = token("contract", &[Role::Admin], "zhongjie");
    let seed = std::env::var("CIVIC_CONTRACT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_c0de_u64);
    let mut rng = Rng(seed);
    let mut sent = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            if operation["responses"]["200"]["content"].get("application/x-ndjson").is_some() {
                continue; // streams are watched, not answered
            }
            let body_schema =
                operation.get("requestBody").map(|b| resolve(&doc, &b["content"]["application/json"]["schema"]));
            // Bodies whose fields have rules of their own (a title to give, a reason to state) are
            // beyond what a schema says; those of lifecycle methods hold only etag and request id.
            let body_keys: Vec<&String> =
                body_schema.and_then(|s| s["properties"].as_object()).map(|p| p.keys().collect()).unwrap_or_default();
            if body_schema.is_some() && !body_keys.iter().all(|k| matches!(k.as_str(), "etag" | "requestId")) {
                continue;
            }
            for _ in 0..8 {
                let mut url = path.clone();
                let mut query = Vec::new();
                for parameter in operation["parameters"].as_array().expect("parameters") {
                    let name = parameter["name"].as_str().expect("name");
                    match parameter["in"].as_str() {
                        Some("path") => {
                            let segment = if parameter["schema"]["pattern"] == "^[0-9]{4}-(0[1-9]|1[0-2])$" {
                                format!("20{:02}-{:02}", 20 + rng.below(20), 1 + rng.below(12))
                            } else {
                                id(&mut rng, name)
                            };
                            url = url.replace(&format!("{{{name}}}"), &segment);
                        }
                        _ if parameter["required"] == Value::Bool(true) || rng.below(2) == 0 => {
                            if let Some(v) = value(&mut rng, &doc, &parameter["schema"]) {
                                query.push(format!("{name}={}", encode(&v)));
                            }
                        }
                        _ => {}
                    }
                }
                if !query.is_empty() {
                    url = format!("{url}?{}", query.join("&"));
                }
                let body = body_schema.map(|_| {
                    let request_id: String =
                        (0..rng.below(20)).map(|_| char::from(b'a' + rng.below(26) as u8)).collect();
                    serde_json::json!({"requestId": request_id}).to_string()
                });
                let who = if rng.below(4) == 0 { "" } else { admin.as_str() };
                let (status, answer) = http(app.http_addr, &method.to_uppercase(), &url, who, body.as_deref()).await;
                // FAILED_PRECONDITION is HTTP 400 too, but says the request was understood and the
                // state forbids it (a month with no scheme in force), not that it was malformed.
                let precondition = status == 400 && answer.starts_with("{\"code\":9,");
                assert!(
                    (status != 400 || precondition) && status < 500,
                    "{} {url} (seed {seed}): {status} {answer}",
                    method.to_uppercase()
                );
                sent += 1;
            }
        }
    }
    assert!(sent > 80, "operations covered: {sent}");

    // A wrong method is 405, naming the methods the path takes.
    let (status, _) = http(app.http_addr, "PUT", "/v1/streets/zhongjie/items", &admin, Some("{}")).await;
    assert_eq!(status, 405);
    let allow = allowed(app.http_addr, "/v1/streets/zhongjie/items").await;
    assert_eq!(allow, "GET, POST");
    app.stop().await;
}

/// The `Allow` header of a PUT to `path`.
async fn allowed(addr: std::net::SocketAddr, path: &str) -> String {
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{{}}"
    );
    let text = common::exchange(addr, &head).await;
    text.lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("allow:").then(|| l[6..].trim().to_owned()))
        .unwrap_or_default()
}
