//! Run-time instruction-set detection, done once per process.
//!
//! The kernels are compiled for every instruction set (with `#[target_feature]`), and
//! the binary stays portable: which one runs is decided here, at run time. Detection is
//! cached because `matmul_wt` is called hundreds of times per generated token.

use std::fmt;
use std::sync::OnceLock;

use crate::Precision;

/// An instruction set the kernels are compiled for, from slowest to fastest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust that the compiler may auto-vectorise; what non-x86 targets and
    /// pre-2013 x86 CPUs get.
    Scalar,
    /// AVX2 + FMA + F16C: 8 f32 lanes (Haswell, Zen 1 and later).
    Avx2,
    /// AVX-512 F + BW + VL: 16 f32 lanes and masked tails (Skylake-SP, Ice Lake,
    /// Sapphire Rapids, Zen 4).
    Avx512,
}

impl Isa {
    /// Every instruction set, slowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// The fastest instruction set this CPU supports.
    pub fn best() -> Isa {
        cpu().best
    }

    /// Whether this CPU can run the kernels for `self`.
    pub fn is_supported(self) -> bool {
        let cpu = cpu();
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => cpu.avx2,
            Isa::Avx512 => cpu.avx512,
        }
    }

    /// Whether this CPU can run `precision` with the kernels for `self`.
    /// [`Precision::Bf16Dot`] needs AVX512_BF16 on top of AVX-512.
    pub fn supports(self, precision: Precision) -> bool {
        self.is_supported()
            && match precision {
                Precision::Exact | Precision::Int8Dot => true,
                Precision::Bf16Dot => self == Isa::Avx512 && cpu().avx512_bf16,
            }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        })
    }
}

/// A one-line report of the CPU features the kernels care about and which kernels
/// run, for `herd info` and bug reports, e.g.
/// `x86_64 avx2 fma f16c avx512f avx512bw avx512vl avx512bf16 avx512vnni; kernels: avx512 (bf16-dot available)`.
pub fn cpu_features() -> String {
    let cpu = cpu();
    let dot = if cpu.avx512_bf16 {
        "available"
    } else {
        "unavailable"
    };
    let flags = if cpu.flags.is_empty() {
        "no SIMD extensions used".to_string()
    } else {
        cpu.flags.join(" ")
    };
    format!(
        "{} {flags}; kernels: {} (bf16-dot {dot})",
        std::env::consts::ARCH,
        cpu.best
    )
}

/// Whether the AVX-512 kernels for quantized weights can use VNNI `vpdpbusd`;
/// without it they fall back to the AVX2 ones.
pub(crate) fn avx512_vnni() -> bool {
    cpu().avx512_vnni
}

/// What the CPU supports, as the kernels group it.
struct Cpu {
    avx2: bool,
    avx512: bool,
    avx512_bf16: bool,
    avx512_vnni: bool,
    best: Isa,
    /// Detected feature names, for [`cpu_features`].
    flags: Vec<&'static str>,
}

fn cpu() -> &'static Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    CPU.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Cpu {
    let mut flags = Vec::new();
    let mut has = |name: &'static str, present: bool| {
        if present {
            flags.push(name);
        }
        present
    };
    let avx2 = has("avx2", is_x86_feature_detected!("avx2"));
    let fma = has("fma", is_x86_feature_detected!("fma"));
    let f16c = has("f16c", is_x86_feature_detected!("f16c"));
    let f = has("avx512f", is_x86_feature_detected!("avx512f"));
    let bw = has("avx512bw", is_x86_feature_detected!("avx512bw"));
    let vl = has("avx512vl", is_x86_feature_detected!("avx512vl"));
    let bf16 = has("avx512bf16", is_x86_feature_detected!("avx512bf16"));
    let vnni = has("avx512vnni", is_x86_feature_detected!("avx512vnni"));
    let avx2 = avx2 && fma && f16c;
    let avx512 = f && bw && vl;
    let best = if avx512 {
        Isa::Avx512
    } else if avx2 {
        Isa::Avx2
    } else {
        Isa::Scalar
    };
    Cpu {
        avx2,
        avx512,
        avx512_bf16: avx512 && bf16,
        avx512_vnni: avx512 && vnni,
        best,
        flags,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Cpu {
    Cpu {
        avx2: false,
        avx512: false,
        avx512_bf16: false,
        avx512_vnni: false,
        best: Isa::Scalar,
        flags: Vec::new(),
    }
}
