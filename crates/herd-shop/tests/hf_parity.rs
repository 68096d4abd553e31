//! The tokenizer herd trains on the shop corpus gives, in herd, exactly the
//! ids Hugging Face `tokenizers` and `transformers` compute from the
//! tokenizer.json herd writes (recorded by tools/make_shop_tokenizer_fixture.py,
//! which runs `herd data shop` + `herd tokenizer train` with these settings).

use std::path::Path;

use herd_shop::{Corpus, CorpusOptions};
use herd_tokenizer::{dialog_text_pieces, train_bpe, BpeTrainingOptions, ChatRecord};
use serde_json::Value;

fn fnv1a64(data: &[u8]) -> String {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[test]
fn herd_trained_tokenizer_matches_hugging_face_ids() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/shop/hf_tokenizer_ids.json");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");

    let corpus = Corpus::generate(&CorpusOptions {
        dialogues: 400,
        ..CorpusOptions::default()
    })
    .expect("corpus");
    let train = corpus.train_jsonl();
    let dialogs: Vec<_> = train
        .lines()
        .map(|line| ChatRecord::from_json(line).expect("record").dialog())
        .collect();
    let options = BpeTrainingOptions {
        vocab_size: 1024,
        min_frequency: 2,
    };
    let tokenizer =
        train_bpe(dialogs.iter().flat_map(|d| dialog_text_pieces(d)), &options).expect("train");

    let json = tokenizer.to_tokenizer_json().expect("json");
    assert_eq!(
        fnv1a64(json.as_bytes()),
        fixture["tokenizer_json_fnv1a64"],
        "corpus or training changed: rerun tools/make_shop_tokenizer_fixture.py"
    );
    assert_eq!(tokenizer.vocab_size() as u64, fixture["vocab_size"]);
    for (name, id) in fixture["special_ids"].as_object().expect("specials") {
        assert_eq!(
            tokenizer.special_id(name).map(u64::from),
            id.as_u64(),
            "{name}"
        );
    }
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() > 60);
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
        assert!(
            tokenizer.encode(text).expect("encode") == ids,
            "ids differ for {text:?}"
        );
        assert_eq!(tokenizer.decode(&ids, false).expect("decode"), text);
    }
}
