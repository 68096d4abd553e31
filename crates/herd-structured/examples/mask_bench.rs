//! Milliseconds per decoding step spent computing the allowed-token mask,
//! for a tokenizer and a few automaton states (each measured on a cache
//! miss: a fresh processor fed the prefix, then one `process` call).
//!
//! ```sh
//! bash tools/fetch_llama3_tokenizer.sh
//! cargo run --release -p herd-structured --example mask_bench -- target/llama3-tokenizer/tokenizer.model
//! cargo run --release -p herd-structured --example mask_bench -- tests/fixtures/models/llama32-tied
//! ```

use std::sync::Arc;
use std::time::Instant;

use herd_engine::LogitsProcessor;
use herd_structured::{JsonProcessor, JsonSpec, TokenVocab};
use herd_tokenizer::Tokenizer;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: mask_bench TOKENIZER_FILE_OR_MODEL_DIR")?;
    let tokenizer = Tokenizer::from_path(&path)?;
    let start = Instant::now();
    let vocab = Arc::new(TokenVocab::from_tokenizer(&tokenizer)?);
    println!(
        "{path}: {} tokens, vocabulary index built in {:.1} ms",
        vocab.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    let schema = JsonSpec::Schema(json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}},
        },
        "required": ["name", "age"],
    }));
    let cases: [(&str, &JsonSpec, &str); 7] = [
        ("json_object, start", &JsonSpec::AnyObject, ""),
        ("json_object, after {", &JsonSpec::AnyObject, "{"),
        ("json_object, in a key", &JsonSpec::AnyObject, "{\"answer"),
        (
            "json_object, in a free string",
            &JsonSpec::AnyObject,
            "{\"answer\": \"The quick brown",
        ),
        (
            "json_object, in a number",
            &JsonSpec::AnyObject,
            "{\"answer\": 12",
        ),
        ("schema, after {", &schema, "{"),
        ("schema, in a bounded string", &schema, "{\"name\": \"Ann"),
    ];
    let stops = tokenizer.stop_ids();
    let mut logits = vec![0f32; vocab.len()];
    for (label, spec, prefix) in cases {
        let ids = tokenizer.encode(prefix)?;
        let rounds = 20;
        let mut total = 0.0;
        let mut allowed = 0;
        for _ in 0..rounds {
            let mut processor = JsonProcessor::new(spec, vocab.clone(), stops.clone())?;
            for &id in &ids {
                processor.accept(id);
            }
            logits.fill(0.0);
            let t = Instant::now();
            processor.process(&mut logits);
            total += t.elapsed().as_secs_f64();
            allowed = logits.iter().filter(|l| l.is_finite()).count();
        }
        println!(
            "{label:32} {:8.3} ms/step  ({allowed} tokens allowed)",
            total / rounds as f64 * 1e3
        );
    }
    Ok(())
}
