//! `--teacher-url` for `herd teacher-cache` and `herd distill` against a
//! real `herd serve` child serving the embedded teacher: distilling from the
//! server equals distilling from a local top-20 cache of the same teacher,
//! a wrong key and another tokenizer are refused before any work, and a
//! teacher killed mid-cache resumes with nothing scored twice or lost.

#[allow(dead_code)] // the fault counter is for other suites
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{herd_with, stderr, Faults, FaultyProxy, Served};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data() -> String {
    root()
        .join("tests/fixtures/train/chat.jsonl")
        .to_string_lossy()
        .into_owned()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "herd failed: {}", stderr(out));
    stdout(out)
}

/// The losses metrics.jsonl records, step by step.
fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["loss"].as_f64())
        .collect()
}

/// A shard's `__metadata__`.
fn shard_header(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"].clone()
}

/// The number after `label` in `text` (e.g. "12 sequences scored now").
fn number_before(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not in {text}"));
    let digits: String = text[..at]
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

const DISTILL: [&str; 10] = [
    "--steps",
    "3",
    "--seq-len",
    "256",
    "--batch-tokens",
    "512",
    "--seed",
    "3",
    "--val-fraction",
    "0",
];

/// Relative tolerance between the served and the local teacher's losses:
/// both caches hold the same top-20 up to the server's float noise and the
/// cache's 0.001-nat quantisation; measured: 2e-6 over 3 steps.
const LOSS_TOLERANCE: f64 = 1e-4;

#[test]
fn distilling_from_a_served_teacher_equals_the_local_teacher_at_k_20() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data();
    let cache = tmp.path().join("local-cache");
    let out = herd_with(
        &[
            "teacher-cache",
            "--data",
            &data,
            "-o",
            &s(&cache),
            "-k",
            "20",
            "--seq-len",
            "256",
        ],
        &[],
    );
    assert_ok(&out);
    let local = tmp.path().join("local");
    let mut args = vec![
        "distill",
        "--cache",
        cache.to_str().unwrap(),
        "--data",
        &data,
    ];
    let local_out = s(&local);
    args.extend(["--out", &local_out, "--quiet"]);
    args.extend(DISTILL);
    assert_ok(&herd_with(&args, &[]));

    let server = Served::start(&[]);
    let url = server.url();
    let remote = tmp.path().join("remote");
    let remote_out = s(&remote);
    let mut args = vec![
        "distill",
        "--teacher-url",
        &url,
        "--teacher-k",
        "20",
        "--data",
        &data,
    ];
    args.extend(["--out", &remote_out, "--quiet"]);
    args.extend(DISTILL);
    let out = herd_with(&args, &[]);
    assert_ok(&out);
    let meta = shard_header(&remote.join("teacher-cache/shard-00000.safetensors"));
    assert_eq!(meta["k"], "20");
    assert!(
        meta["source"]
            .as_str()
            .unwrap()
            .starts_with("remote http://127.0.0.1:"),
        "{meta}"
    );

    let (a, b) = (losses(&local), losses(&remote));
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    assert!(!a.is_empty());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= LOSS_TOLERANCE * x.abs(),
            "local {a:?} vs served {b:?}"
        );
    }
}

#[test]
fn a_wrong_key_or_another_tokenizer_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data();
    let server = Served::start(&["--api-key", "secret"]);
    let url = server.url();
    let cache = tmp.path().join("cache");
    let cache_arg = s(&cache);
    let cache_args = [
        "teacher-cache",
        "--data",
        &data,
        "-o",
        &cache_arg,
        "--seq-len",
        "256",
    ];
    let mut args = cache_args.to_vec();
    args.extend([
        "--teacher-url",
        &url,
        "--teacher-api-key-env",
        "TEACHER_KEY",
    ]);
    let out = herd_with(&args, &[("TEACHER_KEY", "wrong")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refused the API key"),
        "{}",
        stderr(&out)
    );
    assert!(!cache.exists(), "nothing written");
    let run = tmp.path().join("run");
    let run_arg = s(&run);
    let mut distill = vec!["distill", "--data", &data, "--out", &run_arg, "--quiet"];
    distill.extend([
        "--teacher-url",
        &url,
        "--teacher-api-key-env",
        "TEACHER_KEY",
    ]);
    distill.extend(DISTILL);
    let out = herd_with(&distill, &[("TEACHER_KEY", "wrong")]);
    assert!(
        stderr(&out).contains("refused the API key"),
        "{}",
        stderr(&out)
    );
    assert!(!run.join("teacher-cache").exists() && !run.join("metrics.jsonl").exists());
    // The right key passes the same checks (a dry run scores nothing).
    args.push("--dry-run");
    let out = herd_with(&args, &[("TEACHER_KEY", "secret")]);
    let text = assert_ok(&out);
    assert!(
        text.contains("36 sequences to score (0 already cached"),
        "{text}"
    );
    assert!(
        text.contains("k capped at the server's top_logprobs limit of 20; 64 asked"),
        "{text}"
    );
    assert!(!cache.exists(), "a dry run writes nothing");

    let other = root().join("tests/fixtures/models/llama31-tiny");
    let foreign = Served::start(&["--model", other.to_str().unwrap()]);
    let url = foreign.url();
    let mut args = cache_args.to_vec();
    args.extend(["--teacher-url", &url]);
    let out = herd_with(&args, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("tokenizer differs"),
        "{}",
        stderr(&out)
    );
    assert!(!cache.exists(), "nothing written");
}

