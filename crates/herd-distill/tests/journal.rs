//! A teacher cache interrupted in the middle of a shard (a teacher that
//! goes away, a crash that tears the last journal record) resumes from its
//! journal: no sequence is asked twice, none is lost, and the finished cache
//! is byte for byte the one an uninterrupted run writes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use herd_distill::{
    cache_plan, tokenizer_identity, write_cache, CacheHeader, DistillError, KLimit, LocalTeacher,
    SourceInfo, TopK, TopKSource,
};
use herd_model::Checkpoint;
use herd_tokenizer::Tokenizer;
use herd_train::{DataOptions, Dataset, LossOn};

/// The embedded teacher, answering one sequence per call, that stops
/// answering after `left` sequences (as a remote teacher that went away) and
/// records every sequence it was asked for.
struct Fading {
    inner: LocalTeacher,
    left: AtomicUsize,
    asked: Mutex<Vec<Vec<u32>>>,
}

impl TopKSource for Fading {
    fn info(&self) -> SourceInfo {
        self.inner.info()
    }

    fn top_k(
        &self,
        sequences: &[&[u32]],
        k: usize,
        temperature: f64,
    ) -> herd_distill::Result<Vec<TopK>> {
        let mut out = Vec::new();
        for ids in sequences {
            if self.left.load(Ordering::SeqCst) == 0 {
                return Err(DistillError::Teacher("the teacher went away".into()));
            }
            self.left.fetch_sub(1, Ordering::SeqCst);
            self.asked.lock().unwrap().push(ids.to_vec());
            out.extend(self.inner.top_k(&[ids], k, temperature)?);
        }
        Ok(out)
    }

    fn top_k_each(
        &self,
        sequences: &[&[u32]],
        k: usize,
        temperature: f64,
        done: &(dyn Fn(usize, TopK) -> herd_distill::Result<()> + Sync),
    ) -> herd_distill::Result<()> {
        for (i, ids) in sequences.iter().enumerate() {
            let rows = self.top_k(&[ids], k, temperature)?.remove(0);
            done(i, rows)?;
        }
        Ok(())
    }
}

fn teacher_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/teacher")
}

fn fading(left: usize) -> Fading {
    let dir = teacher_dir();
    let model = Checkpoint::open(&dir)
        .and_then(Checkpoint::into_model)
        .expect("teacher");
    Fading {
        inner: LocalTeacher::new(Arc::new(model), "test-teacher".into()),
        left: AtomicUsize::new(left),
        asked: Mutex::new(Vec::new()),
    }
}

/// Each file's name, safetensors header (as JSON: key order varies between
/// writes) and tensor bytes.
fn files(dir: &Path) -> Vec<(String, serde_json::Value, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            match bytes[..8].try_into().map(u64::from_le_bytes) {
                Ok(n) if name.ends_with(".safetensors") => {
                    let n = n as usize;
                    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
                    (name, header, bytes[8 + n..].to_vec())
                }
                _ => (name, serde_json::Value::Null, bytes),
            }
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn an_interrupted_shard_resumes_from_its_journal() {
    let tokenizer = Tokenizer::from_dir(teacher_dir()).expect("tokenizer");
    let opts = DataOptions {
        loss_on: LossOn::Assistant,
        skip_bad_records: false,
        seq_len: 256,
        truncate: false,
        validation_fraction: 0.0,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = Dataset::load(
        &root.join("tests/fixtures/train/chat.jsonl"),
        &tokenizer,
        &opts,
    )
    .expect("data");
    let seqs: Vec<&[u32]> = data
        .train
        .iter()
        .take(10)
        .map(|e| e.ids.as_slice())
        .collect();
    let tok = tokenizer_identity(&tokenizer).unwrap();
    let first = fading(6);
    let header = CacheHeader::new(&first.info(), tok, 8, 1.0, &seqs, 4).expect("header");
    assert_eq!((header.k, header.limited_by), (8, KLimit::None));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");

    // Shard 0 (4 sequences) is written, 2 of shard 1 are journaled, then
    // the teacher stops answering.
    let err = write_cache(&first, &seqs, &header, &dir, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("went away"), "{err}");
    let names: Vec<String> = files(&dir).into_iter().map(|f| f.0).collect();
    assert_eq!(names, ["shard-00000.safetensors", "shard-00001.partial"]);
    // A crash while appending leaves a torn record: it is dropped.
    let journal = dir.join("shard-00001.partial");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.extend([3, 0, 0, 0, 200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&journal, bytes).unwrap();

    let plan = cache_plan(&seqs, &header, &dir).expect("plan");
    assert_eq!((plan.done, plan.sequences), (6, 4));
    let expected_tokens: u64 = seqs[6..].iter().map(|s| s.len() as u64).sum();
    assert_eq!(plan.tokens, expected_tokens);

    let second = fading(usize::MAX);
    let summary = write_cache(&second, &seqs, &header, &dir, &mut |_, _| {}).expect("resume");
    assert_eq!((summary.skipped, summary.written), (1, 2));
    assert_eq!((summary.resumed, summary.scored), (2, 4));
    let mut asked = first.asked.into_inner().unwrap();
    asked.extend(second.asked.into_inner().unwrap());
    let unique: HashSet<&Vec<u32>> = asked.iter().collect();
    assert_eq!(
        (asked.len(), unique.len()),
        (10, 10),
        "every sequence asked exactly once"
    );

    let whole = tmp.path().join("whole");
    write_cache(&fading(usize::MAX), &seqs, &header, &whole, &mut |_, _| {}).expect("whole");
    assert!(
        files(&dir) == files(&whole),
        "the resumed cache equals an uninterrupted one"
    );
}
