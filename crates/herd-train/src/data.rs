//! Datasets: a JSONL file read into tokenized examples, split into training
//! and validation, and packed into fixed-length rows.
//!
//! **Packing without cross-talk.** Short dialogs are packed one after
//! another into rows of `seq_len` tokens so no compute is spent on padding;
//! each token carries its document's segment number and its position within
//! the document, and the attention mask only lets a token see earlier tokens
//! of the same segment. A packed row therefore gives exactly the losses the
//! documents would give one by one.
//!
//! **Data order is a function of (seed, epoch).** Each epoch shuffles the
//! examples with a ChaCha generator seeded from the run's seed and the epoch
//! number, so a resumed run needs only `(epoch, row)` to continue with the
//! very same batches.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use herd_tokenizer::{ChatFormat, Tokenizer};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainError};
use crate::record::{parse_record, Example, LossOn};

/// How a dataset file becomes examples.
#[derive(Debug, Clone)]
pub struct DataOptions {
    /// Which tokens count in the loss.
    pub loss_on: LossOn,
    /// Skip (and count) malformed records instead of stopping at the first.
    pub skip_bad_records: bool,
    /// Tokens per packed row: the longest example allowed.
    pub seq_len: usize,
    /// Cut examples longer than `seq_len` instead of rejecting them.
    pub truncate: bool,
    /// Share of examples held out for validation (every k-th example).
    pub validation_fraction: f64,
}

/// Examples read from one JSONL file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Examples to train on.
    pub train: Vec<Example>,
    /// Held-out examples for the validation loss.
    pub validation: Vec<Example>,
    /// Malformed records skipped under `skip_bad_records`.
    pub skipped: usize,
    /// Examples cut to `seq_len` under `truncate`.
    pub truncated: usize,
    /// The file.
    pub path: PathBuf,
}

impl Dataset {
    /// Reads and tokenizes `path`. Errors name the file and the 1-based line.
    pub fn load(path: &Path, tokenizer: &Tokenizer, opts: &DataOptions) -> Result<Dataset> {
        if !(0.0..1.0).contains(&opts.validation_fraction) {
            return Err(TrainError::InvalidOption(format!(
                "the validation fraction must be in [0, 1), got {}",
                opts.validation_fraction
            )));
        }
        let file = std::fs::File::open(path).map_err(TrainError::io(path))?;
        let format = ChatFormat::new(tokenizer)?;
        let (mut examples, mut skipped, mut truncated) = (Vec::new(), 0, 0);
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(TrainError::io(path))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String, hint: &str| TrainError::BadRecord {
                path: path.to_path_buf(),
                line: index + 1,
                reason,
                hint: hint.to_string(),
            };
            let parsed = parse_record(&line, tokenizer, &format, opts.loss_on)
                .map_err(|reason| bad(reason, "; --skip-bad-records skips such lines"))
                .and_then(|ex| fit(ex, opts, &mut truncated).map_err(|r| bad(r.0, r.1)));
            match parsed {
                Ok(example) => examples.push(example),
                Err(_) if opts.skip_bad_records => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        if examples.is_empty() {
            let detail = if skipped > 0 {
                format!(" ({skipped} malformed records skipped)")
            } else {
                String::new()
            };
            return Err(TrainError::EmptyDataset {
                path: path.to_path_buf(),
                detail,
            });
        }
        let (train, validation) = split(examples, opts.validation_fraction);
        Ok(Dataset {
            train,
            validation,
            skipped,
            truncated,
            path: path.to_path_buf(),
        })
    }
}

/// Checks an example against the row length, cutting it when allowed.
fn fit(
    mut ex: Example,
    opts: &DataOptions,
    truncated: &mut usize,
) -> std::result::Result<Example, (String, &'static str)> {
    if ex.ids.len() <= opts.seq_len {
        return Ok(ex);
    }
    if !opts.truncate {
        return Err((
            format!(
                "the example has {} tokens, more than the {}-token sequence length",
                ex.ids.len(),
                opts.seq_len
            ),
            "; raise --seq-len (up to the model's context), or pass --truncate to cut such examples",
        ));
    }
    ex.ids.truncate(opts.seq_len);
    ex.target.truncate(opts.seq_len);
    if ex.target_count() == 0 {
        return Err((
            format!(
                "nothing to learn is left in the first {} tokens of the example",
                opts.seq_len
            ),
            "; raise --seq-len",
        ));
    }
    *truncated += 1;
    Ok(ex)
}

/// Every k-th example (k = round(1 / fraction)) is held out; at least one
/// example always stays in training.
fn split(examples: Vec<Example>, fraction: f64) -> (Vec<Example>, Vec<Example>) {
    if fraction <= 0.0 || examples.len() < 2 {
        return (examples, Vec::new());
    }
    let k = ((1.0 / fraction).round() as usize).max(2);
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (i, ex) in examples.into_iter().enumerate() {
        if i % k == k - 1 {
            validation.push(ex);
        } else {
            train.push(ex);
        }
    }
    (train, validation)
}

/// One packed row of `seq_len` input positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Input ids (padding: 0).
    pub inputs: Vec<u32>,
    /// The id each position must predict.
    pub labels: Vec<u32>,
    /// 1 where the prediction counts in the loss, else 0.
    pub weights: Vec<f32>,
    /// Position of each token within its document (RoPE).
    pub positions: Vec<u32>,
    /// Document number within the row; padding gets its own number.
    pub segments: Vec<u32>,
}

