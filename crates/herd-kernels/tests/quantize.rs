//! The quantizers against llama.cpp's (bit-exact) and against their own decoder
//! (error bounds), through the public API only.

use herd_kernels::{dequantize, quantize, KernelError, QuantType};

/// xorshift64*: deterministic across platforms. The data generators below use only
/// `+`, `*` and integer-to-float conversions, never `ln`/`cos` (whose last bit
/// depends on the platform's libm), so the checksums hold everywhere.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1), 24 random bits.
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Roughly standard normal: the sum of four uniforms, centred and scaled.
    fn normal(&mut self) -> f32 {
        let s = self.uniform() + self.uniform() + self.uniform() + self.uniform();
        (s - 2.0) * 1.732_050_8
    }
}

/// The data the checksums were taken on: 4096 elements each (16 k-quant super-blocks,
/// 128 Q8_0/Q4_0 blocks), covering weight-like noise and the degenerate cases where
/// the reference code takes special branches.
fn golden_datasets() -> Vec<(&'static str, Vec<f32>)> {
    let n = 4096;
    let mut rng = Rng(0x5E_ED0F_4E2D);
    let mut sets = Vec::new();
    sets.push(("gaussian", (0..n).map(|_| rng.normal() * 0.02).collect()));
    let outliers = (0..n).map(|i| match (i % 61, i % 2) {
        (0, 0) => 8.0,
        (0, _) => -6.5,
        _ => rng.normal() * 0.01,
    });
    sets.push(("outliers", outliers.collect()));
    sets.push(("negative", (0..n).map(|_| -3.0 * rng.uniform()).collect()));
    sets.push(("positive", (0..n).map(|_| rng.uniform() + 0.5).collect()));
    // Per 32 elements: zeros, a constant, sparse values, huge values.
    let mixed = (0..n).map(|i| match (i / 32) % 4 {
        0 => 0.0,
        1 => 0.375,
        2 if i % 5 == 0 => rng.normal(),
        2 => 0.0,
        _ => rng.normal() * 1e3,
    });
    sets.push(("mixed", mixed.collect()));
    sets.push(("tiny", (0..n).map(|_| rng.normal() * 1e-6).collect()));
    sets
}

/// FNV-1a over the encoded bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Checksums of ggml's own reference quantizers (`quantize_row_*_ref` from
/// ggml-org/ggml commit d99724f, built with gcc -O3 for baseline x86-64, i.e.
/// without FMA contraction, as llama.cpp builds ggml-base) on [`golden_datasets`].
/// Our bytes were compared with that build on 50 million further random elements of
/// ten distributions: identical blocks, all of them.
const LLAMA_CPP_CHECKSUMS: [(&str, QuantType, u64); 30] = [
    ("gaussian", QuantType::Q8_0, 0xca6d206376226bf0),
    ("gaussian", QuantType::Q4_0, 0x764cb1b03595294c),
    ("gaussian", QuantType::Q4_K, 0x3d7367812689276a),
    ("gaussian", QuantType::Q5_K, 0xb0d46ce2402707ba),
    ("gaussian", QuantType::Q6_K, 0x2cc030354bdda190),
    ("outliers", QuantType::Q8_0, 0x7e7738136762a43f),
    ("outliers", QuantType::Q4_0, 0x249bd5cad2f48369),
    ("outliers", QuantType::Q4_K, 0xd30c04915e0b42ef),
    ("outliers", QuantType::Q5_K, 0xe27bf039e2e37c84),
    ("outliers", QuantType::Q6_K, 0x274f9de24868e10c),
    ("negative", QuantType::Q8_0, 0x36ffb3def49876f1),
    ("negative", QuantType::Q4_0, 0x1c2d192060a38286),
    ("negative", QuantType::Q4_K, 0x6e6d77082befc195),
    ("negative", QuantType::Q5_K, 0xe67c9944291e937b),
    ("negative", QuantType::Q6_K, 0xc112ffbdd8d58a63),
    ("positive", QuantType::Q8_0, 0xbff58d73834a7c3f),
    ("positive", QuantType::Q4_0, 0xe2548d27c084fafa),
    ("positive", QuantType::Q4_K, 0x561332589215b5c9),
    ("positive", QuantType::Q5_K, 0x8e7892fd56ef6336),
    ("positive", QuantType::Q6_K, 0x3372c23694a273d8),
    ("mixed", QuantType::Q8_0, 0x4b2fcb7373b0e825),
    ("mixed", QuantType::Q4_0, 0x0ff253eaed09138e),
    ("mixed", QuantType::Q4_K, 0x0de40e5e4684c973),
    ("mixed", QuantType::Q5_K, 0xee3e62ac676c2212),
    ("mixed", QuantType::Q6_K, 0xe564a687be1c090f),
    ("tiny", QuantType::Q8_0, 0x7c096e6f853ec20c),
    ("tiny", QuantType::Q4_0, 0x7e45e38ecef1bd2d),
    ("tiny", QuantType::Q4_K, 0x7c3e054ab1bf74f9),
    ("tiny", QuantType::Q5_K, 0xa892653acc86a533),
    ("tiny", QuantType::Q6_K, 0x8c5dff9046fae9c3),
];

