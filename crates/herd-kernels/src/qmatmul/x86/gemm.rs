//! Int8Dot prefill on AVX-512 VNNI: a register-blocked integer GEMM.
//!
//! The streaming kernels unpack every group of weights again for each few rows of X
//! and spend about half their instructions on unpacking and scaling. Here each
//! task unpacks its block of W rows once, into the operand layout of `vpdpbusd`,
//! and every row of X then meets it in a register-blocked micro-kernel whose inner
//! loop is only loads and `vpdpbusd`s (64 products each):
//!
//! ```text
//! X (m × k): quantized once: i8 values, an f32 step per 32 (the per-block layout)
//! per task, NC rows of W (in parallel):
//!   pack: per group of 32 values (Q6_K: 16) and panel of 32 W rows, the weights as
//!         unsigned bytes, each 4-value quad of the 32 rows side by side (two
//!         512-bit loads), and the 32 rows' f32 group scale d·sc and min dmin·m
//!   for each 4 rows of X, for each panel:
//!     per group:  acc32[i] = -offset · Σ x_i                (the weights' offset)
//!                 per quad: acc32[i] = vpdpbusd(acc32[i], 32 rows' quads, x_i quad)
//!                 acc[i] += f32(acc32[i]) · (scale · step_i) - min · Σ x_i
//! ```
//!
//! Each group costs 2 · quads loads, 8 · quads `vpdpbusd` and about 16 scaling
//! instructions for 4 · 32 · 32 products, against 128 FMAs for the same products in
//! the f32 kernels. The activation steps are per block of 32 (as for Q8_0 / Q4_0
//! decode), so prefill's error is within the per-block bound for every format.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::super::act::{QRow, QuantizedX, XLayout, XBLOCK};
use super::super::quant_weights;
use super::{vnni_quantize, Format, Q4_0, Q4_K, Q5_K, Q6_K, Q8_0};
use crate::problem::{OutPtr, Problem};
use crate::qtype::block_scales;
use crate::QuantType;

/// Rows of X per tile.
const MR: usize = 4;
/// Rows of W per panel: two 512-bit vectors of 16 rows.
const NR: usize = 32;
/// Packed weights per task (one byte per weight): the block stays in L2 (1 MiB on
/// Zen 4) while every row of X passes over it.
const TASK_BYTES: usize = 512 << 10;
/// Tasks per rayon thread, so a slowed core's work can be stolen.
const TASKS_PER_THREAD: usize = 4;

/// A format as the GEMM packs it.
trait GemmFormat: Format {
    /// Values per scale group: 32, or 16 for Q6_K.
    const SUB: usize;
    /// What is added to the stored integers to make them unsigned bytes.
    const XOFF: i32;

    /// Format group `g` (of 32 values) of the block at `b` as unsigned bytes.
    #[inline(always)]
    unsafe fn unsigned(b: *const u8, g: usize) -> __m256i {
        Self::weights(b, g)
    }
}

impl GemmFormat for Q8_0 {
    const SUB: usize = 32;
    const XOFF: i32 = 128;

    #[inline(always)]
    unsafe fn unsigned(b: *const u8, g: usize) -> __m256i {
        _mm256_xor_si256(Self::weights(b, g), _mm256_set1_epi8(-128))
    }
}

impl GemmFormat for Q4_0 {
    const SUB: usize = 32;
    const XOFF: i32 = 8;
}

impl GemmFormat for Q4_K {
    const SUB: usize = 32;
    const XOFF: i32 = 0;
}

impl GemmFormat for Q5_K {
    const SUB: usize = 32;
    const XOFF: i32 = 0;
}

impl GemmFormat for Q6_K {
    const SUB: usize = 16;
    const XOFF: i32 = 32;
}

/// A task's W rows in the micro-kernel's layout, all `[panel][..][lane of NR]`:
/// `w`: per quad of 4 values, NR rows × 4 bytes; `scale`, `min`: per group, NR f32.
#[derive(Default)]
struct Packed {
    w: Vec<u8>,
    scale: Vec<f32>,
    min: Vec<f32>,
}

thread_local! {
    /// Per-thread packing scratch, kept across calls (up to `TASK_BYTES` and its
    /// scales).
    static PACKED: RefCell<Packed> = RefCell::new(Packed::default());
}

