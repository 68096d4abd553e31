//! GGUF written by herd's exporter and read back by herd's loader: the f32
//! file reproduces the Hugging Face checkpoint's logits (proving the q/k row
//! permutation, interleaved RoPE and `rope_freqs` together), and each
//! quantized type stays within its quantization error.

mod common;

use common::{flat, max_abs_diff, model_dir, Reference};
use herd_gguf::GgufWriter;
use herd_model::{add_model_tensors, model_metadata, Checkpoint, FileType, Llama, Logits};

fn export(name: &str, file_type: FileType) -> (tempfile::TempDir, std::path::PathBuf) {
    let checkpoint = Checkpoint::open(&model_dir(name)).unwrap();
    let mut writer = GgufWriter::with_metadata(model_metadata(&checkpoint.config, name, file_type));
    add_model_tensors(
        &mut writer,
        &checkpoint.config,
        &checkpoint.tensors,
        &checkpoint.rope,
        file_type,
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(format!("{name}.gguf"));
    writer.write_to_path(&path).unwrap();
    (tmp, path)
}

fn all_logits(model: &Llama, prompt: &[u32]) -> Vec<f32> {
    flat(
        &model
            .forward_one(prompt, &mut model.new_cache(), Logits::All)
            .unwrap(),
    )
}

#[test]
fn f32_gguf_reproduces_the_safetensors_logits() {
    for name in ["llama31-tiny", "llama32-tied"] {
        let (_tmp, path) = export(name, FileType::F32);
        let gguf = Llama::load(&path).unwrap();
        let reference = Reference::load(name);
        for (i, prompt) in reference.prompts.iter().enumerate() {
            let diff = max_abs_diff(&all_logits(&gguf, prompt), &reference.logits("logits", i));
            assert!(
                diff < 1e-4,
                "{name} prompt {i}: GGUF f32 vs transformers differ by {diff}"
            );
        }
    }
}

#[test]
fn quantized_gguf_stays_within_quantization_error() {
    let reference = Reference::load("llama32-tied");
    let prompt = &reference.prompts[2];
    let want = reference.logits("logits", 2);
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    // Bounds relative to the largest logit, about 1.5x what was measured on
    // this random model (whose large weights amplify errors far more than a
    // trained one): F16 0.2%, BF16 1.2%, Q8_0 5.7%, Q6_K 7.9%, Q4_K_M 13%,
    // Q4_0 57%. Rows 96 wide are not whole K-quant super-blocks, so the
    // K-quant files keep those tensors in Q8_0 (only ffn_down is a K-quant).
    for (file_type, tolerance) in [
        (FileType::F16, 0.005),
        (FileType::Bf16, 0.02),
        (FileType::Q8_0, 0.09),
        (FileType::Q6K, 0.12),
        (FileType::Q4KM, 0.2),
        (FileType::Q4_0, 0.85),
    ] {
        let (_tmp, path) = export("llama32-tied", file_type);
        let model = Llama::load(&path).unwrap();
        let diff = max_abs_diff(&all_logits(&model, prompt), &want);
        eprintln!(
            "{file_type:?}: max |Δlogit| = {diff:.4} ({:.2}% of the largest logit)",
            100.0 * diff / scale
        );
        assert!(
            diff > 0.0 && diff < tolerance * scale,
            "{file_type:?}: max |Δ| = {diff} vs logit scale {scale}"
        );
    }
}

#[test]
fn corrupt_gguf_is_a_clear_error() {
    let (tmp, path) = export("llama31-tiny", FileType::Q8_0);
    let bytes = std::fs::read(&path).unwrap();
    let truncated = tmp.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let msg = Llama::load(&truncated).unwrap_err().to_string();
    assert!(msg.contains("truncated.gguf"), "{msg}");
    let not_gguf = tmp.path().join("notes.txt");
    std::fs::write(&not_gguf, "hello").unwrap();
    let msg = Llama::load(&not_gguf).unwrap_err().to_string();
    assert!(msg.contains("notes.txt"), "{msg}");
}
