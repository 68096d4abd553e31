//! `herd prune`: cut a smaller model out of a larger one (Minitron-style
//! structured pruning, crate herd-prune), ranking its parts on calibration data.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use herd_model::{Checkpoint, Llama};
use herd_prune::{measure, perplexity, plan, write_pruned, PruneSpec};
use herd_tokenizer::Tokenizer;
use herd_train::{DataOptions, Dataset};

use crate::load::embedded;

/// `herd prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The model to prune: a Hugging Face directory (default: the embedded teacher).
    #[arg(long, short = 'm', env = "HERD_MODEL")]
    pub model: Option<PathBuf>,
    /// Keep this many layers, the most important (depth pruning).
    #[arg(long, conflicts_with = "drop_layers")]
    pub depth: Option<usize>,
    /// Drop exactly these layers (0-based, comma-separated) instead of ranking.
    #[arg(long, value_delimiter = ',')]
    pub drop_layers: Vec<usize>,
    /// Width: keep this many KV groups (a key/value head and its query heads) per layer.
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Width: keep this many MLP channels per layer (the new intermediate_size).
    #[arg(long)]
    pub ffn: Option<usize>,
    /// Width: keep this many embedding channels (the new hidden_size).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Calibration data: JSONL in the chat or text format `herd finetune` reads.
    #[arg(long)]
    pub calibration: PathBuf,
    /// Use at most this many calibration tokens.
    #[arg(long, default_value_t = 16384)]
    pub calibration_tokens: usize,
    /// The output directory (a Hugging Face model directory).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

pub fn run(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let source = Source::open(args.model.as_ref())?;
    let model = source.checkpoint()?.into_model()?;
    let calibration = calibration(&args, &source.tokenizer, &model)?;
    let tokens: usize = calibration.iter().map(Vec::len).sum();
    eprintln!(
        "measuring importance on {} sequences ({tokens} tokens) from {}",
        calibration.len(),
        args.calibration.display()
    );
    let importance = measure(&model, &calibration)?;
    let spec = PruneSpec {
        depth: args.depth,
        drop_layers: args.drop_layers.clone(),
        kv_heads: args.kv_heads,
        ffn: args.ffn,
        hidden: args.hidden,
    };
    let plan = plan(model.config(), &importance, &spec)?;
    println!("layer importance (1 - cos(input, output)), least important first:");
    for l in importance.layers_by_importance() {
        let kept = if plan.layers.contains(&l) {
            "kept"
        } else {
            "dropped"
        };
        println!("  layer {l:>3}  {:.5}  {kept}", importance.layers[l]);
    }
    let new_config = write_pruned(
        &source.checkpoint()?,
        &source.config_json,
        &plan,
        &args.output,
    )?;
    source.write_tokenizer(&args.output)?;
    let pruned = Llama::load(&args.output).with_context(|| {
        format!(
            "loading the pruned model back from {}",
            args.output.display()
        )
    })?;
    let (before, after) = (model.config(), &new_config);
    println!(
        "shape            layers {} → {}, hidden {} → {}, KV heads {} → {}, query heads {} → {}, MLP {} → {}",
        before.num_hidden_layers, after.num_hidden_layers, before.hidden_size, after.hidden_size,
        before.num_key_value_heads, after.num_key_value_heads, before.num_attention_heads,
        after.num_attention_heads, before.intermediate_size, after.intermediate_size
    );
    println!(
        "parameters       {:.3}M → {:.3}M",
        before.num_parameters() as f64 / 1e6,
        after.num_parameters() as f64 / 1e6
    );
    println!(
        "calibration ppl  {:.3} → {:.3}",
        perplexity(&model, &calibration)?,
        perplexity(&pruned, &calibration)?
    );
    println!("written to       {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

/// The calibration file's examples as token ids, up to the token budget.
fn calibration(
    args: &PruneArgs,
    tokenizer: &Tokenizer,
    model: &Llama,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let options = DataOptions {
        loss_on: Default::default(),
        skip_bad_records: false,
        seq_len: model.config().max_position_embeddings,
        truncate: true,
        validation_fraction: 0.0,
    };
    let data = Dataset::load(&args.calibration, tokenizer, &options)
        .with_context(|| format!("calibration data {}", args.calibration.display()))?;
    let mut budget = args.calibration_tokens;
    let mut out = Vec::new();
    for example in data.train.into_iter().chain(data.validation) {
        if budget == 0 {
            break;
        }
        let n = example.ids.len().min(budget);
        budget -= n;
        out.push(example.ids[..n].to_vec());
    }
    Ok(out)
}

/// Where the model to prune comes from: a directory or the embedded teacher.
struct Source {
    dir: Option<PathBuf>,
    config_json: String,
    tokenizer: Tokenizer,
}

impl Source {
    fn open(dir: Option<&PathBuf>) -> anyhow::Result<Source> {
        Ok(match dir {
            Some(dir) => {
                if !dir.is_dir() {
                    anyhow::bail!(
                        "{}: herd prune reads a Hugging Face model directory (convert GGUF files first)",
                        dir.display()
                    );
                }
                let config = dir.join("config.json");
                Source {
                    config_json: std::fs::read_to_string(&config)
                        .with_context(|| format!("reading {}", config.display()))?,
                    tokenizer: Tokenizer::from_dir(dir)?,
                    dir: Some(dir.clone()),
                }
            }
            None => Source {
                dir: None,
                config_json: embedded::CONFIG.to_owned(),
                tokenizer: Tokenizer::from_json_bytes(embedded::TOKENIZER)?,
            },
        })
    }

    /// A fresh handle on the weights (memory-mapped or embedded).
    fn checkpoint(&self) -> anyhow::Result<Checkpoint> {
        Ok(match &self.dir {
            Some(dir) => Checkpoint::open_dir(dir)?,
            None => Checkpoint::from_memory(
                embedded::CONFIG,
                Some(embedded::GENERATION),
                embedded::WEIGHTS,
                embedded::NAME,
            )?,
        })
    }

    /// Writes the tokenizer and generation defaults beside the pruned weights.
    fn write_tokenizer(&self, out: &std::path::Path) -> anyhow::Result<()> {
        match &self.dir {
            Some(dir) => herd_train::export::copy_tokenizer_files(dir, out)?,
            None => {
                std::fs::write(out.join("tokenizer.json"), embedded::TOKENIZER)?;
                std::fs::write(out.join("generation_config.json"), embedded::GENERATION)?;
            }
        }
        Ok(())
    }
}
