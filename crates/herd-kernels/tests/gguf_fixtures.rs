//! ggml blocks as llama.cpp itself writes them: the quantized GGUF fixtures
//! (`tests/fixtures/gguf`, made with llama.cpp's `llama_model_quantize` from one f32
//! model) dequantize to the same weights in every format, within each format's own
//! quantization error, and the matrix kernels reproduce a reference product on them.
//! The Q8_0 file stands in for the f32 weights, which are not committed: its error
//! (at most 1/254 of each block's largest weight) is far below the others'.

use std::path::PathBuf;

use herd_gguf::{GgmlType, GgufFile};
use herd_kernels::{dequantize, matmul_wt, Matmul, Precision, QuantType, WeightSlice};

fn fixture(name: &str) -> Option<GgufFile> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gguf")
        .join(name);
    if !path.exists() {
        eprintln!("note: {} missing, test skipped", path.display());
        return None;
    }
    Some(GgufFile::open(&path).expect("fixture parses"))
}

fn quant_type(t: GgmlType) -> Option<QuantType> {
    match t {
        GgmlType::Q8_0 => Some(QuantType::Q8_0),
        GgmlType::Q4_0 => Some(QuantType::Q4_0),
        GgmlType::Q4_K => Some(QuantType::Q4_K),
        GgmlType::Q5_K => Some(QuantType::Q5_K),
        GgmlType::Q6_K => Some(QuantType::Q6_K),
        _ => None,
    }
}

/// A quantized tensor's type, row length, row count and dequantized values.
fn weights(file: &GgufFile, name: &str) -> Option<(QuantType, usize, usize, Vec<f32>)> {
    let tensor = file.tensor(name)?;
    let qtype = quant_type(tensor.info().ggml_type())?;
    let dims = tensor.info().dims();
    let (k, n) = (dims[0] as usize, dims.get(1).map_or(1, |&d| d as usize));
    let mut out = vec![0.0f32; k * n];
    dequantize(qtype, tensor.data(), &mut out).expect("whole rows of whole blocks");
    Some((qtype, k, n, out))
}

/// Largest relative RMS difference allowed from the Q8_0 weights: 1.5 times what
/// each format shows on these Gaussian weights (measured: Q6_K 1.9%, Q5_K 3.7%,
/// Q4_K 7.2%, Q4_0 8.6%, each including Q8_0's own ~0.5%); a misread block is off
/// by its whole magnitude, a wrong scale by a large fraction of it.
fn rms_bound(qtype: QuantType) -> f64 {
    match qtype {
        QuantType::Q8_0 => 0.0,
        QuantType::Q6_K => 0.03,
        QuantType::Q5_K => 0.055,
        QuantType::Q4_K => 0.11,
        QuantType::Q4_0 => 0.13,
    }
}

#[test]
fn every_format_dequantizes_to_the_same_weights() {
    let Some(q8) = fixture("llama31-k256-Q8_0.gguf") else {
        return;
    };
    let mut checked = 0;
    for stem in ["Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"] {
        let Some(file) = fixture(&format!("llama31-k256-{stem}.gguf")) else {
            continue;
        };
        for info in file.tensor_infos() {
            let Some((qtype, k, n, got)) = weights(&file, info.name()) else {
                continue;
            };
            let (_, k8, n8, want) = weights(&q8, info.name()).expect("same tensors, Q8_0");
            assert_eq!((k, n), (k8, n8), "{}", info.name());
            let err: f64 = got
                .iter()
                .zip(&want)
                .map(|(&a, &b)| f64::from(a - b).powi(2))
                .sum();
            let norm: f64 = want.iter().map(|&b| f64::from(b).powi(2)).sum();
            let rel = (err / norm).sqrt();
            assert!(
                rel <= rms_bound(qtype),
                "{stem} {} ({qtype}): relative RMS error {rel:.4} vs Q8_0",
                info.name()
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} quantized tensors compared");
}

/// `Y = X · Wᵀ` on real tensors of each format against an f64 reference on the
/// dequantized weights: exact kernels to f32 rounding, Int8Dot within its bound.
#[test]
fn kernels_match_reference_on_fixture_tensors() {
    for (stem, name) in [
        ("Q8_0", "blk.0.attn_q.weight"),
        ("Q4_0", "blk.1.ffn_down.weight"),
        ("Q4_K_M", "blk.0.ffn_gate.weight"),
        ("Q4_K_M", "output.weight"),
        ("Q5_K_M", "blk.1.ffn_down.weight"),
        ("Q6_K", "blk.1.attn_v.weight"),
    ] {
        let Some(file) = fixture(&format!("llama31-k256-{stem}.gguf")) else {
            continue;
        };
        let (qtype, k, n, w) = weights(&file, name).expect("a quantized tensor");
        let data = file.tensor(name).expect("present").data();
        for m in [1, 3, 40] {
            let x: Vec<f32> = (0..m * k)
                .map(|e| {
                    ((e * 7919 % 1000) as f32 / 500.0 - 1.0) * if e % 97 == 0 { 8.0 } else { 1.0 }
                })
                .collect();
            let mut want = vec![0.0f64; m * n];
            let mut scale = vec![0.0f64; m * n];
            let mut bound = vec![0.0f64; m * n];
            for i in 0..m {
                let xr = &x[i * k..(i + 1) * k];
                // Int8Dot's step per block of 32, at its largest (see `Precision::Int8Dot`).
                let amax = |b: &[f32]| b.iter().fold(0.0f64, |a, &v| a.max(f64::from(v.abs())));
                let step = |e: usize| {
                    let b32 = amax(&xr[e / 32 * 32..][..32]) / 127.0;
                    match qtype.block_elems() {
                        32 => b32,
                        _ => b32 + amax(&xr[e / 256 * 256..][..256]) / 2032.0,
                    }
                };
                for j in 0..n {
                    let wr = &w[j * k..(j + 1) * k];
                    for (e, (&a, &b)) in xr.iter().zip(wr).enumerate() {
                        let (a, b) = (f64::from(a), f64::from(b));
                        want[i * n + j] += a * b;
                        scale[i * n + j] += (a * b).abs();
                        bound[i * n + j] += step(e) / 2.0 * b.abs();
                    }
                }
            }
            for precision in [Precision::Exact, Precision::Int8Dot] {
                let mut y = vec![f32::NAN; m * n];
                let ws = WeightSlice::Quant(qtype, data);
                Matmul::new(precision)
                    .run(&x, m, k, ws, n, &mut y)
                    .expect("shapes agree");
                for o in 0..m * n {
                    let err = (f64::from(y[o]) - want[o]).abs();
                    let tol = match precision {
                        Precision::Int8Dot => 1.001 * bound[o] + 1e-5 * scale[o],
                        _ => 1e-5 * scale[o],
                    };
                    assert!(
                        err <= tol,
                        "{stem} {name} {precision:?} m={m}: y[{o}] = {}, want {}, error {err:e} > {tol:e}",
                        y[o],
                        want[o]
                    );
                }
            }
            // The default entry point is Int8Dot.
            let mut y = vec![f32::NAN; m * n];
            matmul_wt(&x, m, k, WeightSlice::Quant(qtype, data), n, &mut y).expect("shapes agree");
            assert!(y.iter().all(|v| v.is_finite()));
        }
    }
}
