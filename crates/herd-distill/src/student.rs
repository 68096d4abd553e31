//! A fresh student for a teacher: the same vocabulary, context, RoPE and
//! special tokens (so one tokenizer serves both and the teacher's
//! distributions line up token for token), scaled down to a parameter
//! budget.

use herd_model::Config;

use crate::error::{DistillError, Result};

/// The student's config.json: the teacher's, with the student's sizes (so
/// special token ids, RoPE and context carry over unchanged).
pub fn student_config_json(teacher_json: &str, student: &Config) -> Result<String> {
    let mut value: serde_json::Value = serde_json::from_str(teacher_json)
        .map_err(|e| DistillError::InvalidOption(format!("the teacher's config.json: {e}")))?;
    let obj = value.as_object_mut().ok_or_else(|| {
        DistillError::InvalidOption("the teacher's config.json is not an object".into())
    })?;
    let sizes = [
        ("hidden_size", student.hidden_size),
        ("intermediate_size", student.intermediate_size),
        ("num_hidden_layers", student.num_hidden_layers),
        ("num_attention_heads", student.num_attention_heads),
        ("num_key_value_heads", student.num_key_value_heads),
        ("head_dim", student.head_dim),
        ("vocab_size", student.vocab_size),
    ];
    for (key, v) in sizes {
        obj.insert(key.into(), v.into());
    }
    obj.insert(
        "tie_word_embeddings".into(),
        student.tie_word_embeddings.into(),
    );
    obj.insert("torch_dtype".into(), "float32".into());
    obj.remove("dtype");
    serde_json::to_string_pretty(&value).map_err(|e| DistillError::InvalidOption(e.to_string()))
}

/// The widest, then deepest, Llama that fits in `fraction` of the teacher's
/// parameters: width a multiple of 16 (heads of 16 below 64, of 32 above,
/// key/value heads a third or half of them), MLP about 8/3 of the width,
/// embeddings tied, at most as many layers as the teacher. `None` when
/// even one layer of width 16 is too large.
pub fn student_config(teacher: &Config, fraction: f64) -> Option<Config> {
    let budget = (teacher.num_parameters() as f64 * fraction) as u64;
    let candidate = |hidden: usize, layers: usize| {
        let head_dim = if hidden < 64 { 16 } else { 32 };
        let heads = hidden / head_dim;
        let kv = [4, 3, 2, 1]
            .into_iter()
            .find(|d| heads.is_multiple_of(*d))
            .map_or(1, |d| heads / d);
        Config {
            hidden_size: hidden,
            intermediate_size: (hidden * 8 / 3).div_ceil(16) * 16,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            tie_word_embeddings: true,
            ..teacher.clone()
        }
    };
    // Width first: two layers at the widest width that fits, then as many
    // layers as the budget allows.
    let min_layers = teacher.num_hidden_layers.min(2);
    let hidden = (1..=teacher.hidden_size / 16)
        .rev()
        .map(|m| m * 16)
        .find(|&h| candidate(h, min_layers).num_parameters() <= budget)?;
    let layers = (min_layers..=teacher.num_hidden_layers)
        .rev()
        .find(|&l| candidate(hidden, l).num_parameters() <= budget)?;
    Some(candidate(hidden, layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_teachers_student_fits_an_eighth() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/teacher/config.json");
        let teacher = Config::from_file(&path).expect("config");
        let student = student_config(&teacher, 1.0 / 8.0).expect("a student fits");
        assert!(8 * student.num_parameters() <= teacher.num_parameters());
        assert_eq!(student.vocab_size, teacher.vocab_size);
        assert_eq!(student.num_attention_heads % student.num_key_value_heads, 0);
        assert_eq!(
            student.num_attention_heads * student.head_dim,
            student.hidden_size
        );
        let text = std::fs::read_to_string(&path).expect("json");
        let json = student_config_json(&text, &student).expect("student json");
        let back = Config::from_json(&json, &path).expect("parses");
        assert_eq!(back.num_parameters(), student.num_parameters());
        let tiny = Config {
            hidden_size: 16,
            num_hidden_layers: 1,
            ..teacher
        };
        assert!(student_config(&tiny, 0.01).is_none());
    }
}
