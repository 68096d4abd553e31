//! Bad input gives a clear error naming the file, tensor or limit — never a
//! panic. Each case copies a fixture model into a temporary directory and
//! breaks one thing.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::model_dir;
use herd_model::{Llama, Logits, ModelError};

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model_dir(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

/// Rewrites `model.safetensors` through `edit`, which gets name → (dtype, shape, bytes).
fn edit_weights(
    dir: &Path,
    edit: impl FnOnce(&mut HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<_, _> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, (d, s, b))| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

fn load_err(dir: &Path) -> String {
    let err = Llama::load(dir).expect_err("loading should fail");
    err.to_string()
}

#[test]
fn missing_directory() {
    let msg = load_err(Path::new("/nonexistent/model"));
    assert!(msg.contains("/nonexistent/model"), "{msg}");
}

#[test]
fn missing_config() {
    let tmp = copy_fixture("llama32-tied");
    std::fs::remove_file(tmp.path().join("config.json")).unwrap();
    let msg = load_err(tmp.path());
    assert!(
        msg.contains("config.json") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn corrupt_config() {
    let tmp = copy_fixture("llama32-tied");
    std::fs::write(tmp.path().join("config.json"), "{\"hidden_size\": 64,,}").unwrap();
    let msg = load_err(tmp.path());
    assert!(
        msg.contains("config.json") && msg.contains("line 1"),
        "{msg}"
    );
}

#[test]
fn config_missing_a_field() {
    let tmp = copy_fixture("llama32-tied");
    edit_config(tmp.path(), |c| {
        c.as_object_mut().unwrap().remove("num_hidden_layers");
    });
    let msg = load_err(tmp.path());
    assert!(msg.contains("num_hidden_layers"), "{msg}");
}

#[test]
fn unsupported_architecture() {
    let tmp = copy_fixture("llama32-tied");
    edit_config(tmp.path(), |c| {
        c["architectures"] = serde_json::json!(["MistralForCausalLM"]);
        c["model_type"] = serde_json::json!("mistral");
    });
    let err = Llama::load(tmp.path()).unwrap_err();
    assert!(
        matches!(err, ModelError::UnsupportedArchitecture { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("MistralForCausalLM"));
}

#[test]
fn unsupported_rope_type() {
    let tmp = copy_fixture("llama31-tiny");
    edit_config(tmp.path(), |c| {
        c["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
        if let Some(p) = c.get_mut("rope_parameters") {
            p["rope_type"] = serde_json::json!("yarn");
        }
    });
    let err = Llama::load(tmp.path()).unwrap_err();
    assert!(matches!(err, ModelError::UnsupportedRope { .. }), "{err}");
    assert!(err.to_string().contains("yarn"));
}

#[test]
fn missing_tensor() {
    let tmp = copy_fixture("llama32-tied");
    edit_weights(tmp.path(), |t| {
        t.remove("model.layers.1.mlp.up_proj.weight");
    });
    let msg = load_err(tmp.path());
    assert!(
        msg.contains("model.layers.1.mlp.up_proj.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn wrong_shape() {
    let tmp = copy_fixture("llama32-tied");
    edit_config(tmp.path(), |c| {
        c["intermediate_size"] = serde_json::json!(200)
    });
    let err = Llama::load(tmp.path()).unwrap_err();
    assert!(matches!(err, ModelError::WrongShape { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("gate_proj") && msg.contains("200"), "{msg}");
}

#[test]
fn truncated_weights_file() {
    let tmp = copy_fixture("llama32-tied");
    let path = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(tmp.path());
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn garbage_weights_file() {
    let tmp = copy_fixture("llama32-tied");
    std::fs::write(
        tmp.path().join("model.safetensors"),
        b"not a safetensors file at all",
    )
    .unwrap();
    let msg = load_err(tmp.path());
    assert!(
        msg.contains("model.safetensors") && msg.contains("not a valid safetensors"),
        "{msg}"
    );
}

#[test]
fn missing_shard() {
    let tmp = copy_fixture("llama31-tiny");
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let shard = index["weight_map"]["lm_head.weight"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(tmp.path().join(&shard)).unwrap();
    let msg = load_err(tmp.path());
    assert!(msg.contains(&shard) && msg.contains("not found"), "{msg}");
}

#[test]
fn prompt_longer_than_context() {
    let model = Llama::load(&model_dir("llama32-tied")).unwrap();
    let limit = model.config().max_position_embeddings;
    let prompt = vec![1u32; limit + 1];
    let err = model
        .forward_one(&prompt, &mut model.new_cache(), Logits::Last)
        .unwrap_err();
    assert!(matches!(err, ModelError::ContextOverflow { .. }), "{err}");
    assert!(err.to_string().contains(&limit.to_string()));
}

#[test]
fn token_outside_vocabulary_leaves_cache_untouched() {
    let model = Llama::load(&model_dir("llama32-tied")).unwrap();
    let mut cache = model.new_cache();
    model
        .forward_one(&[1, 2, 3], &mut cache, Logits::Last)
        .unwrap();
    let vocab = model.config().vocab_size as u32;
    let err = model
        .forward_one(&[4, vocab], &mut cache, Logits::Last)
        .unwrap_err();
    assert!(matches!(err, ModelError::TokenOutOfRange { .. }), "{err}");
    assert_eq!(cache.len(), 3);
}
