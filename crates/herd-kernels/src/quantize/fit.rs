//! The scale searches behind the k-quants, in the floating-point operation order of
//! ggml's reference C code (`make_qkx2_quants`, `make_qx_quants`, `nearest_int`).
//!
//! Bit-exact output depends on more than the algorithm: every sum is accumulated in
//! the same order as the C loops, products are grouped the way C's left-to-right
//! evaluation groups them (`w*l*x` is `(w*l)*x`), and nothing is fused into an FMA
//! (Rust never contracts `a*b + c`; ggml-base is built for the baseline x86-64 ISA,
//! so the C side does not either). Reordering any of these changes the last bit of a
//! sum, which can flip a `<` between two candidate scales and change whole blocks.

/// Below this absolute maximum a group is treated as all zeros (ggml's
/// `GROUP_MAX_EPS`), so denormal-sized groups do not produce huge inverse scales.
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// The largest group [`fit_affine`] handles (the k-quants' 32-element sub-blocks).
const MAX_GROUP: usize = 32;

/// Rounds to the nearest integer, ties to even, by adding 1.5·2²³ and reading the
/// mantissa: ggml's `nearest_int`.
///
/// Kept as a bit trick rather than `round_ties_even` because the two differ outside
/// |v| ≤ 2²² (and for NaN), and ggml stores whatever the trick yields there; matching
/// it keeps degenerate blocks byte-identical too. Never panics.
pub(super) fn nearest_int(v: f32) -> i32 {
    let shifted = v + 12_582_912.0;
    // The mask keeps 23 bits, so the cast cannot change the value.
    (shifted.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// The grid of scales [`fit_affine`] tries: `nmax + rmin + rdelta·i` levels across
/// the group's range for `i` in `0..=steps`.
#[derive(Clone, Copy, Debug)]
pub(super) struct ScaleSearch {
    /// Offset of the first trial from `nmax`.
    pub rmin: f32,
    /// Step between trials.
    pub rdelta: f32,
    /// Number of steps after the first trial.
    pub steps: i32,
}

/// Fits `x ≈ scale · l − min_neg` with `l ∈ 0..=nmax` under per-element `weights`
/// (ggml's `make_qkx2_quants` with squared error). Writes the levels to `levels` and
/// returns `(scale, min_neg)`, where `min_neg ≥ 0` is the offset to subtract.
///
/// The minimum is clamped to ≤ 0 so that zero stays representable. Each trial scale
/// is solved by weighted least squares for both scale and offset; the best trial by
/// weighted squared error wins. As in ggml, a trial that improves the fit also moves
/// the origin (`min`) and the range (`max − min`) the later trials are taken from.
pub(super) fn fit_affine(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    search: ScaleSearch,
    levels: &mut [u8],
) -> (f32, f32) {
    debug_assert!(x.len() <= MAX_GROUP && weights.len() == x.len() && levels.len() == x.len());
    let (Some(&x0), Some(&w0)) = (x.first(), weights.first()) else {
        return (0.0, 0.0);
    };
    let (mut min, mut max) = (x0, x0);
    let (mut sum_w, mut sum_x) = (w0, w0 * x0);
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }

    let nmax_f = nmax as f32;
    let quantize = |iscale: f32, min: f32, v: f32| nearest_int(iscale * (v - min)).clamp(0, nmax);

    // Start from the plain min/max grid.
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for ((l, &v), &w) in levels.iter_mut().zip(x).zip(weights) {
        *l = quantize(iscale, min, v) as u8;
        let diff = scale * f32::from(*l) + min - v;
        best_error += w * (diff * diff);
    }

    let mut trial = [0u8; MAX_GROUP];
    let trial = &mut trial[..x.len().min(MAX_GROUP)];
    for step in 0..=search.steps {
        iscale = (search.rmin + search.rdelta * step as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for ((t, &v), &w) in trial.iter_mut().zip(x).zip(weights) {
            let l = quantize(iscale, min, v);
            *t = l as u8;
            let l = l as f32;
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * v;
        }
        // Weighted least squares for (scale, min) given these levels.
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0.0f32;
            for ((&t, &v), &w) in trial.iter().zip(x).zip(weights) {
                let diff = this_scale * f32::from(t) + this_min - v;
                error += w * (diff * diff);
            }
            if error < best_error {
                levels[..trial.len()].copy_from_slice(trial);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Fits `x ≈ scale · (l − nmax)` with `l ∈ 0..2·nmax`, weighting each element by
/// `x²` (ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights).
/// Writes the biased levels to `levels` and returns the (signed) scale.
///
/// The element of largest magnitude is pinned to level `−nmax` (the side with one
/// more level), then 18 nearby scales are tried and the one that maximises the
/// weighted correlation `Σwxl² / Σwl²` (i.e. minimises the weighted error after
/// refitting the scale) is kept.
pub(super) fn fit_symmetric(x: &[f32], nmax: i32, levels: &mut [u8]) -> f32 {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }

    let nmax_f = nmax as f32;
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Σ w·x·l and Σ w·l² with w = x², in ggml's order.
    let sums = |iscale: f32| {
        x.iter().fold((0.0f32, 0.0f32), |(sumlx, suml2), &v| {
            let l = level(iscale, v) as f32;
            let w = v * v;
            (sumlx + w * v * l, suml2 + w * l * l)
        })
    };
    let set_levels = |iscale: f32, levels: &mut [u8]| {
        for (out, &v) in levels.iter_mut().zip(x) {
            *out = (level(iscale, v) + nmax) as u8;
        }
    };

    let iscale = -nmax_f / max;
    set_levels(iscale, levels);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in (-9..=9).filter(|&s| s != 0) {
        let iscale = -(nmax_f + 0.1 * step as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            set_levels(iscale, levels);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        let cases = [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
            (-7.6, -8),
        ];
        for (v, want) in cases {
            assert_eq!(nearest_int(v), want, "{v}");
        }
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
        // Out of range and NaN give ggml's garbage, not a panic.
        let _ = nearest_int(f32::NAN);
        let _ = nearest_int(1e30);
    }

    #[test]
    fn fit_affine_of_a_constant_group_uses_one_level() {
        let x = [3.0f32; 32];
        let w = [1.0f32; 32];
        let mut l = [7u8; 32];
        let search = ScaleSearch {
            rmin: -1.0,
            rdelta: 0.1,
            steps: 20,
        };
        let (scale, min_neg) = fit_affine(&x, &w, 15, search, &mut l);
        // min is clamped to 0, so the range is [0, 3]: every element gets the same
        // level and the fit reproduces 3 closely.
        assert_eq!(min_neg, 0.0);
        assert!(l.iter().all(|&q| q == l[0]));
        assert!(
            (scale * f32::from(l[0]) - 3.0).abs() < 1e-5,
            "{scale} * {}",
            l[0]
        );
    }

    #[test]
    fn fit_affine_of_zeros_is_zero() {
        let mut l = [7u8; 32];
        let search = ScaleSearch {
            rmin: -1.0,
            rdelta: 0.1,
            steps: 20,
        };
        assert_eq!(
            fit_affine(&[0.0; 32], &[0.0; 32], 15, search, &mut l),
            (0.0, 0.0)
        );
        assert_eq!(l, [0; 32]);
    }

    #[test]
    fn fit_symmetric_pins_the_largest_magnitude_to_the_negative_end() {
        let mut x = [0.25f32; 16];
        x[3] = -2.0;
        let mut l = [0u8; 16];
        let scale = fit_symmetric(&x, 32, &mut l);
        let err = (scale * (f32::from(l[3]) - 32.0) - x[3]).abs();
        assert!(err < 0.05, "scale {scale}, level {}", l[3]);
    }
}
