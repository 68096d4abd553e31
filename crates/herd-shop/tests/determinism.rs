//! Same seed ⇒ byte-identical files; another seed ⇒ another shop and corpus;
//! bad options are refused before anything is written.

use std::path::Path;

use herd_shop::{Corpus, CorpusOptions, Language, Shop, ShopError};

fn write(dir: &Path, seed: u64) -> Vec<(String, Vec<u8>)> {
    let options = CorpusOptions {
        seed,
        dialogues: 300,
        languages: vec![Language::En, Language::De],
    };
    let corpus = Corpus::generate(&options).expect("generate");
    corpus
        .write(dir)
        .expect("write")
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect()
}

#[test]
fn same_seed_gives_byte_identical_files() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = write(a.path(), 11);
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "train.jsonl",
            "valid.jsonl",
            "test.jsonl",
            "tools.json",
            "shop.json"
        ]
    );
    assert_eq!(first, write(b.path(), 11));
    let other = write(c.path(), 12);
    for ((name, x), (_, y)) in first.iter().zip(&other) {
        if name != "tools.json" {
            assert_ne!(x, y, "{name} does not depend on the seed");
        }
    }
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(a.path()).unwrap().count(), 5);
}

#[test]
fn the_test_split_does_not_depend_on_the_training_size() {
    let corpus = |dialogues| {
        Corpus::generate(&CorpusOptions {
            dialogues,
            ..CorpusOptions::default()
        })
        .expect("generate")
    };
    // 20 and 21 test dialogues: the smaller split is the larger's prefix.
    let (small, large) = (corpus(200), corpus(210));
    // Compared as booleans: a failing assert_eq would print megabytes.
    assert!(
        large.test_jsonl().starts_with(&small.test_jsonl()),
        "test split changed with --dialogues"
    );
    assert!(large.test_jsonl() != small.test_jsonl());
    assert!(small.train_jsonl() != large.train_jsonl());
}

#[test]
fn the_default_shop_is_stable_and_complete() {
    let shop = Shop::generate(herd_shop::DEFAULT_SEED);
    assert_eq!(shop, Shop::generate(herd_shop::DEFAULT_SEED));
    assert_eq!(shop.orders.len(), 1000);
    assert_eq!(shop.orders.first().map(|o| o.id), Some(1000));
    assert_eq!(shop.orders.last().map(|o| o.id), Some(1999));
    assert!(shop.order(1042).is_some());
    assert_eq!(shop.products.len(), 24);
    assert!(shop
        .products
        .iter()
        .all(|p| p.name_en.is_ascii() && p.name_de.is_ascii()));
    assert!(shop.products.iter().any(|p| p.stock == 0));
    for status in herd_shop::OrderStatus::ALL {
        assert!(
            shop.orders.iter().any(|o| o.status == status),
            "no {status:?} order"
        );
    }
    assert!(shop.system_prompt().contains(&shop.policies.email));
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let zero = Corpus::generate(&CorpusOptions {
        dialogues: 0,
        ..CorpusOptions::default()
    });
    assert!(matches!(zero, Err(ShopError::InvalidOption(_))));
    let none = Corpus::generate(&CorpusOptions {
        languages: vec![],
        ..CorpusOptions::default()
    });
    assert!(matches!(none, Err(ShopError::InvalidOption(_))));
    assert!(matches!(
        Language::from_code("fr"),
        Err(ShopError::UnknownLanguage(_))
    ));
    // A file where the output directory should be: a clear error, nothing lost.
    let blocker = dir.path().join("out");
    std::fs::write(&blocker, "keep me").unwrap();
    let corpus = Corpus::generate(&CorpusOptions {
        dialogues: 20,
        ..CorpusOptions::default()
    })
    .unwrap();
    let err = corpus
        .write(&blocker)
        .expect_err("a file is not a directory");
    assert!(err.to_string().contains("out"), "{err}");
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "keep me");
}
