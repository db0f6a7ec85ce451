//! bf16 matrix products for the linear layers: weights rounded to bf16 once, activations rounded
//! to bf16 row by row, products summed in f32 (AVX512-BF16's `vdpbf16ps`, two products per lane
//! and instruction: twice the f32 rate).
//!
//! A bf16 value keeps f32's exponent and 8 of its 24 significand bits, so each operand is off by
//! at most 2^-9 of itself; products of two bf16 values are exact in f32 and the sums are f32
//! sums. Without AVX512-BF16 a portable kernel does the same arithmetic in plain Rust (its
//! results agree to f32 rounding, not bit for bit: the order of the additions differs).

use half::bf16;

use super::tiles::{self, MR, PANEL};

/// A linear layer's weights, rounded to bf16 and packed for the kernel.
pub struct Weights {
    /// `[panel][k / 2][lane][2]`: for each panel of 16 output columns, pairs of consecutive
    /// inputs for each column, the layout `vdpbf16ps` reads.
    packed: Vec<u16>,
    inputs: usize,
    /// `inputs` rounded up to a multiple of 2.
    depth: usize,
    outputs: usize,
    panels: usize,
}

impl Weights {
    /// Rounds a `(inputs, outputs)` row-major matrix (the transposed weight) to bf16.
    pub fn round(weight_t: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(weight_t.len(), inputs * outputs);
        let depth = inputs.next_multiple_of(2);
        let panels = outputs.div_ceil(PANEL);
        let mut packed = vec![0u16; panels * depth * PANEL];
        for k in 0..inputs {
            for n in 0..outputs {
                let (panel, lane) = (n / PANEL, n % PANEL);
                packed[panel * depth * PANEL + (k / 2) * PANEL * 2 + lane * 2 + k % 2] =
                    bf16::from_f32(weight_t[k * outputs + n]).to_bits();
            }
        }
        Self {
            packed,
            inputs,
            depth,
            outputs,
            panels,
        }
    }

    /// `out (rows x outputs, row stride outputs) += x (rows x inputs) · W^T`, single-threaded.
    /// `scratch` holds the rounded rows between calls (grown as needed).
    pub fn forward_add(&self, x: &[f32], rows: usize, out: &mut [f32], scratch: &mut Vec<u16>) {
        assert!(x.len() >= rows * self.inputs && out.len() >= rows * self.outputs);
        scratch.clear();
        scratch.resize(rows.next_multiple_of(MR) * self.depth, 0);
        for m in 0..rows {
            super::kernels::round_bf16(
                &x[m * self.inputs..][..self.inputs],
                &mut scratch[m * self.depth..][..self.inputs],
            );
        }
        #[cfg(target_arch = "x86_64")]
        if bf16_available() {
            // SAFETY: the CPU has AVX512-F/BW/BF16 (checked); the buffers hold rows (padded to
            // MR) x depth rounded values, panels x depth x 16 packed weights and rows x outputs
            // results, as sized above.
            unsafe { self.forward_avx512(scratch, rows, out) };
            return;
        }
        self.forward_portable(scratch, rows, out);
    }

    /// The same products in plain Rust, for CPUs without AVX512-BF16.
    fn forward_portable(&self, a: &[u16], rows: usize, out: &mut [f32]) {
        let widen = |bits: u16| f32::from_bits(u32::from(bits) << 16);
        let mut sums = [0.0f32; PANEL];
        for m in 0..rows {
            let a = &a[m * self.depth..][..self.depth];
            for panel in 0..self.panels {
                sums.fill(0.0);
                let b = &self.packed[panel * self.depth * PANEL..][..self.depth * PANEL];
                for (pair, weights) in a.chunks_exact(2).zip(b.chunks_exact(2 * PANEL)) {
                    let (x0, x1) = (widen(pair[0]), widen(pair[1]));
                    for (sum, w) in sums.iter_mut().zip(weights.chunks_exact(2)) {
                        *sum += x0 * widen(w[0]) + x1 * widen(w[1]);
                    }
                }
                let first = panel * PANEL;
                let last = (first + PANEL).min(self.outputs);
                let row = &mut out[m * self.outputs..][..self.outputs];
                for n in first..last {
                    row[n] += sums[n - first];
                }
            }
        }
    }

