//! Running a sharded model: one forward step across all ranks, and the
//! leader/follower protocol that lets rank 0 drive generation.

use std::cell::Cell;
use std::time::Duration;

use candle_core::{Device, Tensor};
use herd_dist::{Communicator, Watchdog};
use herd_engine::{Decoder, PagedModel};
use herd_model::{
    Config, KvCache, KvPool, Llama, Logits, ModelError, PagedSeq, SeqInput, StageInput,
    StageOutput, TensorParallel,
};

use crate::command::{Command, PagedStep};
use crate::error::{ParallelError, Result};
use crate::layout::Layout;

/// One rank of a parallel model: its shard, the job's communicator, its
/// stage's tensor-parallel group, and a watchdog against silent peers.
pub struct ParallelLlama {
    model: Llama,
    group: Box<dyn Communicator>,
    world: Box<dyn Communicator>,
    layout: Layout,
    watchdog: Watchdog,
}

/// A stage's TP group as the model's collectives.
struct Group<'a>(&'a dyn Communicator);

impl TensorParallel for Group<'_> {
    fn all_reduce_sum(&self, buf: &mut [f32]) -> herd_model::Result<()> {
        self.0
            .all_reduce_sum(buf)
            .map_err(|e| ModelError::Collective(e.to_string()))
    }

    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> herd_model::Result<()> {
        self.0
            .all_gather(local, out)
            .map_err(|e| ModelError::Collective(e.to_string()))
    }
}

impl ParallelLlama {
    /// Wraps this rank's shard (from [`crate::load_shard`]); splits the
    /// stage groups, a collective call. A step that waits longer than
    /// `timeout` on its peers ends this rank with an error.
    pub fn new(
        model: Llama,
        world: Box<dyn Communicator>,
        layout: Layout,
        timeout: Duration,
    ) -> Result<ParallelLlama> {
        layout.check_job(world.size())?;
        let group = world.split(layout.stage(world.rank()))?;
        let watchdog = Watchdog::start(timeout, world.rank());
        Ok(ParallelLlama {
            model,
            group,
            world,
            layout,
            watchdog,
        })
    }

