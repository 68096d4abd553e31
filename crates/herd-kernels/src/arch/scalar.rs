//! Portable kernels: the fallback for CPUs without AVX2 and for non-x86 targets.
//! Written as fixed-width lane arrays so the compiler can auto-vectorise them with
//! whatever the target baseline offers (SSE2, NEON).

use std::ops::Range;

use half::{bf16, f16};

use crate::blocked::{f32_element, pack_f32, Microkernel, Tile};
use crate::problem::{OutPtr, Problem};
use crate::stream::RowKernel;
use crate::WeightSlice;

/// Independent partial sums per dot product.
const LANES: usize = 8;

/// A stored weight type, widened to f32 exactly.
trait Widen: Copy {
    fn widen(self) -> f32;
}

impl Widen for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}

impl Widen for bf16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        // bf16 is the top half of an f32: widening is a shift, no rounding.
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }
}

impl Widen for f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// The portable streaming (decode) kernel.
pub(crate) struct Stream;

impl RowKernel for Stream {
    type Shared = ();

    unsafe fn prepare(_: &Problem<'_>) {}

    unsafe fn rows(p: &Problem<'_>, _: &(), rows: Range<usize>, out: OutPtr) {
        match p.w {
            WeightSlice::F32(w) => rows_of(p, w, rows, out),
            WeightSlice::Bf16(w) => rows_of(p, w, rows, out),
            WeightSlice::F16(w) => rows_of(p, w, rows, out),
            WeightSlice::Quant(..) => unreachable!("quantized weights take the qmatmul kernels"),
        }
    }
}

unsafe fn rows_of<T: Widen>(p: &Problem<'_>, w: &[T], rows: Range<usize>, out: OutPtr) {
    let k = p.k;
    for j in rows {
        let w_row = &w[j * k..(j + 1) * k];
        for (i, x_row) in p.x.chunks_exact(k).enumerate() {
            *out.at(i, j) = dot(x_row, w_row);
        }
    }
}

fn dot<T: Widen>(x: &[f32], w: &[T]) -> f32 {
    let (x_chunks, x_tail) = x.as_chunks::<LANES>();
    let (w_chunks, w_tail) = w.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (xs, ws) in x_chunks.iter().zip(w_chunks) {
        for l in 0..LANES {
            acc[l] += xs[l] * ws[l].widen();
        }
    }
    let tail: f32 = x_tail.iter().zip(w_tail).map(|(x, w)| x * w.widen()).sum();
    acc.iter().sum::<f32>() + tail
}

/// Converts weights to f32 for packing.
unsafe fn convert(src: WeightSlice<'_>, dst: &mut [f32]) {
    fn widen_all<T: Widen>(src: &[T], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.widen();
        }
    }
    match src {
        WeightSlice::F32(w) => dst.copy_from_slice(w),
        WeightSlice::Bf16(w) => widen_all(w, dst),
        WeightSlice::F16(w) => widen_all(w, dst),
        WeightSlice::Quant(..) => unreachable!("quantized weights take the qmatmul kernels"),
    }
}

/// The portable blocked micro-kernel: 4 rows of `X` × 8 rows of `W`.
pub(crate) struct Exact;

impl Microkernel for Exact {
    type A = f32;
    type B = f32;
    const MR: usize = 4;
    const NR: usize = 8;
    const KPACK: usize = 1;

    fn a_element(row: &[f32], s: usize) -> f32 {
        f32_element(row, s)
    }

    unsafe fn pack(w: WeightSlice<'_>, k: usize, rows: Range<usize>, dst: &mut [f32]) {
        pack_f32(w, k, rows, Self::NR, dst, convert);
    }

    unsafe fn tile(steps: usize, a: *const f32, b: *const f32, tile: &Tile) {
        const MR: usize = Exact::MR;
        const NR: usize = Exact::NR;
        let mut acc = [[0.0f32; NR]; MR];
        for kk in 0..steps {
            let bs = *b.add(kk * NR).cast::<[f32; NR]>();
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let av = *a.add(kk * MR + i);
                for (c, bv) in acc_row.iter_mut().zip(bs) {
                    *c += av * bv;
                }
            }
        }
        tile.write_from(acc.as_flattened(), NR);
    }
}
