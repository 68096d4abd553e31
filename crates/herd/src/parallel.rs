//! `mpirun -np T×P herd generate|serve --tp T --pp P`: one model across MPI
//! ranks. Every rank opens the model and loads only its shard; rank 0
//! tokenizes, samples and prints (or runs the HTTP server and the serving
//! engine), and broadcasts each step; the others follow.
//!
//! `--comm` picks the library that moves tensors between the ranks: MPI
//! (CPU memory, any network) or NCCL (GPUs, cargo feature `cuda`); MPI
//! always starts the job. A backend that cannot start is reported on every
//! rank before any of them exits.

use clap::{Args, ValueEnum};

/// Tensor × pipeline parallelism across the ranks `mpirun` starts.
#[derive(Debug, Args)]
pub struct ParallelArgs {
    /// Tensor-parallel ranks per pipeline stage (start T × P ranks with mpirun).
    #[arg(long, default_value_t = 1)]
    pub tp: usize,
    /// Pipeline stages, each holding a contiguous range of layers.
    #[arg(long, default_value_t = 1)]
    pub pp: usize,
    /// Seconds a rank waits on its peers before it ends the job with an error.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub comm_timeout: u64,
    #[command(flatten)]
    pub comm: CommArgs,
}

/// The library that moves tensors between ranks (`--comm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// OpenMPI: host memory over shared memory or any network.
    Mpi,
    /// NVIDIA NCCL on one GPU per rank (a herd built with `--features cuda`).
    Nccl,
}

#[cfg(feature = "mpi")]
impl Backend {
    /// The flag's value.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Mpi => "mpi",
            Backend::Nccl => "nccl",
        }
    }
}

/// `--comm`, shared by the parallel commands and data-parallel training.
#[derive(Debug, Clone, Copy, Args)]
pub struct CommArgs {
    /// Library that moves tensors between ranks: mpi, or nccl (one GPU per
    /// rank; needs a herd built with `--features cuda`).
    #[arg(long = "comm", value_enum, default_value_t = Backend::Mpi)]
    pub backend: Backend,
}

impl CommArgs {
    /// An error when this binary cannot provide the backend at all (in one
    /// process; under mpirun `connect` reports it on every rank).
    pub fn check_built(&self) -> anyhow::Result<()> {
        if self.backend == Backend::Nccl && !cfg!(feature = "cuda") {
            anyhow::bail!("{WITHOUT_CUDA}");
        }
        Ok(())
    }
}

const WITHOUT_CUDA: &str = "--comm nccl needs a herd built with NCCL support; rebuild with \
     `cargo build --release -p herd --features cuda` (needs libopenmpi-dev and libclang-dev; \
     libcuda and libnccl are loaded at run time) or use --comm mpi";

/// Ranks `mpirun` started in this process's job (1 outside mpirun).
fn mpi_ranks() -> usize {
    std::env::var("OMPI_COMM_WORLD_SIZE")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1)
}

/// The data-parallel group of `herd finetune`/`train`/`distill`: every
/// rank of the `mpirun` job, or this process alone. `None`: the backend
/// could not start and every rank has said why (exit with failure).
pub fn data_parallel(comm: CommArgs) -> anyhow::Result<Option<Box<dyn herd_dist::Communicator>>> {
    match mpi_ranks() {
        1 => {
            comm.check_built()?;
            Ok(Some(Box::new(herd_dist::Local)))
        }
        ranks => mpi_world(ranks, comm.backend),
    }
}

#[cfg(feature = "mpi")]
fn mpi_world(
    _ranks: usize,
    backend: Backend,
) -> anyhow::Result<Option<Box<dyn herd_dist::Communicator>>> {
    connect(backend)
}

#[cfg(not(feature = "mpi"))]
fn mpi_world(
    ranks: usize,
    _backend: Backend,
) -> anyhow::Result<Option<Box<dyn herd_dist::Communicator>>> {
    anyhow::bail!(
        "mpirun started {ranks} ranks for data-parallel training, but this herd was built \
         without MPI; rebuild with `cargo build --release -p herd --features mpi`"
    )
}

