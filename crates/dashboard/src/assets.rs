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
const ASSETS: [Asset; 5] = [
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
        name: "charts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/charts.js"),
    },
    Asset {
        name: "playground.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/playground.js"),
    },
];

const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");
const PLAYGROUND_HTML: &str = include_str!("../assets/playground.html");
const METRICS_RELAY_HTML: &str = include_str!("../assets/metrics-relay.html");

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// `GET /dashboard`.
pub(crate) async fn dashboard_page() -> Response {
    html(DASHBOARD_HTML)
}

/// `GET /dashboard/metrics-relay`: the hidden frame through which the dashboard reads a
/// member's `/metrics` from the member's own origin.
pub(crate) async fn metrics_relay_page() -> Response {
    html(METRICS_RELAY_HTML)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The `/dashboard/assets/NAME` paths a page refers to.
    fn referenced_assets(page: &str) -> Vec<&str> {
        page.split("/dashboard/assets/").skip(1).filter_map(|rest| rest.split('"').next()).collect()
    }

    #[test]
    fn every_asset_the_dashboard_pages_load_is_embedded() {
        for page in [DASHBOARD_HTML, METRICS_RELAY_HTML] {
            let names = referenced_assets(page);
            assert!(!names.is_empty());
            for name in names {
                assert!(ASSETS.iter().any(|asset| asset.name == name), "{name} is not embedded");
            }
        }
        assert!(referenced_assets(DASHBOARD_HTML).contains(&"charts.js"));
        assert!(referenced_assets(METRICS_RELAY_HTML).contains(&"charts.js"));
    }
}
