//! Turning flags into library objects: the model and tokenizer (from a
//! directory or the embedded default) and validated sampling parameters.

use std::path::Path;

use anyhow::Context;
use herd_engine::{Sampling, SamplingParams};
use herd_gguf::OptionalKey;
use herd_model::{Checkpoint, Llama};
use herd_tokenizer::{GgufVocab, Tokenizer};

use crate::args::{ModelArgs, SamplingArgs};

/// The checkpoint compiled into the binary so that every command works on a
/// fresh machine with no download: the project's own shop-support teacher
/// (`models/teacher`, trained by `herd train` on `herd data shop`'s corpus;
/// its README has the command and the scores).
pub(crate) mod embedded {
    pub const NAME: &str = "<embedded teacher>";
    pub const CONFIG: &str = include_str!("../../../models/teacher/config.json");
    pub const GENERATION: &str = include_str!("../../../models/teacher/generation_config.json");
    pub const WEIGHTS: &[u8] = include_bytes!("../../../models/teacher/model.safetensors");
    pub const TOKENIZER: &[u8] = include_bytes!("../../../models/teacher/tokenizer.json");
}

/// The second embedded checkpoint: the teacher distilled into a student of
/// an eighth of its size by `herd distill` (`models/student`, remade by
/// `tools/make_student.sh`; its REPORT.md compares it with the teacher), a
/// fast model for small machines and the teacher's speculative draft.
pub(crate) mod embedded_student {
    pub const NAME: &str = "<embedded student>";
    pub const CONFIG: &str = include_str!("../../../models/student/config.json");
    pub const GENERATION: &str = include_str!("../../../models/student/generation_config.json");
    pub const WEIGHTS: &[u8] = include_bytes!("../../../models/student/model.safetensors");
    pub const TOKENIZER: &[u8] = include_bytes!("../../../models/student/tokenizer.json");
}

/// Which model a `--model` value names: a path, or one of the embedded
/// checkpoints by name (`embedded` or `embedded-teacher`, `embedded-student`)
/// when no file of that name exists.
enum Source<'a> {
    Path(&'a Path),
    Teacher,
    Student,
}

