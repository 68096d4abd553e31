//! Pruning end to end: the written checkpoint loads and has the requested
//! shape, pruning nothing is the identity, and the importance ranking of
//! layers predicts which layer the embedded teacher misses least.

use std::path::{Path, PathBuf};

use herd_model::{logits_row, Checkpoint, Llama, Logits};
use herd_prune::{measure, perplexity, plan, write_pruned, PruneSpec};
use herd_shop::{Corpus, CorpusOptions};
use herd_tokenizer::{ChatFormat, ChatRecord, Tokenizer};

fn root(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Prunes `dir` to `spec` with importance measured on `calibration`.
fn prune(dir: &Path, calibration: &[Vec<u32>], spec: &PruneSpec, out: &Path) -> Llama {
    let source = Checkpoint::open_dir(dir).unwrap();
    let model = Checkpoint::open_dir(dir).unwrap().into_model().unwrap();
    let importance = measure(&model, calibration).unwrap();
    let plan = plan(model.config(), &importance, spec).unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    write_pruned(&source, &config, &plan, out).unwrap();
    Llama::load(out).unwrap()
}

fn random_sequences(vocab: u32) -> Vec<Vec<u32>> {
    (0..4u32)
        .map(|s| (0..24).map(|i| (i * 37 + s * 101 + 7) % vocab).collect())
        .collect()
}

fn all_logits(model: &Llama, tokens: &[u32]) -> Vec<Vec<f32>> {
    let logits = model
        .forward_one(tokens, &mut model.new_cache(), Logits::All)
        .unwrap();
    (0..tokens.len())
        .map(|r| logits_row(&logits, r).unwrap())
        .collect()
}

#[test]
fn pruning_nothing_reproduces_the_logits() {
    let dir = root("tests/fixtures/models/llama31-tiny");
    let out = tempfile::tempdir().unwrap();
    let calibration = random_sequences(384);
    let pruned = prune(&dir, &calibration, &PruneSpec::default(), out.path());
    let original = Llama::load(&dir).unwrap();
    assert_eq!(pruned.config(), original.config());
    for seq in &calibration {
        assert_eq!(all_logits(&pruned, seq), all_logits(&original, seq));
    }
}

#[test]
fn the_pruned_model_has_the_requested_shape_and_runs() {
    let dir = root("tests/fixtures/models/llama32-tied");
    let out = tempfile::tempdir().unwrap();
    let spec = PruneSpec {
        depth: Some(2),
        kv_heads: Some(1),
        ffn: Some(100),
        hidden: Some(64),
        ..PruneSpec::default()
    };
    let pruned = prune(&dir, &random_sequences(384), &spec, out.path());
    let c = pruned.config();
    assert_eq!(
        (
            c.num_hidden_layers,
            c.num_key_value_heads,
            c.num_attention_heads,
            c.intermediate_size,
            c.hidden_size,
            c.head_dim
        ),
        (2, 1, 3, 100, 64, 16)
    );
    let logits = all_logits(&pruned, &[1, 2, 3]);
    assert!(logits.iter().flatten().all(|x| x.is_finite()));
    // Writing again into the same directory is refused, nothing overwritten.
    let source = Checkpoint::open_dir(&dir).unwrap();
    let model = Llama::load(&dir).unwrap();
    let importance = measure(&model, &random_sequences(384)).unwrap();
    let p = plan(model.config(), &importance, &spec).unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(write_pruned(&source, &config, &p, out.path()).is_err());
    // Impossible shapes are clear errors.
    for bad in [
        PruneSpec {
            depth: Some(0),
            ..PruneSpec::default()
        },
        PruneSpec {
            depth: Some(4),
            ..PruneSpec::default()
        },
        PruneSpec {
            kv_heads: Some(3),
            ..PruneSpec::default()
        },
        PruneSpec {
            drop_layers: vec![0, 1, 2],
            ..PruneSpec::default()
        },
        PruneSpec {
            drop_layers: vec![5],
            ..PruneSpec::default()
        },
        PruneSpec {
            depth: Some(1),
            drop_layers: vec![0],
            ..PruneSpec::default()
        },
    ] {
        assert!(plan(model.config(), &importance, &bad).is_err(), "{bad:?}");
    }
    assert!(measure(&model, &[vec![]]).is_err());
}

/// Shop dialogues in the teacher's chat format.
fn shop_dialogues(tokenizer: &Tokenizer, n: usize) -> Vec<Vec<u32>> {
    let corpus = Corpus::generate(&CorpusOptions {
        dialogues: 40,
        ..CorpusOptions::default()
    })
    .unwrap();
    let format = ChatFormat::new(tokenizer).unwrap();
    corpus
        .valid_jsonl()
        .lines()
        .take(n)
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let record = ChatRecord::from_value(&value).unwrap();
            format.encode_dialog(&record.dialog()).unwrap().ids
        })
        .collect()
}

#[test]
fn dropping_the_least_important_layer_costs_less_than_the_most_important() {
    let dir = root("models/teacher");
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let calibration = shop_dialogues(&tokenizer, 6);
    let teacher = Llama::load(&dir).unwrap();
    let importance = measure(&teacher, &calibration).unwrap();
    let order = importance.layers_by_importance();
    let (least, most) = (order[0], order[order.len() - 1]);
    let cost = |layer: usize| {
        let out = tempfile::tempdir().unwrap();
        let spec = PruneSpec {
            drop_layers: vec![layer],
            ..PruneSpec::default()
        };
        perplexity(&prune(&dir, &calibration, &spec, out.path()), &calibration).unwrap()
    };
    let base = perplexity(&teacher, &calibration).unwrap();
    let (without_least, without_most) = (cost(least), cost(most));
    assert!(
        base < without_least && without_least < without_most,
        "perplexity {base:.3}; without layer {least} {without_least:.3}, without layer {most} {without_most:.3} \
         (importance {:?})",
        importance.layers
    );
}
