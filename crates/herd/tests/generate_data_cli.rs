//! `herd generate-data` end to end: the embedded teacher in this process,
//! the same teacher behind a real `herd serve` child process (directly,
//! through a flaky-network proxy, and through a server killed and restarted
//! mid-run), an interrupted run resumed, and every refusal (wrong API key,
//! another tokenizer, an empty prompt file, a foreign output file).
//!
//! Local runs are byte-identical across concurrency and interruption;
//! remote runs must be complete (every prompt journaled once, every record
//! trainable) through faults.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{herd_with, stderr, Faults, FaultyProxy, Served};

/// The first `n` shop prompts (`herd data shop --prompts-only`).
fn shop_prompts(dir: &Path, n: usize) -> PathBuf {
    let out = herd_with(
        &[
            "data",
            "shop",
            "--prompts-only",
            "--dialogues",
            "20",
            "-o",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let all = std::fs::read_to_string(dir.join("prompts.jsonl")).unwrap();
    assert!(all.lines().count() >= n, "{} prompts", all.lines().count());
    let path = dir.join(format!("prompts-{n}.jsonl"));
    let lines: Vec<&str> = all.lines().take(n).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

const SAMPLING: [&str; 8] = [
    "--samples",
    "2",
    "--max-tokens",
    "40",
    "--temperature",
    "0.8",
    "--seed",
    "7",
];

fn generate(extra: &[&str], prompts: &Path, output: &Path) -> std::process::Output {
    generate_with(extra, prompts, output, &[])
}

fn generate_with(
    extra: &[&str],
    prompts: &Path,
    output: &Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut args = vec!["generate-data", "--prompts", prompts.to_str().unwrap()];
    args.extend(["-o", output.to_str().unwrap()]);
    args.extend(SAMPLING);
    args.extend(extra);
    herd_with(&args, env)
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every record trainable and no prompt missing or repeated in the journal:
/// nothing lost, nothing duplicated.
fn assert_complete(output: &Path, prompts: usize) {
    for record in records(output) {
        herd_tokenizer::ChatRecord::from_value(&record).expect("trainable record");
    }
    let journal = std::fs::read_to_string(herd_datagen_journal(output)).unwrap();
    let keys: Vec<String> = journal
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].to_string())
        .collect();
    let unique: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!((keys.len(), unique.len()), (prompts, prompts), "{journal}");
}

fn herd_datagen_journal(output: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", output.display()))
}

#[test]
fn local_teacher_writes_trainable_records_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = shop_prompts(dir.path(), 6);
    let a = dir.path().join("a.jsonl");
    let out = generate(&["--concurrency", "6", "--keep-truncated"], &prompts, &a);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = records(&a);
    assert!(!written.is_empty() && written.len() <= 12);
    for record in &written {
        let messages = record["messages"].as_array().unwrap();
        assert_eq!(messages.last().unwrap()["role"], "assistant");
        assert_eq!(record["tools"].as_array().unwrap().len(), 2);
        herd_tokenizer::ChatRecord::from_value(record).expect("trainable record");
    }
    // Sequential generation writes the same file as the full batch.
    let b = dir.path().join("b.jsonl");
    let out = generate(&["--concurrency", "1", "--keep-truncated"], &prompts, &b);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // A finished run resumed asks nothing and changes nothing.
    let out = generate(&["--concurrency", "6", "--keep-truncated"], &prompts, &a);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("6 of 6 prompts already done"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // Other settings on the same file are refused.
    let out = generate(&["--concurrency", "6"], &prompts, &a);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("other settings"), "{}", stderr(&out));
    // Dry run: counts without generating.
    let out = generate(&["--dry-run"], &prompts, &dir.path().join("dry.jsonl"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("6 prompts to do (0 already done) × 2 samples = 12 sequences"),
        "{stdout}"
    );
    assert!(stdout.contains("at most 480 generated tokens"), "{stdout}");
    assert!(!dir.path().join("dry.jsonl").exists());
}

#[test]
fn killed_run_resumes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = shop_prompts(dir.path(), 16);
    let reference = dir.path().join("reference.jsonl");
    let out = generate(&["--concurrency", "4"], &prompts, &reference);
    assert!(out.status.success(), "{}", stderr(&out));
    let resumed = dir.path().join("resumed.jsonl");
    let journal = dir.path().join("resumed.jsonl.journal");
    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args([
            "--threads",
            "2",
            "generate-data",
            "--prompts",
            prompts.to_str().unwrap(),
        ])
        .args(["-o", resumed.to_str().unwrap(), "--concurrency", "1"])
        .args(SAMPLING)
        .env_remove("HERD_MODEL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no chance to clean up) once some prompts are done.
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 3 {
        assert!(start.elapsed().as_secs() < 60, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = std::fs::read_to_string(&journal).unwrap().lines().count() - 1;
    assert!(done < 16, "killed too late to test anything");
    let out = generate(&["--concurrency", "4"], &prompts, &resumed);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("already done"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&resumed).unwrap(),
        std::fs::read(&reference).unwrap()
    );
}

#[test]
fn filters_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = shop_prompts(dir.path(), 4);
    // Every token has log-probability ≤ 0, so a threshold of 0.5 keeps nothing.
    let none = dir.path().join("none.jsonl");
    let out = generate(&["--min-mean-logprob", "0.5"], &prompts, &none);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&none).unwrap(), "");
    // The verifier sees each record and decides.
    let checked = dir.path().join("checked.jsonl");
    let out = generate(
        &["--keep-truncated", "--verifier", "grep -q lookup_order"],
        &prompts,
        &checked,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let all = dir.path().join("all.jsonl");
    let out = generate(&["--keep-truncated"], &prompts, &all);
    assert!(out.status.success(), "{}", stderr(&out));
    let kept = records(&checked);
    let expected: Vec<_> = records(&all)
        .into_iter()
        .filter(|r| r.to_string().contains("lookup_order"))
        .collect();
    assert_eq!(kept, expected);
    // An empty prompt file, and an output file that is not ours.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let out = generate(&[], &empty, &dir.path().join("x.jsonl"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no prompts"), "{}", stderr(&out));
    let mine = dir.path().join("mine.jsonl");
    std::fs::write(&mine, "{\"keep\": 1}\n").unwrap();
    let out = generate(&[], &prompts, &mine);
    assert!(stderr(&out).contains("no journal"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "{\"keep\": 1}\n");
}

#[test]
fn remote_teacher_gives_the_local_samples_through_faults() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = shop_prompts(dir.path(), 6);
    let local = dir.path().join("local.jsonl");
    let out = generate(&[], &prompts, &local);
    assert!(out.status.success(), "{}", stderr(&out));

    let server = Served::start(&["--api-key", "sesame"]);
    let url = server.url();
    let key = ["--teacher-api-key-env", "TEACHER_KEY"];
    // Straight to the server.
    let direct = dir.path().join("direct.jsonl");
    let mut args = vec!["--teacher-url", url.as_str(), "--concurrency", "4"];
    args.extend(key);
    let out = generate_with(&args, &prompts, &direct, &[("TEACHER_KEY", "sesame")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_complete(&direct, 6);

    // Through a network that answers 429 and 500 some of the time.
    let proxy = FaultyProxy::start(server.addr(), Faults::EveryThird);
    let flaky = dir.path().join("flaky.jsonl");
    let proxy_url = proxy.url();
    let mut args = vec![
        "--teacher-url",
        proxy_url.as_str(),
        "--concurrency",
        "4",
        "--max-retries",
        "8",
    ];
    args.extend(key);
    let out = generate_with(&args, &prompts, &flaky, &[("TEACHER_KEY", "sesame")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(proxy.faults() > 0);
    assert!(!stderr(&out).contains("(0 retries)"), "{}", stderr(&out));
    assert_complete(&flaky, 6);

    // A wrong key fails before any work.
    let refused = dir.path().join("refused.jsonl");
    let mut args = vec!["--teacher-url", url.as_str()];
    args.extend(key);
    let out = generate_with(&args, &prompts, &refused, &[("TEACHER_KEY", "wrong")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refused the API key (HTTP 401)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("$TEACHER_KEY"), "{}", stderr(&out));
    assert!(!refused.exists());
}

#[test]
fn teacher_killed_and_restarted_mid_run() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = shop_prompts(dir.path(), 10);
    let local = dir.path().join("local.jsonl");
    let out = generate(&[], &prompts, &local);
    assert!(out.status.success(), "{}", stderr(&out));

    let first = Served::start(&[]);
    let proxy = FaultyProxy::start(first.addr(), Faults::None);
    let output = dir.path().join("remote.jsonl");
    let journal = dir.path().join("remote.jsonl.journal");
    let url = proxy.url();
    let child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args([
            "--threads",
            "2",
            "generate-data",
            "--prompts",
            prompts.to_str().unwrap(),
        ])
        .args([
            "-o",
            output.to_str().unwrap(),
            "--teacher-url",
            url.as_str(),
        ])
        .args(["--concurrency", "1", "--max-retries", "12"])
        .args(SAMPLING)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 3 {
        assert!(start.elapsed().as_secs() < 60, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(first); // the teacher dies mid-run ...
    std::thread::sleep(std::time::Duration::from_millis(500));
    let second = Served::start(&[]); // ... and comes back elsewhere.
    proxy.set_upstream(second.addr());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("(0 retries)"), "{}", stderr(&out));
    assert_complete(&output, 10);
}

#[test]
fn teacher_with_another_tokenizer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = shop_prompts(dir.path(), 2);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let other = root.join("tests/fixtures/models/llama31-tiny");
    let server = Served::start(&["--model", other.to_str().unwrap()]);
    let output = dir.path().join("out.jsonl");
    let url = server.url();
    let student = root.join("models/teacher");
    let out = generate(
        &[
            "--teacher-url",
            &url,
            "--student",
            student.to_str().unwrap(),
        ],
        &prompts,
        &output,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("tokenizer differs"),
        "{}",
        stderr(&out)
    );
    assert!(!output.exists());
    // The same teacher and student pass the check.
    let same = Served::start(&[]);
    let url = same.url();
    let out = generate(
        &[
            "--teacher-url",
            &url,
            "--student",
            student.to_str().unwrap(),
        ],
        &prompts,
        &output,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!records(&output).is_empty());
}

/// herd-remote's scorer (what a teacher cache stores) against `herd serve`
/// equals the local engine's prompt log-probabilities for the same ids.
#[test]
fn remote_scores_match_the_local_engine() {
    use herd_engine::{EngineConfig, EngineHandle, Event, Request};
    use herd_remote::{ChatRequest, RemoteConfig, RemoteTeacher, TokenMap};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/teacher");
    let tokenizer = herd_tokenizer::Tokenizer::from_dir(&root).unwrap();
    let mut ids: Vec<u32> = tokenizer.bos_id().into_iter().collect();
    ids.extend(
        tokenizer
            .encode("Hello, where is my order 1047? Wo ist meine Bestellung?")
            .unwrap(),
    );

    let server = Served::start(&[]);
    let teacher = RemoteTeacher::connect(&RemoteConfig::new(server.url())).unwrap();
    assert_eq!(teacher.model(), "herd-embedded");
    let map = TokenMap::new(&tokenizer).unwrap();
    teacher.verify_tokenizer(&tokenizer, &map).unwrap();
    let scored = teacher.score(&ids, 20, &map).unwrap();
    assert_eq!(scored.k_granted, 20);
    assert_eq!(scored.positions.len(), ids.len() - 1);
    let err = teacher.score(&ids, 64, &map).unwrap_err().to_string();
    assert!(err.contains("HTTP 400") && err.contains("20"), "{err}");

    let model = herd_model::Checkpoint::open(&root)
        .unwrap()
        .into_model()
        .unwrap();
    let engine = EngineHandle::start(std::sync::Arc::new(model), EngineConfig::default()).unwrap();
    let mut request = Request::new(ids.clone(), 1, vec![]);
    request.prompt_logprobs = Some(20);
    let mut stream = engine.submit(request).unwrap();
    let local = loop {
        match stream.blocking_recv() {
            Some(Event::PromptLogprobs(lps)) => break lps,
            Some(_) => {}
            None => panic!("no prompt logprobs"),
        }
    };
    // Alternatives whose text names several local tokens (lone UTF-8
    // bytes) cannot be placed; everything else must be the local top-20.
    for (i, (remote, local)) in scored.positions.iter().zip(&local).enumerate() {
        assert_eq!(remote.id, local.id, "position {i}");
        assert!(
            (remote.logprob - local.logprob).abs() < 1e-5,
            "position {i}"
        );
        assert!(
            remote.top.len() >= 16,
            "position {i}: {} placed",
            remote.top.len()
        );
        for &(id, lp) in &remote.top {
            let &(_, want) = local.top.iter().find(|&&(l, _)| l == id).unwrap();
            assert!((lp - want).abs() < 1e-5, "position {i}, token {id}");
        }
        let local_tail = 1.0 - local.top.iter().map(|&(_, lp)| lp.exp()).sum::<f32>();
        assert!(remote.tail >= local_tail - 1e-5, "position {i}");
    }

    // Chat answers with top_logprobs map back to local ids too.
    let messages = [serde_json::json!({"role": "user", "content": "What are your opening hours?"})];
    let greedy = herd_engine::SamplingParams::default();
    let choices = teacher
        .chat(&ChatRequest {
            messages: &messages,
            tools: &[],
            n: 1,
            max_tokens: 12,
            sampling: &greedy,
            top_logprobs: Some(5),
        })
        .unwrap();
    let tokens = choices[0].logprobs.as_ref().unwrap();
    assert!(!tokens.is_empty());
    for token in tokens {
        let top = map.to_top_k(token, None).unwrap();
        assert!(!top.top.is_empty());
        assert!(top.tail >= 0.0 && top.tail < 1.0);
    }
}
