//! The `herd` command line: parse arguments, validate them, call the
//! libraries, print. No model logic lives here.

mod agent;
mod args;
mod chat;
mod data;
mod distill;
mod distill_report;
mod distill_student;
mod draft;
mod eval;
mod eval_remote;
mod gendata;
mod generate;
mod info;
mod load;
mod parallel;
mod plan;
mod prune;
mod quantize;
mod remote_teacher;
mod serve;
mod tokenizer;
mod train;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    configure_threads(cli.threads)?;
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Info(args) => info::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Train(command) => train::run(command),
        Command::Data(args) => data::run(args),
        Command::Tokenizer(args) => tokenizer::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Distill(command) => distill::run(command),
        Command::GenerateData(args) => gendata::run(*args),
        Command::Prune(args) => prune::run(args),
        Command::Agent(args) => agent::run(args),
    }
}

/// One knob for every thread pool: herd's kernels use rayon's global pool,
/// candle's CPU ops read `RAYON_NUM_THREADS`. Set before any pool starts.
fn configure_threads(threads: Option<usize>) -> anyhow::Result<()> {
    let n = match threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| anyhow::anyhow!("cannot start {n} threads: {e}"))
}
