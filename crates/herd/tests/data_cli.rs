//! `herd data shop` and `herd tokenizer train` end to end: the corpus is
//! reproducible, the tokenizer trained on it loads and speaks the chat
//! format, and bad input gives a clear error.

use std::path::Path;
use std::process::{Command, Output};

use herd_tokenizer::{ChatFormat, ChatRecord, Tokenizer};

fn herd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .output()
        .expect("run herd")
}

fn ok(args: &[&str]) -> String {
    let out = herd(args);
    assert!(
        out.status.success(),
        "herd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn failure(args: &[&str]) -> String {
    let out = herd(args);
    assert!(!out.status.success(), "herd {args:?} should fail");
    String::from_utf8(out.stderr).expect("UTF-8")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn corpus_then_tokenizer_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, tok) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("tok"),
    );
    let summary = ok(&[
        "data",
        "shop",
        "-o",
        path(&a),
        "--dialogues",
        "200",
        "--seed",
        "5",
    ]);
    assert!(summary.contains("train 200 dialogues"), "{summary}");
    ok(&[
        "data",
        "shop",
        "-o",
        path(&b),
        "--dialogues",
        "200",
        "--seed",
        "5",
    ]);
    for name in [
        "train.jsonl",
        "valid.jsonl",
        "test.jsonl",
        "tools.json",
        "shop.json",
    ] {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name}"
        );
    }

    let report = ok(&[
        "tokenizer",
        "train",
        "--data",
        path(&a),
        "--vocab-size",
        "1024",
        "-o",
        path(&tok),
    ]);
    assert!(report.contains("200 records ="), "{report}");
    let tokenizer = Tokenizer::from_file(tok.join("tokenizer.json")).expect("load");
    assert!(tokenizer.vocab_size() <= 1024);
    let line = std::fs::read_to_string(a.join("test.jsonl")).unwrap();
    let record = ChatRecord::from_json(line.lines().next().unwrap()).expect("record");
    let ids = ChatFormat::new(&tokenizer)
        .unwrap()
        .encode_dialog_prompt(&record.dialog())
        .unwrap();
    let text = tokenizer.decode(&ids, false).unwrap();
    assert!(text.starts_with("<|begin_of_text|><|start_header_id|>system<|end_header_id|>"));
    assert!(text.contains("\"lookup_order\""));
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = failure(&["data", "shop", "-o", path(&out), "--languages", "en,fr"]);
    assert!(err.contains("unknown language \"fr\""), "{err}");
    let err = failure(&["data", "shop", "-o", path(&out), "--dialogues", "0"]);
    assert!(err.contains("--dialogues must be at least 1"), "{err}");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n\n{\"messages\":[{\"role\":\"bot\"}]}\n").unwrap();
    let err = failure(&["tokenizer", "train", "--data", path(&bad), "-o", path(&out)]);
    assert!(
        err.contains("bad.jsonl:3") && err.contains("unknown role \"bot\""),
        "{err}"
    );
    let err = failure(&[
        "tokenizer",
        "train",
        "--data",
        path(&dir.path().join("missing.jsonl")),
        "-o",
        path(&out),
    ]);
    assert!(err.contains("cannot open"), "{err}");
    std::fs::write(
        &bad,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}]}\n",
    )
    .unwrap();
    let err = failure(&[
        "tokenizer",
        "train",
        "--data",
        path(&bad),
        "--vocab-size",
        "300",
        "-o",
        path(&out),
    ]);
    assert!(err.contains("at least 512"), "{err}");
    assert!(!out.join("tokenizer.json").exists());
}
