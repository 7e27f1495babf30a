//! `POST /v1/chat/completions` and `POST /v1/completions`: request → prompt ids →
//! choices on the batcher → an OpenAI response object or a stream of chunks.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatlm::logprobs::TokenLogprobs;
use chatlm::FinishReason;
use chatlm_template::ChatRequest;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::generation::{apply, start, Choice, Running};
use crate::params::{sampling, Fields, Sampling};
use crate::tools;
use chatlm::constraint;
use crate::{read_json, App};

/// What kind of answer is being built.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Completion,
}

/// Per response: what the JSON builders need besides the choices.
struct Meta {
    api: Api,
    id: String,
    created: u64,
    model: String,
    tools: bool,
    logprobs: bool,
    include_usage: bool,
}

impl Meta {
    fn new(api: Api, app: &App, sampling: &Sampling, tools: bool) -> Meta {
        let prefix = if api == Api::Chat { "chatcmpl" } else { "cmpl" };
        Meta {
            api,
            id: format!("{prefix}-{}", crate::random_id()),
            created: crate::now(),
            model: app.config.model_name.clone(),
            tools,
            logprobs: sampling.logprobs.is_some(),
            include_usage: sampling.include_usage,
        }
    }
}

pub async fn chat(State(app): State<Arc<App>>, body: Body) -> Response {
    match chat_inner(app, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

pub async fn completions(State(app): State<Arc<App>>, body: Body) -> Response {
    match completions_inner(app, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(app: Arc<App>, body: Body) -> Result<Response, ApiError> {
    let body = read_json(body, app.config.max_body).await?;
    let f = Fields::of(&body)?;
    let sampling = sampling(&f, &app.defaults, false)?;
    let messages = messages(&f)?;
    let tools = match (f.value("tools"), f.value("tool_choice").and_then(Value::as_str)) {
        (_, Some("none")) | (None, _) => None,
        (Some(Value::Array(list)), _) if list.is_empty() => None,
        (Some(Value::Array(list)), _) => Some(list.clone()),
        (Some(v), _) => return Err(ApiError::invalid(format!("`tools` must be a list, got {v}"), Some("tools"))),
    };
    let forced = forced_tool(f.value("tool_choice"), tools.as_deref())?;
    let format = match f.value("response_format") {
        Some(format) => response_format(format)?,
        None => None,
    };
    if forced.is_some() && format.is_some() {
        return Err(ApiError::invalid("a forced tool call and a JSON `response_format` cannot both constrain the answer", Some("response_format")));
    }
    let mut request = ChatRequest::new(messages);
    let has_tools = tools.is_some();
    request.tools = tools.clone();
    let engine = Arc::clone(app.batcher.engine());
    let prompt = engine.render_request(request, true).map_err(|e| ApiError::from_pipeline(&e))?;
    // One constraint per choice (each walks its own grammar state); checked once up front so
    // a bad schema is a 400 before anything runs.
    let constraint: Constraints = match (forced, format) {
        (Some(only), _) => {
            let tools = tools.clone().unwrap_or_default();
            Box::new(move || constraint::tool_call_constraint(&engine, &tools, only.as_deref()).map(Some))
        }
        (None, Some(schema)) => Box::new(move || constraint::json_constraint(&engine, schema.as_ref()).map(Some)),
        (None, None) => Box::new(|| Ok(None)),
    };
    let meta = Meta::new(Api::Chat, &app, &sampling, has_tools);
    // With tools, special tokens stay in the text until the calls are parsed out
    // (`[TOOL_CALLS]`, `<|python_tag|>` are special tokens).
    run(&app, &[prompt], sampling, meta, constraint).await
}

async fn completions_inner(app: Arc<App>, body: Body) -> Result<Response, ApiError> {
    let body = read_json(body, app.config.max_body).await?;
    let f = Fields::of(&body)?;
    let sampling = sampling(&f, &app.defaults, true)?;
    if f.boolean("echo")?.unwrap_or(false) {
        return Err(ApiError::invalid("`echo` is not supported", Some("echo")));
    }
    if f.value("suffix").is_some() {
        return Err(ApiError::invalid("`suffix` is not supported", Some("suffix")));
    }
    let engine = Arc::clone(app.batcher.engine());
    let encode = |text: &str| {
        engine.prompt_ids(&chatlm::Prompt::Raw(text.to_string())).map_err(|e| ApiError::from_pipeline(&e))
    };
    let ids = |v: &Value| -> Result<Vec<u32>, ApiError> {
        let list = v.as_array().ok_or_else(|| ApiError::invalid("`prompt` must be a string, a list of strings or token ids", Some("prompt")))?;
        let ids = list
            .iter()
            .map(|t| t.as_u64().filter(|&t| t <= u32::MAX as u64).map(|t| t as u32))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| ApiError::invalid("token ids in `prompt` must be non-negative integers", Some("prompt")))?;
        engine.prompt_ids(&chatlm::Prompt::Ids(ids)).map_err(|e| ApiError::from_pipeline(&e))
    };
    let prompts: Vec<Vec<u32>> = match f.value("prompt") {
        None => return Err(ApiError::invalid("`prompt` is required", Some("prompt"))),
        Some(Value::String(s)) => vec![encode(s)?],
        Some(Value::Array(list)) if list.is_empty() => return Err(ApiError::invalid("`prompt` is empty", Some("prompt"))),
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
            list.iter().map(|s| encode(s.as_str().unwrap_or_default())).collect::<Result<_, _>>()?
        }
        Some(Value::Array(list)) if list.iter().all(Value::is_array) => list.iter().map(ids).collect::<Result<_, _>>()?,
        Some(v @ Value::Array(_)) => vec![ids(v)?],
        Some(v) => return Err(ApiError::invalid(format!("`prompt` must be a string, a list of strings or token ids, got {v}"), Some("prompt"))),
    };
    let meta = Meta::new(Api::Completion, &app, &sampling, false);
    run(&app, &prompts, sampling, meta, Box::new(|| Ok(None))).await
}

/// `messages` checked and shaped for the template: roles are strings, content is a string,
/// null (read as ""), or a list of text parts (joined with newlines, as vLLM does).
fn messages(f: &Fields) -> Result<Vec<Value>, ApiError> {
    let list = match f.value("messages") {
        Some(Value::Array(list)) => list,
        Some(v) => return Err(ApiError::invalid(format!("`messages` must be a list, got {v}"), Some("messages"))),
        None => return Err(ApiError::invalid("`messages` is required", Some("messages"))),
    };
    if list.is_empty() {
        return Err(ApiError::invalid("`messages` must hold at least one message", Some("messages")));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let param = format!("messages[{i}]");
            let obj = m.as_object().ok_or_else(|| ApiError::invalid(format!("{param} must be an object"), Some(&param)))?;
            if !obj.get("role").is_some_and(Value::is_string) {
                return Err(ApiError::invalid(format!("{param} needs a string `role`"), Some(&param)));
            }
            let mut obj: Map<String, Value> = obj.clone();
            let content = match obj.get("content") {
                // An assistant turn that only calls tools has no content; templates read it as
                // a string (vLLM hands them "" too).
                None | Some(Value::Null) => Value::String(String::new()),
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => Value::String(text_parts(parts, &param)?),
                Some(v) => return Err(ApiError::invalid(format!("{param}.content must be a string or a list of parts, got {v}"), Some(&param))),
            };
            obj.insert("content".into(), content);
            Ok(Value::Object(tools::template_message(obj)))
        })
        .collect()
}

fn text_parts(parts: &[Value], param: &str) -> Result<String, ApiError> {
    let texts = parts
        .iter()
        .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
            (Some("text"), Some(t)) => Ok(t.to_string()),
            (Some(kind), _) if kind != "text" => {
                Err(ApiError::invalid(format!("{param}: content parts of type `{kind}` are not supported (text only)"), Some(param)))
            }
            _ => Err(ApiError::invalid(format!("{param}: a content part needs `type: \"text\"` and a string `text`"), Some(param))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(texts.join("\n"))
}

/// `response_format`: `None` for text, `Some(None)` for any JSON object, `Some(Some(schema))`
/// for a JSON schema.
fn response_format(format: &Value) -> Result<Option<Option<Value>>, ApiError> {
    const PARAM: Option<&str> = Some("response_format");
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(None)),
        Some("json_schema") => {
            let schema = format.pointer("/json_schema/schema").filter(|s| s.is_object() || s.is_boolean()).ok_or_else(|| {
                ApiError::invalid("`response_format.json_schema.schema` (a JSON schema object) is required", PARAM)
            })?;
            Ok(Some(Some(schema.clone())))
        }
        _ => Err(ApiError::invalid(format!("`response_format.type` must be text, json_object or json_schema, got {format}"), PARAM)),
    }
}

