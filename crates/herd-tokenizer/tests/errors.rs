//! Loading errors name the file and what is wrong with it; a small tiktoken
//! file made here also exercises the tiktoken loader end to end.

mod common;

use std::path::Path;

use base64::Engine as _;
use common::scratch_dir;
use herd_tokenizer::{
    ChatFormat, Message, TiktokenLineProblem, TiktokenVocabProblem, Tokenizer, TokenizerError,
    TokenizerFormat, VocabProblem,
};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The 256 single bytes at ranks 0..256, then `extra` tokens.
fn tiktoken_text(extra: &[&[u8]]) -> String {
    let tokens: Vec<Vec<u8>> = (0..=255u8)
        .map(|b| vec![b])
        .chain(extra.iter().map(|t| t.to_vec()))
        .collect();
    tokens
        .iter()
        .enumerate()
        .map(|(rank, token)| format!("{} {rank}\n", b64(token)))
        .collect()
}

/// A file's text, the problem expected, and a check of that problem.
type LineCase = (String, usize, fn(&TiktokenLineProblem) -> bool);
type VocabCase = (&'static str, String, fn(&TiktokenVocabProblem) -> bool);

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn missing_files_and_directories_are_not_found_errors() {
    let dir = scratch_dir("missing");
    let file = dir.join("tokenizer.model");
    for err in [
        Tokenizer::from_tiktoken(&file).expect_err("missing"),
        Tokenizer::from_tokenizer_json(dir.join("tokenizer.json")).expect_err("missing"),
        Tokenizer::from_path(&file).expect_err("missing"),
    ] {
        assert!(matches!(err, TokenizerError::NotFound { .. }), "{err}");
    }
    let err = Tokenizer::from_path(&dir).expect_err("empty directory");
    let message = err.to_string();
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("original/tokenizer.model"), "{message}");
    let err = Tokenizer::from_tiktoken(&file).expect_err("missing");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
}

#[test]
fn corrupt_json_is_reported_with_file_and_position() {
    let dir = scratch_dir("corrupt-json");
    for (name, text) in [
        ("truncated.json", "{\"version\": \"1.0\", \"model\": {"),
        ("not-a-tokenizer.json", "{\"hello\": 1}"),
    ] {
        let path = write(&dir, name, text);
        for err in [
            Tokenizer::from_tokenizer_json(&path).expect_err("corrupt"),
            Tokenizer::from_path(&path).expect_err("corrupt"),
        ] {
            assert!(matches!(err, TokenizerError::Json { .. }), "{err}");
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("line 1"), "{message}");
        }
    }
    let err = Tokenizer::from_json_bytes(b"[1, 2").expect_err("corrupt");
    assert!(
        err.to_string()
            .starts_with("<memory> is not a valid tokenizer.json"),
        "{err}"
    );
}

/// Each malformed line is reported with its 1-based number.
#[test]
fn bad_tiktoken_lines_name_the_line() {
    let dir = scratch_dir("bad-lines");
    let good = tiktoken_text(&[]);
    let cases: Vec<LineCase> = vec![
        (format!("{good}\n{} 256 extra\n", b64(b"ab")), 258, |p| {
            matches!(p, TiktokenLineProblem::FieldCount(3))
        }),
        (format!("{good}{}\n", b64(b"ab")), 257, |p| {
            matches!(p, TiktokenLineProblem::FieldCount(1))
        }),
        (format!("{good}not*base64 256\n"), 257, |p| {
            matches!(p, TiktokenLineProblem::Base64(_))
        }),
        (format!("{good}{} -3\n", b64(b"ab")), 257, |p| {
            matches!(p, TiktokenLineProblem::Rank(_))
        }),
        (format!("{good}{} 256\n", b64(b"a")), 257, |p| {
            matches!(p, TiktokenLineProblem::DuplicateToken { first_line: 98 })
        }),
        (format!("{good}{} 7\n", b64(b"ab")), 257, |p| {
            matches!(
                p,
                TiktokenLineProblem::DuplicateRank {
                    rank: 7,
                    first_line: 8
                }
            )
        }),
    ];
    for (i, (text, expected_line, check)) in cases.iter().enumerate() {
        let path = write(&dir, &format!("case{i}.model"), text);
        match Tokenizer::from_tiktoken(&path).expect_err("bad line") {
            TokenizerError::TiktokenLine {
                path: p,
                line,
                problem,
            } => {
                assert_eq!(p, path);
                assert_eq!(line, *expected_line, "case {i}: {problem}");
                assert!(check(&problem), "case {i}: {problem}");
            }
            other => panic!("case {i}: unexpected error {other}"),
        }
    }
    let path = write(&dir, "message.model", &format!("{good}???? 256\n"));
    let message = Tokenizer::from_path(&path).expect_err("bad").to_string();
    assert!(
        message.starts_with(&format!("{}:257: bad tiktoken line: ", path.display())),
        "{message}"
    );
}

