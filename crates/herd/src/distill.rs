//! `herd teacher-cache` and `herd distill`: flags → herd-distill.
//!
//! With no arguments, `herd distill` cuts a student of at most an eighth of
//! its parameters out of the embedded teacher and distils it on the embedded
//! shop corpus (generated in-process, as `herd data shop` writes it), then
//! trains the same student on cross-entropy alone and writes the comparison
//! report (`distill_report`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use herd_dist::Communicator;
use herd_distill::{
    check_vocabularies, dir_identity, model_identity, tokenizer_identity, write_cache, CacheHeader,
    DistillLoss, Distiller, LocalTeacher, LossSpec, OnPolicy, TeacherCache, TeacherSide,
};
use herd_model::{Config, Llama};
use herd_shop::{Corpus, CorpusOptions};
use herd_tokenizer::Tokenizer;
use herd_train::optim::AdamWConfig;
use herd_train::{DataOptions, Dataset, LossOn, RunFiles, Session, TrainOptions};

use crate::args::ModelArgs;
use crate::distill_student::{load_student, Student};
use crate::load;
use crate::remote_teacher::{self, RemoteArgs};
use crate::train::LossOnArg;

/// The distillation subcommands.
#[derive(Debug, Subcommand)]
pub enum DistillCommand {
    /// Store a teacher's top-k next-token log-probabilities for a dataset (safetensors shards).
    TeacherCache(TeacherCacheArgs),
    /// Train a student on a teacher's distributions (online, cached or on-policy).
    /// With no arguments: the embedded teacher into a new 1/8-size student on the shop corpus.
    Distill(DistillArgs),
}

/// `herd teacher-cache`.
#[derive(Debug, Args)]
pub struct TeacherCacheArgs {
    /// The teacher (Hugging Face directory); default: the embedded teacher.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// JSONL dataset, as for `herd finetune`.
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory of the shards (a rerun completes it).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Log-probabilities kept per token.
    #[arg(short, long, default_value_t = 64)]
    pub k: usize,
    /// Temperature of the stored distributions (distill with the same).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Sequences per shard (the unit a cache is read in; a run resumes per sequence).
    #[arg(long, default_value_t = 256)]
    pub shard_sequences: usize,
    /// With --teacher-url: the model whose tokenizer encodes the data (the
    /// student's; default: the embedded teacher's).
    #[arg(long, requires = "teacher_url")]
    pub tokenizer: Option<PathBuf>,
    /// Print how many sequences, requests and tokens the run still needs, and stop.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    pub data_opts: DataFlags,
}

/// How a JSONL file is read (the same for caching and distilling, so the
/// cached sequences are the ones trained on).
#[derive(Debug, Clone, Args)]
pub struct DataFlags {
    /// Tokens per packed row, the longest example (default: min(context, 1024)).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Cut examples longer than --seq-len instead of rejecting them.
    #[arg(long)]
    pub truncate: bool,
    /// Skip malformed records instead of stopping.
    #[arg(long)]
    pub skip_bad_records: bool,
}

/// Where the default 1/8-size student's first weights come from (`--init`).
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum StudentInit {
    /// Cut out of the teacher (as `herd prune`: its most important layers,
    /// KV heads, MLP and embedding channels on the training data), into
    /// OUT/init. Minitron's recipe: the cut keeps the teacher's embeddings
    /// and features, so distillation starts far closer to the teacher.
    Prune,
    /// Random weights of the widest 1/8-size shape.
    Random,
}

/// Which divergence (`--loss`).
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum LossArg {
    /// Forward KL(teacher ‖ student).
    Fkl,
    /// Reverse KL(student ‖ teacher).
    Rkl,
    /// Generalised Jensen–Shannon with --beta.
    Jsd,
    /// Skew KL with --alpha.
    Skl,
    /// Cross-entropy on the data only (the baseline; no teacher).
    Ce,
}

