//! `--teacher-url` for `herd teacher-cache` and `herd distill`: a teacher
//! behind an OpenAI-compatible server scores the data with `/v1/completions`
//! `echo` + `logprobs` into the same teacher cache a local teacher writes
//! (herd-distill's `RemoteSource`); `distill` then trains from that cache.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use herd_distill::{
    cache_plan, tokenizer_identity, write_cache, CacheHeader, CacheSummary, KLimit, RemoteSource,
    TopKSource,
};
use herd_model::Config;
use herd_remote::{RemoteConfig, RemoteTeacher, RetryPolicy};
use herd_tokenizer::Tokenizer;
use herd_train::Dataset;
use indicatif::{ProgressBar, ProgressStyle};

use crate::distill::{data_options, DataFlags};
use crate::load;

/// Where a remote teacher is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// A remote teacher: an OpenAI-compatible base URL such as
    /// http://127.0.0.1:8000/v1 that scores text with /v1/completions echo + logprobs
    /// (herd serve, vLLM, llama.cpp's server).
    #[arg(long, conflicts_with = "teacher")]
    pub teacher_url: Option<String>,
    /// The remote model id (default: the only one the server lists).
    #[arg(long, requires = "teacher_url")]
    pub teacher_model: Option<String>,
    /// Environment variable holding the remote teacher's API key.
    #[arg(long, value_name = "VAR", requires = "teacher_url")]
    pub teacher_api_key_env: Option<String>,
    /// Sequences a remote teacher scores at once.
    #[arg(long, default_value_t = 8)]
    pub teacher_concurrency: usize,
    /// Most HTTP requests to send to the remote teacher, retries included.
    #[arg(long, requires = "teacher_url")]
    pub max_requests: Option<u64>,
    /// Retries of a failed remote request (429, 5xx, timeouts, refused connections).
    #[arg(long, default_value_t = RetryPolicy::default().max_retries)]
    pub max_retries: u32,
}

/// The data a cache covers: every record of a JSONL file, encoded with the
/// local tokenizer (`val_fraction` 0, as `herd teacher-cache` reads it).
pub struct CacheData {
    /// The examples' ids.
    pub sequences: Vec<Vec<u32>>,
}

impl CacheData {
    pub fn load(
        path: &Path,
        tokenizer: &Tokenizer,
        flags: &DataFlags,
        config: &Config,
    ) -> anyhow::Result<CacheData> {
        let opts = data_options(flags, config, 0.0)?;
        let data = Dataset::load(path, tokenizer, &opts)?;
        Ok(CacheData {
            sequences: data.train.into_iter().map(|e| e.ids).collect(),
        })
    }

    fn slices(&self) -> Vec<&[u32]> {
        self.sequences.iter().map(Vec::as_slice).collect()
    }
}

/// Connects (checking URL, key and model before any work) and prepares the
/// scorer: the teacher's tokenizer must be `tokenizer`, k is capped at its
/// `top_logprobs` limit.
pub fn connect<'t>(
    remote: &RemoteArgs,
    url: &str,
    tokenizer: &'t Tokenizer,
    k: usize,
) -> anyhow::Result<RemoteSource<'t>> {
    let api_key = api_key(
        "--teacher-api-key-env",
        remote.teacher_api_key_env.as_deref(),
    )?;
    let config = RemoteConfig {
        model: remote.teacher_model.clone(),
        api_key,
        concurrency: remote.teacher_concurrency.max(1),
        retry: RetryPolicy {
            max_retries: remote.max_retries,
            ..RetryPolicy::default()
        },
        max_requests: remote.max_requests,
        ..RemoteConfig::new(url)
    };
    let teacher =
        RemoteTeacher::connect(&config).with_context(|| match &remote.teacher_api_key_env {
            Some(var) => format!("connecting to the teacher at {url} (API key from ${var})"),
            None => format!("connecting to the teacher at {url} (no --teacher-api-key-env given)"),
        })?;
    Ok(RemoteSource::new(
        teacher,
        tokenizer,
        k,
        remote.teacher_concurrency,
    )?)
}

/// The API key in the environment variable `var` names (given with `flag`).
pub fn api_key(flag: &str, var: Option<&str>) -> anyhow::Result<Option<String>> {
    var.map(|var| {
        std::env::var(var)
            .with_context(|| format!("{flag} {var}: the environment variable is not set"))
    })
    .transpose()
}

/// The local side of `teacher-cache --teacher-url`: the configuration
/// (for --seq-len's default) and tokenizer of `--tokenizer`, or of the
/// embedded teacher.
pub fn local_side(model: Option<&Path>) -> anyhow::Result<(Config, Tokenizer)> {
    match model {
        Some(path) => {
            let (checkpoint, tokenizer) = load::open(path)?;
            Ok((checkpoint.config, tokenizer))
        }
        None => {
            let config =
                Config::from_json(load::embedded::CONFIG, Path::new(load::embedded::NAME))?;
            let tokenizer = load::tokenizer(&crate::args::ModelArgs {
                model: None,
                quantize: None,
                lora: None,
            })?;
            Ok((config, tokenizer))
        }
    }
}

/// What one `--teacher-url` caching pass needs.
pub struct RemotePass<'a> {
    pub source: &'a RemoteSource<'a>,
    pub tokenizer: &'a Tokenizer,
    pub data: &'a CacheData,
    pub output: &'a Path,
    pub k: usize,
    pub shard_sequences: usize,
}

