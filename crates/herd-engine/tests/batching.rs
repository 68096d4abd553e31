//! The continuous-batching engine against the single-sequence path: every
//! request gets the tokens it gets alone (contiguous KV, `generate`), whether
//! it shares steps with 15 others, is prefilled in chunks, starts from the
//! prefix cache, or is preempted and recomputed; dropped streams and finished
//! requests give their KV blocks back.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_engine::{
    generate, Completion, EngineConfig, EngineHandle, EngineMetrics, Event, FinishReason,
    GenerateRequest, Request, RequestStream, Sampling, SamplingParams,
};
use herd_model::{KvPool, Llama};

fn model() -> Arc<Llama> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama32-tied");
    Arc::new(Llama::load(&dir).expect("fixture model loads"))
}

/// A deterministic prompt of `len` tokens, different for each `seed`.
fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (seed * 7919 + i * 104_729 + i * i * 31) % 370)
        .collect()
}

/// The tokens of `prompt` generated alone with a contiguous cache.
fn alone(model: &Llama, prompt: &[u32], max_tokens: usize, sampling: &SamplingParams) -> Vec<u32> {
    generate(
        model,
        &mut model.new_cache(),
        &GenerateRequest {
            prompt: prompt.to_vec(),
            max_new_tokens: max_tokens,
            sampling: sampling.clone(),
            stop_ids: vec![],
        },
        |_| ControlFlow::Continue(()),
    )
    .unwrap()
    .tokens
}

/// A stream's generated tokens and its final event.
fn collect(mut stream: RequestStream) -> (Vec<u32>, Event) {
    let mut tokens = Vec::new();
    while let Some(event) = stream.blocking_recv() {
        match event {
            Event::Token { id, .. } => tokens.push(id),
            Event::PromptLogprobs(_) => {}
            last => return (tokens, last),
        }
    }
    panic!("stream ended without a final event");
}

fn completion(event: &Event) -> Completion {
    match event {
        Event::Finished(c) => *c,
        other => panic!("expected Finished, got {other:?}"),
    }
}

