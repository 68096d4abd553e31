//! Quantized weights: every format × instruction set × strategy × precision against an
//! f64 reference on the dequantized weights, the SIMD unpacking against the portable
//! decoder bit for bit, hand-built blocks against known values, and bad lengths.

use half::f16;

use crate::matmul::Strategy;
use crate::problem::Problem;
use crate::{dequantize, matmul_wt, Isa, KernelError, Matmul, Precision, QuantType, WeightSlice};

/// Deterministic 64-bit LCG stream.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 8) as u8
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next() >> 24) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// An f16 of magnitude in [lo, 2·lo) and random sign, little-endian.
    fn f16(&mut self, lo: f32) -> [u8; 2] {
        let v = lo * (1.5 + 0.5 * self.unit()) * if self.byte() & 1 == 0 { 1.0 } else { -1.0 };
        f16::from_f32(v).to_bits().to_le_bytes()
    }
}

/// `n` rows of `k` random but plausible weights: random integers and packed scales,
/// f16 scales sized so weights are O(1), random signs. The slice starts one byte into
/// its allocation so no block is aligned.
fn random_weights(qtype: QuantType, n: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let blocks = n * k / qtype.block_elems();
    let mut bytes = vec![0u8; 1 + blocks * qtype.block_bytes()];
    for block in bytes[1..].chunks_exact_mut(qtype.block_bytes()) {
        for b in block.iter_mut() {
            *b = rng.byte();
        }
        match qtype {
            QuantType::Q8_0 => block[0..2].copy_from_slice(&rng.f16(1.0 / 127.0)),
            QuantType::Q4_0 => block[0..2].copy_from_slice(&rng.f16(1.0 / 8.0)),
            QuantType::Q4_K | QuantType::Q5_K => {
                block[0..2].copy_from_slice(&rng.f16(1.0 / 500.0));
                block[2..4].copy_from_slice(&rng.f16(1.0 / 60.0));
            }
            QuantType::Q6_K => block[208..210].copy_from_slice(&rng.f16(1.0 / 2000.0)),
        }
    }
    bytes
}

/// Activations in [-1, 1), each row scaled by a different power of ten so blocks of
/// very different magnitudes meet.
fn random_x(m: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..m * k)
        .map(|e| rng.unit() * 10f32.powi((e / k % 5) as i32 - 2))
        .collect()
}

/// The f64 product with the dequantized weights, the scale `Σ|x·w|` of each output,
/// and Int8Dot's error bound `Σ_blocks (d/2)·Σ|w|` over blocks of 32 activations,
/// with the largest step the activation layout allows: `d = amax₃₂ / 127`, plus
/// `amax₂₅₆ / 2032` for k-quants (see `act`).
struct Reference {
    y: Vec<f64>,
    scale: Vec<f64>,
    int8_bound: Vec<f64>,
}

fn reference(qtype: QuantType, x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Reference {
    let mut r = Reference {
        y: vec![0.0; m * n],
        scale: vec![0.0; m * n],
        int8_bound: vec![0.0; m * n],
    };
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        let amax = |b: &[f32]| b.iter().fold(0.0f64, |a, &v| a.max(f64::from(v.abs())));
        let steps: Vec<f64> = xr
            .chunks_exact(32)
            .enumerate()
            .map(|(b, xb)| match qtype.block_elems() {
                32 => amax(xb) / 127.0,
                _ => amax(xb) / 127.0 + amax(&xr[b / 8 * 256..][..256]) / 2032.0,
            })
            .collect();
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let o = i * n + j;
            for (e, (&a, &b)) in xr.iter().zip(wr).enumerate() {
                let (a, b) = (f64::from(a), f64::from(b));
                r.y[o] += a * b;
                r.scale[o] += (a * b).abs();
                r.int8_bound[o] += steps[e / 32] * 0.5 * b.abs();
            }
        }
    }
    r
}

/// f32 accumulation error allowed relative to `Σ|x·w|`.
const EXACT_TOL: f64 = 1e-5;

fn check(got: &[f32], want: &[f64], allowed: impl Fn(usize) -> f64, what: &str) {
    for (o, (&g, &r)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - r).abs();
        let tol = allowed(o);
        assert!(
            err <= tol,
            "{what}: y[{o}] = {g}, reference {r}, error {err:e} > {tol:e}"
        );
    }
}

fn isas() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|isa| isa.is_supported())
        .collect()
}

/// Runs one path; NaN-filled output catches cells a kernel forgot to write.
fn run(
    matmul: Matmul,
    strategy: Strategy,
    x: &[f32],
    (m, k, n): (usize, usize, usize),
    w: WeightSlice<'_>,
) -> Vec<f32> {
    let mut y = vec![f32::NAN; m * n];
    let p = Problem::new(x, m, k, w, n, y.len()).expect("valid shape");
    matmul.run_with(&p, &mut y, strategy);
    y
}

