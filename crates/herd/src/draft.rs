//! `--draft-model`: a small model that guesses tokens for the target
//! (speculative decoding, `herd_engine::generate_speculative`), shared by
//! `generate`, `chat` and `serve`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use herd_engine::{
    generate, generate_speculative, GenerateRequest, Generation, SpeculationStats, Speculator,
};
use herd_model::{KvCache, Llama};
use herd_tokenizer::Tokenizer;

use crate::args::ModelArgs;
use crate::load::{load, Loaded};

/// Speculative decoding flags.
#[derive(Debug, Args)]
pub struct DraftArgs {
    /// A smaller model with the same tokenizer (a directory or a .gguf file)
    /// that proposes tokens for the model to verify in one pass. The output
    /// is the model's own: identical under greedy decoding, the same
    /// distribution under sampling.
    #[arg(long, value_name = "PATH")]
    pub draft_model: Option<PathBuf>,
    /// Tokens the draft proposes per verification pass.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub draft_tokens: usize,
    /// Quantize the draft in memory at load (e.g. q4_0), as --quantize does.
    #[arg(long, value_name = "TYPE", value_parser = crate::args::parse_file_type)]
    pub draft_quantize: Option<herd_model::FileType>,
}

impl DraftArgs {
    /// Loads the draft and checks that it shares `target`'s vocabulary.
    pub fn load(&self, target: &Loaded) -> anyhow::Result<Option<Arc<Llama>>> {
        let Some(path) = &self.draft_model else {
            return Ok(None);
        };
        let draft = load(&ModelArgs {
            model: Some(path.clone()),
            quantize: self.draft_quantize,
            lora: None,
        })
        .with_context(|| format!("loading the draft model {}", path.display()))?;
        same_vocabulary(&target.tokenizer, &draft.tokenizer).with_context(|| {
            format!(
                "the draft model {} cannot speculate for {}",
                draft.name, target.name
            )
        })?;
        Ok(Some(Arc::new(draft.model)))
    }
}

/// Fails unless both tokenizers give every id the same text.
fn same_vocabulary(target: &Tokenizer, draft: &Tokenizer) -> anyhow::Result<()> {
    if target.vocab_size() != draft.vocab_size() {
        anyhow::bail!(
            "its tokenizer has {} tokens, the model's has {}; use a draft trained with \
             (or distilled onto) the model's tokenizer",
            draft.vocab_size(),
            target.vocab_size()
        );
    }
    for id in 0..target.vocab_size() as u32 {
        let (a, b) = (target.decode(&[id], false)?, draft.decode(&[id], false)?);
        if a != b {
            anyhow::bail!(
                "token {id} is {a:?} for the model but {b:?} for the draft; \
                 the tokenizers must be the same"
            );
        }
    }
    Ok(())
}

/// Plain or speculative generation, whichever was asked for.
pub enum Decoder {
    Plain,
    Speculative(Box<Speculator>),
}

impl Decoder {
    pub fn new(target: &Loaded, args: &DraftArgs) -> anyhow::Result<Decoder> {
        Ok(match args.load(target)? {
            None => Decoder::Plain,
            Some(draft) => Decoder::Speculative(Box::new(Speculator::new(
                &target.model,
                draft,
                args.draft_tokens,
            )?)),
        })
    }

    pub fn generate(
        &mut self,
        model: &Llama,
        cache: &mut KvCache,
        request: &GenerateRequest,
        on_token: impl FnMut(u32) -> ControlFlow<()>,
    ) -> herd_engine::Result<Generation> {
        match self {
            Decoder::Plain => generate(model, cache, request, on_token),
            Decoder::Speculative(s) => generate_speculative(model, cache, s, request, on_token),
        }
    }

    /// The draft's counters, when there is a draft.
    pub fn stats(&self) -> Option<SpeculationStats> {
        match self {
            Decoder::Plain => None,
            Decoder::Speculative(s) => Some(s.stats()),
        }
    }
}

/// One line on stderr about the draft's guesses.
pub fn report(stats: SpeculationStats) {
    eprintln!(
        "[draft: {} of {} guesses accepted ({:.0}%), {:.2} tokens per pass of the model]",
        stats.accepted,
        stats.drafted,
        100.0 * stats.acceptance_rate(),
        stats.tokens_per_round()
    );
}
