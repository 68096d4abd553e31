//! The GGUF path ([`Tokenizer::from_gguf_vocab`], [`Tokenizer::to_gguf_vocab`])
//! against the other paths.
//!
//! The arrays llama.cpp's converter (`convert_hf_to_gguf.py`,
//! `get_vocab_base`) writes are derived here, independently of herd's
//! exporter, from a loaded tokenizer's `tokenizer.json` form; built from
//! them, Meta's vocabulary must give Meta's ids and the tiny one the tiny
//! `tokenizer.json`'s ids. Files that llama.cpp itself converted
//! (`tests/fixtures/gguf/*.gguf`) check that derivation and the whole path;
//! that test is skipped, with a note, while they are absent.

mod common;

use std::path::{Path, PathBuf};

use common::meta_dialogs::assert_dialogs_match_meta;
use common::meta_ids::{expected, first_difference, mismatches, multilingual_text};
use common::{llama3, repo_root, tiny};
use herd_gguf::{GgufFile, OptionalKey};
use herd_tokenizer::{
    llama3_special_token_names, ChatFormat, GgufExportProblem, GgufVocab, GgufVocabProblem,
    Message, Tokenizer, TokenizerError, TokenizerFormat, VocabProblem,
};

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// What llama.cpp's converter writes for `tok` with an embedding of
/// `vocab_size` rows: tokens by id (`[PAD{id}]`, unused, for ids without
/// one), added tokens control if special else user-defined, merges as
/// `"left right"`, and the `llama-bpe` pre-tokenizer.
fn llama_cpp_arrays(tok: &Tokenizer, vocab_size: usize, eos: &str) -> GgufVocab {
    let json: serde_json::Value =
        serde_json::from_str(&tok.to_tokenizer_json().expect("json")).expect("parse");
    let mut by_id: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    for (token, id) in json["model"]["vocab"].as_object().expect("vocab") {
        by_id[id.as_u64().expect("id") as usize] = Some((token.clone(), NORMAL));
    }
    for added in json["added_tokens"].as_array().expect("added_tokens") {
        let kind = if added["special"].as_bool().expect("special") {
            CONTROL
        } else {
            USER_DEFINED
        };
        let content = added["content"].as_str().expect("content").to_owned();
        by_id[added["id"].as_u64().expect("id") as usize] = Some((content, kind));
    }
    let (tokens, token_types) = by_id
        .into_iter()
        .enumerate()
        .map(|(id, token)| token.unwrap_or_else(|| (format!("[PAD{id}]"), UNUSED)))
        .unzip();
    let merges = json["model"]["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .map(|pair| {
            let pair = pair.as_array().expect("[left, right]");
            format!(
                "{} {}",
                pair[0].as_str().expect("left"),
                pair[1].as_str().expect("right")
            )
        })
        .collect();
    GgufVocab {
        model: "gpt2".to_owned(),
        pre: Some("llama-bpe".to_owned()),
        tokens,
        token_types: Some(token_types),
        merges,
        bos_id: tok.bos_id(),
        eos_id: tok.special_id(eos),
        add_bos: Some(true),
    }
}

/// Every Llama 3 special-token name has the same id (or none) in both.
fn assert_same_specials(tok: &Tokenizer, reference: &Tokenizer) {
    for name in llama3_special_token_names() {
        assert_eq!(tok.special_id(&name), reference.special_id(&name), "{name}");
    }
    assert_eq!(tok.vocab_size(), reference.vocab_size());
    assert_eq!(tok.bos_id(), reference.bos_id());
    assert_eq!(tok.stop_ids(), reference.stop_ids());
}

