//! herd's trainer against PyTorch and PEFT (fixtures made by
//! tools/make_train_fixtures.py), and the paths that must agree with each
//! other: packed vs separate documents, LoRA training forward vs merged
//! inference model, `herd merge` output vs base + adapter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use herd_model::{Checkpoint, Llama, Logits};
use herd_train::data::pack;
use herd_train::{
    load_with_adapter, loss_and_grads, loss_sum, merge_to_dir, save_trained, Example, LoraConfig,
    LoraTarget, TrainModel, Tuning,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir(name: &str) -> PathBuf {
    root().join("tests/fixtures/models").join(name)
}

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = root().join("tests/fixtures/train").join(name);
    candle_core::safetensors::load(&path, &Device::Cpu).expect("fixture")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .expect("sub")
        .abs()
        .expect("abs")
        .flatten_all()
        .expect("flat")
        .max(0)
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

fn ids_of(t: &Tensor) -> Vec<i64> {
    t.to_vec1::<i64>().expect("ids")
}

#[test]
fn loss_and_gradients_match_pytorch() {
    let refs = fixture("grads.safetensors");
    for name in ["llama31-tiny", "llama32-tied"] {
        let ckpt = Checkpoint::open(&model_dir(name)).expect("checkpoint");
        let model = TrainModel::from_checkpoint(&ckpt, Tuning::Full, 0).expect("model");
        let ids = ids_of(&refs[&format!("{name}.input_ids")]);
        let labels = ids_of(&refs[&format!("{name}.labels")]);
        let example = Example {
            ids: ids.iter().map(|&i| i as u32).collect(),
            target: labels.iter().map(|&l| l >= 0).collect(),
        };
        let rows = pack(&[&example], ids.len() - 1);
        assert_eq!(rows.len(), 1);
        let (loss, grads) = loss_and_grads(&model, &rows).expect("loss");
        let want = refs[&format!("{name}.loss")]
            .to_vec1::<f32>()
            .expect("loss")[0];
        assert!(
            (loss as f32 - want).abs() < 1e-4,
            "{name}: loss {loss} vs {want}"
        );
        let grads: HashMap<String, Tensor> = grads.into_iter().collect();
        let mut checked = 0;
        for (key, want) in &refs {
            let Some(param) = key.strip_prefix(&format!("{name}.grad.")) else {
                continue;
            };
            let got = match param {
                "embed_rows_0_32" => grads["model.embed_tokens.weight"]
                    .narrow(0, 0, 32)
                    .expect("rows"),
                p => grads[p].clone(),
            };
            let diff = max_diff(&got, want);
            assert!(diff < 1e-4, "{name} {param}: gradient differs by {diff}");
            checked += 1;
        }
        assert!(checked >= 3, "{name}: only {checked} gradients compared");
    }
}

/// All-position logits of the inference model for `ids`.
fn inference_logits(model: &Llama, ids: &[u32]) -> Tensor {
    let mut cache = model.new_cache();
    model
        .forward_one(ids, &mut cache, Logits::All)
        .expect("forward")
}

fn adapter_logits_match(adapter: &str, logits_file: &str) {
    let refs = fixture(logits_file);
    let ids: Vec<u32> = ids_of(&refs["input_ids"])
        .iter()
        .map(|&i| i as u32)
        .collect();
    let ckpt = Checkpoint::open(&model_dir("llama31-tiny")).expect("checkpoint");
    let model =
        load_with_adapter(ckpt, &root().join("tests/fixtures/train").join(adapter)).expect("load");
    let logits = inference_logits(&model, &ids);
    let base = Llama::load(&model_dir("llama31-tiny")).expect("base");
    let moved = max_diff(&inference_logits(&base, &ids), &refs["logits"]);
    assert!(
        moved > 1e-2,
        "the adapter must change the logits (by {moved})"
    );
    let diff = max_diff(&logits, &refs["logits"]);
    assert!(
        diff < 1e-4,
        "{adapter}: logits differ from PEFT's by {diff}"
    );
}

#[test]
fn peft_made_adapter_gives_pefts_logits() {
    adapter_logits_match("peft_adapter", "peft_logits.safetensors");
}

#[test]
fn herd_made_adapter_gives_pefts_logits() {
    adapter_logits_match("herd_adapter", "herd_adapter_logits.safetensors");
}

#[test]
fn packed_documents_do_not_see_each_other() {
    let ckpt = Checkpoint::open(&model_dir("llama31-tiny")).expect("checkpoint");
    let model = TrainModel::from_checkpoint(&ckpt, Tuning::Full, 0).expect("model");
    let doc = |seed: u32, n: u32| Example {
        ids: (0..n).map(|i| (i * 37 + seed * 11) % 373).collect(),
        target: (0..n).map(|i| i > 0).collect(),
    };
    let (a, b) = (doc(1, 9), doc(2, 13));
    let loss_of = |rows: &[herd_train::data::Row]| {
        let logits = model.forward(rows).expect("forward");
        loss_sum(&logits, rows)
            .expect("loss")
            .0
            .to_scalar::<f32>()
            .expect("scalar")
    };
    let packed = pack(&[&a, &b], 24);
    assert_eq!(packed.len(), 1, "both documents share one row");
    let separate = loss_of(&pack(&[&a], 24)) + loss_of(&pack(&[&b], 24));
    let together = loss_of(&packed);
    assert!(
        (separate - together).abs() < 1e-4,
        "{separate} vs {together}"
    );
}

#[test]
fn lora_training_forward_equals_merged_and_exported_models() {
    let dir = model_dir("llama31-tiny");
    let ckpt = Checkpoint::open(&dir).expect("checkpoint");
    let lora = LoraConfig {
        rank: 3,
        alpha: 6.0,
        targets: LoraTarget::ALL.to_vec(),
        rslora: false,
    };
    let model = TrainModel::from_checkpoint(&ckpt, Tuning::Lora(lora), 5).expect("model");
    for (i, (name, var)) in model.trainable().iter().enumerate() {
        if name.contains("lora_B") {
            let noise = Tensor::randn(0f32, 0.3, var.dims(), &Device::Cpu).expect("noise");
            var.set(&(noise * (1.0 + i as f64 / 100.0)).expect("scale"))
                .expect("set");
        }
    }
    let ids: Vec<u32> = (0..20).map(|i| (i * 29 + 3) % 373).collect();
    let example = Example {
        target: vec![true; ids.len()],
        ids: ids.clone(),
    };
    let rows = pack(&[&example], ids.len() - 1);
    let trained = model.forward(&rows).expect("forward");
    let tmp = tempfile::tempdir().expect("tmp");
    let adapter = tmp.path().join("adapter");
    let config = std::fs::read_to_string(dir.join("config.json")).expect("config");
    save_trained(&adapter, &model, &config, &dir, "llama31-tiny").expect("save");
    let merged = load_with_adapter(Checkpoint::open(&dir).expect("ckpt"), &adapter).expect("load");
    let at_load = inference_logits(&merged, &ids[..ids.len() - 1]);
    let diff = max_diff(&trained, &at_load);
    assert!(diff < 1e-4, "LoRA training forward vs merged model: {diff}");
    let out = tmp.path().join("merged");
    merge_to_dir(&dir, &adapter, &out).expect("merge");
    let written = Llama::load(&out).expect("merged dir loads");
    let diff = max_diff(&inference_logits(&written, &ids[..ids.len() - 1]), &at_load);
    assert!(diff < 1e-5, "herd merge output vs base + adapter: {diff}");
    let again = merge_to_dir(&dir, &adapter, &out).expect_err("out is not empty");
    assert!(again.to_string().contains("not empty"), "{again}");
}
