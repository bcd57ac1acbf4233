//! Open311 GeoReport v2 at `/open311/v2/`: driven by a published Open311 client library
//! (Python's `georeport`, installed into a virtual environment on first use) in JSON and XML,
//! and by hand for what that library does not do — filing a request with an API key, tokens,
//! paging, errors in Open311's format. The public board shows public categories only, coarse
//! places and none of the residents' words; an API key's principal reads its own requests in
//! full.

mod common;

use std::path::PathBuf;
use std::process::Command;

use civic::{Options, Target};
use civic_kit::auth::Role;
use civic_proto::issues::issue::Source;
use civic_proto::issues::issue_service_client::IssueServiceClient;
use civic_proto::issues::*;
use common::{Store, exchange, spawn_with, test_config, token, with_token};
use serde_json::Value;

const KEY: &str = "open311-test-key-4f1c9a";
/// A key whose token file holds a resident's token, not its principal's.
const MISCONFIGURED: &str = "open311-test-key-misconfigured";

/// The Python of a virtual environment with `georeport` 0.3.1, made on first use.
fn georeport_python() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("open311-venv");
    let python = dir.join("bin").join("python");
    let ready = || Command::new(&python).args(["-c", "import georeport"]).status().is_ok_and(|s| s.success());
    if !ready() {
        let made = Command::new("python3").arg("-m").arg("venv").arg(&dir).status().expect("python3 runs");
        assert!(made.success(), "python3 -m venv {}", dir.display());
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "georeport==0.3.1"])
            .status()
            .expect("pip runs");
        assert!(pip.success(), "pip install georeport (needs the package registry)");
        assert!(ready(), "georeport imports after install");
    }
    python
}

/// The key's SHA-256, as the configuration holds it.
fn key_hash(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// One HTTP/1.1 exchange: status, headers (lowercased names) and body.
async fn call(addr: std::net::SocketAddr, method: &str, path: &str, form: Option<&str>) -> (u16, String, String) {
    call_with(addr, method, path, form, "").await
}

/// [`call`] with more header lines (`Name: value\r\n`).
async fn call_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    form: Option<&str>,
    more: &str,
) -> (u16, String, String) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{more}");
    if let Some(form) = form {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ));
    } else {
        head.push_str("\r\n");
    }
    let raw = exchange(addr, &head).await;
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).expect("a status line");
    let (headers, body) = raw.split_once("\r\n\r\n").expect("a head");
    (status, headers.to_owned(), body.to_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON ({e}): {body}"))
}

/// The target of a `Link: <…>; rel="next"` header.
fn next_link(headers: &str) -> String {
    let link = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("link:")).expect("a next link");
    assert!(link.contains("rel=\"next\""), "{link}");
    let start = link.find('<').expect("<") + 1;
    let end = link.find('>').expect(">");
    link[start..end].to_owned()
}

