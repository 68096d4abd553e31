//! Sharded models in one process: tensor-parallel ranks as threads joined by
//! an in-memory all-reduce, pipeline stages chained by hand. Both must give
//! the whole model's logits (the MPI version of these checks runs under
//! `mpirun` in tools/test_parallel.sh).

mod common;

use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use common::model_dir;
use herd_model::{
    logits_row, Checkpoint, Llama, Logits, ModelError, NoTensorParallel, SeqInput, Shard,
    StageInput, StageOutput, TensorParallel,
};

/// Ranks as threads: every rank deposits its buffer, waits for the others,
/// combines all of them, and waits again before the slots are reused.
struct Threads {
    rank: usize,
    slots: Arc<Mutex<Vec<Vec<f32>>>>,
    barrier: Arc<Barrier>,
}

impl Threads {
    fn exchange(&self, local: &[f32]) -> Vec<Vec<f32>> {
        self.slots.lock().unwrap()[self.rank] = local.to_vec();
        self.barrier.wait();
        let all = self.slots.lock().unwrap().clone();
        self.barrier.wait();
        all
    }
}

impl TensorParallel for Threads {
    fn all_reduce_sum(&self, buf: &mut [f32]) -> herd_model::Result<()> {
        let all = self.exchange(buf);
        buf.fill(0.0);
        for part in all {
            buf.iter_mut().zip(part).for_each(|(b, x)| *b += x);
        }
        Ok(())
    }

    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> herd_model::Result<()> {
        out.copy_from_slice(&self.exchange(local).concat());
        Ok(())
    }
}

fn shard(name: &str, shard: Shard) -> herd_model::Result<Llama> {
    let c = Checkpoint::open(&model_dir(name))?;
    Llama::from_shard(c.config, c.generation, &c.tensors, c.rope, shard)
}

fn prompt(vocab: usize) -> Vec<u32> {
    (0..13).map(|i| ((i * 37 + 5) % vocab) as u32).collect()
}

/// Prefill logits of every position, then one decode step's, as plain rows.
fn run_stage(model: &Llama, tp: &dyn TensorParallel) -> Vec<Vec<f32>> {
    let tokens = prompt(model.config().vocab_size);
    let mut cache = model.new_cache();
    let mut rows = Vec::new();
    for (step, which) in [(&tokens[..], Logits::All), (&tokens[..1], Logits::Last)] {
        let mut batch = [SeqInput {
            tokens: step,
            cache: &mut cache,
        }];
        let out = model
            .forward_stage(&mut batch, which, StageInput::Tokens, tp)
            .unwrap();
        let StageOutput::Logits(logits) = out else {
            panic!("a whole-pipeline shard returned hidden states")
        };
        for r in 0..logits[0].dim(0).unwrap() {
            rows.push(logits_row(&logits[0], r).unwrap());
        }
    }
    rows
}

/// Within 1e-5, relative to the largest logit when that exceeds 1 (a split
/// dot product only reorders f32 additions).
fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().flatten().fold(1f32, |m, x| m.max(x.abs()));
    for (x, y) in a.iter().zip(b) {
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-5 * scale,
            "max |logit difference| {worst}, scale {scale}"
        );
    }
}

#[test]
fn tensor_parallel_threads_match_the_whole_model() {
    for name in ["llama31-tiny", "llama32-tied", "llama31-bf16"] {
        let whole = shard(
            name,
            Shard::whole(&Checkpoint::open(&model_dir(name)).unwrap().config),
        )
        .unwrap();
        let expected = run_stage(&whole, &NoTensorParallel);
        let layers = 0..whole.config().num_hidden_layers;
        let tp = 2;
        let slots = Arc::new(Mutex::new(vec![Vec::new(); tp]));
        let barrier = Arc::new(Barrier::new(tp));
        let ranks: Vec<_> = (0..tp)
            .map(|rank| {
                let (slots, barrier, layers) = (slots.clone(), barrier.clone(), layers.clone());
                let name = name.to_string();
                thread::spawn(move || {
                    let model = shard(
                        &name,
                        Shard {
                            tp_rank: rank,
                            tp_size: tp,
                            layers,
                        },
                    )
                    .unwrap();
                    let held = model.shard_bytes();
                    let rows = run_stage(
                        &model,
                        &Threads {
                            rank,
                            slots,
                            barrier,
                        },
                    );
                    (rows, held)
                })
            })
            .collect();
        for rank in ranks {
            let (rows, held) = rank.join().unwrap();
            assert_close(&rows, &expected);
            assert!(
                held < whole.shard_bytes() * 3 / 4,
                "{name}: a rank holds {held} bytes"
            );
        }
    }
}