/// `herd distill`.
#[derive(Debug, Clone, Args)]
pub struct DistillArgs {
    /// Live teacher (Hugging Face directory); default: the embedded teacher,
    /// unless --cache is given.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// A `herd teacher-cache` directory to train from instead of a live teacher.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// With --teacher-url: log-probabilities cached per token before training
    /// (capped at the server's top_logprobs limit) in OUT/teacher-cache.
    #[arg(long, default_value_t = 20, requires = "teacher_url")]
    pub teacher_k: usize,
    /// An existing student (Hugging Face directory) to start from.
    #[arg(long, conflicts_with = "student_config")]
    pub student: Option<PathBuf>,
    /// A config.json for a new student with random weights (the teacher's tokenizer).
    #[arg(long)]
    pub student_config: Option<PathBuf>,
    /// Which tokens the loss covers: the assistant's replies, or every token
    /// (the teacher then also supervises the system, user and tool turns).
    #[arg(long, value_enum, default_value_t = LossOnArg::Assistant)]
    pub loss_on: LossOnArg,
    /// How the default new student (no --student, no --student-config) starts.
    #[arg(long, value_enum, default_value_t = StudentInit::Prune)]
    pub init: StudentInit,
    /// JSONL dataset; default: the embedded shop corpus, written to OUT/data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output directory: the student, checkpoint, metrics.jsonl, loss.png, summary.json.
    #[arg(long, short = 'o', default_value = "distilled")]
    pub out: PathBuf,
    /// The divergence.
    #[arg(long, value_enum, default_value_t = LossArg::Fkl)]
    pub loss: LossArg,
    /// Softmax temperature of both distributions (default: the cache's, else 1).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Share of the distillation term; the rest is cross-entropy on the data.
    #[arg(long, default_value_t = 1.0)]
    pub kd_weight: f64,
    /// JSD's teacher weight β.
    #[arg(long, default_value_t = 0.5)]
    pub beta: f64,
    /// Skew KL's α.
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f64,
    /// λ: share of examples whose reply the student samples and the teacher scores (GKD).
    #[arg(long, default_value_t = 0.0)]
    pub on_policy: f64,
    /// Student sampling temperature for --on-policy.
    #[arg(long, default_value_t = 1.0)]
    pub sample_temperature: f32,
    /// Train a LoRA adapter of this rank on --student instead of every weight.
    #[arg(long, requires = "student")]
    pub lora_rank: Option<usize>,
    /// Optimizer steps (the default fits the embedded distillation in about
    /// 15 minutes on two cores; its baseline and report take about 10 more).
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Peak learning rate (default: 3e-3 for the 1/8-size student, 1e-3 for
    /// --student-config, 2e-5 for --student, 2e-4 for LoRA).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Input positions per micro-batch.
    #[arg(long, default_value_t = 2048)]
    pub batch_tokens: usize,
    /// Micro-batches per step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Seeds data order, new weights and on-policy sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of the examples held out for the validation loss (cross-entropy).
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Checkpoint every N steps (0: only when stopped); Ctrl-C always checkpoints.
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Continue from --out/checkpoint.safetensors.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// On the embedded corpus, skip the cross-entropy-only baseline and the
    /// comparison report (OUT/report.md) that follow the distillation.
    #[arg(long)]
    pub no_report: bool,
    /// Test cases the report scores each model on.
    #[arg(long, default_value_t = 200)]
    pub report_cases: usize,
    #[command(flatten)]
    pub data_opts: DataFlags,
    #[command(flatten)]
    pub comm: crate::parallel::CommArgs,
}

pub fn run(command: DistillCommand) -> anyhow::Result<ExitCode> {
    match command {
        DistillCommand::TeacherCache(args) => teacher_cache(args),
        DistillCommand::Distill(args) => distill(args),
    }
}

/// A loaded teacher with what identifies it.
pub(crate) struct Teacher {
    pub(crate) model: Arc<Llama>,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) identity: String,
    pub(crate) name: String,
    /// Its config.json text (a fresh student copies it).
    pub(crate) config_json: String,
    /// Where its tokenizer files are (None: embedded).
    pub(crate) dir: Option<PathBuf>,
}

fn load_teacher(path: Option<&Path>) -> anyhow::Result<Teacher> {
    let loaded = load::load(&ModelArgs {
        model: path.map(Path::to_path_buf),
        quantize: None,
        lora: None,
    })?;
    let (identity, config_json) = match path {
        Some(p) if p.is_dir() => {
            let cfg = p.join("config.json");
            let text = std::fs::read_to_string(&cfg)
                .with_context(|| format!("reading {}", cfg.display()))?;
            (dir_identity(p)?, text)
        }
        Some(p) => anyhow::bail!(
            "{}: a teacher must be a Hugging Face directory",
            p.display()
        ),
        None => (
            model_identity(
                load::embedded::CONFIG.as_bytes(),
                &[load::embedded::WEIGHTS],
            ),
            load::embedded::CONFIG.to_string(),
        ),
    };
    Ok(Teacher {
        model: Arc::new(loaded.model),
        tokenizer: loaded.tokenizer,
        identity,
        name: loaded.name,
        config_json,
        dir: path.map(Path::to_path_buf),
    })
}

