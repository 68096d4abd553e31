//! `herd quantize`: write any model herd loads as a GGUF file of a chosen
//! type, with its tokenizer, for llama.cpp, Ollama or LM Studio.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use herd_gguf::{GgufWriter, Metadata, MetadataValue};
use herd_model::{add_model_tensors, model_metadata, FileType};
use herd_tokenizer::{GgufVocab, Tokenizer};

use crate::args::QuantizeArgs;
use crate::load::open;

pub fn run(args: QuantizeArgs) -> anyhow::Result<ExitCode> {
    let file_type = FileType::parse(&args.file_type).with_context(|| {
        format!(
            "unknown --type {:?}; choose one of {}",
            args.file_type,
            FileType::NAMES
        )
    })?;
    let path = args
        .model
        .model
        .as_deref()
        .context("herd quantize needs --model DIR|FILE.gguf")?;
    if args.model.lora.is_some() {
        anyhow::bail!(
            "herd quantize does not take --lora; fold the adapter in first with herd merge"
        );
    }
    let started = Instant::now();
    let (checkpoint, tokenizer) = open(path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut metadata = model_metadata(&checkpoint.config, &name, file_type);
    match checkpoint.gguf() {
        // Re-quantizing a GGUF file keeps its tokenizer keys (and chat template) verbatim.
        Some(source) => {
            for (key, value) in source
                .metadata()
                .iter()
                .filter(|(k, _)| k.starts_with("tokenizer."))
            {
                metadata.set(key, value.clone());
            }
        }
        None => {
            tokenizer_metadata(&tokenizer, checkpoint.config.vocab_size, &mut metadata)?;
            if let Some(template) = chat_template(path)? {
                metadata.set("tokenizer.chat_template", template);
            }
        }
    }
    let mut writer = GgufWriter::with_metadata(metadata);
    add_model_tensors(
        &mut writer,
        &checkpoint.config,
        &checkpoint.tensors,
        &checkpoint.rope,
        file_type,
    )?;
    let bytes = writer.write_to_path(&args.output)?;
    eprintln!(
        "wrote {} ({:.1} MiB, {}) in {:.1} s",
        args.output.display(),
        bytes as f64 / (1u64 << 20) as f64,
        args.file_type.to_ascii_lowercase(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `tokenizer.ggml.*` keys as llama.cpp's converter writes them for Llama 3.
/// llama.cpp wants one token per embedding row, so rows past the tokenizer's
/// vocabulary get `[PAD{id}]` tokens of type "unused", as its converter does.
fn tokenizer_metadata(
    tokenizer: &Tokenizer,
    vocab_size: usize,
    m: &mut Metadata,
) -> anyhow::Result<()> {
    const UNUSED: i32 = 5;
    let GgufVocab {
        model,
        pre,
        mut tokens,
        mut token_types,
        merges,
        bos_id,
        eos_id,
        add_bos,
    } = tokenizer.to_gguf_vocab()?;
    for id in tokens.len()..vocab_size {
        tokens.push(format!("[PAD{id}]"));
        if let Some(types) = token_types.as_mut() {
            types.push(UNUSED);
        }
    }
    m.set("tokenizer.ggml.model", model);
    if let Some(pre) = pre {
        m.set("tokenizer.ggml.pre", pre);
    }
    m.set("tokenizer.ggml.tokens", MetadataValue::from(tokens));
    if let Some(types) = token_types {
        m.set("tokenizer.ggml.token_type", MetadataValue::from(types));
    }
    m.set("tokenizer.ggml.merges", MetadataValue::from(merges));
    if let Some(id) = bos_id {
        m.set("tokenizer.ggml.bos_token_id", id);
    }
    if let Some(id) = eos_id {
        m.set("tokenizer.ggml.eos_token_id", id);
    }
    if let Some(add) = add_bos {
        m.set("tokenizer.ggml.add_bos_token", add);
    }
    Ok(())
}

/// The Jinja chat template of a Hugging Face directory, if it has one.
fn chat_template(dir: &std::path::Path) -> anyhow::Result<Option<String>> {
    let path = dir.join("tokenizer_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(json
        .get("chat_template")
        .and_then(|t| t.as_str())
        .map(str::to_string))
}