/// Meta's 128,256-token vocabulary through llama.cpp's GGUF layout gives
/// Meta's ids for text and dialogs, and the very pipeline the tiktoken loader
/// builds.
#[test]
fn llama3_gguf_vocabulary_gives_metas_ids() {
    let vocab = llama_cpp_arrays(llama3(), 128_256, "<|eot_id|>");
    let types = vocab.token_types.as_deref().expect("types");
    assert_eq!(types.iter().filter(|t| **t == CONTROL).count(), 256);
    assert!(types[..128_000].iter().all(|t| *t == NORMAL));
    assert_eq!(vocab.merges.len(), 280_147);
    assert_eq!((vocab.bos_id, vocab.eos_id), (Some(128_000), Some(128_009)));

    let tok = Tokenizer::from_gguf_vocab(vocab).expect("build from GGUF arrays");
    assert_eq!(tok.format(), TokenizerFormat::Gguf);
    assert_same_specials(&tok, llama3());
    assert_eq!(tok.stop_ids(), vec![128_001, 128_008, 128_009]);
    assert_eq!(
        tok.to_tokenizer_json().expect("json"),
        llama3().to_tokenizer_json().expect("json"),
        "the GGUF and tiktoken paths must build the same pipeline"
    );

    let failures = mismatches(&tok);
    assert!(
        failures.is_empty(),
        "{} cases differ from Meta:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_dialogs_match_meta(&tok);
    assert_eq!(
        tok.decode(&expected().ids, false).expect("decode"),
        multilingual_text()
    );
    // Special-token text typed by a user stays text.
    assert_eq!(
        tok.encode("<|eot_id|>").expect("encode"),
        vec![27, 91, 68, 354, 851, 91, 29]
    );
}

/// herd's exporter writes exactly the derived arrays, for Meta's vocabulary
/// and for the tiny tokenizer.json.
#[test]
fn to_gguf_vocab_writes_what_llama_cpp_writes() {
    for (name, tok, vocab_size) in [("llama3", llama3(), 128_256), ("tiny", tiny(), 384)] {
        let exported = tok.to_gguf_vocab().expect("export");
        let derived = llama_cpp_arrays(tok, vocab_size, "<|eot_id|>");
        assert!(exported.tokens == derived.tokens, "{name}: tokens");
        assert!(
            exported.token_types == derived.token_types,
            "{name}: token types"
        );
        assert!(exported.merges == derived.merges, "{name}: merges");
        assert_eq!(
            (
                &exported.model,
                &exported.pre,
                exported.bos_id,
                exported.eos_id,
                exported.add_bos
            ),
            (
                &derived.model,
                &derived.pre,
                derived.bos_id,
                derived.eos_id,
                derived.add_bos
            ),
            "{name}"
        );
    }
}

/// Only herd's Llama 3 pipeline can be written as a `llama-bpe` vocabulary.
#[test]
fn other_tokenizers_cannot_be_exported() {
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut json: serde_json::Value =
            serde_json::from_str(&tiny().to_tokenizer_json().expect("json")).expect("parse");
        edit(&mut json);
        let tok =
            Tokenizer::from_json_bytes(json.to_string().as_bytes()).expect("load edited tokenizer");
        match tok.to_gguf_vocab().expect_err("not exportable") {
            TokenizerError::GgufExport { problem } => problem,
            other => panic!("unexpected error {other}"),
        }
    };
    let problem =
        edited(&|json| json["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = true.into());
    assert!(
        matches!(problem, GgufExportProblem::NotLlama3Bpe("pre-tokenizer")),
        "{problem}"
    );
    let problem = edited(&|json| json["model"]["ignore_merges"] = false.into());
    assert!(
        matches!(problem, GgufExportProblem::NotLlama3Bpe("model")),
        "{problem}"
    );
    let problem = edited(&|json| json["added_tokens"][9]["lstrip"] = true.into());
    assert!(
        matches!(&problem, GgufExportProblem::AddedTokenOptions(t) if t == "<|eot_id|>"),
        "{problem}"
    );
}

/// The tiny tokenizer (special tokens at 373..383) through the same layout
/// gives the tiny tokenizer.json's ids.
#[test]
fn tiny_gguf_vocabulary_gives_tokenizer_json_ids() {
    let tok =
        Tokenizer::from_gguf_vocab(llama_cpp_arrays(tiny(), 384, "<|eot_id|>")).expect("build");
    assert_same_specials(&tok, tiny());
    assert_eq!(tok.bos_id(), Some(373));
    assert_tiny_ids(&tok);
}

/// The tiny tokenizer.json's ids for the multilingual text, whole and by
/// paragraph, and for a dialog.
fn assert_tiny_ids(tok: &Tokenizer) {
    let text = multilingual_text();
    for piece in std::iter::once(text.as_str()).chain(text.split("\n\n")) {
        let ids = tok.encode(piece).expect("encode");
        let reference = tiny().encode(piece).expect("encode");
        if let Some(diff) = first_difference(&ids, &reference) {
            panic!(
                "{:?}...: {diff}",
                piece.chars().take(40).collect::<String>()
            );
        }
    }
    let dialog = [
        Message::system("Be brief."),
        Message::user("Say <|eot_id|> twice."),
    ];
    let encode = |t: &Tokenizer| {
        ChatFormat::new(t)
            .expect("format")
            .encode_dialog_prompt(&dialog)
            .expect("dialog")
    };
    assert_eq!(encode(tok), encode(tiny()));
}

/// `tests/fixtures/gguf/*.gguf`, written by llama.cpp's converter.
fn llama_cpp_fixtures() -> Vec<PathBuf> {
    let dir = repo_root().join("tests/fixtures/gguf");
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

/// A GGUF file's tokenizer metadata, read with llama.cpp's keys.
fn read_gguf_vocab(path: &Path) -> GgufVocab {
    let read = || -> herd_gguf::Result<GgufVocab> {
        let file = GgufFile::open(path)?;
        let meta = file.metadata();
        Ok(GgufVocab {
            model: meta.get_str("tokenizer.ggml.model")?.to_owned(),
            pre: meta
                .get_str("tokenizer.ggml.pre")
                .optional()?
                .map(str::to_owned),
            tokens: meta.get_array_str("tokenizer.ggml.tokens")?.to_vec(),
            token_types: meta
                .get_array_i32("tokenizer.ggml.token_type")
                .optional()?
                .map(<[i32]>::to_vec),
            merges: meta
                .get_array_str("tokenizer.ggml.merges")
                .optional()?
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            bos_id: meta.get_u32("tokenizer.ggml.bos_token_id").optional()?,
            eos_id: meta.get_u32("tokenizer.ggml.eos_token_id").optional()?,
            add_bos: meta.get_bool("tokenizer.ggml.add_bos_token").optional()?,
        })
    };
    read().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files llama.cpp converted from the tiny checkpoints hold exactly the
/// arrays derived above, and build a tokenizer equal to the tokenizer.json.
#[test]
fn llama_cpp_converted_files_match_the_tiny_tokenizer() {
    for path in llama_cpp_fixtures() {
        let name = path.display().to_string();
        let vocab = read_gguf_vocab(&path);
        let derived = llama_cpp_arrays(tiny(), vocab.tokens.len(), "<|eot_id|>");
        assert_eq!(vocab.model, "gpt2", "{name}");
        assert_eq!(vocab.pre.as_deref(), Some("llama-bpe"), "{name}");
        assert!(
            vocab.tokens == derived.tokens,
            "{name}: tokens differ from the derived ones"
        );
        assert_eq!(
            vocab.token_types, derived.token_types,
            "{name}: token types"
        );
        assert!(
            vocab.merges == derived.merges,
            "{name}: merges differ from the derived ones"
        );
        assert_eq!(vocab.bos_id, tiny().bos_id(), "{name}: bos");
        assert!(
            vocab
                .eos_id
                .is_some_and(|id| tiny().stop_ids().contains(&id)),
            "{name}: eos"
        );
        assert_ne!(vocab.add_bos, Some(false), "{name}: add_bos");

        let tok = Tokenizer::from_gguf_vocab(vocab).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_same_specials(&tok, tiny());
        assert_tiny_ids(&tok);
    }
}

/// The tiny tokenizer's arrays, to be broken one way per case.
fn tiny_vocab() -> GgufVocab {
    llama_cpp_arrays(tiny(), 384, "<|eot_id|>")
}

fn gguf_problem(vocab: GgufVocab) -> GgufVocabProblem {
    match Tokenizer::from_gguf_vocab(vocab).expect_err("unusable metadata") {
        TokenizerError::GgufVocab { problem } => problem,
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn unsupported_models_and_pre_tokenizers_are_named() {
    let mut llama2 = tiny_vocab();
    llama2.model = "llama".to_owned();
    let err = Tokenizer::from_gguf_vocab(llama2).expect_err("SentencePiece");
    assert!(
        err.to_string()
            .contains("tokenizer.ggml.model is \"llama\""),
        "{err}"
    );
    assert!(
        matches!(&err, TokenizerError::GgufVocab { problem: GgufVocabProblem::UnsupportedModel(m) } if m == "llama")
    );

    for pre in ["qwen2", "default", "falcon3"] {
        let mut vocab = tiny_vocab();
        vocab.pre = Some(pre.to_owned());
        let err = Tokenizer::from_gguf_vocab(vocab).expect_err(pre);
        assert!(err.to_string().contains(&format!("{pre:?}")), "{err}");
        assert!(
            matches!(&err, TokenizerError::GgufVocab { problem: GgufVocabProblem::UnsupportedPreTokenizer(p) } if p == pre)
        );
    }
    let mut vocab = tiny_vocab();
    vocab.pre = None;
    assert!(matches!(
        gguf_problem(vocab),
        GgufVocabProblem::MissingPreTokenizer
    ));

    // llama.cpp's other names for the same split load.
    for pre in ["llama3", "llama-v3"] {
        let mut vocab = tiny_vocab();
        vocab.pre = Some(pre.to_owned());
        Tokenizer::from_gguf_vocab(vocab).unwrap_or_else(|e| panic!("{pre}: {e}"));
    }
}

#[test]
fn malformed_arrays_are_errors() {
    let mut empty = tiny_vocab();
    empty.tokens.clear();
    empty.token_types = Some(Vec::new());
    assert!(matches!(gguf_problem(empty), GgufVocabProblem::Empty));

    let mut short_types = tiny_vocab();
    short_types.token_types.as_mut().expect("types").pop();
    assert!(matches!(
        gguf_problem(short_types),
        GgufVocabProblem::TokenTypeCount {
            types: 383,
            tokens: 384
        }
    ));

    let mut bad_type = tiny_vocab();
    bad_type.token_types.as_mut().expect("types")[300] = 7;
    assert!(matches!(
        gguf_problem(bad_type),
        GgufVocabProblem::UnknownTokenType { id: 300, value: 7 }
    ));

    let mut missing = tiny_vocab();
    missing.merges.push("zz Ġt".to_owned());
    let index = missing.merges.len() - 1;
    let problem = gguf_problem(missing);
    assert!(
        matches!(&problem, GgufVocabProblem::Vocab(VocabProblem::MergeUnknownToken { index: i, token }) if *i == index && token == "zz"),
        "{problem}"
    );
    // Both halves exist, their concatenation does not.
    let mut no_result = tiny_vocab();
    no_result.merges.push("Ġt Ġt".to_owned());
    assert!(matches!(
        gguf_problem(no_result),
        GgufVocabProblem::Vocab(VocabProblem::MergeUnknownToken { token, .. }) if token == "ĠtĠt"
    ));

    let mut no_space = tiny_vocab();
    no_space.merges[0] = "Ġt".to_owned();
    assert!(matches!(
        gguf_problem(no_space),
        GgufVocabProblem::MalformedMerge { index: 0, merge } if merge == "Ġt"
    ));

    let mut duplicate = tiny_vocab();
    duplicate.tokens[300] = duplicate.tokens[65].clone();
    assert!(matches!(
        gguf_problem(duplicate),
        GgufVocabProblem::Vocab(VocabProblem::DuplicateToken {
            first_id: 65,
            second_id: 300,
            ..
        })
    ));

    let mut empty_token = tiny_vocab();
    empty_token.tokens[300] = String::new();
    assert!(matches!(
        gguf_problem(empty_token),
        GgufVocabProblem::Vocab(VocabProblem::EmptyToken { id: 300 })
    ));

    // A byte typed as a control token leaves text that BPE cannot spell.
    let mut byte_as_control = tiny_vocab();
    let a = byte_as_control
        .tokens
        .iter()
        .position(|t| t == "a")
        .expect("a");
    byte_as_control.token_types.as_mut().expect("types")[a] = CONTROL;
    assert!(matches!(
        gguf_problem(byte_as_control),
        GgufVocabProblem::Vocab(VocabProblem::MissingByte(b'a'))
    ));
}

#[test]
fn bos_and_eos_must_agree_with_herd() {
    let mut out_of_range = tiny_vocab();
    out_of_range.eos_id = Some(384);
    let err = Tokenizer::from_gguf_vocab(out_of_range).expect_err("eos");
    assert_eq!(
        err.to_string(),
        "unusable GGUF tokenizer metadata: tokenizer.ggml.eos_token_id is 384, but the vocabulary has 384 tokens"
    );

    let mut other_bos = tiny_vocab();
    other_bos.bos_id = Some(374);
    assert!(matches!(
        gguf_problem(other_bos),
        GgufVocabProblem::BosMismatch {
            file: 374,
            herd: Some(373)
        }
    ));

    let mut no_bos = tiny_vocab();
    no_bos.add_bos = Some(false);
    assert!(matches!(
        gguf_problem(no_bos),
        GgufVocabProblem::NoBosWanted(373)
    ));

    // Absent keys are fine: llama.cpp defaults add_bos to true for llama-bpe.
    let mut unspecified = tiny_vocab();
    (unspecified.bos_id, unspecified.eos_id, unspecified.add_bos) = (None, None, None);
    assert_eq!(
        Tokenizer::from_gguf_vocab(unspecified)
            .expect("load")
            .bos_id(),
        Some(373)
    );
}

/// Without token types every token is ordinary, as in llama.cpp: nothing is
/// special, so the chat format refuses rather than trusting user-producible
/// `<|eot_id|>`.
#[test]
fn without_token_types_nothing_is_special() {
    let mut vocab = tiny_vocab();
    (vocab.token_types, vocab.bos_id, vocab.add_bos) = (None, None, None);
    let tok = Tokenizer::from_gguf_vocab(vocab).expect("load");
    assert_eq!(tok.special_id("<|eot_id|>"), None);
    assert_eq!(tok.vocab_size(), 384);
    assert!(matches!(
        ChatFormat::new(&tok),
        Err(TokenizerError::MissingSpecialToken { .. })
    ));
}

/// llama.cpp cuts user-defined tokens out of any text (like HF's non-special
/// added tokens), but never control tokens; unused ids stay inert.
#[test]
fn user_defined_tokens_match_in_text_control_tokens_never() {
    let mut vocab = llama_cpp_arrays(tiny(), 386, "<|eot_id|>");
    let types = vocab.token_types.as_mut().expect("types");
    assert_eq!(&types[384..], [UNUSED, UNUSED]);
    types[375] = USER_DEFINED; // <|reserved_special_token_0|>
    let tok = Tokenizer::from_gguf_vocab(vocab).expect("load");
    assert_eq!(tok.vocab_size(), 386);
    assert_eq!(tok.special_id("<|reserved_special_token_0|>"), None);
    assert_eq!(tok.special_id("[PAD385]"), Some(385));
    let ids = tok
        .encode("a<|reserved_special_token_0|>b<|eot_id|>")
        .expect("encode");
    assert!(ids.contains(&375), "{ids:?}");
    assert!(!ids.contains(&382), "{ids:?}");
    assert_eq!(
        tok.decode(&ids, true).expect("decode"),
        "a<|reserved_special_token_0|>b<|eot_id|>"
    );
}
