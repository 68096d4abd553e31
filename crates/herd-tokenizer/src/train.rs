//! Training a small byte-level BPE tokenizer for herd's own models.
//!
//! herd's small models speak the Llama 3 chat format unchanged, so their
//! tokenizer differs from Llama 3's only in its merges: the same split regex
//! ([`LLAMA3_SPLIT_PATTERN`](crate::LLAMA3_SPLIT_PATTERN)), the same GPT-2
//! byte alphabet (any text encodes, nothing is unknown), and all 256 of
//! Llama 3's special tokens by name, flagged special, after the ordinary
//! tokens — the layout Llama 3 itself has at 128000.., so `ChatFormat`,
//! stop tokens and GGUF export work as for a Llama checkpoint.
//!
//! The `tokenizers` crate's `BpeTrainer` learns the merges; the result then
//! goes through the one builder that also turns tiktoken and GGUF
//! vocabularies into a tokenizer (`bpe.rs`), so a trained tokenizer is built
//! by the same code, with the same checks, as every loaded one.
//!
//! Training text is fed in the pieces [`ChatFormat`](crate::ChatFormat)
//! encodes separately ([`dialog_text_pieces`]): BPE never merges across
//! pieces at encoding time, so merges across them would be wasted.

use std::path::{Path, PathBuf};

use tokenizers::models::bpe::BpeTrainer;
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

use crate::bpe::{self, BpeVocab, TokenKind};
use crate::chat::{Message, ToolPromptFormat};
use crate::error::{BackendOp, TokenizerError, VocabProblem};
use crate::tiktoken::llama3_special_token_names;
use crate::tokenizer::{SpecialToken, Tokenizer, TokenizerFormat};

/// Settings for [`train_bpe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpeTrainingOptions {
    /// Total vocabulary, the 256 special tokens included: the number of
    /// embedding rows the model will have. A corpus too small to supply that
    /// many merges yields fewer tokens.
    pub vocab_size: usize,
    /// A pair seen fewer times than this is never merged.
    pub min_frequency: u64,
}

impl Default for BpeTrainingOptions {
    fn default() -> Self {
        Self {
            vocab_size: 4096,
            min_frequency: 2,
        }
    }
}

/// Number of byte tokens every byte-level vocabulary starts with.
const BYTE_TOKENS: usize = 256;

/// Learns a byte-level BPE tokenizer from `texts`; each item is encoded on
/// its own (see [`dialog_text_pieces`] for chat data).
pub fn train_bpe<I, S>(texts: I, options: &BpeTrainingOptions) -> Result<Tokenizer, TokenizerError>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let specials = llama3_special_token_names();
    let minimum = specials.len() + BYTE_TOKENS;
    if options.vocab_size < minimum {
        return Err(TokenizerError::VocabTooSmall {
            requested: options.vocab_size,
            minimum,
        });
    }
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(options.vocab_size - specials.len())
        .min_frequency(options.min_frequency)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    // herd's pipeline with only the byte tokens: training uses exactly the
    // pre-tokenizer that encoding will use.
    let mut pipeline = bpe::reference()?;
    let mut text_bytes = 0usize;
    let counted = texts.inspect(|text| text_bytes += text.as_ref().len());
    pipeline
        .train(&mut trainer, counted)
        .map_err(|source| TokenizerError::Backend {
            op: BackendOp::Train,
            source,
        })?;
    if text_bytes == 0 {
        return Err(TokenizerError::EmptyCorpus);
    }
    let mut vocab = learned_vocab(&pipeline)?;
    vocab
        .tokens
        .extend(specials.into_iter().map(|name| (name, TokenKind::Special)));
    let inner = bpe::build(vocab, |problem: VocabProblem| TokenizerError::Backend {
        op: BackendOp::Train,
        source: problem.into(),
    })?;
    Ok(Tokenizer::from_inner(inner, TokenizerFormat::HfJson))
}

/// The trained model's tokens in id order and its merges in priority order.
fn learned_vocab(pipeline: &tokenizers::Tokenizer) -> Result<BpeVocab, TokenizerError> {
    let malformed = |what: &str| TokenizerError::Backend {
        op: BackendOp::Train,
        source: format!("the trained model's {what} is not as expected").into(),
    };
    let model =
        serde_json::to_value(pipeline.get_model()).map_err(|e| TokenizerError::Backend {
            op: BackendOp::Serialize,
            source: e.into(),
        })?;
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| malformed("vocab"))?;
    let mut by_id: Vec<Option<String>> = vec![None; vocab.len()];
    for (token, id) in vocab {
        let slot = id
            .as_u64()
            .and_then(|id| by_id.get_mut(usize::try_from(id).ok()?))
            .ok_or_else(|| malformed("vocab ids"))?;
        *slot = Some(token.clone());
    }
    let tokens = by_id
        .into_iter()
        .map(|token| token.map(|t| (t, TokenKind::Ordinary)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| malformed("vocab ids"))?;
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| malformed("merges"))?
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([left, right]) => Some((left.as_str()?.to_owned(), right.as_str()?.to_owned())),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| malformed("merges"))?;
    Ok(BpeVocab { tokens, merges })
}

/// The texts [`ChatFormat`](crate::ChatFormat) encodes one by one for
/// `dialog` (after [`ToolPrompt::apply`](crate::ToolPrompt::apply)): each
/// role name, the blank line after a header, each content and context, each
/// tool call in the default JSON format. Special tokens are not text and are
/// not included.
pub fn dialog_text_pieces(dialog: &[Message]) -> Vec<String> {
    let mut pieces = Vec::new();
    for message in dialog {
        pieces.push(message.role.as_str().to_owned());
        pieces.push("\n\n".to_owned());
        pieces.push(message.content.clone());
        if let Some(context) = &message.context {
            pieces.push("\n\n".to_owned());
            pieces.push(context.clone());
        }
        for call in &message.tool_calls {
            pieces.push(call.text(ToolPromptFormat::default()));
        }
    }
    pieces.retain(|piece| !piece.is_empty());
    pieces
}

/// Writes `tokenizer.json` plus the `tokenizer_config.json` and
/// `special_tokens_map.json` that Hugging Face `transformers` reads
/// (`PreTrainedTokenizerFast`, BOS `<|begin_of_text|>`, EOS `<|eot_id|>`),
/// each through a temporary file so an existing file is only replaced by a
/// complete one. Returns the paths written.
pub fn write_tokenizer_dir(
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<Vec<PathBuf>, TokenizerError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TokenizerError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let bos = SpecialToken::BeginOfText.name();
    let eos = SpecialToken::EndOfTurn.name();
    let special_map = serde_json::json!({"bos_token": bos, "eos_token": eos});
    let config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "clean_up_tokenization_spaces": false,
        "model_input_names": ["input_ids", "attention_mask"],
    });
    let pretty = |value: &serde_json::Value| {
        serde_json::to_string_pretty(value).expect("serde_json::Value serialises") + "\n"
    };
    let files = [
        ("tokenizer.json", tokenizer.to_tokenizer_json()?),
        ("tokenizer_config.json", pretty(&config)),
        ("special_tokens_map.json", pretty(&special_map)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}