/// `tool_choice`: `None` when the model may answer freely (`auto`, `none`, absent),
/// `Some(None)` for `required` (a call to any tool), `Some(Some(name))` for one named function.
fn forced_tool(choice: Option<&Value>, tools: Option<&[Value]>) -> Result<Option<Option<String>>, ApiError> {
    const PARAM: Option<&str> = Some("tool_choice");
    let forced = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s == "auto" || s == "none" => return Ok(None),
        Some(Value::String(s)) if s == "required" => None,
        Some(v @ Value::Object(_)) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(name.to_string()),
            None => return Err(ApiError::invalid("`tool_choice` objects need `function.name`", PARAM)),
        },
        Some(v) => return Err(ApiError::invalid(format!("`tool_choice` must be auto, none, required or a function, got {v}"), PARAM)),
    };
    let names: Vec<&str> = tools.unwrap_or_default().iter().filter_map(|t| t.pointer("/function/name").and_then(Value::as_str)).collect();
    if names.is_empty() {
        return Err(ApiError::invalid("`tool_choice` forces a tool call but `tools` names no function", PARAM));
    }
    if let Some(name) = &forced {
        if !names.contains(&name.as_str()) {
            return Err(ApiError::invalid(format!("`tool_choice` names `{name}`, which is not in `tools`"), PARAM));
        }
    }
    Ok(Some(forced))
}

