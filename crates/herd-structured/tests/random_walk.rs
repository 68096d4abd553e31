//! Random walks through the masks of many schemas and vocabularies, without
//! a model: no mask is ever empty (no dead ends), and every walk that ends
//! with a stop token has produced UTF-8 text that parses as JSON and
//! validates against the schema.

mod support;

use std::path::Path;
use std::sync::Arc;

use herd_structured::{JsonProcessor, JsonSpec, TokenVocab};
use herd_tokenizer::Tokenizer;
use serde_json::Value;
use support::{random_walk, schemas, validate, Rng};

/// Walks `seeds` times per spec and checks every document.
fn check_vocab(vocab: Arc<TokenVocab>, stops: &[u32], seeds: u64, steps: usize) {
    let mut specs = vec![("json_object", JsonSpec::AnyObject)];
    specs.extend(schemas().into_iter().map(|(n, s)| (n, JsonSpec::Schema(s))));
    for (name, spec) in &specs {
        for seed in 1..=seeds {
            let mut processor =
                JsonProcessor::new(spec, vocab.clone(), stops.to_vec()).expect("compiles");
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let walk = random_walk(&mut processor, &vocab, stops, &mut rng, steps);
            let bytes: Vec<u8> = walk
                .tokens
                .iter()
                .flat_map(|&id| {
                    vocab
                        .token_bytes(id)
                        .expect("allowed tokens have bytes")
                        .to_vec()
                })
                .collect();
            let text = String::from_utf8(bytes).expect("output is UTF-8");
            assert!(
                walk.stopped,
                "{name} seed {seed}: no stop after {steps} steps: {text}"
            );
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} seed {seed}: {e}: {text}"));
            if let JsonSpec::Schema(schema) = spec {
                validate(schema, schema, &value, "#")
                    .unwrap_or_else(|e| panic!("{name} seed {seed}: {e}: {text}"));
            } else {
                assert!(value.is_object(), "{text}");
            }
        }
    }
}

/// A hand-made vocabulary: every single byte, tokens that span JSON
/// structure, and tokens holding parts of UTF-8 characters ("中" is
/// e4 b8 ad, split two ways), with a byte-less stop token.
#[test]
fn synthetic_vocabulary_walks_end_in_valid_documents() {
    let mut tokens: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
    for word in [
        "\": \"",
        "\"}",
        "},{\"",
        "\", \"",
        "true",
        "null",
        "1.5",
        "e+",
        "\\u00",
        "\\\"",
        "\"name\"",
        "\"kind\":\"line\"",
        "[{",
        "]}",
        " \"",
        "  ",
        "\n  ",
        "ab",
        "中文",
    ] {
        tokens.push(Some(word.as_bytes().to_vec()));
    }
    tokens.extend([vec![0xe4, 0xb8], vec![0xad, b'"'], vec![0xb8, 0xad]].map(Some));
    tokens.push(None);
    let stop = tokens.len() as u32 - 1;
    let vocab = Arc::new(TokenVocab::from_token_bytes(tokens).expect("vocab"));
    check_vocab(vocab, &[stop], 12, 600);
}

#[test]
fn fixture_tokenizer_walks_end_in_valid_documents() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama32-tied");
    let tokenizer = Tokenizer::from_dir(dir).expect("fixture tokenizer");
    let vocab = Arc::new(TokenVocab::from_tokenizer(&tokenizer).expect("vocab"));
    check_vocab(vocab, &tokenizer.stop_ids(), 12, 600);
}

/// Meta's 128k vocabulary (fetched by tools/fetch_llama3_tokenizer.sh).
#[test]
fn llama3_tokenizer_walks_end_in_valid_documents() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/llama3-tokenizer/tokenizer.model");
    assert!(
        path.is_file(),
        "{} is missing: run `tools/fetch_llama3_tokenizer.sh` from the repository root first",
        path.display()
    );
    let tokenizer = Tokenizer::from_tiktoken(path).expect("llama 3 tokenizer");
    let vocab = Arc::new(TokenVocab::from_tokenizer(&tokenizer).expect("vocab"));
    check_vocab(vocab, &tokenizer.stop_ids(), 3, 300);
}
