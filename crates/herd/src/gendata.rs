//! `herd generate-data`: synthetic training data from a local teacher
//! (through the serving engine) or a remote OpenAI-compatible one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use herd_datagen::{
    plan, read_finished, read_prompts, Counts, Filter, LocalTeacher, Output, Plan, Prompt,
    RunOptions, SampleSpec, Teacher,
};
use herd_engine::{EngineConfig, EngineHandle, Sampling, SamplingParams};
use herd_remote::{RemoteConfig, RemoteTeacher, RetryPolicy, TokenMap};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{ModelArgs, SamplingArgs};
use crate::load::{load, open, stop_ids};

/// `herd generate-data`.
#[derive(Debug, Args)]
pub struct GenerateDataArgs {
    /// The teacher: a model directory or GGUF file run in this process
    /// (default: the embedded teacher).
    #[arg(long, conflicts_with = "teacher_url")]
    pub teacher: Option<PathBuf>,
    /// A remote teacher: an OpenAI-compatible base URL such as
    /// http://127.0.0.1:8000/v1 (herd serve, vLLM, llama.cpp's server).
    #[arg(long)]
    pub teacher_url: Option<String>,
    /// The remote model id (default: the only one the server lists).
    #[arg(long, requires = "teacher_url")]
    pub teacher_model: Option<String>,
    /// Environment variable holding the remote teacher's API key.
    #[arg(long, value_name = "VAR", requires = "teacher_url")]
    pub teacher_api_key_env: Option<String>,
    /// JSONL prompts: {"prompt": "..."} or {"messages": [...], "tools": [...]} per line.
    #[arg(long)]
    pub prompts: PathBuf,
    /// The JSONL file to write (resumed if an interrupted run left it).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Samples per prompt.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// System prompt for prompts that have none.
    #[arg(long)]
    pub system: Option<String>,
    /// Keep only samples whose mean token log-probability is at least this.
    #[arg(long, allow_negative_numbers = true)]
    pub min_mean_logprob: Option<f32>,
    /// Shell command that gets each record on stdin; exit status 0 keeps it.
    #[arg(long)]
    pub verifier: Option<String>,
    /// Keep samples cut off by --max-tokens (dropped by default).
    #[arg(long)]
    pub keep_truncated: bool,
    /// Prompts asked at once (default: 8 remote, 16 local).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Most HTTP requests to send to a remote teacher, retries included.
    #[arg(long, requires = "teacher_url")]
    pub max_requests: Option<u64>,
    /// Retries of a failed remote request (429, 5xx, timeouts, refused connections).
    #[arg(long, default_value_t = RetryPolicy::default().max_retries)]
    pub max_retries: u32,
    /// Refuse a remote teacher whose tokenizer differs from this model's
    /// (the student the data is for).
    #[arg(long, requires = "teacher_url")]
    pub student: Option<PathBuf>,
    /// Print how many requests and tokens the run needs, and stop.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: GenerateDataArgs) -> anyhow::Result<ExitCode> {
    if args.samples == 0 {
        anyhow::bail!("--samples must be at least 1");
    }
    let prompts = read_prompts(&args.prompts, args.system.as_deref())?;
    let options = RunOptions {
        spec: SampleSpec {
            n: args.samples,
            max_tokens: args.sampling.max_tokens,
            sampling: sampling(&args.sampling)?,
            logprobs: args.min_mean_logprob.is_some(),
        },
        filter: Filter {
            min_mean_logprob: args.min_mean_logprob,
            verifier: args.verifier.clone(),
            keep_truncated: args.keep_truncated,
        },
        concurrency: args
            .concurrency
            .unwrap_or(if args.teacher_url.is_some() { 8 } else { 16 }),
    };
    match &args.teacher_url {
        Some(url) => remote(&args, url, &prompts, &options),
        None => local(&args, &prompts, &options),
    }
}

/// Sampling as the flags say; unlike `generate`, the teacher's
/// generation_config is not consulted (temperature 1 unless told otherwise),
/// so a local and a remote teacher sample alike.
fn sampling(args: &SamplingArgs) -> anyhow::Result<SamplingParams> {
    let sampling = if args.greedy || args.temperature == Some(0.0) {
        Sampling::Greedy
    } else {
        Sampling::Random {
            temperature: args.temperature.unwrap_or(1.0),
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
        }
    };
    let params = SamplingParams {
        sampling,
        repetition_penalty: args.repetition_penalty.unwrap_or(1.0),
        seed: args.seed,
    };
    params.validate()?;
    Ok(params)
}

fn local(
    args: &GenerateDataArgs,
    prompts: &[Prompt],
    options: &RunOptions,
) -> anyhow::Result<ExitCode> {
    let loaded = load(&ModelArgs {
        model: args.teacher.clone(),
        quantize: None,
        lora: None,
    })?;
    let settings = options.settings(&loaded.name);
    let context = loaded.model.config().max_position_embeddings;
    for (i, prompt) in prompts.iter().enumerate() {
        let len = prompt.encode(&loaded.tokenizer)?.len();
        if len + 1 >= context {
            anyhow::bail!(
                "{}: prompt {} is {len} tokens, leaving no room in the teacher's context of {context}",
                args.prompts.display(),
                i + 1
            );
        }
    }
    if args.dry_run {
        let finished = read_finished(&args.output, &settings)?;
        let plan = plan(prompts, &finished, &options.spec, Some(&loaded.tokenizer))?;
        print_plan(
            &plan,
            &format!("the local teacher {}", loaded.name),
            options,
        );
        return Ok(ExitCode::SUCCESS);
    }
    let stops = stop_ids(&loaded);
    let engine = EngineHandle::start(
        Arc::new(loaded.model),
        EngineConfig {
            max_num_seqs: (options.concurrency * options.spec.n).max(1),
            ..EngineConfig::default()
        },
    )?;
    let teacher = LocalTeacher::new(engine, Arc::new(loaded.tokenizer), stops);
    generate(&teacher, args, prompts, options, &settings)?;
    Ok(ExitCode::SUCCESS)
}

