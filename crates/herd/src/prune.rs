//! `herd prune`: cut a smaller model out of a larger one (Minitron-style
//! structured pruning, crate herd-prune), ranking its parts on calibration data.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use herd_model::{Checkpoint, Config, Llama};
use herd_prune::{measure, perplexity, plan, write_pruned, Importance, Plan, PruneSpec};
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
    let spec = PruneSpec {
        depth: args.depth,
        drop_layers: args.drop_layers.clone(),
        kv_heads: args.kv_heads,
        ffn: args.ffn,
        hidden: args.hidden,
    };
    let cut = cut(
        args.model.as_ref(),
        (&args.calibration, args.calibration_tokens),
        &spec,
        &args.output,
    )?;
    println!("layer importance (1 - cos(input, output)), least important first:");
    for l in cut.importance.layers_by_importance() {
        let kept = if cut.plan.layers.contains(&l) {
            "kept"
        } else {
            "dropped"
        };
        println!("  layer {l:>3}  {:.5}  {kept}", cut.importance.layers[l]);
    }
    let (before, after) = (&cut.before, &cut.after);
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
        cut.perplexity.0, cut.perplexity.1
    );
    println!("written to       {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

/// A pruned model written to disk, and what it was cut from.
pub(crate) struct Cut {
    pub before: Config,
    pub after: Config,
    pub importance: Importance,
    pub plan: Plan,
    /// Calibration perplexity of the model and of the cut.
    pub perplexity: (f64, f64),
}

/// Prunes `model` (None: the embedded teacher) to `spec`, ranking its parts
/// on the first `tokens` tokens of `calibration`, into the Hugging Face
/// directory `output` (tokenizer included). Also `herd distill`'s way of
/// making a student from its teacher.
pub(crate) fn cut(
    model: Option<&PathBuf>,
    (calibration, tokens): (&Path, usize),
    spec: &PruneSpec,
    output: &Path,
) -> anyhow::Result<Cut> {
    let source = Source::open(model)?;
    let model = source.checkpoint()?.into_model()?;
    let sequences = calibration_ids(calibration, tokens, &source.tokenizer, &model)?;
    let count: usize = sequences.iter().map(Vec::len).sum();
    eprintln!(
        "measuring importance on {} sequences ({count} tokens) from {}",
        sequences.len(),
        calibration.display()
    );
    let importance = measure(&model, &sequences)?;
    let plan = plan(model.config(), &importance, spec)?;
    let after = write_pruned(&source.checkpoint()?, &source.config_json, &plan, output)?;
    source.write_tokenizer(output)?;
    let pruned = Llama::load(output)
        .with_context(|| format!("loading the pruned model back from {}", output.display()))?;
    Ok(Cut {
        before: model.config().clone(),
        after,
        perplexity: (
            perplexity(&model, &sequences)?,
            perplexity(&pruned, &sequences)?,
        ),
        importance,
        plan,
    })
}

/// The calibration file's examples as token ids, up to the token budget.
fn calibration_ids(
    path: &Path,
    tokens: usize,
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
    let data = Dataset::load(path, tokenizer, &options)
        .with_context(|| format!("calibration data {}", path.display()))?;
    let mut budget = tokens;
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
    fn write_tokenizer(&self, out: &Path) -> anyhow::Result<()> {
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
