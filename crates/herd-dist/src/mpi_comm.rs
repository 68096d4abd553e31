//! OpenMPI through the `mpi` crate (feature `mpi`). `mpirun` starts the
//! ranks; this wraps the world communicator and the groups split from it.
//! MPI is initialised once per process and finalised when the last [`Mpi`]
//! value (the world or a group) is dropped. Every call is counted
//! ([`crate::CommStats`]): the world and its groups share one set of
//! counters.

use std::sync::Arc;

use mpi::collective::SystemOperation;
use mpi::environment::Threading;
use mpi::topology::{Color, Communicator as _, SimpleCommunicator};
use mpi::traits::*;

use crate::comm::{check_gather, check_rank, Communicator};
use crate::error::{DistError, Result};
use crate::stats::{CommStats, Counters, Op};

/// The MPI world of this job, or a group split from it.
pub struct Mpi {
    // Fields drop in order: the communicator is freed before the last
    // reference to the universe finalises MPI.
    world: SimpleCommunicator,
    universe: Arc<mpi::environment::Universe>,
    counters: Arc<Counters>,
}

impl Mpi {
    /// Initialises MPI; fails when it was already initialised in this
    /// process. Asks for `MPI_THREAD_SERIALIZED`: herd makes one MPI call at
    /// a time, but not always from the main thread (`herd serve` steps the
    /// model on its engine thread).
    pub fn init() -> Result<Mpi> {
        let (universe, level) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| DistError::Comm("MPI was already initialised".into()))?;
        if level < Threading::Serialized {
            return Err(DistError::Comm(format!(
                "this MPI library provides thread level {level:?}; herd needs Serialized"
            )));
        }
        Ok(Mpi {
            world: universe.world(),
            universe: Arc::new(universe),
            counters: Arc::default(),
        })
    }

    /// The group of ranks passing the same `color`, as an [`Mpi`] (the
    /// NCCL backend builds its groups on it).
    pub(crate) fn group(&self, color: usize) -> Result<Mpi> {
        let value = i32::try_from(color)
            .map_err(|_| DistError::Comm(format!("group colour {color} is too large")))?;
        let group = self
            .world
            .split_by_color(Color::with_value(value))
            .ok_or_else(|| DistError::Comm(format!("no group for colour {color}")))?;
        Ok(self.with(group))
    }

    /// The same ranks on a communicator of their own, so another library's
    /// control messages never match this one's (every rank must call it).
    #[cfg(feature = "cuda")]
    pub(crate) fn duplicate(&self) -> Mpi {
        self.with(self.world.duplicate())
    }

    /// This rank's index among the ranks on its host (the GPU it drives).
    /// Every rank must call it.
    #[cfg(feature = "cuda")]
    pub(crate) fn local_rank(&self) -> usize {
        self.world.split_shared(0).rank() as usize
    }

    fn with(&self, world: SimpleCommunicator) -> Mpi {
        Mpi {
            world,
            universe: self.universe.clone(),
            counters: self.counters.clone(),
        }
    }

    /// The counters this communicator (and every group of its world) adds to.
    #[cfg(feature = "cuda")]
    pub(crate) fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

// The `mpi` crate's handles are plain integers/pointers owned by this value;
// herd calls MPI from one thread at a time (MPI_THREAD_SERIALIZED).
unsafe impl Send for Mpi {}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        // A group of one (TP 1 inside a pipeline stage) moves nothing.
        if self.size() == 1 {
            return Ok(());
        }
        let send = buf.to_vec();
        self.counters.time(Op::AllReduce, size_of_val(buf), || {
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum())
        });
        Ok(())
    }

    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<()> {
        check_gather(local, out, self.size())?;
        let bytes = size_of_val(out);
        self.counters.time(Op::AllGather, bytes, || {
            self.world.all_gather_into(local, out)
        });
        Ok(())
    }

    fn broadcast(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        check_rank(root, self.size())?;
        self.counters.time(Op::Broadcast, buf.len(), || {
            self.world.process_at_rank(root as i32).broadcast_into(buf)
        });
        Ok(())
    }

    fn send(&self, dest: usize, buf: &[f32]) -> Result<()> {
        check_rank(dest, self.size())?;
        self.counters.time(Op::Send, size_of_val(buf), || {
            self.world.process_at_rank(dest as i32).send(buf)
        });
        Ok(())
    }

    fn recv(&self, src: usize, buf: &mut [f32]) -> Result<()> {
        check_rank(src, self.size())?;
        let bytes = size_of_val(buf);
        let status = self.counters.time(Op::Recv, bytes, || {
            self.world.process_at_rank(src as i32).receive_into(buf)
        });
        let got = status.count(f32::equivalent_datatype()) as usize;
        if got != buf.len() {
            return Err(DistError::Comm(format!(
                "expected {} values from rank {src}, got {got}",
                buf.len()
            )));
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.counters.time(Op::Barrier, 0, || self.world.barrier());
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    fn split(&self, color: usize) -> Result<Box<dyn Communicator>> {
        Ok(Box::new(self.group(color)?))
    }

    fn stats(&self) -> CommStats {
        self.counters.snapshot()
    }
}
