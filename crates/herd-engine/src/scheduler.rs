//! The scheduler: which sequences compute how many tokens in the next step,
//! and which KV blocks they hold.
//!
//! Token-centric: a sequence is its tokens (prompt, then whatever it has
//! generated) and the number of them whose KV is computed. Each step gives
//! every sequence a share of the token budget towards catching up:
//!
//! ```text
//! tokens     [p p p p p p p p p p g g]      p prompt, g generated
//! computed   [x x x x x x . . . . . .]      6 computed → 6 to catch up
//! ```
//!
//! A new prompt is a sequence far behind (prefill, in chunks when the budget
//! is short); a decoding sequence is one token behind; a prefix-cache hit
//! starts a sequence with `computed` > 0; a preempted sequence drops its
//! blocks and falls back to `computed = 0`, to be recomputed later. One rule
//! covers them all. A sequence that has caught up is sampled from by the
//! engine, which appends the new token, and so falls one behind again.
//!
//! Order within a step: running sequences that decode, then running ones
//! still prefilling, then new arrivals (first come, first served) while
//! there are sequence slots, budget and blocks. When a running sequence needs
//! a block and none is left, the latest arrival among those not yet given
//! work this step is preempted (possibly the sequence itself).

use std::collections::VecDeque;

use crate::blocks::{block_hash, BlockId, BlockManager, ROOT_HASH};

/// The scheduler's view of one request.
#[derive(Debug)]
pub(crate) struct Sequence {
    /// Unique, increasing with arrival.
    pub id: u64,
    /// The prompt followed by the generated tokens.
    pub tokens: Vec<u32>,
    /// Tokens whose KV is in `blocks`.
    pub computed: usize,
    /// Block table: position `p` lives in `blocks[p / block_size]`.
    pub blocks: Vec<BlockId>,
    /// Chained hashes of the full blocks already offered to the prefix cache.
    hashes: Vec<u64>,
    /// Whether admission may take cached blocks (not while every prompt
    /// position still needs its logits).
    pub reuse_prefix: bool,
    /// Prompt tokens that came from the prefix cache on first admission.
    pub cached_prompt_tokens: Option<usize>,
}

impl Sequence {
    /// A sequence that has computed nothing yet.
    pub(crate) fn new(id: u64, prompt: Vec<u32>, reuse_prefix: bool) -> Sequence {
        Sequence {
            id,
            tokens: prompt,
            computed: 0,
            blocks: Vec::new(),
            hashes: Vec::new(),
            reuse_prefix,
            cached_prompt_tokens: None,
        }
    }

    /// Tokens still to compute.
    pub(crate) fn behind(&self) -> usize {
        self.tokens.len() - self.computed
    }
}

/// Work for one running sequence in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Work {
    /// Index into [`Scheduler::running`].
    pub index: usize,
    /// Tokens to compute, starting at the sequence's `computed`.
    pub tokens: usize,
}

/// Limits the scheduler works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_num_seqs: usize,
    pub max_batch_tokens: usize,
    pub block_size: usize,
}

/// Queues, block manager and counters.
#[derive(Debug)]
pub(crate) struct Scheduler {
    limits: Limits,
    pub blocks: BlockManager,
    /// Arrived, holding no blocks; preempted sequences go back to the front.
    pub waiting: VecDeque<Sequence>,
    /// Admitted, in arrival order.
    pub running: Vec<Sequence>,
    /// Tokens admitted from the prefix cache, since start.
    pub prefix_hit_tokens: u64,
    /// Preemptions, since start.
    pub preemptions: u64,
}

impl Scheduler {
    pub(crate) fn new(limits: Limits, blocks: BlockManager) -> Scheduler {
        Scheduler {
            limits,
            blocks,
            waiting: VecDeque::new(),
            running: Vec::new(),
            prefix_hit_tokens: 0,
            preemptions: 0,
        }
    }

