//! The paged KV path against the contiguous one: the same sequences, packed
//! into one batch whose KV lives in scattered blocks of a shared pool and is
//! prefilled in uneven chunks, give the logits of the same batches run with
//! contiguous caches (the same arithmetic, so within 1e-5; in fact equal), and
//! those of each sequence run alone (within the 1e-4 that batching's different
//! matrix blocking allows, as in parity.rs).

mod common;

use common::{flat, max_abs_diff, model_dir, Reference};
use herd_model::{KvCache, KvPool, Llama, Logits, PagedSeq, SeqInput};

/// Paged vs contiguous with the same batches.
const TOL: f32 = 1e-5;
/// Batched vs alone: the matrix kernels block differently.
const BATCH_TOL: f32 = 1e-4;

/// A sequence being fed through the pool: its tokens, how many are stored,
/// and its block table.
struct Paged {
    tokens: Vec<u32>,
    past: usize,
    blocks: Vec<u32>,
}

#[test]
fn paged_and_contiguous_kv_give_the_same_logits() {
    for name in ["llama32-tied", "llama31-tiny"] {
        let model = Llama::load(&model_dir(name)).unwrap();
        let reference = Reference::load(name);
        let block_size = 4;
        let max_len = reference.prompts.iter().map(Vec::len).max().unwrap() + 8;
        let per_seq = max_len.div_ceil(block_size);
        let num_blocks = per_seq * reference.prompts.len();
        let mut pool = KvPool::new(model.config(), block_size, num_blocks).unwrap();
        // Interleave the sequences' blocks in reverse order, so no table is contiguous.
        let mut seqs: Vec<Paged> = reference
            .prompts
            .iter()
            .enumerate()
            .map(|(i, p)| Paged {
                tokens: p.clone(),
                past: 0,
                blocks: (0..per_seq)
                    .map(|b| (num_blocks - 1 - (b * reference.prompts.len() + i)) as u32)
                    .collect(),
            })
            .collect();
        // Prefill all sequences together in chunks of different sizes per sequence.
        let mut paged_logits: Vec<Vec<f32>> = vec![Vec::new(); seqs.len()];
        let mut caches: Vec<KvCache> = seqs.iter().map(|_| model.new_cache()).collect();
        let mut step = 0;
        while seqs.iter().any(|s| s.past < s.tokens.len()) {
            step += 1;
            let active: Vec<usize> = (0..seqs.len())
                .filter(|&i| seqs[i].past < seqs[i].tokens.len())
                .collect();
            let chunk = |i: usize| (5 + 3 * i + step) % 13 + 1;
            let batch: Vec<PagedSeq> = active
                .iter()
                .map(|&i| {
                    let s = &seqs[i];
                    let end = (s.past + chunk(i)).min(s.tokens.len());
                    PagedSeq {
                        tokens: &s.tokens[s.past..end],
                        past: s.past,
                        blocks: &s.blocks,
                        logits: Logits::All,
                    }
                })
                .collect();
            let out = model.forward_paged(&mut pool, &batch).unwrap();
            let contiguous = contiguous_step(&model, &batch, &active, &mut caches, Logits::All);
            let lens: Vec<usize> = batch.iter().map(|b| b.tokens.len()).collect();
            for (((&i, logits), want), n) in active.iter().zip(&out).zip(&contiguous).zip(lens) {
                let diff = max_abs_diff(&flat(logits), &flat(want));
                assert!(diff < TOL, "{name} sequence {i} chunk {step}: {diff}");
                paged_logits[i].extend(flat(logits));
                seqs[i].past += n;
            }
        }
        for (i, prompt) in reference.prompts.iter().enumerate() {
            let alone = flat(
                &model
                    .forward_one(prompt, &mut model.new_cache(), Logits::All)
                    .unwrap(),
            );
            let diff = max_abs_diff(&paged_logits[i], &alone);
            assert!(
                diff < BATCH_TOL,
                "{name} prompt {i}: batched vs alone {diff}"
            );
        }
        // Then decode a few greedy tokens for all sequences in one batch each step.
        let all: Vec<usize> = (0..seqs.len()).collect();
        for step in 0..3 {
            for (s, g) in seqs.iter_mut().zip(&reference.greedy) {
                s.tokens.push(g[step]);
            }
            let batch: Vec<PagedSeq> = seqs
                .iter()
                .map(|s| PagedSeq {
                    tokens: &s.tokens[s.past..],
                    past: s.past,
                    blocks: &s.blocks,
                    logits: Logits::Last,
                })
                .collect();
            let out = model.forward_paged(&mut pool, &batch).unwrap();
            let want = contiguous_step(&model, &batch, &all, &mut caches, Logits::Last);
            for (i, s) in seqs.iter_mut().enumerate() {
                let diff = max_abs_diff(&flat(&out[i]), &flat(&want[i]));
                assert!(diff < TOL, "{name} sequence {i} decode step {step}: {diff}");
                s.past += 1;
            }
        }
    }
}

