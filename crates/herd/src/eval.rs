//! `herd eval`: scores a model on the shop corpus's test split — exact match,
//! tool-call validity and the perplexity of the gold replies.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use herd_shop::eval::{evaluate, CaseResult, EvalOptions};
use herd_shop::expected::Expected;

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
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    if args.max_tokens == 0 {
        anyhow::bail!("--max-tokens must be at least 1");
    }
    let loaded = load::load(&args.model)?;
    let options = EvalOptions {
        max_new_tokens: args.max_tokens,
        limit: args.limit,
    };
    let start = std::time::Instant::now();
    let report = evaluate(
        &loaded.model,
        &loaded.tokenizer,
        &args.data,
        &options,
        |case| {
            if args.verbose {
                print_case(case);
            }
        },
    )?;
    let seconds = start.elapsed().as_secs_f64();
    println!("model            {}", loaded.name);
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
    Ok(ExitCode::SUCCESS)
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
