//! `herd finetune`, `herd train`, `herd merge` and `--lora` end to end, and
//! every kind of bad input giving a clear error without losing files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny() -> PathBuf {
    root().join("tests/fixtures/models/llama31-tiny")
}

fn chat_data() -> PathBuf {
    root().join("tests/fixtures/train/chat.jsonl")
}

fn herd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["--threads", "2"])
        .args(args)
        .output()
        .expect("run herd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A short LoRA run on the tiny model into `out`.
fn finetune(out: &Path, data: &Path, extra: &[&str]) -> Output {
    let model = tiny();
    let mut args = vec![
        "finetune",
        "--model",
        s(&model),
        "--data",
        s(data),
        "--out",
        s(out),
        "--steps",
        "4",
        "--lr",
        "1e-2",
        "--seq-len",
        "256",
        "--batch-tokens",
        "512",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    herd(&args)
}

fn assert_fails_with(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
}

fn greedy_ids(model: &Path, lora: Option<&Path>) -> String {
    let mut args = vec![
        "generate",
        "--model",
        s(model),
        "--prompt",
        "Where is",
        "--greedy",
        "-n",
        "12",
        "--ids",
    ];
    if let Some(lora) = lora {
        args.extend(["--lora", s(lora)]);
    }
    let out = herd(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn lora_finetune_then_generate_with_adapter_equals_merged_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = tmp.path().join("run");
    let out = finetune(&run, &chat_data(), &["--lora-targets", "q,v,gate,down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stderr);
    assert!(summary.contains("training done: step 4/4"), "{summary}");
    for file in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "metrics.jsonl",
        "loss.png",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    assert_eq!(
        metrics.lines().filter(|l| l.contains("\"loss\"")).count(),
        4
    );
    let with_adapter = greedy_ids(&tiny(), Some(&run));
    assert_ne!(
        with_adapter,
        greedy_ids(&tiny(), None),
        "the adapter changes the output"
    );
    let merged = tmp.path().join("merged");
    let out = herd(&[
        "merge",
        "--model",
        s(&tiny()),
        "--lora",
        s(&run),
        "-o",
        s(&merged),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(greedy_ids(&merged, None), with_adapter);
    let both = herd(&[
        "generate",
        "--model",
        s(&tiny()),
        "--lora",
        s(&run),
        "--quantize",
        "q8_0",
        "--prompt",
        "Where is",
    ]);
    assert_fails_with(&both, "--lora and --quantize together are not supported");
}

#[test]
fn full_finetune_and_training_from_scratch_write_loadable_models() {
    let tmp = tempfile::tempdir().expect("tmp");
    let full = tmp.path().join("full");
    let out = finetune(&full, &chat_data(), &["--full"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!greedy_ids(&full, None).is_empty());
    let scratch = tmp.path().join("scratch");
    let out = herd(&[
        "train",
        "--config",
        s(&tiny().join("config.json")),
        "--tokenizer",
        s(&tiny()),
        "--data",
        s(&chat_data()),
        "--out",
        s(&scratch),
        "--steps",
        "3",
        "--seq-len",
        "256",
        "--batch-tokens",
        "512",
        "--quiet",
        "--loss-on",
        "all",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(scratch.join(file).is_file(), "{file} missing");
    }
    assert!(!greedy_ids(&scratch, None).is_empty());
}

#[test]
fn ctrl_c_checkpoints_and_resume_continues_the_same_curve() {
    let tmp = tempfile::tempdir().expect("tmp");
    let args = |out: &Path| {
        vec![
            "--threads".to_string(),
            "2".into(),
            "finetune".into(),
            "--model".into(),
            s(&tiny()).into(),
            "--data".into(),
            s(&chat_data()).into(),
            "--out".into(),
            s(out).into(),
            "--steps".into(),
            "150".into(),
            "--seq-len".into(),
            "256".into(),
            "--batch-tokens".into(),
            "256".into(),
            "--quiet".into(),
            "--lora-rank".into(),
            "2".into(),
        ]
    };
    let whole = tmp.path().join("whole");
    let run = tmp.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args(&run))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let metrics = run.join("metrics.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 3 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(kill.expect("kill").success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--resume"));
    assert!(run.join("checkpoint.safetensors").is_file());
    assert!(
        !run.join("adapter_model.safetensors").exists(),
        "no result before the end"
    );

    let again = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args(&run))
        .output()
        .expect("run");
    assert_fails_with(&again, "already holds a training run");

    let resumed = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args(&run))
        .arg("--resume")
        .output()
        .expect("resume");
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let uninterrupted = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args(&whole))
        .output()
        .expect("whole");
    assert!(uninterrupted.status.success());
    let losses = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .expect("metrics")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("loss").map(|l| l.to_string()))
            .collect()
    };
    let (a, b) = (losses(&run), losses(&whole));
    assert_eq!(a.len(), 150);
    assert_eq!(a, b, "resumed and uninterrupted loss curves differ");
}

#[test]
fn bad_datasets_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let write = |name: &str, body: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, body).expect("write");
        p
    };
    let good = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#;
    let broken = write(
        "broken.jsonl",
        &format!("{good}\n{{\"messages\": [\n{good}\n"),
    );
    let out = finetune(&tmp.path().join("a"), &broken, &[]);
    assert_fails_with(&out, "broken.jsonl:2: not a JSON record");
    assert!(text(&out.stderr).contains("--skip-bad-records"));

    let out = finetune(&tmp.path().join("b"), &broken, &["--skip-bad-records"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("skipped 1 malformed records"));

    let roles = write(
        "roles.jsonl",
        r#"{"messages": [{"role": "robot", "content": "x"}]}"#,
    );
    assert_fails_with(
        &finetune(&tmp.path().join("c"), &roles, &[]),
        "roles.jsonl:1: messages[0]: unknown role \"robot\"",
    );

    let empty = write("empty.jsonl", "\n\n");
    assert_fails_with(
        &finetune(&tmp.path().join("d"), &empty, &[]),
        "no training examples",
    );

    let long = write(
        "long.jsonl",
        &format!(r#"{{"text": "{}"}}"#, "many words here ".repeat(200)),
    );
    assert_fails_with(
        &finetune(&tmp.path().join("e"), &long, &[]),
        "long.jsonl:1: the example has",
    );
    assert_fails_with(&finetune(&tmp.path().join("e"), &long, &[]), "--truncate");
    let out = finetune(&tmp.path().join("f"), &long, &["--truncate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("truncated 1 examples"));
}

#[test]
fn bad_options_and_adapters_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    assert_fails_with(
        &finetune(
            &tmp.path().join("a"),
            &chat_data(),
            &["--lora-targets", "q,attn"],
        ),
        "unknown LoRA target \"attn\"",
    );
    assert_fails_with(
        &finetune(&tmp.path().join("b"), &chat_data(), &["--resume"]),
        "does not exist",
    );
    let out = herd(&[
        "generate",
        "--model",
        s(&root().join("tests/fixtures/models/llama32-tied")),
        "--lora",
        s(&root().join("tests/fixtures/train/peft_adapter")),
        "--prompt",
        "hi",
    ]);
    assert_fails_with(&out, "but the adapter has");
    let merged = tmp.path().join("merged");
    std::fs::create_dir(&merged).expect("dir");
    std::fs::write(merged.join("keep.txt"), "precious").expect("write");
    let out = herd(&[
        "merge",
        "--model",
        s(&tiny()),
        "--lora",
        s(&root().join("tests/fixtures/train/peft_adapter")),
        "-o",
        s(&merged),
    ]);
    assert_fails_with(&out, "not empty");
    assert_eq!(
        std::fs::read_to_string(merged.join("keep.txt")).expect("kept"),
        "precious"
    );
}
