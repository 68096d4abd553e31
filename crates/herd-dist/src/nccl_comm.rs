//! NCCL through `cudarc` (feature `cuda`, which implies `mpi`). `mpirun`
//! still starts the ranks and MPI still carries what NCCL cannot: rank 0
//! creates the NCCL unique id and broadcasts it over MPI, every rank checks
//! that it can drive a GPU before any of them enters NCCL's collective
//! initialisation, and barriers and aborts stay MPI's.
//!
//! Host buffers: herd's model runs on the CPU today, so every call copies
//! its `f32` (or byte) slice to this rank's GPU (device = the rank's index
//! on its host), runs the NCCL operation there and copies the result back.
//! That is correct on any machine with one GPU per rank; the copies are the
//! price until activations live on the device, when the same calls can take
//! device buffers and drop them.
//!
//! `cudarc` is built with `dynamic-loading`: libcuda and libnccl are opened
//! at run time, so this compiles without a CUDA toolkit, and a machine
//! without them gets [`DistError::Unavailable`] on every rank, never a
//! panic (the libraries are looked for before their first use).

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};

use crate::comm::{check_gather, check_rank, Communicator};
use crate::error::{DistError, Result};
use crate::mpi_comm::Mpi;
use crate::stats::{CommStats, Counters, Op};

/// Bytes of an NCCL unique id.
const ID_BYTES: usize = 128;

/// NCCL over the ranks of an MPI communicator, one GPU per rank.
pub struct Nccl {
    // Fields drop in order: the NCCL communicator before its stream, and
    // both before the MPI communicator that made them.
    comm: Comm,
    stream: Arc<CudaStream>,
    control: Mpi,
    counters: Arc<Counters>,
}

// NCCL communicators and CUDA streams may be used from any thread, one call
// at a time; herd makes one communicator call at a time (as with MPI).
unsafe impl Send for Nccl {}

impl Nccl {
    /// Starts NCCL on every rank of `world` (every rank must call it). Each
    /// rank takes the GPU of its index on its host; when any rank cannot
    /// (no libcuda, no libnccl, no such GPU) every rank gets an error that
    /// says which, and none enters NCCL.
    pub fn init(world: &Mpi) -> Result<Nccl> {
        let device = open_device(world.local_rank());
        let stream = agree(world, device)?;
        Nccl::connect(world.duplicate(), stream)
    }

    /// Creates the NCCL communicator of `control`'s ranks on `stream`'s GPU.
    fn connect(control: Mpi, stream: Arc<CudaStream>) -> Result<Nccl> {
        let (rank, size) = (control.rank(), control.size());
        // Byte 0: whether rank 0 could create the id; then the id.
        let mut message = [0u8; ID_BYTES + 1];
        if rank == 0 {
            if let Ok(id) = Id::new() {
                message[0] = 1;
                for (byte, c) in message[1..].iter_mut().zip(id.internal()) {
                    *byte = *c as u8;
                }
            }
        }
        control.broadcast(0, &mut message)?;
        if message[0] == 0 {
            return Err(DistError::Unavailable(
                "rank 0 could not create an NCCL unique id".into(),
            ));
        }
        let mut internal = [0 as std::ffi::c_char; ID_BYTES];
        for (c, byte) in internal.iter_mut().zip(&message[1..]) {
            *c = *byte as std::ffi::c_char;
        }
        let comm = Comm::from_rank(stream.clone(), rank, size, Id::uninit(internal))
            .map_err(|e| nccl_error("initialising the communicator", e))?;
        Ok(Nccl {
            comm,
            stream,
            counters: control.counters(),
            control,
        })
    }

    /// Copies `host` to the GPU, runs `op` on the device copy, copies it back.
    fn on_device<T>(
        &self,
        host: &mut [T],
        what: &str,
        op: impl FnOnce(&mut cudarc::driver::CudaSlice<T>) -> std::result::Result<(), String>,
    ) -> Result<()>
    where
        T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits,
    {
        let mut dev = self
            .stream
            .clone_htod(&*host)
            .map_err(|e| cuda_error(what, e))?;
        op(&mut dev).map_err(|e| DistError::Comm(format!("NCCL {what}: {e}")))?;
        self.stream
            .memcpy_dtoh(&dev, host)
            .and_then(|_| self.stream.synchronize())
            .map_err(|e| cuda_error(what, e))
    }
}

