//! What rank 0 broadcasts to the other ranks before each step, and its
//! encoding: a byte vector of little-endian `u64` words, carried by the
//! communicator's `broadcast_vec` (MPI moves the bytes; this only frames them).

use herd_model::{Logits, PagedSeq};

use crate::error::{ParallelError, Result};

/// One sequence of a paged step, as the engine scheduled it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PagedStep {
    /// New tokens.
    pub tokens: Vec<u32>,
    /// Positions already in the blocks.
    pub past: usize,
    /// Block table (the same block ids on every rank; each rank's pool holds
    /// its own layers and heads of each block).
    pub blocks: Vec<u32>,
    /// Which positions get logits.
    pub which: Logits,
}

impl PagedStep {
    /// The engine's sequence, owned for broadcasting.
    pub(crate) fn from_paged(s: &PagedSeq<'_>) -> PagedStep {
        PagedStep {
            tokens: s.tokens.to_vec(),
            past: s.past,
            blocks: s.blocks.to_vec(),
            which: s.logits,
        }
    }

    /// The sequence as the model takes it.
    pub(crate) fn as_paged(&self) -> PagedSeq<'_> {
        PagedSeq {
            tokens: &self.tokens,
            past: self.past,
            blocks: &self.blocks,
            logits: self.which,
        }
    }
}

/// Rank 0's instruction to the others.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// Run one sequence with the follower's own cache: truncate it to
    /// `past` positions, then append `tokens` (`herd generate`).
    Step {
        past: usize,
        which: Logits,
        tokens: Vec<u32>,
    },
    /// Allocate the KV pool the following paged steps index (`herd serve`).
    Pool {
        block_size: usize,
        num_blocks: usize,
    },
    /// Run one packed batch whose KV lives in the pool.
    Paged(Vec<PagedStep>),
    /// Nothing to do yet; rank 0 is alive (keeps the watchdogs quiet while
    /// a server waits for requests).
    Idle,
    /// Generation is over; return from `follow`.
    Stop,
}

const STOP: u64 = 0;
const STEP: u64 = 1;
const POOL: u64 = 2;
const PAGED: u64 = 3;
const IDLE: u64 = 4;

fn logits_word(which: Logits) -> u64 {
    matches!(which, Logits::All) as u64
}

impl Command {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Vec::new();
        match self {
            Command::Stop => w.push(STOP),
            Command::Idle => w.push(IDLE),
            Command::Step {
                past,
                which,
                tokens,
            } => {
                w.extend([STEP, *past as u64, logits_word(*which)]);
                push_list(&mut w, tokens);
            }
            Command::Pool {
                block_size,
                num_blocks,
            } => w.extend([POOL, *block_size as u64, *num_blocks as u64]),
            Command::Paged(seqs) => {
                w.extend([PAGED, seqs.len() as u64]);
                for s in seqs {
                    w.extend([s.past as u64, logits_word(s.which)]);
                    push_list(&mut w, &s.tokens);
                    push_list(&mut w, &s.blocks);
                }
            }
        }
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Command> {
        if !bytes.len().is_multiple_of(8) {
            return Err(malformed(bytes.len()));
        }
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let mut r = Reader {
            words: &words,
            bytes: bytes.len(),
        };
        let command = match r.next()? {
            STOP => Command::Stop,
            IDLE => Command::Idle,
            STEP => Command::Step {
                past: r.next()? as usize,
                which: r.logits()?,
                tokens: r.list()?,
            },
            POOL => Command::Pool {
                block_size: r.next()? as usize,
                num_blocks: r.next()? as usize,
            },
            PAGED => {
                let n = r.next()? as usize;
                let mut seqs = Vec::with_capacity(n.min(words.len()));
                for _ in 0..n {
                    seqs.push(PagedStep {
                        past: r.next()? as usize,
                        which: r.logits()?,
                        tokens: r.list()?,
                        blocks: r.list()?,
                    });
                }
                Command::Paged(seqs)
            }
            _ => return Err(malformed(bytes.len())),
        };
        if !r.words.is_empty() {
            return Err(malformed(bytes.len()));
        }
        Ok(command)
    }
}

fn push_list(w: &mut Vec<u64>, xs: &[u32]) {
    w.push(xs.len() as u64);
    w.extend(xs.iter().map(|&x| x as u64));
}

fn malformed(bytes: usize) -> ParallelError {
    ParallelError::Protocol(format!("a malformed command of {bytes} bytes from rank 0"))
}

/// Takes words off the front of a command.
struct Reader<'a> {
    words: &'a [u64],
    bytes: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<u64> {
        let (&first, rest) = self
            .words
            .split_first()
            .ok_or_else(|| malformed(self.bytes))?;
        self.words = rest;
        Ok(first)
    }

    fn logits(&mut self) -> Result<Logits> {
        match self.next()? {
            0 => Ok(Logits::Last),
            1 => Ok(Logits::All),
            _ => Err(malformed(self.bytes)),
        }
    }

    fn list(&mut self) -> Result<Vec<u32>> {
        let n = self.next()? as usize;
        if n > self.words.len() {
            return Err(malformed(self.bytes));
        }
        let (items, rest) = self.words.split_at(n);
        self.words = rest;
        items
            .iter()
            .map(|&x| u32::try_from(x).map_err(|_| malformed(self.bytes)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for command in [
            Command::Stop,
            Command::Idle,
            Command::Step {
                past: 7,
                which: Logits::All,
                tokens: vec![1, 2, 300_000],
            },
            Command::Step {
                past: 0,
                which: Logits::Last,
                tokens: vec![],
            },
            Command::Pool {
                block_size: 16,
                num_blocks: 4096,
            },
            Command::Paged(vec![
                PagedStep {
                    tokens: vec![5, 6, 7],
                    past: 32,
                    blocks: vec![0, 9, 3],
                    which: Logits::Last,
                },
                PagedStep {
                    tokens: vec![8],
                    past: 0,
                    blocks: vec![1],
                    which: Logits::All,
                },
            ]),
        ] {
            assert_eq!(Command::decode(&command.encode()).unwrap(), command);
        }
    }

    #[test]
    fn malformed_commands_are_errors() {
        let step = Command::Step {
            past: 1,
            which: Logits::Last,
            tokens: vec![1, 2],
        }
        .encode();
        for bad in [
            &step[..step.len() - 8],       // a token short
            &step[..step.len() - 3],       // not whole words
            &[9, 0, 0, 0, 0, 0, 0, 0][..], // unknown command
            &[],                           // nothing
        ] {
            assert!(Command::decode(bad).is_err(), "{bad:?}");
        }
        let mut trailing = Command::Stop.encode();
        trailing.extend([0; 8]);
        assert!(Command::decode(&trailing).is_err());
    }
}
