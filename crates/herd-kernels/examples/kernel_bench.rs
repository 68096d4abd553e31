//! Throughput of `matmul_wt` against the machine's own streaming-read bandwidth.
//!
//! ```text
//! cargo run --release -p herd-kernels --example kernel_bench \
//!     [-- --threads N --cold-mib MIB --only baseline,decode,isa,batch,prefill,qdecode,qprefill]
//! ```
//!
//! Decode (m = 1) is memory-bound, so it is reported as GB/s of weights read and as a
//! fraction of the streaming-read baseline: the fastest of several parallel SIMD sums
//! over a buffer far larger than the caches. The weights rotate through copies
//! totalling `--cold-mib` so they come from DRAM, not from the (large) L3, as they
//! would for a real model; "hot" repeats one matrix. Each decode repetition is timed
//! right after a baseline pass and the percentage is the median of those paired
//! ratios, so load from other processes on a shared machine affects both sides alike.
//! Prefill (m = 512) is compute-bound and reported in GFLOP/s. Shapes are the Llama
//! 3.2 1B linear layers. Each number is the median of several timed repetitions, with
//! the best in brackets.
//!
//! `qdecode` and `qprefill` do the same for ggml-quantized weights (blocks from
//! `herd_kernels::quantize`); `qdecode` also turns the three shapes' speeds into
//! tokens per second for a Llama 3.2 1B whose linear layers (and tied output
//! projection) were all of that format.

use std::hint::black_box;
use std::time::Instant;

use half::{bf16, f16};
use herd_kernels::{cpu_features, quantize, Isa, Matmul, Precision, QuantType, WeightSlice};
use rayon::prelude::*;

/// Llama 3.2 1B linear layers as (k, n): attention q/o, MLP gate/up, MLP down.
const SHAPES: [(usize, usize); 3] = [(2048, 2048), (2048, 8192), (8192, 2048)];
/// Timed repetitions per measurement.
const REPS: usize = 7;
/// Every section, in run order.
const SECTIONS: [&str; 7] = [
    "baseline", "decode", "isa", "batch", "prefill", "qdecode", "qprefill",
];
/// Weights a Llama 3.2 1B token reads per shape of `SHAPES`: 16 layers of q, k, v, o
/// (k and v are 2048 × 512, counted with q and o), of gate and up plus the tied
/// 128256 × 2048 output projection, and of down.
const LLAMA_1B_WEIGHTS: [f64; 3] = [168e6, 800e6, 268e6];

struct Args {
    threads: Option<usize>,
    cold_bytes: usize,
    only: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        threads: None,
        cold_bytes: 1 << 30,
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag needs a value");
        match flag.as_str() {
            "--threads" => args.threads = Some(value().parse().expect("--threads takes a number")),
            "--cold-mib" => {
                args.cold_bytes = value().parse::<usize>().expect("--cold-mib takes a number") << 20
            }
            "--only" => args.only = value().split(',').map(str::to_string).collect(),
            other => panic!(
                "unknown flag {other}; use --threads N, --cold-mib MIB, --only {}",
                SECTIONS.join(",")
            ),
        }
    }
    args
}

/// Median and best of `REPS` runs of `f`, in seconds per call (`f` does `calls` calls).
fn time(calls: usize, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm up: page faults, pool start, caches
    let mut t: Vec<f64> = (0..REPS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() / calls as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[REPS / 2], t[0])
}

/// The streaming-read baseline: every thread sums its own contiguous part of a buffer
/// far larger than the caches, with the fastest of two access patterns: one
/// sequential stream, or blocks of 4 interleaved 8 KiB "rows" (the pattern of a
/// kernel reading several weight rows at once).
struct Baseline {
    buf: Vec<f32>,
    rows: usize,
}

impl Baseline {
    fn new(bytes: usize) -> Self {
        let mut baseline = Baseline {
            buf: vec![1.0; bytes / 4],
            rows: 1,
        };
        let mut fastest = (0.0, 1);
        for (name, rows) in [("1 sequential stream", 1), ("4 interleaved 8 KiB rows", 4)] {
            baseline.rows = rows;
            let (med, best) = time(1, || {
                black_box(baseline.pass());
            });
            let (med, best) = (baseline.gbs(med), baseline.gbs(best));
            println!("  {name} per thread: {med:.1} GB/s [best {best:.1}]");
            if med > fastest.0 {
                fastest = (med, rows);
            }
        }
        baseline.rows = fastest.1;
        baseline
    }

