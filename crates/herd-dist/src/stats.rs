//! What a communicator has moved, measured where it moves it: per kind of
//! operation, the calls, the payload bytes and the seconds spent inside the
//! library call (waiting for peers included). The counters are a few
//! relaxed atomic adds per call, cheap next to any collective, so they are
//! always on; `herd generate --tp/--pp` prints them per decoded token and
//! `bench/parallel.py` compares the bytes with the layout's formula.

use std::fmt;
use std::ops::Sub;
#[cfg(any(feature = "mpi", test))]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(any(feature = "mpi", test))]
use std::time::Instant;

/// The kinds of operation a [`crate::Communicator`] performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Element-wise sum over ranks (payload: the buffer).
    AllReduce,
    /// Concatenation over ranks (payload: the gathered output).
    AllGather,
    /// One rank's bytes to all (payload: the buffer; herd's control messages).
    Broadcast,
    /// Point-to-point send (payload: the buffer).
    Send,
    /// Point-to-point receive (payload: the buffer).
    Recv,
    /// Synchronisation only (no payload).
    Barrier,
}

impl Op {
    /// Every kind, in the order [`CommStats`] stores them.
    pub const ALL: [Op; 6] = [
        Op::AllReduce,
        Op::AllGather,
        Op::Broadcast,
        Op::Send,
        Op::Recv,
        Op::Barrier,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Op::AllReduce => "all-reduce",
            Op::AllGather => "all-gather",
            Op::Broadcast => "broadcast",
            Op::Send => "send",
            Op::Recv => "recv",
            Op::Barrier => "barrier",
        }
    }
}

/// Totals of one kind of operation.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct OpStats {
    /// Calls made.
    pub calls: u64,
    /// Payload bytes of those calls on this rank.
    pub bytes: u64,
    /// Seconds spent inside them on this rank.
    pub seconds: f64,
}

/// A snapshot of a communicator's counters (see the module docs). Subtract
/// two snapshots to get the traffic of what happened in between.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CommStats {
    ops: [OpStats; 6],
}

impl CommStats {
    /// The totals of one kind of operation.
    pub fn op(&self, op: Op) -> OpStats {
        self.ops[op.index()]
    }

    /// The tensor traffic: all-reduce, all-gather, send and receive (what
    /// the TP/PP formulas count), without control broadcasts and barriers.
    pub fn data(&self) -> OpStats {
        [Op::AllReduce, Op::AllGather, Op::Send, Op::Recv]
            .iter()
            .map(|&op| self.op(op))
            .fold(OpStats::default(), |a, b| OpStats {
                calls: a.calls + b.calls,
                bytes: a.bytes + b.bytes,
                seconds: a.seconds + b.seconds,
            })
    }

    /// Every count divided by `n` (e.g. per decoded token), rounded down.
    pub fn per(&self, n: u64) -> CommStats {
        let n = n.max(1);
        let mut out = *self;
        for s in &mut out.ops {
            s.calls /= n;
            s.bytes /= n;
            s.seconds /= n as f64;
        }
        out
    }
}

impl Sub for CommStats {
    type Output = CommStats;

    fn sub(self, earlier: CommStats) -> CommStats {
        let mut out = self;
        for (s, e) in out.ops.iter_mut().zip(earlier.ops) {
            s.calls = s.calls.saturating_sub(e.calls);
            s.bytes = s.bytes.saturating_sub(e.bytes);
            s.seconds = (s.seconds - e.seconds).max(0.0);
        }
        out
    }
}

impl fmt::Display for CommStats {
    /// `data 320 bytes in 2 calls, 0.120 ms (all-reduce: 1 calls, 64 bytes,
    /// 0.100 ms; ...)`: the tensor traffic, then each kind that was used.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.data();
        write!(
            f,
            "data {} bytes in {} calls, {:.3} ms",
            data.bytes,
            data.calls,
            data.seconds * 1e3
        )?;
        let used: Vec<String> = Op::ALL
            .iter()
            .filter(|&&op| self.op(op).calls > 0)
            .map(|&op| {
                let s = self.op(op);
                format!(
                    "{}: {} calls, {} bytes, {:.3} ms",
                    op.name(),
                    s.calls,
                    s.bytes,
                    s.seconds * 1e3
                )
            })
            .collect();
        if !used.is_empty() {
            write!(f, " ({})", used.join("; "))?;
        }
        Ok(())
    }
}

/// The live counters a backend updates; shared (behind an `Arc`) by a
/// world communicator and the groups split from it, so the world's
/// [`CommStats`] cover all of this process's traffic.
#[cfg(any(feature = "mpi", test))]
#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: [AtomicU64; 6],
    bytes: [AtomicU64; 6],
    nanos: [AtomicU64; 6],
}

#[cfg(any(feature = "mpi", test))]
impl Counters {
    /// Runs `call` (one operation of kind `op` moving `bytes`) and counts it.
    pub(crate) fn time<T>(&self, op: Op, bytes: usize, call: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = call();
        let i = op.index();
        let nanos = start.elapsed().as_nanos() as u64;
        self.calls[i].fetch_add(1, Ordering::Relaxed);
        self.bytes[i].fetch_add(bytes as u64, Ordering::Relaxed);
        self.nanos[i].fetch_add(nanos, Ordering::Relaxed);
        out
    }

    /// The totals so far.
    pub(crate) fn snapshot(&self) -> CommStats {
        let mut out = CommStats::default();
        for (i, s) in out.ops.iter_mut().enumerate() {
            s.calls = self.calls[i].load(Ordering::Relaxed);
            s.bytes = self.bytes[i].load(Ordering::Relaxed);
            s.seconds = self.nanos[i].load(Ordering::Relaxed) as f64 * 1e-9;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_kind_and_subtracts_snapshots() {
        let c = Counters::default();
        c.time(Op::AllReduce, 64, || ());
        let first = c.snapshot();
        c.time(Op::AllReduce, 64, || ());
        c.time(Op::AllGather, 256, || ());
        c.time(Op::Broadcast, 9, || ());
        let delta = c.snapshot() - first;
        assert_eq!(delta.op(Op::AllReduce).calls, 1);
        assert_eq!(delta.op(Op::AllReduce).bytes, 64);
        assert_eq!(delta.op(Op::AllGather).bytes, 256);
        assert_eq!(delta.op(Op::Send).calls, 0);
        // Control broadcasts are not tensor traffic.
        assert_eq!(delta.data().bytes, 320);
        assert_eq!(delta.data().calls, 2);
        assert_eq!(delta.per(2).data().bytes, 160);
        let text = delta.to_string();
        assert!(text.starts_with("data 320 bytes in 2 calls"), "{text}");
        assert!(text.contains("broadcast: 1 calls, 9 bytes"), "{text}");
        assert!(!text.contains("recv"), "{text}");
    }
}
