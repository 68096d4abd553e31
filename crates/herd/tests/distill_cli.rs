//! `herd teacher-cache` and `herd distill` end to end: the no-argument
//! default (embedded teacher → new 1/8 student on the shop corpus, then the
//! CE-only baseline and the four-row report) at a tiny step count, the
//! embedded student, a resumable cache feeding a run, and every kind of bad
//! input giving a clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn herd_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .current_dir(dir)
        .args(["--threads", "2"])
        .args(args)
        .output()
        .expect("run herd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "herd failed: {}", text(&out.stderr));
    text(&out.stdout)
}

fn assert_fails_with(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(
        !err.contains("panicked"),
        "a panic is not a clear error: {err}"
    );
}

/// The no-argument run at 2 steps, scoring 4 test cases: short, but every
/// stage (distillation, CE-only baseline, untrained student, report) runs.
const QUICK: [&str; 8] = [
    "distill",
    "--steps",
    "2",
    "--report-cases",
    "4",
    "--val-fraction",
    "0",
    "--quiet",
];

#[test]
fn distill_without_arguments_makes_a_small_student_of_the_embedded_teacher() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = herd_in(tmp.path(), &QUICK);
    let stdout = assert_ok(&out);
    let dir = tmp.path().join("distilled");
    for file in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "summary.json",
        "metrics.jsonl",
        "loss.png",
        "data/test.jsonl",
        "ce-only/model.safetensors",
        "ce-only/summary.json",
        "init/model.safetensors",
        "report.md",
        "perplexity.png",
        "exact_match.png",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing; stdout: {stdout}");
    }
    // The report compares the four models on the same 4 cases.
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for row in [
        "| `teacher` |",
        "| `distilled student` |",
        "| `CE-only student` |",
        "| `untrained student` |",
    ] {
        assert!(report.contains(row), "{row} missing from:\n{report}");
    }
    assert!(report.contains("**Gap closed**"), "{report}");
    // The baseline is the same student trained on cross-entropy only.
    let ce: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ce-only/summary.json")).unwrap())
            .unwrap();
    assert!(
        ce["loss"].as_str().unwrap().contains("CrossEntropy"),
        "{ce}"
    );
    assert_eq!(ce["steps"], 2);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let (teacher, student) = (
        summary["teacher_parameters"].as_u64().unwrap(),
        summary["student_parameters"].as_u64().unwrap(),
    );
    assert!(
        8 * student <= teacher,
        "student {student} vs teacher {teacher}"
    );
    assert_eq!(summary["steps"], 2);
    // The student was cut out of the teacher (`--init prune`): the teacher's
    // head size, a narrower residual stream, and a reported cut.
    let config = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (cut, teacher_cfg) = (
        config(&dir.join("init/config.json")),
        config(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/teacher/config.json")),
    );
    assert_eq!(cut["head_dim"], teacher_cfg["head_dim"]);
    assert!(cut["hidden_size"].as_u64() < teacher_cfg["hidden_size"].as_u64());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cut the student out of the teacher"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The student is a model herd runs.
    let gen = herd_in(
        tmp.path(),
        &[
            "generate",
            "-m",
            "distilled",
            "-p",
            "Hello",
            "-n",
            "3",
            "--greedy",
        ],
    );
    assert_ok(&gen);
    // Running again into the same directory does not overwrite the run.
    let again = herd_in(tmp.path(), &QUICK);
    assert_fails_with(&again, "--resume");
}

#[test]
fn the_embedded_student_loads_generates_and_is_an_eighth_of_the_teacher() {
    let tmp = tempfile::tempdir().expect("tmp");
    let params = |model: &str| -> u64 {
        let info = assert_ok(&herd_in(tmp.path(), &["info", "-m", model]));
        let line = info
            .lines()
            .find(|l| l.starts_with("parameters:"))
            .unwrap_or_else(|| panic!("no parameters line in {info}"));
        let count = line.rsplit('(').next().unwrap().trim_end_matches(')');
        count.parse().unwrap_or_else(|_| panic!("{line}"))
    };
    let (teacher, student) = (params("embedded"), params("embedded-student"));
    assert!(
        8 * student <= teacher,
        "student {student} vs teacher {teacher}"
    );
    let gen = herd_in(
        tmp.path(),
        &[
            "generate",
            "-m",
            "embedded-student",
            "--chat",
            "-p",
            "What are your opening hours?",
            "-n",
            "8",
            "--ids",
            "--greedy",
        ],
    );
    let ids = assert_ok(&gen);
    assert!(
        !ids.split_whitespace().next().unwrap_or("").is_empty(),
        "no tokens: {ids}"
    );
    // A directory of that name is a path, not the embedded model.
    std::fs::create_dir(tmp.path().join("embedded-student")).unwrap();
    let shadowed = herd_in(tmp.path(), &["info", "-m", "embedded-student"]);
    assert!(!shadowed.status.success(), "an empty directory loaded");
}

