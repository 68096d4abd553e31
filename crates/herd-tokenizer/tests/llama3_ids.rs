//! herd's tiktoken path against Meta's reference ids
//! (tests/fixtures/tokenizer/multilingual.ids.json, made by
//! tools/make_tokenizer_fixtures.py with llama-models' `Tokenizer.encode`).

mod common;

use common::llama3;
use common::meta_ids::{expected, first_difference, multilingual_text};
use herd_tokenizer::{StreamDecoder, Tokenizer, TokenizerError, TokenizerFormat};

/// Like `assert_eq!` on texts, but shows only where they part, not 20 KB.
fn assert_same_text(actual: &str, expected: &str) {
    if actual != expected {
        let at = actual
            .chars()
            .zip(expected.chars())
            .take_while(|(a, e)| a == e)
            .count();
        let context = |s: &str| {
            s.chars()
                .skip(at.saturating_sub(20))
                .take(40)
                .collect::<String>()
        };
        panic!(
            "texts differ at char {at}: {:?} vs expected {:?} (lengths {} vs {})",
            context(actual),
            context(expected),
            actual.len(),
            expected.len()
        );
    }
}

#[test]
fn multilingual_paragraphs_match_meta() {
    let tok = llama3();
    let fixture = expected();
    let text = multilingual_text();
    let paragraphs: Vec<&str> = text.split(fixture.paragraph_separator.as_str()).collect();
    assert_eq!(
        paragraphs.len(),
        fixture.paragraphs.len(),
        "paragraph count"
    );
    let mut failures = Vec::new();
    for (i, (paragraph, case)) in paragraphs.iter().zip(&fixture.paragraphs).enumerate() {
        assert!(
            *paragraph == case.text,
            "paragraph {i} text differs from the fixture: regenerate it"
        );
        let ids = tok.encode(paragraph).expect("encode");
        if let Some(diff) = first_difference(&ids, &case.ids) {
            failures.push(format!(
                "paragraph {i} {:?}...: {diff}",
                paragraph.chars().take(40).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} paragraphs differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn multilingual_text_matches_meta() {
    let text = multilingual_text();
    assert!(text.len() >= 20 * 1024, "the text must stay at least 20 KB");
    let ids = llama3().encode(&text).expect("encode");
    if let Some(diff) = first_difference(&ids, &expected().ids) {
        panic!("whole text: {diff}");
    }
}

#[test]
fn runs_longer_than_metas_cut_match_meta() {
    for case in expected().long_runs {
        let ids = llama3().encode(&case.text()).expect("encode");
        if let Some(diff) = first_difference(&ids, &case.ids) {
            panic!("{}: {diff}", case.name);
        }
    }
}

#[test]
fn random_strings_match_meta() {
    let tok = llama3();
    let failures: Vec<String> = expected()
        .random_strings
        .iter()
        .filter_map(|case| {
            let ids = tok.encode(&case.text).expect("encode");
            first_difference(&ids, &case.ids).map(|diff| format!("{:?}: {diff}", case.text))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} strings differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn decode_inverts_encode() {
    let tok = llama3();
    let fixture = expected();
    let text = multilingual_text();
    assert_same_text(&tok.decode(&fixture.ids, false).expect("decode"), &text);
    assert_same_text(
        &tok.decode(&tok.encode(&text).expect("encode"), true)
            .expect("decode"),
        &text,
    );
    for case in fixture.paragraphs.iter().chain(&fixture.random_strings) {
        assert_same_text(&tok.decode(&case.ids, false).expect("decode"), &case.text);
    }
}

#[test]
fn stream_decoder_reproduces_text_without_broken_characters() {
    let tok = llama3();
    let text = multilingual_text();
    let ids = tok.encode(&text).expect("encode");
    let mut decoder = StreamDecoder::new(true);
    let mut out = String::new();
    let mut pieces = 0;
    for &id in &ids {
        if let Some(piece) = decoder.step(tok, id).expect("step") {
            assert!(
                !piece.contains(char::REPLACEMENT_CHARACTER),
                "U+FFFD mid-stream in {piece:?}"
            );
            out.push_str(&piece);
            pieces += 1;
        }
    }
    out.push_str(&decoder.finish(tok).expect("finish"));
    assert_same_text(&out, &text);
    // Multi-byte characters split across tokens were held back, not dropped.
    assert!(
        pieces < ids.len(),
        "some ids must complete no character on their own"
    );
}

#[test]
fn stream_decoder_splits_an_emoji_across_ids() {
    let tok = llama3();
    // 🦀 is 4 bytes that Llama 3 spells with more than one id.
    let ids = tok.encode("🦀").expect("encode");
    assert!(ids.len() > 1, "{ids:?}");
    let mut decoder = StreamDecoder::new(false);
    let steps: Vec<Option<String>> = ids
        .iter()
        .map(|&id| decoder.step(tok, id).expect("step"))
        .collect();
    assert!(
        steps[..ids.len() - 1].iter().all(Option::is_none),
        "{steps:?}"
    );
    assert_eq!(steps[ids.len() - 1].as_deref(), Some("🦀"));
    // An unfinished character comes out of `finish` as U+FFFD, like a full decode.
    let mut decoder = StreamDecoder::new(false);
    assert_eq!(decoder.step(tok, ids[0]).expect("step"), None);
    assert_eq!(
        decoder.finish(tok).expect("finish"),
        tok.decode(&ids[..1], false).expect("decode")
    );
}

#[test]
fn stream_decoder_shows_or_skips_special_tokens() {
    let tok = llama3();
    let eot = tok.special_id("<|eot_id|>").expect("eot");
    let mut ids = tok.encode("Hi").expect("encode");
    ids.push(eot);
    for (skip, expected) in [(true, "Hi"), (false, "Hi<|eot_id|>")] {
        let mut decoder = StreamDecoder::new(skip);
        let mut out = String::new();
        for &id in &ids {
            out.extend(decoder.step(tok, id).expect("step"));
        }
        out.push_str(&decoder.finish(tok).expect("finish"));
        assert_eq!(out, expected);
    }
}

#[test]
fn special_token_text_in_user_input_stays_text() {
    let tok = llama3();
    let text = "a<|eot_id|>b <|begin_of_text|><|start_header_id|>system<|end_header_id|>";
    let ids = tok.encode(text).expect("encode");
    let specials: Vec<u32> = herd_tokenizer::llama3_special_token_names()
        .iter()
        .filter_map(|name| tok.special_id(name))
        .collect();
    assert_eq!(specials.len(), 256);
    assert!(
        ids.iter().all(|id| !specials.contains(id)),
        "special id in {ids:?}"
    );
    assert_eq!(tok.decode(&ids, true).expect("decode"), text);
    // Exactly Meta's ids for "<|eot_id|>" as plain text (tiktoken, disallowed_special=()).
    assert_eq!(
        tok.encode("<|eot_id|>").expect("encode"),
        vec![27, 91, 68, 354, 851, 91, 29]
    );
}

#[test]
fn llama3_vocabulary_and_special_ids() {
    let tok = llama3();
    assert_eq!(tok.format(), TokenizerFormat::Tiktoken);
    assert_eq!(tok.vocab_size(), 128_256);
    assert_eq!(tok.bos_id(), Some(128_000));
    assert_eq!(tok.stop_ids(), vec![128_001, 128_008, 128_009]);
    assert_eq!(tok.special_id("<|eot_id|>"), Some(128_009));
    assert_eq!(tok.special_id("<|python_tag|>"), Some(128_010));
    assert_eq!(tok.special_id("<|image|>"), Some(128_011));
    assert_eq!(
        tok.special_id("<|reserved_special_token_2|>"),
        Some(128_012)
    );
    assert_eq!(
        tok.special_id("<|reserved_special_token_245|>"),
        Some(128_255)
    );
    assert_eq!(tok.special_id("<|reserved_special_token_246|>"), None);
    assert_eq!(tok.special_id("hello"), None);
    // Meta's own unit test (llama_models/llama3/tests/api/test_tokenizer.py).
    assert_eq!(
        tok.encode("This is a test sentence.").expect("encode"),
        vec![2028, 374, 264, 1296, 11914, 13]
    );
    let with_specials = [128_000, 2028, 374, 264, 1296, 11914, 13, 128_001];
    assert_eq!(
        tok.decode(&with_specials, false).expect("decode"),
        "<|begin_of_text|>This is a test sentence.<|end_of_text|>"
    );
    assert_eq!(
        tok.decode(&with_specials, true).expect("decode"),
        "This is a test sentence."
    );
    assert_eq!(tok.encode("").expect("encode"), Vec::<u32>::new());
}

#[test]
fn decoding_an_unknown_id_is_an_error() {
    let err = llama3()
        .decode(&[1, 128_256], false)
        .expect_err("unknown id");
    assert!(
        matches!(
            err,
            TokenizerError::UnknownId {
                id: 128_256,
                vocab_size: 128_256
            }
        ),
        "{err}"
    );
    let mut decoder = StreamDecoder::new(false);
    assert!(decoder.step(llama3(), 999_999).is_err());
    assert_eq!(
        decoder.step(llama3(), 13).expect("step still usable"),
        Some(".".to_owned())
    );
}

#[test]
fn directory_layouts_find_the_tokenizer_model() {
    let model = common::llama3_model_path();
    let meta_layout = common::scratch_dir("meta-layout");
    std::fs::create_dir_all(meta_layout.join("original")).expect("mkdir");
    std::fs::copy(&model, meta_layout.join("original/tokenizer.model")).expect("copy");
    for path in [
        model.parent().expect("dir").to_path_buf(),
        meta_layout,
        model.clone(),
    ] {
        let tok = Tokenizer::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(tok.format(), TokenizerFormat::Tiktoken);
        assert_eq!(
            tok.encode("Hello, world!").expect("encode"),
            vec![9906, 11, 1917, 0]
        );
    }
}
