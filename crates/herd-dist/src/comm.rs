//! The communicator every distributed code path talks to. Model and engine
//! code call these few collectives and never know which library moves the
//! bytes; [`Local`] makes the same code run in one process, so distributed
//! paths are exercised by every ordinary test.

use crate::error::{DistError, Result};
use crate::stats::CommStats;

/// Collective and point-to-point operations among `size()` ranks.
/// Every rank must make the same collective calls in the same order.
pub trait Communicator: Send {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Element-wise sum over all ranks, in place.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// Concatenates every rank's `local` (all the same length) into `out`, in rank order.
    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<()>;
    /// Copies `buf` from `root` to every rank (all pass the same length).
    fn broadcast(&self, root: usize, buf: &mut [u8]) -> Result<()>;
    /// Sends `buf` to rank `dest`.
    fn send(&self, dest: usize, buf: &[f32]) -> Result<()>;
    /// Receives exactly `buf.len()` values from rank `src`.
    fn recv(&self, src: usize, buf: &mut [f32]) -> Result<()>;
    /// Waits until every rank has arrived.
    fn barrier(&self) -> Result<()>;
    /// A communicator over the ranks that pass the same `color`, ranked in
    /// their order here (e.g. the tensor-parallel group of one pipeline
    /// stage). Every rank must call it.
    fn split(&self, color: usize) -> Result<Box<dyn Communicator>>;
    /// Ends every rank of the job with exit code `code` (a rank that failed
    /// alone cannot leave the others waiting in a collective).
    fn abort(&self, code: i32) -> !;

    /// What this process has moved through this communicator and the
    /// groups split from it (zero for a backend that moves nothing).
    fn stats(&self) -> CommStats {
        CommStats::default()
    }

    /// Broadcasts a byte vector whose length only `root` knows.
    fn broadcast_vec(&self, root: usize, buf: &mut Vec<u8>) -> Result<()> {
        let mut len = (buf.len() as u64).to_le_bytes();
        self.broadcast(root, &mut len)?;
        buf.resize(u64::from_le_bytes(len) as usize, 0);
        self.broadcast(root, buf)
    }
}

/// The single-process communicator: one rank, every collective a copy or no-op.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Communicator for Local {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<()> {
        check_gather(local, out, 1)?;
        out.copy_from_slice(local);
        Ok(())
    }

    fn broadcast(&self, root: usize, _buf: &mut [u8]) -> Result<()> {
        check_rank(root, 1)
    }

    fn send(&self, dest: usize, _buf: &[f32]) -> Result<()> {
        Err(DistError::Comm(format!(
            "send to rank {dest} in a single-process run"
        )))
    }

    fn recv(&self, src: usize, _buf: &mut [f32]) -> Result<()> {
        Err(DistError::Comm(format!(
            "receive from rank {src} in a single-process run"
        )))
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    fn split(&self, _color: usize) -> Result<Box<dyn Communicator>> {
        Ok(Box::new(Local))
    }

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Checks that `rank` exists among `size` ranks.
pub(crate) fn check_rank(rank: usize, size: usize) -> Result<()> {
    if rank >= size {
        return Err(DistError::Comm(format!(
            "rank {rank} does not exist among {size}"
        )));
    }
    Ok(())
}

/// Checks that `out` holds exactly `size` ranks' worth of `local`.
pub(crate) fn check_gather(local: &[f32], out: &[f32], size: usize) -> Result<()> {
    if out.len() != local.len() * size {
        return Err(DistError::Comm(format!(
            "all_gather into {} values from {} on {size} ranks",
            out.len(),
            local.len()
        )));
    }
    Ok(())
}
