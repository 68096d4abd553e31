//! Writes the seed corpus for `gguf_header` into `corpus/gguf_header/`: a
//! small valid file made with herd's writer (every value type, three tensor
//! types) and the headers of the llama.cpp-made test fixtures, cut shortly
//! after their data section starts.

use std::path::Path;

use herd_gguf::{GgmlType, GgufFile, GgufWriter, Metadata, MetadataArray};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("corpus/gguf_header");
    std::fs::create_dir_all(&out)?;

    let mut m = Metadata::new();
    m.set("general.architecture", "llama");
    m.set("general.alignment", 64u32);
    m.set("llama.block_count", 2u32);
    m.set("llama.rope.freq_base", 500000f32);
    m.set("general.flag", true);
    m.set("general.big", u64::MAX);
    m.set("general.neg", -3i64);
    m.set("general.f64", 0.5f64);
    m.set("tokenizer.ggml.tokens", vec!["a", "bb", "ccc"]);
    m.set("tokenizer.ggml.scores", vec![0.5f32, 0.25, 0.125]);
    m.set("nested", vec![MetadataArray::from(vec![1u16, 2])]);
    let mut w = GgufWriter::with_metadata(m);
    w.add_tensor("a", GgmlType::F32, &[3], vec![1u8; 12])?;
    w.add_tensor("b", GgmlType::Q8_0, &[32, 2], vec![2u8; 68])?;
    w.add_tensor("c", GgmlType::F16, &[5], vec![3u8; 10])?;
    let mut small = Vec::new();
    w.write(&mut small)?;
    std::fs::write(out.join("herd-writer-small.gguf"), &small)?;

    for name in ["llama31-tiny-F32", "llama31-k256-Q4_K_M", "llama31-bf16-BF16"] {
        let path = root.join(format!("../tests/fixtures/gguf/{name}.gguf"));
        let file = GgufFile::open(&path)?;
        let bytes = std::fs::read(&path)?;
        let cut = (file.data_offset() as usize + 256).min(bytes.len());
        std::fs::write(out.join(format!("{name}-header.gguf")), &bytes[..cut])?;
    }
    Ok(())
}