/// Makes each choice's constraint (or none).
type Constraints = Box<dyn Fn() -> chatlm::Result<Option<Box<dyn chatlm::Constraint>>> + Send + Sync>;

async fn run(app: &Arc<App>, prompts: &[Vec<u32>], sampling: Sampling, meta: Meta, constraint: Constraints) -> Result<Response, ApiError> {
    let skip_special = !meta.tools;
    let running = start(&app.batcher, prompts, &sampling, skip_special, &*constraint)?;
    let count = prompts.len() * sampling.n;
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    if sampling.stream {
        return Ok(Sse::new(stream_chunks(app, running, count, meta, prompt_tokens)).into_response());
    }
    let choices = running.collect(count).await?;
    let completion_tokens: usize = choices.iter().map(|c| c.ids.len()).sum();
    let list: Vec<Value> = choices.iter().enumerate().map(|(i, c)| choice_json(app, &meta, i, c)).collect();
    let object = if meta.api == Api::Chat { "chat.completion" } else { "text_completion" };
    Ok(Json(json!({
        "id": meta.id,
        "object": object,
        "created": meta.created,
        "model": meta.model,
        "choices": list,
        "usage": usage(prompt_tokens, completion_tokens),
        "system_fingerprint": crate::FINGERPRINT,
    }))
    .into_response())
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn finish_name(reason: Option<FinishReason>) -> &'static str {
    match reason {
        Some(FinishReason::Stop) => "stop",
        Some(FinishReason::Length) | None => "length",
        // A cancelled choice has no reader; keep the field valid anyway.
        Some(FinishReason::Cancelled) => "stop",
    }
}

