//! The training loop: micro-batches → loss → backward → accumulate →
//! clip → AdamW, with validation, checkpoints and a clean stop.
//!
//! Gradient accumulation is exact: the loss of a step is the mean over all
//! predicted tokens of its `grad_accum` micro-batches, so each micro-batch's
//! summed loss is divided by the step's total token count before backward.
//! Accumulating 4 micro-batches therefore gives the gradient of one 4× batch.
//!
//! Data parallelism follows from the same rule: with N processes in a
//! [`Session`]'s communicator, every rank draws the same global micro-batches
//! and computes rows `i ≡ rank (mod N)` of each; its summed loss is divided by
//! the global token count, so the all-reduced (summed) gradients equal one
//! process's gradients of the combined batch. Every rank then takes the same
//! AdamW step; rank 0 alone writes metrics, checkpoints and the result.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Tensor, Var};
use herd_dist::{Communicator, Local};

use crate::data::{pack, Dataset, Loader, Row};
use crate::error::{Result, TrainError};
use crate::model::{loss_sum, TrainModel, Tuning};
use crate::optim::{clip, AdamW, AdamWConfig, Schedule};
use crate::report::{MetricsLog, Progress, RunReport, StepRecord};
use crate::state::{self, fnv1a, RunIdentity, SavedState};

/// Everything that shapes a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Optimizer steps.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Final rate as a fraction of the peak (cosine floor).
    pub min_lr_ratio: f64,
    /// AdamW settings.
    pub adamw: AdamWConfig,
    /// Input positions per micro-batch (rounded down to whole rows, at least one).
    pub batch_tokens: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Global gradient-norm limit.
    pub clip: Option<f64>,
    /// Seeds the data order and LoRA's initial `A`.
    pub seed: u64,
    /// Positions per packed row.
    pub seq_len: usize,
    /// Validation loss every this many steps (and at the end); 0: only at the end.
    pub eval_every: usize,
    /// Checkpoint every this many steps; 0: only on stop.
    pub save_every: usize,
}

impl TrainOptions {
    /// Rejects settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::InvalidOption(m));
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr must be positive, got {}", self.lr));
        }
        if self.grad_accum == 0 {
            return bad("--grad-accum must be at least 1".into());
        }
        if self.seq_len < 2 {
            return bad("--seq-len must be at least 2".into());
        }
        if self.clip.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return bad("--clip must be positive".into());
        }
        Ok(())
    }

    fn rows_per_batch(&self) -> usize {
        (self.batch_tokens / self.seq_len).max(1)
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            peak: self.lr,
            warmup: self.warmup,
            total: self.steps,
            min_ratio: self.min_lr_ratio,
        }
    }
}

/// What a step minimises. The loop (batches, accumulation, clipping,
/// AdamW, checkpoints, metrics) is the same for every objective; an
/// objective only turns a micro-batch into a summed loss. herd-distill plugs
/// its teacher losses in here instead of copying the loop.
pub trait Objective {
    /// Rewrites a micro-batch before its loss is taken (on-policy
    /// distillation replaces some replies with the model's own samples).
    /// `step` is the optimizer step about to run (0-based) and `micro` the
    /// micro-batch within it, so the result can be a pure function of them
    /// and the model: resumed runs then see the very same rows.
    fn prepare(
        &self,
        _model: &TrainModel,
        rows: Vec<Row>,
        _step: usize,
        _micro: usize,
    ) -> Result<Vec<Row>> {
        Ok(rows)
    }

    /// The summed loss of the weighted positions of `rows` (differentiable)
    /// and how many positions it sums over.
    fn loss_sum(&self, model: &TrainModel, rows: &[Row]) -> Result<(Tensor, usize)>;

    /// Everything about the objective that shapes the loss curve; part of
    /// the run's identity, so a checkpoint of another objective is refused.
    /// Empty for plain cross-entropy.
    fn describe(&self) -> String;
}

/// Next-token cross-entropy: what `herd train` and `herd finetune` minimise.
pub struct CrossEntropy;