    /// Every tile of the product (the target features are here too, so that the walk and the
    /// tiles inline into one loop).
    ///
    /// # Safety
    /// The CPU must have AVX-512F, BW and BF16, and `a` and `out` must hold `rows` rows of the
    /// input and output widths.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn forward_avx512(&self, a: &[u16], rows: usize, out: &mut [f32]) {
        // SAFETY: the caller upholds this function's safety contract (its doc comment).
        unsafe {
            tiles::walk(rows, self.panels, |m, panel, take| match take {
                3 => self.tile::<3>(a, m, rows, panel, out),
                2 => self.tile::<2>(a, m, rows, panel, out),
                _ => self.tile::<1>(a, m, rows, panel, out),
            });
        }
    }

    /// One MR x (P x 16) tile: rows `m..m + MR` (stores only those below `rows`), panels
    /// `panel..panel + P`.
    ///
    /// # Safety
    /// As for `forward_avx512`, with the tile's panels inside the weights.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[inline]
    unsafe fn tile<const P: usize>(
        &self,
        a: &[u16],
        m: usize,
        rows: usize,
        panel: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the caller upholds this function's safety contract (its doc comment).
        unsafe {
            use std::arch::x86_64::*;
            let depth = self.depth;
            let a = a.as_ptr().add(m * depth);
            let b = self.packed.as_ptr().add(panel * depth * PANEL);
            let mut acc = [[_mm512_setzero_ps(); P]; MR];
            for pair in 0..depth / 2 {
                // Bits reinterpreted as bf16 pairs: __m512i and __m512bh are both 64 plain bytes.
                let as_pairs = |v: __m512i| std::mem::transmute::<__m512i, __m512bh>(v);
                let mut w = [as_pairs(_mm512_setzero_si512()); P];
                for (p, w) in w.iter_mut().enumerate() {
                    *w = as_pairs(_mm512_loadu_si512(
                        b.add(p * depth * PANEL + pair * 2 * PANEL) as *const _,
                    ));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = as_pairs(_mm512_set1_epi32(
                        (a.add(r * depth + pair * 2) as *const i32).read_unaligned(),
                    ));
                    for (acc, &w) in acc.iter_mut().zip(&w) {
                        *acc = _mm512_dpbf16_ps(*acc, x, w);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate().take(rows - m) {
                for (p, &acc) in acc.iter().enumerate() {
                    tiles::add_to_panel(out, m + r, self.outputs, (panel + p) * PANEL, acc);
                }
            }
        }
    }
}

/// Whether this CPU runs the AVX512-BF16 kernel (else the portable one, slower).
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::model::packed::tiles::{reference, test_case, TEST_SHAPES};

    /// The product of the bf16-rounded operands (rounded by `half`, not by the kernels), in f64
    /// (exact products, sums far finer than f32's), and the sum of the terms' magnitudes, which
    /// bounds what f32 rounding can change.
    fn scalar_reference(
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        rows: usize,
        inputs: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let round = |v: f32| f64::from(bf16::from_f32(v).to_f32());
        let outputs = w.len() / inputs;
        let xb: Vec<f64> = x.iter().map(|&v| round(v)).collect();
        let wb: Vec<f64> = w.iter().map(|&v| round(v)).collect();
        let mut sums = Vec::with_capacity(rows * outputs);
        let mut magnitudes = Vec::with_capacity(rows * outputs);
        for m in 0..rows {
            for n in 0..outputs {
                let terms = (0..inputs).map(|k| xb[m * inputs + k] * wb[k * outputs + n]);
                let b = f64::from(bias[m * outputs + n]);
                let (sum, magnitude) = terms.fold((b, b.abs()), |(s, a), t| (s + t, a + t.abs()));
                sums.push(sum);
                magnitudes.push(magnitude);
            }
        }
        (sums, magnitudes)
    }

    /// Each available path (the portable one always, AVX512-BF16 where the CPU has it) rounds
    /// the activations exactly as `half` does and equals the scalar product of the rounded
    /// operands to within f32 rounding: each of the `inputs + 1` additions may err by half an
    /// f32 ulp of a partial sum, so `(inputs + 2) * 2^-24 * sum |terms|` bounds the difference
    /// whatever the order of the additions. The product stays within bf16 rounding of the exact
    /// f32 one.
    #[test]
    fn kernels_equal_the_scalar_reference_to_f32_rounding() {
        let fast = bf16_available();
        eprintln!(
            "bf16: checking the portable path{}",
            if fast {
                " and the AVX512-BF16 path"
            } else {
                "; AVX512-BF16 path not checked (this CPU lacks it)"
            }
        );
        for (rows, inputs, outputs) in TEST_SHAPES {
            let shape = format!("{rows}x{inputs}x{outputs}");
            let (x, w, bias) = test_case(rows, inputs, outputs);
            let (expected, magnitudes) = scalar_reference(&x, &w, &bias, rows, inputs);
            let weights = Weights::round(&w, inputs, outputs);
            let check = |got: &[f32], path: &str| {
                for (i, ((&got, &want), &magnitude)) in
                    got.iter().zip(&expected).zip(&magnitudes).enumerate()
                {
                    let bound = (inputs + 2) as f64 * f64::from(f32::EPSILON) / 2.0 * magnitude;
                    assert!(
                        (f64::from(got) - want).abs() <= bound,
                        "{path}, shape {shape}, value {i}: {got} vs {want} (bound {bound})"
                    );
                }
            };

            let mut scratch = vec![0u16; rows.next_multiple_of(MR) * weights.depth];
            for m in 0..rows {
                crate::encode::model::packed::kernels::round_bf16(
                    &x[m * inputs..][..inputs],
                    &mut scratch[m * weights.depth..][..inputs],
                );
            }
            for m in 0..rows {
                for k in 0..weights.depth {
                    let want = if k < inputs {
                        bf16::from_f32(x[m * inputs + k]).to_bits()
                    } else {
                        0
                    };
                    assert_eq!(scratch[m * weights.depth + k], want, "row {m}, input {k}");
                }
            }
            let mut portable = bias.clone();
            weights.forward_portable(&scratch, rows, &mut portable);
            check(&portable, "portable");

            let mut dispatched = bias.clone();
            let mut dispatched_scratch = Vec::new();
            weights.forward_add(&x, rows, &mut dispatched, &mut dispatched_scratch);
            assert_eq!(dispatched_scratch, scratch);
            check(&dispatched, "dispatched");
            #[cfg(target_arch = "x86_64")]
            if fast {
                let mut out = bias.clone();
                // SAFETY: the CPU has AVX512-F/BW/BF16 (checked); scratch holds rows padded to
                // MR x depth values, `out` rows x outputs.
                unsafe { weights.forward_avx512(&scratch, rows, &mut out) };
                check(&out, "AVX512-BF16");
            }

            let exact = reference(&x, &w, &bias, rows, inputs);
            let scale = (inputs as f32).sqrt();
            let worst = portable
                .iter()
                .zip(&exact)
                .map(|(&got, &want)| (got - want as f32).abs() / scale)
                .fold(0.0f32, f32::max);
            // Two roundings to 8 significand bits (2^-9 relative each), summed like a random walk.
            assert!(worst < 0.01, "{shape}: error {worst}");
            assert!(worst > 0.0, "{shape}: bf16 rounding must show somewhere");
        }
    }
}