/// A whole (non-streamed) choice.
fn choice_json(app: &App, meta: &Meta, index: usize, c: &Choice) -> Value {
    let mut finish = finish_name(c.finish);
    if meta.api == Api::Completion {
        return json!({"index": index, "text": c.text, "logprobs": meta.logprobs.then(|| legacy_logprobs(app, &c.logprobs)), "finish_reason": finish});
    }
    let mut message = json!({"role": "assistant", "content": c.text});
    if meta.tools {
        let engine = app.batcher.engine();
        match tools::parse(&c.text) {
            Some(parsed) => {
                message["content"] = parsed.content.map_or(Value::Null, Value::String);
                message["tool_calls"] = Value::Array(tools::openai_calls(&parsed.calls, &crate::random_id()));
                finish = "tool_calls";
            }
            // No call: the text without special tokens, as without tools.
            None => message["content"] = Value::String(engine.decode(&c.ids, true).unwrap_or_else(|_| c.text.clone())),
        }
    }
    json!({"index": index, "message": message, "logprobs": meta.logprobs.then(|| chat_logprobs(app, &c.logprobs)), "finish_reason": finish})
}

fn token_text(app: &App, id: u32) -> String {
    app.batcher.engine().decode(&[id], false).unwrap_or_default()
}

fn chat_entry(app: &App, (id, logprob): (u32, f32)) -> Value {
    let token = token_text(app, id);
    json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()})
}

fn chat_logprobs(app: &App, steps: &[TokenLogprobs]) -> Value {
    let content: Vec<Value> = steps
        .iter()
        .map(|s| {
            let mut entry = chat_entry(app, s.chosen);
            entry["top_logprobs"] = Value::Array(s.top.iter().map(|&t| chat_entry(app, t)).collect());
            entry
        })
        .collect();
    json!({"content": content})
}

