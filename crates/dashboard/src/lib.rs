//! raftkv's two pages for watching Raft replicate its log, drawn the way the seed
//! articles draw it (one row per node, the log as boxes, committed entries solid and
//! uncommitted ones dashed):
//!
//! - the live dashboard ([`dashboard_router`], `GET /dashboard`), served by every
//!   `raftkv serve` next to its node introspection API (`/api/state`, `/api/events`);
//! - the playground ([`run_playground`], `raftkv playground`): a seeded simulated cluster
//!   driven step by step, with guided scenarios narrated in English and Chinese.
//!
//! Every asset (HTML, CSS, JavaScript) is embedded in the binary: the pages work offline.

#![warn(missing_docs)]

mod assets;
pub mod playground;

pub use playground::{playground_router, run_playground, serve_playground, PlaygroundArgs};

use axum::routing::get;

/// Routes of the live dashboard: `GET /dashboard` (the page), `GET /dashboard/assets/{name}`
/// and `GET /dashboard/metrics-relay` (a frame the page loads from every member's address to
/// read that member's `/metrics`, which has no CORS header, from its own origin).
///
/// Merge it into a node's HTTP server, the one that serves `/api/state` and `/api/events`:
/// the page reads the node it was loaded from (or the node named by `?node=URL`).
pub fn dashboard_router() -> axum::Router {
    axum::Router::new()
        .route("/dashboard", get(assets::dashboard_page))
        .route("/dashboard/", get(assets::dashboard_page))
        .route("/dashboard/metrics-relay", get(assets::metrics_relay_page))
        .merge(assets::asset_router())
}