    /// One parallel pass over the buffer.
    fn pass(&self) -> f32 {
        let chunk = self.buf.len().div_ceil(rayon::current_num_threads());
        self.buf
            .par_chunks(chunk)
            .map(|part| simd_sum(part, self.rows))
            .sum()
    }

    fn gbs(&self, seconds: f64) -> f64 {
        (self.buf.len() * 4) as f64 / seconds / 1e9
    }
}

/// GB/s of weights read by `matmul` at m = 1 cycling through `copies`, measured
/// alternately with baseline passes so both see the same load on a shared machine:
/// (median GB/s, best GB/s, median of the per-repetition ratios to the baseline).
fn decode_vs_baseline(
    baseline: &Baseline,
    matmul: Matmul,
    k: usize,
    n: usize,
    copies: &[Stored],
) -> (f64, f64, f64) {
    let x = values(k, 7);
    let mut y = vec![0.0f32; n];
    let bytes = (copies[0].slice().byte_len() * copies.len()) as f64;
    let mut pass = || {
        for w in copies {
            matmul
                .run(&x, 1, k, w.slice(), n, &mut y)
                .expect("shapes are consistent");
        }
        black_box(&y);
    };
    pass(); // warm up
    let mut gbs = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..REPS {
        let start = Instant::now();
        black_box(baseline.pass());
        let base = baseline.gbs(start.elapsed().as_secs_f64());
        let start = Instant::now();
        pass();
        let kernel = bytes / start.elapsed().as_secs_f64() / 1e9;
        gbs.push(kernel);
        ratios.push(kernel / base);
    }
    gbs.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    (gbs[REPS / 2], gbs[REPS - 1], ratios[REPS / 2])
}