impl RemotePass<'_> {
    /// The cache header: k as granted, temperature 1 (all a server gives).
    pub fn header(&self) -> anyhow::Result<CacheHeader> {
        Ok(CacheHeader::new(
            &self.source.info(),
            tokenizer_identity(self.tokenizer)?,
            self.k,
            1.0,
            &self.data.slices(),
            self.shard_sequences,
        )?)
    }

    /// Prints what the run still needs (requests, tokens) without scoring.
    pub fn dry_run(&self) -> anyhow::Result<()> {
        let header = self.header()?;
        let plan = cache_plan(&self.data.slices(), &header, self.output)?;
        let traffic = self.source.traffic();
        println!(
            "dry run: {} sequences to score ({} already cached in {}); {} requests to {} \
             (one per sequence, plus retries; {} spent connecting and checking the tokenizer); \
             {} prompt tokens sent, {} positions × top-{} returned ({})",
            plan.sequences,
            plan.done,
            self.output.display(),
            plan.sequences,
            self.source.info().source,
            traffic.requests,
            plan.tokens,
            plan.positions,
            header.k,
            k_note(&header),
        );
        Ok(())
    }

    /// Scores what is missing into the cache, with a progress bar; an
    /// interruption keeps every scored sequence for the next run.
    pub fn run(&self) -> anyhow::Result<CacheSummary> {
        let header = self.header()?;
        eprintln!("caching top-{} ({})", header.k, k_note(&header));
        let seqs = self.data.slices();
        let bar = ProgressBar::new(seqs.len() as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "sequences {pos}/{len} [{bar:30}] {per_sec} · {elapsed_precise} elapsed, ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let result = write_cache(self.source, &seqs, &header, self.output, &mut |done, _| {
            bar.set_position(done as u64)
        });
        bar.finish_and_clear();
        let traffic = self.source.traffic();
        eprintln!(
            "teacher traffic: {} requests ({} retries), {} KiB sent, {} KiB received",
            traffic.requests,
            traffic.retries,
            traffic.bytes_sent / 1024,
            traffic.bytes_received / 1024
        );
        result.with_context(|| {
            format!(
                "scoring stopped; every sequence scored so far is kept in {}: run the same \
                 command to resume",
                self.output.display()
            )
        })
    }
}

/// Where k came from, in words.
fn k_note(header: &CacheHeader) -> String {
    match header.limited_by {
        KLimit::Teacher => format!(
            "k capped at the server's top_logprobs limit of {}; {} asked",
            header.k, header.k_asked
        ),
        KLimit::Vocabulary => format!("k capped at the vocabulary; {} asked", header.k_asked),
        KLimit::None => "k as asked".into(),
    }
}

/// `herd teacher-cache --teacher-url`.
pub fn teacher_cache(
    args: &crate::distill::TeacherCacheArgs,
    url: &str,
) -> anyhow::Result<ExitCode> {
    let (config, tokenizer) = local_side(args.tokenizer.as_deref())?;
    let data = CacheData::load(&args.data, &tokenizer, &args.data_opts, &config)?;
    if args.temperature != 1.0 {
        anyhow::bail!(
            "--temperature {}: a remote teacher returns log-probabilities at temperature 1 \
             only; cache at 1 (distill then uses the cache's temperature)",
            args.temperature
        );
    }
    let source = connect(&args.remote, url, &tokenizer, args.k)?;
    let pass = RemotePass {
        source: &source,
        tokenizer: &tokenizer,
        data: &data,
        output: &args.output,
        k: args.k,
        shard_sequences: args.shard_sequences,
    };
    if args.dry_run {
        pass.dry_run()?;
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    let summary = pass.run()?;
    println!("{}", summary_line(&pass, &summary, start.elapsed())?);
    Ok(ExitCode::SUCCESS)
}

/// One line: what the cache holds, what this run did, what it cost.
fn summary_line(
    pass: &RemotePass,
    summary: &CacheSummary,
    elapsed: std::time::Duration,
) -> anyhow::Result<String> {
    let header = pass.header()?;
    let traffic = pass.source.traffic();
    Ok(format!(
        "{}: {} sequences, {} tokens, top-{} at temperature 1 of {} ({} sequences scored now, \
         {} resumed from an interrupted run; {} shards written, {} already complete) in {:.1} s; \
         {:.1} bytes/token on disk; this run: {} requests, {} bytes sent, {} bytes received",
        pass.output.display(),
        pass.data.sequences.len(),
        summary.tokens,
        header.k,
        header.source,
        summary.scored,
        summary.resumed,
        summary.written,
        summary.skipped,
        elapsed.as_secs_f64(),
        summary.bytes_per_token(),
        traffic.requests,
        traffic.bytes_sent,
        traffic.bytes_received,
    ))
}

/// `distill --teacher-url`: scores the training data into OUT/teacher-cache
/// (resumed like `teacher-cache`) and returns the directory to train from.
pub fn cache_for_distill(
    remote: &RemoteArgs,
    url: &str,
    k: usize,
    data_path: &Path,
    flags: &DataFlags,
    student: (&Tokenizer, &Config),
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let (tokenizer, config) = student;
    let data = CacheData::load(data_path, tokenizer, flags, config)?;
    let source = connect(remote, url, tokenizer, k)?;
    let output = out.join("teacher-cache");
    let pass = RemotePass {
        source: &source,
        tokenizer,
        data: &data,
        output: &output,
        k,
        shard_sequences: 256,
    };
    let start = Instant::now();
    let summary = pass.run()?;
    eprintln!("{}", summary_line(&pass, &summary, start.elapsed())?);
    Ok(output)
}
