//! Watching a run: a progress bar, `metrics.jsonl` (one JSON object per step
//! and per validation, appended as the run goes so a crash loses nothing),
//! the loss curve as a PNG, and a one-screen summary.
//!
//! The PNG is drawn with plotters' bitmap backend and no text at all: text
//! would pull in a font stack (fontconfig/freetype) that servers and CI
//! images lack. The summary prints the numbers the axes would carry.

use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde_json::{json, Value};

use crate::error::{Result, TrainError};

/// What one optimizer step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// 1-based optimizer step.
    pub step: usize,
    /// Mean loss over the step's predicted tokens.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Input positions processed since the run began.
    pub tokens: u64,
    /// Positions per second in this session.
    pub tokens_per_s: f64,
}

/// The metrics file, plus the curves read back from it.
pub struct MetricsLog {
    path: PathBuf,
    /// `None` on the ranks of a data-parallel run that do not write.
    file: Option<std::fs::File>,
    losses: Vec<(usize, f64)>,
    validation: Vec<(usize, f64)>,
    tokens_at_start: u64,
    last_tokens_per_s: f64,
}

impl MetricsLog {
    /// Starts `path` afresh (`step == 0`) or, when resuming at `step`, keeps
    /// the records up to that step and drops later ones (written after the
    /// checkpoint, and about to be recomputed).
    pub fn open(path: &Path, step: usize) -> Result<MetricsLog> {
        let (mut log, kept) = MetricsLog::read(path, step)?;
        crate::io::write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(TrainError::io(path))?;
        log.file = Some(file);
        Ok(log)
    }

    /// The curves up to `step` without ever writing `path` (the other
    /// ranks of a data-parallel run, which rank 0 writes for).
    pub fn read_only(path: &Path, step: usize) -> Result<MetricsLog> {
        Ok(MetricsLog::read(path, step)?.0)
    }

    /// The records up to `step` (none when starting afresh), and their lines.
    fn read(path: &Path, step: usize) -> Result<(MetricsLog, String)> {
        let (mut losses, mut validation, mut kept, mut tokens_at_start) =
            (Vec::new(), Vec::new(), String::new(), 0);
        if step > 0 && path.exists() {
            let file = std::fs::File::open(path).map_err(TrainError::io(path))?;
            for line in std::io::BufReader::new(file).lines() {
                let line = line.map_err(TrainError::io(path))?;
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let at = v["step"].as_u64().unwrap_or(u64::MAX) as usize;
                if at > step {
                    continue;
                }
                if let Some(val) = v["val_loss"].as_f64() {
                    validation.push((at, val));
                } else if let Some(loss) = v["loss"].as_f64() {
                    losses.push((at, loss));
                    tokens_at_start = v["tokens"].as_u64().unwrap_or(0);
                }
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        let log = MetricsLog {
            path: path.to_path_buf(),
            file: None,
            losses,
            validation,
            tokens_at_start,
            last_tokens_per_s: 0.0,
        };
        Ok((log, kept))
    }

    /// Tokens already counted when this session began.
    pub fn tokens_at_start(&self) -> u64 {
        self.tokens_at_start
    }

    fn append(&mut self, value: Value) -> Result<()> {
        match &mut self.file {
            Some(file) => writeln!(file, "{value}").map_err(TrainError::io(&self.path)),
            None => Ok(()),
        }
    }

    /// Records a step.
    pub fn step(&mut self, r: &StepRecord) -> Result<()> {
        self.losses.push((r.step, r.loss));
        self.last_tokens_per_s = r.tokens_per_s;
        self.append(json!({
            "step": r.step, "loss": r.loss, "lr": r.lr, "grad_norm": r.grad_norm,
            "tokens": r.tokens, "tokens_per_s": r.tokens_per_s,
        }))
    }

    /// Records a validation loss.
    pub fn validation(&mut self, step: usize, loss: f64) -> Result<()> {
        self.validation.push((step, loss));
        self.append(json!({"step": step, "val_loss": loss}))
    }

    /// Closes the log into the run's report.
    pub fn into_report(
        self,
        step: usize,
        total: usize,
        interrupted: bool,
        elapsed_s: f64,
        session_steps: usize,
    ) -> Result<RunReport> {
        if let Some(file) = &self.file {
            file.sync_all().map_err(TrainError::io(&self.path))?;
        }
        Ok(RunReport {
            step,
            total,
            interrupted,
            losses: self.losses,
            validation: self.validation,
            elapsed_s,
            session_steps,
            tokens_per_s: self.last_tokens_per_s,
        })
    }
}

/// The outcome of [`crate::train`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Steps completed.
    pub step: usize,
    /// Steps asked for.
    pub total: usize,
    /// Stopped early (Ctrl-C); a checkpoint was written.
    pub interrupted: bool,
    /// `(step, loss)` for every step of the run, earlier sessions included.
    pub losses: Vec<(usize, f64)>,
    /// `(step, validation loss)`.
    pub validation: Vec<(usize, f64)>,
    /// Seconds this session ran.
    pub elapsed_s: f64,
    /// Steps this session ran.
    pub session_steps: usize,
    /// Training positions per second in this session.
    pub tokens_per_s: f64,
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.interrupted {
            "interrupted"
        } else {
            "done"
        };
        writeln!(f, "training {state}: step {}/{}", self.step, self.total)?;
        if let (Some(first), Some(last)) = (self.losses.first(), self.losses.last()) {
            let min = self
                .losses
                .iter()
                .map(|l| l.1)
                .fold(f64::INFINITY, f64::min);
            writeln!(
                f,
                "  loss        {:.4} (step {}) → {:.4} (step {}), lowest {min:.4}",
                first.1, first.0, last.1, last.0
            )?;
        }
        if let (Some(first), Some(last)) = (self.validation.first(), self.validation.last()) {
            writeln!(
                f,
                "  validation  {:.4} (step {}) → {:.4} (step {})",
                first.1, first.0, last.1, last.0
            )?;
        }
        write!(
            f,
            "  speed       {:.0} tokens/s, {} steps in {:.1} s",
            self.tokens_per_s, self.session_steps, self.elapsed_s
        )
    }
}

