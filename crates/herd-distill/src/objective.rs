//! Distillation as a herd-train [`Objective`]: the trainer's loop, data
//! order, accumulation, AdamW and exact resume are reused as they are; only
//! the loss of a micro-batch differs, and, on-policy, the micro-batch.
//!
//! **On-policy (GKD).** Before a micro-batch is used, each of its examples
//! is, with probability λ, replaced by one whose reply the student samples
//! itself: the example's prompt (its ids up to the first counted token) and
//! at most as many new tokens as the reply it replaces, so the rows still
//! fit. The teacher then scores the student's own text. The choice and the
//! sampling are seeded by (seed, step, micro-batch), and the student's
//! weights at that step are restored exactly on resume, so a resumed run
//! samples the very same replies.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use herd_engine::{Sampler, Sampling, SamplingParams};
use herd_train::data::{pack, Row};
use herd_train::record::Example;
use herd_train::{Objective, TrainModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{DistillError, Result};
use crate::fused::{head_loss, row_examples, TeacherRows, TeacherSide};

/// On-policy sampling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OnPolicy {
    /// λ: share of examples whose reply the student samples.
    pub fraction: f64,
    /// Sampling temperature of the student.
    pub temperature: f32,
    /// Tokens that end a sampled reply (kept as its last token).
    pub stop_ids: Vec<u32>,
}

/// Everything that defines a distillation objective.
pub struct Distiller {
    /// The loss.
    pub spec: crate::LossSpec,
    /// Vocabulary entries the loss covers ([`crate::check_vocabularies`]).
    pub vocab: usize,
    /// Teacher rows for the data (cache or live model); `None` for CE only.
    pub teacher: Option<Arc<dyn TeacherSide>>,
    /// The live teacher that scores the student's samples (on-policy).
    pub live: Option<Arc<dyn TeacherSide>>,
    /// On-policy settings; `None` trains on the data only.
    pub on_policy: Option<OnPolicy>,
    /// Row length (the trainer's `seq_len`).
    pub seq_len: usize,
    /// Seeds the on-policy choices and samples.
    pub seed: u64,
    /// Identity of the teacher (part of the run's identity).
    pub teacher_identity: String,
}

impl Distiller {
    /// Checks that the settings can run.
    pub fn validate(&self) -> Result<()> {
        self.spec.validate().map_err(DistillError::InvalidOption)?;
        if self.spec.uses_teacher() && self.teacher.is_none() {
            return Err(DistillError::InvalidOption(format!(
                "--loss {:?} needs a teacher: pass --teacher or --cache (or --loss ce)",
                self.spec.loss
            )));
        }
        if let Some(op) = &self.on_policy {
            if !(0.0..=1.0).contains(&op.fraction) {
                return Err(DistillError::InvalidOption(format!(
                    "--on-policy must be in [0, 1], got {}",
                    op.fraction
                )));
            }
            if self.live.is_none() {
                return Err(DistillError::InvalidOption(
                    "--on-policy needs a live --teacher to score the student's samples".into(),
                ));
            }
        }
        Ok(())
    }

    /// Replaces the replies of the chosen examples with the student's samples.
    fn resample(
        &self,
        model: &TrainModel,
        rows: Vec<Row>,
        step: usize,
        micro: usize,
    ) -> Result<Vec<Row>> {
        let Some(op) = &self.on_policy else {
            return Ok(rows);
        };
        let mut examples: Vec<Example> = rows
            .iter()
            .flat_map(|r| r.examples())
            .map(|(_, e)| e)
            .collect();
        let seed =
            self.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (micro as u64) << 48;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let chosen: Vec<usize> = (0..examples.len())
            .filter(|_| rng.random::<f64>() < op.fraction)
            .collect();
        let prompts: Vec<(Vec<u32>, usize)> = chosen
            .iter()
            .map(|&i| {
                let ex = &examples[i];
                let first = ex.target.iter().position(|&t| t).unwrap_or(ex.ids.len());
                (ex.ids[..first].to_vec(), ex.ids.len() - first)
            })
            .collect();
        let samples = self.sample(model, &prompts, op, seed)?;
        for ((&i, (prompt, _)), reply) in chosen.iter().zip(&prompts).zip(samples) {
            let mut target = vec![false; prompt.len()];
            target.extend(std::iter::repeat_n(true, reply.len()));
            let mut ids = prompt.clone();
            ids.extend(reply);
            examples[i] = Example { ids, target };
        }
        let refs: Vec<&Example> = examples.iter().collect();
        Ok(pack(&refs, self.seq_len))
    }

