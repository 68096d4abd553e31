//! The per-instruction-set kernels. Each module has the same shape: a streaming
//! kernel for decode (`stream_rows`), the blocked micro-kernel(s) for prefill, and the
//! weight-to-f32 conversion the packing uses. Only the inner loops differ; tiling,
//! threading and tails live in `stream` and `blocked`.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod scalar;
