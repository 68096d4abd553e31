//! The 32-element formats with one scale per block and no search: Q8_0 and Q4_0
//! (ggml's `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`).
//!
//! Both compute the scale and its inverse in f32 and only round the stored scale to
//! f16 at the end, so the levels are chosen against the unrounded scale, exactly as
//! llama.cpp does; dequantizing uses the rounded one.

use super::f16_bits;

/// Elements per Q8_0 / Q4_0 block.
const QK: usize = 32;

/// One Q8_0 block: `x ≈ d · q`, `q ∈ −127..=127`, `d = max|x| / 127`.
pub(super) fn q8_0(x: &[f32], out: &mut [u8]) {
    // ggml's `MAX(a, b)`, which (unlike `f32::max`) lets a NaN through.
    let amax = x
        .iter()
        .fold(0.0f32, |m, v| if m > v.abs() { m } else { v.abs() });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    for (q, &v) in out[2..].iter_mut().zip(x) {
        // `round` is C's `roundf` (ties away from zero); `as` saturates.
        *q = (v * id).round() as i8 as u8;
    }
}

/// One Q4_0 block: `x ≈ d · (q − 8)`, `q ∈ 0..=15`, with `d = −max/8` for the
/// element of largest magnitude, so that element lands exactly on level 0 (−8·d)
/// and the asymmetric range's extra level goes to the side that needs it.
/// Byte `j` holds element `j` in its low nibble and element `j + 16` in its high one.
pub(super) fn q4_0(x: &[f32], out: &mut [u8]) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&f16_bits(d).to_le_bytes());
    // `+ 8.5` then truncation toward zero is ggml's rounding; `as i8` truncates.
    let level = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    let (lo, hi) = x.split_at(QK / 2);
    for ((q, &a), &b) in out[2..].iter_mut().zip(lo).zip(hi) {
        *q = level(a) | (level(b) << 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuantType;

    #[test]
    fn q8_0_layout() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let mut out = [0u8; QuantType::Q8_0.block_bytes()];
        q8_0(&x, &mut out);
        // d = 16/127 as f16, element 0 (-16) is -127, element 16 (0) is 0.
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), f16_bits(16.0 / 127.0));
        assert_eq!(out[2] as i8, -127);
        assert_eq!(out[2 + 16] as i8, 0);
        assert_eq!(out[2 + 31] as i8, 119); // round(15 · 127/16) = round(119.06)
    }

    #[test]
    fn q4_0_layout() {
        let mut x = [0.0f32; 32];
        x[0] = -4.0; // largest magnitude: d = 0.5, level 0
        x[16] = 3.5; // level 15
        x[1] = 0.5; // level 9
        let mut out = [0u8; QuantType::Q4_0.block_bytes()];
        q4_0(&x, &mut out);
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), f16_bits(0.5));
        // x[0] is the low nibble (level 0), x[16] the high one (level 15).
        assert_eq!(out[2], 0xF0);
        assert_eq!(out[3] & 0xF, 9);
        assert_eq!(out[3] >> 4, 8, "zero is level 8");
    }
}
