//! What `herd distill` does after distilling on the embedded corpus: train
//! the same student for the same steps on the same data with cross-entropy
//! only (OUT/ce-only), keep the untrained student (OUT/init, the cut out of
//! the teacher, or OUT/untrained with random weights), score the
//! teacher and the three students on the corpus's held-out test split, and
//! write OUT/report.md with its charts. Without the baseline and the
//! untrained row a distillation result says nothing: the report is the proof
//! that the teacher's distributions, not the steps alone, made the student.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use herd_dist::Communicator;
use herd_model::Config;
use herd_shop::report::{write_comparison, ModelScore};
use herd_train::TrainModel;

use crate::args::ModelArgs;
use crate::distill::{train_student, DistillArgs, LossArg, StudentInit};
use crate::eval::{score_named, EvalArgs};

/// The longest reply generated per test case (the teacher's README uses 64).
const MAX_TOKENS: usize = 64;

/// Whether this run ends with the baseline and the report: it trains on the
/// embedded corpus (so the test split is there), with a teacher, from a
/// new student (so "untrained" means something), and was not told not to.
pub fn applies(args: &DistillArgs) -> bool {
    !args.no_report
        && args.data.is_none()
        && args.cache.is_none()
        && args.student.is_none()
        && args.loss != LossArg::Ce
        && args.kd_weight > 0.0
}

/// Whether the distillation in `out` has finished (its summary is written
/// last), so `--resume` continues with the baseline.
pub fn finished(out: &Path) -> bool {
    out.join("summary.json").is_file()
}

/// The baseline, the untrained student and the report, each skipped when
/// already complete. The baseline trains on every rank of `comm`; rank 0
/// alone scores the models and writes the report.
pub fn run(args: &DistillArgs, comm: &dyn Communicator) -> anyhow::Result<ExitCode> {
    let baseline = baseline_args(args);
    // Every rank must agree on whether the baseline trains (rank 0's view).
    let mut todo = vec![u8::from(!finished(&baseline.out))];
    comm.broadcast(0, &mut todo)?;
    if todo[0] == 1 {
        if comm.rank() == 0 {
            eprintln!(
                "training the same student on cross-entropy only → {}",
                baseline.out.display()
            );
        }
        let code = train_student(baseline.clone(), comm)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    if comm.rank() != 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let untrained = untrained(args)?;
    let models = [
        ("teacher", args.teacher.clone()),
        ("distilled student", Some(args.out.clone())),
        ("CE-only student", Some(baseline.out.clone())),
        ("untrained student", Some(untrained)),
    ];
    let test = args.out.join("data/test.jsonl");
    let eval = EvalArgs {
        model: model_args(None),
        data: test.clone(),
        limit: Some(args.report_cases),
        max_tokens: MAX_TOKENS,
        verbose: false,
        json: false,
        compare: Vec::new(),
        output: None,
        api_key_env: None,
    };
    let scores = models
        .into_iter()
        .map(|(name, path)| score_named(name, &model_args(path), &eval))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let path = write_comparison(&args.out, &test, &scores)?;
    let mut text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.push_str(&how_made(args, &baseline, &scores)?);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("report written to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// The same run with cross-entropy only, into OUT/ce-only, on the corpus
/// the distillation wrote; resumed when it was interrupted.
fn baseline_args(args: &DistillArgs) -> DistillArgs {
    let out = args.out.join("ce-only");
    DistillArgs {
        loss: LossArg::Ce,
        kd_weight: 0.0,
        on_policy: 0.0,
        data: Some(args.out.join("data/train.jsonl")),
        resume: herd_train::has_checkpoint(&out),
        out,
        no_report: true,
        ..args.clone()
    }
}

fn model_args(model: Option<PathBuf>) -> ModelArgs {
    ModelArgs {
        model,
        quantize: None,
        lora: None,
    }
}

/// The student before any step: the cut out of the teacher (OUT/init), or
/// random weights of the same config and seed as the distilled student's,
/// saved to OUT/untrained.
fn untrained(args: &DistillArgs) -> anyhow::Result<PathBuf> {
    if args.init == StudentInit::Prune {
        return Ok(args.out.join("init"));
    }
    let dir = args.out.join("untrained");
    let path = args.out.join("config.json");
    let json =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let model = TrainModel::random(Config::from_json(&json, &path)?, args.seed)?;
    herd_train::save_trained(&dir, &model, &json, &args.out, "scratch")?;
    Ok(dir)
}

/// The report's second half: how the students were trained and how much
/// of the gap to the teacher the distillation closed.
fn how_made(
    args: &DistillArgs,
    baseline: &DistillArgs,
    scores: &[ModelScore],
) -> anyhow::Result<String> {
    let summary = |dir: &Path| -> anyhow::Result<serde_json::Value> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let (kd, ce) = (summary(&args.out)?, summary(&baseline.out)?);
    let [teacher, distilled, ce_only, _] = scores else {
        anyhow::bail!("the report has four models");
    };
    let ppl = |s: &ModelScore| s.report.perplexity();
    let em = |s: &ModelScore| s.report.exact_match();
    let mut md = format!(
        "\n## How the students were made\n\n\
         Both students have the same config and the same initial weights (the untrained row: {}), \
         and train for {} steps of {} input positions on `{}` (the embedded shop corpus's \
         training split) with the same data order and learning-rate schedule. The distilled \
         student minimises `{}`; the baseline cross-entropy on the data only. Training took \
         {:.0} s (distilled) and {:.0} s (CE only). Command: `herd {}`.\n\n",
        match args.init {
            StudentInit::Prune =>
                "cut out of the teacher as `herd prune` does, keeping the \
                 most important KV heads, MLP and embedding channels on the training data",
            StudentInit::Random => "random",
        },
        kd["steps"],
        args.batch_tokens * args.grad_accum,
        kd["data"].as_str().unwrap_or("?"),
        kd["loss"].as_str().unwrap_or("?"),
        kd["seconds"].as_f64().unwrap_or(0.0),
        ce["seconds"].as_f64().unwrap_or(0.0),
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
    );
    md.push_str(&format!(
        "**Gap closed** (share of the CE-only student's distance to the teacher that \
         distillation removed; 1 = as good as the teacher, ≤ 0 = no better than CE only): \
         perplexity {}, log-perplexity (cross-entropy) {}, exact match {}.\n",
        gap(ppl(ce_only), ppl(distilled), ppl(teacher)),
        gap(ppl(ce_only).ln(), ppl(distilled).ln(), ppl(teacher).ln()),
        gap(em(ce_only), em(distilled), em(teacher)),
    ));
    Ok(md)
}

/// `(baseline − student) / (baseline − teacher)` as a percentage, or why not.
fn gap(baseline: f64, student: f64, teacher: f64) -> String {
    let span = baseline - teacher;
    if span.abs() < 1e-12 {
        return "n/a (the teacher is no better than the baseline)".into();
    }
    // `+ 0.0` turns a negative zero into a plain 0.
    format!("{:.0}%", 100.0 * (baseline - student) / span + 0.0)
}
