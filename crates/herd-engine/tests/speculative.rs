//! Speculative decoding against plain decoding: the same greedy tokens (with
//! drafts that agree often, rarely, or never), the target's distribution
//! under sampling, and the same through the serving engine.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use herd_engine::{
    generate, generate_speculative, DraftConfig, EngineConfig, EngineHandle, EngineMetrics, Event,
    GenerateRequest, Generation, Request, Sampling, SamplingParams, Speculator,
};
use herd_model::{logits_row, Checkpoint, FileType, Llama, Logits};

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn fixture(name: &str) -> Arc<Llama> {
    let dir = path("tests/fixtures/models").join(name);
    Arc::new(Llama::load(&dir).expect("fixture model loads"))
}

fn request(prompt: &[u32], max_new_tokens: usize, sampling: SamplingParams) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.to_vec(),
        max_new_tokens,
        sampling,
        stop_ids: vec![],
    }
}

fn plain(model: &Llama, req: &GenerateRequest) -> Generation {
    generate(model, &mut model.new_cache(), req, |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
}

fn speculative(model: &Llama, spec: &mut Speculator, req: &GenerateRequest) -> Generation {
    let mut cache = model.new_cache();
    generate_speculative(model, &mut cache, spec, req, |_| ControlFlow::Continue(())).unwrap()
}

/// Greedy output through every draft equals the target's own, whatever the
/// draft: itself (accepts nearly all), another random model (rejects most).
#[test]
fn greedy_tokens_equal_the_targets_on_fixtures() {
    let target = fixture("llama31-tiny");
    let other = fixture("llama32-tied");
    for (draft, name) in [(target.clone(), "itself"), (other, "llama32-tied")] {
        for gamma in [1, 3, 5] {
            let mut spec = Speculator::new(&target, draft.clone(), gamma).unwrap();
            for prompt in [vec![1u32, 17, 300, 42, 9], vec![5], vec![200; 12]] {
                let req = request(&prompt, 40, SamplingParams::default());
                let want = plain(&target, &req);
                let got = speculative(&target, &mut spec, &req);
                assert_eq!(got.tokens, want.tokens, "draft {name}, γ {gamma}");
                assert_eq!(got.finish, want.finish, "draft {name}, γ {gamma}");
            }
            let stats = spec.stats();
            assert!(stats.drafted > 0 && stats.rounds > 0);
            if name == "itself" {
                assert!(stats.acceptance_rate() > 0.9, "{stats:?}");
            }
        }
    }
}

/// A stop token and the token budget end speculative generation exactly where
/// they end plain generation, and a reused cache (a chat's next turn) works.
#[test]
fn stops_budgets_and_reused_caches_agree() {
    let target = fixture("llama31-tiny");
    let mut spec = Speculator::new(&target, fixture("llama32-tied"), 4).unwrap();
    let prompt = [1u32, 17, 300, 42, 9];
    let reference = plain(&target, &request(&prompt, 30, SamplingParams::default()));
    let mut req = request(&prompt, 30, SamplingParams::default());
    req.stop_ids = vec![reference.tokens[7]];
    let want = plain(&target, &req);
    assert_eq!(speculative(&target, &mut spec, &req).tokens, want.tokens);
    for budget in [0, 1, 2, 6] {
        let req = request(&prompt, budget, SamplingParams::default());
        let got = speculative(&target, &mut spec, &req);
        assert_eq!(got.tokens, plain(&target, &req).tokens, "budget {budget}");
    }
    // A second turn on the same caches: only the new tokens are computed.
    let mut cache = target.new_cache();
    let first = request(&prompt, 10, SamplingParams::default());
    let out = generate_speculative(&target, &mut cache, &mut spec, &first, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let mut next = prompt.to_vec();
    next.extend(&out.tokens);
    next.extend([3, 4, 5]);
    // The cache holds at least the prompt and all generated tokens but the last.
    assert!(cache.len() >= next.len() - 4);
    cache.truncate(next.len() - 4).unwrap();
    let second = request(&next, 10, SamplingParams::default());
    let got = generate_speculative(&target, &mut cache, &mut spec, &second, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(got.prefill_tokens, 4);
    assert_eq!(got.tokens, plain(&target, &second).tokens);
}

/// The embedded teacher, with its own 4-bit quantization as the draft (close
/// but not equal logits): greedy output is the teacher's, most guesses pass.
#[test]
fn greedy_tokens_equal_the_teachers_with_a_quantized_draft() {
    let dir = path("models/teacher");
    let teacher = Llama::load(&dir).unwrap();
    let draft = Checkpoint::open_dir(&dir)
        .unwrap()
        .quantize(FileType::Q4_0)
        .unwrap()
        .into_model()
        .unwrap();
    let mut spec = Speculator::new(&teacher, Arc::new(draft), 4).unwrap();
    // <|begin_of_text|> then ordinary tokens of the teacher's vocabulary.
    let bos = teacher.config().bos_token_id.unwrap_or(0);
    for prompt in [vec![bos, 300, 1200, 45, 77], vec![bos, 2000, 9, 611]] {
        let req = request(&prompt, 48, SamplingParams::default());
        assert_eq!(
            speculative(&teacher, &mut spec, &req).tokens,
            plain(&teacher, &req).tokens
        );
    }
    let stats = spec.stats();
    assert!(stats.acceptance_rate() > 0.5, "{stats:?}");
}

#[test]
fn a_draft_with_another_vocabulary_is_refused() {
    let teacher = Llama::load(&path("models/teacher")).unwrap();
    let err = Speculator::new(&teacher, fixture("llama32-tied"), 4).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
    let target = fixture("llama31-tiny");
    assert!(Speculator::new(&target, target.clone(), 0).is_err());
    let engine = EngineHandle::start_speculative(
        target,
        EngineConfig::default(),
        DraftConfig {
            model: Arc::new(teacher),
            draft_tokens: 4,
        },
    );
    assert!(engine.is_err());
}

/// top-k 3 sampling at temperature 1, with a draft whose distribution is far
/// from the target's: the two tokens the draft guesses in one round (after a
/// first token sampled from the prefill) come out with the target's
/// probabilities p(b | a) p(c | a, b), not the draft's (chi-square test).
#[test]
fn sampled_guesses_follow_the_targets_distribution() {
    let target = fixture("llama31-tiny");
    let draft = fixture("llama32-tied");
    let prompt = vec![1u32, 17, 300, 42, 9];
    let sampling = |seed| SamplingParams {
        sampling: Sampling::Random {
            temperature: 1.0,
            top_k: Some(3),
            top_p: None,
            min_p: None,
        },
        repetition_penalty: 1.0,
        seed,
    };
    // Condition on the most likely first token.
    let mut cache = target.new_cache();
    let first = target
        .forward_one(&prompt, &mut cache, Logits::Last)
        .unwrap();
    let lead = top3(&logits_row(&first, 0).unwrap())[0].0;
    let mut context = prompt.clone();
    context.push(lead);
    let want = pair_distribution(&target, &context);
    let theirs = pair_distribution(&draft, &context);
    // The test has power: following the draft would be far off.
    let distance: f64 = want
        .iter()
        .map(|(k, p)| (p - theirs.iter().find(|(j, _)| j == k).map_or(0.0, |x| x.1)).abs())
        .sum::<f64>()
        / 2.0;
    assert!(distance > 0.3, "total variation draft/target {distance}");
    // Round one drafts two tokens (budget 4 = first + 2 guesses + bonus).
    let mut spec = Speculator::new(&target, draft, 2).unwrap();
    let mut counts = std::collections::HashMap::new();
    for seed in 0..4000 {
        let out = speculative(&target, &mut spec, &request(&prompt, 4, sampling(seed)));
        if out.tokens[0] == lead {
            *counts
                .entry((out.tokens[1], out.tokens[2]))
                .or_insert(0usize) += 1;
        }
    }
    let trials: usize = counts.values().sum();
    assert!(trials > 500, "{trials} runs began with the likeliest token");
    let outside: usize = counts
        .iter()
        .filter(|(k, _)| !want.iter().any(|(j, _)| j == *k))
        .map(|(_, c)| c)
        .sum();
    assert_eq!(outside, 0, "pairs outside the target's top-3 support");
    let chi2: f64 = want
        .iter()
        .map(|(k, p)| {
            let e = p * trials as f64;
            (*counts.get(k).unwrap_or(&0) as f64 - e).powi(2) / e
        })
        .sum();
    // 8 degrees of freedom: 26.1 is the 0.1% critical value.
    assert!(chi2 < 26.1, "chi2 = {chi2} over {trials} runs");
    let stats = spec.stats();
    assert!(
        stats.accepted > 0 && stats.accepted < stats.drafted,
        "{stats:?}"
    );
}

/// Exact probabilities of the next two tokens under top-3 sampling.
fn pair_distribution(model: &Llama, prompt: &[u32]) -> Vec<((u32, u32), f64)> {
    let mut cache = model.new_cache();
    let first = logits_row(
        &model.forward_one(prompt, &mut cache, Logits::Last).unwrap(),
        0,
    );
    let mut out = Vec::new();
    for (a, pa) in top3(&first.unwrap()) {
        let mut c = cache.clone();
        let next = model.forward_one(&[a], &mut c, Logits::Last).unwrap();
        for (b, pb) in top3(&logits_row(&next, 0).unwrap()) {
            out.push(((a, b), pa * pb));
        }
    }
    out
}

fn top3(logits: &[f32]) -> Vec<(u32, f64)> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    ids.truncate(3);
    let max = logits[ids[0] as usize] as f64;
    let w: Vec<f64> = ids
        .iter()
        .map(|&i| (logits[i as usize] as f64 - max).exp())
        .collect();
    let total: f64 = w.iter().sum();
    ids.into_iter().zip(w.iter().map(|x| x / total)).collect()
}

/// The engine with a draft: one request speculates, several batch; both
/// give the plain greedy tokens, and the metrics count the guesses.
#[test]
fn the_engine_with_a_draft_gives_the_greedy_tokens() {
    let target = fixture("llama31-tiny");
    let engine = EngineHandle::start_speculative(
        target.clone(),
        EngineConfig {
            block_size: 4,
            ..EngineConfig::default()
        },
        DraftConfig {
            model: fixture("llama32-tied"),
            draft_tokens: 3,
        },
    )
    .unwrap();
    let prompts = [vec![1u32, 17, 300, 42, 9], vec![7, 8, 9], vec![300; 9]];
    let want: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| plain(&target, &request(p, 24, SamplingParams::default())).tokens)
        .collect();
    let tokens_of = |stream: &mut herd_engine::RequestStream| {
        let mut tokens = Vec::new();
        while let Some(event) = stream.blocking_recv() {
            match event {
                Event::Token { id, logprob } => {
                    assert!(logprob.is_some());
                    tokens.push(id)
                }
                Event::Failed(e) => panic!("{e}"),
                _ => {}
            }
        }
        tokens
    };
    let submit = |p: &Vec<u32>| {
        let mut r = Request::new(p.clone(), 24, vec![]);
        r.logprobs = Some(2);
        engine.submit(r).unwrap()
    };
    // One at a time: speculative steps.
    for (p, w) in prompts.iter().zip(&want) {
        assert_eq!(&tokens_of(&mut submit(p)), w);
    }
    let m = wait_for(&engine, |m| m.running == 0);
    assert!(m.speculative_drafted_total > 0, "{m:?}");
    assert!(m.speculative_accepted_total < m.speculative_drafted_total);
    // All at once: batched steps while several run, speculation once one is left.
    let mut streams: Vec<_> = prompts.iter().map(submit).collect();
    for (s, w) in streams.iter_mut().zip(&want) {
        assert_eq!(&tokens_of(s), w);
    }
    assert_eq!(wait_for(&engine, |m| m.running == 0).kv_blocks_used, 0);
}

fn wait_for(engine: &EngineHandle, done: impl Fn(&EngineMetrics) -> bool) -> EngineMetrics {
    let start = std::time::Instant::now();
    loop {
        let m = engine.metrics();
        if done(&m) {
            return m;
        }
        assert!(start.elapsed().as_secs() < 30, "metrics stuck at {m:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
