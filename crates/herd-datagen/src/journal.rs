//! The output file and its journal, which make a run resumable without
//! duplicates after any interruption (Ctrl-C, a crash, a killed machine).
//!
//! ```text
//! D.jsonl          records, append-only
//! D.jsonl.journal  {"header": settings}
//!                  {"key": prompt, "end": bytes of D.jsonl after it, "hashes": [...], counts}
//! ```
//!
//! A prompt's records are appended and synced, then its journal line is
//! appended and synced. On resume, the output is cut back to the `end` of
//! the last complete journal line: records written but not yet journaled
//! are dropped and generated again (with the same seeds, so identically),
//! and a torn last journal line is ignored. A journal whose settings differ
//! from the run's is refused, so a resumed file never mixes two runs.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{io, DatagenError, Result};

/// What each finished prompt contributed; summed over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Prompts finished.
    pub prompts: u64,
    /// Samples written.
    pub written: u64,
    /// Samples dropped as repeats of an earlier one.
    pub duplicates: u64,
    /// Samples refused by the log-probability threshold or the verifier.
    pub rejected: u64,
    /// Samples dropped because they ran out of tokens.
    pub truncated: u64,
    /// Tokens the teacher generated.
    pub tokens: u64,
}

impl Counts {
    /// Adds another prompt's or run's counts.
    pub fn add(&mut self, other: &Counts) {
        self.prompts += other.prompts;
        self.written += other.written;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.truncated += other.truncated;
        self.tokens += other.tokens;
    }

    fn to_json(self) -> Value {
        json!({"written": self.written, "duplicates": self.duplicates, "rejected": self.rejected,
               "truncated": self.truncated, "tokens": self.tokens})
    }

    fn from_json(v: &Value) -> Option<Counts> {
        let n = |k: &str| v[k].as_u64();
        Some(Counts {
            prompts: 1,
            written: n("written")?,
            duplicates: n("duplicates")?,
            rejected: n("rejected")?,
            truncated: n("truncated")?,
            tokens: n("tokens")?,
        })
    }
}

/// What an earlier, interrupted run already finished.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finished {
    /// Keys of finished prompts.
    pub keys: HashSet<String>,
    /// Hashes of the records written (for de-duplication).
    pub hashes: HashSet<u64>,
    /// Their counts.
    pub counts: Counts,
    /// Bytes of output they cover.
    end: u64,
    /// Bytes of journal that parse.
    journal_len: u64,
}

/// The journal's path for an output path: `D.jsonl` → `D.jsonl.journal`.
pub fn journal_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    output.with_file_name(name)
}

/// Reads what an earlier run with the same `settings` finished, without
/// changing any file (for `--dry-run`). No journal: nothing finished.
pub fn read_finished(output: &Path, settings: &Value) -> Result<Finished> {
    let journal = journal_path(output);
    let text = match std::fs::read(&journal) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let existing = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
            if existing > 0 {
                return Err(cannot(
                    output,
                    format!(
                        "exists and has no journal ({}), so it was not written by an \
                         interrupted run; refusing to overwrite it (remove it or choose another -o)",
                        journal.display()
                    ),
                ));
            }
            return Ok(Finished::default());
        }
        Err(e) => return Err(io(&journal)(e)),
    };
    parse_journal(output, &text, settings)
}

fn cannot(output: &Path, problem: String) -> DatagenError {
    DatagenError::CannotResume {
        path: output.to_owned(),
        problem,
    }
}

fn parse_journal(output: &Path, bytes: &[u8], settings: &Value) -> Result<Finished> {
    let mut finished = Finished::default();
    let mut offset = 0u64;
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let complete = line.ends_with(b"\n");
        let value: Option<Value> = serde_json::from_slice(line).ok().filter(|_| complete);
        let Some(value) = value else {
            break; // a torn last line: the run died while writing it
        };
        if i == 0 {
            if value["header"] != *settings {
                return Err(cannot(
                    output,
                    format!(
                        "was started with other settings ({}); this run has {}. Resume with \
                         the same flags, or write to another file",
                        value["header"], settings
                    ),
                ));
            }
        } else {
            let (Some(key), Some(end), Some(counts)) = (
                value["key"].as_str(),
                value["end"].as_u64(),
                Counts::from_json(&value),
            ) else {
                return Err(cannot(
                    output,
                    format!("journal line {} is malformed", i + 1),
                ));
            };
            finished.keys.insert(key.to_owned());
            let hashes = value["hashes"].as_array().into_iter().flatten();
            finished.hashes.extend(
                hashes.filter_map(|h| h.as_str().and_then(|h| u64::from_str_radix(h, 16).ok())),
            );
            finished.counts.add(&counts);
            finished.end = end;
        }
        offset += line.len() as u64;
        finished.journal_len = offset;
    }
    Ok(finished)
}

