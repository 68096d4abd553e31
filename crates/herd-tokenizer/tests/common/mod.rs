//! Shared by the integration tests: the repository's fixture paths and
//! Meta's Llama 3 tokenizer, loaded once per test binary.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use herd_tokenizer::Tokenizer;

pub mod meta_dialogs;
pub mod meta_ids;

/// The workspace root, found from this crate's manifest directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/herd-tokenizer has two parent directories")
        .to_path_buf()
}

/// `tests/fixtures/<rel>` under the repository root.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// Reads and parses a JSON fixture.
pub fn read_json<T: serde::de::DeserializeOwned>(rel: &str) -> T {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Where tools/fetch_llama3_tokenizer.sh puts Meta's tokenizer.
pub fn llama3_model_path() -> PathBuf {
    repo_root().join("target/llama3-tokenizer/tokenizer.model")
}

/// Meta's Llama 3 tokenizer. Fails (never skips) when the file is missing:
/// these tests are the proof that herd's ids equal Meta's.
pub fn llama3() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = llama3_model_path();
        assert!(
            path.is_file(),
            "{} is missing: run `tools/fetch_llama3_tokenizer.sh` from the repository root first \
             (it extracts Meta's Llama 3 tokenizer.model from the llama-models wheel; the file is \
             not committed because of its licence)",
            path.display()
        );
        Tokenizer::from_tiktoken(&path).unwrap_or_else(|e| panic!("loading Meta's tokenizer: {e}"))
    })
}

/// The 384-token Llama 3-style tokenizer.json made for herd's tiny test models.
pub fn tiny() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_tokenizer_json(fixture("tokenizer-tiny/tokenizer.json"))
            .unwrap_or_else(|e| panic!("loading the tiny tokenizer: {e}"))
    })
}

/// A scratch directory for this test, emptied first.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("herd-tokenizer")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
