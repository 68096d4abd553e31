//! Every supported storage dtype runs through the same kernels: an f16 copy
//! of an f32 checkpoint gives the f32 logits up to f16 rounding of the
//! weights, and a model held in memory equals the same model memory-mapped.

mod common;

use common::{flat, max_abs_diff, model_dir, Reference};
use herd_model::{Llama, Logits};

#[test]
fn f16_checkpoint_matches_f32_up_to_weight_rounding() {
    let src = model_dir("llama32-tied");
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let converted: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let halves: Vec<u8> = view
                .data()
                .chunks_exact(4)
                .flat_map(|b| {
                    half::f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes()
                })
                .collect();
            (name, view.shape().to_vec(), halves)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = converted
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &tmp.path().join("model.safetensors")).unwrap();

    let f32_model = Llama::load(&src).unwrap();
    let f16_model = Llama::load(tmp.path()).unwrap();
    assert_eq!(f16_model.dtype(), herd_model::WeightDtype::F16);
    let prompt = &Reference::load("llama32-tied").prompts[1];
    let a = flat(
        &f32_model
            .forward_one(prompt, &mut f32_model.new_cache(), Logits::All)
            .unwrap(),
    );
    let b = flat(
        &f16_model
            .forward_one(prompt, &mut f16_model.new_cache(), Logits::All)
            .unwrap(),
    );
    let diff = max_abs_diff(&a, &b);
    // f16 keeps 11 significant bits: relative weight error ≤ 2^-11.
    assert!(
        diff > 0.0 && diff < 0.1,
        "f16 vs f32 logits differ by {diff}"
    );
}

#[test]
fn in_memory_model_equals_mapped_model() {
    let dir = model_dir("llama32-tied");
    let mapped = Llama::load(&dir).unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let in_memory = Llama::from_memory(&config, None, &weights, "memory").unwrap();
    let prompt = &Reference::load("llama32-tied").prompts[0];
    let a = flat(
        &mapped
            .forward_one(prompt, &mut mapped.new_cache(), Logits::All)
            .unwrap(),
    );
    let b = flat(
        &in_memory
            .forward_one(prompt, &mut in_memory.new_cache(), Logits::All)
            .unwrap(),
    );
    assert_eq!(a, b);
}