    /// Chooses the next step's work; every sequence in it holds the blocks
    /// for the positions it will write.
    pub(crate) fn schedule(&mut self) -> Vec<Work> {
        let mut budget = self.limits.max_batch_tokens;
        let mut planned: Vec<u64> = Vec::new();
        let mut amounts: Vec<usize> = Vec::new();
        let mut preempted = false;
        // Decoding sequences first, then those still prefilling; arrival order within each.
        let mut order: Vec<(bool, u64)> = self
            .running
            .iter()
            .map(|s| (s.behind() != 1, s.id))
            .collect();
        order.sort_unstable();
        for (_, id) in order {
            if budget == 0 {
                break;
            }
            let Some(i) = self.running.iter().position(|s| s.id == id) else {
                continue; // preempted earlier in this step
            };
            let n = self.running[i].behind().min(budget);
            if !self.reserve(i, n, &planned) {
                preempted = true;
                continue;
            }
            planned.push(id);
            amounts.push(n);
            budget -= n;
        }
        // New arrivals, unless this step already had to preempt.
        while !preempted && budget > 0 && self.running.len() < self.limits.max_num_seqs {
            let Some((id, n)) = self.admit(budget) else {
                break;
            };
            planned.push(id);
            amounts.push(n);
            budget -= n;
        }
        planned
            .iter()
            .zip(amounts)
            .filter_map(|(id, tokens)| {
                let index = self.running.iter().position(|s| s.id == *id)?;
                Some(Work { index, tokens })
            })
            .collect()
    }

    /// Blocks covering `len` positions.
    fn blocks_for(&self, len: usize) -> usize {
        len.div_ceil(self.limits.block_size)
    }

    /// Gives running sequence `i` the blocks for `n` more positions,
    /// preempting later arrivals not in `planned` as needed. False if `i`
    /// itself had to be preempted.
    fn reserve(&mut self, i: usize, n: usize, planned: &[u64]) -> bool {
        let id = self.running[i].id;
        loop {
            let i = self.running.iter().position(|s| s.id == id).unwrap_or(i);
            if self.grow(i, n) {
                return true;
            }
            let victim = self
                .running
                .iter()
                .rposition(|s| !planned.contains(&s.id))
                .unwrap_or(i);
            self.preempt(victim);
            if victim == i {
                return false;
            }
        }
    }

    /// Gives running sequence `i` the blocks for `n` positions from its
    /// `computed` if they are free, without preempting anyone (speculative
    /// steps are an optimisation, never worth evicting another request).
    pub(crate) fn grow(&mut self, i: usize, n: usize) -> bool {
        let seq = &self.running[i];
        let need = self
            .blocks_for(seq.computed + n)
            .saturating_sub(seq.blocks.len());
        if need > self.blocks.available() {
            return false;
        }
        for _ in 0..need {
            let b = self.blocks.allocate();
            self.running[i].blocks.extend(b);
        }
        true
    }

    /// Drops running sequence `i`'s KV and puts it back at the front of the queue.
    fn preempt(&mut self, i: usize) {
        let mut seq = self.running.remove(i);
        self.free(&mut seq);
        seq.computed = 0;
        self.preemptions += 1;
        self.waiting.push_front(seq);
    }

    /// Releases every block `seq` holds.
    pub(crate) fn free(&mut self, seq: &mut Sequence) {
        for b in seq.blocks.drain(..) {
            self.blocks.release(b);
        }
        seq.hashes.clear();
    }

    /// Moves the first waiting sequence to `running` with the blocks for its
    /// first chunk (after any cached prefix); returns its id and the chunk's length.
    fn admit(&mut self, budget: usize) -> Option<(u64, usize)> {
        let mut seq = self.waiting.pop_front()?;
        let hit = self.take_prefix(&mut seq);
        let n = seq.behind().min(budget);
        let need = self.blocks_for(seq.computed + n) - seq.blocks.len();
        if need > self.blocks.available() {
            self.free(&mut seq);
            seq.computed = 0;
            self.waiting.push_front(seq);
            return None;
        }
        for _ in 0..need {
            let b = self.blocks.allocate();
            seq.blocks.extend(b);
        }
        self.prefix_hit_tokens += hit as u64;
        seq.cached_prompt_tokens.get_or_insert(hit);
        let id = seq.id;
        self.running.push(seq);
        Some((id, n))
    }

    /// Takes the cached blocks of `seq`'s longest cached prefix of full
    /// blocks, leaving at least one token to compute (its logits are needed).
    fn take_prefix(&mut self, seq: &mut Sequence) -> usize {
        if !seq.reuse_prefix || !self.blocks.caching() {
            return 0;
        }
        let bs = self.limits.block_size;
        let max_blocks = (seq.tokens.len() - 1) / bs;
        let mut parent = ROOT_HASH;
        for chunk in seq.tokens.chunks_exact(bs).take(max_blocks) {
            let Some((id, hash)) = self.blocks.take_cached(parent, chunk) else {
                break;
            };
            seq.blocks.push(id);
            seq.hashes.push(hash);
            parent = hash;
        }
        seq.computed = seq.blocks.len() * bs;
        seq.computed
    }

