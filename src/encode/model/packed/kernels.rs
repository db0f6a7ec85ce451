//! Element-wise kernels: plain loops the compiler vectorises, built three times (baseline x86-64,
//! AVX2+FMA and AVX-512) and chosen at run time. The loops are written so that every build does
//! the same arithmetic in the same order (explicit 8-lane sums, no fused multiply-add unless
//! written); the wider registers only do more of it at once (AVX-512 took softmax from 0.31 to
//! 0.22 CPU s and GELU from 0.15 to 0.10 on the built-in corpus).

macro_rules! dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        dispatch! { $(#[$meta])* fn $name($($arg: $ty),*) -> () $body }
    };
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn generic($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    generic($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    generic($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

dispatch! {
    /// `row += other`.
    fn add(row: &mut [f32], other: &[f32]) {
        for (r, o) in row.iter_mut().zip(other) {
            *r += o;
        }
    }
}

dispatch! {
    /// LayerNorm of one row in place: `(x - mean) / sqrt(var + eps) * weight + bias`.
    fn layer_norm(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
        let n = row.len() as f32;
        let mean = sum(row) / n;
        let mut squares = [0.0f32; 8];
        let mut chunks = row.chunks_exact(8);
        for chunk in &mut chunks {
            for (s, x) in squares.iter_mut().zip(chunk) {
                let d = x - mean;
                *s += d * d;
            }
        }
        let mut variance = squares.iter().sum::<f32>();
        for x in chunks.remainder() {
            variance += (x - mean) * (x - mean);
        }
        let inverse = 1.0 / (variance / n + eps).sqrt();
        for ((x, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *x = (*x - mean) * inverse * w + b;
        }
    }
}

dispatch! {
    /// Quantises a row to bytes for the int8 products: `round(x / scale) + 128`, with `scale =
    /// max |x| / 127` returned (so values land in 1..=255). `out` is as long as `row`.
    fn quantize_row(row: &[f32], out: &mut [u8]) -> f32 {
        let mut lanes = [0.0f32; 8];
        let mut chunks = row.chunks_exact(8);
        for chunk in &mut chunks {
            for (l, x) in lanes.iter_mut().zip(chunk) {
                let a = x.abs();
                *l = if a > *l { a } else { *l };
            }
        }
        let max = lanes
            .iter()
            .chain(chunks.remainder())
            .fold(0.0f32, |m, &x| if x.abs() > m { x.abs() } else { m });
        if max == 0.0 || !max.is_finite() {
            out.fill(128);
            return if max == 0.0 { 0.0 } else { max };
        }
        let inverse = 127.0 / max;
        for (o, &x) in out.iter_mut().zip(row) {
            *o = ((x * inverse).round_ties_even() + 128.0).clamp(1.0, 255.0) as u8;
        }
        max / 127.0
    }
}

dispatch! {
    /// Rounds a row to bf16 (to nearest, ties to even, as `half::bf16::from_f32` does; NaN stays
    /// NaN). `out` is as long as `row`.
    fn round_bf16(row: &[f32], out: &mut [u16]) {
        for (o, &x) in out.iter_mut().zip(row) {
            let bits = x.to_bits();
            let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
            *o = if x.is_nan() { 0x7fc0 } else { rounded };
        }
    }
}

/// Sum with eight independent lanes, so it vectorises.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for chunk in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

dispatch! {
    /// Softmax of one row in place.
    fn softmax(row: &mut [f32]) {
        let max = max(row);
        for x in row.iter_mut() {
            *x = exp(*x - max);
        }
        let inverse = 1.0 / sum(row);
        for x in row.iter_mut() {
            *x *= inverse;
        }
    }
}

/// Largest value, with eight independent lanes so it vectorises.
#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for chunk in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l = if x > *l { x } else { *l };
        }
    }
    lanes
        .iter()
        .chain(chunks.remainder())
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

dispatch! {
    /// The exact GELU, `x / 2 * (1 + erf(x / sqrt 2))`, in place.
    fn gelu_erf(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            let v = *x;
            *x = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

dispatch! {
    /// The gradient through the exact GELU: `grad * (Φ(x) + x φ(x))`, with Φ the normal CDF
    /// and φ its density, into `out` (training).
    fn gelu_erf_backward(xs: &[f32], grads: &[f32], out: &mut [f32]) {
        const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
        for ((o, &v), &g) in out.iter_mut().zip(xs).zip(grads) {
            let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
            let density = FRAC_1_SQRT_2PI * exp(-0.5 * v * v);
            *o = g * (cdf + v * density);
        }
    }
}

dispatch! {
    /// The tanh approximation of GELU, in place.
    fn gelu_tanh(xs: &mut [f32]) {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        for x in xs.iter_mut() {
            let v = *x;
            let inner = SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v);
            // tanh(u) = 1 - 2 / (exp(2u) + 1), with the argument clamped so exp stays finite.
            let u = inner.clamp(-40.0, 40.0);
            let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
            *x = 0.5 * v * (1.0 + tanh);
        }
    }
}

/// `exp(x)` for x <= ~88, within ~2 ulp (Cephes' expf polynomial); branch-free, so loops over
/// it vectorise. Inputs below -87 give ~1e-38 instead of a denormal or 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 x 2^23: adding it rounds to an integer, kept in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let rounded = x * LOG2E + ROUND;
    let n = rounded - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n, built from n's bits in `rounded` with integer arithmetic (a float-to-int cast
    // would keep the loop from vectorising).
    let scale = f32::from_bits(
        rounded
            .to_bits()
            .wrapping_sub(ROUND.to_bits())
            .wrapping_add(127)
            << 23,
    );
    y * scale
}

/// `erf(x)` within a few ulp: the rational approximation Eigen and XLA use for f32, on
/// [-4, 4] (outside it erf is +-1 in f32). Branch-free, so loops over it vectorise.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    p *= x;
    let mut q = -1.456_607_2e-5;
    q = q * x2 - 2.133_740_5e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::model::packed::tiles::pseudo_random;

    /// Which build the dispatcher runs on this CPU: only that one can be checked here (the
    /// builds share one generic body, so the others differ only in the instructions chosen).
    fn dispatched_build() -> &'static str {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
            {
                return "AVX-512";
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return "AVX2+FMA";
            }
        }
        "baseline"
    }

    /// Row lengths around the 8- and 16-lane widths, and the model's.
    const LENGTHS: [usize; 7] = [1, 7, 8, 17, 33, 384, 1537];

    fn rows() -> impl Iterator<Item = Vec<f32>> {
        LENGTHS.iter().map(|&len| {
            pseudo_random(len as u64 + 11, len)
                .iter()
                .map(|v| v * 6.0)
                .collect()
        })
    }

    /// The element-wise kernels on the build this CPU dispatches to, against plain scalar
    /// references in f64 (or, for the exact ones, bit for bit).
    #[test]
    fn kernels_match_scalar_references() {
        eprintln!(
            "kernels: checking the {} build (the one this CPU runs)",
            dispatched_build()
        );
        for row in rows() {
            let len = row.len();
            let other = pseudo_random(len as u64 + 99, len);

            let mut sum = row.clone();
            add(&mut sum, &other);
            let expected: Vec<f32> = row.iter().zip(&other).map(|(a, b)| a + b).collect();
            assert_eq!(sum, expected, "add, length {len}");

            let weight = pseudo_random(len as u64 + 5, len);
            let bias = pseudo_random(len as u64 + 6, len);
            let mut normed = row.clone();
            layer_norm(&mut normed, &weight, &bias, 1e-12);
            let n = len as f64;
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let variance = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            for (i, &got) in normed.iter().enumerate() {
                let z = if variance > 0.0 {
                    (f64::from(row[i]) - mean) / (variance + 1e-12).sqrt()
                } else {
                    0.0
                };
                let want = z * f64::from(weight[i]) + f64::from(bias[i]);
                let tolerance = 1e-5 * (1.0 + z.abs());
                assert!(
                    (f64::from(got) - want).abs() <= tolerance,
                    "layer_norm, length {len}, value {i}: {got} vs {want}"
                );
            }

            let mut probabilities = row.clone();
            softmax(&mut probabilities);
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let exps: Vec<f64> = row.iter().map(|&v| (f64::from(v) - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for (i, (&got, e)) in probabilities.iter().zip(&exps).enumerate() {
                let want = e / total;
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * want + 1e-12,
                    "softmax, length {len}, value {i}: {got} vs {want}"
                );
            }

            let mut erf_gelu = row.clone();
            gelu_erf(&mut erf_gelu);
            let mut tanh_gelu = row.clone();
            gelu_tanh(&mut tanh_gelu);
            for (i, &v) in row.iter().enumerate() {
                let v64 = f64::from(v);
                let want = 0.5 * v64 * (1.0 + candle_core::cpu::erf::erf_f64(v64 / 2f64.sqrt()));
                let tolerance = 1e-6 * (1.0 + v64.abs());
                assert!(
                    (f64::from(erf_gelu[i]) - want).abs() <= tolerance,
                    "gelu_erf({v}): {} vs {want}",
                    erf_gelu[i]
                );
                let inner = (2.0 / std::f64::consts::PI).sqrt() * (v64 + 0.044715 * v64.powi(3));
                let want = 0.5 * v64 * (1.0 + inner.tanh());
                assert!(
                    (f64::from(tanh_gelu[i]) - want).abs() <= tolerance,
                    "gelu_tanh({v}): {} vs {want}",
                    tanh_gelu[i]
                );
            }

            let mut bytes = vec![0u8; len];
            let scale = quantize_row(&row, &mut bytes);
            let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(scale, max / 127.0, "quantize_row scale, length {len}");
            for (i, (&v, &b)) in row.iter().zip(&bytes).enumerate() {
                let want = ((v * (127.0 / max)).round_ties_even() + 128.0).clamp(1.0, 255.0);
                assert_eq!(f32::from(b), want, "quantize_row, length {len}, value {i}");
            }

            let mut bits = vec![0u16; len];
            round_bf16(&row, &mut bits);
            let want: Vec<u16> = row
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_bits())
                .collect();
            assert_eq!(bits, want, "round_bf16, length {len}");
        }
    }

    #[test]
    fn exp_is_close_to_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let relative = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(relative);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "relative error {worst}");
    }

    #[test]
    fn erf_is_close_to_candle() {
        let mut worst = 0.0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            let expected = candle_core::cpu::erf::erf_f64(x as f64);
            worst = worst.max((erf(x) as f64 - expected).abs());
            x += 0.001;
        }
        assert!(worst < 5e-7, "absolute error {worst}");
    }

    #[test]
    fn bf16_rounding_matches_half() {
        let values = [
            0.0f32,
            -0.0,
            1.0,
            1.0 + 1.0 / 256.0, // a tie: rounds to even (down)
            1.0 + 3.0 / 256.0, // a tie: rounds to even (up)
            -3.3333333,
            1e-40,
            6.5e37,
            f32::MAX,
            f32::INFINITY,
        ];
        let mut out = [0u16; 10];
        round_bf16(&values, &mut out);
        for (x, bits) in values.iter().zip(out) {
            assert_eq!(bits, half::bf16::from_f32(*x).to_bits(), "{x}");
        }
        let mut nan = [0u16; 1];
        round_bf16(&[f32::NAN], &mut nan);
        assert!(half::bf16::from_bits(nan[0]).is_nan());
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut row = [1.0f32, 2.0, 3.0, -1e30, 0.5];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[3] < 1e-30);
        assert!(row[2] > row[1] && row[1] > row[0]);
    }
}
