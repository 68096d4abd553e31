//! The run: worker threads ask the teacher, the calling thread filters,
//! de-duplicates and writes, in prompt order.
//!
//! ```text
//! pending prompts ─▶ workers (concurrency) ─▶ teacher.sample ─┐
//!                                                              ▼
//! journal ◀─ output ◀─ filter (truncated, duplicate, log-prob, verifier) ◀─ reorder
//! ```
//!
//! Workers take prompts in order and results are written in that order, so
//! an uninterrupted run's file is the same for any concurrency. After an
//! error (a spent budget, a teacher that stays down) no new prompt is
//! started, finished prompts are still written, and the error is returned:
//! running the same command again resumes.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use serde_json::{json, Value};

use crate::error::{DatagenError, Result};
use crate::journal::{Counts, Finished, Output};
use crate::prompts::{fnv1a, Prompt};
use crate::teacher::{Sample, SampleSpec, Teacher};

/// Which samples are kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Keep samples whose mean token log-probability is at least this.
    pub min_mean_logprob: Option<f32>,
    /// A shell command that gets each record on stdin and accepts it by
    /// exiting with status 0.
    pub verifier: Option<String>,
    /// Keep samples that ran out of tokens (dropped by default: a cut-off
    /// answer teaches the student to stop mid-sentence).
    pub keep_truncated: bool,
}

/// How a run samples and filters.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What each prompt asks of the teacher.
    pub spec: SampleSpec,
    /// Which samples are kept.
    pub filter: Filter,
    /// Prompts asked at once.
    pub concurrency: usize,
}

impl RunOptions {
    /// The settings a journal records: resuming with other ones is refused.
    pub fn settings(&self, teacher: &str) -> Value {
        json!({
            "teacher": teacher,
            "n": self.spec.n,
            "max_tokens": self.spec.max_tokens,
            "sampling": format!("{:?}", self.spec.sampling),
            "min_mean_logprob": self.filter.min_mean_logprob,
            "verifier": self.filter.verifier,
            "keep_truncated": self.filter.keep_truncated,
        })
    }
}

/// The seed of a prompt's first sample: the run's seed plus a number
/// drawn from the prompt's key, so samples do not depend on the order or
/// the subset of prompts asked.
pub fn prompt_seed(base: u64, prompt: &Prompt) -> u64 {
    base.wrapping_add(fnv1a(prompt.key.as_bytes()) >> 32)
}

/// The training record of one sample: the prompt plus the answer.
pub fn record(prompt: &Prompt, sample: &Sample) -> Value {
    let mut messages = prompt.messages.clone();
    messages.push(sample.message.clone());
    let mut record = json!({ "messages": messages });
    if !prompt.tools.is_empty() {
        record["tools"] = prompt.tools.clone().into();
    }
    record
}

