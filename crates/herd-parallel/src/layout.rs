//! Where a rank sits in a TP × PP layout.

use herd_dist::stage_ranges;
use herd_model::{Config, ModelError, Shard};

use crate::error::{ParallelError, Result};

/// A tensor × pipeline parallel layout: `tp` ranks per stage, `pp` stages,
/// ranks numbered stage-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Ranks per stage (tensor parallelism).
    pub tp: usize,
    /// Pipeline stages.
    pub pp: usize,
}

impl Layout {
    /// Number of ranks the layout needs.
    pub fn ranks(&self) -> usize {
        self.tp * self.pp
    }

    /// Checks the layout against the job size (before the model is known).
    pub fn check_job(&self, size: usize) -> Result<()> {
        if self.tp == 0 || self.pp == 0 {
            return Err(ParallelError::Layout(
                "--tp and --pp must be at least 1".into(),
            ));
        }
        if self.ranks() != size {
            return Err(ParallelError::Layout(format!(
                "TP {} × PP {} needs {} ranks, the job has {size} (mpirun -np {})",
                self.tp,
                self.pp,
                self.ranks(),
                self.ranks()
            )));
        }
        Ok(())
    }

    /// The pipeline stage of `rank`.
    pub fn stage(&self, rank: usize) -> usize {
        rank / self.tp
    }

    /// The position of `rank` within its stage's TP group.
    pub fn tp_rank(&self, rank: usize) -> usize {
        rank % self.tp
    }

    /// The rank at `tp_rank` of `stage`.
    pub fn rank_of(&self, stage: usize, tp_rank: usize) -> usize {
        stage * self.tp + tp_rank
    }

    /// The part of `cfg` that `rank` holds; a clear error when the model
    /// cannot be split this way.
    pub fn shard(&self, cfg: &Config, rank: usize) -> Result<Shard> {
        if self.pp > cfg.num_hidden_layers {
            return Err(ParallelError::Layout(format!(
                "PP {} is more stages than the model's {} layers",
                self.pp, cfg.num_hidden_layers
            )));
        }
        let layers = stage_ranges(cfg.num_hidden_layers, self.pp).swap_remove(self.stage(rank));
        let shard = Shard {
            tp_rank: self.tp_rank(rank),
            tp_size: self.tp,
            layers,
        };
        shard.check(cfg).map_err(|e| match e {
            ModelError::InvalidShard(why) => ParallelError::Layout(why),
            other => other.into(),
        })?;
        Ok(shard)
    }
}
