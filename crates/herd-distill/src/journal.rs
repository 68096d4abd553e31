//! The journal of a shard being scored: every sequence's rows, appended and
//! synced the moment the teacher returns them, so that an interrupted
//! `teacher-cache` (a killed process, a teacher that went away, a spent
//! request budget) loses no scored sequence and asks none twice.
//!
//! A shard is the unit a cache is *read* in; a sequence is the unit a remote
//! teacher is *paid* by. `shard-00003.partial` bridges the two: once all of
//! shard 3's sequences are in it, the shard is encoded from it (the same
//! bytes an uninterrupted run writes) and the journal is deleted.
//!
//! ```text
//! line 1     {"format": "herd-teacher-cache", "shard": "3", "k": "20", ...}\n   (the shard's header)
//! record     slot u32 · positions u32 · ids u32[positions·k] · logprobs f32[positions·k]
//!            · tail f32[positions] · FNV-1a u64 of everything before it in the record
//! ```
//!
//! A record cut short by a crash, or with a wrong checksum, ends the
//! journal: it and anything after it are dropped (and truncated away when
//! the journal is reopened for writing).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use herd_train::state::fnv1a;

use crate::cache::CacheHeader;
use crate::error::{DistillError, Result};
use crate::fused::TopK;

/// Path of shard `i`'s journal.
pub(crate) fn journal_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("shard-{i:05}.partial"))
}

/// The scored sequences of one shard, by slot (index within the shard).
pub(crate) struct Journal {
    path: PathBuf,
    file: Option<File>,
    k: usize,
    rows: BTreeMap<usize, TopK>,
}

impl Journal {
    /// What a journal holds without changing it (for a dry run); empty when
    /// there is none.
    pub(crate) fn read(dir: &Path, shard: usize, header: &CacheHeader) -> Result<Journal> {
        let path = journal_path(dir, shard);
        let rows = match std::fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes, header, shard)?.0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(DistillError::io(&path)(e)),
        };
        Ok(Journal {
            path,
            file: None,
            k: header.k,
            rows,
        })
    }

    /// Opens (or starts) shard `shard`'s journal for appending, keeping its
    /// complete records and cutting off a torn last one.
    pub(crate) fn open(dir: &Path, shard: usize, header: &CacheHeader) -> Result<Journal> {
        let path = journal_path(dir, shard);
        let io = |e: std::io::Error| DistillError::io(&path)(e);
        let (rows, valid) = match std::fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes, header, shard)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut line = serde_json::to_string(&header.metadata(shard, 0))
                    .map_err(|e| DistillError::Teacher(e.to_string()))?;
                line.push('\n');
                std::fs::write(&path, &line).map_err(io)?;
                (BTreeMap::new(), line.len() as u64)
            }
            Err(e) => return Err(io(e)),
        };
        let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
        file.set_len(valid).map_err(io)?;
        Ok(Journal {
            path,
            file: Some(file),
            k: header.k,
            rows,
        })
    }

    /// Slots already scored.
    pub(crate) fn has(&self, slot: usize) -> bool {
        self.rows.contains_key(&slot)
    }

    /// How many slots are scored.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Appends and syncs one sequence's rows.
    pub(crate) fn record(&mut self, slot: usize, rows: TopK) -> Result<()> {
        let positions = rows.tail.len();
        if rows.k != self.k || rows.ids.len() != positions * self.k {
            return Err(DistillError::Teacher(format!(
                "rows of top-{} for {positions} positions, expected top-{}",
                rows.k, self.k
            )));
        }
        let mut bytes = Vec::with_capacity(16 + positions * (8 * self.k + 4));
        bytes.extend((slot as u32).to_le_bytes());
        bytes.extend((positions as u32).to_le_bytes());
        bytes.extend(rows.ids.iter().flat_map(|i| i.to_le_bytes()));
        bytes.extend(rows.logprobs.iter().flat_map(|l| l.to_le_bytes()));
        bytes.extend(rows.tail.iter().flat_map(|t| t.to_le_bytes()));
        let sum = checksum(&bytes);
        bytes.extend(sum.to_le_bytes());
        let path = self.path.clone();
        let io = |e: std::io::Error| DistillError::io(&path)(e);
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| DistillError::Teacher("the journal is read-only".into()))?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.rows.insert(slot, rows);
        Ok(())
    }

    /// Every slot's rows in order, once all `slots` are scored, and the
    /// journal's path (delete it once the shard is written).
    pub(crate) fn into_rows(self, slots: usize) -> Result<(Vec<TopK>, PathBuf)> {
        if self.rows.len() != slots || self.rows.keys().any(|&s| s >= slots) {
            return Err(DistillError::BadCache {
                path: self.path,
                reason: format!("{} of {slots} sequences scored", self.rows.len()),
            });
        }
        Ok((self.rows.into_values().collect(), self.path))
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    u64::from_str_radix(&fnv1a([bytes]), 16).unwrap_or_default()
}

/// The complete records of a journal and the length they end at.
fn parse(
    path: &Path,
    bytes: &[u8],
    header: &CacheHeader,
    shard: usize,
) -> Result<(BTreeMap<usize, TopK>, u64)> {
    let bad = |reason: String| DistillError::BadCache {
        path: path.to_path_buf(),
        reason,
    };
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line".into()))?;
    let meta: std::collections::HashMap<String, String> =
        serde_json::from_slice(&bytes[..end]).map_err(|e| bad(format!("header: {e}")))?;
    let (found, index) = CacheHeader::parse(path, &meta)?;
    if let Some(err) = header.mismatch(path, &found) {
        return Err(err);
    }
    if index != shard {
        return Err(bad(format!(
            "it is the journal of shard {index}, not {shard}"
        )));
    }
    let k = header.k;
    let mut rows = BTreeMap::new();
    let mut at = end + 1;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    while bytes.len() >= at + 8 {
        let slot = u32_at(bytes, at) as usize;
        let positions = u32_at(bytes, at + 4) as usize;
        let body = 8 + positions * (8 * k + 4);
        if bytes.len() < at + body + 8 || slot >= header.shard_sequences {
            break;
        }
        let record = &bytes[at..at + body];
        let stored = u64::from_le_bytes(
            bytes[at + body..at + body + 8]
                .try_into()
                .unwrap_or_default(),
        );
        if checksum(record) != stored {
            break;
        }
        let words = |from: usize, n: usize| (0..n).map(move |j| u32_at(record, from + 4 * j));
        let n = positions * k;
        rows.insert(
            slot,
            TopK {
                k,
                ids: words(8, n).collect(),
                logprobs: words(8 + 4 * n, n).map(f32::from_bits).collect(),
                tail: words(8 + 8 * n, positions).map(f32::from_bits).collect(),
            },
        );
        at += body + 8;
    }
    Ok((rows, at as u64))
}
