//! `herd data shop`: writes the embedded shop's support-dialogue corpus.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use herd_shop::{Corpus, CorpusOptions, Language, DEFAULT_SEED};

/// `herd data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The corpora herd can generate.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// The fictional shop's customer-support dialogues (train/valid/test
    /// JSONL in the OpenAI messages shape, tools.json, shop.json).
    Shop(ShopDataArgs),
}

/// `herd data shop`.
#[derive(Debug, Args)]
pub struct ShopDataArgs {
    /// Directory to write train.jsonl, valid.jsonl, test.jsonl, tools.json
    /// and shop.json into (created if missing).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Seed of the shop and the dialogues: the same seed gives byte-identical files.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Training dialogues (valid gets 1/20, test 1/10, at least 20 each).
    #[arg(long, default_value_t = CorpusOptions::default().dialogues)]
    pub dialogues: usize,
    /// Comma-separated languages (en, de).
    #[arg(long, default_value = "en,de")]
    pub languages: String,
    /// Write only prompts.jsonl: the training dialogues cut before each
    /// assistant turn, as prompts for `herd generate-data`.
    #[arg(long)]
    pub prompts_only: bool,
}

pub fn run(args: DataArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DataCommand::Shop(args) => shop(args),
    }
}

fn shop(args: ShopDataArgs) -> anyhow::Result<ExitCode> {
    let languages = args
        .languages
        .split(',')
        .map(Language::from_code)
        .collect::<Result<Vec<_>, _>>()?;
    let options = CorpusOptions {
        seed: args.seed,
        dialogues: args.dialogues,
        languages,
    };
    let corpus = Corpus::generate(&options)?;
    if args.prompts_only {
        return prompts_only(&corpus, &args.output);
    }
    let written = corpus.write(&args.output)?;
    let stats = corpus.stats();
    for path in &written {
        eprintln!("wrote {}", path.display());
    }
    println!(
        "shop \"{}\" (seed {}): train {} dialogues, valid {}, test {} cases from {} dialogues \
         ({} tool calls, {} with held-out phrasings, {} on held-out orders); \
         ~{} tokens of training text (bytes/4; `herd tokenizer train` counts exactly)",
        corpus.shop.name,
        args.seed,
        stats.train,
        stats.valid,
        stats.test_cases,
        stats.test_dialogues,
        stats.test_tool_calls,
        stats.test_held_out_phrasing,
        stats.test_held_out_order,
        stats.train_text_bytes / 4,
    );
    Ok(ExitCode::SUCCESS)
}

/// `--prompts-only`: prompts.jsonl for `herd generate-data`.
fn prompts_only(corpus: &Corpus, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("prompts.jsonl");
    let text = corpus.prompts_jsonl();
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {} ({} prompts)",
        path.display(),
        text.lines().count()
    );
    Ok(ExitCode::SUCCESS)
}