/// The open output and journal of a run.
pub struct Output {
    path: PathBuf,
    records: File,
    journal: File,
    end: u64,
}

impl Output {
    /// Opens `path` for a run with `settings`: a fresh file (with its
    /// journal), or an interrupted run's file cut back to its last
    /// journaled prompt. Returns what is already finished.
    pub fn open(path: &Path, settings: &Value) -> Result<(Output, Finished)> {
        let finished = read_finished(path, settings)?;
        let journal_file = journal_path(path);
        let fresh = finished.journal_len == 0;
        let mut records = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let len = records.metadata().map_err(io(path))?.len();
        if len < finished.end {
            return Err(cannot(
                path,
                format!(
                    "is {len} bytes but its journal says {} were written: was it edited?",
                    finished.end
                ),
            ));
        }
        records.set_len(finished.end).map_err(io(path))?;
        let mut journal = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&journal_file)
            .map_err(io(&journal_file))?;
        journal
            .set_len(finished.journal_len)
            .map_err(io(&journal_file))?;
        journal.seek(SeekFrom::End(0)).map_err(io(&journal_file))?;
        records.seek(SeekFrom::End(0)).map_err(io(path))?;
        let mut output = Output {
            path: path.to_owned(),
            records,
            journal,
            end: finished.end,
        };
        if fresh {
            output.append_journal(&json!({ "header": settings }))?;
        }
        Ok((output, finished))
    }

    /// Appends one finished prompt: its records, synced, then its journal line, synced.
    pub fn commit(
        &mut self,
        key: &str,
        lines: &[String],
        hashes: &[u64],
        counts: &Counts,
    ) -> Result<()> {
        let mut block = String::new();
        for line in lines {
            block.push_str(line);
            block.push('\n');
        }
        self.records
            .write_all(block.as_bytes())
            .and_then(|()| self.records.sync_data())
            .map_err(io(&self.path))?;
        self.end += block.len() as u64;
        let mut entry = counts.to_json();
        entry["key"] = key.into();
        entry["end"] = self.end.into();
        entry["hashes"] = hashes.iter().map(|h| format!("{h:016x}")).collect();
        self.append_journal(&entry)
    }

    fn append_journal(&mut self, value: &Value) -> Result<()> {
        let journal = journal_path(&self.path);
        let mut line = value.to_string();
        line.push('\n');
        self.journal
            .write_all(line.as_bytes())
            .and_then(|()| self.journal.sync_data())
            .map_err(io(&journal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(written: u64) -> Counts {
        Counts {
            prompts: 1,
            written,
            ..Counts::default()
        }
    }

    #[test]
    fn resume_cuts_unjournaled_records_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let settings = json!({"n": 2});
        let (mut out, finished) = Output::open(&path, &settings).unwrap();
        assert!(finished.keys.is_empty());
        out.commit("a", &["{\"x\":1}".into()], &[7], &one(1))
            .unwrap();
        drop(out);
        // A crash after writing b's record but before its journal line,
        // in the middle of writing that line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"x\":2}\n")
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(journal_path(&path))
            .unwrap()
            .write_all(b"{\"key\": \"b\", \"en")
            .unwrap();
        let (mut out, finished) = Output::open(&path, &settings).unwrap();
        assert_eq!(finished.keys, HashSet::from(["a".to_string()]));
        assert_eq!(finished.hashes, HashSet::from([7]));
        assert_eq!(finished.counts.written, 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"x\":1}\n");
        out.commit("b", &["{\"x\":2}".into()], &[8], &one(1))
            .unwrap();
        drop(out);
        let finished = read_finished(&path, &settings).unwrap();
        assert_eq!(finished.keys.len(), 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"x\":1}\n{\"x\":2}\n"
        );
    }

    #[test]
    fn other_settings_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        drop(Output::open(&path, &json!({"n": 2})).unwrap());
        let err = Output::open(&path, &json!({"n": 3}))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("other settings"), "{err}");
        let foreign = dir.path().join("mine.jsonl");
        std::fs::write(&foreign, "{\"precious\": true}\n").unwrap();
        let err = Output::open(&foreign, &json!({}))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no journal"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&foreign).unwrap(),
            "{\"precious\": true}\n"
        );
    }
}
