//! End to end through the serving engine: a random-weight fixture model
//! samples freely (temperature 1, several seeds) under a `JsonProcessor`, and
//! every output parses and validates against its schema. The same requests
//! without the processor do not produce JSON, so the constraint is what
//! makes the outputs valid.
//!
//! Every string and array of these schemas has an upper bound, so any
//! output ends within the token budget. `json_object` (free strings) is
//! covered by the random walks instead: a random-weight model inside an
//! unbounded string repeats itself until the budget runs out.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use herd_engine::{
    EngineConfig, EngineHandle, Event, FinishReason, Request, RequestStream, Sampling,
    SamplingParams,
};
use herd_model::Llama;
use herd_structured::{JsonProcessor, JsonSpec, TokenVocab};
use herd_tokenizer::Tokenizer;
use serde_json::Value;
use support::{schemas, validate};

/// Room for any document of the bounded test schemas, blanks included.
const MAX_TOKENS: usize = 1500;
const SEEDS: [u64; 3] = [1, 7, 42];

struct Setup {
    engine: EngineHandle,
    tokenizer: Tokenizer,
    vocab: Arc<TokenVocab>,
    prompt: Vec<u32>,
}

fn setup() -> Setup {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama32-tied");
    let model = Arc::new(Llama::load(&dir).expect("fixture model"));
    let tokenizer = Tokenizer::from_dir(&dir).expect("fixture tokenizer");
    let vocab = Arc::new(TokenVocab::from_tokenizer(&tokenizer).expect("vocab"));
    let mut prompt: Vec<u32> = tokenizer.bos_id().into_iter().collect();
    prompt.extend(tokenizer.encode("Reply with JSON:").expect("encode"));
    let engine = EngineHandle::start(model, EngineConfig::default()).expect("engine");
    Setup {
        engine,
        tokenizer,
        vocab,
        prompt,
    }
}

fn request(setup: &Setup, seed: u64, spec: Option<&JsonSpec>) -> Request {
    let stops = setup.tokenizer.stop_ids();
    let mut request = Request::new(setup.prompt.clone(), MAX_TOKENS, stops.clone());
    request.sampling = SamplingParams {
        sampling: Sampling::Random {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            min_p: None,
        },
        repetition_penalty: 1.0,
        seed,
    };
    request.processor = spec.map(|spec| {
        let processor = JsonProcessor::new(spec, setup.vocab.clone(), stops).expect("compiles");
        Box::new(processor) as Box<dyn herd_engine::LogitsProcessor>
    });
    request
}

/// The generated tokens and how the request ended.
fn collect(mut stream: RequestStream) -> (Vec<u32>, FinishReason) {
    let mut tokens = Vec::new();
    while let Some(event) = stream.blocking_recv() {
        match event {
            Event::Token { id, .. } => tokens.push(id),
            Event::Finished(done) => return (tokens, done.finish),
            Event::Failed(e) => panic!("engine failed: {e}"),
            Event::PromptLogprobs(_) => {}
        }
    }
    panic!("stream ended without a Finished event");
}

#[test]
fn sampled_outputs_parse_and_validate() {
    let setup = setup();
    let specs: Vec<(&str, JsonSpec)> = schemas()
        .into_iter()
        .map(|(n, s)| (n, JsonSpec::Schema(s)))
        .collect();
    let mut streams = Vec::new();
    for (name, spec) in &specs {
        for seed in SEEDS {
            let stream = setup.engine.submit(request(&setup, seed, Some(spec)));
            streams.push((*name, spec, seed, stream.expect("submitted")));
        }
    }
    for (name, spec, seed, stream) in streams {
        let (tokens, finish) = collect(stream);
        let text = setup.tokenizer.decode(&tokens, true).expect("decode");
        assert!(
            matches!(finish, FinishReason::Stop(_)),
            "{name} seed {seed}: {finish:?} after {} tokens: {text}",
            tokens.len()
        );
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} seed {seed}: {e}: {text}"));
        match spec {
            JsonSpec::Schema(schema) => validate(schema, schema, &value, "#")
                .unwrap_or_else(|e| panic!("{name} seed {seed}: {e}: {text}")),
            JsonSpec::AnyObject => assert!(value.is_object(), "{text}"),
        }
    }
}

#[test]
fn without_the_processor_the_model_does_not_write_json() {
    let setup = setup();
    for seed in SEEDS {
        let mut request = request(&setup, seed, None);
        request.max_tokens = 40;
        let (tokens, _) = collect(setup.engine.submit(request).expect("submitted"));
        let text = setup.tokenizer.decode(&tokens, true).expect("decode");
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    }
}
