//! The server's routes over real HTTP on a loopback port, on the tiny random Llama GGUF of
//! chatlm-model's tests (128-token vocabulary, no chat template): status codes, error bodies,
//! the API key, completions with token ids, streaming, tokenize/detokenize, metrics. The
//! real-model tests through the `openai` client are in `tests/openai/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};

use chatlm::{Engine, LoadSpec};
use chatlm_server::{router, App, ServerConfig};
use serde_json::{json, Value};

const KEY: &str = "sekrit";

fn tiny() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../chatlm-model/tests/data/llama3_gguf/model.gguf").to_string()
}

/// One server for the whole file, on its own runtime thread.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let engine = Arc::new(Engine::load(&LoadSpec { model: Some(tiny()), ..Default::default() }).unwrap());
        let config = ServerConfig { api_key: Some(KEY.into()), parallel: 2, ctx_size: 64, max_body: 1 << 16, ..ServerConfig::default() };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, router(App::new(engine, config))).await.unwrap();
            });
        });
        rx.recv().unwrap()
    })
}

/// (status, body) of one HTTP/1.1 request.
fn request(method: &str, path: &str, body: &[u8], key: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(server()).unwrap();
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A body over the limit may be refused before it is all read: a failed write is fine.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    let body = if text.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

fn post(path: &str, body: Value) -> (u16, Value) {
    let (status, text) = request("POST", path, body.to_string().as_bytes(), Some(KEY));
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

fn error_of(body: &Value) -> (&str, Option<&str>) {
    (body["error"]["type"].as_str().unwrap_or(""), body["error"]["param"].as_str())
}

#[test]
fn completions_with_token_ids_follow_max_tokens_and_count_usage() {
    let (status, body) = post("/v1/completions", json!({"prompt": [1, 5, 9], "max_tokens": 4, "temperature": 0}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"], json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}));
    // Greedy is deterministic; two prompts and n = 2 give four choices in order.
    let (_, again) = post("/v1/completions", json!({"prompt": [1, 5, 9], "max_tokens": 4, "temperature": 0}));
    assert_eq!(again["choices"][0]["text"], body["choices"][0]["text"]);
    let (status, many) = post("/v1/completions", json!({"prompt": [[1, 5, 9], [2, 3]], "n": 2, "max_tokens": 3, "temperature": 0}));
    assert_eq!(status, 200, "{many}");
    let indexes: Vec<u64> = many["choices"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 1, 2, 3]);
    assert_eq!(many["usage"]["prompt_tokens"], 5);
}

#[test]
fn streaming_sends_chunks_then_done() {
    let body = json!({"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}});
    let (status, text) = request("POST", "/v1/completions", body.to_string().as_bytes(), Some(KEY));
    assert_eq!(status, 200, "{text}");
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let usage = chunks.last().unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    let finishes: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| &c["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(finishes, [&json!("length")]);
    let streamed: String = chunks.iter().filter_map(|c| c["choices"].get(0)).filter_map(|c| c["text"].as_str()).collect();
    let (_, whole) = post("/v1/completions", json!({"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0}));
    assert_eq!(streamed, whole["choices"][0]["text"].as_str().unwrap());
}

#[test]
fn bad_requests_get_openai_error_bodies() {
    let cases = [
        (json!({"prompt": [1], "temperature": -1}), "temperature"),
        (json!({"prompt": [1], "top_p": 1.5}), "top_p"),
        (json!({"prompt": [1], "n": 0}), "n"),
        (json!({"prompt": [1], "max_tokens": 0}), "max_tokens"),
        (json!({"prompt": [1], "stop": [""]}), "stop"),
        (json!({"prompt": [1], "temperature": "hot"}), "temperature"),
        (json!({"prompt": [1], "logprobs": 50}), "logprobs"),
        (json!({"max_tokens": 3}), "prompt"),
    ];
    for (body, param) in cases {
        let (status, reply) = post("/v1/completions", body.clone());
        assert_eq!(status, 400, "{body} -> {reply}");
        assert_eq!(error_of(&reply), ("invalid_request_error", Some(param)), "{body} -> {reply}");
        assert!(reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A prompt id outside the vocabulary, a prompt longer than a slot, invalid JSON.
    let (status, reply) = post("/v1/completions", json!({"prompt": [1, 500]}));
    assert_eq!(status, 400, "{reply}");
    let (status, reply) = post("/v1/completions", json!({"prompt": vec![1; 80]}));
    assert!(status == 400 && reply["error"]["message"].as_str().unwrap().contains("--ctx-size"), "{reply}");
    let (status, text) = request("POST", "/v1/completions", b"{oops", Some(KEY));
    assert!(status == 400 && text.contains("not valid JSON"), "{text}");
    let (status, text) = request("POST", "/v1/completions", &vec![b' '; 1 << 17], Some(KEY));
    assert!(status == 413 && text.contains("request_too_large"), "{status} {text}");
    // No chat template: the chat route says so instead of failing.
    let (status, reply) = post("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "hi"}]}));
    assert!(status == 400 && reply["error"]["message"].as_str().unwrap().contains("no chat template"), "{reply}");
    let (status, reply) = post("/v1/chat/completions", json!({"messages": []}));
    assert_eq!((status, error_of(&reply).1), (400, Some("messages")));
    let (status, reply) = post("/v1/chat/completions", json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}));
    assert_eq!((status, error_of(&reply).1), (400, Some("messages[0]")));
}

#[test]
fn api_key_guards_everything_but_health() {
    let (status, text) = request("GET", "/v1/models", b"", None);
    assert!(status == 401 && text.contains("invalid_api_key"), "{text}");
    let (status, _) = request("GET", "/v1/models", b"", Some("wrong"));
    assert_eq!(status, 401);
    let (status, text) = request("GET", "/health", b"", None);
    assert_eq!((status, text.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, text) = request("GET", "/v1/models", b"", Some(KEY));
    assert!(status == 200 && text.contains("\"object\":\"list\""), "{text}");
    let (status, text) = request("GET", "/nowhere", b"", Some(KEY));
    assert!(status == 404 && text.contains("\"error\""), "{text}");
}

#[test]
fn tokenize_detokenize_and_metrics() {
    let (status, reply) = post("/detokenize", json!({"tokens": [5, 6, 7]}));
    assert_eq!(status, 200, "{reply}");
    // The tiny model's vocabulary is `<tN>` pieces that no text encodes to; the real model's
    // round trip is in `tests/openai/`.
    assert_eq!(reply["content"], "<t5><t6><t7>");
    let (status, reply) = post("/tokenize", json!({"content": "<t5>", "with_pieces": true}));
    assert_eq!(status, 200, "{reply}");
    assert!(reply["tokens"].is_array(), "{reply}");
    let (status, reply) = post("/tokenize", json!({"text": "no content field"}));
    assert_eq!((status, error_of(&reply).1), (400, Some("content")));
    let (status, reply) = post("/detokenize", json!({"tokens": [5, 100000]}));
    assert_eq!((status, error_of(&reply).1), (400, Some("tokens")));
    post("/v1/completions", json!({"prompt": [1, 2], "max_tokens": 2}));
    let (status, text) = request("GET", "/metrics", b"", Some(KEY));
    assert_eq!(status, 200);
    for name in ["requests_total", "generated_tokens_total", "queue_depth", "generated_tokens_per_second"] {
        assert!(text.contains(&format!("\nchatlm_{name} ")), "{name} missing: {text}");
    }
}

#[test]
fn concurrent_requests_all_finish_with_their_own_answers() {
    // More requests than slots: the batcher queues, batches and answers each. (Rows stepped
    // together are not bit-identical to rows stepped alone: kernels sum in other orders, so
    // greedy answers may part at near-ties; the lengths are exact.)
    let handles: Vec<_> = (0..6)
        .map(|i| std::thread::spawn(move || post("/v1/completions", json!({"prompt": [3, 4, 5 + i % 2], "max_tokens": 6, "temperature": 0}))))
        .collect();
    for h in handles {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["usage"]["completion_tokens"], 6, "{body}");
    }
}