impl Row {
    fn new(seq_len: usize) -> Row {
        Row {
            inputs: Vec::with_capacity(seq_len),
            labels: Vec::with_capacity(seq_len),
            weights: Vec::with_capacity(seq_len),
            positions: Vec::with_capacity(seq_len),
            segments: Vec::with_capacity(seq_len),
        }
    }

    fn push(&mut self, ex: &Example, segment: u32) {
        for i in 0..ex.ids.len() - 1 {
            self.inputs.push(ex.ids[i]);
            self.labels.push(ex.ids[i + 1]);
            self.weights.push(if ex.target[i + 1] { 1.0 } else { 0.0 });
            self.positions.push(i as u32);
            self.segments.push(segment);
        }
    }

    fn pad(&mut self, seq_len: usize, segment: u32) {
        let n = seq_len - self.inputs.len();
        self.inputs.extend(std::iter::repeat_n(0, n));
        self.labels.extend(std::iter::repeat_n(0, n));
        self.weights.extend(std::iter::repeat_n(0.0, n));
        self.positions.extend(0..n as u32);
        self.segments.extend(std::iter::repeat_n(segment, n));
    }

    /// Number of positions whose prediction counts.
    pub fn target_count(&self) -> usize {
        self.weights.iter().filter(|&&w| w > 0.0).count()
    }

    /// The examples packed into this row, in order, each with the row
    /// position of its first input, leaving out spans with no counted
    /// position (padding). [`pack`] of the examples gives the row back, so a
    /// row can be unpacked, edited per example and repacked.
    pub fn examples(&self) -> Vec<(usize, Example)> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.inputs.len() {
            let segment = self.segments[start];
            let len = self.segments[start..]
                .iter()
                .take_while(|&&s| s == segment)
                .count();
            let span = start..start + len;
            if self.weights[span.clone()].iter().any(|&w| w > 0.0) {
                let mut ids = self.inputs[span.clone()].to_vec();
                ids.push(self.labels[start + len - 1]);
                let mut target = vec![false];
                target.extend(self.weights[span].iter().map(|&w| w > 0.0));
                out.push((start, Example { ids, target }));
            }
            start += len;
        }
        out
    }
}

/// Packs examples, in the given order, into rows of `seq_len` positions
/// (an example of n ids takes n - 1 positions). A row is closed when the
/// next example does not fit.
pub fn pack(examples: &[&Example], seq_len: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row = Row::new(seq_len);
    let mut segment = 0u32;
    for ex in examples.iter().filter(|ex| ex.ids.len() >= 2) {
        if row.inputs.len() + ex.ids.len() - 1 > seq_len {
            row.pad(seq_len, segment);
            rows.push(std::mem::replace(&mut row, Row::new(seq_len)));
            segment = 0;
        }
        row.push(ex, segment);
        segment += 1;
    }
    if !row.inputs.is_empty() {
        row.pad(seq_len, segment);
        rows.push(row);
    }
    rows
}

