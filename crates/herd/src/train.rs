//! `herd finetune`, `herd train` and `herd merge`: flags → herd-train.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use herd_model::{Checkpoint, Config};
use herd_tokenizer::Tokenizer;
use herd_train::optim::AdamWConfig;
use herd_train::{
    CrossEntropy, DataOptions, Dataset, LoraConfig, LoraTarget, LossOn, RunFiles, Session,
    TrainModel, TrainOptions, Tuning,
};

/// The training subcommands.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Fine-tune a Hugging Face model on a JSONL dataset (LoRA by default, or --full).
    Finetune(FinetuneArgs),
    /// Train a new model from random weights (config.json + tokenizer) on a JSONL dataset.
    Train(ScratchArgs),
    /// Fold a LoRA adapter into its base model and write a Hugging Face directory.
    Merge(MergeArgs),
}

/// Which tokens count in the loss.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LossOnArg {
    /// The assistant's replies only.
    Assistant,
    /// Every token.
    All,
}

impl From<LossOnArg> for LossOn {
    fn from(arg: LossOnArg) -> LossOn {
        match arg {
            LossOnArg::Assistant => LossOn::Assistant,
            LossOnArg::All => LossOn::All,
        }
    }
}

/// Flags shared by `finetune` and `train`.
#[derive(Debug, Args)]
pub struct TrainingArgs {
    /// JSONL dataset: {"messages": [...], "tools": [...]} or {"text": "..."} per line.
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory: the result, checkpoint.safetensors, metrics.jsonl, loss.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Optimizer steps.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Peak learning rate (default: 2e-4 for LoRA, 2e-5 for --full, 1e-3 for train).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Input positions per micro-batch (whole rows of --seq-len).
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Warm-up steps (default: a tenth of --steps).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Global gradient-norm clipping (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// AdamW weight decay on matrices.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seeds the data order and the adapters' initial values.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tokens per packed row, the longest example (default: min(context, 1024)).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Which tokens count in the loss.
    #[arg(long, value_enum, default_value_t = LossOnArg::Assistant)]
    pub loss_on: LossOnArg,
    /// Share of the examples held out for the validation loss.
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Validation loss every N steps (and at the end); 0: only at the end.
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Checkpoint every N steps (0: only when stopped); Ctrl-C always checkpoints.
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Continue from --out/checkpoint.safetensors.
    #[arg(long)]
    pub resume: bool,
    /// Skip malformed records (and report how many) instead of stopping.
    #[arg(long)]
    pub skip_bad_records: bool,
    /// Cut examples longer than --seq-len instead of rejecting them.
    #[arg(long)]
    pub truncate: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub comm: crate::parallel::CommArgs,
}

/// `herd finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// Hugging Face Llama directory to start from.
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Train every weight instead of a LoRA adapter.
    #[arg(long, conflicts_with_all = ["lora_rank", "lora_alpha", "lora_targets"])]
    pub full: bool,
    /// LoRA rank.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Projections to adapt: any of q,k,v,o,gate,up,down.
    #[arg(long)]
    pub lora_targets: Option<String>,
    #[command(flatten)]
    pub training: TrainingArgs,
}

/// `herd train`.
#[derive(Debug, Args)]
pub struct ScratchArgs {
    /// The new model's config.json (Llama architecture).
    #[arg(long)]
    pub config: PathBuf,
    /// Tokenizer: a directory with tokenizer.json, or the file itself.
    #[arg(long)]
    pub tokenizer: PathBuf,
    #[command(flatten)]
    pub training: TrainingArgs,
}

/// `herd merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The base model (Hugging Face directory).
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// The adapter directory (PEFT layout).
    #[arg(long)]
    pub lora: PathBuf,
    /// Output directory (must not exist or be empty).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

