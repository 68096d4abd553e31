//! `herd eval` end to end on the embedded teacher: it scores test cases of
//! a freshly generated corpus, the teacher is the trained model (its
//! perplexity on the gold replies is far below a random model's ~3000),
//! and bad input is a clear error.

use std::process::{Command, Output};

fn herd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["--threads", "2"])
        .args(args)
        .env_remove("HERD_MODEL")
        .output()
        .expect("run herd")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn eval_scores_the_embedded_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().to_str().unwrap();
    let out = herd(&["data", "shop", "-o", corpus, "--dialogues", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let test = dir.path().join("test.jsonl");
    let out = herd(&[
        "eval",
        "--data",
        test.to_str().unwrap(),
        "--limit",
        "4",
        "--verbose",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.matches("     reply: ").count(), 4, "{stdout}");
    assert!(stdout.contains("<embedded teacher>"), "{stdout}");
    let counts = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cases"))
        .unwrap_or_else(|| panic!("no case count in {stdout}"));
    let numbers: Vec<usize> = counts
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers[0] + numbers[1], 4, "{stdout}");
    let perplexity: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("perplexity"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no perplexity in {stdout}"));
    assert!(perplexity < 50.0, "{stdout}");
}

#[test]
fn eval_bad_input_is_a_clear_error() {
    let out = herd(&["eval", "--data", "/no/such/test.jsonl"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read /no/such/test.jsonl"),
        "{}",
        stderr(&out)
    );
    let out = herd(&["eval", "--data", "x.jsonl", "--max-tokens", "0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--max-tokens"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
}