    /// This rank's shard.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// The job's communicator.
    pub fn world(&self) -> &dyn Communicator {
        &*self.world
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// One forward step of one sequence on every rank (each with its own
    /// cache, given the same tokens). Returns the logits on rank 0.
    pub fn step(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        which: Logits,
    ) -> Result<Option<Tensor>> {
        let _armed = self.watchdog.arm("running a forward step");
        let rows = match which {
            Logits::All => tokens.len(),
            Logits::Last => 1,
        };
        let mut batch = [SeqInput { tokens, cache }];
        let logits = self.stage(tokens.len(), |input, tp| {
            self.model.forward_stage(&mut batch, which, input, tp)
        })?;
        Ok(self.deliver(&[rows], logits)?.and_then(|mut l| l.pop()))
    }

    /// One packed batch whose KV lives in `pool` (made by this shard's
    /// `new_pool`; every rank is given the same block tables). Returns the
    /// per-sequence logits on rank 0.
    ///
    /// With several stages the batch is cut into up to `pp` micro-batches of
    /// whole sequences that flow through the stages one after the other, so
    /// stage 0 computes the second while stage 1 computes the first. Hidden
    /// states only ever move forward during the step and the logits go back
    /// to rank 0 at its end, so blocking sends cannot wait on each other.
    pub fn step_paged(
        &self,
        pool: &mut KvPool,
        batch: &[PagedSeq<'_>],
    ) -> Result<Option<Vec<Tensor>>> {
        if batch.is_empty() {
            return Err(ParallelError::Protocol("an empty paged batch".into()));
        }
        let _armed = self.watchdog.arm("running a forward step");
        let rows: Vec<usize> = batch
            .iter()
            .map(|s| match s.logits {
                Logits::All => s.tokens.len(),
                Logits::Last => 1,
            })
            .collect();
        let mut last_stage = Some(Vec::with_capacity(batch.len()));
        for part in batch.chunks(micro_batch_len(batch.len(), self.layout.pp)) {
            let tokens = part.iter().map(|s| s.tokens.len()).sum();
            let logits = self.stage(tokens, |input, tp| {
                self.model.forward_paged_stage(pool, part, input, tp)
            })?;
            last_stage = last_stage.zip(logits).map(|(mut all, l)| {
                all.extend(l);
                all
            });
        }
        self.deliver(&rows, last_stage)
    }

    /// This rank's stage of one (micro-)batch of `tokens` new tokens:
    /// receive the previous stage's hidden states, run `forward`, send the
    /// result on. Returns the logits on the last stage.
    fn stage(
        &self,
        tokens: usize,
        forward: impl FnOnce(StageInput<'_>, &dyn TensorParallel) -> herd_model::Result<StageOutput>,
    ) -> Result<Option<Vec<Tensor>>> {
        let (rank, layout) = (self.world.rank(), self.layout);
        let (stage, tp_rank) = (layout.stage(rank), layout.tp_rank(rank));
        let hidden;
        let input = if stage == 0 {
            StageInput::Tokens
        } else {
            let mut buf = vec![0f32; tokens * self.model.config().hidden_size];
            self.world
                .recv(layout.rank_of(stage - 1, tp_rank), &mut buf)?;
            hidden = buf;
            StageInput::Hidden(&hidden)
        };
        match forward(input, &Group(&*self.group))? {
            StageOutput::Hidden(x) => {
                self.world.send(layout.rank_of(stage + 1, tp_rank), &x)?;
                Ok(None)
            }
            StageOutput::Logits(logits) => Ok(Some(logits)),
        }
    }

    /// Brings the last stage's logits (`rows` per sequence) to rank 0.
    fn deliver(&self, rows: &[usize], logits: Option<Vec<Tensor>>) -> Result<Option<Vec<Tensor>>> {
        let (rank, layout) = (self.world.rank(), self.layout);
        let vocab = self.model.config().vocab_size;
        let total = rows.iter().sum::<usize>();
        match logits {
            Some(logits) if rank == 0 => return Ok(Some(logits)),
            Some(logits) => {
                if layout.tp_rank(rank) == 0 {
                    let mut flat = Vec::with_capacity(total * vocab);
                    for l in &logits {
                        flat.extend(l.flatten_all()?.to_vec1::<f32>()?);
                    }
                    self.world.send(0, &flat)?;
                }
                return Ok(None);
            }
            None if rank != 0 => return Ok(None),
            None => {}
        }
        // Rank 0 is not on the last stage: the last stage's first rank sends the logits.
        let mut buf = vec![0f32; total * vocab];
        self.world
            .recv(layout.rank_of(layout.pp - 1, 0), &mut buf)?;
        let all = Tensor::from_vec(buf, (total, vocab), &Device::Cpu)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut start = 0;
        for &n in rows {
            out.push(all.narrow(0, start, n)?);
            start += n;
        }
        Ok(Some(out))
    }

    /// Rank 0's handle for driving the job: herd-engine's `generate` takes
    /// it as a [`Decoder`], its serving engine as a [`PagedModel`].
    pub fn into_leader(self) -> Result<Leader> {
        if self.world.rank() != 0 {
            return Err(ParallelError::Protocol(format!(
                "rank {} cannot lead; rank 0 does",
                self.world.rank()
            )));
        }
        Ok(Leader {
            par: self,
            stopped: Cell::new(false),
        })
    }

    /// Every rank but 0: run the steps rank 0 broadcasts, with a cache and
    /// a KV pool of this rank's own, until rank 0 calls [`Leader::stop`].
    pub fn follow(&self) -> Result<()> {
        let mut cache = self.model.new_cache();
        let mut pool = None;
        loop {
            let command = {
                let _armed = self.watchdog.arm("waiting for rank 0's next step");
                let mut bytes = Vec::new();
                self.world.broadcast_vec(0, &mut bytes)?;
                Command::decode(&bytes)?
            };
            match command {
                Command::Stop => return Ok(()),
                Command::Idle => {}
                Command::Step {
                    past,
                    which,
                    tokens,
                } => {
                    cache.truncate(past)?;
                    self.step(&tokens, &mut cache, which)?;
                }
                Command::Pool {
                    block_size,
                    num_blocks,
                } => pool = Some(self.model.new_pool(block_size, num_blocks)?),
                Command::Paged(seqs) => {
                    let pool = pool.as_mut().ok_or_else(|| {
                        ParallelError::Protocol("a paged step before the KV pool".into())
                    })?;
                    let batch: Vec<PagedSeq<'_>> = seqs.iter().map(PagedStep::as_paged).collect();
                    self.step_paged(pool, &batch)?;
                }
            }
        }
    }

    fn broadcast(&self, command: &Command) -> Result<()> {
        let mut bytes = command.encode();
        self.world.broadcast_vec(0, &mut bytes)?;
        Ok(())
    }
}

/// Rank 0 driving a parallel model: each step tells the followers what to
/// run, runs rank 0's stage and returns the logits. Dropping it releases the
/// followers if [`Leader::stop`] was not called.
pub struct Leader {
    par: ParallelLlama,
    stopped: Cell<bool>,
}

impl Leader {
    /// Releases the followers (they return from `follow`); once.
    pub fn stop(&self) -> Result<()> {
        if self.stopped.replace(true) {
            return Ok(());
        }
        self.par.broadcast(&Command::Stop)
    }

    /// Rank 0's shard.
    pub fn model(&self) -> &Llama {
        &self.par.model
    }

    /// The job's communicator.
    pub fn world(&self) -> &dyn Communicator {
        self.par.world()
    }

    /// A fresh cache for rank 0's shard.
    pub fn new_cache(&self) -> KvCache {
        self.par.model.new_cache()
    }

    /// One step: broadcast it, run it, return rank 0's logits.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, which: Logits) -> Result<Tensor> {
        self.par.broadcast(&Command::Step {
            past: cache.len(),
            which,
            tokens: tokens.to_vec(),
        })?;
        self.par
            .step(tokens, cache, which)?
            .ok_or_else(|| ParallelError::Protocol("rank 0 received no logits".into()))
    }

    /// Allocates a KV pool on every rank (each for its own shard); returns rank 0's.
    pub fn new_pool(&self, block_size: usize, num_blocks: usize) -> Result<KvPool> {
        self.par.broadcast(&Command::Pool {
            block_size,
            num_blocks,
        })?;
        Ok(self.par.model.new_pool(block_size, num_blocks)?)
    }

    /// One packed batch on every rank: broadcast it, run it, return the logits.
    pub fn forward_paged(&self, pool: &mut KvPool, batch: &[PagedSeq<'_>]) -> Result<Vec<Tensor>> {
        let seqs = batch.iter().map(PagedStep::from_paged).collect();
        self.par.broadcast(&Command::Paged(seqs))?;
        self.par
            .step_paged(pool, batch)?
            .ok_or_else(|| ParallelError::Protocol("rank 0 received no logits".into()))
    }

    /// Tells the followers rank 0 is alive but has nothing to run.
    pub fn idle(&self) -> Result<()> {
        self.par.broadcast(&Command::Idle)
    }

    /// Ends every rank after a failure that may have left a collective half done.
    fn fail(&self, e: ParallelError) -> ! {
        eprintln!("error: rank 0: {e}");
        self.par.world.abort(1)
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Nothing to report to: a failed broadcast here means the job is ending anyway.
        let _ = self.stop();
    }
}

impl Decoder for Leader {
    fn config(&self) -> &Config {
        self.par.model.config()
    }

    fn forward_one(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        which: Logits,
    ) -> herd_model::Result<Tensor> {
        self.forward(tokens, cache, which).map_err(|e| match e {
            ParallelError::Model(e) => e,
            other => ModelError::Collective(other.to_string()),
        })
    }
}

/// The serving engine's view: every step is mirrored onto the followers.
/// A failed step aborts the job (the followers may be mid-collective), and
/// while idle rank 0 tells the followers it is alive every quarter of the
/// watchdog's limit, so an idle server does not trip their watchdogs.
impl PagedModel for Leader {
    fn config(&self) -> &Config {
        self.par.model.config()
    }

    fn pool_bytes_per_block(&self, block_size: usize) -> u64 {
        self.par.model.pool_bytes_per_block(block_size)
    }

    fn new_pool(&self, block_size: usize, num_blocks: usize) -> herd_model::Result<KvPool> {
        Leader::new_pool(self, block_size, num_blocks).map_err(|e| self.fail(e))
    }

    fn forward_paged(
        &self,
        pool: &mut KvPool,
        batch: &[PagedSeq<'_>],
    ) -> herd_model::Result<Vec<Tensor>> {
        Leader::forward_paged(self, pool, batch).map_err(|e| self.fail(e))
    }

    fn idle_interval(&self) -> Option<Duration> {
        Some(self.par.watchdog.timeout() / 4)
    }

    fn idle(&self) {
        if let Err(e) = Leader::idle(self) {
            self.fail(e)
        }
    }
}

/// Sequences per micro-batch: the batch cut into `stages` near-equal parts
/// (one part, the whole batch, without pipeline parallelism).
fn micro_batch_len(sequences: usize, stages: usize) -> usize {
    sequences.div_ceil(stages.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::micro_batch_len;

    #[test]
    fn batches_are_cut_into_one_part_per_stage_at_most() {
        let parts = |n: usize, pp: usize| {
            (0..n)
                .collect::<Vec<_>>()
                .chunks(micro_batch_len(n, pp))
                .count()
        };
        assert_eq!(parts(5, 1), 1);
        assert_eq!(parts(5, 2), 2);
        assert_eq!(parts(5, 3), 3);
        assert_eq!(parts(2, 4), 2);
        assert_eq!(parts(1, 2), 1);
        assert_eq!(micro_batch_len(0, 2), 1);
    }
}
