//! Speculative decoding speed-up: greedy decoding of the target alone against
//! the target with a draft, on the same chat prompts, checking that the tokens
//! are identical.
//!
//! ```sh
//! cargo run --release -p herd-engine --example speculative -- \
//!     TARGET DRAFT [--draft-tokens 2,4,6] [--max-tokens 96]
//! ```
//!
//! `TARGET` is a Hugging Face directory (with its tokenizer) or a GGUF file;
//! `DRAFT` is another model with the same vocabulary, or `q8_0`/`q4_0` for the
//! target quantized in memory as its own draft. Each prompt (shop-support
//! questions in the chat format) is decoded greedily, and the example prints
//! one Markdown row per draft length: the draft's acceptance rate, target
//! tokens per target pass, decoding tokens/s (prefill excluded) and the
//! speed-up over the target alone measured in the same run.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herd_engine::{
    generate, generate_speculative, GenerateRequest, Generation, SamplingParams, Speculator,
};
use herd_model::{Checkpoint, FileType, Llama};
use herd_tokenizer::{ChatFormat, Message, Role, Tokenizer};

const QUESTIONS: [&str; 8] = [
    "What are your opening hours?",
    "Where is my order 1047?",
    "Do you have the espresso machine in stock?",
    "How long does delivery take?",
    "Can I return a product I bought last week?",
    "Wo ist meine Bestellung 1312?",
    "How can I contact you?",
    "Thanks, that's all!",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut positional, mut gammas, mut max_tokens) = (Vec::new(), vec![2, 4, 6], 96);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--draft-tokens" => {
                gammas = it
                    .next()
                    .ok_or("--draft-tokens needs a list")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--max-tokens" => max_tokens = it.next().ok_or("--max-tokens needs N")?.parse()?,
            _ => positional.push(a.clone()),
        }
    }
    let [target_path, draft_arg] = positional.as_slice() else {
        return Err(
            "usage: speculative TARGET DRAFT [--draft-tokens 2,4,6] [--max-tokens N]".into(),
        );
    };
    let target_path = PathBuf::from(target_path);
    let target = Llama::load(&target_path)?;
    let draft = Arc::new(match FileType::parse(draft_arg) {
        Some(t) => Checkpoint::open(&target_path)?.quantize(t)?.into_model()?,
        None => Llama::load(&PathBuf::from(draft_arg))?,
    });
    let tokenizer = Tokenizer::from_dir(&target_path)?;
    let format = ChatFormat::new(&tokenizer)?;
    let requests: Vec<GenerateRequest> = QUESTIONS
        .iter()
        .map(|q| {
            Ok(GenerateRequest {
                prompt: format.encode_dialog_prompt(&[Message::new(Role::User, *q)])?,
                max_new_tokens: max_tokens,
                sampling: SamplingParams::default(),
                stop_ids: tokenizer.stop_ids(),
            })
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    // Twice: the first pass warms the thread pool and the weights' pages.
    let plain = || -> Result<Vec<Generation>, herd_engine::EngineError> {
        requests
            .iter()
            .map(|r| {
                generate(&target, &mut target.new_cache(), r, |_| {
                    ControlFlow::Continue(())
                })
            })
            .collect()
    };
    plain()?;
    let reference = plain()?;
    let base = speed(&reference);
    println!(
        "target {} ({:.2}M parameters), draft {draft_arg} ({:.2}M), {} prompts, greedy\n",
        target_path.display(),
        target.config().num_parameters() as f64 / 1e6,
        draft.config().num_parameters() as f64 / 1e6,
        requests.len()
    );
    println!("| draft tokens | accepted | tokens per target pass | decode tok/s | speed-up |");
    println!("|---|---|---|---|---|");
    println!("| (target alone) | | 1.00 | {base:.1} | 1.00x |");
    for gamma in gammas {
        let mut spec = Speculator::new(&target, draft.clone(), gamma)?;
        let mut runs = Vec::new();
        for (r, want) in requests.iter().zip(&reference) {
            let mut cache = target.new_cache();
            let got = generate_speculative(&target, &mut cache, &mut spec, r, |_| {
                ControlFlow::Continue(())
            })?;
            if got.tokens != want.tokens {
                return Err(format!("γ = {gamma}: tokens differ from the target's").into());
            }
            runs.push(got);
        }
        let s = spec.stats();
        let tps = speed(&runs);
        println!(
            "| {gamma} | {:.1}% | {:.2} | {tps:.1} | {:.2}x |",
            100.0 * s.acceptance_rate(),
            s.tokens_per_round(),
            tps / base
        );
    }
    Ok(())
}

/// Decoded tokens per second over all runs (first token and prefill excluded).
fn speed(runs: &[Generation]) -> f64 {
    let tokens: usize = runs.iter().map(Generation::decoded_tokens).sum();
    let time: Duration = runs.iter().map(|g| g.decode_time).sum();
    tokens as f64 / time.as_secs_f64().max(1e-9)
}
