//! The small routes: `/health`, `/v1/models`, `/metrics` (Prometheus text), `/tokenize`,
//! `/detokenize` (llama.cpp server's shapes).

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::params::Fields;
use crate::{read_json, App};

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    let engine = app.batcher.engine();
    Json(json!({
        "object": "list",
        "data": [{
            "id": app.config.model_name,
            "object": "model",
            "created": crate::now() - app.started.elapsed().as_secs(),
            "owned_by": "chatlm",
            "meta": {"path": engine.name(), "context_window": engine.context_window(), "vocab_size": engine.model().config().vocab_size},
        }],
    }))
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let s = app.batcher.stats();
    let generated = s.generated_tokens.load(Ordering::Relaxed);
    let busy = s.busy_us.load(Ordering::Relaxed) as f64 / 1e6;
    let uptime = app.started.elapsed().as_secs_f64();
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(text, "# HELP chatlm_{name} {help}\n# TYPE chatlm_{name} {kind}\nchatlm_{name} {value}");
    };
    metric("requests_total", "counter", "Generation requests accepted (one per choice).", s.requests.load(Ordering::Relaxed) as f64);
    metric("requests_failed_total", "counter", "Generation requests that ended with an error.", s.failed.load(Ordering::Relaxed) as f64);
    metric("prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", s.prompt_tokens.load(Ordering::Relaxed) as f64);
    metric("prompt_tokens_cached_total", "counter", "Prompt tokens reused from slot caches.", s.cached_prompt_tokens.load(Ordering::Relaxed) as f64);
    metric("generated_tokens_total", "counter", "Tokens generated.", generated as f64);
    metric("queue_depth", "gauge", "Requests waiting for a free slot.", s.queued.load(Ordering::Relaxed) as f64);
    metric("requests_running", "gauge", "Requests being generated.", s.running.load(Ordering::Relaxed) as f64);
    metric("slots", "gauge", "Sequences generated at once (--parallel).", app.batcher.options().slots as f64);
    metric("busy_seconds_total", "counter", "Seconds the model spent on prefills and decode steps.", busy);
    metric(
        "generated_tokens_per_second",
        "gauge",
        "Generated tokens per busy second since start.",
        if busy > 0.0 { generated as f64 / busy } else { 0.0 },
    );
    metric("uptime_seconds", "gauge", "Seconds since the server started.", uptime);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn tokenize(State(app): State<Arc<App>>, body: Body) -> Response {
    let result = async {
        let body = read_json(body, app.config.max_body).await?;
        let f = Fields::of(&body)?;
        let text = f.string("content")?.ok_or_else(|| ApiError::invalid("`content` (a string) is required", Some("content")))?;
        let add_special = f.boolean("add_special")?.unwrap_or(false);
        let with_pieces = f.boolean("with_pieces")?.unwrap_or(false);
        let tokenizer = app.batcher.engine().tokenizer();
        let ids = tokenizer.encode(text, add_special).map_err(|e| ApiError::invalid(crate::error::chain(&e), Some("content")))?;
        let tokens: Vec<Value> = if with_pieces {
            ids.iter().map(|&id| json!({"id": id, "piece": tokenizer.decode(&[id], false).unwrap_or_default()})).collect()
        } else {
            ids.iter().map(|&id| json!(id)).collect()
        };
        Ok::<_, ApiError>(Json(json!({"tokens": tokens})))
    }
    .await;
    result.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

pub async fn detokenize(State(app): State<Arc<App>>, body: Body) -> Response {
    let result = async {
        let body = read_json(body, app.config.max_body).await?;
        let f = Fields::of(&body)?;
        let list = match f.value("tokens") {
            Some(Value::Array(list)) => list,
            _ => return Err(ApiError::invalid("`tokens` (a list of token ids) is required", Some("tokens"))),
        };
        let vocab = app.batcher.engine().model().config().vocab_size;
        let ids = list
            .iter()
            .map(|v| v.as_u64().filter(|&id| id < vocab as u64).map(|id| id as u32))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| ApiError::out_of_range("tokens", format!("`tokens` must be ids in [0, {vocab})")))?;
        let text = app.batcher.engine().decode(&ids, false).map_err(|e| ApiError::from_pipeline(&e))?;
        Ok(Json(json!({"content": text})))
    }
    .await;
    result.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}
