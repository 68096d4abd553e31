//! `herd info`: what a model is and what it needs to run.

use std::process::ExitCode;

use herd_model::RopeScaling;

use crate::args::InfoArgs;
use crate::load::load;

pub fn run(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let loaded = load(&args.model)?;
    let cfg = loaded.model.config();
    let context = args.context.unwrap_or(cfg.max_position_embeddings);
    if context == 0 || context > cfg.max_position_embeddings {
        anyhow::bail!(
            "--context must be between 1 and the model's {} tokens",
            cfg.max_position_embeddings
        );
    }
    let params = cfg.num_parameters();
    let weights = loaded.model.weight_bytes();
    let kv = cfg.kv_bytes_per_token() * context as u64;
    let rope = match cfg.rope_scaling {
        RopeScaling::None => format!("theta {}", cfg.rope_theta),
        RopeScaling::FrequencyFactors => format!("theta {}, per-frequency factors from rope_freqs", cfg.rope_theta),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => format!(
            "theta {}, llama3 scaling x{factor} (low {low_freq_factor}, high {high_freq_factor}, original context {original_max_position_embeddings})",
            cfg.rope_theta
        ),
    };
    let tok = &loaded.tokenizer;
    println!("model:          {}", loaded.name);
    println!("architecture:   LlamaForCausalLM");
    println!("parameters:     {} ({params})", human_count(params));
    println!("dtype:          {}", loaded.model.dtype());
    println!(
        "layers:         {} x (hidden {}, MLP {}, {} query heads / {} KV heads of {})",
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim
    );
    println!(
        "vocabulary:     {} (tokenizer {}), tied embeddings: {}",
        cfg.vocab_size,
        tok.vocab_size(),
        cfg.tie_word_embeddings
    );
    println!("rope:           {rope}");
    println!("context length: {} tokens", cfg.max_position_embeddings);
    println!(
        "memory:         {} weights (memory-mapped) + {} KV cache for {context} tokens = {}",
        human_bytes(weights),
        human_bytes(kv),
        human_bytes(weights + kv)
    );
    println!("cpu:            {}", herd_kernels::cpu_features());
    Ok(ExitCode::SUCCESS)
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn human_bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    match n as f64 {
        b if b >= GIB => format!("{:.2} GiB", b / GIB),
        b if b >= MIB => format!("{:.1} MiB", b / MIB),
        b => format!("{:.1} KiB", b / 1024.0),
    }
}
