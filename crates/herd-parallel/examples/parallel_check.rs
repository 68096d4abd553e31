//! Proves a TP × PP run equals the single-process one, across real
//! processes: `mpirun -np N parallel_check MODEL_DIR TP PP`.
//!
//! Every rank loads only its shard; rank 0 also loads the whole model as the
//! reference. Rank 0 then drives the parallel model through the same leader
//! protocol `herd generate --tp --pp` uses, and checks that (1) the logits of
//! every prompt position are within 1e-5 of the single-process ones (relative
//! to the largest logit when that exceeds 1), (2) so are those of a paged
//! batch of two sequences over two steps (the serving engine's path), and
//! (3) greedy generation gives the same tokens. Exits non-zero (on rank 0, which
//! then fails the job) on any difference; `tools/test-all.sh` runs it for
//! TP=2, PP=2 and TP=2 × PP=2.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use candle_core::Tensor;
use herd_dist::{Communicator, Mpi};
use herd_engine::{generate, GenerateRequest, Sampling, SamplingParams};
use herd_model::{logits_row, Checkpoint, Llama, Logits, PagedSeq};
use herd_parallel::{load_shard, Layout, Leader, ParallelError, ParallelLlama};

const TOLERANCE: f32 = 1e-5;
const NEW_TOKENS: usize = 24;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, tp, pp] = args.as_slice() else {
        eprintln!("usage: parallel_check MODEL_DIR TP PP");
        return ExitCode::FAILURE;
    };
    let (Ok(tp), Ok(pp)) = (tp.parse(), pp.parse()) else {
        eprintln!("TP and PP must be numbers");
        return ExitCode::FAILURE;
    };
    let world = match Mpi::init() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rank = world.rank();
    match run(Path::new(dir), Layout { tp, pp }, Box::new(world)) {
        Ok(report) => {
            if !report.is_empty() {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rank {rank}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path, layout: Layout, world: Box<dyn Communicator>) -> Result<String, String> {
    let err = |e: ParallelError| e.to_string();
    let opened = Checkpoint::open(dir).map_err(ParallelError::from);
    let shard = load_shard(opened, &*world, layout).map_err(err)?;
    let (held, total) = (shard.shard_bytes(), shard.weight_bytes());
    let par = ParallelLlama::new(shard, world, layout, Duration::from_secs(60)).map_err(err)?;
    let rank = par.world().rank();
    eprintln!(
        "rank {rank}: layers {:?}, TP rank {}, {held} of {total} weight bytes",
        par.model().shard().layers,
        par.model().shard().tp_rank
    );
    if rank != 0 {
        return par.follow().map(|()| String::new()).map_err(err);
    }
    let leader = par.into_leader().map_err(err)?;
    let outcome = compare(&leader, dir);
    // Release the followers whatever the outcome, so every rank exits.
    leader.stop().map_err(err)?;
    outcome
}

/// Rank 0: the parallel model against the whole one.
fn compare(leader: &Leader, dir: &Path) -> Result<String, String> {
    let reference = Llama::load(dir).map_err(|e| e.to_string())?;
    let vocab = reference.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..19).map(|i| (i * 37 + 5) % vocab).collect();
    // All-position logits of the prompt.
    let expected = reference
        .forward_one(&prompt, &mut reference.new_cache(), Logits::All)
        .map_err(|e| e.to_string())?;
    let got = leader
        .forward(&prompt, &mut leader.new_cache(), Logits::All)
        .map_err(|e| e.to_string())?;
    let (worst, scale) = within_tolerance(&[expected], &[got], "prompt logits")?;
    paged(leader, &reference, &prompt)?;
    // Greedy generation: prefill, then one token per step through the KV caches.
    let request = GenerateRequest {
        prompt,
        max_new_tokens: NEW_TOKENS,
        sampling: SamplingParams {
            sampling: Sampling::Greedy,
            repetition_penalty: 1.0,
            seed: 0,
        },
        stop_ids: Vec::new(),
    };
    let single = generate(&reference, &mut reference.new_cache(), &request, |_| {
        std::ops::ControlFlow::Continue(())
    })
    .map_err(|e| e.to_string())?;
    let parallel = generate(leader, &mut leader.new_cache(), &request, |_| {
        std::ops::ControlFlow::Continue(())
    })
    .map_err(|e| e.to_string())?;
    if single.tokens != parallel.tokens {
        return Err(format!(
            "greedy tokens differ: single process {:?}, parallel {:?}",
            single.tokens, parallel.tokens
        ));
    }
    Ok(format!(
        "ok: max |logit difference| {worst:.1e} (largest |logit| {scale:.2}) over {} positions; \
         {} greedy tokens identical",
        request.prompt.len(),
        parallel.tokens.len()
    ))
}

/// Two sequences in one paged batch, prefill then one decode step, through
/// the leader's pool and the whole model's: the same logits.
fn paged(leader: &Leader, reference: &Llama, prompt: &[u32]) -> Result<(), String> {
    let text = |e: ParallelError| e.to_string();
    let (block_size, blocks) = (4, 8);
    let mut pool = leader.new_pool(block_size, blocks).map_err(text)?;
    let mut whole = reference
        .new_pool(block_size, blocks)
        .map_err(|e| e.to_string())?;
    let (a, b) = (&prompt[..9], &prompt[9..14]);
    let steps: [[(&[u32], usize, Logits); 2]; 2] = [
        [(a, 0, Logits::All), (b, 0, Logits::Last)],
        [
            (&prompt[9..10], 9, Logits::Last),
            (&prompt[14..15], 5, Logits::All),
        ],
    ];
    let tables: [&[u32]; 2] = [&[0, 1, 2], &[5, 3]];
    for (i, step) in steps.iter().enumerate() {
        let batch: Vec<PagedSeq<'_>> = step
            .iter()
            .zip(tables)
            .map(|(&(tokens, past, logits), blocks)| PagedSeq {
                tokens,
                past,
                blocks,
                logits,
            })
            .collect();
        let expected = reference
            .forward_paged(&mut whole, &batch)
            .map_err(|e| e.to_string())?;
        let got = leader.forward_paged(&mut pool, &batch).map_err(text)?;
        within_tolerance(&expected, &got, &format!("paged step {i}"))?;
    }
    Ok(())
}

/// The largest difference between matching logit rows and the largest
/// |logit|; an error beyond the tolerance. Splitting a dot product over
/// ranks changes only the order of f32 additions: the difference scales
/// with the logits' magnitude.
fn within_tolerance(expected: &[Tensor], got: &[Tensor], what: &str) -> Result<(f32, f32), String> {
    let (mut worst, mut scale) = (0f32, 1f32);
    if expected.len() != got.len() {
        return Err(format!(
            "{what}: {} sequences, expected {}",
            got.len(),
            expected.len()
        ));
    }
    for (e, g) in expected.iter().zip(got) {
        if e.dims() != g.dims() {
            return Err(format!(
                "{what}: logits {:?}, expected {:?}",
                g.dims(),
                e.dims()
            ));
        }
        for row in 0..e.dim(0).map_err(|e| e.to_string())? {
            let (a, b) = (
                logits_row(e, row).map_err(|e| e.to_string())?,
                logits_row(g, row).map_err(|e| e.to_string())?,
            );
            worst = a
                .iter()
                .zip(&b)
                .fold(worst, |m, (x, y)| m.max((x - y).abs()));
            scale = a.iter().fold(scale, |m, x| m.max(x.abs()));
        }
    }
    if worst > TOLERANCE * scale || worst.is_nan() {
        return Err(format!(
            "{what}: max |logit difference| {worst:e} exceeds {TOLERANCE:e} × the largest |logit| {scale}"
        ));
    }
    Ok((worst, scale))
}