/// The same step as `batch` through the contiguous path, with `caches[active[i]]`.
fn contiguous_step(
    model: &Llama,
    batch: &[PagedSeq],
    active: &[usize],
    caches: &mut [KvCache],
    which: Logits,
) -> Vec<candle_core::Tensor> {
    let mut caches: Vec<Option<&mut KvCache>> = caches.iter_mut().map(Some).collect();
    let mut inputs: Vec<SeqInput> = batch
        .iter()
        .zip(active)
        .map(|(b, &i)| SeqInput {
            tokens: b.tokens,
            cache: caches[i].take().unwrap(),
        })
        .collect();
    model.forward(&mut inputs, which).unwrap()
}

#[test]
fn last_and_all_logits_can_be_mixed_in_one_paged_batch() {
    let model = Llama::load(&model_dir("llama32-tied")).unwrap();
    let prompts = Reference::load("llama32-tied").prompts;
    let mut pool = KvPool::new(model.config(), 16, 64).unwrap();
    let tables: Vec<Vec<u32>> = (0..2).map(|i| (i * 32..i * 32 + 32).collect()).collect();
    let batch = [
        PagedSeq {
            tokens: &prompts[0],
            past: 0,
            blocks: &tables[0],
            logits: Logits::Last,
        },
        PagedSeq {
            tokens: &prompts[1],
            past: 0,
            blocks: &tables[1],
            logits: Logits::All,
        },
    ];
    let out = model.forward_paged(&mut pool, &batch).unwrap();
    assert_eq!(out[0].dims(), &[1, model.config().vocab_size]);
    assert_eq!(
        out[1].dims(),
        &[prompts[1].len(), model.config().vocab_size]
    );
    let last = model
        .forward_one(&prompts[0], &mut model.new_cache(), Logits::Last)
        .unwrap();
    assert!(max_abs_diff(&flat(&out[0]), &flat(&last)) < BATCH_TOL);
}

#[test]
fn bad_block_tables_are_errors() {
    let model = Llama::load(&model_dir("llama32-tied")).unwrap();
    let mut pool = KvPool::new(model.config(), 4, 8).unwrap();
    let tokens = [1u32, 2, 3, 4, 5, 6];
    let seq = |blocks: &'static [u32]| PagedSeq {
        tokens: &tokens,
        past: 0,
        blocks,
        logits: Logits::Last,
    };
    // Too short for 6 positions, a block outside the pool, a block written twice.
    assert!(model.forward_paged(&mut pool, &[seq(&[0])]).is_err());
    assert!(model.forward_paged(&mut pool, &[seq(&[0, 8])]).is_err());
    assert!(model
        .forward_paged(&mut pool, &[seq(&[0, 1]), seq(&[2, 1])])
        .is_err());
    assert!(model.forward_paged(&mut pool, &[]).is_err());
    assert!(KvPool::new(model.config(), 0, 8).is_err());
    assert!(model.forward_paged(&mut pool, &[seq(&[0, 1])]).is_ok());
}