/// The rows of one epoch: examples shuffled by `(seed, epoch)`, then packed.
pub fn epoch_rows(examples: &[Example], seed: u64, epoch: u64, seq_len: usize) -> Vec<Row> {
    let mut order: Vec<&Example> = examples.iter().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    pack(&order, seq_len)
}

/// Where the training data stands: the epoch and the next row in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Completed passes over the data.
    pub epoch: u64,
    /// Next row of the current epoch.
    pub row: usize,
}

/// Hands out micro-batches of rows in a reproducible order.
pub struct Loader<'a> {
    examples: &'a [Example],
    seed: u64,
    seq_len: usize,
    rows_per_batch: usize,
    cursor: Cursor,
    rows: Vec<Row>,
}

impl<'a> Loader<'a> {
    /// A loader positioned at `cursor`.
    pub fn new(
        examples: &'a [Example],
        seed: u64,
        seq_len: usize,
        rows_per_batch: usize,
        cursor: Cursor,
    ) -> Loader<'a> {
        let rows = epoch_rows(examples, seed, cursor.epoch, seq_len);
        Loader {
            examples,
            seed,
            seq_len,
            rows_per_batch: rows_per_batch.max(1),
            cursor,
            rows,
        }
    }

    /// Where the next batch starts.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The next rows (fewer at the end of an epoch); moves to the next
    /// epoch when this one is used up.
    pub fn next_batch(&mut self) -> Vec<Row> {
        if self.cursor.row >= self.rows.len() {
            self.cursor = Cursor {
                epoch: self.cursor.epoch + 1,
                row: 0,
            };
            self.rows = epoch_rows(self.examples, self.seed, self.cursor.epoch, self.seq_len);
        }
        let end = (self.cursor.row + self.rows_per_batch).min(self.rows.len());
        let batch = self.rows[self.cursor.row..end].to_vec();
        self.cursor.row = end;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: u32) -> Example {
        Example {
            ids: (0..n).collect(),
            target: (0..n).map(|i| i > 0).collect(),
        }
    }

    #[test]
    fn packing_restarts_positions_and_segments() {
        let (a, b, c) = (ex(4), ex(3), ex(6));
        let rows = pack(&[&a, &b, &c], 6);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].positions, [0, 1, 2, 0, 1, 0]);
        assert_eq!(rows[0].segments, [0, 0, 0, 1, 1, 2]);
        assert_eq!(rows[0].weights, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        assert_eq!(rows[0].labels[..3], [1, 2, 3]);
        assert_eq!(rows[1].inputs[..5], [0, 1, 2, 3, 4]);
        assert_eq!(rows[1].target_count(), 5);
    }

    #[test]
    fn rows_unpack_into_their_examples() {
        let (a, b) = (ex(4), ex(3));
        let rows = pack(&[&a, &b], 8);
        assert_eq!(rows[0].examples(), vec![(0, a.clone()), (3, b.clone())]);
        let again: Vec<&Example> = vec![&a, &b];
        assert_eq!(pack(&again, 8), rows);
    }

    #[test]
    fn loader_order_depends_only_on_seed_and_cursor() {
        let data: Vec<Example> = (2..12).map(ex).collect();
        let mut whole = Loader::new(&data, 7, 16, 2, Cursor::default());
        let batches: Vec<Vec<Row>> = (0..9).map(|_| whole.next_batch()).collect();
        let mut first = Loader::new(&data, 7, 16, 2, Cursor::default());
        for _ in 0..4 {
            first.next_batch();
        }
        let mut resumed = Loader::new(&data, 7, 16, 2, first.cursor());
        for expected in &batches[4..] {
            assert_eq!(&resumed.next_batch(), expected);
        }
        assert!(resumed.cursor().epoch >= 1, "the test crosses an epoch");
    }
}