impl<'a> Source<'a> {
    fn of(model: Option<&'a Path>) -> Source<'a> {
        let Some(path) = model else {
            return Source::Teacher;
        };
        match path.to_str() {
            _ if path.exists() => Source::Path(path),
            Some("embedded" | "embedded-teacher") => Source::Teacher,
            Some("embedded-student") => Source::Student,
            _ => Source::Path(path),
        }
    }
}

/// Whether `--model NAME` selects an embedded checkpoint rather than a path.
pub fn is_embedded_name(name: &str) -> bool {
    !matches!(Source::of(Some(Path::new(name))), Source::Path(_))
}

/// An embedded checkpoint and its tokenizer.
fn embedded_model(
    name: &str,
    config: &str,
    generation: &str,
    weights: &'static [u8],
    tokenizer: &[u8],
) -> anyhow::Result<(Checkpoint, Tokenizer, String)> {
    Ok((
        Checkpoint::from_memory(config, Some(generation), weights, name)?,
        Tokenizer::from_json_bytes(tokenizer).with_context(|| format!("{name}: tokenizer.json"))?,
        name.to_string(),
    ))
}

/// A model with its tokenizer and a name for messages.
pub struct Loaded {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub name: String,
}

/// Loads `--model DIR|FILE.gguf|embedded-student`, or the embedded default, with the
/// `--lora` adapter merged in or quantized at load (`--quantize`) when asked.
pub fn load(args: &ModelArgs) -> anyhow::Result<Loaded> {
    let (checkpoint, tokenizer, name) = checkpoint(args)?;
    let model = match (&args.lora, args.quantize) {
        (Some(_), Some(_)) => anyhow::bail!(
            "--lora and --quantize together are not supported: fold the adapter in with \
             `herd merge`, then load the merged model with --quantize"
        ),
        (Some(adapter), None) => herd_train::load_with_adapter(checkpoint, adapter)?,
        (None, Some(file_type)) => checkpoint
            .quantize(file_type)
            .with_context(|| format!("{name}: quantizing at load"))?
            .into_model()?,
        (None, None) => checkpoint.into_model()?,
    };
    check_vocab(&model, &tokenizer, &name)?;
    Ok(Loaded {
        model,
        tokenizer,
        name,
    })
}

/// Opens `--model DIR|FILE.gguf|embedded-student`, or the embedded default, with its
/// tokenizer and a name for messages, without building the model.
pub fn checkpoint(args: &ModelArgs) -> anyhow::Result<(Checkpoint, Tokenizer, String)> {
    Ok(match Source::of(args.model.as_deref()) {
        Source::Path(path) => {
            let (checkpoint, tokenizer) = open(path)?;
            (checkpoint, tokenizer, path.display().to_string())
        }
        Source::Teacher => embedded_model(
            embedded::NAME,
            embedded::CONFIG,
            embedded::GENERATION,
            embedded::WEIGHTS,
            embedded::TOKENIZER,
        )?,
        Source::Student => embedded_model(
            embedded_student::NAME,
            embedded_student::CONFIG,
            embedded_student::GENERATION,
            embedded_student::WEIGHTS,
            embedded_student::TOKENIZER,
        )?,
    })
}

/// The tokenizer of `--model` (or of the embedded default) alone, for a
/// second owner of the same model (the agents of `herd serve`).
pub fn tokenizer(args: &ModelArgs) -> anyhow::Result<Tokenizer> {
    let (bytes, name) = match Source::of(args.model.as_deref()) {
        Source::Path(path) => return Ok(open(path)?.1),
        Source::Teacher => (embedded::TOKENIZER, embedded::NAME),
        Source::Student => (embedded_student::TOKENIZER, embedded_student::NAME),
    };
    Tokenizer::from_json_bytes(bytes).with_context(|| format!("{name}: tokenizer.json"))
}

/// Opens a checkpoint and its tokenizer (beside it, or inside the GGUF file).
pub fn open(path: &Path) -> anyhow::Result<(Checkpoint, Tokenizer)> {
    let checkpoint = Checkpoint::open(path)?;
    let tokenizer = match checkpoint.gguf() {
        Some(file) => gguf_tokenizer(file.metadata())
            .with_context(|| format!("{}: tokenizer metadata", path.display()))?,
        None => Tokenizer::from_dir(path)?,
    };
    Ok((checkpoint, tokenizer))
}

/// The tokenizer stored in a GGUF file's `tokenizer.ggml.*` keys.
fn gguf_tokenizer(meta: &herd_gguf::Metadata) -> anyhow::Result<Tokenizer> {
    let optional_u32 = |key: &str| meta.get_u32(key).optional();
    let vocab = GgufVocab {
        model: meta.get_str("tokenizer.ggml.model")?.to_string(),
        pre: meta
            .get_str("tokenizer.ggml.pre")
            .optional()?
            .map(str::to_string),
        tokens: meta.get_array_str("tokenizer.ggml.tokens")?.to_vec(),
        token_types: meta
            .get_array_i32("tokenizer.ggml.token_type")
            .optional()?
            .map(<[i32]>::to_vec),
        merges: meta
            .get_array_str("tokenizer.ggml.merges")
            .optional()?
            .map(<[String]>::to_vec)
            .unwrap_or_default(),
        bos_id: optional_u32("tokenizer.ggml.bos_token_id")?,
        eos_id: optional_u32("tokenizer.ggml.eos_token_id")?,
        add_bos: meta.get_bool("tokenizer.ggml.add_bos_token").optional()?,
    };
    Ok(Tokenizer::from_gguf_vocab(vocab)?)
}

pub fn check_vocab(model: &Llama, tokenizer: &Tokenizer, name: &str) -> anyhow::Result<()> {
    if tokenizer.vocab_size() > model.config().vocab_size {
        anyhow::bail!(
            "{name}: the tokenizer has {} tokens but the model's embedding has only {} rows",
            tokenizer.vocab_size(),
            model.config().vocab_size
        );
    }
    Ok(())
}

/// Flags first, then the checkpoint's generation_config.json, then greedy.
pub fn sampling_params(args: &SamplingArgs, model: &Llama) -> anyhow::Result<SamplingParams> {
    let defaults = model.generation_config();
    let temperature = args.temperature.or(defaults.temperature.map(|t| t as f32));
    let author_samples = defaults.do_sample.unwrap_or(false);
    let explicit_sampling = args.temperature.is_some()
        || args.top_k.is_some()
        || args.top_p.is_some()
        || args.min_p.is_some();
    let greedy = args.greedy || temperature == Some(0.0) || !(author_samples || explicit_sampling);
    let sampling = if greedy {
        Sampling::Greedy
    } else {
        Sampling::Random {
            temperature: temperature.unwrap_or(1.0),
            top_k: args.top_k.or(defaults.top_k).filter(|&k| k > 0),
            top_p: args.top_p.or(defaults.top_p.map(|p| p as f32)),
            min_p: args.min_p,
        }
    };
    let params = SamplingParams {
        sampling,
        repetition_penalty: args
            .repetition_penalty
            .or(defaults.repetition_penalty.map(|p| p as f32))
            .unwrap_or(1.0),
        seed: args.seed,
    };
    params.validate()?;
    Ok(params)
}

/// Stop tokens: the tokenizer's Llama 3 stops plus the checkpoint's eos ids.
pub fn stop_ids(loaded: &Loaded) -> Vec<u32> {
    let mut ids = loaded.tokenizer.stop_ids();
    let cfg = loaded.model.config();
    let gen = loaded
        .model
        .generation_config()
        .eos_token_id
        .as_ref()
        .map(|t| t.to_vec())
        .unwrap_or_default();
    for id in cfg.eos_token_ids.iter().chain(gen.iter()) {
        if !ids.contains(id) {
            ids.push(*id);
        }
    }
    ids
}