/// `Y = X · Wᵀ` for quantized `W` with the integer GEMM.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and VNNI.
pub(crate) unsafe fn run(p: &Problem<'_>, out: OutPtr) {
    match quant_weights(p).map(|(q, _)| q) {
        Some(QuantType::Q8_0) => run_format::<Q8_0>(p, out),
        Some(QuantType::Q4_0) => run_format::<Q4_0>(p, out),
        Some(QuantType::Q4_K) => run_format::<Q4_K>(p, out),
        Some(QuantType::Q5_K) => run_format::<Q5_K>(p, out),
        Some(QuantType::Q6_K) => run_format::<Q6_K>(p, out),
        None => {}
    }
}

unsafe fn run_format<F: GemmFormat>(p: &Problem<'_>, out: OutPtr) {
    let layout = XLayout {
        super_blocks: false,
        offset: 0,
        sums: F::MINS,
        sums16: F::XOFF != 0,
    };
    // SAFETY: the caller guarantees VNNI support.
    let xq = QuantizedX::new(p.x, p.k, |row: &[f32]| unsafe {
        vnni_quantize(row, layout)
    });
    let corr: Vec<Vec<i32>> = xq.rows.iter().map(|row| corrections::<F>(row)).collect();
    let threads = rayon::current_num_threads();
    let nc_max = (TASK_BYTES / p.k).max(NR) / NR * NR;
    let nc =
        p.n.div_ceil(threads * TASKS_PER_THREAD)
            .next_multiple_of(NR)
            .min(nc_max);
    let tasks = p.n.div_ceil(nc);
    (0..tasks).into_par_iter().for_each(|t| {
        let rows = t * nc..((t + 1) * nc).min(p.n);
        // SAFETY: the caller guarantees VNNI support; tasks own disjoint columns of Y.
        unsafe { task::<F>(p, &xq, &corr, rows, out) }
    });
}

/// `-XOFF · Σ x` over each group of a quantized X row (empty without an offset).
fn corrections<F: GemmFormat>(row: &QRow) -> Vec<i32> {
    if F::XOFF == 0 {
        return Vec::new();
    }
    row.xs16
        .chunks_exact(F::SUB / 16)
        .map(|s| -F::XOFF * s.iter().map(|&v| i32::from(v)).sum::<i32>())
        .collect()
}

/// Packs `rows` of W, then runs every row of X over them.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn task<F: GemmFormat>(
    p: &Problem<'_>,
    xq: &QuantizedX,
    corr: &[Vec<i32>],
    rows: Range<usize>,
    out: OutPtr,
) {
    let Some((_, w)) = quant_weights(p) else {
        return;
    };
    // Taken out of the thread-local rather than borrowed in a closure: closures do
    // not inherit this function's target features.
    let mut packed = PACKED.take();
    pack::<F>(w, p.k, rows.clone(), &mut packed);
    let k = p.k;
    let groups = k / F::SUB;
    for i0 in (0..p.m).step_by(MR) {
        let mr = (p.m - i0).min(MR);
        for (panel, j0) in (rows.start..rows.end).step_by(NR).enumerate() {
            let tile = Tile {
                w: packed.w.as_ptr().add(panel * k * NR),
                scale: packed.scale.as_ptr().add(panel * groups * NR),
                min: packed
                    .min
                    .as_ptr()
                    .add(if F::MINS { panel * groups * NR } else { 0 }),
                i0,
                j0,
                cols: NR.min(rows.end - j0),
            };
            match mr {
                4 => micro::<F, 4>(k, xq, corr, &tile, out),
                3 => micro::<F, 3>(k, xq, corr, &tile, out),
                2 => micro::<F, 2>(k, xq, corr, &tile, out),
                _ => micro::<F, 1>(k, xq, corr, &tile, out),
            }
        }
    }
    PACKED.set(packed);
}

