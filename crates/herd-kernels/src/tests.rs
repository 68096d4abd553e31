//! Every path (instruction set × strategy × weight dtype × precision) against one
//! naive f64-accumulating reference, over shapes chosen to hit every tail: k below,
//! at and above the vector width and the k-block, n below and above the tile and task
//! sizes, m below and above the micro-kernel and the decode threshold.

use half::{bf16, f16};

use crate::matmul::Strategy;
use crate::problem::Problem;
use crate::{matmul_wt, Isa, KernelError, Matmul, Operand, Precision, WeightSlice};

/// Deterministic values in [-1, 1) (64-bit LCG), so failures reproduce.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Weights of one dtype plus their exact f32 values for the reference.
struct Weights {
    f32: Vec<f32>,
    bf16: Vec<bf16>,
    f16: Vec<f16>,
}

impl Weights {
    fn new(len: usize, seed: u64) -> Self {
        let v = values(len, seed);
        Weights {
            bf16: v.iter().map(|&x| bf16::from_f32(x)).collect(),
            f16: v.iter().map(|&x| f16::from_f32(x)).collect(),
            f32: v,
        }
    }

    /// Each dtype's slice with its values widened to f32.
    fn each(&self) -> [(WeightSlice<'_>, Vec<f32>); 3] {
        [
            (WeightSlice::F32(&self.f32), self.f32.clone()),
            (
                WeightSlice::Bf16(&self.bf16),
                self.bf16.iter().map(|w| w.to_f32()).collect(),
            ),
            (
                WeightSlice::F16(&self.f16),
                self.f16.iter().map(|w| w.to_f32()).collect(),
            ),
        ]
    }
}

/// `Y = X · Wᵀ` accumulated in f64, and `Σ|x·w|` per output, the scale errors are
/// measured against (a relative error of the result itself is meaningless when the
/// sum cancels).
fn reference(x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; m * n];
    let mut scale = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (xr, wr) = (&x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k]);
            y[i * n + j] = xr
                .iter()
                .zip(wr)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            scale[i * n + j] = xr
                .iter()
                .zip(wr)
                .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                .sum();
        }
    }
    (y, scale)
}

fn assert_close(got: &[f32], want: &[f64], scale: &[f64], tol: f64, what: &str) {
    for (idx, ((&g, &r), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let err = (f64::from(g) - r).abs();
        assert!(
            err <= tol * s + 1e-30,
            "{what}: y[{idx}] = {g}, reference {r}, error {err:e} > {tol:e}·{s:e}"
        );
    }
}

/// Every supported instruction set, with a note when one cannot be tested here.
fn isas() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|&isa| {
            let ok = isa.is_supported();
            if !ok {
                eprintln!("note: {isa} kernels not tested, this CPU lacks them");
            }
            ok
        })
        .collect()
}

/// Runs one path; NaN-filled output catches cells a kernel forgot to write.
fn run(
    matmul: Matmul,
    strategy: Strategy,
    x: &[f32],
    m: usize,
    k: usize,
    w: WeightSlice<'_>,
    n: usize,
) -> Vec<f32> {
    let mut y = vec![f32::NAN; m * n];
    let p = Problem::new(x, m, k, w, n, y.len()).expect("valid shape");
    matmul.run_with(&p, &mut y, strategy);
    y
}

const EXACT_TOL: f64 = 1e-5;
/// `Precision::Bf16Dot`'s documented bound: 2^-8 from rounding X, plus accumulation.
const BF16_DOT_TOL: f64 = 1.0 / 256.0 + EXACT_TOL;

#[test]
fn exact_paths_match_reference_on_odd_shapes() {
    let isas = isas();
    let mut seed = 1;
    for &k in &[1, 15, 16, 17, 33, 4097] {
        for &n in &[1, 3, 7, 130] {
            for &m in &[1, 2, 5, 64] {
                seed += 1;
                let x = values(m * k, seed);
                let w = Weights::new(n * k, seed + 1000);
                for (ws, wf) in w.each() {
                    let (want, scale) = reference(&x, m, k, &wf, n);
                    for &isa in &isas {
                        let matmul = Matmul::with_isa(isa, Precision::Exact).unwrap();
                        for strategy in [Strategy::Stream, Strategy::Blocked] {
                            let got = run(matmul, strategy, &x, m, k, ws, n);
                            let what = format!(
                                "{isa} {strategy:?} {ws:?} m={m} k={k} n={n}",
                                ws = dtype(ws)
                            );
                            assert_close(&got, &want, &scale, EXACT_TOL, &what);
                        }
                    }
                }
            }
        }
    }
}

/// Shapes past the blocking constants: more rows than one A block (MC), more W rows
/// than one task block, k spanning several k-blocks with a tail.
#[test]
fn exact_paths_match_reference_past_block_sizes() {
    for (m, k, n) in [(300, 40, 40), (9, 600, 1100), (70, 513, 33)] {
        let x = values(m * k, 7);
        let w = Weights::new(n * k, 8);
        for (ws, wf) in w.each() {
            let (want, scale) = reference(&x, m, k, &wf, n);
            for isa in isas() {
                let matmul = Matmul::with_isa(isa, Precision::Exact).unwrap();
                for strategy in [Strategy::Stream, Strategy::Blocked] {
                    let got = run(matmul, strategy, &x, m, k, ws, n);
                    let what = format!("{isa} {strategy:?} {} m={m} k={k} n={n}", dtype(ws));
                    assert_close(&got, &want, &scale, EXACT_TOL, &what);
                }
            }
        }
    }
}

