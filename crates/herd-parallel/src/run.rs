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
        let rows = match which {
            Logits::All => tokens.len(),
            Logits::Last => 1,
        };
        let mut batch = [SeqInput { tokens, cache }];
        let logits = self.stage(tokens.len(), &[rows], |input, tp| {
            self.model.forward_stage(&mut batch, which, input, tp)
        })?;
        Ok(logits.and_then(|mut l| l.pop()))
    }

    /// One packed batch whose KV lives in `pool` (made by this shard's
    /// `new_pool`; every rank is given the same block tables). Returns the
    /// per-sequence logits on rank 0.
    pub fn step_paged(
        &self,
        pool: &mut KvPool,
        batch: &[PagedSeq<'_>],
    ) -> Result<Option<Vec<Tensor>>> {
        let tokens = batch.iter().map(|s| s.tokens.len()).sum();
        let rows: Vec<usize> = batch
            .iter()
            .map(|s| match s.logits {
                Logits::All => s.tokens.len(),
                Logits::Last => 1,
            })
            .collect();
        self.stage(tokens, &rows, |input, tp| {
            self.model.forward_paged_stage(pool, batch, input, tp)
        })
    }

    /// This rank's part of a step over `tokens` new tokens whose sequences
    /// want `rows` logit rows each: receive the previous stage's hidden
    /// states, run `forward`, pass the result on. Rank 0 gets the logits.
    fn stage(
        &self,
        tokens: usize,
        rows: &[usize],
        forward: impl FnOnce(StageInput<'_>, &dyn TensorParallel) -> herd_model::Result<StageOutput>,
    ) -> Result<Option<Vec<Tensor>>> {
        let _armed = self.watchdog.arm("running a forward step");
        let (rank, layout) = (self.world.rank(), self.layout);
        let (stage, tp_rank) = (layout.stage(rank), layout.tp_rank(rank));
        let vocab = self.model.config().vocab_size;
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
            StageOutput::Hidden(x) => self.world.send(layout.rank_of(stage + 1, tp_rank), &x)?,
            StageOutput::Logits(logits) if rank == 0 => return Ok(Some(logits)),
            StageOutput::Logits(logits) => {
                if tp_rank == 0 {
                    let mut flat = Vec::with_capacity(rows.iter().sum::<usize>() * vocab);
                    for l in &logits {
                        flat.extend(l.flatten_all()?.to_vec1::<f32>()?);
                    }
                    self.world.send(0, &flat)?;
                }
            }
        }
        if rank != 0 {
            return Ok(None);
        }
        // Rank 0 is not on the last stage: the last stage's first rank sends the logits.
        let mut buf = vec![0f32; rows.iter().sum::<usize>() * vocab];
        self.world
            .recv(layout.rank_of(layout.pp - 1, 0), &mut buf)?;
        let all = Tensor::from_vec(buf, (rows.iter().sum::<usize>(), vocab), &Device::Cpu)?;
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