/// Unpacks `rows` of W (whole rows of `F` blocks in `w`) into `packed`; lanes past
/// the last row of the last panel are zero.
///
/// Weights go 16 rows at a time: each row's group of 32 bytes is one register of 8
/// quads, and [`transpose_16x8`] turns 16 of them into 8 vectors of one quad of 16
/// rows, stored whole (a scalar scatter of each quad cost more than the GEMM
/// itself below m ≈ 64).
#[inline(always)]
unsafe fn pack<F: GemmFormat>(w: &[u8], k: usize, rows: Range<usize>, packed: &mut Packed) {
    let blocks = k / F::ELEMS;
    let row_bytes = blocks * F::BYTES;
    let subs = F::ELEMS / F::SUB;
    let groups = k / F::SUB;
    let panels = rows.len().div_ceil(NR);
    let padded = panels * NR;
    packed.w.clear();
    packed.w.resize(padded * k, 0);
    packed.scale.clear();
    packed.scale.resize(padded * groups, 0.0);
    packed.min.clear();
    if F::MINS {
        packed.min.resize(padded * groups, 0.0);
    }
    let (mut scale, mut min) = ([0.0f32; 16], [0.0f32; 16]);
    for (index, r) in rows.clone().enumerate() {
        let group_base = index / NR * groups * NR + index % NR;
        for b in 0..blocks {
            let block = &w[r * row_bytes + b * F::BYTES..][..F::BYTES];
            block_scales(F::QTYPE, block, &mut scale, &mut min);
            for s in 0..subs {
                let at = group_base + (b * subs + s) * NR;
                packed.scale[at] = scale[s];
                if F::MINS {
                    packed.min[at] = min[s];
                }
            }
        }
    }
    for (half, r0) in (rows.start..rows.end).step_by(16).enumerate() {
        let valid = (rows.end - r0).min(16);
        // Quads of this half's 16 rows start at byte 64 · (half % 2) of each 128.
        let base = half / 2 * k * NR + half % 2 * 64;
        let src = w.as_ptr().add(r0 * row_bytes);
        for b in 0..blocks {
            for g in 0..F::GROUPS {
                let mut v = [_mm256_setzero_si256(); 16];
                for (r, v) in v.iter_mut().enumerate().take(valid) {
                    *v = F::unsigned(src.add(r * row_bytes + b * F::BYTES), g);
                }
                let quad0 = (b * F::ELEMS + g * XBLOCK) / 4;
                let dst = packed.w.as_mut_ptr().add(base + quad0 * NR * 4);
                for (t, q) in transpose_16x8(&v).into_iter().enumerate() {
                    _mm512_storeu_si512(dst.add(t * NR * 4).cast(), q);
                }
            }
        }
    }
}

/// 16 rows of 8 dwords to 8 vectors of one dword (quad) from each of the 16 rows.
///
/// Rows r and r + 8 share a 512-bit register, so one 8 × 8 transpose (two unpack
/// stages within 128-bit lanes) runs on both halves at once; a final lane shuffle
/// gathers each quad's four 128-bit pieces in row order.
#[inline(always)]
unsafe fn transpose_16x8(v: &[__m256i; 16]) -> [__m512i; 8] {
    let mut z = [_mm512_setzero_si512(); 8];
    for (r, z) in z.iter_mut().enumerate() {
        *z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v[r]), v[r + 8]);
    }
    // Stage 1: dword pairs of rows (2i, 2i+1).
    let mut t = [_mm512_setzero_si512(); 8];
    for i in 0..4 {
        t[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
    }
    // Stage 2: qword pairs; u[4h + d] holds, in 128-bit lane L, dword d of lane L of
    // rows 4h..4h+4 (h = 0: rows 0-3 / 8-11, h = 1: rows 4-7 / 12-15).
    let mut u = [_mm512_setzero_si512(); 8];
    for h in 0..2 {
        let (a0, a1, b0, b1) = (t[4 * h], t[4 * h + 1], t[4 * h + 2], t[4 * h + 3]);
        u[4 * h] = _mm512_unpacklo_epi64(a0, b0);
        u[4 * h + 1] = _mm512_unpackhi_epi64(a0, b0);
        u[4 * h + 2] = _mm512_unpacklo_epi64(a1, b1);
        u[4 * h + 3] = _mm512_unpackhi_epi64(a1, b1);
    }
    // Stage 3: quad q < 4 sits in lanes 0 (rows 0-7) and 2 (rows 8-15) of u[q] and
    // u[4 + q]; quad q ≥ 4 in lanes 1 and 3 of u[q - 4] and u[q].
    let mut out = [_mm512_setzero_si512(); 8];
    for q in 0..4 {
        let (lo, hi) = (u[q], u[4 + q]);
        // [lo.0, lo.2, hi.0, hi.2] then reordered to [lo.0, hi.0, lo.2, hi.2].
        let even = _mm512_shuffle_i32x4::<0b10_00_10_00>(lo, hi);
        out[q] = _mm512_shuffle_i32x4::<0b11_01_10_00>(even, even);
        let odd = _mm512_shuffle_i32x4::<0b11_01_11_01>(lo, hi);
        out[q + 4] = _mm512_shuffle_i32x4::<0b11_01_10_00>(odd, odd);
    }
    out
}