impl Objective for CrossEntropy {
    fn loss_sum(&self, model: &TrainModel, rows: &[Row]) -> Result<(Tensor, usize)> {
        loss_sum(&model.forward(rows)?, rows)
    }

    fn describe(&self) -> String {
        String::new()
    }
}

/// Where a run writes: `checkpoint.safetensors`, `metrics.jsonl`, `loss.png`.
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// The output directory.
    pub dir: PathBuf,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl RunFiles {
    /// The training checkpoint.
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join("checkpoint.safetensors")
    }
    /// One JSON object per step and per validation.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
    /// The loss curve.
    pub fn plot(&self) -> PathBuf {
        self.dir.join("loss.png")
    }
}

/// The identity a checkpoint of this run must carry.
pub fn run_identity(
    model: &TrainModel,
    data: &Dataset,
    opts: &TrainOptions,
    objective: &dyn Objective,
) -> Result<RunIdentity> {
    let embed = &model.weights()[0].1;
    let base: Vec<f32> = embed.flatten_all()?.to_vec1()?;
    let base_bytes: Vec<u8> = base.iter().flat_map(|v| v.to_le_bytes()).collect();
    let data_hash = fnv1a(data.train.iter().flat_map(|ex| {
        let ids: Vec<u8> = ex.ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        let mask: Vec<u8> = ex.target.iter().map(|&t| t as u8).collect();
        [ids, mask]
    }));
    let tuning = match model.tuning() {
        Tuning::Full => "full".to_string(),
        Tuning::Lora(l) => format!("{l:?}"),
    };
    Ok(RunIdentity {
        model: format!("{:?}", model.config()),
        base_weights: fnv1a([base_bytes]),
        tuning,
        data: data_hash,
        options: match objective.describe() {
            d if d.is_empty() => format!("{opts:?}"),
            d => format!("{opts:?} {d}"),
        },
    })
}

/// Trains `model` in place. `resume` continues from the run's checkpoint;
/// `stop(step)` is asked after every step (Ctrl-C, or a test) and, when it
/// says yes, a checkpoint is written and the run ends early.
pub fn train(
    model: &TrainModel,
    data: &Dataset,
    opts: &TrainOptions,
    files: &RunFiles,
    resume: bool,
    stop: &dyn Fn(usize) -> bool,
) -> Result<RunReport> {
    train_with(model, data, opts, files, resume, stop, &CrossEntropy)
}

/// [`train`] with another objective than cross-entropy.
pub fn train_with(
    model: &TrainModel,
    data: &Dataset,
    opts: &TrainOptions,
    files: &RunFiles,
    resume: bool,
    stop: &dyn Fn(usize) -> bool,
    objective: &dyn Objective,
) -> Result<RunReport> {
    let session = Session {
        files,
        resume,
        stop,
        objective,
        comm: &Local,
    };
    train_in(model, data, opts, &session)
}

/// How one run is carried out: where it writes, whether it resumes, when
/// to stop, what it minimises, and the data-parallel group it belongs to.
pub struct Session<'a> {
    /// Where rank 0 writes.
    pub files: &'a RunFiles,
    /// Continue from the run's checkpoint.
    pub resume: bool,
    /// Asked after every step; the run stops (with a checkpoint) when any rank says yes.
    pub stop: &'a dyn Fn(usize) -> bool,
    /// What a step minimises.
    pub objective: &'a dyn Objective,
    /// The ranks sharing every batch ([`Local`] for one process). Every
    /// rank must start from the same model, data and options.
    pub comm: &'a dyn Communicator,
}