#[test]
fn unusable_tiktoken_vocabularies_are_errors() {
    let dir = scratch_dir("bad-vocab");
    let no_byte_7: String = (0..=255u8)
        .filter(|b| *b != 7)
        .chain([7])
        .enumerate()
        .map(|(rank, b)| {
            if b == 7 {
                format!("{} {rank}\n", b64(b"xy"))
            } else {
                format!("{} {rank}\n", b64(&[b]))
            }
        })
        .collect();
    let gap = format!("{}{} 300\n", tiktoken_text(&[]), b64(b"ab"));
    let clash = tiktoken_text(&[b"<|eot_id|>"]);
    let cases: Vec<VocabCase> = vec![
        ("empty.model", "\n  \n".to_owned(), |p| {
            matches!(p, TiktokenVocabProblem::Empty)
        }),
        ("gap.model", gap, |p| {
            matches!(
                p,
                TiktokenVocabProblem::RankGap {
                    count: 257,
                    missing: 256
                }
            )
        }),
        ("no-byte.model", no_byte_7, |p| {
            matches!(p, TiktokenVocabProblem::Vocab(VocabProblem::MissingByte(7)))
        }),
        ("clash.model", clash, |p| {
            matches!(
                p,
                TiktokenVocabProblem::Vocab(VocabProblem::DuplicateToken { token, first_id: 256, second_id: 266 })
                    if token == "<|eot_id|>"
            )
        }),
    ];
    for (name, text, check) in cases {
        let path = write(&dir, name, &text);
        match Tokenizer::from_tiktoken(&path).expect_err(name) {
            TokenizerError::TiktokenVocab { path: p, problem } => {
                assert_eq!(p, path);
                assert!(check(&problem), "{name}: {problem}");
            }
            other => panic!("{name}: unexpected error {other}"),
        }
    }
}

/// A 259-token tiktoken vocabulary: BPE merges follow the ranks, special
/// tokens follow the last rank, and the chat format works on it.
#[test]
fn a_small_tiktoken_file_loads_and_encodes() {
    let dir = scratch_dir("small-tiktoken");
    write(
        &dir,
        "tokenizer.model",
        &tiktoken_text(&[b"ab", b"abc", b" ab"]),
    );
    let tok = Tokenizer::from_path(&dir).expect("load");
    assert_eq!(tok.format(), TokenizerFormat::Tiktoken);
    assert_eq!(tok.vocab_size(), 259 + 256);
    assert_eq!(tok.bos_id(), Some(259));
    assert_eq!(tok.special_id("<|eot_id|>"), Some(268));
    // Pre-tokens "abc", " ab", " abd"; the last merges a+b (rank 256) first, then " "+ab.
    assert_eq!(
        tok.encode("abc ab abd").expect("encode"),
        vec![257, 258, 258, u32::from(b'd')]
    );
    assert_eq!(
        tok.decode(&[257, 268], false).expect("decode"),
        "abc<|eot_id|>"
    );
    let ids = ChatFormat::new(&tok)
        .expect("format")
        .encode_dialog_prompt(&[Message::user("ab")])
        .expect("chat");
    assert_eq!(ids[0], 259);
    assert_eq!(
        tok.decode(&ids, false).expect("decode"),
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nab<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}
