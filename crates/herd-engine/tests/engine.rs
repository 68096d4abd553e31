//! The serving engine against the single-sequence generation loop on a
//! fixture model: same tokens, well-formed logprobs, cancellation on drop.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use herd_engine::{
    generate, token_logprob, EngineConfig, EngineHandle, Event, FinishReason, GenerateRequest,
    Request, SamplingParams,
};
use herd_model::Llama;

fn model() -> Arc<Llama> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama32-tied");
    Arc::new(Llama::load(&dir).expect("fixture model loads"))
}

/// Collects a stream's generated tokens and its completion.
fn collect(stream: &mut herd_engine::RequestStream) -> (Vec<u32>, Vec<Event>) {
    let mut tokens = Vec::new();
    let mut events = Vec::new();
    while let Some(event) = stream.blocking_recv() {
        if let Event::Token { id, .. } = &event {
            tokens.push(*id);
        }
        events.push(event);
    }
    (tokens, events)
}

#[test]
fn engine_matches_generate_and_reports_logprobs() {
    let model = model();
    let prompt: Vec<u32> = vec![1, 17, 300, 42, 9];
    let reference = generate(
        &*model,
        &mut model.new_cache(),
        &GenerateRequest {
            prompt: prompt.clone(),
            max_new_tokens: 12,
            sampling: SamplingParams::default(),
            stop_ids: vec![],
        },
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let engine = EngineHandle::start(model.clone(), EngineConfig::default()).unwrap();
    let mut request = Request::new(prompt.clone(), 12, vec![]);
    request.logprobs = Some(3);
    request.prompt_logprobs = Some(2);
    let (tokens, events) = collect(&mut engine.submit(request).unwrap());
    assert_eq!(tokens, reference.tokens);
    let Event::PromptLogprobs(scored) = &events[0] else {
        panic!("first event is {:?}", events[0]);
    };
    assert_eq!(scored.len(), prompt.len() - 1);
    assert!(scored
        .iter()
        .zip(&prompt[1..])
        .all(|(s, &id)| s.id == id && s.top.len() == 2));
    for event in &events {
        if let Event::Token {
            id,
            logprob: Some(lp),
        } = event
        {
            // Greedy: the chosen token is the most likely one.
            assert_eq!(lp.top[0].0, *id);
            assert!((lp.top[0].1 - lp.logprob).abs() < 1e-6 && lp.logprob <= 0.0);
            assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }
    assert_eq!(
        events.last(),
        Some(&Event::Finished(herd_engine::Completion {
            finish: FinishReason::Length,
            prompt_tokens: prompt.len(),
            completion_tokens: 12,
            cached_prompt_tokens: 0,
        }))
    );
}

#[test]
fn token_logprob_is_log_softmax() {
    let lp = token_logprob(&[0.0, (2f32).ln(), f32::NEG_INFINITY], 1, 2);
    assert!((lp.logprob - (2f32 / 3.0).ln()).abs() < 1e-6);
    assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 0]);
}

#[test]
fn bad_requests_are_refused_and_dropping_cancels() {
    let model = model();
    let engine = EngineHandle::start(model.clone(), EngineConfig::default()).unwrap();
    assert!(engine.submit(Request::new(vec![], 4, vec![])).is_err());
    let too_long = vec![1; engine.max_context()];
    assert!(engine.submit(Request::new(too_long, 4, vec![])).is_err());
    let vocab = model.config().vocab_size as u32;
    assert!(engine.submit(Request::new(vec![vocab], 4, vec![])).is_err());
    // A dropped stream frees the engine for the next request.
    drop(
        engine
            .submit(Request::new(vec![1, 2, 3], 10_000, vec![]))
            .unwrap(),
    );
    let (tokens, _) = collect(&mut engine.submit(Request::new(vec![1, 2], 3, vec![])).unwrap());
    assert_eq!(tokens.len(), 3);
}
