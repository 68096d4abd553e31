//! `herd prune`, `herd generate --draft-model` and `herd eval --compare` end
//! to end on the embedded teacher: prune it to a draft, check that the draft
//! leaves greedy output unchanged, compare both models in a report; bad input
//! is a clear error.

use std::path::Path;
use std::process::{Command, Output};

fn herd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["--threads", "2"])
        .args(args)
        .env_remove("HERD_MODEL")
        .output()
        .expect("run herd")
}

fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn fails_with(out: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(needle), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn prune_then_speculate_then_compare() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    ok(herd(&[
        "data",
        "shop",
        "-o",
        s(&corpus),
        "--dialogues",
        "20",
    ]));
    let valid = corpus.join("valid.jsonl");
    let draft = dir.path().join("draft");
    let report = ok(herd(&[
        "prune",
        "--calibration",
        s(&valid),
        "--calibration-tokens",
        "3000",
        "--depth",
        "2",
        "--ffn",
        "256",
        "-o",
        s(&draft),
    ]));
    assert!(report.contains("layers 4 → 2"), "{report}");
    assert!(report.contains("MLP 512 → 256"), "{report}");
    assert_eq!(report.matches("dropped").count(), 2, "{report}");
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--chat",
            "-p",
            "Where is my order 1047?",
            "--greedy",
            "-n",
            "40",
            "--ids",
        ];
        args.extend_from_slice(extra);
        ok(herd(&args))
    };
    let plain = generate(&[]);
    assert_eq!(
        plain,
        generate(&["--draft-model", s(&draft), "--draft-tokens", "3"])
    );
    let report_dir = dir.path().join("report");
    let test = corpus.join("test.jsonl");
    let json = ok(herd(&[
        "eval",
        "--compare",
        &format!("embedded,{}", s(&draft)),
        "--data",
        s(&test),
        "--limit",
        "3",
        "--max-tokens",
        "24",
        "--json",
        "-o",
        s(&report_dir),
    ]));
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{json}");
    assert!(lines[0]["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(lines[1]["parameters"].as_u64() < lines[0]["parameters"].as_u64());
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("| blue | `embedded` |"), "{md}");
    assert!(report_dir.join("exact_match.png").is_file());
    // Pruning into a directory that already holds a model is refused.
    fails_with(
        herd(&[
            "prune",
            "--calibration",
            s(&valid),
            "--depth",
            "3",
            "-o",
            s(&draft),
        ]),
        "exists",
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/models/llama32-tied"
    );
    fails_with(
        herd(&["generate", "-p", "hi", "--draft-model", fixture]),
        "tokenizer",
    );
    fails_with(
        herd(&[
            "prune",
            "--calibration",
            "/no/such.jsonl",
            "--depth",
            "2",
            "-o",
            "/tmp/x",
        ]),
        "/no/such.jsonl",
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    fails_with(
        herd(&[
            "prune",
            "--calibration",
            s(&empty),
            "--depth",
            "9",
            "-o",
            s(&dir.path().join("o")),
        ]),
        "no training examples",
    );
    fails_with(
        herd(&[
            "eval",
            "--compare",
            "embedded,/no/such/model",
            "--data",
            s(&empty),
            "-o",
            s(dir.path()),
        ]),
        "/no/such/model",
    );
}
