//! Exact resume: a run stopped at step k and resumed produces the very same
//! loss at every step as an uninterrupted run; a checkpoint from another
//! model or run is refused with a clear error and left untouched.

use std::path::{Path, PathBuf};

use herd_model::Checkpoint;
use herd_tokenizer::Tokenizer;
use herd_train::optim::AdamWConfig;
use herd_train::{
    train, DataOptions, Dataset, LoraConfig, LoraTarget, LossOn, RunFiles, TrainModel,
    TrainOptions, Tuning,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir(name: &str) -> PathBuf {
    root().join("tests/fixtures/models").join(name)
}

fn dataset(model: &str) -> Dataset {
    let tokenizer = Tokenizer::from_dir(model_dir(model)).expect("tokenizer");
    let opts = DataOptions {
        loss_on: LossOn::Assistant,
        skip_bad_records: false,
        seq_len: 256,
        truncate: false,
        validation_fraction: 0.1,
    };
    Dataset::load(
        &root().join("tests/fixtures/train/chat.jsonl"),
        &tokenizer,
        &opts,
    )
    .expect("data")
}

fn options() -> TrainOptions {
    TrainOptions {
        steps: 7,
        lr: 3e-3,
        warmup: 2,
        min_lr_ratio: 0.1,
        adamw: AdamWConfig {
            weight_decay: 0.01,
            ..AdamWConfig::default()
        },
        batch_tokens: 512,
        grad_accum: 2,
        clip: Some(1.0),
        seed: 3,
        seq_len: 256,
        eval_every: 3,
        save_every: 0,
    }
}

fn lora_model(name: &str) -> TrainModel {
    let ckpt = Checkpoint::open(&model_dir(name)).expect("checkpoint");
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Up],
        rslora: false,
    };
    TrainModel::from_checkpoint(&ckpt, Tuning::Lora(lora), 3).expect("model")
}

fn full_model() -> TrainModel {
    let ckpt = Checkpoint::open(&model_dir("llama31-tiny")).expect("checkpoint");
    TrainModel::from_checkpoint(&ckpt, Tuning::Full, 3).expect("model")
}

fn files(dir: &Path) -> RunFiles {
    RunFiles {
        dir: dir.to_path_buf(),
        progress: false,
    }
}

fn assert_resume_is_exact(make: impl Fn() -> TrainModel) {
    let data = dataset("llama31-tiny");
    let opts = options();
    let tmp = tempfile::tempdir().expect("tmp");
    let whole_dir = tmp.path().join("whole");
    let whole = train(&make(), &data, &opts, &files(&whole_dir), false, &|_| false).expect("whole");
    assert_eq!(whole.losses.len(), 7);
    assert!(!whole.interrupted);
    let split_dir = tmp.path().join("split");
    let first = train(&make(), &data, &opts, &files(&split_dir), false, &|s| {
        s == 3
    })
    .expect("first");
    assert!(first.interrupted);
    assert_eq!(first.step, 3);
    // A fresh model object: everything must come from the checkpoint.
    let resumed =
        train(&make(), &data, &opts, &files(&split_dir), true, &|_| false).expect("resume");
    assert_eq!(resumed.step, 7);
    assert_eq!(resumed.losses, whole.losses, "every loss, bit for bit");
    assert_eq!(resumed.validation, whole.validation);
    let first_loss = whole.losses[0].1;
    let last_loss = whole.losses[6].1;
    assert!(
        last_loss < first_loss,
        "training lowers the loss: {first_loss} → {last_loss}"
    );
    let png = std::fs::read(split_dir.join("loss.png")).expect("curve");
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn lora_resume_gives_the_identical_loss_curve() {
    assert_resume_is_exact(|| lora_model("llama31-tiny"));
}

#[test]
fn full_resume_gives_the_identical_loss_curve() {
    assert_resume_is_exact(full_model);
}

#[test]
fn checkpoint_from_another_model_or_run_is_refused() {
    let data = dataset("llama31-tiny");
    let mut opts = options();
    opts.steps = 4;
    let tmp = tempfile::tempdir().expect("tmp");
    let run = files(tmp.path());
    train(
        &lora_model("llama31-tiny"),
        &data,
        &opts,
        &run,
        false,
        &|s| s == 1,
    )
    .expect("first");
    let before = std::fs::read(run.checkpoint()).expect("checkpoint");

    let other_data = dataset("llama32-tied");
    let err = train(
        &lora_model("llama32-tied"),
        &other_data,
        &opts,
        &run,
        true,
        &|_| false,
    )
    .expect_err("another model");
    let msg = err.to_string();
    assert!(
        msg.contains("cannot resume") && msg.contains("model configuration"),
        "{msg}"
    );

    let err = train(&full_model(), &data, &opts, &run, true, &|_| false).expect_err("full vs LoRA");
    assert!(err.to_string().contains("different tuning"), "{err}");

    opts.lr *= 2.0;
    let err = train(
        &lora_model("llama31-tiny"),
        &data,
        &opts,
        &run,
        true,
        &|_| false,
    )
    .expect_err("other options");
    assert!(err.to_string().contains("training options"), "{err}");
    assert_eq!(
        std::fs::read(run.checkpoint()).expect("checkpoint"),
        before,
        "left untouched"
    );
}
