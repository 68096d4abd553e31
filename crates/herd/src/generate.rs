//! `herd generate`: one prompt, streamed to stdout; timing to stderr.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use herd_engine::{FinishReason, GenerateRequest, Generation};
use herd_tokenizer::{ChatFormat, Message, Role, StreamDecoder, Tokenizer};

use crate::args::GenerateArgs;
use crate::draft::{self, Decoder};
use crate::load::{load, sampling_params, stop_ids, Loaded};

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    if args.parallel.requested()? {
        return crate::parallel::generate(args);
    }
    let loaded = load(&args.model)?;
    let mut speculation = Decoder::new(&loaded, &args.draft)?;
    let request = request(&args, &loaded)?;
    let mut cache = loaded.model.new_cache();
    let code = stream(&args, &loaded.tokenizer, &request, |on_token| {
        speculation.generate(&loaded.model, &mut cache, &request, on_token)
    })?;
    if let Some(stats) = speculation.stats() {
        draft::report(stats);
    }
    Ok(code)
}

/// The prompt's tokens (plain or chat-formatted), sampling and stop tokens.
pub fn request(args: &GenerateArgs, loaded: &Loaded) -> anyhow::Result<GenerateRequest> {
    let sampling = sampling_params(&args.sampling, &loaded.model)?;
    let prompt = if args.chat || args.system.is_some() {
        let mut dialog = Vec::new();
        if let Some(system) = &args.system {
            dialog.push(Message::new(Role::System, system));
        }
        dialog.push(Message::new(Role::User, &args.prompt));
        ChatFormat::new(&loaded.tokenizer)?.encode_dialog_prompt(&dialog)?
    } else {
        let mut ids: Vec<u32> = loaded.tokenizer.bos_id().into_iter().collect();
        ids.extend(loaded.tokenizer.encode(&args.prompt)?);
        ids
    };
    let limit = loaded.model.config().max_position_embeddings;
    if prompt.len() >= limit {
        anyhow::bail!(
            "the prompt is {} tokens but the model's context length is {limit} tokens ({})",
            prompt.len(),
            loaded.name
        );
    }
    Ok(GenerateRequest {
        prompt,
        max_new_tokens: args.sampling.max_tokens,
        sampling,
        stop_ids: stop_ids(loaded),
    })
}

/// Runs `generate` (plain, speculative or parallel), streaming text (or ids) to stdout, then the timing to stderr.
pub fn stream(
    args: &GenerateArgs,
    tokenizer: &Tokenizer,
    request: &GenerateRequest,
    generate: impl FnOnce(&mut dyn FnMut(u32) -> ControlFlow<()>) -> herd_engine::Result<Generation>,
) -> anyhow::Result<ExitCode> {
    // Ctrl-C stops generation at the next token; the statistics still print.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;

    let mut decoder = StreamDecoder::new(true);
    let mut stdout = std::io::stdout().lock();
    let mut write_error: Option<anyhow::Error> = None;
    let mut warned = false;
    let generation = generate(&mut |token| {
        let text = if args.ids {
            format!("{token} ")
        } else {
            match decoder.step(tokenizer, token) {
                Ok(text) => text.unwrap_or_default(),
                Err(e) => {
                    // E.g. an id in the padding of the embedding table, past the
                    // tokenizer's vocabulary: nothing to print, keep generating.
                    if !warned {
                        eprintln!("warning: {e}");
                        warned = true;
                    }
                    String::new()
                }
            }
        };
        if let Err(e) = stdout
            .write_all(text.as_bytes())
            .and_then(|_| stdout.flush())
        {
            // A closed pipe (`herd generate | head`) ends generation quietly.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                write_error = Some(e.into());
            }
            return ControlFlow::Break(());
        }
        if interrupted.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if let Some(e) = write_error {
        return Err(e);
    }
    let tail = if args.ids {
        String::new()
    } else {
        decoder.finish(tokenizer)?
    };
    let _ = writeln!(stdout, "{tail}");
    report(&generation, request.prompt.len());
    Ok(ExitCode::SUCCESS)
}

/// Time to first token and decode speed, on stderr so stdout stays pipeable.
pub fn report(generation: &Generation, prompt_tokens: usize) {
    let ttft = generation.time_to_first_token.as_secs_f64();
    let finish = match generation.finish {
        FinishReason::Stop(_) => "stop token",
        FinishReason::Length => "max tokens",
        FinishReason::ContextFull => "context full",
        FinishReason::Cancelled => "interrupted",
    };
    eprintln!(
        "[prompt {prompt_tokens} tokens ({} computed), time to first token {:.1} ms ({:.1} tok/s prefill); \
         generated {} tokens at {:.2} tok/s; ended by {finish}]",
        generation.prefill_tokens,
        ttft * 1e3,
        if ttft > 0.0 { generation.prefill_tokens as f64 / ttft } else { 0.0 },
        generation.tokens.len(),
        generation.decode_tokens_per_second(),
    );
}
