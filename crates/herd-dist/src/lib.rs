//! Many machines as one. Two things live here:
//!
//! - [`Communicator`]: the handful of collectives (all-reduce, all-gather,
//!   broadcast, send/receive, barrier) that tensor- and pipeline-parallel
//!   code needs, with a single-process implementation ([`Local`]) and OpenMPI
//!   (`Mpi`, cargo feature `mpi`), and NCCL on GPUs (`Nccl`, cargo feature
//!   `cuda`, started over MPI). Each counts what it moves ([`CommStats`]). herd never speaks its own wire protocol:
//!   MPI moves the bytes and `mpirun` starts, places and tears down ranks.
//! - [`Plan`]: which tensor × pipeline layout a Llama needs on a given
//!   cluster, and what it costs in memory per device and traffic per token
//!   (`herd plan`).
//! - [`Watchdog`]: a rank that waits on a peer longer than a timeout exits
//!   with a clear error instead of hanging the job.
#![deny(missing_docs)]

mod comm;
mod error;
#[cfg(feature = "mpi")]
mod mpi_comm;
#[cfg(feature = "cuda")]
mod nccl_comm;
mod plan;
mod stats;
mod watchdog;

pub use comm::{Communicator, Local};
pub use error::{DistError, Result};
#[cfg(feature = "mpi")]
pub use mpi_comm::Mpi;
#[cfg(feature = "cuda")]
pub use nccl_comm::Nccl;
pub use plan::{stage_ranges, valid_tp, Cluster, Plan, PlanDtype, Workload, USABLE_FRACTION};
pub use stats::{CommStats, Op, OpStats};
pub use watchdog::{ArmedGuard, Watchdog, WATCHDOG_EXIT_CODE};

/// Hugging Face `config.json` of well-known Llamas, for planning without a download.
pub const PRESETS: &[(&str, &str)] = &[
    ("llama3.2-1b", include_str!("../presets/llama3.2-1b.json")),
    ("llama3.1-8b", include_str!("../presets/llama3.1-8b.json")),
    ("llama3.1-70b", include_str!("../presets/llama3.1-70b.json")),
    (
        "llama3.1-405b",
        include_str!("../presets/llama3.1-405b.json"),
    ),
];