#[test]
fn a_teacher_killed_mid_cache_resumes_without_scoring_anything_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data();
    let first = Served::start(&[]);
    let proxy = FaultyProxy::start(first.addr(), Faults::None);
    let url = proxy.url();
    let cache = tmp.path().join("cache");
    let cache_arg = s(&cache);
    let args = [
        "teacher-cache",
        "--data",
        &data,
        "-o",
        &cache_arg,
        "--seq-len",
        "256",
        "--shard-sequences",
        "8",
        "--teacher-url",
        &url,
        "--teacher-concurrency",
        "1",
        "--max-retries",
        "0",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["--threads", "2"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a whole shard and a journal with at least one record.
    let journaled = || {
        std::fs::read(cache.join("shard-00001.partial")).is_ok_and(|b| {
            b.iter()
                .position(|&c| c == b'\n')
                .is_some_and(|end| b.len() > end + 1)
        })
    };
    let start = Instant::now();
    while !journaled() {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(first); // the teacher dies mid-shard
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the run should stop when the teacher is gone"
    );
    assert!(
        stderr(&out).contains("run the same command to resume"),
        "{}",
        stderr(&out)
    );

    let second = Served::start(&[]);
    proxy.set_upstream(second.addr());
    let dry = assert_ok(&herd_with(&[&args[..], &["--dry-run"]].concat(), &[]));
    let left = number_before(&dry, "sequences to score");
    let done = number_before(&dry, "already cached");
    assert_eq!(left + done, 36, "{dry}");
    let text = assert_ok(&herd_with(&args, &[]));
    let scored = number_before(&text, "sequences scored now");
    let resumed = number_before(&text, "resumed from an interrupted run");
    assert!(resumed >= 1, "the journal was used: {text}");
    assert_eq!(scored, left, "{text}");
    // Connecting, the tokenizer check, the token-prompt check and the
    // top_logprobs probe (64 refused, then 20) take 5 requests; every other
    // request scores one new sequence.
    assert_eq!(number_before(&text, "requests,"), scored + 5, "{text}");
    let meta = shard_header(&cache.join("shard-00000.safetensors"));
    assert_eq!(
        (meta["k"].as_str(), meta["k_asked"].as_str()),
        (Some("20"), Some("64"))
    );
    assert_eq!(meta["k_limited_by"], "teacher");

    // The resumed cache is the uninterrupted one, byte for byte.
    let whole = tmp.path().join("whole");
    let whole_arg = s(&whole);
    let mut again = args.to_vec();
    again[4] = &whole_arg;
    assert_ok(&herd_with(&again, &[]));
    // (Headers compare as JSON: their key order varies between writes.)
    let listing = |dir: &Path| {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
                (
                    p.file_name().unwrap().to_owned(),
                    header,
                    bytes[8 + n..].to_vec(),
                )
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    };
    let (resumed_files, whole_files) = (listing(&cache), listing(&whole));
    assert_eq!(resumed_files.len(), 5, "5 shards, no journal left");
    assert!(resumed_files == whole_files, "the resumed cache differs");
}

#[test]
fn eval_compare_scores_a_served_model_as_the_local_one() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = s(tmp.path());
    assert_ok(&herd_with(
        &["data", "shop", "-o", &corpus, "--dialogues", "20"],
        &[],
    ));
    let test = s(&tmp.path().join("test.jsonl"));
    let server = Served::start(&[]);
    let entries = format!("embedded,url:{}", server.url());
    let report = s(&tmp.path().join("report"));
    let args = [
        "eval",
        "--compare",
        &entries,
        "--data",
        &test,
        "--limit",
        "4",
        "--max-tokens",
        "24",
        "--json",
        "-o",
        &report,
    ];
    let text = assert_ok(&herd_with(&args, &[]));
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    let (local, served) = (&rows[0], &rows[1]);
    assert!(served["model"]
        .as_str()
        .unwrap()
        .starts_with("url:http://127.0.0.1:"));
    // Greedy replies and gold likelihoods of the same teacher agree.
    for key in [
        "cases",
        "passed",
        "tool_calls_well_formed",
        "perplexity_tokens",
    ] {
        assert_eq!(local[key], served[key], "{key}: {text}");
    }
    let (a, b) = (
        local["perplexity"].as_f64().unwrap(),
        served["perplexity"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-4 * a, "{text}");
    assert!(tmp.path().join("report/report.md").is_file());
}
