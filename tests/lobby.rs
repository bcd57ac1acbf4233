//! The lobby screen in a real browser: headless Chromium loads `/lobby`, shows the seeded
//! catalogue, pages through it on its own, and follows publishing, changing and retiring
//! without a reload. A screenshot is saved beside the test's other output.

mod common;

use std::time::Duration;

use civic_kit::auth::Role;
use common::browser::Browser;
use common::{http, token};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_lobby_shows_the_catalogue_and_follows_changes_live() {
    let store = common::Store::fresh().await;
    let app = common::spawn_on(&store, civic::Target::All, civic::Options { seed: true, ..Default::default() }).await;
    let browser = Browser::launch().await.expect("headless Chromium starts");
    let page = browser
        .open(&format!("http://{}/lobby?street=zhongjie&page_seconds=3", app.http_addr))
        .await
        .expect("the lobby opens");

    // The seeded catalogue arrives through the watch stream.
    page.wait_for("document.getElementById('lobby').dataset.state === 'live'", WAIT).await.expect("live");
    let count = page.evaluate("Number(document.getElementById('lobby').dataset.count)").await.expect("count");
    assert!(count.as_u64().is_some_and(|n| n >= 40), "the seeded items: {count}");
    let titles = page.evaluate("window.lobby.titles()").await.expect("titles");
    assert!(titles.as_array().is_some_and(|t| t.contains(&json!("最低生活保障申请"))), "{titles}");
    let heading = page.evaluate("document.querySelector('h1').textContent").await.expect("heading");
    assert!(heading.as_str().is_some_and(|h| h.contains("中街街道")), "{heading}");
    // A page of cards with their materials and steps, in Chinese.
    let cards = page.evaluate("document.querySelectorAll('#cards .card').length").await.expect("cards");
    assert!(cards.as_u64().is_some_and(|n| n >= 2), "cards on the page: {cards}");
    let text = page.evaluate("document.getElementById('cards').innerText").await.expect("text");
    assert!(text.as_str().is_some_and(|t| t.contains("所需材料") && t.contains("办理流程")), "{text}");

    // It pages on its own, like a kiosk.
    let pages = page.evaluate("window.lobby.pages()").await.expect("pages");
    assert!(pages.as_u64().is_some_and(|n| n > 1), "{pages}");
    page.wait_for("window.lobby.page() === 2", WAIT).await.expect("turns to page 2 by itself");

    // A new item published through the API appears without a reload.
    page.evaluate("window.notReloaded = true").await.expect("mark");
    let admin = token("lobby-admin", &[Role::Admin], "zhongjie");
    let item = json!({
        "title": "社区茶室预约",
        "category": "CULTURE",
        "handlingMode": "HANDLED_HERE",
        "materials": [{"name": "居民身份证", "form": "ORIGINAL", "copies": 1, "required": true}],
        "steps": [{"title": "现场登记", "actor": "社区工作人员"}]
    });
    let path = "/v1/streets/zhongjie/items?serviceItemId=tea-room";
    let (status, body) = http(app.http_addr, "POST", path, &admin, Some(&item.to_string())).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        http(app.http_addr, "POST", "/v1/streets/zhongjie/items/tea-room:publish", &admin, Some("{}")).await;
    assert_eq!(status, 200, "{body}");
    page.wait_for("window.lobby.titles().includes('社区茶室预约')", WAIT).await.expect("the new item shows");
    assert_eq!(page.evaluate("window.notReloaded === true").await.expect("mark"), Value::Bool(true));
    assert_eq!(
        page.evaluate("Number(document.getElementById('lobby').dataset.count)").await.expect("count"),
        json!(count.as_u64().unwrap_or_default() + 1)
    );

    // Find its page, and show it there, marked new, for the screenshot.
    page.wait_for("document.querySelector('[data-name=\"streets/zhongjie/items/tea-room\"]') !== null", WAIT)
        .await
        .expect("its card comes round as the pages turn");
    let fresh = page
        .evaluate(
            "document.querySelector('[data-name=\"streets/zhongjie/items/tea-room\"]').classList.contains('fresh')",
        )
        .await
        .expect("fresh");
    assert_eq!(fresh, Value::Bool(true), "a new item is highlighted");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("lobby.png");
    page.screenshot(&shot).await.expect("screenshot");
    let size = std::fs::metadata(&shot).expect("the screenshot is written").len();
    assert!(size > 10_000, "a real picture of the screen: {} bytes at {}", size, shot.display());
    eprintln!("lobby screenshot: {}", shot.display());

    // A change shows; retiring takes it off the screen.
    let (status, body) = http(
        app.http_addr,
        "PATCH",
        "/v1/streets/zhongjie/items/tea-room?updateMask=title",
        &admin,
        Some(r#"{"title": "社区茶室预约（周末开放）"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    page.wait_for("window.lobby.titles().includes('社区茶室预约（周末开放）')", WAIT).await.expect("the change shows");
    let (status, body) =
        http(app.http_addr, "POST", "/v1/streets/zhongjie/items/tea-room:retire", &admin, Some("{}")).await;
    assert_eq!(status, 200, "{body}");
    page.wait_for("!window.lobby.items().includes('streets/zhongjie/items/tea-room')", WAIT)
        .await
        .expect("the retired item leaves the screen");
    assert_eq!(page.evaluate("window.notReloaded === true").await.expect("mark"), Value::Bool(true));
    drop(browser);
    app.stop().await;
}