fn remote(
    args: &GenerateDataArgs,
    url: &str,
    prompts: &[Prompt],
    options: &RunOptions,
) -> anyhow::Result<ExitCode> {
    let api_key = match &args.teacher_api_key_env {
        Some(var) => Some(std::env::var(var).with_context(|| {
            format!("--teacher-api-key-env {var}: the environment variable is not set")
        })?),
        None => None,
    };
    let identity = format!(
        "{url} {}",
        args.teacher_model.as_deref().unwrap_or("(only model)")
    );
    let settings = options.settings(&identity);
    let student = match &args.student {
        Some(path) => Some(open(path)?.1),
        None => None,
    };
    if args.dry_run {
        let finished = read_finished(&args.output, &settings)?;
        let plan = plan(prompts, &finished, &options.spec, student.as_ref())?;
        print_plan(&plan, &format!("the teacher at {url}"), options);
        return Ok(ExitCode::SUCCESS);
    }
    let config = RemoteConfig {
        model: args.teacher_model.clone(),
        api_key,
        concurrency: options.concurrency,
        retry: RetryPolicy {
            max_retries: args.max_retries,
            ..RetryPolicy::default()
        },
        max_requests: args.max_requests,
        ..RemoteConfig::new(url)
    };
    let teacher =
        RemoteTeacher::connect(&config).with_context(|| match &args.teacher_api_key_env {
            Some(var) => format!("connecting to the teacher (API key from ${var})"),
            None => "connecting to the teacher (no --teacher-api-key-env given)".to_owned(),
        })?;
    if let Some(tokenizer) = &student {
        teacher.verify_tokenizer(tokenizer, &TokenMap::new(tokenizer)?)?;
    }
    let result = generate(&teacher, args, prompts, options, &settings);
    let t = teacher.traffic();
    eprintln!(
        "teacher traffic: {} requests ({} retries), {} KiB sent, {} KiB received",
        t.requests,
        t.retries,
        t.bytes_sent / 1024,
        t.bytes_received / 1024
    );
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Opens (or resumes) the output and runs the prompts with a progress bar.
fn generate(
    teacher: &dyn Teacher,
    args: &GenerateDataArgs,
    prompts: &[Prompt],
    options: &RunOptions,
    settings: &serde_json::Value,
) -> anyhow::Result<()> {
    let (mut output, finished) = Output::open(&args.output, settings)?;
    let resumed = finished.counts;
    if resumed.prompts > 0 {
        eprintln!(
            "resuming {}: {} of {} prompts already done",
            args.output.display(),
            resumed.prompts,
            prompts.len()
        );
    }
    let n = options.spec.n as u64;
    let bar = progress_bar(prompts.len() as u64 * n, resumed.prompts * n);
    let start = Instant::now();
    let result = herd_datagen::run(teacher, prompts, &mut output, finished, options, &mut |c| {
        bar.set_position(c.prompts * n);
        bar.set_message(format!("{} kept", c.written));
    });
    bar.finish_and_clear();
    let counts = result.with_context(|| {
        format!(
            "generation stopped; finished prompts are kept in {}: run the same command to resume",
            args.output.display()
        )
    })?;
    print_summary(&args.output, &counts, &resumed, start.elapsed(), n);
    Ok(())
}

fn progress_bar(total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "samples {pos}/{len} [{bar:30}] {msg} · {per_sec} · {elapsed_precise} elapsed, ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(done);
    bar.reset_eta();
    bar
}

fn print_summary(output: &Path, counts: &Counts, resumed: &Counts, elapsed: Duration, n: u64) {
    let new_samples = (counts.prompts - resumed.prompts) * n;
    println!(
        "{}: {} samples kept from {} prompts ({} duplicates, {} rejected, {} cut off dropped); \
         this run: {new_samples} samples, {} tokens in {:.1} s ({:.1} samples/s)",
        output.display(),
        counts.written,
        counts.prompts,
        counts.duplicates,
        counts.rejected,
        counts.truncated,
        counts.tokens - resumed.tokens,
        elapsed.as_secs_f64(),
        new_samples as f64 / elapsed.as_secs_f64().max(1e-9),
    );
}

fn print_plan(plan: &Plan, teacher: &str, options: &RunOptions) {
    let prompt_tokens = plan.prompt_tokens.map_or(
        "prompt tokens not counted (give --student to count them)".to_owned(),
        |t| format!("{t} prompt tokens"),
    );
    println!(
        "dry run: {} prompts to do ({} already done) × {} samples = {} sequences; \
         {} requests to {teacher}; {prompt_tokens}; at most {} generated tokens (--max-tokens {})",
        plan.prompts,
        plan.finished,
        options.spec.n,
        plan.sequences,
        plan.requests,
        plan.max_generated_tokens,
        options.spec.max_tokens,
    );
}
