//! `chatlm serve`: an OpenAI-compatible HTTP server over the `chatlm` pipeline crate.
//!
//! - [`serve`] binds, starts the [`Batcher`] (continuous batching, per-slot prompt caches)
//!   and answers until Ctrl-C / SIGTERM;
//! - routes ([`router`]): `POST /v1/chat/completions`, `POST /v1/completions` ([`completions`]),
//!   `GET /v1/models`, `GET /health`, `GET /metrics`, `POST /tokenize`, `POST /detokenize` ([`admin`]);
//! - request fields ([`params`]) with OpenAI's names and ranges; errors ([`error`]) with
//!   OpenAI's body; tool calls in and out ([`tools`]).
//!
//! Every route but `/health` needs `Authorization: Bearer KEY` when a key is set.

pub mod admin;
pub mod completions;
pub mod error;
pub mod generation;
pub mod params;
pub mod tools;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chatlm::{BatchOptions, Batcher, Engine, GenerationConfig};
use serde_json::Value;

use crate::error::ApiError;

/// `system_fingerprint` of every response: the crate version.
pub const FINGERPRINT: &str = concat!("chatlm-", env!("CARGO_PKG_VERSION"));

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port (0 picks a free one; the chosen address is printed).
    pub port: u16,
    /// Bearer key every route but `/health` requires.
    pub api_key: Option<String>,
    /// Sequences generated at once (slots).
    pub parallel: usize,
    /// Requests that may wait for a slot; more get 503.
    pub queue: usize,
    /// Tokens per slot (prompt + answer).
    pub ctx_size: usize,
    /// Keep each slot's cache between requests and reuse common prefixes.
    pub prompt_cache: bool,
    /// The model id reported by `/v1/models` and in responses.
    pub model_name: String,
    /// Largest request body in bytes.
    pub max_body: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            parallel: 4,
            queue: 64,
            ctx_size: 4096,
            prompt_cache: true,
            model_name: "chatlm".into(),
            max_body: 4 << 20,
        }
    }
}

/// What every handler shares.
pub struct App {
    /// The batcher (and through it the engine).
    pub batcher: Batcher,
    /// The configuration in force.
    pub config: ServerConfig,
    /// Model defaults every request starts from.
    pub defaults: GenerationConfig,
    /// When the server started.
    pub started: Instant,
}

impl App {
    /// The state for `engine`: starts the batcher.
    pub fn new(engine: Arc<Engine>, config: ServerConfig) -> Arc<App> {
        let defaults = engine.default_config();
        let options = BatchOptions { slots: config.parallel, queue: config.queue, context: config.ctx_size, prompt_cache: config.prompt_cache };
        let batcher = Batcher::start(engine, options);
        Arc::new(App { batcher, config, defaults, started: Instant::now() })
    }
}

/// The routes over `app`.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(completions::chat))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/models", get(admin::models))
        .route("/metrics", get(admin::metrics))
        .route("/tokenize", post(admin::tokenize))
        .route("/detokenize", post(admin::detokenize))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&app), require_key));
    Router::new()
        .route("/health", get(admin::health))
        .merge(api)
        .fallback(|req: Request| async move { ApiError::not_found(req.uri().path()).into_response() })
        .with_state(app)
}

/// 401 unless the request carries the server's key (when it has one).
async fn require_key(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(key) = &app.config.api_key {
        let given = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if given.map(str::trim) != Some(key.as_str()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// The body as JSON, at most `limit` bytes: 413 over it, 400 for invalid JSON.
pub async fn read_json(body: Body, limit: usize) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::too_large(limit))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}"), None))
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// 24 random-looking alphanumerics for response and call ids.
pub fn random_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).rotate_left(17);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..24)
        .map(|_| {
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The async runtime did not start.
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The address could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// `host:port`.
        addr: String,
        /// The OS's reason.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
}

/// Runs the server until Ctrl-C or SIGTERM; `on_ready` gets the bound address (port 0 → the
/// port the OS chose) once requests are accepted.
pub fn serve(engine: Arc<Engine>, config: ServerConfig, on_ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    // Two runtime threads are plenty: HTTP work is light, the model has its own threads.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
        let local = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
        let app = App::new(engine, config);
        on_ready(local);
        axum::serve(listener, router(app)).with_graceful_shutdown(shutdown_signal()).await.map_err(ServeError::Serve)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
