//! Renders one template on one request N times: the unit for measuring what a construct costs
//! (`valgrind --tool=cachegrind` at two N, difference / N = instructions per render).
//!
//! ```sh
//! cargo run --release -p chatlm-template --example render_micro -- TEMPLATE_FILE REQUEST_JSON N
//! ```
//! REQUEST_JSON: `{"messages": [...], "tools"?: [...], "add_generation_prompt"?: bool, "bos_token"?: str}`.

use chatlm_template::{ChatRequest, ChatTemplate, Renderer};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tpl, req, n] = &args[..] else { panic!("usage: render_micro TEMPLATE_FILE REQUEST_JSON N") };
    let source = std::fs::read_to_string(tpl).expect("template file");
    let line: Value = serde_json::from_str(&std::fs::read_to_string(req).expect("request file")).expect("json");
    let mut request = ChatRequest::new(line["messages"].as_array().expect("messages").clone());
    request.tools = line["tools"].as_array().cloned();
    request.add_generation_prompt = line["add_generation_prompt"].as_bool().unwrap_or(false);
    if let Some(b) = line["bos_token"].as_str() {
        request.set_special_token("bos_token", b);
    }
    let template = ChatTemplate::new(source.as_str()).expect("template compiles");
    let fast = template.render_with(&request, Renderer::Fast).expect("renders");
    let Some(first) = fast else { panic!("the fast path does not render this") };
    let n: usize = n.parse().expect("N");
    let mut bytes = 0;
    for _ in 0..n {
        bytes += template.render_with(&request, Renderer::Fast).unwrap().unwrap().text.len();
    }
    println!("{} bytes per render: {:?}", bytes / n.max(1), first.text);
}
