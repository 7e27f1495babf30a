//! `chatlm serve` — the OpenAI-compatible server (`chatlm-server`) on a loaded model.

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Result};
use chatlm::Engine;
use chatlm_server::ServerConfig;
use clap::Args;

use crate::engine::LoadRequest;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    load: LoadRequest,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every route but /health (default: $CHATLM_API_KEY if set).
    #[arg(long, env = "CHATLM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Sequences generated at once (continuous batching slots).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Tokens per slot, prompt and answer [default: the model's context window, at most 4096].
    #[arg(long)]
    ctx_size: Option<usize>,
    /// Requests that may wait for a free slot; beyond that the server answers 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Do not keep slot caches between requests (every prompt is prefilled in full).
    #[arg(long)]
    no_prompt_cache: bool,
    /// Model id reported by /v1/models and in responses [default: the model file's name].
    #[arg(long)]
    alias: Option<String>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    chatlm::init_threads(args.load.weights.threads)?;
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if args.ctx_size == Some(0) {
        bail!("--ctx-size must be at least 1");
    }
    let engine = Arc::new(Engine::load(&args.load.spec())?);
    let window = engine.context_window();
    let ctx_size = match args.ctx_size {
        Some(n) if n > window => bail!("--ctx-size {n} is larger than the model's context window of {window} tokens"),
        Some(n) => n,
        None => window.min(4096),
    };
    let model_name = args.alias.clone().unwrap_or_else(|| {
        std::path::Path::new(engine.name()).file_stem().map_or_else(|| engine.name().to_string(), |s| s.to_string_lossy().into_owned())
    });
    let config = ServerConfig {
        host: args.host,
        port: args.port,
        api_key: args.api_key.filter(|k| !k.is_empty()),
        parallel: args.parallel,
        queue: args.queue,
        ctx_size,
        prompt_cache: !args.no_prompt_cache,
        model_name,
        ..ServerConfig::default()
    };
    let (parallel, name, load_s) = (config.parallel, engine.name().to_string(), engine.load_s());
    chatlm_server::serve(engine, config, |addr| {
        eprintln!("chatlm serve: {name} (loaded in {load_s:.2}s), {parallel} slots of {ctx_size} tokens");
        // The address on stdout, alone on its line: what scripts wait for.
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
