//! `herd eval`: scores a model on the shop corpus's test split — exact match,
//! tool-call validity and the perplexity of the gold replies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use herd_shop::eval::{evaluate, CaseResult, EvalOptions, EvalReport};
use herd_shop::expected::Expected;
use herd_shop::report::{write_comparison, ModelScore};

use crate::args::ModelArgs;
use crate::load;

/// `herd eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The test split written by `herd data shop` (test.jsonl).
    #[arg(long)]
    pub data: PathBuf,
    /// Score only the first N cases.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The longest reply generated per case.
    #[arg(long, default_value_t = EvalOptions::default().max_new_tokens)]
    pub max_tokens: usize,
    /// Print every case: id, pass/fail, expected and the reply.
    #[arg(long)]
    pub verbose: bool,
    /// Print the scores as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Compare several models (comma-separated: model directories, .gguf
    /// files, `embedded`, `embedded-student`, or `url:http://host:port/v1` for a
    /// model behind an OpenAI-compatible server) and write a markdown report with
    /// bar charts to -o.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["model", "lora", "quantize"])]
    pub compare: Vec<String>,
    /// Where --compare writes report.md and its charts.
    #[arg(long, short = 'o', requires = "compare")]
    pub output: Option<PathBuf>,
    /// Environment variable holding the API key for `url:` models.
    #[arg(long, value_name = "VAR", requires = "compare")]
    pub api_key_env: Option<String>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    if args.max_tokens == 0 {
        anyhow::bail!("--max-tokens must be at least 1");
    }
    if !args.compare.is_empty() {
        return compare(&args);
    }
    let loaded = load::load(&args.model)?;
    let start = std::time::Instant::now();
    let report = score(&loaded, &args)?;
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        let params = loaded.model.config().num_parameters();
        println!("{}", json(&loaded.name, params, &report, seconds));
    } else {
        print_report(&loaded.name, &report, seconds);
    }
    Ok(ExitCode::SUCCESS)
}

/// Scores one loaded model on `--data`.
fn score(loaded: &load::Loaded, args: &EvalArgs) -> anyhow::Result<EvalReport> {
    let options = EvalOptions {
        max_new_tokens: args.max_tokens,
        limit: args.limit,
    };
    Ok(evaluate(
        &loaded.model,
        &loaded.tokenizer,
        &args.data,
        &options,
        |case| {
            if args.verbose {
                print_case(case);
            }
        },
    )?)
}

