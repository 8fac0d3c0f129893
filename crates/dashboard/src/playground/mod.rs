//! The playground: a seeded simulated cluster served with a page and a JSON API.
//!
//! API (all answers are the page state, [`SessionView`], as JSON; a refused request
//! answers 422 with `{"error": "...", "state": {...}}`):
//!
//! - `GET  /api/playground/state`
//! - `POST /api/playground/action` with an [`Action`], e.g. `{"type":"deliver","message":7}`
//! - `POST /api/playground/next`: the preset's next step
//! - `POST /api/playground/rewind` with `{"step": k}`: back to the state after `k` steps
//! - `POST /api/playground/reset` with a [`SessionStart`], e.g. `{"preset":"figure7"}`

pub mod cluster;
pub mod presets;
pub mod session;
pub mod simulation;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use tokio::sync::Mutex;

pub use session::{Session, SessionStart, SessionView};
pub use simulation::Action;

/// Largest request body the playground API accepts.
const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// Flags of `raftkv playground`.
#[derive(Clone, Debug, clap::Args)]
pub struct PlaygroundArgs {
    /// Address to serve the playground on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Seed of the simulated cluster's random choices (election timeouts).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Nodes in the free-play cluster (1..=9; the guided scenarios bring their own).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
}

type Shared = Arc<Mutex<Session>>;

/// The playground's routes (page, assets, API) around a new session started with `start`.
pub fn playground_router(start: SessionStart) -> anyhow::Result<axum::Router> {
    let session = Session::new(start).map_err(anyhow::Error::msg)?;
    let shared: Shared = Arc::new(Mutex::new(session));
    let api = axum::Router::new()
        .route("/api/playground/state", get(state_route))
        .route("/api/playground/action", post(action_route))
        .route("/api/playground/next", post(next_route))
        .route("/api/playground/rewind", post(rewind_route))
        .route("/api/playground/reset", post(reset_route))
        .layer(DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        .with_state(shared);
    Ok(axum::Router::new()
        .route("/", get(|| async { Redirect::to("/playground") }))
        .route("/playground", get(crate::assets::playground_page))
        .merge(crate::assets::asset_router())
        .merge(api))
}

/// Serves the playground on `listener` until the future is dropped or the server fails.
pub async fn serve_playground(listener: tokio::net::TcpListener, start: SessionStart) -> anyhow::Result<()> {
    let router = playground_router(start)?;
    axum::serve(listener, router).await?;
    Ok(())
}

/// `raftkv playground`: serves the playground, prints `playground: URL`, stops on Ctrl-C.
pub fn run_playground(args: PlaygroundArgs) -> anyhow::Result<()> {
    let start = SessionStart { seed: args.seed, nodes: args.nodes as usize, preset: None };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let address = listener.local_addr()?;
        println!("playground: http://{address}/playground");
        let scenarios: Vec<String> =
            presets::PRESET_NAMES.iter().map(|name| format!("http://{address}/playground?preset={name}")).collect();
        println!("guided scenarios: {}", scenarios.join("  "));
        println!("Ctrl-C stops it.");
        tokio::select! {
            result = serve_playground(listener, start) => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

fn refused(session: &Session, error: String) -> Response {
    let body = serde_json::json!({ "error": error, "state": session.view() });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

fn answer(session: &Session, result: Result<(), String>) -> Response {
    match result {
        Ok(()) => Json(session.view()).into_response(),
        Err(error) => refused(session, error),
    }
}

async fn state_route(State(shared): State<Shared>) -> Response {
    let session = shared.lock().await;
    Json(session.view()).into_response()
}

async fn action_route(State(shared): State<Shared>, Json(action): Json<Action>) -> Response {
    let mut session = shared.lock().await;
    let result = session.act(action);
    answer(&session, result)
}

async fn next_route(State(shared): State<Shared>) -> Response {
    let mut session = shared.lock().await;
    let result = session.next_preset_step();
    answer(&session, result)
}

/// Body of `POST /api/playground/rewind`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RewindRequest {
    step: usize,
}

async fn rewind_route(State(shared): State<Shared>, Json(request): Json<RewindRequest>) -> Response {
    let mut session = shared.lock().await;
    let result = session.rewind(request.step);
    answer(&session, result)
}

async fn reset_route(State(shared): State<Shared>, Json(start): Json<SessionStart>) -> Response {
    let mut session = shared.lock().await;
    match Session::new(start) {
        Ok(fresh) => {
            *session = fresh;
            Json(session.view()).into_response()
        }
        Err(error) => refused(&session, error),
    }
}
