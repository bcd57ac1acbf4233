//! The lobby screen: the page the service hall's electronic screen shows — the published items
//! by category with their materials and steps, paged like a kiosk, updated live from the watch
//! stream. Plain HTML, CSS and JavaScript compiled into the binary; nothing is fetched from
//! anywhere but this server's own API.

use axum::response::IntoResponse;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};

const INDEX: &str = include_str!("lobby/index.html");

/// `/lobby` (and `/lobby/`).
pub(crate) fn routes() -> axum::Router {
    let page = || std::future::ready(page(INDEX, "text/html; charset=utf-8"));
    axum::Router::new().route("/lobby", axum::routing::get(page)).route("/lobby/", axum::routing::get(page))
}

fn page(body: &'static str, content_type: &'static str) -> axum::response::Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], body).into_response()
}