/// `--compare A,B,C`: every model on the same cases, then the report.
fn compare(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = &args.output else {
        anyhow::bail!("--compare needs -o DIR for the report");
    };
    // Fail before hours of scoring, not after.
    if let Some(missing) =
        args.compare.iter().map(|n| n.trim()).find(|n| {
            !load::is_embedded_name(n) && !n.starts_with("url:") && !Path::new(n).exists()
        })
    {
        anyhow::bail!(
            "--compare: {missing} is neither `embedded`, `embedded-student`, a `url:` nor an existing model path"
        );
    }
    let mut scores = Vec::new();
    for name in &args.compare {
        let name = name.trim();
        if let Some(url) = name.strip_prefix("url:") {
            scores.push(compare_remote(args, name, url)?);
            continue;
        }
        let model = ModelArgs {
            model: Some(PathBuf::from(name)),
            quantize: None,
            lora: None,
        };
        scores.push(score_named(name, &model, args)?);
    }
    let path = write_comparison(dir, &args.data, &scores)?;
    eprintln!("report written to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Loads and scores one model of a comparison under the name the report
/// gives it, printing its scores as they come.
pub(crate) fn score_named(
    name: &str,
    model: &ModelArgs,
    args: &EvalArgs,
) -> anyhow::Result<ModelScore> {
    let loaded = load::load(model).with_context(|| format!("--compare model {name}"))?;
    let start = std::time::Instant::now();
    let report = score(&loaded, args).with_context(|| format!("scoring {name}"))?;
    let parameters = loaded.model.config().num_parameters();
    if args.json {
        println!(
            "{}",
            json(name, parameters, &report, start.elapsed().as_secs_f64())
        );
    } else {
        print_report(name, &report, start.elapsed().as_secs_f64());
        println!();
    }
    Ok(ModelScore {
        name: name.to_owned(),
        parameters,
        report,
    })
}

/// One `url:` entry of --compare, its cases encoded with the tokenizer of
/// the first local entry (the embedded one if there is none). Its parameter
/// count is unknown: reported as 0.
fn compare_remote(args: &EvalArgs, name: &str, url: &str) -> anyhow::Result<ModelScore> {
    let local = args
        .compare
        .iter()
        .map(|n| n.trim())
        .find(|n| !n.starts_with("url:") && !load::is_embedded_name(n));
    let tokenizer = load::tokenizer(&ModelArgs {
        model: local.map(PathBuf::from),
        quantize: None,
        lora: None,
    })?;
    let options = EvalOptions {
        max_new_tokens: args.max_tokens,
        limit: args.limit,
    };
    let start = std::time::Instant::now();
    let report = crate::eval_remote::score(
        url,
        args.api_key_env.as_deref(),
        &tokenizer,
        &args.data,
        &options,
        |case| {
            if args.verbose {
                print_case(case);
            }
        },
    )
    .with_context(|| format!("scoring {name}"))?;
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        println!("{}", json(name, 0, &report, seconds));
    } else {
        print_report(name, &report, seconds);
        println!();
    }
    Ok(ModelScore {
        name: name.to_owned(),
        parameters: 0,
        report,
    })
}

/// The scores as one JSON line.
fn json(name: &str, parameters: u64, r: &EvalReport, seconds: f64) -> serde_json::Value {
    serde_json::json!({
        "model": name,
        "parameters": parameters,
        "cases": r.cases,
        "open_cases": r.open_cases,
        "exact_match": r.exact_match(),
        "passed": r.passed,
        "tool_cases": r.tool_cases,
        "tool_calls_well_formed": r.tool_cases_well_formed,
        "tool_call_validity": r.tool_call_validity(),
        "tool_calls_exact": r.tool_cases_passed,
        "answer_cases": r.answer_cases,
        "answers_passed": r.answer_cases_passed,
        "perplexity": r.perplexity(),
        "perplexity_tokens": r.tokens,
        "tokens_per_second": r.tokens_per_second(),
        "seconds": seconds,
    })
}

/// The scores as text.
fn print_report(name: &str, report: &EvalReport, seconds: f64) {
    println!("model            {name}");
    println!(
        "cases            {} scored + {} open ({:.1} s)",
        report.cases, report.open_cases, seconds
    );
    println!(
        "exact match      {:.1}% ({}/{})",
        100.0 * report.exact_match(),
        report.passed,
        report.cases
    );
    println!(
        "  tool calls     {}/{} exact, {}/{} well-formed ({:.1}%)",
        report.tool_cases_passed,
        report.tool_cases,
        report.tool_cases_well_formed,
        report.tool_cases,
        100.0 * report.tool_call_validity()
    );
    println!(
        "  answers        {}/{}",
        report.answer_cases_passed, report.answer_cases
    );
    println!(
        "perplexity       {:.3} (gold replies, {} tokens)",
        report.perplexity(),
        report.tokens
    );
    println!(
        "decoding         {:.1} tokens/s ({} tokens)",
        report.tokens_per_second(),
        report.decode_tokens
    );
}

fn print_case(case: &CaseResult) {
    let verdict = if case.passed { "PASS" } else { "FAIL" };
    let expected = match &case.expected {
        Expected::ToolCall { name, arguments } => format!("call {name}({arguments})"),
        Expected::AnswerContains(parts) => format!("answer containing {parts:?}"),
    };
    println!("{verdict} {}: expected {expected}", case.id);
    println!("     reply: {}", case.reply.trim().replace('\n', " "));
}
