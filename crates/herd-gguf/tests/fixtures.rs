//! Real GGUF files written by llama.cpp's converter (`tests/fixtures/gguf/*.gguf`
//! at the workspace root), read by this crate and re-written by its writer.
//! Skipped, with a note on stderr, while that directory does not exist.

use std::path::{Path, PathBuf};

use herd_gguf::{dump, GgmlType, GgufFile, GgufWriter, OptionalKey};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipping: no GGUF fixtures at {}", dir.display());
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    if files.is_empty() {
        eprintln!("skipping: no .gguf files in {}", dir.display());
    }
    files
}

#[test]
fn llama_cpp_fixtures_parse_and_fit() {
    for path in fixtures() {
        let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let name = path.display();
        assert_eq!(
            file.architecture().expect("general.architecture"),
            "llama",
            "{name}"
        );
        let meta = file.metadata();
        let tokens = meta
            .get_array_str("tokenizer.ggml.tokens")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!tokens.is_empty(), "{name}: empty vocabulary");
        if let Some(vocab) = meta
            .get_usize("llama.vocab_size")
            .optional()
            .expect("vocab_size type")
        {
            assert_eq!(vocab, tokens.len(), "{name}: llama.vocab_size vs tokens");
        }
        let block_count = meta
            .get_u32("llama.block_count")
            .expect("llama.block_count");
        assert!(
            file.tensor(&format!("blk.{}.attn_q.weight", block_count - 1))
                .is_some(),
            "{name}: last block"
        );

        if let Some(freqs) = file.tensor("rope_freqs.weight") {
            let info = freqs.info();
            assert_eq!(info.ggml_type(), GgmlType::F32, "{name}: rope_freqs type");
            assert_eq!(info.dims().len(), 1, "{name}: rope_freqs is a vector");
            let head_dim = meta
                .get_u32("llama.rope.dimension_count")
                .expect("llama.rope.dimension_count");
            assert_eq!(
                info.dims()[0] * 2,
                u64::from(head_dim),
                "{name}: one factor per frequency"
            );
        }

        let len = file.bytes().len();
        for t in file.tensors() {
            let info = t.info();
            let range = info.file_range();
            assert!(
                range.start as u64 >= file.data_offset(),
                "{name}: {} starts before data",
                info.name()
            );
            assert!(
                range.end <= len,
                "{name}: {} ends past the file",
                info.name()
            );
            assert_eq!(
                range.start as u64 % file.alignment(),
                file.data_offset() % file.alignment()
            );
            let n = info
                .ggml_type()
                .bytes_for(info.n_elements())
                .expect("whole blocks");
            assert_eq!(t.data().len() as u64, n, "{name}: {} size", info.name());
        }
        assert!(dump(&file).contains("tokenizer.ggml.tokens"));
    }
}

/// Re-writing a converter's file with our writer reproduces its metadata and
/// tensors exactly, and (because both writers lay files out the same way) its bytes.
#[test]
fn llama_cpp_fixtures_rewrite_identically() {
    for path in fixtures() {
        let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut w = GgufWriter::with_metadata(file.metadata().clone());
        for t in file.tensors() {
            let info = t.info();
            w.add_tensor(info.name(), info.ggml_type(), info.dims(), t.data())
                .expect("valid tensor");
        }
        let mut out = Vec::new();
        w.write(&mut out).expect("write");
        let again = GgufFile::from_bytes(&out).expect("re-read");
        assert_eq!(again.metadata(), file.metadata(), "{}", path.display());
        for (a, b) in file.tensors().zip(again.tensors()) {
            assert_eq!(a.info().name(), b.info().name());
            assert_eq!(
                a.info().offset(),
                b.info().offset(),
                "{}: same layout",
                a.info().name()
            );
            assert_eq!(a.data(), b.data(), "{}", a.info().name());
        }
        assert!(
            out[..] == file.bytes()[..],
            "{}: byte-identical rewrite",
            path.display()
        );
    }
}
