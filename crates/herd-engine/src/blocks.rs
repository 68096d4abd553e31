//! The block manager: which KV blocks of the pool are held, by how many
//! sequences, and which hold a cached prompt prefix.
//!
//! Every block is in exactly one of three states:
//!
//! ```text
//! free        refs = 0, no content worth keeping     → handed out first
//! held        refs ≥ 1 (sequences whose table has it)
//! evictable   refs = 0, but registered in the prefix cache: a later request
//!             with the same prefix takes it back (refs 0 → 1); when no free
//!             block is left, the least recently released one is reused
//! ```
//!
//! A block is registered once it is full and computed, under the hash of its
//! tokens chained with the hash of the block before it, so a hit on block `i`
//! means the whole prefix up to and including block `i` is the same. The
//! entry also keeps the block's tokens, which a lookup compares, so a hit
//! never depends on the hash alone for the block's own content. Only full
//! blocks are ever shared, and a sequence only writes positions past its
//! cached prefix, so a shared block is never written again.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Index of a block in the pool.
pub(crate) type BlockId = u32;

/// Hash of the empty prefix, the parent of every first block.
pub(crate) const ROOT_HASH: u64 = 0x6865_7264_2d6b_7631;

/// Hash of a full block's tokens, chained with the hash of the prefix before it.
pub(crate) fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    // SipHash with fixed keys: the same on every run, unlike `RandomState`.
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

#[derive(Debug, Default)]
struct Block {
    refs: u32,
    /// Hash and tokens under which this block is in the prefix cache.
    cached: Option<(u64, Vec<u32>)>,
    /// When it became evictable (for least-recently-used reuse).
    released_at: u64,
}

/// Reference counts, free list and prefix cache of a pool of blocks.
#[derive(Debug)]
pub(crate) struct BlockManager {
    blocks: Vec<Block>,
    free: Vec<BlockId>,
    /// `(released_at, id)` of blocks with no holder but cached content.
    evictable: BTreeSet<(u64, BlockId)>,
    cache: HashMap<u64, BlockId>,
    caching: bool,
    held: usize,
    clock: u64,
}

impl BlockManager {
    /// `num_blocks` free blocks; `caching` turns the prefix cache on.
    pub(crate) fn new(num_blocks: usize, caching: bool) -> BlockManager {
        BlockManager {
            blocks: (0..num_blocks).map(|_| Block::default()).collect(),
            free: (0..num_blocks as BlockId).rev().collect(),
            evictable: BTreeSet::new(),
            cache: HashMap::new(),
            caching,
            held: 0,
            clock: 0,
        }
    }

    /// Blocks that [`BlockManager::allocate`] can hand out now.
    pub(crate) fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// Blocks held by at least one sequence.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Whether the prefix cache is on.
    pub(crate) fn caching(&self) -> bool {
        self.caching
    }

    /// A block for one holder: a free one, else the least recently released
    /// cached one (dropping it from the cache). `None` when all are held.
    pub(crate) fn allocate(&mut self) -> Option<BlockId> {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let (_, id) = self.evictable.pop_first()?;
                if let Some((hash, _)) = self.blocks[id as usize].cached.take() {
                    self.cache.remove(&hash);
                }
                id
            }
        };
        self.blocks[id as usize].refs = 1;
        self.held += 1;
        Some(id)
    }

    /// One holder lets go of `id`.
    pub(crate) fn release(&mut self, id: BlockId) {
        let block = &mut self.blocks[id as usize];
        block.refs -= 1;
        if block.refs > 0 {
            return;
        }
        self.held -= 1;
        if block.cached.is_some() {
            self.clock += 1;
            block.released_at = self.clock;
            self.evictable.insert((self.clock, id));
        } else {
            self.free.push(id);
        }
    }

    /// The cached block holding `tokens` after the prefix hashed as `parent`,
    /// taken for one more holder, with its own hash.
    pub(crate) fn take_cached(&mut self, parent: u64, tokens: &[u32]) -> Option<(BlockId, u64)> {
        if !self.caching {
            return None;
        }
        let hash = block_hash(parent, tokens);
        let &id = self.cache.get(&hash)?;
        let block = &mut self.blocks[id as usize];
        if block.cached.as_ref().map(|(_, t)| t.as_slice()) != Some(tokens) {
            return None;
        }
        if block.refs == 0 {
            self.evictable.remove(&(block.released_at, id));
            self.held += 1;
        }
        block.refs += 1;
        Some((id, hash))
    }

    /// Offers the full, computed block `id` to the prefix cache under `hash`;
    /// a block already cached under that hash keeps its place.
    pub(crate) fn register(&mut self, id: BlockId, hash: u64, tokens: &[u32]) {
        if !self.caching || self.cache.contains_key(&hash) {
            return;
        }
        self.cache.insert(hash, id);
        self.blocks[id as usize].cached = Some((hash, tokens.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcounts_and_lru_reuse() {
        let mut m = BlockManager::new(2, true);
        let a = m.allocate().unwrap();
        let b = m.allocate().unwrap();
        assert_eq!((m.held(), m.available()), (2, 0));
        assert!(m.allocate().is_none());
        let ha = block_hash(ROOT_HASH, &[1, 2]);
        m.register(a, ha, &[1, 2]);
        m.release(a);
        m.release(b);
        assert_eq!((m.held(), m.available()), (0, 2));
        // A hit takes the cached block back; other content or another parent misses.
        assert_eq!(m.take_cached(ROOT_HASH, &[1, 2]), Some((a, ha)));
        assert_eq!(m.take_cached(ROOT_HASH, &[1, 3]), None);
        assert_eq!(m.take_cached(ha, &[1, 2]), None);
        assert_eq!(m.held(), 1);
        m.release(a);
        // Free blocks go first; then the cached one is evicted and forgotten.
        assert_eq!(m.allocate(), Some(b));
        assert_eq!(m.allocate(), Some(a));
        assert_eq!(m.take_cached(ROOT_HASH, &[1, 2]), None);
    }

    #[test]
    fn caching_off_never_hits() {
        let mut m = BlockManager::new(1, false);
        let a = m.allocate().unwrap();
        m.register(a, block_hash(ROOT_HASH, &[5]), &[5]);
        m.release(a);
        assert_eq!(m.take_cached(ROOT_HASH, &[5]), None);
        assert!(!m.caching());
    }
}