/// A form's value, percent-escaped.
fn esc(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn open311_clients_read_the_public_board_and_file_requests_with_a_key() {
    let store = Store::fresh().await;
    let mut config = test_config(&store);
    config.gateway.open311.clients.push(civic_kit::config::Open311Client {
        service: "city_platform".into(),
        api_key_sha256: key_hash(KEY),
        token_file: None,
    });
    let wrong = std::env::temp_dir().join(format!("civic-open311-{}.token", std::process::id()));
    std::fs::write(&wrong, token("r-wrong", &[Role::Resident], "zhongjie")).expect("a token file");
    config.gateway.open311.clients.push(civic_kit::config::Open311Client {
        service: "other_platform".into(),
        api_key_sha256: key_hash(MISCONFIGURED),
        token_file: Some(wrong.clone()),
    });
    let app = spawn_with(config, Target::All, Options { seed: true, ..Default::default() }).await;
    let http = app.http_addr;
    let mut issues = IssueServiceClient::new(app.channel.clone());
    let admin = token("admin", &[Role::Admin], "zhongjie");

    // A resident's private problem (a neighbour dispute) and a public one, both with words
    // that must never reach the public board.
    let resident = token("r-open311", &[Role::Resident], "zhongjie");
    let file = |category: &str, words: &str| {
        let mut issues = issues.clone();
        let resident = resident.clone();
        let (category, words) = (category.to_owned(), words.to_owned());
        async move {
            let issue = Issue {
                source: Source::App as i32,
                category,
                description: words,
                address: "东苑小区3号楼2单元501".into(),
                location: Some(Point { latitude: 35.545_678, longitude: 106.661_234 }),
                ..Default::default()
            };
            let request =
                CreateIssueRequest { parent: "streets/zhongjie".into(), issue: Some(issue), request_id: String::new() };
            issues.create_issue(with_token(request, &resident)).await.expect("filed").into_inner()
        }
    };
    let private = file("neighbour_dispute", "楼上邻居王某夜间噪音私密细节").await;
    let public = file("environment", "垃圾桶满溢私密细节").await;
    let private_id = private.name.rsplit('/').next().expect("id").to_owned();
    let public_id = public.name.rsplit('/').next().expect("id").to_owned();

    // The published client library, unchanged, in both formats.
    let python = georeport_python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/open311_client.py");
    let base = format!("http://{http}/open311/v2");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python).arg(script).arg(base).arg("zhongjie").arg(private_id).output().expect("the client runs")
    })
    .await
    .expect("joined");
    assert!(output.status.success(), "the client failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let read = json(&text);
    for fmt in ["json", "xml"] {
        let r = &read[fmt];
        let codes: Vec<&str> = r["codes"].as_array().expect("codes").iter().filter_map(Value::as_str).collect();
        assert!(codes.contains(&"environment") && codes.contains(&"neighbour_dispute"), "{fmt}: {codes:?}");
        assert!(codes.iter().filter(|c| c.starts_with("catalogue.")).count() >= 40, "{fmt}: the published items");
        assert_eq!(r["definition"]["service_code"], "environment", "{fmt}");
        let public = r["public"].as_array().expect("requests");
        assert!(!public.is_empty(), "{fmt}: seeded open public issues");
        for request in public {
            assert_eq!(request["status"], "open", "{fmt}: {request}");
            let code = request["service_code"].as_str().expect("code");
            assert!(code == "environment" || code == "facilities", "{fmt}: {request}");
            assert!(request["description"].is_null() || request["description"] == "", "{fmt}: no words: {request}");
            assert!(request["address"].is_null() || request["address"] == "", "{fmt}: no address: {request}");
            assert!(!request["status_notes"].as_str().unwrap_or("").is_empty(), "{fmt}: status notes: {request}");
        }
        for request in r["closed"].as_array().expect("requests") {
            assert_eq!(request["status"], "closed", "{fmt}: {request}");
        }
        assert_eq!(r["one"]["service_request_id"], public[0]["service_request_id"], "{fmt}");
        assert_eq!(r["private"], 404, "{fmt}: a private category is not on the board, nor said to exist");
    }
    // (The address's words, not its digits alone: "501" may turn up in any id or time.)
    assert!(!text.contains("私密细节") && !text.contains("2单元501"), "no resident's words on the board");

    // The public issue is on the board, its place rounded, its words left out.
    let (status, _, body) = call(http, "GET", &format!("/open311/v2/requests/{public_id}.json"), None).await;
    assert_eq!(status, 200, "{body}");
    let seen = &json(&body)[0];
    assert_eq!(seen["lat"], 35.546);
    assert_eq!(seen["long"], 106.661);
    assert!(seen["description"].is_null() && seen["address"].is_null(), "{seen}");
    assert_eq!(seen["status_notes"], "已收到反映");

    // Filing with the key: a work order of the platform, read back in full with the key.
    let form = format!(
        "api_key={}&jurisdiction_id=zhongjie&service_code=facilities&lat=35.5456&long=106.6612\
         &address_string={}&description={}&attribute%5Btitle%5D={}&media_url={}&email=a%40b.cn&phone=13800000000",
        esc(KEY),
        esc("东苑小区东门"),
        esc("东门路灯不亮已经三天"),
        esc("路灯不亮"),
        esc("https://img.example.cn/a.jpg"),
    );
    let retry = "Idempotency-Key: o311-test-1\r\n";
    let (status, headers, body) = call_with(http, "POST", "/open311/v2/requests.json", Some(&form), retry).await;
    assert_eq!(status, 201, "{body}");
    assert!(headers.contains("content-type: application/json"), "{headers}");
    // A retry with the same Idempotency-Key is answered as the first time.
    let (status, _, again) = call_with(http, "POST", "/open311/v2/requests.json", Some(&form), retry).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(json(&again)[0]["service_request_id"], json(&body)[0]["service_request_id"], "one request");
    let filed = &json(&body)[0];
    let id = filed["service_request_id"].as_str().expect("an id").to_owned();
    assert_eq!(filed["token"], id.as_str());
    let issue = issues
        .get_issue(with_token(GetIssueRequest { name: format!("streets/zhongjie/issues/{id}") }, &admin))
        .await
        .expect("the issue")
        .into_inner();
    assert_eq!(issue.source(), Source::CityPlatform);
    assert_eq!(issue.created_by, "services/city_platform");
    assert_eq!(issue.title, "路灯不亮");
    assert!(issue.description.contains("https://img.example.cn/a.jpg"), "the photo's link is kept");
    assert!(!format!("{issue:?}").contains("13800000000"), "contact fields are not kept");
    let with_key = format!("/open311/v2/requests/{id}.json?api_key={}", esc(KEY));
    let (status, _, body) = call(http, "GET", &with_key, None).await;
    assert_eq!(status, 200, "{body}");
    let mine = &json(&body)[0];
    assert_eq!(mine["description"].as_str().map(|d| d.starts_with("东门路灯不亮已经三天")), Some(true), "{mine}");
    assert_eq!(mine["address"], "东苑小区东门");
    assert_eq!(mine["lat"], 35.5456);
    // A second request, without a key of its own: a new one.
    let second = format!(
        "api_key={}&service_code=environment&address_string={}&description={}",
        esc(KEY),
        esc("西门"),
        esc("垃圾没人清")
    );
    let (status, _, body) = call(http, "POST", "/open311/v2/requests.json", Some(&second)).await;
    assert_eq!(status, 201, "{body}");
    let second_id = json(&body)[0]["service_request_id"].as_str().expect("an id").to_owned();
    assert_ne!(second_id, id);
    // The key's principal reads what it filed, not the residents' issues; a page at a time,
    // following the link (and sending the key again).
    let (status, headers, body) =
        call(http, "GET", &format!("/open311/v2/requests.xml?page_size=1&api_key={}", esc(KEY)), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<service_request_id>{second_id}</service_request_id>")), "newest first: {body}");
    let link = next_link(&headers);
    assert!(link.starts_with("/open311/v2/requests.xml?") && !link.contains("api_key"), "{link}");
    let (status, headers, body) = call(http, "GET", &format!("{link}&api_key={}", esc(KEY)), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<service_request_id>{id}</service_request_id>")), "{body}");
    assert!(!headers.contains("\r\nlink:"), "the last page: {headers}");
    let (_, _, body) =
        call(http, "GET", &format!("/open311/v2/requests.json?api_key={}&service_code=facilities", esc(KEY)), None)
            .await;
    let listed: Vec<String> = json(&body)
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["service_request_id"].as_str().unwrap_or("").into())
        .collect();
    assert_eq!(listed, vec![id.clone()], "the platform's facilities requests");

    // Tokens: the request a token stands for.
    let (status, _, body) = call(http, "GET", &format!("/open311/v2/tokens/{id}.json"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)[0]["service_request_id"], id.as_str());
    let (status, _, body) = call(http, "GET", "/open311/v2/tokens/no-such-token.xml", None).await;
    assert_eq!(status, 404);
    assert!(body.contains("<errors><error><code>404</code>"), "{body}");

    // Paging the public board: the link names the range the first page used, and leads on.
    let (status, headers, body) = call(http, "GET", "/open311/v2/requests.json?page_size=1", None).await;
    assert_eq!(status, 200, "{body}");
    let first = json(&body);
    assert_eq!(first.as_array().map(Vec::len), Some(1));
    let link = next_link(&headers);
    assert!(link.contains("start_date=") && link.contains("page_token="), "{link}");
    let (status, _, body) = call(http, "GET", &link, None).await;
    assert_eq!(status, 200, "{body}");
    let page = json(&body);
    assert_eq!(page.as_array().map(Vec::len), Some(1), "{body}");
    assert_ne!(page[0]["service_request_id"], first[0]["service_request_id"]);

    // The board shows the time of the last public step: an internal note does not move it.
    let path = format!("/open311/v2/requests/{public_id}.json");
    let before = json(&call(http, "GET", &path, None).await.2)[0]["updated_datetime"].clone();
    let internal = IssueUpdate {
        visibility: civic_proto::issues::issue_update::Visibility::Internal as i32,
        text: "物业电话已打".into(),
        ..Default::default()
    };
    let note = CreateIssueUpdateRequest {
        parent: public.name.clone(),
        issue_update: Some(internal),
        request_id: String::new(),
    };
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    issues.create_issue_update(with_token(note, &admin)).await.expect("an internal note");
    let after = json(&call(http, "GET", &path, None).await.2)[0]["updated_datetime"].clone();
    assert_eq!(before, after, "an internal note is not on the board");

    // An issue about a household is never on the board, whatever its category.
    let household = Issue {
        source: Source::WalkIn as i32,
        category: "environment".into(),
        description: "家门口堆满杂物".into(),
        household: "streets/zhongjie/households/h1".into(),
        location: Some(Point { latitude: 35.545, longitude: 106.661 }),
        ..Default::default()
    };
    let request =
        CreateIssueRequest { parent: "streets/zhongjie".into(), issue: Some(household), request_id: String::new() };
    let household = issues.create_issue(with_token(request, &admin)).await.expect("filed").into_inner();
    let household_id = household.name.rsplit('/').next().expect("id");
    let (status, _, _) = call(http, "GET", &format!("/open311/v2/requests/{household_id}.json"), None).await;
    assert_eq!(status, 404, "a household's issue is not on the board");

    // Another street is not a jurisdiction here.
    let (status, _, body) = call(http, "GET", "/open311/v2/services.json?jurisdiction_id=beijie", None).await;
    assert_eq!(status, 404, "{body}");
    let filed_elsewhere = format!(
        "api_key={}&jurisdiction_id=beijie&service_code=facilities&lat=35.5&long=106.6&description=x",
        esc(KEY)
    );
    let (status, _, body) = call(http, "POST", "/open311/v2/requests.json", Some(&filed_elsewhere)).await;
    assert_eq!(status, 404, "{body}");

    // A key whose token is not its principal's (a person's, here) is not used.
    let (status, _, body) = call(
        http,
        "POST",
        "/open311/v2/requests.json",
        Some(&format!("api_key={}&service_code=facilities&lat=35.5&long=106.6&description=x", esc(MISCONFIGURED))),
    )
    .await;
    assert_eq!(status, 503, "{body}");

    // Errors, in Open311's format, and nothing filed.
    let before = call(http, "GET", &format!("/open311/v2/requests.json?api_key={}", esc(KEY)), None).await.2;
    for (form, code, says) in [
        ("api_key=wrong&service_code=facilities&lat=35.5&long=106.6&description=x", 403, "api_key"),
        ("service_code=facilities&lat=35.5&long=106.6&description=x", 400, "api_key"),
        (&format!("api_key={}&lat=35.5&long=106.6&description=x", esc(KEY)) as &str, 400, "service_code"),
        (&format!("api_key={}&service_code=nope&lat=35.5&long=106.6&description=x", esc(KEY)), 400, "service_code"),
        (&format!("api_key={}&service_code=facilities&description=x", esc(KEY)), 400, "location"),
        (&format!("api_key={}&service_code=facilities&lat=95&long=106.6&description=x", esc(KEY)), 400, "lat"),
        (&format!("api_key={}&service_code=facilities&lat=35.5&long=106.6", esc(KEY)), 400, "description"),
        (
            &format!(
                "api_key={}&service_code=facilities&lat=35.5&long=106.6&description=x&media_url=file%3A%2F%2Fx",
                esc(KEY)
            ),
            400,
            "media_url",
        ),
        (
            &format!("api_key={}&service_code=catalogue.x&lat=35.5&long=106.6&description=x", esc(KEY)),
            400,
            "information only",
        ),
    ] {
        let (status, _, body) = call(http, "POST", "/open311/v2/requests.json", Some(form)).await;
        assert_eq!(status, code, "{form}: {body}");
        let error = &json(&body)[0];
        assert_eq!(error["code"], code, "{body}");
        assert!(error["description"].as_str().is_some_and(|d| d.contains(says)), "{form}: {body}");
    }
    let after = call(http, "GET", &format!("/open311/v2/requests.json?api_key={}", esc(KEY)), None).await.2;
    assert_eq!(before, after, "nothing was filed by a refused request");
    let (status, _, body) = call(http, "POST", "/open311/v2/requests.xml", Some("service_code=facilities")).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("<?xml") && body.contains("<errors><error><code>400</code><description>"), "{body}");
    for (path, code) in [
        ("/open311/v2/requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z", 400),
        ("/open311/v2/requests.json?status=pending", 400),
        ("/open311/v2/requests.json?start_date=soon", 400),
        ("/open311/v2/services/nope.json", 404),
        ("/open311/v2/services.csv", 404),
        ("/open311/v2/requests/Bad%20Id.json", 404),
    ] {
        let (status, _, body) = call(http, "GET", path, None).await;
        assert_eq!(status, code, "{path}: {body}");
        assert_eq!(json(&body)[0]["code"], code, "{path}: {body}");
    }
    let (status, _, body) =
        call(http, "GET", "/open311/v2/requests.json?start_date=2026-01-01&end_date=2026-03-01", None).await;
    assert_eq!((status, body.as_str()), (200, "[]"), "dates alone are taken");

    // The two calls Open311 stands on are in the HTTP API too, without a token.
    let (status, _, body) = call(http, "GET", "/v1/streets/zhongjie/issueCategories", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["issueCategories"].as_array().is_some_and(|c| c.iter().any(|c| c["category"] == "facilities")));
    let path = format!("/v1/streets/zhongjie/issueReports?issues=streets/zhongjie/issues/{public_id}");
    let (status, _, body) = call(http, "GET", &path, None).await;
    assert_eq!(status, 200, "{body}");
    let report = &json(&body)["issueReports"][0];
    assert!(report["description"].is_null() && report["full"].is_null(), "the board's view: {report}");

    // The edge's refusals are in Open311's format too.
    let bad = "Authorization: Bearer not-a-token\r\n";
    let (status, _, body) = call_with(http, "GET", "/open311/v2/services.xml", None, bad).await;
    assert_eq!(status, 401);
    assert!(body.contains("<errors><error><code>401</code>"), "{body}");

    // Discovery names the endpoint and its formats.
    let (status, headers, body) = call(http, "GET", "/open311/v2/discovery.xml", None).await;
    assert_eq!(status, 200);
    assert!(headers.contains("content-type: text/xml"), "{headers}");
    assert!(body.contains("<discovery>") && body.contains("<format>text/xml</format>"), "{body}");
    assert!(body.contains(&format!("<url>http://{http}/open311/v2</url>")), "{body}");
    app.stop().await;
    let _ = std::fs::remove_file(wrong);
}