    /// Samples a reply of at most `budget` tokens after each prompt with the
    /// student (no KV cache: each new token reruns the sequence, which is
    /// cheap for the small students this is for and needs no second model).
    fn sample(
        &self,
        model: &TrainModel,
        prompts: &[(Vec<u32>, usize)],
        op: &OnPolicy,
        seed: u64,
    ) -> Result<Vec<Vec<u32>>> {
        let mut seqs: Vec<Vec<u32>> = prompts.iter().map(|p| p.0.clone()).collect();
        let mut replies = vec![Vec::new(); prompts.len()];
        let mut samplers = (0..prompts.len())
            .map(|i| {
                Sampler::new(SamplingParams {
                    sampling: Sampling::Random {
                        temperature: op.temperature,
                        top_k: None,
                        top_p: None,
                        min_p: None,
                    },
                    repetition_penalty: 1.0,
                    seed: seed.wrapping_add(i as u64),
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let done = |i: usize, replies: &[Vec<u32>]| {
            replies[i].len() >= prompts[i].1
                || replies[i].last().is_some_and(|t| op.stop_ids.contains(t))
        };
        loop {
            let active: Vec<usize> = (0..prompts.len()).filter(|&i| !done(i, &replies)).collect();
            if active.is_empty() {
                return Ok(replies);
            }
            let batch: Vec<&[u32]> = active.iter().map(|&i| seqs[i].as_slice()).collect();
            let logits = self.last_logits(model, &batch)?;
            for (&i, mut row) in active.iter().zip(logits) {
                let token = samplers[i].sample(&mut row, &seqs[i])?;
                seqs[i].push(token);
                replies[i].push(token);
            }
        }
    }

    /// The student's next-token logits after each sequence.
    fn last_logits(&self, model: &TrainModel, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
        let rows: Vec<Row> = seqs
            .iter()
            .map(|s| {
                let pad = t - s.len();
                Row {
                    inputs: s
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(0, pad))
                        .collect(),
                    labels: vec![0; t],
                    weights: vec![0.0; t],
                    positions: (0..t as u32).collect(),
                    segments: (0..t).map(|i| (i >= s.len()) as u32).collect(),
                }
            })
            .collect();
        let last: Vec<u32> = seqs
            .iter()
            .enumerate()
            .map(|(r, s)| (r * t + s.len() - 1) as u32)
            .collect();
        let idx = Tensor::from_vec(last, seqs.len(), &Device::Cpu)?;
        let h = model.hidden(&rows)?.detach().index_select(&idx, 0)?;
        let logits = h.matmul(&model.head().detach().t()?)?;
        let logits = logits.narrow(1, 0, self.vocab)?.to_vec2::<f32>()?;
        Ok(logits)
    }

    fn loss(&self, model: &TrainModel, rows: &[Row]) -> Result<(Tensor, usize)> {
        let (examples, index) = row_examples(rows);
        let n = index.len();
        let idx = Tensor::from_vec(index, n, &Device::Cpu)?;
        let hidden = model.hidden(rows)?.index_select(&idx, 0)?;
        // On-policy rows mix data examples and the student's samples, which
        // only the live teacher can score.
        let teacher = match self.on_policy.is_some() {
            true => Some(Arc::new(Either {
                data: self.teacher.clone(),
                live: self.live.clone(),
            }) as Arc<dyn TeacherSide>),
            false => self.teacher.clone(),
        };
        let loss = head_loss(
            &hidden,
            model.head(),
            self.spec,
            self.vocab,
            examples,
            teacher,
        )?;
        Ok((loss, n))
    }
}

/// Teacher rows from the data's teacher when it knows the example (a cache
/// holds only the data's sequences), else from the live teacher.
struct Either {
    data: Option<Arc<dyn TeacherSide>>,
    live: Option<Arc<dyn TeacherSide>>,
}

impl TeacherSide for Either {
    fn rows(&self, example: &Example) -> Result<TeacherRows> {
        let from_data = self.data.as_ref().map(|t| t.rows(example));
        match (from_data, &self.live) {
            (Some(Ok(rows)), _) => Ok(rows),
            (_, Some(live)) => live.rows(example),
            (Some(Err(e)), None) => Err(e),
            (None, None) => Err(DistillError::Teacher("no teacher".into())),
        }
    }
}

impl Objective for Distiller {
    fn prepare(
        &self,
        model: &TrainModel,
        rows: Vec<Row>,
        step: usize,
        micro: usize,
    ) -> herd_train::Result<Vec<Row>> {
        Ok(self.resample(model, rows, step, micro)?)
    }

    fn loss_sum(&self, model: &TrainModel, rows: &[Row]) -> herd_train::Result<(Tensor, usize)> {
        Ok(self.loss(model, rows)?)
    }

    fn describe(&self) -> String {
        format!(
            "distill {:?} vocab {} teacher {} on-policy {:?}",
            self.spec, self.vocab, self.teacher_identity, self.on_policy
        )
    }
}