impl Communicator for Nccl {
    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn size(&self) -> usize {
        self.comm.world_size()
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        // A group of one (TP 1 inside a pipeline stage) moves nothing.
        if self.size() == 1 {
            return Ok(());
        }
        self.counters.time(Op::AllReduce, size_of_val(buf), || {
            self.on_device(buf, "all-reduce", |dev| {
                self.comm
                    .all_reduce_in_place(dev, &ReduceOp::Sum)
                    .map(drop)
                    .map_err(|e| format!("{e:?}"))
            })
        })
    }

    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<()> {
        check_gather(local, out, self.size())?;
        self.counters.time(Op::AllGather, size_of_val(out), || {
            let send = self
                .stream
                .clone_htod(local)
                .map_err(|e| cuda_error("all-gather", e))?;
            self.on_device(out, "all-gather", |dev| {
                self.comm
                    .all_gather(&send, dev)
                    .map(drop)
                    .map_err(|e| format!("{e:?}"))
            })
        })
    }

    fn broadcast(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        check_rank(root, self.size())?;
        self.counters.time(Op::Broadcast, buf.len(), || {
            self.on_device(buf, "broadcast", |dev| {
                self.comm
                    .broadcast_in_place(dev, root as i32)
                    .map(drop)
                    .map_err(|e| format!("{e:?}"))
            })
        })
    }

    fn send(&self, dest: usize, buf: &[f32]) -> Result<()> {
        check_rank(dest, self.size())?;
        self.counters.time(Op::Send, size_of_val(buf), || {
            let dev = self
                .stream
                .clone_htod(buf)
                .map_err(|e| cuda_error("send", e))?;
            self.comm
                .send(&dev, dest as i32)
                .map_err(|e| DistError::Comm(format!("NCCL send to rank {dest}: {e:?}")))?;
            self.stream.synchronize().map_err(|e| cuda_error("send", e))
        })
    }

    fn recv(&self, src: usize, buf: &mut [f32]) -> Result<()> {
        check_rank(src, self.size())?;
        self.counters.time(Op::Recv, size_of_val(buf), || {
            self.on_device(buf, "recv", |dev| {
                self.comm
                    .recv(dev, src as i32)
                    .map(drop)
                    .map_err(|e| format!("from rank {src}: {e:?}"))
            })
        })
    }

    fn barrier(&self) -> Result<()> {
        self.counters
            .time(Op::Barrier, 0, || self.control.barrier())
    }

    fn split(&self, color: usize) -> Result<Box<dyn Communicator>> {
        let group = self.control.group(color)?;
        Ok(Box::new(Nccl::connect(group, self.stream.clone())?))
    }

    fn abort(&self, code: i32) -> ! {
        self.control.abort(code)
    }

    fn stats(&self) -> CommStats {
        self.counters.snapshot()
    }
}

/// A stream on GPU `ordinal`, or why this rank cannot have one.
fn open_device(ordinal: usize) -> Result<Arc<CudaStream>> {
    // SAFETY: only tries to open the shared libraries by name.
    let (cuda, nccl) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nccl::sys::is_culib_present(),
        )
    };
    if !cuda {
        return Err(DistError::Unavailable(
            "the CUDA driver library (libcuda) was not found: no NVIDIA GPU driver on this host"
                .into(),
        ));
    }
    if !nccl {
        return Err(DistError::Unavailable(
            "the NCCL library (libnccl.so.2) was not found; install NCCL or use --comm mpi".into(),
        ));
    }
    let count = CudaContext::device_count().map_err(|e| cuda_error("counting GPUs", e))?;
    if ordinal >= count.max(0) as usize {
        return Err(DistError::Unavailable(format!(
            "this rank is number {ordinal} on its host but the host has {count} GPU(s); \
             start at most one rank per GPU"
        )));
    }
    let context = CudaContext::new(ordinal).map_err(|e| cuda_error("opening the GPU", e))?;
    Ok(context.default_stream())
}

/// `mine` if every rank of `world` succeeded; otherwise an error on every
/// rank (its own, or how many others failed), so that no rank goes on to a
/// collective initialisation the others will never join.
fn agree<T>(world: &Mpi, mine: Result<T>) -> Result<T> {
    let mut failed = [mine.is_err() as u8 as f32];
    world.all_reduce_sum(&mut failed)?;
    match mine {
        Err(e) => Err(e),
        Ok(_) if failed[0] > 0.0 => Err(DistError::Unavailable(format!(
            "{} other rank(s) could not start NCCL (see their messages)",
            failed[0] as usize
        ))),
        Ok(value) => Ok(value),
    }
}

fn cuda_error(what: &str, e: cudarc::driver::DriverError) -> DistError {
    DistError::Comm(format!("CUDA error while {what}: {e}"))
}

fn nccl_error(what: &str, e: cudarc::nccl::result::NcclError) -> DistError {
    DistError::Unavailable(format!("NCCL error while {what}: {e:?}"))
}
