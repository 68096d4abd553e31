//! `herd tokenizer train`: a small byte-level BPE tokenizer for herd's own
//! models, trained on a chat corpus and keeping Llama 3's special tokens.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use herd_tokenizer::{
    dialog_text_pieces, train_bpe, write_tokenizer_dir, BpeTrainingOptions, ChatFormat, ChatRecord,
    Message,
};

/// `herd tokenizer`.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    #[command(subcommand)]
    pub command: TokenizerCommand,
}

/// Tokenizer tools.
#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer (Llama 3 split pattern and special
    /// tokens) on the chat-rendered text of a JSONL corpus.
    Train(TrainTokenizerArgs),
}

/// `herd tokenizer train`.
#[derive(Debug, Args)]
pub struct TrainTokenizerArgs {
    /// JSONL of {"tools", "messages"} records, or a directory holding train.jsonl.
    #[arg(long)]
    pub data: PathBuf,
    /// Total vocabulary including Llama 3's 256 special tokens (at least 512).
    #[arg(long, default_value_t = BpeTrainingOptions::default().vocab_size)]
    pub vocab_size: usize,
    /// Pairs seen fewer times are never merged.
    #[arg(long, default_value_t = BpeTrainingOptions::default().min_frequency)]
    pub min_frequency: u64,
    /// Directory for tokenizer.json, tokenizer_config.json and special_tokens_map.json.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

pub fn run(args: TokenizerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TokenizerCommand::Train(args) => train(args),
    }
}

fn train(args: TrainTokenizerArgs) -> anyhow::Result<ExitCode> {
    let data = if args.data.is_dir() {
        args.data.join("train.jsonl")
    } else {
        args.data.clone()
    };
    let dialogs = read_dialogs(&data)?;
    anyhow::ensure!(!dialogs.is_empty(), "{} holds no records", data.display());
    let options = BpeTrainingOptions {
        vocab_size: args.vocab_size,
        min_frequency: args.min_frequency,
    };
    let pieces = dialogs.iter().flat_map(|d| dialog_text_pieces(d));
    let tokenizer = train_bpe(pieces, &options)?;
    let written = write_tokenizer_dir(&tokenizer, &args.output)?;
    for path in &written {
        eprintln!("wrote {}", path.display());
    }
    let format = ChatFormat::new(&tokenizer)?;
    let mut tokens = 0usize;
    for dialog in &dialogs {
        tokens += format.encode_dialog_prompt(dialog)?.len();
    }
    let bytes: usize = dialogs
        .iter()
        .flat_map(|d| dialog_text_pieces(d))
        .map(|p| p.len())
        .sum();
    println!(
        "vocabulary {} tokens (256 special); {} records = {} tokens in the chat format \
         ({:.0} per record, {:.2} bytes per token)",
        tokenizer.vocab_size(),
        dialogs.len(),
        tokens,
        tokens as f64 / dialogs.len() as f64,
        bytes as f64 / tokens as f64,
    );
    Ok(ExitCode::SUCCESS)
}

/// Every record of a JSONL file as a dialog with its tool prompt applied;
/// a bad line is reported with its number. Blank lines are skipped.
fn read_dialogs(path: &Path) -> anyhow::Result<Vec<Vec<Message>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut dialogs = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = ChatRecord::from_json(&line)
            .with_context(|| format!("{}:{}", path.display(), index + 1))?;
        dialogs.push(record.dialog());
    }
    Ok(dialogs)
}
