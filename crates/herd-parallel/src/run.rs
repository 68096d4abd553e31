//! Running a sharded model: one forward step across all ranks, and the
//! leader/follower protocol that lets rank 0 drive generation.

use std::time::Duration;

use candle_core::{Device, Tensor};
use herd_dist::{Communicator, Watchdog};
use herd_engine::Decoder;
use herd_model::{
    Config, KvCache, Llama, Logits, ModelError, SeqInput, StageInput, StageOutput, TensorParallel,
};

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

/// What rank 0 tells the others before each step.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    /// Run one step: truncate the cache to `past` positions, then append `tokens`.
    Step {
        past: usize,
        which: Logits,
        tokens: Vec<u32>,
    },
    /// Generation is over; return from [`ParallelLlama::follow`].
    Stop,
}

impl Command {
    fn encode(&self) -> Vec<u8> {
        match self {
            Command::Stop => vec![0],
            Command::Step {
                past,
                which,
                tokens,
            } => {
                let mut out = vec![1, matches!(which, Logits::All) as u8];
                out.extend((*past as u64).to_le_bytes());
                out.extend(tokens.iter().flat_map(|t| t.to_le_bytes()));
                out
            }
        }
    }

    fn decode(bytes: &[u8]) -> Result<Command> {
        match bytes {
            [0] => Ok(Command::Stop),
            [1, which, rest @ ..] if rest.len() >= 8 && (rest.len() - 8) % 4 == 0 => {
                let (past, tokens) = rest.split_at(8);
                let past = u64::from_le_bytes(past.try_into().unwrap_or([0; 8])) as usize;
                Ok(Command::Step {
                    past,
                    which: if *which == 1 {
                        Logits::All
                    } else {
                        Logits::Last
                    },
                    tokens: tokens
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                })
            }
            _ => Err(ParallelError::Protocol(format!(
                "a command of {} bytes from rank 0",
                bytes.len()
            ))),
        }
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
        let (rank, layout) = (self.world.rank(), self.layout);
        let (stage, tp_rank) = (layout.stage(rank), layout.tp_rank(rank));
        let cfg = self.model.config();
        let hidden;
        let input = if stage == 0 {
            StageInput::Tokens
        } else {
            let mut buf = vec![0f32; tokens.len() * cfg.hidden_size];
            self.world
                .recv(layout.rank_of(stage - 1, tp_rank), &mut buf)?;
            hidden = buf;
            StageInput::Hidden(&hidden)
        };
        let mut batch = [SeqInput { tokens, cache }];
        let group = Group(&*self.group);
        match self.model.forward_stage(&mut batch, which, input, &group)? {
            StageOutput::Hidden(x) => self.world.send(layout.rank_of(stage + 1, tp_rank), &x)?,
            StageOutput::Logits(mut logits) => {
                let logits = logits
                    .pop()
                    .ok_or_else(|| ParallelError::Protocol("no logits for the sequence".into()))?;
                if rank == 0 {
                    return Ok(Some(logits));
                }
                if tp_rank == 0 {
                    self.world
                        .send(0, &logits.flatten_all()?.to_vec1::<f32>()?)?;
                }
            }
        }
        if rank != 0 {
            return Ok(None);
        }
        // Rank 0 is not on the last stage: the last stage's first rank sends the logits.
        let rows = match which {
            Logits::All => tokens.len(),
            Logits::Last => 1,
        };
        let mut buf = vec![0f32; rows * cfg.vocab_size];
        self.world
            .recv(layout.rank_of(layout.pp - 1, 0), &mut buf)?;
        Ok(Some(Tensor::from_vec(
            buf,
            (rows, cfg.vocab_size),
            &Device::Cpu,
        )?))
    }

    /// Rank 0's handle for driving generation (herd-engine's `generate`
    /// takes it as a [`Decoder`]).
    pub fn leader(&self) -> Result<Leader<'_>> {
        if self.world.rank() != 0 {
            return Err(ParallelError::Protocol(format!(
                "rank {} cannot lead; rank 0 does",
                self.world.rank()
            )));
        }
        Ok(Leader { par: self })
    }

    /// Every rank but 0: run the steps rank 0 broadcasts, with a cache of
    /// this rank's own, until rank 0 calls [`Leader::stop`].
    pub fn follow(&self) -> Result<()> {
        let mut cache = self.model.new_cache();
        loop {
            let command = {
                let _armed = self.watchdog.arm("waiting for rank 0's next step");
                let mut bytes = Vec::new();
                self.world.broadcast_vec(0, &mut bytes)?;
                Command::decode(&bytes)?
            };
            match command {
                Command::Stop => return Ok(()),
                Command::Step {
                    past,
                    which,
                    tokens,
                } => {
                    cache.truncate(past)?;
                    self.step(&tokens, &mut cache, which)?;
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

/// Rank 0 driving a parallel model: each [`Decoder::forward_one`] tells
/// the followers the step, runs rank 0's stage and returns the logits.
pub struct Leader<'a> {
    par: &'a ParallelLlama,
}

impl Leader<'_> {
    /// Releases the followers (they return from `follow`).
    pub fn stop(&self) -> Result<()> {
        self.par.broadcast(&Command::Stop)
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
}

impl Decoder for Leader<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for command in [
            Command::Stop,
            Command::Step {
                past: 7,
                which: Logits::All,
                tokens: vec![1, 2, 300_000],
            },
            Command::Step {
                past: 0,
                which: Logits::Last,
                tokens: vec![],
            },
        ] {
            assert_eq!(Command::decode(&command.encode()).unwrap(), command);
        }
        assert!(Command::decode(&[1, 0, 3]).is_err());
    }
}