/// Every path for `qtype` on shapes that hit every tail: k from one block to many
/// (and 96, three blocks of 32), n below, at and past the 4-row kernel block and
/// the 16-row chunking, m below, at and past the 4-row X block and the streaming
/// threshold.
fn all_paths(qtype: QuantType) {
    let ks: &[usize] = match qtype.block_elems() {
        32 => &[32, 96, 256, 512, 4096],
        _ => &[256, 512, 4096],
    };
    let mut seed = 0;
    for &k in ks {
        for n in [1, 3, 17, 130] {
            let bytes = random_weights(qtype, n, k, seed);
            let ws = WeightSlice::Quant(qtype, &bytes[1..]);
            let mut w = vec![0.0f32; n * k];
            dequantize(qtype, &bytes[1..], &mut w).expect("whole blocks");
            for m in [1, 2, 5, 64] {
                seed += 1;
                let x = random_x(m, k, seed);
                let r = reference(qtype, &x, m, k, &w, n);
                let exact = |o: usize| EXACT_TOL * r.scale[o] + 1e-30;
                let int8 = |o: usize| 1.001 * r.int8_bound[o] + EXACT_TOL * r.scale[o] + 1e-30;
                let shape = (m, k, n);
                let mut first_int8: Option<Vec<f32>> = None;
                for isa in isas() {
                    let what = |s: &str| format!("{qtype} {isa} {s} m={m} k={k} n={n}");
                    let matmul = Matmul::with_isa(isa, Precision::Exact).expect("supported");
                    for strategy in [Strategy::Stream, Strategy::Blocked] {
                        let got = run(matmul, strategy, &x, shape, ws);
                        check(&got, &r.y, exact, &what(&format!("exact {strategy:?}")));
                    }
                    let matmul = Matmul::with_isa(isa, Precision::Int8Dot).expect("supported");
                    let got = run(matmul, Strategy::Blocked, &x, shape, ws);
                    check(&got, &r.y, int8, &what("int8 blocked"));
                    let got = run(matmul, Strategy::Stream, &x, shape, ws);
                    check(&got, &r.y, int8, &what("int8"));
                    // The integer dot products are exact, so instruction sets may
                    // differ only in f32 summation order.
                    match &first_int8 {
                        None => first_int8 = Some(got),
                        Some(first) => {
                            let first: Vec<f64> = first.iter().map(|&v| f64::from(v)).collect();
                            check(&got, &first, exact, &what("int8 vs first isa"));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn q8_0_paths_match_reference() {
    all_paths(QuantType::Q8_0);
}

#[test]
fn q4_0_paths_match_reference() {
    all_paths(QuantType::Q4_0);
}

#[test]
fn q4_k_paths_match_reference() {
    all_paths(QuantType::Q4_K);
}

#[test]
fn q5_k_paths_match_reference() {
    all_paths(QuantType::Q5_K);
}

#[test]
fn q6_k_paths_match_reference() {
    all_paths(QuantType::Q6_K);
}

/// The SIMD unpacking (used by the exact kernels and prefill packing) is bit-identical
/// to the portable decoder, for random blocks including extreme integers and scales.
#[test]
fn simd_dequantization_is_bit_identical() {
    use super::RowDequant;
    for qtype in QuantType::ALL {
        let bytes = random_weights(qtype, 3, 4 * qtype.block_elems(), 99);
        let mut want = vec![0.0f32; 12 * qtype.block_elems()];
        dequantize(qtype, &bytes[1..], &mut want).unwrap();
        type Dequant = fn(QuantType, &[u8], &mut [f32]);
        let mut flavours: Vec<(&str, Dequant)> = vec![("portable", |q, b, o| unsafe {
            super::scalar::Portable::dequant(q, b, o)
        })];
        #[cfg(target_arch = "x86_64")]
        {
            if Isa::Avx2.is_supported() {
                flavours.push(("avx2", |q, b, o| unsafe {
                    super::x86::Avx2::dequant(q, b, o)
                }));
            }
            if Isa::Avx512.is_supported() && crate::isa::avx512_vnni() {
                flavours.push(("vnni", |q, b, o| unsafe {
                    super::x86::Vnni::dequant(q, b, o)
                }));
            }
        }
        for (name, dequant) in flavours {
            let mut got = vec![f32::NAN; want.len()];
            dequant(qtype, &bytes[1..], &mut got);
            for (e, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{qtype} {name} element {e}: {g} vs {w}"
                );
            }
        }
    }
}

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

fn dequantize_one(qtype: QuantType, block: &[u8]) -> Vec<f32> {
    let mut out = vec![f32::NAN; qtype.block_elems()];
    dequantize(qtype, block, &mut out).expect("one whole block");
    out
}

#[test]
fn q8_0_block_by_hand() {
    let mut block = vec![0u8; 34];
    block[0..2].copy_from_slice(&f16_bytes(0.5));
    let qs: Vec<i8> = (0..32)
        .map(|e| [-128, -1, 0, 1, 127, 5, -77, 33][e % 8])
        .collect();
    for (b, &q) in block[2..].iter_mut().zip(&qs) {
        *b = q as u8;
    }
    let got = dequantize_one(QuantType::Q8_0, &block);
    for (e, &q) in qs.iter().enumerate() {
        assert_eq!(got[e], 0.5 * f32::from(q), "element {e}");
    }
}

#[test]
fn q4_0_block_by_hand() {
    let mut block = vec![0u8; 18];
    block[0..2].copy_from_slice(&f16_bytes(-2.0));
    for l in 0..16u8 {
        // Element l in the low nibble, element l + 16 in the high one.
        block[2 + usize::from(l)] = l | ((15 - l) << 4);
    }
    let got = dequantize_one(QuantType::Q4_0, &block);
    for l in 0..16 {
        assert_eq!(got[l], -2.0 * (l as f32 - 8.0), "element {l}");
        assert_eq!(
            got[l + 16],
            -2.0 * (15.0 - l as f32 - 8.0),
            "element {}",
            l + 16
        );
    }
}

/// Packs 8 six-bit scales and mins the way ggml's `get_scale_min_k4` unpacks them:
/// groups 0..4 in the low 6 bits of bytes 0..4 (scales) and 4..8 (mins), groups 4..8
/// as low nibbles in bytes 8..12 and top 2 bits in bits 6..8 of bytes 0..8.
fn pack_k_scales(sc: [u8; 8], m: [u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
    }
    q
}

/// Q4_K and Q5_K blocks built bit by bit, with every group's 6-bit scale and min
/// distinct (including 0 and 63), checked element by element.
#[test]
fn k45_blocks_by_hand() {
    let sc = [1, 2, 63, 0, 62, 33, 17, 48];
    let m = [0, 63, 1, 32, 48, 7, 60, 31];
    let (d, dmin) = (0.25f32, 0.125f32);
    for qtype in [QuantType::Q4_K, QuantType::Q5_K] {
        let q = |e: usize| match qtype {
            QuantType::Q4_K => (e * 7 + e / 32) % 16,
            _ => (e * 11 + e / 32) % 32,
        } as u8;
        let mut block = vec![0u8; qtype.block_bytes()];
        block[0..2].copy_from_slice(&f16_bytes(d));
        block[2..4].copy_from_slice(&f16_bytes(dmin));
        block[4..16].copy_from_slice(&pack_k_scales(sc, m));
        let qs = if qtype == QuantType::Q4_K { 16 } else { 48 };
        for j in 0..4 {
            for l in 0..32 {
                let (lo, hi) = (q(64 * j + l), q(64 * j + 32 + l));
                block[qs + 32 * j + l] = (lo & 15) | ((hi & 15) << 4);
                if qtype == QuantType::Q5_K {
                    block[16 + l] |= ((lo >> 4) << (2 * j)) | ((hi >> 4) << (2 * j + 1));
                }
            }
        }
        let got = dequantize_one(qtype, &block);
        for (e, &v) in got.iter().enumerate() {
            let g = e / 32;
            let want = d * f32::from(sc[g]) * f32::from(q(e)) - dmin * f32::from(m[g]);
            assert_eq!(v, want, "{qtype} element {e} (group {g})");
        }
    }
}

/// A Q6_K block built bit by bit, with negative scales (down to -128).
#[test]
fn q6_k_block_by_hand() {
    let sc: [i8; 16] = [
        -128, -1, 1, 127, -64, 5, 0, 9, -3, 77, -90, 2, 33, -17, 100, -50,
    ];
    let d = 0.5f32;
    let q = |e: usize| ((e * 13 + e / 64) % 64) as u8;
    let mut block = vec![0u8; 210];
    for half in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                let v = q(128 * half + 32 * j + l);
                block[64 * half + 32 * (j % 2) + l] |= (v & 15) << (4 * (j / 2));
                block[128 + 32 * half + l] |= (v >> 4) << (2 * j);
            }
        }
    }
    for (b, &s) in block[192..208].iter_mut().zip(&sc) {
        *b = s as u8;
    }
    block[208..210].copy_from_slice(&f16_bytes(d));
    let got = dequantize_one(QuantType::Q6_K, &block);
    for (e, &v) in got.iter().enumerate() {
        let want = d * f32::from(sc[e / 16]) * (f32::from(q(e)) - 32.0);
        assert_eq!(v, want, "element {e}");
    }
}

#[test]
fn bad_lengths_are_errors() {
    for qtype in QuantType::ALL {
        let (elems, bytes) = (qtype.block_elems(), qtype.block_bytes());
        let data = vec![0u8; 2 * bytes];
        // dequantize: partial block of output, or data that is not those blocks.
        let mut out = vec![0.0f32; 2 * elems];
        assert_eq!(
            dequantize(qtype, &data, &mut out[..elems + 16]),
            Err(KernelError::BlockAlign {
                qtype,
                k: elems + 16
            })
        );
        assert_eq!(
            dequantize(qtype, &data[..2 * bytes - 1], &mut out),
            Err(KernelError::QuantBytes {
                qtype,
                expected: 2 * bytes,
                actual: 2 * bytes - 1
            })
        );
        assert!(dequantize(qtype, &data, &mut out).is_ok());
        // matmul_wt: k not whole blocks, or W bytes that disagree with n.
        let k = elems + 16;
        let x = vec![0.0f32; k];
        let mut y = vec![0.0f32; 2];
        let w = WeightSlice::Quant(qtype, &data);
        assert_eq!(
            matmul_wt(&x, 1, k, w, 2, &mut y),
            Err(KernelError::BlockAlign { qtype, k })
        );
        let x = vec![0.0f32; elems];
        assert_eq!(
            matmul_wt(&x, 1, elems, w, 3, &mut [0.0; 3]),
            Err(KernelError::QuantBytes {
                qtype,
                expected: 3 * bytes,
                actual: 2 * bytes
            })
        );
        assert!(matmul_wt(&x, 1, elems, w, 2, &mut y).is_ok());
        assert_eq!(qtype.row_bytes(3 * elems), Ok(3 * bytes));
    }
}

/// The public entry points: `matmul_wt` uses Int8Dot for quantized weights (exact
/// past the streaming threshold), and `Precision::Exact` is exact.
#[test]
fn public_entry_points() {
    assert_eq!(Precision::default(), Precision::Int8Dot);
    assert_eq!(Matmul::default().precision(), Precision::Int8Dot);
    let (k, n) = (512, 24);
    for qtype in QuantType::ALL {
        let bytes = random_weights(qtype, n, k, 5);
        let ws = WeightSlice::Quant(qtype, &bytes[1..]);
        let mut w = vec![0.0f32; n * k];
        dequantize(qtype, &bytes[1..], &mut w).unwrap();
        for m in [3, 10, 40] {
            let x = random_x(m, k, 6);
            let r = reference(qtype, &x, m, k, &w, n);
            let mut y = vec![f32::NAN; m * n];
            matmul_wt(&x, m, k, ws, n, &mut y).unwrap();
            let int8 = |o: usize| 1.001 * r.int8_bound[o] + EXACT_TOL * r.scale[o];
            check(&y, &r.y, int8, &format!("{qtype} matmul_wt m={m}"));
            let mut y = vec![f32::NAN; m * n];
            Matmul::new(Precision::Exact)
                .run(&x, m, k, ws, n, &mut y)
                .unwrap();
            let exact = |o: usize| EXACT_TOL * r.scale[o];
            check(&y, &r.y, exact, &format!("{qtype} Exact m={m}"));
        }
    }
}

/// A NaN or infinity in X reaches the outputs that read it under Int8Dot, as it does
/// under Exact, instead of being rounded away.
#[test]
fn non_finite_activations_propagate() {
    let (k, n) = (256, 5);
    for qtype in QuantType::ALL {
        let bytes = random_weights(qtype, n, k, 8);
        let ws = WeightSlice::Quant(qtype, &bytes[1..]);
        for bad in [f32::NAN, f32::INFINITY] {
            let mut x = random_x(2, k, 9);
            x[k + 40] = bad;
            for isa in isas() {
                let matmul = Matmul::with_isa(isa, Precision::Int8Dot).unwrap();
                let mut y = vec![0.0f32; 2 * n];
                matmul.run(&x, 2, k, ws, n, &mut y).unwrap();
                assert!(y[..n].iter().all(|v| v.is_finite()), "{qtype} {isa} row 0");
                assert!(
                    y[n..].iter().all(|v| v.is_nan()),
                    "{qtype} {isa} row 1: {y:?}"
                );
            }
        }
    }
}
