//! The `herd` binary end to end: generation matches transformers' greedy
//! continuation, sampling is reproducible by seed, chat holds a multi-turn
//! conversation and exits cleanly on EOF and Ctrl-C, info describes the
//! model, and bad input exits non-zero with a clear message, never a panic.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model(name: &str) -> PathBuf {
    root().join("tests/fixtures/models").join(name)
}

fn herd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["--threads", "2"])
        .args(args)
        .env_remove("HERD_MODEL")
        .output()
        .expect("run herd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn reference(name: &str) -> serde_json::Value {
    let path = root()
        .join("tests/fixtures/reference")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `herd generate --greedy -n 20`, asserted to succeed.
fn greedy_20(model: &Path, prompt: &str) -> Output {
    let out = herd(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        prompt,
        "--greedy",
        "-n",
        "20",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

fn assert_clean_failure(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
}

#[test]
fn greedy_generation_matches_transformers() {
    let reference = reference("llama31-tiny");
    let prompt = reference["prompt_texts"][2].as_str().unwrap();
    let want: Vec<u32> = reference["greedy"][2]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let dir = model("llama31-tiny");
    let out = greedy_20(&dir, prompt);
    let tokenizer = herd_tokenizer::Tokenizer::from_dir(&dir).unwrap();
    let expected = tokenizer.decode(&want, true).unwrap();
    assert_eq!(text(&out.stdout).trim_end_matches('\n'), expected);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("time to first token") && stderr.contains("tok/s"),
        "{stderr}"
    );
    assert!(stderr.contains("generated 20 tokens"), "{stderr}");
}

#[test]
fn same_seed_same_text_other_seed_other_text() {
    let run = |seed: &str| {
        let out = herd(&[
            "generate",
            "--prompt",
            "Anna reads",
            "--temperature",
            "1.0",
            "--top-p",
            "0.95",
            "--seed",
            seed,
            "-n",
            "24",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        out.stdout
    };
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"));
}

#[test]
fn chat_holds_a_conversation_and_exits_on_eof() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args([
            "--threads",
            "2",
            "chat",
            "--system",
            "You are terse.",
            "--greedy",
            "-n",
            "8",
        ])
        .env_remove("HERD_MODEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello there\nand a second question\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("time to first token").count(), 2, "{stderr}");
    // The second turn reuses the cached first turn: fewer tokens computed than in the prompt.
    let second = stderr
        .lines()
        .filter(|l| l.contains("time to first token"))
        .nth(1)
        .unwrap();
    let prompt: usize = second
        .split("prompt ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let computed: usize = second
        .split('(')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(computed < prompt, "{second}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn chat_exits_cleanly_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["--threads", "2", "chat"])
        .env_remove("HERD_MODEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the input prompt, then interrupt.
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !text(&seen).contains("> ") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "herd chat ended early: {}", text(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "herd chat ignored Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    stderr.read_to_end(&mut seen).unwrap();
    assert!(status.success(), "exit status {status:?}: {}", text(&seen));
    assert!(!text(&seen).contains("panicked"));
}

#[test]
fn info_describes_the_model() {
    let dir = model("llama31-tiny");
    let out = herd(&["info", "--model", dir.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Parameters equal the elements stored in the (untied, f32) checkpoint.
    let files = herd_model::WeightFiles::open_dir(&dir).unwrap();
    let params = files.total_bytes() / 4;
    for needle in [
        "LlamaForCausalLM",
        &format!("({params})"),
        "f32",
        "context length: 512 tokens",
        "llama3 scaling x8",
        "KV cache",
    ] {
        assert!(stdout.contains(needle), "info lacks {needle:?}:\n{stdout}");
    }
    let out = herd(&["info", "--model", model("llama31-bf16").to_str().unwrap()]);
    assert!(text(&out.stdout).contains("bf16"), "{}", text(&out.stdout));
}

#[test]
fn missing_model_directory_is_a_clear_error() {
    let out = herd(&["generate", "--model", "/no/such/model", "--prompt", "hi"]);
    assert_clean_failure(&out, "/no/such/model");
}

#[test]
fn model_without_tokenizer_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(model("llama32-tied").join(f), tmp.path().join(f)).unwrap();
    }
    let out = herd(&[
        "generate",
        "--model",
        tmp.path().to_str().unwrap(),
        "--prompt",
        "hi",
    ]);
    assert_clean_failure(&out, "tokenizer");
}

#[test]
fn corrupt_config_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model("llama32-tied")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(tmp.path().join("config.json"), "not json").unwrap();
    let out = herd(&["info", "--model", tmp.path().to_str().unwrap()]);
    assert_clean_failure(&out, &Path::new("config.json").display().to_string());
}

#[test]
fn prompt_longer_than_the_context_is_a_clear_error() {
    let long = "the small city finds the old table ".repeat(200);
    let dir = model("llama31-tiny");
    let out = herd(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        &long,
    ]);
    assert_clean_failure(&out, "context length is 512 tokens");
}

#[test]
fn invalid_flags_are_clear_errors() {
    assert_clean_failure(
        &herd(&["generate", "--prompt", "x", "--top-p", "1.5"]),
        "top-p",
    );
    assert_clean_failure(
        &herd(&["generate", "--prompt", "x", "--temperature=-1"]),
        "temperature",
    );
    assert_clean_failure(
        &herd(&["generate", "--prompt", "x", "--quantize", "q3_k"]),
        "q4_k_m",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["--threads", "0", "info"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "--threads");
}

#[test]
fn quantize_then_generate_from_the_gguf_file() {
    let reference = reference("llama31-tiny");
    let prompt = reference["prompt_texts"][2].as_str().unwrap();
    let dir = model("llama31-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let greedy = |model: &Path| greedy_20(model, prompt).stdout;
    let from_safetensors = greedy(&dir);
    for file_type in ["f32", "q8_0", "q4_k_m"] {
        let gguf = tmp.path().join(format!("tiny-{file_type}.gguf"));
        let out = herd(&[
            "quantize",
            "--model",
            dir.to_str().unwrap(),
            "--type",
            file_type,
            "-o",
            gguf.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = greedy(&gguf);
        if file_type == "f32" {
            // Same weights, same math: the same text.
            assert_eq!(stdout, from_safetensors);
        }
        // Quantizing at load computes exactly what the written file does.
        let at_load = herd(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--quantize",
            file_type,
            "--prompt",
            prompt,
            "--greedy",
            "-n",
            "20",
        ]);
        assert!(at_load.status.success(), "{}", text(&at_load.stderr));
        assert_eq!(at_load.stdout, stdout, "--quantize {file_type}");
        let info = herd(&["info", "--model", gguf.to_str().unwrap()]);
        assert!(
            text(&info.stdout).contains("rope_freqs"),
            "{}",
            text(&info.stdout)
        );
    }
    // Re-quantizing a GGUF file keeps its tokenizer.
    let f32_file = tmp.path().join("tiny-f32.gguf");
    let again = tmp.path().join("again.gguf");
    let out = herd(&[
        "quantize",
        "--model",
        f32_file.to_str().unwrap(),
        "--type",
        "f16",
        "-o",
        again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(herd(&[
        "generate",
        "--model",
        again.to_str().unwrap(),
        "-p",
        "hello",
        "-n",
        "4"
    ])
    .status
    .success());
}

#[test]
fn quantize_rejects_unknown_types_and_keeps_existing_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("keep.gguf");
    std::fs::write(&out_path, b"precious").unwrap();
    let dir = model("llama31-tiny");
    let out = herd(&[
        "quantize",
        "--model",
        dir.to_str().unwrap(),
        "--type",
        "q3_k_xl",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, "q4_k_m");
    let out = herd(&[
        "quantize",
        "--model",
        "/no/such/dir",
        "--type",
        "q8_0",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, "/no/such/dir");
    assert_eq!(std::fs::read(&out_path).unwrap(), b"precious");
}

#[test]
fn plan_lays_out_llama_405b() {
    let out = herd(&["plan", "--model", "llama3.1-405b", "--nodes", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("TP 8 × PP 2"), "{stdout}");
    let out = herd(&["plan", "--model", "llama3.1-405b", "--dtype", "fp8"]);
    assert!(
        text(&out.stdout).contains("TP 8 × PP 1"),
        "{}",
        text(&out.stdout)
    );
    // A fixture directory works like a preset.
    let out = herd(&["plan", "--model", model("llama31-tiny").to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("TP 1 × PP 1"),
        "{}",
        text(&out.stdout)
    );
    assert_clean_failure(&herd(&["plan", "--model", "llama3.1-405b"]), "does not fit");
    assert_clean_failure(
        &herd(&["plan", "--model", "llama3.1-8b", "--dtype", "fp4"]),
        "--dtype",
    );
    assert_clean_failure(&herd(&["plan", "--model", "gpt-5"]), "preset");
}
