//! Datasets: OpenAI-shaped records become the Llama 3 chat format with the
//! tool prompt, tool calls, `ipython` results and an assistant-only loss.

use std::path::{Path, PathBuf};

use herd_tokenizer::Tokenizer;
use herd_train::{DataOptions, Dataset, LossOn};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_dir(root().join("tests/fixtures/models/llama32-tied")).expect("tokenizer")
}

fn load(file: &str, loss_on: LossOn) -> Dataset {
    let opts = DataOptions {
        loss_on,
        skip_bad_records: false,
        seq_len: 2048,
        truncate: false,
        validation_fraction: 0.0,
    };
    Dataset::load(
        &root().join("tests/fixtures/train").join(file),
        &tokenizer(),
        &opts,
    )
    .expect("load")
}

#[test]
fn tool_dialogs_render_tools_calls_and_results() {
    let tok = tokenizer();
    let data = load("tools.jsonl", LossOn::Assistant);
    assert_eq!(data.train.len(), 5);
    let ex = &data.train[0];
    let text = tok.decode(&ex.ids, false).expect("decode");
    assert!(
        text.starts_with(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\"name\": \"lookup_order\""),
        "tool definitions in the prompt"
    );
    assert!(
        text.contains(
            "{\"type\": \"function\", \"name\": \"lookup_order\", \"parameters\": {\"order_id\": "
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n\n{\"status\": \"shipped\""
        ),
        "{text}"
    );
    // The loss covers exactly the two assistant replies (call + answer).
    let learnt: Vec<u32> = ex
        .ids
        .iter()
        .zip(&ex.target)
        .filter(|(_, &t)| t)
        .map(|(&i, _)| i)
        .collect();
    let learnt = tok.decode(&learnt, false).expect("decode");
    assert!(
        learnt.starts_with("{\"type\": \"function\", \"name\": \"lookup_order\""),
        "{learnt}"
    );
    assert!(
        learnt.contains("<|eom_id|>Order ") && learnt.ends_with("has shipped.<|eot_id|>"),
        "{learnt}"
    );
    assert!(
        !learnt.contains("Where is order"),
        "user text is not learnt"
    );
}

#[test]
fn loss_on_all_learns_every_token_but_the_first() {
    let data = load("chat.jsonl", LossOn::All);
    for ex in &data.train {
        assert!(!ex.target[0]);
        assert!(ex.target[1..].iter().all(|&t| t));
    }
    let assistant = load("chat.jsonl", LossOn::Assistant);
    let count = |d: &Dataset| d.train.iter().map(|e| e.target_count()).sum::<usize>();
    assert!(count(&assistant) < count(&data));
}