/// [`train_with`] as one rank of a data-parallel group (see the module docs).
pub fn train_in(
    model: &TrainModel,
    data: &Dataset,
    opts: &TrainOptions,
    session: &Session<'_>,
) -> Result<RunReport> {
    let Session {
        files,
        resume,
        stop,
        objective,
        comm,
    } = *session;
    let lead = comm.rank() == 0;
    opts.validate()?;
    if lead {
        std::fs::create_dir_all(&files.dir).map_err(TrainError::io(&files.dir))?;
    }
    let identity = run_identity(model, data, opts, objective)?;
    let params = model.trainable();
    let mut opt = AdamW::new(params, opts.adamw)?;
    let (mut step, cursor, mut tokens) = if resume {
        let saved = state::load(&files.checkpoint(), model, &mut opt, &identity)?;
        (saved.step, saved.cursor(), saved.tokens)
    } else {
        (0, Default::default(), 0)
    };
    // Every rank has read the checkpoint (and checked the output) before rank 0 writes.
    comm.barrier()?;
    let mut log = match lead {
        true => MetricsLog::open(&files.metrics(), step)?,
        false => MetricsLog::read_only(&files.metrics(), step)?,
    };
    let mut loader = Loader::new(
        &data.train,
        opts.seed,
        opts.seq_len,
        opts.rows_per_batch(),
        cursor,
    );
    let schedule = opts.schedule();
    let progress = Progress::new(files.progress && lead, opts.steps as u64, step as u64);
    let started = Instant::now();
    let first_step = step;
    let mut interrupted = false;
    while step < opts.steps {
        let micro = (0..opts.grad_accum)
            .map(|m| objective.prepare(model, loader.next_batch(), step, m))
            .collect::<Result<Vec<_>>>()?;
        let (loss, mut grads, positions) = accumulate(model, &micro, objective, comm)?;
        if !loss.is_finite() {
            return Err(TrainError::Diverged {
                step: step + 1,
                loss: loss as f32,
            });
        }
        let grad_norm = match opts.clip {
            Some(max) => clip(&mut grads, max)?,
            None => crate::optim::global_norm(&grads)?,
        };
        let lr = schedule.lr(step);
        opt.step(params, &grads, lr)?;
        step += 1;
        tokens += positions as u64;
        let elapsed = started.elapsed().as_secs_f64();
        let record = StepRecord {
            step,
            loss,
            lr,
            grad_norm,
            tokens,
            tokens_per_s: (tokens - log.tokens_at_start()) as f64 / elapsed.max(1e-9),
        };
        log.step(&record)?;
        progress.step(&record);
        let evaluate = (opts.eval_every > 0 && step % opts.eval_every == 0) || step == opts.steps;
        if lead && evaluate {
            if let Some(val) = validation_loss(model, data, opts)? {
                log.validation(step, val)?;
                progress.validation(val);
            }
        }
        let stopping = step < opts.steps && any_rank(comm, stop(step))?;
        if lead && (stopping || (opts.save_every > 0 && step % opts.save_every == 0)) {
            let saved = SavedState::new(identity.clone(), step, loader.cursor(), opt.t, tokens);
            state::save(&files.checkpoint(), model, &opt, &saved)?;
        }
        if stopping {
            interrupted = true;
            break;
        }
    }
    progress.finish();
    let report = log.into_report(
        step,
        opts.steps,
        interrupted,
        started.elapsed().as_secs_f64(),
        step - first_step,
    )?;
    if lead {
        crate::report::plot_curves(&files.plot(), &report)?;
    }
    Ok(report)
}

/// Whether `mine` is true on any rank (so all ranks stop together).
fn any_rank(comm: &dyn Communicator, mine: bool) -> Result<bool> {
    let mut flag = [mine as u8 as f32];
    comm.all_reduce_sum(&mut flag)?;
    Ok(flag[0] > 0.0)
}

/// This rank's rows of a global micro-batch: every `size`-th from `rank`.
fn my_rows(rows: &[Row], comm: &dyn Communicator) -> Vec<Row> {
    let (rank, size) = (comm.rank(), comm.size());
    rows.iter().skip(rank).step_by(size).cloned().collect()
}