fn dtype(w: WeightSlice<'_>) -> &'static str {
    match w {
        WeightSlice::F32(_) => "f32",
        WeightSlice::Bf16(_) => "bf16",
        WeightSlice::F16(_) => "f16",
        WeightSlice::Quant(q, _) => q.name(),
    }
}

#[test]
fn bf16_dot_is_within_its_documented_error() {
    let Ok(matmul) = Matmul::with_isa(Isa::Avx512, Precision::Bf16Dot) else {
        eprintln!("note: Bf16Dot not tested, this CPU lacks AVX512_BF16");
        return;
    };
    for (m, k, n) in [
        (64, 1, 7),
        (5, 17, 130),
        (64, 33, 3),
        (9, 4097, 40),
        (64, 600, 65),
    ] {
        let x = values(m * k, 11);
        let w = Weights::new(n * k, 12);
        let [_, (ws, wf), _] = w.each();
        let (want, scale) = reference(&x, m, k, &wf, n);
        let got = run(matmul, Strategy::Blocked, &x, m, k, ws, n);
        // X rounded to bf16: up to 2^-8 relative per product, plus f32 accumulation.
        assert_close(
            &got,
            &want,
            &scale,
            BF16_DOT_TOL,
            &format!("bf16-dot m={m} k={k} n={n}"),
        );
        // Decode-sized calls stay exact whatever the precision.
        let got = run(matmul, Strategy::Stream, &x, m, k, ws, n);
        assert_close(
            &got,
            &want,
            &scale,
            EXACT_TOL,
            &format!("bf16-dot stream m={m} k={k} n={n}"),
        );
    }
}

/// The public entry points on both sides of the streaming/blocked threshold.
#[test]
fn public_entry_points_match_reference() {
    for (m, k, n) in [(3, 100, 50), (40, 100, 50)] {
        let x = values(m * k, 21);
        let w = Weights::new(n * k, 22);
        for (ws, wf) in w.each() {
            let (want, scale) = reference(&x, m, k, &wf, n);
            let mut y = vec![f32::NAN; m * n];
            matmul_wt(&x, m, k, ws, n, &mut y).unwrap();
            assert_close(&y, &want, &scale, EXACT_TOL, &format!("matmul_wt m={m}"));
            let mut y = vec![f32::NAN; m * n];
            Matmul::new(Precision::Bf16Dot)
                .run(&x, m, k, ws, n, &mut y)
                .unwrap();
            assert_close(
                &y,
                &want,
                &scale,
                BF16_DOT_TOL,
                &format!("Matmul::new(Bf16Dot) m={m}"),
            );
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let x = vec![0.0f32; 6];
    let w = vec![bf16::ZERO; 12];
    let mut y = vec![0.0f32; 8];
    let ws = WeightSlice::Bf16(&w);
    assert!(matmul_wt(&x, 2, 3, ws, 4, &mut y).is_ok());
    let shape = |operand, expected, actual| KernelError::Shape {
        operand,
        expected,
        actual,
        m: 2,
        k: 3,
        n: 4,
    };
    assert_eq!(
        matmul_wt(&x[..5], 2, 3, ws, 4, &mut y),
        Err(shape(Operand::X, 6, 5))
    );
    assert_eq!(
        matmul_wt(&x, 2, 3, WeightSlice::Bf16(&w[..11]), 4, &mut y),
        Err(shape(Operand::W, 12, 11))
    );
    assert_eq!(
        matmul_wt(&x, 2, 3, ws, 4, &mut y[..7]),
        Err(shape(Operand::Y, 8, 7))
    );
    assert_eq!(
        matmul_wt(&x, usize::MAX, 3, ws, 4, &mut y),
        Err(KernelError::Overflow {
            m: usize::MAX,
            k: 3,
            n: 4
        })
    );
    let err = Matmul::with_isa(Isa::Scalar, Precision::Bf16Dot).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::Unsupported {
                isa: Isa::Scalar,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn empty_shapes() {
    // k = 0: every output is an empty sum.
    let mut y = vec![f32::NAN; 6];
    matmul_wt(&[], 2, 0, WeightSlice::F32(&[]), 3, &mut y).unwrap();
    assert_eq!(y, vec![0.0; 6]);
    // m = 0 or n = 0: nothing to write.
    matmul_wt(&[], 0, 5, WeightSlice::F32(&[0.0; 15]), 3, &mut []).unwrap();
    matmul_wt(&[0.0; 10], 2, 5, WeightSlice::F32(&[]), 0, &mut []).unwrap();
}

#[test]
fn cpu_features_names_the_kernels() {
    let report = crate::cpu_features();
    assert!(
        report.contains(&format!("kernels: {}", Isa::best())),
        "{report}"
    );
}
