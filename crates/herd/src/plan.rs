//! `herd plan`: which tensor × pipeline layout a Llama needs on a cluster,
//! with memory per device and communication per token.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use herd_dist::{Cluster, Plan, PlanDtype, Workload, PRESETS};
use herd_model::Config;

/// `herd plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A config.json, a model directory holding one, or a preset:
    /// llama3.2-1b, llama3.1-8b, llama3.1-70b, llama3.1-405b.
    #[arg(long, short = 'm')]
    pub model: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Accelerators per node.
    #[arg(long, default_value_t = 8)]
    pub gpus_per_node: usize,
    /// Memory per accelerator, GiB.
    #[arg(long, default_value_t = 80.0)]
    pub gpu_memory: f64,
    /// Weight storage: bf16, fp8 or q4.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Context length per sequence to hold in the KV cache.
    #[arg(long, default_value_t = 8192)]
    pub context: usize,
    /// Sequences in flight.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let config = model_config(&args.model)?;
    let dtype = PlanDtype::parse(&args.dtype)
        .with_context(|| format!("unknown --dtype {:?}; choose bf16, fp8 or q4", args.dtype))?;
    let cluster = Cluster {
        nodes: args.nodes,
        devices_per_node: args.gpus_per_node,
        device_memory: args.gpu_memory * (1u64 << 30) as f64,
    };
    let work = Workload {
        context: args.context,
        batch: args.batch,
    };
    let plan = Plan::choose(&config, cluster, dtype, work)?;
    print!("{plan}");
    Ok(ExitCode::SUCCESS)
}

/// A preset by name, else a config.json path or a directory holding one.
fn model_config(model: &str) -> anyhow::Result<Config> {
    if let Some((name, text)) = PRESETS.iter().find(|(n, _)| *n == model) {
        return Ok(Config::from_json(text, Path::new(name))?);
    }
    let path = PathBuf::from(model);
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path
    };
    if !file.exists() {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        anyhow::bail!(
            "{model} is neither a config.json, a model directory nor a preset ({})",
            names.join(", ")
        );
    }
    Ok(Config::from_file(&file)?)
}