/// The progress bar (hidden when not asked for or not on a terminal).
pub struct Progress {
    bar: ProgressBar,
    val: std::cell::Cell<Option<f64>>,
}

impl Progress {
    /// A bar over `total` steps, starting at `start`.
    pub fn new(enabled: bool, total: u64, start: u64) -> Progress {
        let bar = if enabled {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template(
            "step {pos}/{len} [{bar:30}] {msg} · {elapsed_precise} elapsed, ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_position(start);
        bar.reset_eta();
        Progress {
            bar,
            val: std::cell::Cell::new(None),
        }
    }

    /// Shows a finished step.
    pub fn step(&self, r: &StepRecord) {
        let val = self
            .val
            .get()
            .map_or(String::new(), |v| format!(" · val {v:.4}"));
        self.bar.set_message(format!(
            "loss {:.4}{val} · {:.0} tok/s · lr {:.2e}",
            r.loss, r.tokens_per_s, r.lr
        ));
        self.bar.set_position(r.step as u64);
    }

    /// Shows a validation loss from now on.
    pub fn validation(&self, loss: f64) {
        self.val.set(Some(loss));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Draws training loss (blue) and validation loss (red) against steps.
pub fn plot_curves(path: &Path, report: &RunReport) -> Result<()> {
    let err = |e: String| TrainError::Plot {
        path: path.to_path_buf(),
        reason: e,
    };
    let all = report.losses.iter().chain(&report.validation);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, l)| {
        (lo.min(*l), hi.max(*l))
    });
    if !lo.is_finite() {
        return Ok(());
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let steps = report.total.max(1) as f64;
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(16)
        .build_cartesian_2d(0.0..steps, (lo - pad)..(hi + pad))
        .map_err(|e| err(e.to_string()))?;
    for i in 0..=10 {
        let x = steps * i as f64 / 10.0;
        let y = lo - pad + (hi - lo + 2.0 * pad) * i as f64 / 10.0;
        let grid = RGBColor(225, 225, 225);
        chart
            .draw_series([
                PathElement::new(vec![(x, lo - pad), (x, hi + pad)], grid),
                PathElement::new(vec![(0.0, y), (steps, y)], grid),
            ])
            .map_err(|e| err(e.to_string()))?;
    }
    let to_points = |v: &[(usize, f64)]| v.iter().map(|&(s, l)| (s as f64, l)).collect::<Vec<_>>();
    chart
        .draw_series(LineSeries::new(
            to_points(&report.losses),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(
            to_points(&report.validation),
            RED.stroke_width(2),
        ))
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}