#[test]
fn pipeline_stages_chained_match_the_whole_model() {
    let name = "llama32-tied";
    let whole = Llama::load(&model_dir(name)).unwrap();
    let tokens = prompt(whole.config().vocab_size);
    let expected = whole
        .forward_one(&tokens, &mut whole.new_cache(), Logits::All)
        .unwrap();
    let stages: Vec<Llama> = [0..1, 1..2, 2..3]
        .into_iter()
        .map(|layers| {
            shard(
                name,
                Shard {
                    tp_rank: 0,
                    tp_size: 1,
                    layers,
                },
            )
            .unwrap()
        })
        .collect();
    let mut hidden: Option<Vec<f32>> = None;
    for stage in &stages {
        let mut cache = stage.new_cache();
        let input = match &hidden {
            None => StageInput::Tokens,
            Some(h) => StageInput::Hidden(h),
        };
        let mut batch = [SeqInput {
            tokens: &tokens,
            cache: &mut cache,
        }];
        match stage
            .forward_stage(&mut batch, Logits::All, input, &NoTensorParallel)
            .unwrap()
        {
            StageOutput::Hidden(h) => hidden = Some(h),
            StageOutput::Logits(logits) => {
                let got: Vec<Vec<f32>> = (0..tokens.len())
                    .map(|r| logits_row(&logits[0], r).unwrap())
                    .collect();
                let want: Vec<Vec<f32>> = (0..tokens.len())
                    .map(|r| logits_row(&expected, r).unwrap())
                    .collect();
                assert_close(&got, &want);
                return;
            }
        }
    }
    panic!("the last stage produced no logits");
}

#[test]
fn impossible_shards_are_clear_errors() {
    let whole = |layers| Shard {
        tp_rank: 0,
        tp_size: 3,
        layers,
    };
    // 2 KV heads cannot be split three ways.
    let err = shard("llama31-tiny", whole(0..2)).unwrap_err();
    assert!(matches!(err, ModelError::InvalidShard(_)), "{err}");
    assert!(
        err.to_string()
            .contains("TP 3 does not divide the model's 2 KV heads"),
        "{err}"
    );
    // Layers past the end.
    let err = shard(
        "llama31-tiny",
        Shard {
            tp_rank: 0,
            tp_size: 1,
            layers: 1..3,
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("layers 1..3 of a model with 2 layers"),
        "{err}"
    );
    // A shard cannot run the single-process forward pass.
    let half = shard(
        "llama31-tiny",
        Shard {
            tp_rank: 1,
            tp_size: 2,
            layers: 0..2,
        },
    )
    .unwrap();
    let err = half
        .forward_one(&[1, 2], &mut half.new_cache(), Logits::Last)
        .unwrap_err();
    assert!(
        err.to_string().contains("run it with forward_stage"),
        "{err}"
    );
    // A middle stage needs hidden states, not tokens.
    let middle = shard(
        "llama32-tied",
        Shard {
            tp_rank: 0,
            tp_size: 1,
            layers: 1..2,
        },
    )
    .unwrap();
    let mut cache = middle.new_cache();
    let mut batch = [SeqInput {
        tokens: &[1, 2],
        cache: &mut cache,
    }];
    let err = middle
        .forward_stage(
            &mut batch,
            Logits::Last,
            StageInput::Tokens,
            &NoTensorParallel,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("needs the previous stage's hidden states"),
        "{err}"
    );
}