#[test]
fn bytes_match_llama_cpp_reference_quantizers() {
    let sets = golden_datasets();
    for (name, qtype, want) in LLAMA_CPP_CHECKSUMS {
        let (_, x) = sets
            .iter()
            .find(|(n, _)| *n == name)
            .expect("dataset exists");
        let mut bytes = Vec::new();
        quantize(qtype, x, &mut bytes).unwrap();
        assert_eq!(fnv1a(&bytes), want, "{name} as {qtype}");
    }
}

/// Largest round-trip error in a block, as a fraction of the block's largest
/// magnitude. Q8_0 and Q4_0 are analytical (half a step, or Q4_0's one step on the
/// side opposite its largest element, plus the f16 rounding of the scale); the
/// k-quants, whose scales come from a search, get ~1.3× the worst seen on a million
/// elements of each of four distributions.
fn max_error_bound(qtype: QuantType) -> f32 {
    match qtype {
        QuantType::Q8_0 => 0.5 / 127.0 + 1.0 / 2048.0,
        QuantType::Q4_0 => 1.0 / 8.0 + 1.0 / 2048.0,
        QuantType::Q4_K => 0.15,
        QuantType::Q5_K => 0.08,
        QuantType::Q6_K => 0.03,
    }
}

/// Quantizes and decodes `x`.
fn round_trip(qtype: QuantType, x: &[f32]) -> Vec<f32> {
    let mut bytes = Vec::new();
    quantize(qtype, x, &mut bytes).unwrap();
    assert_eq!(bytes.len(), qtype.row_bytes(x.len()).unwrap());
    let mut y = vec![0.0; x.len()];
    dequantize(qtype, &bytes, &mut y).unwrap();
    y
}

/// Asserts every block of `y` is within [`max_error_bound`] of `x`.
fn assert_blocks_within_bound(qtype: QuantType, what: &str, x: &[f32], y: &[f32]) {
    let bound = max_error_bound(qtype);
    let blocks = x
        .chunks(qtype.block_elems())
        .zip(y.chunks(qtype.block_elems()));
    for (b, (xb, yb)) in blocks.enumerate() {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (&a, &r)) in xb.iter().zip(yb).enumerate() {
            let err = (a - r).abs();
            assert!(
                err <= bound * amax,
                "{what} as {qtype}, block {b} elem {i}: {a} decoded as {r}, err {err} > {bound}·{amax}"
            );
        }
    }
}

/// Root-mean-square error over root-mean-square value.
fn relative_rmse(x: &[f32], y: &[f32]) -> f64 {
    let err: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| f64::from(a - b).powi(2))
        .sum();
    let norm: f64 = x.iter().map(|&a| f64::from(a).powi(2)).sum();
    (err / norm).sqrt()
}

