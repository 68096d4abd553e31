//! Collective loading: every rank opens its own copy of the model, the ranks
//! agree that they all succeeded and all hold the same model, then each
//! builds only its shard. Any failure becomes an error on every rank.

use herd_dist::Communicator;
use herd_model::{Checkpoint, Llama, TensorSource};

use crate::error::{ParallelError, Result};
use crate::layout::Layout;

/// Turns one rank's outcome into the same verdict on every rank: `Ok` only
/// when `what` succeeded everywhere. A rank that failed keeps its own error;
/// the others learn which ranks failed.
pub fn agree<T>(world: &dyn Communicator, what: &'static str, local: Result<T>) -> Result<T> {
    let failed = if local.is_err() { 1.0 } else { 0.0 };
    let mut all = vec![0f32; world.size()];
    world.all_gather(&[failed], &mut all)?;
    let ranks: Vec<usize> = (0..all.len()).filter(|&r| all[r] != 0.0).collect();
    match local {
        Ok(_) if !ranks.is_empty() => Err(ParallelError::PeerFailed { what, ranks }),
        outcome => outcome,
    }
}

/// A digest of what makes two checkpoints the same model, cheap enough to
/// compute on every rank without reading the weights: the resolved
/// configuration, the size of the tensor data, the final norm, the first
/// embedding row and the first row of every layer's `down_proj` (FNV-1a,
/// stable across builds and machines).
pub fn fingerprint(checkpoint: &Checkpoint) -> Result<u64> {
    let cfg = &checkpoint.config;
    let tensors = &checkpoint.tensors;
    let mut hash = Fnv::default();
    hash.write(format!("{cfg:?}").as_bytes());
    hash.write(&tensors.total_bytes().to_le_bytes());
    let norm = tensors.get("model.norm.weight", &[cfg.hidden_size])?;
    hash.floats(&norm.to_f32_vec()?);
    let first_row = |name: &str, shape: [usize; 2]| -> Result<Vec<f32>> {
        let mut row = vec![0f32; shape[1]];
        tensors.get(name, &shape)?.read_f32(0, &mut row)?;
        Ok(row)
    };
    hash.floats(&first_row(
        "model.embed_tokens.weight",
        [cfg.vocab_size, cfg.hidden_size],
    )?);
    for layer in 0..cfg.num_hidden_layers {
        hash.floats(&first_row(
            &format!("model.layers.{layer}.mlp.down_proj.weight"),
            [cfg.hidden_size, cfg.intermediate_size],
        )?);
    }
    Ok(hash.0)
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn floats(&mut self, values: &[f32]) {
        for v in values {
            self.write(&v.to_bits().to_le_bytes());
        }
    }
}

/// Loads this rank's shard of the model every rank opened (`opened` is this
/// rank's attempt). Collective: every rank must call it, and every rank gets
/// an error when any rank failed to open its model, when the ranks' models
/// differ, when the layout does not fit the job or the model, or when any
/// rank failed to load its shard.
pub fn load_shard(
    opened: Result<Checkpoint>,
    world: &dyn Communicator,
    layout: Layout,
) -> Result<Llama> {
    layout.check_job(world.size())?;
    let checkpoint = agree(world, "opening the model", opened)?;
    let mine = agree(world, "reading the model", fingerprint(&checkpoint))?;
    let mut root = mine.to_le_bytes();
    world.broadcast(0, &mut root)?;
    let root = u64::from_le_bytes(root);
    let differs = agree(world, "comparing models", Ok(mine != root))?;
    let mut all = vec![0f32; world.size()];
    world.all_gather(&[if differs { 1.0 } else { 0.0 }], &mut all)?;
    let ranks: Vec<usize> = (0..all.len()).filter(|&r| all[r] != 0.0).collect();
    if !ranks.is_empty() {
        return Err(ParallelError::Mismatch(format!(
            "rank(s) {ranks:?} opened a model other than rank 0's (here, rank {}: {} with \
             fingerprint {mine:016x}; rank 0's is {root:016x}); give every rank the same --model",
            world.rank(),
            checkpoint.path.display()
        )));
    }
    // The models agree, so every rank reaches the same verdict on the layout.
    let shard = layout.shard(&checkpoint.config, world.rank())?;
    let Checkpoint {
        config,
        generation,
        tensors,
        rope,
        ..
    } = checkpoint;
    let model = Llama::from_shard(config, generation, &tensors, rope, shard);
    agree(
        world,
        "loading the shard",
        model.map_err(ParallelError::from),
    )
}