/// Sums `v` with the widest SIMD available, so the loop is bound by memory, not by
/// instructions (a baseline-x86-64 build of a plain sum is not).
fn simd_sum(v: &[f32], rows: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was just detected.
        return unsafe { avx512_sum(v, rows) };
    }
    let _ = rows;
    let (chunks, tail) = v.as_chunks::<16>();
    let mut acc = [0.0f32; 16];
    for c in chunks {
        for l in 0..16 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Reads `v` in blocks of `rows` 8 KiB rows, all rows of a block advancing together.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_sum(v: &[f32], rows: usize) -> f32 {
    use std::arch::x86_64::*;
    const ROW: usize = 2048;
    let block = ROW * rows;
    let mut acc = [_mm512_setzero_ps(); 4];
    let blocks = v.chunks_exact(block);
    let rest: f32 = blocks.remainder().iter().sum();
    for b in blocks {
        for i in (0..ROW).step_by(16) {
            for r in 0..rows {
                acc[r] = _mm512_add_ps(acc[r], _mm512_loadu_ps(b[r * ROW + i..].as_ptr()));
            }
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum::<f32>() + rest
}

fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

/// The same random matrix stored in one dtype.
#[derive(Clone)]
enum Stored {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
    F16(Vec<f16>),
    Quant(QuantType, Vec<u8>),
}

impl Stored {
    fn new(dtype: &str, v: &[f32]) -> Self {
        match dtype {
            "f32" => Stored::F32(v.to_vec()),
            "bf16" => Stored::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
            "f16" => Stored::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            name => {
                let qtype = QuantType::ALL
                    .into_iter()
                    .find(|q| q.name() == name)
                    .expect("a dtype or ggml type name");
                // Quantizing is slow next to the kernels: quantize 1 Mi values and
                // repeat their blocks (the kernels' speed does not depend on them).
                let mut proto = Vec::new();
                quantize(qtype, &v[..v.len().min(1 << 20)], &mut proto).expect("whole blocks");
                let len = qtype.row_bytes(v.len()).expect("whole blocks");
                Stored::Quant(qtype, proto.iter().copied().cycle().take(len).collect())
            }
        }
    }

    /// Enough copies of an `n × k` matrix to fill `bytes`, so cycling through them
    /// reads from DRAM.
    fn cold(dtype: &str, k: usize, n: usize, bytes: usize) -> Vec<Stored> {
        let v = values(n * k, 1);
        let one = Stored::new(dtype, &v);
        let count = bytes.div_ceil(one.slice().byte_len()).max(2);
        vec![one; count]
    }

    fn slice(&self) -> WeightSlice<'_> {
        match self {
            Stored::F32(w) => WeightSlice::F32(w),
            Stored::Bf16(w) => WeightSlice::Bf16(w),
            Stored::F16(w) => WeightSlice::F16(w),
            Stored::Quant(q, w) => WeightSlice::Quant(*q, w),
        }
    }
}

/// Seconds per call (median, best) of `matmul` with `m` rows over `copies`, cycling
/// through them.
fn bench_matmul(matmul: Matmul, m: usize, k: usize, n: usize, copies: &[Stored]) -> (f64, f64) {
    let x = values(m * k, 7);
    let mut y = vec![0.0f32; m * n];
    time(copies.len(), || {
        for w in copies {
            matmul
                .run(&x, m, k, w.slice(), n, &mut y)
                .expect("shapes are consistent");
        }
        black_box(&y);
    })
}

fn decode(baseline: &Baseline, cold_bytes: usize) {
    println!(
        "\ndecode, m = 1, default kernels ({}): GB/s of weights and % of the baseline",
        Isa::best()
    );
    println!(
        "{:>6} {:>11} {:>24} {:>14} {:>9}",
        "dtype", "k × n", "cold GB/s [best] (%)", "hot GB/s", "GFLOP/s"
    );
    for dtype in ["bf16", "f16", "f32"] {
        for (k, n) in SHAPES {
            let cold = Stored::cold(dtype, k, n, cold_bytes);
            let bytes = cold[0].slice().byte_len() as f64;
            let (gbs, best, ratio) = decode_vs_baseline(baseline, Matmul::default(), k, n, &cold);
            let (hot_s, _) = bench_matmul(Matmul::default(), 1, k, n, &cold[..1]);
            println!(
                "{dtype:>6} {:>11} {gbs:>6.1} [{best:>5.1}] ({:>3.0}%) {:>14.1} {:>9.1}",
                format!("{k}×{n}"),
                100.0 * ratio,
                bytes / hot_s / 1e9,
                2.0 * gbs / cold[0].slice().element_size() as f64,
            );
        }
    }
}

fn decode_per_isa(baseline: &Baseline, cold_bytes: usize) {
    let (k, n) = (2048, 8192);
    println!("\ndecode bf16 {k}×{n} (k × n), m = 1, cold, per instruction set");
    let cold = Stored::cold("bf16", k, n, cold_bytes);
    for isa in Isa::ALL.into_iter().filter(|isa| isa.is_supported()) {
        let matmul = Matmul::with_isa(isa, Precision::Exact).expect("supported");
        let (gbs, best, ratio) = decode_vs_baseline(baseline, matmul, k, n, &cold);
        println!(
            "{isa:>8}: {gbs:>5.1} GB/s [best {best:.1}] ({:>3.0}% of baseline)",
            100.0 * ratio
        );
    }
}

fn small_batches(cold_bytes: usize) {
    let (k, n) = (2048, 8192);
    println!("\nsmall batches, bf16 {k}×{n} (k × n), default kernels: GFLOP/s by m (cold, hot)");
    let cold = Stored::cold("bf16", k, n, cold_bytes);
    for m in [1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 64] {
        let flops = 2.0 * (m * n * k) as f64;
        let (cold_s, _) = bench_matmul(Matmul::default(), m, k, n, &cold);
        let (hot_s, _) = bench_matmul(Matmul::default(), m, k, n, &cold[..1]);
        println!(
            "  m = {m:>2}: {:>7.1} {:>7.1}",
            flops / cold_s / 1e9,
            flops / hot_s / 1e9
        );
    }
}

fn prefill() {
    let m = 512;
    println!("\nprefill, m = {m}: GFLOP/s (median [best])");
    let mut columns = vec![("exact", Matmul::default())];
    if let Ok(dot) = Matmul::with_isa(Isa::Avx512, Precision::Bf16Dot) {
        columns.push(("bf16-dot", dot));
    }
    for isa in [Isa::Avx2, Isa::Scalar]
        .into_iter()
        .filter(|isa| isa.is_supported() && *isa != Isa::best())
    {
        columns.push((
            if isa == Isa::Avx2 { "avx2" } else { "scalar" },
            Matmul::with_isa(isa, Precision::Exact).expect("supported"),
        ));
    }
    print!("{:>6} {:>11}", "dtype", "k × n");
    for (name, _) in &columns {
        print!(" {name:>16}");
    }
    println!();
    for dtype in ["bf16", "f16", "f32"] {
        for (k, n) in SHAPES {
            let w = [Stored::new(dtype, &values(n * k, 1))];
            print!("{dtype:>6} {:>11}", format!("{k}×{n}"));
            for (name, matmul) in &columns {
                // bf16-dot only differs for bf16 weights; scalar is slow, one shape is enough.
                if (*name == "bf16-dot" && dtype != "bf16")
                    || (*name == "scalar" && (k, n) != SHAPES[0])
                {
                    print!(" {:>16}", "-");
                    continue;
                }
                let (s, best) = bench_matmul(*matmul, m, k, n, &w);
                let gflops = |s: f64| 2.0 * (m * n * k) as f64 / s / 1e9;
                print!(" {:>7.1} [{:>6.1}]", gflops(s), gflops(best));
            }
            println!();
        }
    }
}

/// Decode (m = 1) with quantized weights, default kernels (Int8Dot).
fn quant_decode(baseline: &Baseline, cold_bytes: usize) {
    println!(
        "\nquantized decode, m = 1, default kernels ({}, Int8Dot): GB/s of weights, % of the baseline",
        Isa::best()
    );
    println!(
        "{:>6} {:>11} {:>24} {:>10} {:>9}   Llama 3.2 1B tok/s",
        "type", "k × n", "cold GB/s [best] (%)", "hot GB/s", "GFLOP/s"
    );
    for qtype in QuantType::ALL {
        let mut token_s = 0.0;
        for ((k, n), weights) in SHAPES.into_iter().zip(LLAMA_1B_WEIGHTS) {
            let cold = Stored::cold(qtype.name(), k, n, cold_bytes);
            let bytes = cold[0].slice().byte_len() as f64;
            let (gbs, best, ratio) = decode_vs_baseline(baseline, Matmul::default(), k, n, &cold);
            let (hot_s, _) = bench_matmul(Matmul::default(), 1, k, n, &cold[..1]);
            token_s += weights * bytes / (n * k) as f64 / (gbs * 1e9);
            print!(
                "{:>6} {:>11} {gbs:>6.1} [{best:>5.1}] ({:>3.0}%) {:>10.1} {:>9.1}",
                qtype.name(),
                format!("{k}×{n}"),
                100.0 * ratio,
                bytes / hot_s / 1e9,
                2.0 * gbs * (n * k) as f64 / bytes,
            );
            if (k, n) == SHAPES[2] {
                print!("   {:>6.1}", 1.0 / token_s);
            }
            println!();
        }
    }
}

/// Prefill (m = 512) with quantized weights: default kernels (dequantized into the
/// f32 blocked kernels) and, where it is not the default, AVX2.
fn quant_prefill() {
    let m = 512;
    println!("\nquantized prefill, m = {m}: GFLOP/s (median [best])");
    let mut columns = vec![("default", Matmul::default())];
    if Isa::Avx2.is_supported() && Isa::best() != Isa::Avx2 {
        columns.push((
            "avx2",
            Matmul::with_isa(Isa::Avx2, Precision::Int8Dot).expect("supported"),
        ));
    }
    print!("{:>6} {:>11}", "type", "k × n");
    for (name, _) in &columns {
        print!(" {name:>16}");
    }
    println!();
    for qtype in QuantType::ALL {
        for (k, n) in SHAPES {
            let w = [Stored::new(qtype.name(), &values(n * k, 1))];
            print!("{:>6} {:>11}", qtype.name(), format!("{k}×{n}"));
            for (_, matmul) in &columns {
                let (s, best) = bench_matmul(*matmul, m, k, n, &w);
                let gflops = |s: f64| 2.0 * (m * n * k) as f64 / s / 1e9;
                print!(" {:>7.1} [{:>6.1}]", gflops(s), gflops(best));
            }
            println!();
        }
    }
}

fn main() {
    let args = parse_args();
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .expect("pool is configured once");
    }
    let run = |section: &str| args.only.is_empty() || args.only.iter().any(|s| s == section);
    println!("cpu: {}", cpu_features());
    println!("rayon threads: {}", rayon::current_num_threads());

    if run("baseline") || run("decode") || run("isa") || run("qdecode") {
        println!(
            "\nstreaming read, {} MiB buffer, all threads:",
            args.cold_bytes >> 20
        );
        let baseline = Baseline::new(args.cold_bytes);
        let (med, best) = time(1, || {
            black_box(baseline.pass());
        });
        println!(
            "baseline: {:.1} GB/s [best {:.1}]",
            baseline.gbs(med),
            baseline.gbs(best)
        );
        if run("decode") {
            decode(&baseline, args.cold_bytes);
        }
        if run("isa") {
            decode_per_isa(&baseline, args.cold_bytes);
        }
        if run("qdecode") {
            quant_decode(&baseline, args.cold_bytes);
        }
    }
    if run("batch") {
        small_batches(args.cold_bytes);
    }
    if run("prefill") {
        prefill();
    }
    if run("qprefill") {
        quant_prefill();
    }
}