/// Runs every prompt not in `finished` through `teacher` into `output`.
/// `progress` is told the counts (earlier runs included) after each prompt.
pub fn run(
    teacher: &dyn Teacher,
    prompts: &[Prompt],
    output: &mut Output,
    finished: Finished,
    options: &RunOptions,
    progress: &mut dyn FnMut(&Counts),
) -> Result<Counts> {
    let pending: Vec<&Prompt> = prompts
        .iter()
        .filter(|p| !finished.keys.contains(&p.key))
        .collect();
    let mut writer = Writer {
        output,
        filter: &options.filter,
        seen: finished.hashes,
        counts: finished.counts,
    };
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<Vec<Sample>>)>();
    std::thread::scope(|scope| {
        for _ in 0..options.concurrency.clamp(1, pending.len().max(1)) {
            let tx = tx.clone();
            let (next, stop, pending) = (&next, &stop, &pending);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(prompt) = pending.get(i) else { break };
                    let mut spec = options.spec.clone();
                    spec.sampling.seed = prompt_seed(options.spec.sampling.seed, prompt);
                    if tx.send((i, teacher.sample(prompt, &spec))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut ready = BTreeMap::new();
        let mut first_error = None;
        let mut next_to_write = 0;
        for (i, result) in rx {
            match result {
                Ok(samples) => {
                    ready.insert(i, samples);
                }
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
            while let Some(samples) = ready.remove(&next_to_write) {
                if let Err(e) = writer.write(pending[next_to_write], &samples) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                progress(&writer.counts);
                next_to_write += 1;
            }
        }
        // After an error, prompts finished beyond the gap are kept too.
        for (i, samples) in ready {
            writer.write(pending[i], &samples)?;
            progress(&writer.counts);
        }
        first_error.map_or(Ok(()), Err)
    })?;
    Ok(writer.counts)
}

/// The writing side of a run.
struct Writer<'a> {
    output: &'a mut Output,
    filter: &'a Filter,
    seen: HashSet<u64>,
    counts: Counts,
}

impl Writer<'_> {
    /// Filters one prompt's samples and commits the survivors.
    fn write(&mut self, prompt: &Prompt, samples: &[Sample]) -> Result<()> {
        let mut counts = Counts {
            prompts: 1,
            ..Counts::default()
        };
        let (mut lines, mut hashes) = (Vec::new(), Vec::new());
        for sample in samples {
            counts.tokens += sample.tokens as u64;
            if sample.truncated && !self.filter.keep_truncated {
                counts.truncated += 1;
                continue;
            }
            let line = record(prompt, sample).to_string();
            let hash = fnv1a(line.as_bytes());
            if self.seen.contains(&hash) || hashes.contains(&hash) {
                counts.duplicates += 1;
                continue;
            }
            if !self.accepts(sample, &line)? {
                counts.rejected += 1;
                continue;
            }
            lines.push(line);
            hashes.push(hash);
        }
        counts.written = lines.len() as u64;
        self.output.commit(&prompt.key, &lines, &hashes, &counts)?;
        self.seen.extend(hashes);
        self.counts.add(&counts);
        Ok(())
    }

    fn accepts(&self, sample: &Sample, line: &str) -> Result<bool> {
        if let Some(min) = self.filter.min_mean_logprob {
            if sample.mean_logprob.is_none_or(|m| m < min) {
                return Ok(false);
            }
        }
        match &self.filter.verifier {
            Some(command) => verify(command, line),
            None => Ok(true),
        }
    }
}

/// Runs the verifier on one record: exit status 0 accepts it.
fn verify(command: &str, line: &str) -> Result<bool> {
    let failed = |problem: String| DatagenError::Verifier {
        command: command.to_owned(),
        problem,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(format!("{line}\n").as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(failed(format!("cannot write the sample: {e}")))
            }
            _ => {}
        }
    }
    let status = child.wait().map_err(|e| failed(e.to_string()))?;
    if status.code().is_none() {
        return Err(failed(format!("killed ({status})")));
    }
    Ok(status.success())
}

/// What a run will ask for, before it starts (`--dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Prompts still to do.
    pub prompts: usize,
    /// Prompts an earlier run finished.
    pub finished: usize,
    /// Teacher requests (one per prompt for a remote teacher, with `n` choices).
    pub requests: usize,
    /// Sequences to generate (prompts × n).
    pub sequences: usize,
    /// Prompt tokens the teacher reads (once per request), when a tokenizer counts them.
    pub prompt_tokens: Option<u64>,
    /// Most tokens the teacher generates (sequences × max tokens).
    pub max_generated_tokens: u64,
}

/// The plan of a run over `prompts` given what is `finished`; prompt
/// tokens are counted when `tokenizer` is given.
pub fn plan(
    prompts: &[Prompt],
    finished: &Finished,
    spec: &SampleSpec,
    tokenizer: Option<&herd_tokenizer::Tokenizer>,
) -> Result<Plan> {
    let pending: Vec<&Prompt> = prompts
        .iter()
        .filter(|p| !finished.keys.contains(&p.key))
        .collect();
    let prompt_tokens = match tokenizer {
        Some(t) => Some(
            pending
                .iter()
                .map(|p| p.encode(t).map(|ids| ids.len() as u64))
                .sum::<Result<u64>>()?,
        ),
        None => None,
    };
    let sequences = pending.len() * spec.n;
    Ok(Plan {
        prompts: pending.len(),
        finished: prompts.len() - pending.len(),
        requests: pending.len(),
        sequences,
        prompt_tokens,
        max_generated_tokens: (sequences * spec.max_tokens) as u64,
    })
}