pub(crate) fn data_options(
    flags: &DataFlags,
    config: &Config,
    validation_fraction: f64,
) -> anyhow::Result<DataOptions> {
    let seq_len = crate::train::seq_len(flags.seq_len, config)?;
    Ok(DataOptions {
        loss_on: LossOn::Assistant,
        skip_bad_records: flags.skip_bad_records,
        seq_len,
        truncate: flags.truncate,
        validation_fraction,
    })
}

fn teacher_cache(args: TeacherCacheArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.remote.teacher_url {
        return remote_teacher::teacher_cache(&args, url);
    }
    let teacher = load_teacher(args.teacher.as_deref())?;
    let opts = data_options(&args.data_opts, teacher.model.config(), 0.0)?;
    let data = Dataset::load(&args.data, &teacher.tokenizer, &opts)?;
    let seqs: Vec<&[u32]> = data.train.iter().map(|e| e.ids.as_slice()).collect();
    let source = LocalTeacher::new(teacher.model.clone(), teacher.identity.clone());
    let info = herd_distill::TopKSource::info(&source);
    let tok = tokenizer_identity(&teacher.tokenizer)?;
    let header = CacheHeader::new(
        &info,
        tok,
        args.k,
        args.temperature,
        &seqs,
        args.shard_sequences,
    )?;
    if header.k < args.k {
        eprintln!("k capped at {} by the teacher", header.k);
    }
    if args.dry_run {
        let plan = herd_distill::cache_plan(&seqs, &header, &args.output)?;
        println!(
            "dry run: {} sequences to score ({} already cached in {}); {} tokens through {}",
            plan.sequences,
            plan.done,
            args.output.display(),
            plan.tokens,
            teacher.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    let summary = write_cache(&source, &seqs, &header, &args.output, &mut |done, total| {
        eprint!(
            "\rsequence {done}/{total} ({:.0} s)",
            start.elapsed().as_secs_f64()
        );
    })?;
    eprintln!();
    println!(
        "{}: {} sequences, {} tokens, top-{} at temperature {} of {} ({} shards written, {} already complete); {:.1} bytes/token",
        args.output.display(),
        seqs.len(),
        summary.tokens,
        header.k,
        header.temperature,
        teacher.name,
        summary.written,
        summary.skipped,
        summary.bytes_per_token()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--data`, or the embedded shop corpus written to OUT/data (by rank 0;
/// every rank of `comm` must call this).
fn data_path(args: &DistillArgs, comm: &dyn Communicator) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.data {
        return Ok(path.clone());
    }
    let dir = args.out.join("data");
    if comm.rank() == 0 {
        let corpus = Corpus::generate(&CorpusOptions::default())?;
        corpus.write(&dir)?;
        eprintln!(
            "wrote the shop corpus to {} (train.jsonl, valid.jsonl, test.jsonl)",
            dir.display()
        );
    }
    comm.barrier()?;
    Ok(dir.join("train.jsonl"))
}

fn loss_spec(args: &DistillArgs, temperature: f64) -> LossSpec {
    let loss = match args.loss {
        LossArg::Fkl => DistillLoss::ForwardKl,
        LossArg::Rkl => DistillLoss::ReverseKl,
        LossArg::Jsd => DistillLoss::Jsd { beta: args.beta },
        LossArg::Skl => DistillLoss::SkewKl { alpha: args.alpha },
        LossArg::Ce => DistillLoss::CrossEntropy,
    };
    LossSpec {
        loss,
        temperature,
        kd_weight: args.kd_weight,
    }
}

/// Teacher rows for the data (cache or live) and the live teacher, checked
/// against the student's tokenizer.
struct Teachers {
    data: Option<Arc<dyn TeacherSide>>,
    live: Option<Arc<dyn TeacherSide>>,
    identity: String,
    temperature: f64,
}

fn teachers(
    args: &DistillArgs,
    cache: Option<&Path>,
    teacher: Option<&Teacher>,
    student: &Student,
) -> anyhow::Result<Teachers> {
    let live: Option<Arc<dyn TeacherSide>> = teacher.map(|t| {
        Arc::new(LocalTeacher::new(t.model.clone(), t.identity.clone())) as Arc<dyn TeacherSide>
    });
    let Some(dir) = cache else {
        return Ok(Teachers {
            data: live.clone(),
            live,
            identity: teacher.map(|t| t.identity.clone()).unwrap_or_default(),
            temperature: args.temperature.unwrap_or(1.0),
        });
    };
    let cache = TeacherCache::open(dir)?;
    let temperature = args.temperature.unwrap_or(cache.header().temperature);
    let tok = tokenizer_identity(&student.tokenizer)?;
    cache.verify(&tok, teacher.map(|t| t.identity.as_str()), temperature)?;
    Ok(Teachers {
        identity: cache.header().teacher.clone(),
        data: Some(Arc::new(cache)),
        live,
        temperature,
    })
}

fn distill(args: DistillArgs) -> anyhow::Result<ExitCode> {
    // Under `mpirun -np N`: N data-parallel ranks share every batch.
    let Some(comm) = crate::parallel::data_parallel(args.comm)? else {
        return Ok(ExitCode::FAILURE);
    };
    let comm = &*comm;
    if comm.size() > 1 && args.remote.teacher_url.is_some() {
        anyhow::bail!(
            "--teacher-url under mpirun: score the data once with `herd teacher-cache \
             --teacher-url ...`, then distill from it with --cache"
        );
    }
    let report = crate::distill_report::applies(&args);
    if report && args.report_cases == 0 {
        anyhow::bail!("--report-cases must be at least 1 (or pass --no-report)");
    }
    // A finished distillation whose baseline or report was interrupted.
    if report && args.resume && crate::distill_report::finished(&args.out) {
        return crate::distill_report::run(&args, comm);
    }
    let code = train_student(args.clone(), comm)?;
    if report && code == ExitCode::SUCCESS {
        return crate::distill_report::run(&args, comm);
    }
    Ok(code)
}

/// One training run: the distillation, or the baseline (`--loss ce`), as
/// one rank of the data-parallel group `comm`.
pub(crate) fn train_student(
    args: DistillArgs,
    comm: &dyn Communicator,
) -> anyhow::Result<ExitCode> {
    if args.resume && !herd_train::has_checkpoint(&args.out) {
        anyhow::bail!("--resume: {} holds no checkpoint", args.out.display());
    }
    if !args.resume && herd_train::holds_run(&args.out) {
        anyhow::bail!(
            "{} already holds a training run; pass --resume to continue it, or choose another --out",
            args.out.display()
        );
    }
    // The embedded corpus is written to OUT/data once, then read from there.
    let args = DistillArgs {
        data: Some(data_path(&args, comm)?),
        ..args
    };
    let uses_teacher = !matches!(args.loss, LossArg::Ce) && args.kd_weight > 0.0;
    let remote = args.remote.teacher_url.is_some();
    if remote && (args.cache.is_some() || args.on_policy > 0.0) {
        anyhow::bail!("--teacher-url scores the data into a cache: it cannot be combined with --cache or --on-policy");
    }
    // A live teacher: asked for, or needed to score (no cache, on-policy),
    // or to size and tokenize a new student.
    let want_live = args.teacher.is_some()
        || (uses_teacher && args.cache.is_none() && !remote)
        || args.on_policy > 0.0
        || args.student.is_none();
    let teacher = match want_live {
        true => Some(load_teacher(args.teacher.as_deref())?),
        false => None,
    };
    let student = load_student(&args, teacher.as_ref(), comm)?;
    let vocab = match &teacher {
        Some(t) => check_vocabularies(
            (&t.tokenizer, t.model.config().vocab_size),
            (&student.tokenizer, student.model.config().vocab_size),
        )?,
        None => student.model.config().vocab_size,
    };
    // With --teacher-url the local model (if loaded) only shaped the student.
    let (cache, teacher) = match &args.remote.teacher_url {
        Some(_) if !uses_teacher => (None, None),
        Some(url) => {
            let dir = remote_teacher::cache_for_distill(
                &args.remote,
                url,
                args.teacher_k,
                &data_path(&args, comm)?,
                &args.data_opts,
                (&student.tokenizer, student.model.config()),
                &args.out,
            )?;
            (Some(dir), None)
        }
        None => (args.cache.clone(), teacher),
    };
    let teachers = teachers(&args, cache.as_deref(), teacher.as_ref(), &student)?;
    let run = Run {
        teacher: teacher.as_ref(),
        student,
        teachers,
        vocab,
        comm,
    };
    run_distill(&args, run)
}

/// What one distillation run trains, from what, with whom.
struct Run<'a> {
    teacher: Option<&'a Teacher>,
    student: Student,
    teachers: Teachers,
    vocab: usize,
    comm: &'a dyn Communicator,
}

/// Set by Ctrl-C. One handler per process: the baseline run after the
/// distillation shares it.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    if let Some(flag) = FLAG.get() {
        return Ok(flag.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let handler = flag.clone();
    ctrlc::set_handler(move || handler.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    Ok(FLAG.get_or_init(|| flag).clone())
}

fn run_distill(args: &DistillArgs, run: Run<'_>) -> anyhow::Result<ExitCode> {
    let Run {
        teacher,
        student,
        teachers,
        vocab,
        comm,
    } = run;
    let lead = comm.rank() == 0;
    let data_path = data_path(args, comm)?;
    let opts = DataOptions {
        loss_on: args.loss_on.into(),
        ..data_options(&args.data_opts, student.model.config(), args.val_fraction)?
    };
    let data = Dataset::load(&data_path, &student.tokenizer, &opts)?;
    let options = TrainOptions {
        steps: args.steps,
        lr: args.lr.unwrap_or(student.default_lr),
        warmup: args.steps / 10,
        min_lr_ratio: 0.1,
        adamw: AdamWConfig::default(),
        batch_tokens: args.batch_tokens,
        grad_accum: args.grad_accum,
        clip: Some(1.0),
        seed: args.seed,
        seq_len: opts.seq_len,
        // A validation pass costs tens of steps on two cores: four per run.
        eval_every: (args.steps / 4).max(1),
        save_every: args.save_every,
    };
    options.validate()?;
    let distiller = Distiller {
        spec: loss_spec(args, teachers.temperature),
        vocab,
        teacher: teachers.data,
        live: teachers.live,
        on_policy: (args.on_policy > 0.0).then(|| OnPolicy {
            fraction: args.on_policy,
            temperature: args.sample_temperature,
            stop_ids: student.tokenizer.stop_ids(),
        }),
        seq_len: opts.seq_len,
        seed: args.seed,
        teacher_identity: teachers.identity,
    };
    distiller.validate()?;
    let files = RunFiles {
        dir: args.out.clone(),
        progress: !args.quiet,
    };
    if lead {
        eprintln!(
            "distilling {} into a student of {} parameters ({} trained) with {:?} on {} examples for {} steps{}",
            teacher.map_or("the cached teacher", |t| t.name.as_str()),
            student.model.config().num_parameters(),
            student.model.trainable_parameters(),
            distiller.spec.loss,
            data.train.len(),
            options.steps,
            match comm.size() {
                1 => String::new(),
                n => format!(" on {n} data-parallel ranks"),
            }
        );
    }
    let stop = stop_flag()?;
    let started = Instant::now();
    let session = Session {
        files: &files,
        resume: args.resume,
        stop: &|_| stop.load(Ordering::SeqCst),
        objective: &distiller,
        comm,
    };
    let report = herd_train::train_in(&student.model, &data, &options, &session)?;
    if !lead {
        // Rank 0 reports and writes the student.
        return Ok(ExitCode::from(if report.interrupted { 130 } else { 0 }));
    }
    eprintln!("{report}");
    if report.interrupted {
        eprintln!(
            "checkpoint: {} (continue with the same command and --resume)",
            files.checkpoint().display()
        );
        return Ok(ExitCode::from(130));
    }
    let base = args
        .student
        .as_ref()
        .map_or("scratch".to_string(), |p| p.display().to_string());
    herd_train::save_trained(
        &args.out,
        &student.model,
        &student.config_json,
        &student.tokenizer_dir,
        &base,
    )?;
    let summary = serde_json::json!({
        "teacher": teacher.map(|t| t.name.clone()),
        "teacher_identity": distiller.teacher_identity,
        "teacher_parameters": teacher.map(|t| t.model.config().num_parameters()),
        "student_parameters": student.model.config().num_parameters(),
        "trained_parameters": student.model.trainable_parameters(),
        "loss": format!("{:?}", distiller.spec),
        "on_policy": args.on_policy,
        "data": data_path.display().to_string(),
        "steps": report.step,
        "final_loss": report.losses.last().map(|l| l.1),
        "validation_cross_entropy": report.validation.last().map(|v| v.1),
        "seconds": started.elapsed().as_secs_f64(),
    });
    let path = args.out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary)?;
    herd_train::io::write_atomic(&path, text.as_bytes())?;
    println!("{text}");
    eprintln!(
        "wrote {} (score it: herd eval -m {} --data {})",
        args.out.display(),
        args.out.display(),
        data_path.with_file_name("test.jsonl").display()
    );
    Ok(ExitCode::SUCCESS)
}
