//! `herd serve`: load a model, start the engine, serve the OpenAI API.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use herd_engine::{DraftConfig, EngineConfig, EngineHandle};
use herd_server::{Server, ServerConfig};
use herd_tokenizer::Tokenizer;

use crate::args::ModelArgs;
use crate::load::{load, stop_ids};

/// `herd serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer <key>` on /v1/*.
    #[arg(long, env = "HERD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The model id clients send (default: the model's directory or file name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Sequences decoded together at most.
    #[arg(long, default_value_t = 64)]
    pub max_num_seqs: usize,
    /// Memory for the KV cache, e.g. 512MiB, 4GiB or a byte count.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub kv_cache_memory: u64,
    /// Positions per KV block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// Tokens computed per engine step at most (bounds chunked prefill).
    #[arg(long, default_value_t = 512)]
    pub max_batch_tokens: usize,
    /// Do not reuse the KV of identical prompt prefixes.
    #[arg(long)]
    pub no_prefix_caching: bool,
    /// Most alternatives per token a request may ask for (top_logprobs).
    #[arg(long, default_value_t = 20)]
    pub max_logprobs: usize,
    /// Most choices per prompt (n).
    #[arg(long, default_value_t = 16)]
    pub max_n: usize,
    /// Speculative decoding: used while a single request is decoding (with
    /// several, continuous batching already shares each pass of the weights).
    #[command(flatten)]
    pub draft: crate::draft::DraftArgs,
    /// Agent directories (agent.toml) to serve, each as a model named like
    /// the agent; they run on the served model.
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub agents: Vec<std::path::PathBuf>,
    /// The conversation database of the agents (default: conversations.db
    /// in the first agent's directory).
    #[arg(long, value_name = "FILE")]
    pub conversations: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub parallel: crate::parallel::ParallelArgs,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.parallel.requested()? {
        return crate::parallel::serve(args);
    }
    let loaded = load(&args.model)?;
    let stops = stop_ids(&loaded);
    let draft = args.draft.load(&loaded)?;
    let config = engine_config(&args);
    let model = Arc::new(loaded.model);
    let engine = match draft {
        None => EngineHandle::start(model, config)?,
        Some(draft) => EngineHandle::start_speculative(
            model,
            config,
            DraftConfig {
                model: draft,
                draft_tokens: args.draft.draft_tokens,
            },
        )?,
    };
    listen(args, engine, loaded.tokenizer, &loaded.name, stops)
}

/// The engine's limits from the flags.
pub fn engine_config(args: &ServeArgs) -> EngineConfig {
    EngineConfig {
        max_num_seqs: args.max_num_seqs,
        kv_cache_bytes: args.kv_cache_memory,
        block_size: args.block_size,
        max_batch_tokens: args.max_batch_tokens,
        prefix_caching: !args.no_prefix_caching,
    }
}

/// Serves the API (and the agents) on a started engine until the process ends.
pub fn listen(
    args: ServeArgs,
    engine: EngineHandle,
    tokenizer: Tokenizer,
    name: &str,
    stops: Vec<u32>,
) -> anyhow::Result<ExitCode> {
    let model_name = args.served_model_name.clone().unwrap_or_else(|| {
        args.model
            .model
            .as_deref()
            .map_or("herd-embedded".to_owned(), model_id)
    });
    let config = ServerConfig {
        model_name: model_name.clone(),
        api_key: args.api_key.filter(|k| !k.is_empty()),
        max_logprobs: args.max_logprobs,
        max_n: args.max_n.max(1),
    };
    let agents = crate::agent::serve_agents(
        &args.agents,
        args.conversations,
        &args.model,
        &engine,
        &stops,
    )?;
    let server = Server::new(engine, tokenizer, stops, config).with_agents(agents)?;
    server.run(SocketAddr::new(args.host, args.port), |addr| {
        eprintln!("herd serve: {model_name} ({name}) listening on http://{addr}");
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A model directory's or GGUF file's name, without `.gguf`.
fn model_id(path: &Path) -> String {
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    name.strip_suffix(".gguf").unwrap_or(&name).to_owned()
}

/// `512MiB`, `4GiB`, `2GB`, `1000000`: a byte count.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 512MiB or 4GiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{text}`")),
    };
    Ok((number * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("4 parsecs").is_err());
    }

    #[test]
    fn model_ids() {
        assert_eq!(
            model_id(Path::new("/m/Llama-3.1-8B-Instruct")),
            "Llama-3.1-8B-Instruct"
        );
        assert_eq!(model_id(Path::new("x/tiny-q4_k_m.gguf")), "tiny-q4_k_m");
    }
}