/// The completions API's older shape: parallel lists and one `{token: logprob}` map per step.
fn legacy_logprobs(app: &App, steps: &[TokenLogprobs]) -> Value {
    let mut offset = 0;
    let (mut tokens, mut logprobs, mut tops, mut offsets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in steps {
        let token = token_text(app, s.chosen.0);
        offsets.push(offset);
        offset += token.len();
        tokens.push(token);
        logprobs.push(s.chosen.1);
        let top: Map<String, Value> = s.top.iter().map(|&(id, lp)| (token_text(app, id), json!(lp))).collect();
        tops.push(Value::Object(top));
    }
    json!({"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets})
}

/// State of a stream: the choices so far and which have sent their first and last chunk.
struct StreamState {
    running: Running,
    choices: Vec<Choice>,
    greeted: Vec<bool>,
    open: usize,
    done: bool,
    meta: Meta,
    app: Arc<App>,
    /// Tokens of the request's prompts (each counted once, however many choices).
    prompt_tokens: usize,
}

fn stream_chunks(app: &Arc<App>, running: Running, count: usize, meta: Meta, prompt_tokens: usize) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let state = StreamState {
        prompt_tokens,
        running,
        choices: vec![Choice::default(); count],
        greeted: vec![false; count],
        open: count,
        done: false,
        meta,
        app: Arc::clone(app),
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if st.open == 0 {
                st.done = true;
                let mut events = Vec::new();
                if st.meta.include_usage {
                    let prompt = st.prompt_tokens;
                    let completion: usize = st.choices.iter().map(|c| c.ids.len()).sum();
                    let mut chunk = chunk_base(&st.meta);
                    chunk["choices"] = json!([]);
                    chunk["usage"] = usage(prompt, completion);
                    events.push(SseEvent::default().data(chunk.to_string()));
                }
                events.push(SseEvent::default().data("[DONE]"));
                return Some((ready(events), st));
            }
            let Some((i, event)) = st.running.events.recv().await else {
                st.done = true;
                let err = ApiError::internal("the generation worker stopped before the answer was complete");
                return Some((ready(vec![SseEvent::default().data(err.body().to_string())]), st));
            };
            let before = st.choices[i].text.len();
            let ended = match apply(&mut st.choices[i], event) {
                Ok(ended) => ended,
                Err(e) => {
                    // Headers are sent: the error travels as a data event, then the stream ends.
                    st.done = true;
                    return Some((ready(vec![SseEvent::default().data(e.body().to_string())]), st));
                }
            };
            let mut events = Vec::new();
            let c = &st.choices[i];
            let delta_text = c.text.get(before..).unwrap_or("").to_string();
            let hold = st.meta.tools; // tool calls are parsed from the whole answer
            if !st.greeted[i] && st.meta.api == Api::Chat {
                st.greeted[i] = true;
                events.push(delta_chunk(&st.meta, i, json!({"role": "assistant", "content": ""}), None, None));
            }
            let token_logprobs = if st.meta.logprobs && !ended { c.logprobs.last().cloned() } else { None };
            if !hold && (!delta_text.is_empty() || token_logprobs.is_some()) {
                let lp = token_logprobs.map(|s| match st.meta.api {
                    Api::Chat => chat_logprobs(&st.app, &[s]),
                    Api::Completion => legacy_logprobs(&st.app, &[s]),
                });
                events.push(text_chunk(&st.meta, i, &delta_text, lp, None));
            }
            if ended {
                st.open -= 1;
                let mut delta = json!({});
                let mut finish = finish_name(c.finish);
                if hold {
                    match tools::parse(&c.text) {
                        Some(parsed) => {
                            delta["content"] = parsed.content.map_or(Value::Null, Value::String);
                            let calls = tools::openai_calls(&parsed.calls, &crate::random_id());
                            let indexed: Vec<Value> = calls
                                .into_iter()
                                .enumerate()
                                .map(|(k, mut call)| {
                                    call["index"] = json!(k);
                                    call
                                })
                                .collect();
                            delta["tool_calls"] = Value::Array(indexed);
                            finish = "tool_calls";
                        }
                        None => {
                            let text = st.app.batcher.engine().decode(&c.ids, true).unwrap_or_else(|_| c.text.clone());
                            delta["content"] = Value::String(text);
                        }
                    }
                }
                match st.meta.api {
                    Api::Chat => events.push(delta_chunk(&st.meta, i, delta, Some(finish), None)),
                    Api::Completion => events.push(text_chunk(&st.meta, i, "", None, Some(finish))),
                }
            }
            if !events.is_empty() {
                return Some((ready(events), st));
            }
        }
    })
    .flatten()
}

/// Events ready to send, as the stream of one step.
fn ready(events: Vec<SseEvent>) -> stream::Iter<std::vec::IntoIter<Result<SseEvent, Infallible>>> {
    stream::iter(events.into_iter().map(Ok).collect::<Vec<_>>())
}

fn chunk_base(meta: &Meta) -> Value {
    let object = if meta.api == Api::Chat { "chat.completion.chunk" } else { "text_completion" };
    let mut chunk = json!({"id": meta.id, "object": object, "created": meta.created, "model": meta.model, "system_fingerprint": crate::FINGERPRINT});
    if meta.include_usage {
        chunk["usage"] = Value::Null;
    }
    chunk
}

fn delta_chunk(meta: &Meta, index: usize, delta: Value, finish: Option<&str>, logprobs: Option<Value>) -> SseEvent {
    let mut chunk = chunk_base(meta);
    chunk["choices"] = json!([{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]);
    SseEvent::default().data(chunk.to_string())
}

fn text_chunk(meta: &Meta, index: usize, text: &str, logprobs: Option<Value>, finish: Option<&str>) -> SseEvent {
    match meta.api {
        Api::Chat => delta_chunk(meta, index, json!({"content": text}), finish, logprobs),
        Api::Completion => {
            let mut chunk = chunk_base(meta);
            chunk["choices"] = json!([{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]);
            SseEvent::default().data(chunk.to_string())
        }
    }
}