/// Waits (bounded) until the engine's gauges satisfy `done`.
fn wait_for(engine: &EngineHandle, done: impl Fn(&EngineMetrics) -> bool) -> EngineMetrics {
    let start = Instant::now();
    loop {
        let m = engine.metrics();
        if done(&m) {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "metrics stuck at {m:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Submits every request at once, then collects them all.
fn run_together(engine: &EngineHandle, requests: Vec<Request>) -> Vec<(Vec<u32>, Event)> {
    let streams: Vec<RequestStream> = requests
        .into_iter()
        .map(|r| engine.submit(r).unwrap())
        .collect();
    streams.into_iter().map(collect).collect()
}

#[test]
fn sixteen_concurrent_requests_each_match_alone() {
    let model = model();
    let cases: Vec<(Vec<u32>, usize)> = (0..16)
        .map(|i| (prompt(i, 1 + (i as usize * 13) % 70), 8 + i as usize % 5))
        .collect();
    // A small token budget forces chunked prefill next to other requests' decodes.
    let engine = EngineHandle::start(
        model.clone(),
        EngineConfig {
            max_batch_tokens: 40,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let requests = cases
        .iter()
        .map(|(p, n)| Request::new(p.clone(), *n, vec![]))
        .collect();
    let results = run_together(&engine, requests);
    for (i, ((p, n), (tokens, last))) in cases.iter().zip(&results).enumerate() {
        assert_eq!(
            tokens,
            &alone(&model, p, *n, &SamplingParams::default()),
            "request {i}"
        );
        let c = completion(last);
        assert_eq!(
            (c.finish, c.prompt_tokens, c.completion_tokens),
            (FinishReason::Length, p.len(), *n)
        );
    }
    let m = wait_for(&engine, |m| m.running == 0 && m.waiting == 0);
    assert_eq!(m.kv_blocks_used, 0);
    let prompt_tokens: usize = cases.iter().map(|(p, _)| p.len()).sum();
    assert_eq!(m.prompt_tokens_total, prompt_tokens as u64);
    assert_eq!(
        m.generated_tokens_total,
        cases.iter().map(|(_, n)| *n as u64).sum::<u64>()
    );
}

#[test]
fn prefix_cache_hit_gives_the_same_output_as_a_miss() {
    let model = model();
    let shared = prompt(99, 40);
    let first: Vec<u32> = shared.iter().copied().chain(prompt(1, 5)).collect();
    let second: Vec<u32> = shared.iter().copied().chain(prompt(2, 10)).collect();
    let engine = EngineHandle::start(model.clone(), EngineConfig::default()).unwrap();
    let (_, last) = collect(engine.submit(Request::new(first, 4, vec![])).unwrap());
    assert_eq!(completion(&last).cached_prompt_tokens, 0);
    // The shared 40 tokens hold two full blocks of 16.
    let (hit, last) = collect(
        engine
            .submit(Request::new(second.clone(), 12, vec![]))
            .unwrap(),
    );
    assert_eq!(completion(&last).cached_prompt_tokens, 32);
    assert_eq!(engine.metrics().prefix_cache_hit_tokens, 32);
    // The same prompt again reuses every full block but the one holding the
    // last token, whose logits must be computed.
    let (again, last) = collect(
        engine
            .submit(Request::new(second.clone(), 12, vec![]))
            .unwrap(),
    );
    assert_eq!(completion(&last).cached_prompt_tokens, 48);
    let no_cache = EngineHandle::start(
        model.clone(),
        EngineConfig {
            prefix_caching: false,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let (miss, last) = collect(
        no_cache
            .submit(Request::new(second.clone(), 12, vec![]))
            .unwrap(),
    );
    assert_eq!(completion(&last).cached_prompt_tokens, 0);
    assert_eq!(no_cache.metrics().prefix_cache_hit_tokens, 0);
    assert_eq!(hit, miss);
    assert_eq!(again, miss);
    assert_eq!(miss, alone(&model, &second, 12, &SamplingParams::default()));
    // Cached blocks without holders do not count as used.
    assert_eq!(wait_for(&engine, |m| m.running == 0).kv_blocks_used, 0);
}

#[test]
fn preemption_with_a_tiny_kv_budget_gives_the_same_outputs() {
    let model = model();
    let block_size = 4;
    let blocks = 12;
    let config = EngineConfig {
        block_size,
        kv_cache_bytes: KvPool::bytes_per_block(model.config(), block_size) * blocks,
        ..EngineConfig::default()
    };
    let engine = EngineHandle::start(model.clone(), config).unwrap();
    assert_eq!(engine.max_context(), 48);
    let cases: Vec<(Vec<u32>, usize)> = (0..6)
        .map(|i| (prompt(i, 10 + 2 * i as usize), 12))
        .collect();
    let requests = cases
        .iter()
        .map(|(p, n)| Request::new(p.clone(), *n, vec![]))
        .collect();
    let results = run_together(&engine, requests);
    for (i, ((p, n), (tokens, last))) in cases.iter().zip(&results).enumerate() {
        assert_eq!(
            tokens,
            &alone(&model, p, *n, &SamplingParams::default()),
            "request {i}"
        );
        assert_eq!(completion(last).finish, FinishReason::Length);
    }
    let m = wait_for(&engine, |m| m.running == 0);
    assert!(m.preemptions_total > 0, "no preemption happened: {m:?}");
    assert_eq!(m.kv_blocks_used, 0);
}

#[test]
fn dropping_a_stream_frees_its_blocks() {
    let model = model();
    let engine = EngineHandle::start(model.clone(), EngineConfig::default()).unwrap();
    let mut long = engine
        .submit(Request::new(prompt(5, 50), 1500, vec![]))
        .unwrap();
    let keep = engine
        .submit(Request::new(prompt(6, 20), 30, vec![]))
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(long.blocking_recv(), Some(Event::Token { .. })));
    }
    assert!(
        engine.metrics().kv_blocks_used >= 4,
        "{:?}",
        engine.metrics()
    );
    drop(long);
    let (tokens, last) = collect(keep);
    assert_eq!(
        tokens,
        alone(&model, &prompt(6, 20), 30, &SamplingParams::default())
    );
    assert_eq!(completion(&last).finish, FinishReason::Length);
    let m = wait_for(&engine, |m| m.running == 0 && m.waiting == 0);
    assert_eq!(m.kv_blocks_used, 0);
    assert!(
        m.generated_tokens_total < 1000,
        "the dropped request kept going: {m:?}"
    );
}

#[test]
fn seeded_random_sampling_is_reproducible_in_a_batch() {
    let model = model();
    let sampling = |seed| SamplingParams {
        sampling: Sampling::Random {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.95),
            min_p: None,
        },
        repetition_penalty: 1.1,
        seed,
    };
    let cases: Vec<(Vec<u32>, u64)> = (0..8)
        .map(|i| (prompt(i % 3, 12), 100 + i as u64))
        .collect();
    let engine = EngineHandle::start(model.clone(), EngineConfig::default()).unwrap();
    let requests = cases
        .iter()
        .map(|(p, seed)| {
            let mut r = Request::new(p.clone(), 16, vec![]);
            r.sampling = sampling(*seed);
            r
        })
        .collect();
    let results = run_together(&engine, requests);
    for (i, ((p, seed), (tokens, _))) in cases.iter().zip(&results).enumerate() {
        assert_eq!(
            tokens,
            &alone(&model, p, 16, &sampling(*seed)),
            "request {i}"
        );
    }
    // Requests 0 and 3 share a prompt but not a seed.
    assert_ne!(results[0].0, results[3].0);
}

#[test]
fn prompt_logprobs_are_the_same_in_chunks() {
    let model = model();
    let p = prompt(11, 45);
    let run = |max_batch_tokens| {
        let engine = EngineHandle::start(
            model.clone(),
            EngineConfig {
                max_batch_tokens,
                ..EngineConfig::default()
            },
        )
        .unwrap();
        let mut request = Request::new(p.clone(), 3, vec![]);
        request.prompt_logprobs = Some(2);
        let mut stream = engine.submit(request).unwrap();
        match stream.blocking_recv() {
            Some(Event::PromptLogprobs(scored)) => scored,
            other => panic!("first event {other:?}"),
        }
    };
    let (whole, chunked) = (run(512), run(7));
    assert_eq!(whole.len(), p.len() - 1);
    assert_eq!(chunked.len(), p.len() - 1);
    for (i, (a, b)) in whole.iter().zip(&chunked).enumerate() {
        assert_eq!((a.id, a.top[0].0), (b.id, b.top[0].0), "token {i}");
        assert_eq!(a.id, p[i + 1]);
        assert!((a.logprob - b.logprob).abs() < 1e-4, "token {i}");
    }
}

#[test]
fn a_prompt_that_cannot_fit_is_refused_and_a_full_pool_ends_the_output() {
    let model = model();
    let block_size = 4;
    let config = EngineConfig {
        block_size,
        kv_cache_bytes: KvPool::bytes_per_block(model.config(), block_size) * 4,
        ..EngineConfig::default()
    };
    let engine = EngineHandle::start(model.clone(), config).unwrap();
    assert_eq!(engine.max_context(), 16);
    assert!(engine
        .submit(Request::new(prompt(1, 16), 4, vec![]))
        .is_err());
    let (tokens, last) = collect(
        engine
            .submit(Request::new(prompt(1, 10), 100, vec![]))
            .unwrap(),
    );
    assert_eq!(tokens.len(), 6);
    assert_eq!(completion(&last).finish, FinishReason::ContextFull);
    let too_small = EngineConfig {
        kv_cache_bytes: 10,
        ..EngineConfig::default()
    };
    assert!(EngineHandle::start(model, too_small).is_err());
}