#[test]
fn random_data_round_trips_within_bounds_and_in_precision_order() {
    let mut rng = Rng(7);
    let n = 256 * 256;
    let gaussian: Vec<f32> = (0..n).map(|_| rng.normal() * 0.02).collect();
    let uniform: Vec<f32> = (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect();
    // Measured relative RMSE on Gaussian data: 0.0051, 0.082, 0.069, 0.035, 0.017.
    let rmse_bounds = [
        (QuantType::Q8_0, 0.006),
        (QuantType::Q6_K, 0.019),
        (QuantType::Q5_K, 0.038),
        (QuantType::Q4_K, 0.075),
        (QuantType::Q4_0, 0.09),
    ];
    let mut previous = 0.0;
    for (qtype, bound) in rmse_bounds {
        for (what, x) in [("gaussian", &gaussian), ("uniform", &uniform)] {
            assert_blocks_within_bound(qtype, what, x, &round_trip(qtype, x));
        }
        let rmse = relative_rmse(&gaussian, &round_trip(qtype, &gaussian));
        assert!(rmse < bound, "{qtype}: relative rmse {rmse} ≥ {bound}");
        // More bits, less error: the list is ordered from most to fewest.
        assert!(rmse > previous, "{qtype}: {rmse} not above {previous}");
        previous = rmse;
    }
}

#[test]
fn structured_rows_round_trip_within_bounds() {
    let mut rng = Rng(11);
    let n = 512;
    let mut outlier: Vec<f32> = (0..n).map(|_| rng.normal() * 0.01).collect();
    outlier[300] = 100.0;
    let cases: Vec<(&str, Vec<f32>)> = vec![
        ("positive constant", vec![0.3; n]),
        ("negative constant", vec![-0.7; n]),
        (
            "negative only",
            (0..n).map(|_| -0.1 - rng.uniform()).collect(),
        ),
        (
            "positive only",
            (0..n).map(|_| 2.0 + rng.uniform()).collect(),
        ),
        ("one large outlier", outlier),
        (
            "alternating sign",
            (0..n)
                .map(|i| if i % 2 == 0 { 1.0 } else { -0.25 })
                .collect(),
        ),
    ];
    for qtype in QuantType::ALL {
        for (what, x) in &cases {
            let y = round_trip(qtype, x);
            assert_blocks_within_bound(qtype, what, x, &y);
        }
        // A constant is reproduced up to the f16 rounding of its scale.
        for (what, x) in &cases[..2] {
            for (&a, &r) in x.iter().zip(&round_trip(qtype, x)) {
                assert!(
                    (a - r).abs() <= 1e-3 * a.abs(),
                    "{what} as {qtype}: {a} → {r}"
                );
            }
        }
        // Zeros stay exactly zero.
        assert!(
            round_trip(qtype, &[0.0; 512]).iter().all(|&v| v == 0.0),
            "{qtype}"
        );
    }
}

#[test]
fn appends_whole_blocks_and_rejects_partial_ones() {
    let mut rng = Rng(3);
    let x: Vec<f32> = (0..256 * 200).map(|_| rng.normal()).collect();
    for qtype in QuantType::ALL {
        // One call over many blocks (split across threads) equals block-sized calls.
        let mut whole = vec![0xEE];
        quantize(qtype, &x, &mut whole).unwrap();
        assert_eq!(whole[0], 0xEE, "existing bytes are kept");
        let mut pieces = vec![0xEE];
        for chunk in x.chunks(qtype.block_elems()) {
            quantize(qtype, chunk, &mut pieces).unwrap();
        }
        assert_eq!(whole, pieces, "{qtype}");

        let mut dst = vec![1, 2, 3];
        let err = quantize(qtype, &x[..qtype.block_elems() + 1], &mut dst).unwrap_err();
        assert!(
            matches!(err, KernelError::BlockAlign { .. }),
            "{qtype}: {err}"
        );
        assert_eq!(dst, [1, 2, 3], "nothing is appended on error");
        quantize(qtype, &[], &mut dst).unwrap();
        assert_eq!(dst, [1, 2, 3]);
    }
}
