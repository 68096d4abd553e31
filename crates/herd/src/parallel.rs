//! `mpirun -np T×P herd generate --tp T --pp P`: one model across MPI ranks.
//! Every rank opens the model and loads only its shard; rank 0 tokenizes,
//! samples and prints, and broadcasts each step; the others follow.

use clap::Args;

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
}

impl ParallelArgs {
    /// Whether to run across MPI ranks; an error when `mpirun` started
    /// several ranks but no layout was given (each would generate alone).
    pub fn requested(&self) -> anyhow::Result<bool> {
        if self.tp * self.pp != 1 {
            return Ok(true);
        }
        let ranks = std::env::var("OMPI_COMM_WORLD_SIZE")
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1);
        if ranks > 1 {
            anyhow::bail!(
                "mpirun started {ranks} ranks but no layout was given; pass --tp and --pp with \
                 TP × PP = {ranks}"
            );
        }
        Ok(false)
    }
}

#[cfg(not(feature = "mpi"))]
pub fn generate(args: crate::args::GenerateArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!(
        "--tp {} --pp {} runs the model across MPI ranks, but this herd was built without MPI; \
         rebuild with `cargo build --release -p herd --features mpi` (needs libopenmpi-dev and \
         libclang-dev) and start it with `mpirun -np {} herd generate ...`",
        args.parallel.tp,
        args.parallel.pp,
        args.parallel.tp * args.parallel.pp
    )
}

#[cfg(feature = "mpi")]
pub use with_mpi::generate;

#[cfg(feature = "mpi")]
mod with_mpi {
    use std::process::ExitCode;
    use std::time::Duration;

    use herd_dist::{Communicator, Mpi};
    use herd_parallel::{load_shard, Layout, ParallelError, ParallelLlama};

    use crate::args::GenerateArgs;
    use crate::generate::{request, stream};
    use crate::load::{check_vocab, checkpoint, Loaded};

    pub fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
        let world = Mpi::init()?;
        let rank = world.rank();
        let layout = Layout {
            tp: args.parallel.tp,
            pp: args.parallel.pp,
        };
        if args.model.lora.is_some() {
            // Every rank sees the same flags, so every rank stops here.
            anyhow::bail!(
                "rank {rank}: --lora with --tp/--pp is not supported; fold the adapter in with \
                 `herd merge` and load the merged model"
            );
        }
        if args.draft.draft_model.is_some() {
            anyhow::bail!(
                "rank {rank}: --draft-model with --tp/--pp is not supported yet; speculative \
                 decoding runs in one process"
            );
        }
        let opened = checkpoint(&args.model).and_then(|(checkpoint, tokenizer, name)| {
            let checkpoint = match args.model.quantize {
                Some(file_type) => checkpoint.quantize(file_type)?,
                None => checkpoint,
            };
            Ok((checkpoint, tokenizer, name))
        });
        let (opened, rest) = match opened {
            Ok((checkpoint, tokenizer, name)) => (Ok(checkpoint), Some((tokenizer, name))),
            Err(e) => (Err(ParallelError::Open(format!("{e:#}"))), None),
        };
        let shard = match load_shard(opened, &world, layout) {
            Ok(shard) => shard,
            Err(e) => {
                // Every rank reached this verdict: print it everywhere before
                // any rank exits (mpirun ends the job at the first failure).
                // One write, so mpirun does not interleave ranks' lines.
                let line = format!("error: rank {rank}: {e}\n");
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                world.barrier()?;
                return Ok(ExitCode::FAILURE);
            }
        };
        let timeout = Duration::from_secs(args.parallel.comm_timeout.max(1));
        let par = ParallelLlama::new(shard, Box::new(world), layout, timeout)?;
        if rank != 0 {
            if let Err(e) = par.follow() {
                eprintln!("error: rank {rank}: {e}");
                par.world().abort(1);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let leader = par.leader()?;
        let Some((tokenizer, name)) = rest else {
            anyhow::bail!("rank 0 opened the model but lost its tokenizer");
        };
        let loaded = Loaded {
            model: par.model().clone(),
            tokenizer,
            name,
        };
        let prepared = check_vocab(&loaded.model, &loaded.tokenizer, &loaded.name)
            .and_then(|()| request(&args, &loaded));
        let request = match prepared {
            Ok(r) => r,
            Err(e) => {
                leader.stop()?;
                return Err(e);
            }
        };
        let mut cache = leader.new_cache();
        let streamed = stream(&args, &loaded.tokenizer, &request, |on_token| {
            herd_engine::generate(&leader, &mut cache, &request, on_token)
        });
        match streamed {
            Ok(code) => {
                leader.stop()?;
                Ok(code)
            }
            Err(e) => {
                // A step may have failed half-way through a collective: end every rank.
                eprintln!("error: rank 0: {e:#}");
                par.world().abort(1)
            }
        }
    }
}
