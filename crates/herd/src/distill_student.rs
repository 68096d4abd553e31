//! The student `herd distill` trains: an existing model, a new random one
//! of a given or default shape, or (the default) a cut of the teacher.

use std::path::{Path, PathBuf};

use anyhow::Context;
use herd_dist::Communicator;
use herd_distill::{student_config, student_config_json};
use herd_model::{Checkpoint, Config};
use herd_prune::PruneSpec;
use herd_tokenizer::Tokenizer;
use herd_train::{LoraConfig, LoraTarget, TrainModel, Tuning};

use crate::distill::{DistillArgs, StudentInit, Teacher};
use crate::load;

/// The student to train, its config.json text and where its tokenizer is.
pub(crate) struct Student {
    pub(crate) model: TrainModel,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) config_json: String,
    pub(crate) tokenizer_dir: PathBuf,
    pub(crate) default_lr: f64,
}

pub(crate) fn load_student(
    args: &DistillArgs,
    teacher: Option<&Teacher>,
    comm: &dyn Communicator,
) -> anyhow::Result<Student> {
    let pruned = match (&args.student, teacher) {
        (None, Some(t)) if args.student_config.is_none() && args.init == StudentInit::Prune => {
            Some(prune_student(args, t, comm)?)
        }
        _ => None,
    };
    if let Some(dir) = args.student.as_ref().or(pruned.as_ref()) {
        let ckpt = Checkpoint::open(dir)?;
        let tuning = match args.lora_rank {
            Some(rank) => {
                let lora = LoraConfig {
                    rank,
                    alpha: 2.0 * rank as f64,
                    targets: LoraTarget::parse_list("q,k,v,o")?,
                    rslora: false,
                };
                lora.validate()?;
                Tuning::Lora(lora)
            }
            None => Tuning::Full,
        };
        let cfg = dir.join("config.json");
        let default_lr = match (args.student.is_some(), args.lora_rank.is_some()) {
            (false, _) => PRUNED_LR,
            (true, true) => 2e-4,
            (true, false) => 2e-5,
        };
        return Ok(Student {
            default_lr,
            model: TrainModel::from_checkpoint(&ckpt, tuning, args.seed)?,
            tokenizer: Tokenizer::from_dir(dir)?,
            config_json: std::fs::read_to_string(&cfg)
                .with_context(|| format!("reading {}", cfg.display()))?,
            tokenizer_dir: dir.clone(),
        });
    }
    let teacher =
        teacher.context("a new student takes its tokenizer from the teacher: pass --teacher")?;
    let (config, config_json) = match &args.student_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            (Config::from_json(&text, path)?, text)
        }
        None => {
            let cfg = student_config(teacher.model.config(), 1.0 / 8.0)
                .context("the teacher is too small for a student of an eighth of its size; pass --student-config")?;
            let json = student_config_json(&teacher.config_json, &cfg)?;
            (cfg, json)
        }
    };
    // The teacher's own from-scratch rate suits the small default student.
    let default_lr = match args.student_config {
        Some(_) => 1e-3,
        None => 3e-3,
    };
    let tokenizer_dir = teacher_tokenizer_dir(teacher, &args.out)?;
    Ok(Student {
        model: TrainModel::random(config, args.seed)?,
        tokenizer: Tokenizer::from_dir(&tokenizer_dir)?,
        config_json,
        tokenizer_dir,
        default_lr,
    })
}

/// Peak learning rate of a student cut out of its teacher: between the
/// from-scratch 3e-3 and fine-tuning's 2e-5, as the cut is a damaged model
/// (calibration perplexity 4.4 → 711 for the embedded teacher) that must
/// relearn fast without losing what it kept.
const PRUNED_LR: f64 = 1e-3;

/// The default student cut out of `teacher` at an eighth of its size into
/// OUT/init (kept from an earlier start: `--resume` and the report's
/// untrained row read the same cut), ranked on the training data. Rank 0
/// cuts; the other data-parallel ranks wait and load the same directory.
fn prune_student(
    args: &DistillArgs,
    teacher: &Teacher,
    comm: &dyn Communicator,
) -> anyhow::Result<PathBuf> {
    let dir = args.out.join("init");
    if comm.rank() == 0 && !dir.join("model.safetensors").is_file() {
        cut_student(args, teacher, &dir)?;
    }
    comm.barrier()?;
    Ok(dir)
}

fn cut_student(args: &DistillArgs, teacher: &Teacher, dir: &Path) -> anyhow::Result<()> {
    let data = args
        .data
        .as_deref()
        .context("no training data to rank the teacher's parts on")?;
    let spec = PruneSpec::fitting(teacher.model.config(), 1.0 / 8.0).context(
        "the teacher is too small to cut a student of an eighth of its size out of; pass --student-config",
    )?;
    let cut = crate::prune::cut(teacher.dir.as_ref(), (data, CALIBRATION_TOKENS), &spec, dir)?;
    eprintln!(
        "cut the student out of the teacher: hidden {} → {}, MLP {} → {}, KV heads {} → {}, {:.3}M → {:.3}M parameters, calibration perplexity {:.2} → {:.2}",
        cut.before.hidden_size,
        cut.after.hidden_size,
        cut.before.intermediate_size,
        cut.after.intermediate_size,
        cut.before.num_key_value_heads,
        cut.after.num_key_value_heads,
        cut.before.num_parameters() as f64 / 1e6,
        cut.after.num_parameters() as f64 / 1e6,
        cut.perplexity.0,
        cut.perplexity.1,
    );
    Ok(())
}

/// Calibration tokens that rank the teacher's parts (`herd prune`'s default).
const CALIBRATION_TOKENS: usize = 16384;

/// A directory holding the teacher's tokenizer files (the embedded one's
/// are written under OUT/data).
fn teacher_tokenizer_dir(teacher: &Teacher, out: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &teacher.dir {
        return Ok(dir.clone());
    }
    let dir = out.join("data");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in [
        ("tokenizer.json", load::embedded::TOKENIZER),
        (
            "generation_config.json",
            load::embedded::GENERATION.as_bytes(),
        ),
    ] {
        herd_train::io::write_atomic(&dir.join(name), bytes)?;
    }
    Ok(dir)
}
