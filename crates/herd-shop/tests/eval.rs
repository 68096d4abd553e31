//! `herd_shop::eval` on the random-weight fixture model: cases are scored
//! against their `expected` field, the perplexity is the gold replies', and
//! bad test files are clear errors naming the line.

use std::path::{Path, PathBuf};

use herd_model::{Checkpoint, Llama};
use herd_shop::eval::{evaluate, EvalOptions};
use herd_shop::expected::Expected;
use herd_shop::{Corpus, CorpusOptions, ShopError};
use herd_tokenizer::Tokenizer;
use serde_json::Value;

fn fixture_model() -> (Llama, Tokenizer) {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/llama32-tied");
    let model = Checkpoint::open(&dir).unwrap().into_model().unwrap();
    (model, Tokenizer::from_dir(&dir).unwrap())
}

/// One tool case, one answer that must contain strings, one free answer.
fn three_cases(dir: &Path) -> PathBuf {
    let corpus = Corpus::generate(&CorpusOptions {
        dialogues: 20,
        ..CorpusOptions::default()
    })
    .unwrap();
    corpus.write(dir).unwrap();
    let test = std::fs::read_to_string(dir.join("test.jsonl")).unwrap();
    let kind = |line: &&str| {
        let value: Value = serde_json::from_str(line).unwrap();
        match serde_json::from_value::<Expected>(value["expected"].clone()).unwrap() {
            Expected::ToolCall { .. } => 0,
            Expected::AnswerContains(parts) if !parts.is_empty() => 1,
            Expected::AnswerContains(_) => 2,
        }
    };
    let picked: Vec<&str> = (0..3)
        .map(|k| {
            *test
                .lines()
                .collect::<Vec<_>>()
                .iter()
                .find(|l| kind(l) == k)
                .unwrap()
        })
        .collect();
    let path = dir.join("cases.jsonl");
    std::fs::write(&path, picked.join("\n") + "\n").unwrap();
    path
}

#[test]
fn scores_cases_against_expected_and_the_gold_replies() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = three_cases(tmp.path());
    let (model, tokenizer) = fixture_model();
    let mut seen = Vec::new();
    let report = evaluate(
        &model,
        &tokenizer,
        &cases,
        &EvalOptions::default(),
        |case| seen.push(case.clone()),
    )
    .unwrap();
    assert_eq!(
        (
            report.cases,
            report.open_cases,
            report.tool_cases,
            report.answer_cases
        ),
        (2, 1, 1, 1)
    );
    // Random weights never write the JSON call, and any plain reply passes a
    // case that expects no particular words (which is why such a case is
    // open: left out of exact match).
    assert_eq!(report.tool_cases_well_formed, 0);
    assert!(!seen[0].passed && seen[2].passed, "{seen:#?}");
    assert_eq!(report.passed, seen[..2].iter().filter(|c| c.passed).count());
    let nll: f64 = seen.iter().map(|c| c.nll).sum();
    let tokens: usize = seen.iter().map(|c| c.tokens).sum();
    assert_eq!((report.nll, report.tokens), (nll, tokens));
    // A random model is no better than a uniform guess over its 384 tokens
    // (this fixture's large random logits make it much worse).
    assert!(
        report.perplexity() > 384.0 && report.perplexity().is_finite(),
        "{}",
        report.perplexity()
    );
    let limited = evaluate(
        &model,
        &tokenizer,
        &cases,
        &EvalOptions {
            limit: Some(1),
            max_new_tokens: 4,
        },
        |_| (),
    )
    .unwrap();
    assert_eq!(limited.cases, 1);
    assert_eq!(limited.nll, seen[0].nll);
}

#[test]
fn bad_test_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = three_cases(tmp.path());
    let (model, tokenizer) = fixture_model();
    let first = std::fs::read_to_string(&cases).unwrap();
    let first = first.lines().next().unwrap();
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{first}\n{{\"messages\": []}}\n")).unwrap();
    let err = evaluate(&model, &tokenizer, &bad, &EvalOptions::default(), |_| ()).unwrap_err();
    assert!(err.to_string().contains("bad.jsonl:2:"), "{err}");
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let err = evaluate(&model, &tokenizer, &empty, &EvalOptions::default(), |_| ()).unwrap_err();
    assert!(matches!(err, ShopError::EmptyTestFile(_)), "{err}");
    let missing = tmp.path().join("missing.jsonl");
    let err = evaluate(
        &model,
        &tokenizer,
        &missing,
        &EvalOptions::default(),
        |_| (),
    )
    .unwrap_err();
    assert!(matches!(err, ShopError::Read { .. }), "{err}");
}
