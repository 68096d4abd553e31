//! Shared helpers: fixture paths and the committed transformers references.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use herd_model::{Weight, WeightFiles};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn model_dir(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/models").join(name)
}

/// The references written by tools/make_fixtures.py for one model.
pub struct Reference {
    pub prompts: Vec<Vec<u32>>,
    pub greedy: Vec<Vec<u32>>,
    tensors: WeightFiles,
    vocab: usize,
}

impl Reference {
    pub fn load(name: &str) -> Reference {
        let dir = repo_root().join("tests/fixtures/reference");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let ids = |v: &serde_json::Value| -> Vec<Vec<u32>> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p.as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_u64().unwrap() as u32)
                        .collect()
                })
                .collect()
        };
        let path = dir.join(format!("{name}.safetensors"));
        let tensors =
            WeightFiles::open_files(std::slice::from_ref(&path), path.display().to_string())
                .unwrap();
        Reference {
            prompts: ids(&json["prompts"]),
            greedy: ids(&json["greedy"]),
            tensors,
            vocab: json["vocab_size"].as_u64().unwrap_or(384) as usize,
        }
    }

    /// `(len, vocab)` logits of prompt `i`, flattened row-major.
    pub fn logits(&self, kind: &str, i: usize) -> Vec<f32> {
        let len = self.prompts[i].len();
        let w: Weight = self
            .tensors
            .get(&format!("{kind}.{i}"), &[len, self.vocab])
            .unwrap();
        w.to_f32_vec().unwrap()
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}
