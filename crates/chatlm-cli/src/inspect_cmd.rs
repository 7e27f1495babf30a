//! `chatlm inspect`: what a tokenizer, model directory or GGUF file contains.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::tokenize_cmd::load_tokenizer;

#[derive(Args)]
pub struct InspectArgs {
    /// A model directory, a tokenizer.json or a GGUF file.
    path: PathBuf,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let tokenizer = load_tokenizer(&args.path)?;
    let special = tokenizer.special_tokens();
    let named = |token: &Option<String>| match token {
        Some(text) => json!({ "token": text, "id": tokenizer.token_to_id(text) }),
        None => Value::Null,
    };
    let stop_ids = chatlm::stop_ids(&tokenizer, &chatlm::GenerationConfig::default(), None);
    let stop_tokens: Vec<Value> = stop_ids
        .iter()
        .map(|&id| json!({ "id": id, "token": tokenizer.id_to_token(id) }))
        .collect();
    let pre_tokenizer = tokenizer.pre_tokenizer_name();
    let model_type = serde_json::to_value(tokenizer.inner().get_model())
        .ok()
        .and_then(|model| model.get("type").and_then(Value::as_str).map(str::to_owned));
    let template = tokenizer.chat_template().map(|source| {
        let names = chatlm_template::template_names(source);
        let recognised = chatlm_template::recognise(source);
        json!({ "names": names, "recognised": recognised })
    });
    let summary = json!({
        "path": args.path.display().to_string(),
        "model": model_type,
        "vocab_size": tokenizer.vocab_size(),
        "len": tokenizer.len(),
        "special_tokens": {
            "bos": named(&special.bos), "eos": named(&special.eos), "unk": named(&special.unk),
            "pad": named(&special.pad), "sep": named(&special.sep), "cls": named(&special.cls),
            "mask": named(&special.mask), "additional": special.additional,
        },
        "stop_tokens": stop_tokens,
        "padding_side": format!("{:?}", tokenizer.padding_side()).to_lowercase(),
        "model_max_length": tokenizer.model_max_length(),
        "pre_tokenizer": pre_tokenizer,
        "fast_encode": tokenizer.has_fast_encode(),
        "chat_template": template,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_readable(&summary);
    }
    Ok(())
}


fn print_readable(summary: &Value) {
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!("path            {}", text(&summary["path"]));
    println!("model           {}", text(&summary["model"]));
    println!("vocab size      {} (len with added tokens: {})", summary["vocab_size"], summary["len"]);
    println!("pre-tokenizer   {}", text(&summary["pre_tokenizer"]));
    let fast = if summary["fast_encode"] == true { "hand-written split + piece cache" } else { "tokenizers pipeline" };
    println!("encode path     {fast}");
    println!("padding side    {}", text(&summary["padding_side"]));
    println!("max length      {}", text(&summary["model_max_length"]));
    println!("special tokens");
    for key in ["bos", "eos", "unk", "pad", "sep", "cls", "mask"] {
        let entry = &summary["special_tokens"][key];
        if !entry.is_null() {
            println!("  {key:<13} {} = {}", text(&entry["token"]), text(&entry["id"]));
        }
    }
    let additional = summary["special_tokens"]["additional"].as_array().map_or(0, Vec::len);
    if additional > 0 {
        println!("  additional    {additional} tokens");
    }
    let stops: Vec<String> = summary["stop_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| format!("{} = {}", text(&s["token"]), s["id"]))
        .collect();
    println!("stop tokens     {}", if stops.is_empty() { "-".to_owned() } else { stops.join(", ") });
    let template = &summary["chat_template"];
    if template.is_null() {
        println!("chat template   none");
    } else {
        let recognised = template["recognised"].as_str().unwrap_or("not a known template");
        println!("chat template   {recognised} (templates: {})", text(&template["names"]));
    }
}