/// Where a tile's packed operands start and which part of `Y` it writes.
struct Tile {
    w: *const u8,
    scale: *const f32,
    min: *const f32,
    i0: usize,
    j0: usize,
    /// Valid W rows in the panel (the rest are padding).
    cols: usize,
}

/// `Y[i0..i0+M][j0..j0+cols]`: M rows of X over the whole of k against one panel.
#[inline(always)]
unsafe fn micro<F: GemmFormat, const M: usize>(
    k: usize,
    xq: &QuantizedX,
    corr: &[Vec<i32>],
    tile: &Tile,
    out: OutPtr,
) {
    let quads = F::SUB / 4;
    let mut x = [xq.rows[tile.i0].q.as_ptr(); M];
    for (i, x) in x.iter_mut().enumerate() {
        *x = xq.rows[tile.i0 + i].q.as_ptr();
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; M];
    for g in 0..k / F::SUB {
        let e0 = g * F::SUB;
        let mut acc32 = [[_mm512_setzero_si512(); 2]; M];
        if F::XOFF != 0 {
            for (a, c) in acc32.iter_mut().zip(&corr[tile.i0..]) {
                *a = [_mm512_set1_epi32(*c.get_unchecked(g)); 2];
            }
        }
        let w = tile.w.add(e0 * NR);
        for t in 0..quads {
            let w0 = _mm512_loadu_si512(w.add(t * NR * 4).cast());
            let w1 = _mm512_loadu_si512(w.add(t * NR * 4 + 64).cast());
            for (a, &xi) in acc32.iter_mut().zip(&x) {
                let xb = _mm512_set1_epi32(xi.add(e0 + 4 * t).cast::<i32>().read_unaligned());
                a[0] = _mm512_dpbusd_epi32(a[0], w0, xb);
                a[1] = _mm512_dpbusd_epi32(a[1], w1, xb);
            }
        }
        let scale = [
            _mm512_loadu_ps(tile.scale.add(g * NR)),
            _mm512_loadu_ps(tile.scale.add(g * NR + 16)),
        ];
        for (i, (a, a32)) in acc.iter_mut().zip(&acc32).enumerate() {
            let row = &xq.rows[tile.i0 + i];
            let step = _mm512_set1_ps(*row.d.get_unchecked(e0 / XBLOCK));
            for h in 0..2 {
                let s = _mm512_mul_ps(scale[h], step);
                a[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a32[h]), s, a[h]);
            }
        }
        if F::MINS {
            let min = [
                _mm512_loadu_ps(tile.min.add(g * NR)),
                _mm512_loadu_ps(tile.min.add(g * NR + 16)),
            ];
            for (i, a) in acc.iter_mut().enumerate() {
                let row = &xq.rows[tile.i0 + i];
                let sum = _mm512_set1_ps(*row.sum.get_unchecked(e0 / XBLOCK));
                for h in 0..2 {
                    a[h] = _mm512_fnmadd_ps(min[h], sum, a[h]);
                }
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        for (h, &v) in a.iter().enumerate() {
            let cols = tile.cols.saturating_sub(16 * h).min(16);
            if cols > 0 {
                let mask = ((1u32 << cols) - 1) as __mmask16;
                _mm512_mask_storeu_ps(out.at(tile.i0 + i, tile.j0 + 16 * h), mask, v);
            }
        }
    }
}