/// Sums every rank's gradients and loss sum in one all-reduce.
fn all_reduce(
    comm: &dyn Communicator,
    grads: Vec<Tensor>,
    loss_sum: f64,
) -> Result<(Vec<Tensor>, f64)> {
    if comm.size() == 1 {
        return Ok((grads, loss_sum));
    }
    let mut flat = vec![loss_sum as f32];
    for g in &grads {
        flat.extend(g.flatten_all()?.to_vec1::<f32>()?);
    }
    comm.all_reduce_sum(&mut flat)?;
    let mut at = 1;
    let summed = grads
        .iter()
        .map(|g| {
            let n = g.elem_count();
            let t = Tensor::from_slice(&flat[at..at + n], g.shape(), g.device());
            at += n;
            Ok(t?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((summed, flat[0] as f64))
}

/// Runs this rank's share of the micro-batches of one step; returns the
/// step's mean loss, the gradients summed over micro-batches and ranks (one
/// per trainable variable) and the positions processed by all ranks.
fn accumulate(
    model: &TrainModel,
    micro: &[Vec<Row>],
    objective: &dyn Objective,
    comm: &dyn Communicator,
) -> Result<(f64, Vec<Tensor>, usize)> {
    let total: usize = micro.iter().flatten().map(Row::target_count).sum();
    let positions = micro.iter().flatten().map(|r| r.inputs.len()).sum();
    let params = model.trainable();
    let mut acc: Option<Vec<Tensor>> = None;
    let mut loss_total = 0f64;
    let mine: Vec<Vec<Row>> = micro.iter().map(|rows| my_rows(rows, comm)).collect();
    for rows in mine.iter().filter(|r| !r.is_empty()) {
        let (sum, _) = objective.loss_sum(model, rows)?;
        loss_total += sum.to_scalar::<f32>()? as f64;
        let grads = (sum / total.max(1) as f64)?.backward()?;
        let step_grads = params
            .iter()
            .map(|(_, v)| grad_of(&grads, v))
            .collect::<Result<Vec<_>>>()?;
        acc = Some(match acc {
            None => step_grads,
            Some(prev) => prev
                .iter()
                .zip(&step_grads)
                .map(|(a, g)| Ok((a + g)?))
                .collect::<Result<_>>()?,
        });
    }
    let grads = match acc {
        Some(g) => g,
        None => params
            .iter()
            .map(|(_, v)| Ok(v.zeros_like()?))
            .collect::<Result<_>>()?,
    };
    let (grads, loss_total) = all_reduce(comm, grads, loss_total)?;
    Ok((loss_total / total.max(1) as f64, grads, positions))
}

fn grad_of(grads: &candle_core::backprop::GradStore, var: &Var) -> Result<Tensor> {
    Ok(match grads.get(var.as_tensor()) {
        Some(g) => g.clone(),
        None => var.zeros_like()?,
    })
}

/// Mean loss over the validation examples (packed in file order), if any.
pub fn validation_loss(
    model: &TrainModel,
    data: &Dataset,
    opts: &TrainOptions,
) -> Result<Option<f64>> {
    if data.validation.is_empty() {
        return Ok(None);
    }
    let examples: Vec<_> = data.validation.iter().collect();
    let rows = pack(&examples, opts.seq_len);
    let (mut sum, mut count) = (0f64, 0usize);
    for chunk in rows.chunks(opts.rows_per_batch()) {
        let logits = model.forward(chunk)?.detach();
        let (s, n) = loss_sum(&logits, chunk)?;
        sum += s.to_scalar::<f32>()? as f64;
        count += n;
    }
    Ok(Some(sum / count.max(1) as f64))
}

/// Mean loss of one batch of rows and the gradients of the trainable
/// variables (the quantities the reference fixtures record).
pub fn loss_and_grads(model: &TrainModel, rows: &[Row]) -> Result<(f64, Vec<(String, Tensor)>)> {
    let (loss, grads, _) = accumulate(model, &[rows.to_vec()], &CrossEntropy, &Local)?;
    let named = model
        .trainable()
        .iter()
        .zip(grads)
        .map(|((n, _), g)| (n.clone(), g))
        .collect();
    Ok((loss, named))
}

/// Whether `dir` holds a checkpoint to resume from.
pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join("checkpoint.safetensors").is_file()
}

/// Whether `dir` holds a training run, finished (its metrics are there)
/// or resumable (a checkpoint): a new run must not write over either.
pub fn holds_run(dir: &Path) -> bool {
    has_checkpoint(dir) || dir.join("metrics.jsonl").is_file()
}