/// Joins the `mpirun` job and starts `backend` over it. `None`: it could
/// not start, and every rank has printed why.
#[cfg(feature = "mpi")]
pub fn connect(backend: Backend) -> anyhow::Result<Option<Box<dyn herd_dist::Communicator>>> {
    let world = herd_dist::Mpi::init()?;
    let started = match backend {
        Backend::Mpi => return Ok(Some(Box::new(world))),
        Backend::Nccl => nccl(&world),
    };
    match started {
        Ok(comm) => Ok(Some(comm)),
        Err(e) => {
            report_everywhere(&world, &e)?;
            Ok(None)
        }
    }
}

#[cfg(feature = "cuda")]
fn nccl(world: &herd_dist::Mpi) -> Result<Box<dyn herd_dist::Communicator>, String> {
    match herd_dist::Nccl::init(world) {
        Ok(nccl) => Ok(Box::new(nccl)),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(all(feature = "mpi", not(feature = "cuda")))]
fn nccl(_world: &herd_dist::Mpi) -> Result<Box<dyn herd_dist::Communicator>, String> {
    Err(WITHOUT_CUDA.to_string())
}

/// Prints `error` on this rank and waits until every rank has printed its
/// own (mpirun ends the job at the first rank that exits with failure).
/// One write, so mpirun does not interleave the ranks' lines.
#[cfg(feature = "mpi")]
pub fn report_everywhere(
    world: &dyn herd_dist::Communicator,
    error: &dyn std::fmt::Display,
) -> anyhow::Result<()> {
    let line = format!("error: rank {}: {error}\n", world.rank());
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    world.barrier()?;
    Ok(())
}

impl ParallelArgs {
    /// Whether to run across MPI ranks; an error when `mpirun` started
    /// several ranks but no layout was given (each would generate alone).
    pub fn requested(&self) -> anyhow::Result<bool> {
        if self.tp * self.pp != 1 {
            return Ok(true);
        }
        let ranks = mpi_ranks();
        if ranks > 1 {
            anyhow::bail!(
                "mpirun started {ranks} ranks but no layout was given; pass --tp and --pp with \
                 TP × PP = {ranks}"
            );
        }
        self.comm.check_built()?;
        Ok(false)
    }
}

#[cfg(not(feature = "mpi"))]
pub fn generate(args: crate::args::GenerateArgs) -> anyhow::Result<std::process::ExitCode> {
    Err(without_mpi(&args.parallel, "generate"))
}

#[cfg(not(feature = "mpi"))]
pub fn serve(args: crate::serve::ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    Err(without_mpi(&args.parallel, "serve"))
}

#[cfg(not(feature = "mpi"))]
fn without_mpi(args: &ParallelArgs, command: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--tp {} --pp {} runs the model across MPI ranks, but this herd was built without MPI; \
         rebuild with `cargo build --release -p herd --features mpi` (needs libopenmpi-dev and \
         libclang-dev) and start it with `mpirun -np {} herd {command} ...`",
        args.tp,
        args.pp,
        args.tp * args.pp
    )
}

#[cfg(feature = "mpi")]
pub use with_mpi::{generate, serve};

#[cfg(feature = "mpi")]
mod with_mpi {
    use std::process::ExitCode;
    use std::time::Duration;

    use herd_dist::CommStats;
    use herd_engine::EngineHandle;
    use herd_parallel::{load_shard, Layout, Leader, ParallelError, ParallelLlama};

    use super::ParallelArgs;
    use crate::args::{GenerateArgs, ModelArgs};
    use crate::draft::DraftArgs;
    use crate::generate::{request, stream};
    use crate::load::{check_vocab, checkpoint, stop_ids, Loaded};
    use crate::serve::{engine_config, listen, ServeArgs};

    /// What a rank does once it has joined the job.
    enum Joined {
        /// Nothing more: a follower that rank 0 released, or a rank of a
        /// job that could not load the model (every rank said why).
        Done(ExitCode),
        /// Rank 0, with the model's tokenizer and name for its users.
        Lead(Box<(Leader, Loaded)>),
    }

