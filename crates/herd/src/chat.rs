//! `herd chat`: an interactive multi-turn conversation in the Llama 3 chat
//! format. Each turn re-renders the whole dialog and reuses the KV cache for
//! the longest prefix it shares with the previous turn, so only the new
//! message is computed. EOF (Ctrl-D), `/exit` and Ctrl-C end the session
//! cleanly; Ctrl-C during an answer stops the answer first.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use herd_engine::GenerateRequest;
use herd_tokenizer::{ChatFormat, Message, Role, StreamDecoder};

use crate::args::ChatArgs;
use crate::draft::{self, Decoder};
use crate::generate::report;
use crate::load::{load, sampling_params, stop_ids};

pub fn run(args: ChatArgs) -> anyhow::Result<ExitCode> {
    let loaded = load(&args.model)?;
    let mut speculation = Decoder::new(&loaded, &args.draft)?;
    let sampling = sampling_params(&args.sampling, &loaded.model)?;
    let format = ChatFormat::new(&loaded.tokenizer)?;
    let stops = stop_ids(&loaded);

    let generating = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (generating, interrupted) = (generating.clone(), interrupted.clone());
        ctrlc::set_handler(move || {
            if generating.load(Ordering::SeqCst) {
                interrupted.store(true, Ordering::SeqCst);
            } else {
                // Waiting for input: nothing is in flight, leave now.
                eprintln!();
                std::process::exit(0);
            }
        })?;
    }

    eprintln!(
        "herd chat with {} — /reset clears the conversation, /exit or Ctrl-D quits.",
        loaded.name
    );
    let mut dialog: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message::new(Role::System, s))
        .collect();
    let mut cache = loaded.model.new_cache();
    let mut cached: Vec<u32> = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout();
    let mut turn = 0u64;
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.read_line(&mut line)? == 0 {
            eprintln!();
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                dialog.retain(|m| m.role == Role::System);
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        dialog.push(Message::new(Role::User, line));
        let prompt = format.encode_dialog_prompt(&dialog)?;
        let limit = loaded.model.config().max_position_embeddings;
        if prompt.len() >= limit {
            dialog.pop();
            eprintln!(
                "error: the conversation is {} tokens, the context length is {limit}; /reset to start over",
                prompt.len()
            );
            continue;
        }
        // Keep the cache for the prefix this prompt shares with the last one.
        let shared = cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        cache.truncate(shared)?;
        let mut params = sampling.clone();
        params.seed = params.seed.wrapping_add(turn);
        let request = GenerateRequest {
            prompt,
            max_new_tokens: args.sampling.max_tokens,
            sampling: params,
            stop_ids: stops.clone(),
        };

        let mut decoder = StreamDecoder::new(true);
        generating.store(true, Ordering::SeqCst);
        let generation = speculation.generate(&loaded.model, &mut cache, &request, |token| {
            if let Ok(Some(text)) = decoder.step(&loaded.tokenizer, token) {
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
            if interrupted.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        generating.store(false, Ordering::SeqCst);
        let generation = generation?;
        writeln!(stdout, "{}", decoder.finish(&loaded.tokenizer)?)?;
        report(&generation, request.prompt.len());
        if let Some(stats) = speculation.stats() {
            draft::report(stats);
        }
        let answer = loaded.tokenizer.decode(&generation.tokens, true)?;
        cached = request.prompt;
        cached.extend(
            generation
                .tokens
                .iter()
                .take(cache.len().saturating_sub(cached.len())),
        );
        dialog.push(Message::new(Role::Assistant, &answer));
        turn += 1;
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
