//! Aggregate generation throughput of the serving engine at several numbers of
//! concurrent requests: what continuous batching buys over serving one
//! request at a time.
//!
//! ```sh
//! cargo run --release -p herd-engine --example engine_throughput -- \
//!     MODEL [--clients 1,8,32] [--prompt-tokens 64] [--max-tokens 32]
//! ```
//!
//! `MODEL` is a Hugging Face directory or a GGUF file (e.g. the random Llama
//! 3.2 1B-shaped model `bench/decode_prefill.py` writes under `bench/out/`).
//! For each client count, a fresh engine gets that many requests at once
//! (distinct random prompts, greedy, no stop token) and the example prints
//! one Markdown table row: generated tokens per second over the wall time
//! from the first submission to the last token, and the median and worst time
//! to first token. Thread count: `RAYON_NUM_THREADS` (default: all cores).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use herd_engine::{EngineConfig, EngineHandle, Event, Request};
use herd_model::Llama;

struct Args {
    model: PathBuf,
    clients: Vec<usize>,
    prompt_tokens: usize,
    max_tokens: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        model: PathBuf::new(),
        clients: vec![1, 8, 32],
        prompt_tokens: 64,
        max_tokens: 32,
    };
    let number = |v: Option<String>, flag: &str| -> Result<usize, String> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a positive number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--clients" => {
                parsed.clients = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|c| c.parse().map_err(|_| format!("bad client count {c:?}")))
                    .collect::<Result<_, _>>()?;
            }
            "--prompt-tokens" => parsed.prompt_tokens = number(args.next(), &arg)?,
            "--max-tokens" => parsed.max_tokens = number(args.next(), &arg)?,
            path => parsed.model = PathBuf::from(path),
        }
    }
    if parsed.model.as_os_str().is_empty() {
        return Err("usage: engine_throughput MODEL [--clients 1,8,32] [--prompt-tokens N] [--max-tokens N]".into());
    }
    Ok(parsed)
}

/// One client's time to first token and number of generated tokens.
fn client(
    engine: &EngineHandle,
    prompt: Vec<u32>,
    max_tokens: usize,
    start: Instant,
) -> (Duration, usize) {
    let mut stream = engine
        .submit(Request::new(prompt, max_tokens, vec![]))
        .expect("request accepted");
    let mut first = None;
    let mut tokens = 0;
    while let Some(event) = stream.blocking_recv() {
        match event {
            Event::Token { .. } => {
                first.get_or_insert_with(|| start.elapsed());
                tokens += 1;
            }
            Event::Failed(e) => panic!("request failed: {e}"),
            _ => {}
        }
    }
    (first.unwrap_or_default(), tokens)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let model = Arc::new(Llama::load(&args.model).expect("model loads"));
    let vocab = model.config().vocab_size as u64;
    println!("| clients | generated tok/s | p50 TTFT ms | max TTFT ms | wall s |");
    println!("|---|---|---|---|---|");
    for &clients in &args.clients {
        let engine =
            EngineHandle::start(model.clone(), EngineConfig::default()).expect("engine starts");
        let start = Instant::now();
        let handles: Vec<_> = (0..clients as u64)
            .map(|c| {
                // Distinct pseudo-random prompts, so the prefix cache has nothing to share.
                let prompt = (0..args.prompt_tokens as u64)
                    .map(|i| ((c * 1_000_003 + i * 7_919 + i * i * 13) % vocab) as u32)
                    .collect();
                let (engine, max_tokens) = (engine.clone(), args.max_tokens);
                thread::spawn(move || client(&engine, prompt, max_tokens, start))
            })
            .collect();
        let mut results: Vec<(Duration, usize)> = handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect();
        let wall = start.elapsed().as_secs_f64();
        let generated: usize = results.iter().map(|r| r.1).sum();
        results.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {clients} | {:.2} | {:.0} | {:.0} | {wall:.1} |",
            generated as f64 / wall,
            ms(results[results.len() / 2].0),
            ms(results[results.len() - 1].0),
        );
    }
}