pub fn run(command: TrainCommand) -> anyhow::Result<ExitCode> {
    match command {
        TrainCommand::Finetune(args) => finetune(args),
        TrainCommand::Train(args) => scratch(args),
        TrainCommand::Merge(args) => {
            herd_train::merge_to_dir(&args.model, &args.lora, &args.output)?;
            eprintln!("wrote {}", args.output.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn finetune(args: FinetuneArgs) -> anyhow::Result<ExitCode> {
    let tuning = if args.full {
        Tuning::Full
    } else {
        let lora = LoraConfig {
            rank: args.lora_rank.unwrap_or(8),
            alpha: args.lora_alpha.unwrap_or(16.0),
            targets: LoraTarget::parse_list(args.lora_targets.as_deref().unwrap_or("q,k,v,o"))?,
            rslora: false,
        };
        lora.validate()?;
        Tuning::Lora(lora)
    };
    let default_lr = if args.full { 2e-5 } else { 2e-4 };
    let checkpoint = Checkpoint::open(&args.model)?;
    let tokenizer = Tokenizer::from_dir(&args.model)?;
    let config_path = args.model.join("config.json");
    let config_json = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let job = Job::prepare(&args.training, &checkpoint.config, &tokenizer, default_lr)?;
    let model = TrainModel::from_checkpoint(&checkpoint, tuning, job.options.seed)?;
    drop(checkpoint);
    job.run(
        &model,
        &config_json,
        &args.model,
        &args.model.display().to_string(),
    )
}

fn scratch(args: ScratchArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_file(&args.config)?;
    let config_json = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let tokenizer = Tokenizer::from_path(&args.tokenizer)?;
    if tokenizer.vocab_size() > config.vocab_size {
        anyhow::bail!(
            "{}: the tokenizer has {} tokens but vocab_size in {} is {}",
            args.tokenizer.display(),
            tokenizer.vocab_size(),
            args.config.display(),
            config.vocab_size
        );
    }
    let tokenizer_dir = match args.tokenizer.is_dir() {
        true => args.tokenizer.clone(),
        false => args
            .tokenizer
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let job = Job::prepare(&args.training, &config, &tokenizer, 1e-3)?;
    let model = TrainModel::random(config, job.options.seed)?;
    job.run(&model, &config_json, &tokenizer_dir, "scratch")
}

/// A validated run: data loaded, options resolved, output checked.
struct Job {
    data: Dataset,
    options: TrainOptions,
    files: RunFiles,
    resume: bool,
    comm: crate::parallel::CommArgs,
}

/// `--seq-len`, or the model's context capped at 1024; longer than the
/// context is an error (shared by train, finetune and distill).
pub(crate) fn seq_len(flag: Option<usize>, config: &Config) -> anyhow::Result<usize> {
    let seq_len = flag.unwrap_or(config.max_position_embeddings.min(1024));
    if seq_len > config.max_position_embeddings {
        anyhow::bail!(
            "--seq-len {seq_len} is longer than the model's context ({} tokens)",
            config.max_position_embeddings
        );
    }
    Ok(seq_len)
}

impl Job {
    fn prepare(
        args: &TrainingArgs,
        config: &Config,
        tokenizer: &Tokenizer,
        default_lr: f64,
    ) -> anyhow::Result<Job> {
        let seq_len = seq_len(args.seq_len, config)?;
        let files = RunFiles {
            dir: args.out.clone(),
            progress: !args.quiet,
        };
        if args.resume && !herd_train::has_checkpoint(&args.out) {
            anyhow::bail!("--resume: {} does not exist", files.checkpoint().display());
        }
        if !args.resume && herd_train::holds_run(&args.out) {
            anyhow::bail!(
                "{} already holds a training run; pass --resume to continue it, or choose another --out",
                args.out.display()
            );
        }
        let data_opts = DataOptions {
            loss_on: args.loss_on.into(),
            skip_bad_records: args.skip_bad_records,
            seq_len,
            truncate: args.truncate,
            validation_fraction: args.val_fraction,
        };
        let data = Dataset::load(&args.data, tokenizer, &data_opts)?;
        if data.skipped > 0 {
            eprintln!(
                "skipped {} malformed records in {}",
                data.skipped,
                args.data.display()
            );
        }
        if data.truncated > 0 {
            eprintln!("truncated {} examples to {seq_len} tokens", data.truncated);
        }
        let options = TrainOptions {
            steps: args.steps,
            lr: args.lr.unwrap_or(default_lr),
            warmup: args.warmup.unwrap_or(args.steps / 10),
            min_lr_ratio: 0.1,
            adamw: AdamWConfig {
                weight_decay: args.weight_decay,
                ..AdamWConfig::default()
            },
            batch_tokens: args.batch_tokens,
            grad_accum: args.grad_accum,
            clip: (args.clip > 0.0).then_some(args.clip),
            seed: args.seed,
            seq_len,
            eval_every: args.eval_every,
            save_every: args.save_every,
        };
        options.validate()?;
        Ok(Job {
            data,
            options,
            files,
            resume: args.resume,
            comm: args.comm,
        })
    }

    fn run(
        self,
        model: &TrainModel,
        config_json: &str,
        tokenizer_dir: &Path,
        base_name: &str,
    ) -> anyhow::Result<ExitCode> {
        // Under `mpirun -np N`: N data-parallel ranks share every batch.
        let Some(comm) = crate::parallel::data_parallel(self.comm)? else {
            return Ok(ExitCode::FAILURE);
        };
        let lead = comm.rank() == 0;
        if lead {
            eprintln!(
                "training {} of {} parameters on {} examples ({} held out) for {} steps{}",
                model.trainable_parameters(),
                model.config().num_parameters(),
                self.data.train.len(),
                self.data.validation.len(),
                self.options.steps,
                match comm.size() {
                    1 => String::new(),
                    n => format!(" on {n} data-parallel ranks"),
                }
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
        let session = Session {
            files: &self.files,
            resume: self.resume,
            stop: &|_| stop.load(Ordering::SeqCst),
            objective: &CrossEntropy,
            comm: &*comm,
        };
        let report = herd_train::train_in(model, &self.data, &self.options, &session)?;
        if !lead {
            // Rank 0 reports and writes the result.
            return Ok(ExitCode::from(if report.interrupted { 130 } else { 0 }));
        }
        eprintln!("{report}");
        if report.interrupted {
            eprintln!(
                "checkpoint: {} (continue with the same command and --resume)",
                self.files.checkpoint().display()
            );
            return Ok(ExitCode::from(130));
        }
        herd_train::save_trained(
            &self.files.dir,
            model,
            config_json,
            tokenizer_dir,
            base_name,
        )?;
        eprintln!(
            "wrote {} (metrics: {}, curve: {})",
            self.files.dir.display(),
            self.files.metrics().display(),
            self.files.plot().display()
        );
        Ok(ExitCode::SUCCESS)
    }
}