#[test]
fn a_cache_feeds_a_run_and_resumes_without_duplicates() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = s(&root().join("tests/fixtures/train/chat.jsonl"));
    let cache = s(&tmp.path().join("cache"));
    let args = [
        "teacher-cache",
        "--data",
        &data,
        "-o",
        &cache,
        "-k",
        "16",
        "--seq-len",
        "256",
        "--shard-sequences",
        "8",
    ];
    let first = assert_ok(&herd_in(tmp.path(), &args));
    assert!(first.contains("written, 0 already complete"), "{first}");
    std::fs::remove_file(tmp.path().join("cache/shard-00001.safetensors")).unwrap();
    let second = assert_ok(&herd_in(tmp.path(), &args));
    assert!(
        second.contains("(1 shards written, 4 already complete)"),
        "{second}"
    );
    let run = [
        "distill",
        "--cache",
        &cache,
        "--data",
        &data,
        "--out",
        "run",
        "--steps",
        "2",
        "--seq-len",
        "256",
        "--batch-tokens",
        "512",
        "--quiet",
    ];
    assert_ok(&herd_in(tmp.path(), &run));
    assert!(tmp.path().join("run/model.safetensors").is_file());

    // A cache of another temperature, a truncated shard: clear errors.
    let other = [
        "distill",
        "--cache",
        &cache,
        "--data",
        &data,
        "--out",
        "run2",
        "--steps",
        "1",
        "--seq-len",
        "256",
        "--temperature",
        "2",
        "--quiet",
    ];
    assert_fails_with(&herd_in(tmp.path(), &other), "made with temperature");
    let shard = tmp.path().join("cache/shard-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 100]).unwrap();
    let run3 = [
        "distill",
        "--cache",
        &cache,
        "--data",
        &data,
        "--out",
        "run3",
        "--steps",
        "1",
        "--seq-len",
        "256",
        "--quiet",
    ];
    assert_fails_with(
        &herd_in(tmp.path(), &run3),
        "shard-00002.safetensors: not a usable teacher cache",
    );
}

#[test]
fn mismatched_tokenizers_and_empty_data_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tiny = s(&root().join("tests/fixtures/models/llama31-tiny"));
    let teacher = s(&root().join("models/teacher"));
    let data = s(&root().join("tests/fixtures/train/chat.jsonl"));
    let pair = [
        "distill",
        "--teacher",
        &tiny,
        "--student",
        &teacher,
        "--data",
        &data,
        "--out",
        "x",
        "--steps",
        "1",
        "--quiet",
    ];
    assert_fails_with(&herd_in(tmp.path(), &pair), "do not share a vocabulary");
    // A report of no test cases is refused before anything trains.
    let no_cases = herd_in(tmp.path(), &["distill", "--report-cases", "0"]);
    assert_fails_with(&no_cases, "--report-cases must be at least 1");
    assert!(!tmp.path().join("distilled").exists());
    // A cache from another teacher's tokenizer.
    let cache = s(&tmp.path().join("tiny-cache"));
    assert_ok(&herd_in(
        tmp.path(),
        &[
            "teacher-cache",
            "--teacher",
            &tiny,
            "--data",
            &data,
            "-o",
            &cache,
            "-k",
            "4",
            "--seq-len",
            "256",
        ],
    ));
    let cached = [
        "distill",
        "--cache",
        &cache,
        "--student",
        &teacher,
        "--data",
        &data,
        "--out",
        "y",
        "--steps",
        "1",
        "--seq-len",
        "256",
        "--quiet",
    ];
    assert_fails_with(&herd_in(tmp.path(), &cached), "made with tokenizer");
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let run = [
        "distill",
        "--data",
        &s(&empty),
        "--out",
        "z",
        "--steps",
        "1",
        "--quiet",
    ];
    assert_fails_with(&herd_in(tmp.path(), &run), "no training examples");
    assert_fails_with(
        &herd_in(
            tmp.path(),
            &["teacher-cache", "--data", &s(&empty), "-o", "c"],
        ),
        "no training examples",
    );
}