    /// Records that running sequence `i` computed `n` more tokens, and offers
    /// its newly completed blocks to the prefix cache.
    pub(crate) fn computed(&mut self, i: usize, n: usize) {
        let bs = self.limits.block_size;
        let seq = &mut self.running[i];
        seq.computed += n;
        while (seq.hashes.len() + 1) * bs <= seq.computed {
            let b = seq.hashes.len();
            let tokens = &seq.tokens[b * bs..(b + 1) * bs];
            let hash = block_hash(seq.hashes.last().copied().unwrap_or(ROOT_HASH), tokens);
            self.blocks.register(seq.blocks[b], hash, tokens);
            seq.hashes.push(hash);
        }
    }

    /// Removes running sequence `i` (finished or cancelled) and frees its blocks.
    pub(crate) fn remove_running(&mut self, i: usize) -> Sequence {
        let mut seq = self.running.remove(i);
        self.free(&mut seq);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(max_batch_tokens: usize, block_size: usize, blocks: usize) -> Scheduler {
        let limits = Limits {
            max_num_seqs: 8,
            max_batch_tokens,
            block_size,
        };
        Scheduler::new(limits, BlockManager::new(blocks, true))
    }

    /// Applies a plan as the engine would, appending `next` to sequences that caught up.
    fn apply(s: &mut Scheduler, plan: &[Work], next: u32) {
        for w in plan {
            s.computed(w.index, w.tokens);
            let seq = &mut s.running[w.index];
            if seq.behind() == 0 {
                seq.tokens.push(next);
            }
        }
    }

    fn plan(s: &mut Scheduler) -> Vec<(u64, usize)> {
        let work = s.schedule();
        let ids = work
            .iter()
            .map(|w| (s.running[w.index].id, w.tokens))
            .collect();
        apply(s, &work, 7);
        ids
    }

    #[test]
    fn prefill_is_chunked_and_decodes_go_first() {
        let mut s = scheduler(10, 4, 100);
        s.waiting.push_back(Sequence::new(0, vec![1; 25], true));
        s.waiting.push_back(Sequence::new(1, vec![2; 3], true));
        assert_eq!(plan(&mut s), vec![(0, 10)]);
        assert_eq!(plan(&mut s), vec![(0, 10)]);
        assert_eq!(plan(&mut s), vec![(0, 5), (1, 3)]);
        // Both caught up and got a token: two decodes.
        assert_eq!(plan(&mut s), vec![(0, 1), (1, 1)]);
        assert_eq!(s.blocks.held(), 7 + 1);
    }

    #[test]
    fn the_latest_arrival_is_preempted_and_recomputed() {
        let mut s = scheduler(64, 4, 4);
        s.waiting.push_back(Sequence::new(0, vec![1; 8], true));
        s.waiting.push_back(Sequence::new(1, vec![2; 7], true));
        assert_eq!(plan(&mut s), vec![(0, 8), (1, 7)]);
        assert_eq!(s.blocks.available(), 0);
        // Sequence 0 needs a third block for position 8: sequence 1 gives its two back.
        assert_eq!(plan(&mut s), vec![(0, 1)]);
        assert_eq!(s.preemptions, 1);
        assert_eq!(s.waiting.front().map(|q| (q.id, q.computed)), Some((1, 0)));
        // No room to bring sequence 1 back while sequence 0 holds three of the four blocks.
        assert_eq!(plan(&mut s), vec![(0, 1)]);
        assert_eq!(s.waiting.len(), 1);
        // Once sequence 0 is done, sequence 1 is readmitted with its generated token and
        // its first block from the prefix cache, so only positions 4..8 are recomputed.
        s.remove_running(0);
        assert_eq!(s.blocks.held(), 0);
        assert_eq!(plan(&mut s), vec![(1, 4)]);
        assert_eq!(s.prefix_hit_tokens, 4);
        assert_eq!(s.running[0].tokens.len(), 9);
    }
}
