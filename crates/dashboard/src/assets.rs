//! The embedded pages and their assets.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Files served under `/dashboard/assets/`.
const ASSETS: [Asset; 4] = [
    Asset { name: "raft.css", content_type: "text/css; charset=utf-8", body: include_str!("../assets/raft.css") },
    Asset {
        name: "raftlog.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/raftlog.js"),
    },
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/dashboard.js"),
    },
    Asset {
        name: "playground.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/playground.js"),
    },
];

const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
const PLAYGROUND_HTML: &str = include_str!("../assets/playground.html");

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// `GET /dashboard`.
pub(crate) async fn dashboard_page() -> Response {
    html(DASHBOARD_HTML)
}

/// `GET /playground`.
pub(crate) async fn playground_page() -> Response {
    html(PLAYGROUND_HTML)
}

/// `GET /dashboard/assets/{name}`.
async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => ([(header::CONTENT_TYPE, asset.content_type), (header::CACHE_CONTROL, "no-cache")], asset.body)
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// The asset routes, shared by the dashboard and the playground.
pub(crate) fn asset_router() -> axum::Router {
    axum::Router::new().route("/dashboard/assets/{name}", get(asset))
}