    pub fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
        let (leader, loaded) = match join(&args.model, &args.parallel, &args.draft)? {
            Joined::Done(code) => return Ok(code),
            Joined::Lead(lead) => *lead,
        };
        // An error here drops the leader, which releases the followers.
        let request = request(&args, &loaded)?;
        let mut cache = leader.new_cache();
        // Communication counters at the first and the latest token: their
        // difference is the traffic of the decode steps between them.
        let mut marks: Option<(CommStats, CommStats, u64)> = None;
        let streamed = stream(&args, &loaded.tokenizer, &request, |on_token| {
            herd_engine::generate(&leader, &mut cache, &request, |token| {
                let now = leader.world().stats();
                let (first, _, tokens) = marks.unwrap_or((now, now, 0));
                marks = Some((first, now, tokens + 1));
                on_token(token)
            })
        });
        match streamed {
            Ok(code) => {
                leader.stop()?;
                if let Some((first, last, tokens @ 2..)) = marks {
                    eprintln!(
                        "[communication per decoded token on rank 0 (--comm {}): {}]",
                        args.parallel.comm.backend.name(),
                        (last - first).per(tokens - 1)
                    );
                }
                Ok(code)
            }
            Err(e) => {
                // A step may have failed half-way through a collective: end every rank.
                eprintln!("error: rank 0: {e:#}");
                leader.world().abort(1)
            }
        }
    }

    /// Rank 0 serves the API with the engine stepping every rank; the
    /// followers run the steps until the job is stopped.
    pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
        let (leader, loaded) = match join(&args.model, &args.parallel, &args.draft)? {
            Joined::Done(code) => return Ok(code),
            Joined::Lead(lead) => *lead,
        };
        if !args.agents.is_empty() {
            anyhow::bail!(
                "--agents with --tp/--pp is not supported yet; serve the agents from one process"
            );
        }
        let stops = stop_ids(&loaded);
        let engine = EngineHandle::start_paged(Box::new(leader), engine_config(&args))?;
        listen(args, engine, loaded.tokenizer, &loaded.name, stops)
    }

    /// Every rank: opens the model and loads this rank's shard, checking
    /// with the others that all agree; followers then run rank 0's steps.
    fn join(
        model: &ModelArgs,
        parallel: &ParallelArgs,
        draft: &DraftArgs,
    ) -> anyhow::Result<Joined> {
        let Some(world) = super::connect(parallel.comm.backend)? else {
            return Ok(Joined::Done(ExitCode::FAILURE));
        };
        let rank = world.rank();
        let layout = Layout {
            tp: parallel.tp,
            pp: parallel.pp,
        };
        // Every rank sees the same flags, so every rank stops here.
        if model.lora.is_some() {
            anyhow::bail!(
                "rank {rank}: --lora with --tp/--pp is not supported; fold the adapter in with \
                 `herd merge` and load the merged model"
            );
        }
        if draft.draft_model.is_some() {
            anyhow::bail!(
                "rank {rank}: --draft-model with --tp/--pp is not supported yet; speculative \
                 decoding runs in one process"
            );
        }
        let opened = checkpoint(model).and_then(|(checkpoint, tokenizer, name)| {
            let checkpoint = match model.quantize {
                Some(file_type) => checkpoint.quantize(file_type)?,
                None => checkpoint,
            };
            Ok((checkpoint, tokenizer, name))
        });
        let (opened, rest) = match opened {
            Ok((checkpoint, tokenizer, name)) => (Ok(checkpoint), Some((tokenizer, name))),
            Err(e) => (Err(ParallelError::Open(format!("{e:#}"))), None),
        };
        let shard = match load_shard(opened, &*world, layout) {
            Ok(shard) => shard,
            Err(e) => {
                // Every rank reached this verdict: print it everywhere.
                super::report_everywhere(&*world, &e)?;
                return Ok(Joined::Done(ExitCode::FAILURE));
            }
        };
        let timeout = Duration::from_secs(parallel.comm_timeout.max(1));
        let par = ParallelLlama::new(shard, world, layout, timeout)?;
        if rank != 0 {
            if let Err(e) = par.follow() {
                eprintln!("error: rank {rank}: {e}");
                par.world().abort(1);
            }
            return Ok(Joined::Done(ExitCode::SUCCESS));
        }
        let leader = par.into_leader()?;
        let Some((tokenizer, name)) = rest else {
            anyhow::bail!("rank 0 opened the model but lost its tokenizer");
        };
        let loaded = Loaded {
            model: leader.model().clone(),
            tokenizer,
            name,
        };
        check_vocab(&loaded.model, &loaded.tokenizer, &loaded.name)?;
        Ok(Joined::Lead(Box::new((leader, loaded))))
    }
}
