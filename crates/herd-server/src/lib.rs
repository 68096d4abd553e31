//! herd's OpenAI-compatible HTTP server: `POST /v1/chat/completions` and
//! `POST /v1/completions` (whole or streamed as server-sent events),
//! `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus text) and a
//! web chat page at `/`.
//!
//! # Design decisions
//!
//! **The engine is the only shared state.** Handlers hold an
//! [`EngineHandle`] and submit one engine request per choice; all batching,
//! KV memory and scheduling live behind it. The server only turns HTTP
//! into token ids and events back into JSON, so it never blocks on the
//! model and a slow client never holds the engine (see `generation.rs`
//! for how a disconnect cancels a request by dropping its stream).
//!
//! **Text is cut on the server, ids are stopped in the engine.** Stop
//! tokens end generation inside the engine; stop strings need detokenized
//! text, so each choice keeps a [`herd_tokenizer::StreamDecoder`], holds
//! back any suffix that may grow into a stop string and, on a match, cuts
//! the text and drops the request (`output.rs`). Tool calls are held back
//! the same way once the output starts like one, then parsed whole by
//! [`herd_tokenizer::parse_tool_output`].
//!
//! **One error type, one mapping.** Every failure is a [`ServerError`];
//! its `IntoResponse` is the only place that picks an HTTP status and
//! writes OpenAI's `{"error": {...}}` body.
#![deny(missing_docs)]

mod agents;
mod api;
mod chat;
mod completions;
mod constraint;
mod error;
mod generation;
mod metrics;
mod output;
mod params;
mod prompt;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herd_engine::EngineHandle;
use herd_tokenizer::{SpecialToken, Tokenizer};
use serde::de::DeserializeOwned;
use serde_json::json;

pub use error::{Result, ServerError};

use constraint::Structured;
use metrics::Metrics;

/// The web chat page: one static file, no build step.
const PAGE: &str = include_str!("page.html");

/// What the server is configured with (from `herd serve` flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The id clients put in `model` and `/v1/models` lists.
    pub model_name: String,
    /// When set, `/v1/*` requires `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Most alternatives per token (`top_logprobs`, legacy `logprobs`).
    pub max_logprobs: usize,
    /// Most choices per prompt (`n`).
    pub max_n: usize,
}

/// Everything handlers share.
pub(crate) struct AppState {
    engine: EngineHandle,
    tokenizer: Tokenizer,
    stop_ids: Vec<u32>,
    python_tag: Option<u32>,
    config: ServerConfig,
    metrics: Metrics,
    structured: Structured,
    /// Agents served as models of their own (`herd serve --agents`).
    agents: Vec<Arc<herd_agent::Agent>>,
}

impl AppState {
    /// Fails unless `model` is the served model.
    fn check_model(&self, model: &str) -> Result<()> {
        if model == self.config.model_name {
            Ok(())
        } else {
            Err(ServerError::ModelNotFound(model.to_owned()))
        }
    }
}

/// Reads a JSON body; any syntax or shape error is a 400 naming the problem.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| ServerError::InvalidJson(e.to_string()))
}

/// An HTTP server for one model.
pub struct Server {
    state: Arc<AppState>,
}

impl Server {
    /// A server over a running engine, with the model's tokenizer and the
    /// token ids that end generation.
    pub fn new(
        engine: EngineHandle,
        tokenizer: Tokenizer,
        stop_ids: Vec<u32>,
        config: ServerConfig,
    ) -> Server {
        let python_tag = tokenizer.special_id(SpecialToken::PythonTag.name());
        let structured = Structured::new(&tokenizer, stop_ids.clone());
        Server {
            state: Arc::new(AppState {
                engine,
                tokenizer,
                stop_ids,
                python_tag,
                structured,
                config,
                metrics: Metrics::default(),
                agents: Vec::new(),
            }),
        }
    }

    /// Also serves `agents`, each as a model named like the agent whose
    /// chat completions run the agent loop (see `agents.rs`). Fails if an
    /// agent is named like the served model or like another agent.
    pub fn with_agents(mut self, agents: Vec<Arc<herd_agent::Agent>>) -> Result<Server> {
        for (i, agent) in agents.iter().enumerate() {
            if agent.name() == self.state.config.model_name
                || agents[..i].iter().any(|a| a.name() == agent.name())
            {
                return Err(ServerError::param(
                    "model",
                    format!("two models are named {:?}", agent.name()),
                ));
            }
        }
        let state = Arc::get_mut(&mut self.state).ok_or_else(|| {
            ServerError::Generation("agents must be added before the server runs".into())
        })?;
        state.agents = agents;
        Ok(self)
    }

    /// The routes, with authentication on `/v1/*` and request counting.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let api = Router::new()
            .route("/v1/chat/completions", post(chat::completions))
            .route("/v1/completions", post(completions::completions))
            .route("/v1/models", get(models))
            .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
        Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/metrics", get(prometheus))
            .merge(api)
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(state.clone(), count))
            .with_state(state)
    }

    /// Serves on `addr` until Ctrl-C, on a runtime of its own; `listening`
    /// is told the bound address (port 0 picks a free port).
    pub fn run(self, addr: SocketAddr, listening: impl FnOnce(SocketAddr)) -> Result<()> {
        let io = |source| ServerError::Io {
            addr: addr.to_string(),
            source,
        };
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .map_err(io)?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(io)?;
            listening(listener.local_addr().map_err(io)?);
            axum::serve(listener, self.router())
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .map_err(io)
        })
    }
}

/// `GET /v1/models`.
async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let mut data = vec![json!({
        "id": state.config.model_name,
        "object": "model",
        "created": 0,
        "owned_by": "herd",
        "max_model_len": state.engine.max_context(),
    })];
    data.extend(agents::model_entries(
        &state.agents,
        state.engine.max_context(),
    ));
    Json(json!({ "object": "list", "data": data }))
}

/// `GET /metrics`.
async fn prometheus(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.engine.metrics()),
    )
}

async fn not_found(uri: Uri) -> ServerError {
    ServerError::NotFound(uri.path().to_owned())
}

/// Requires the API key when one is configured.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g.as_bytes(), key.as_bytes())) {
            return ServerError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// Compares a key in time independent of where it first differs, so the
/// key cannot be guessed byte by byte from response times.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts every answered request by route and status.
async fn count(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    state.metrics.request(&endpoint, response.status().as_u16());
    response
}
