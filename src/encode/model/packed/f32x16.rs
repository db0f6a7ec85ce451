//! f32 matrix products for the linear layers with the weights packed once, at load: the tiling of
//! [`super::tiles`] with one fused multiply-add per weight and row (AVX-512F).
//!
//! `gemm` packs the weights again for every call (every chunk of rows), which cost ~8% of the
//! forward; here that work is done once per model.

use super::tiles::{self, MR, PANEL};

/// A linear layer's weights packed for the kernel: `[panel][k][lane]`.
pub struct Weights {
    packed: Vec<f32>,
    inputs: usize,
    outputs: usize,
    panels: usize,
}

impl Weights {
    /// Packs a `(inputs, outputs)` row-major matrix (the transposed weight).
    pub fn pack(weight_t: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(weight_t.len(), inputs * outputs);
        let panels = outputs.div_ceil(PANEL);
        let mut packed = vec![0.0f32; panels * inputs * PANEL];
        for k in 0..inputs {
            for n in 0..outputs {
                packed[(n / PANEL) * inputs * PANEL + k * PANEL + n % PANEL] =
                    weight_t[k * outputs + n];
            }
        }
        Self {
            packed,
            inputs,
            outputs,
            panels,
        }
    }

    /// `out (rows x outputs) += x (rows x inputs) · W^T`, single-threaded. Only built where
    /// [`available`] (the caller uses gemm elsewhere).
    pub fn forward_add(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        assert!(x.len() >= rows * self.inputs && out.len() >= rows * self.outputs);
        assert!(available(), "the packed f32 kernel needs AVX-512F");
        // SAFETY: the CPU has AVX-512F (asserted); x holds rows x inputs values, the packed
        // weights panels x inputs x 16, out rows x outputs.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            self.forward_avx512(x, rows, out)
        };
    }

    /// Every tile of the product (the target feature is here too, so that the walk and the tiles
    /// inline into one loop).
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and `x` and `out` must hold `rows` rows of the input and
    /// output widths.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn forward_avx512(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        // SAFETY: the caller upholds this function's safety contract (its doc comment).
        unsafe {
            // A full tile reads rows m..m + MR, which exist; the last rows go one at a time.
            tiles::walk(rows, self.panels, |m, panel, take| {
                match (take, m + MR <= rows) {
                    (3, true) => self.tile::<3, MR>(x, m, panel, out),
                    (2, true) => self.tile::<2, MR>(x, m, panel, out),
                    (_, true) => self.tile::<1, MR>(x, m, panel, out),
                    (3, false) => (m..rows).for_each(|r| self.tile::<3, 1>(x, r, panel, out)),
                    (2, false) => (m..rows).for_each(|r| self.tile::<2, 1>(x, r, panel, out)),
                    (_, false) => (m..rows).for_each(|r| self.tile::<1, 1>(x, r, panel, out)),
                }
            });
        }
    }

    /// One R x (P x 16) tile: rows `m..m + R`, panels `panel..panel + P`.
    ///
    /// # Safety
    /// As for `forward_avx512`, with the tile's rows and panels inside `x`, `out` and the weights.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const P: usize, const R: usize>(
        &self,
        x: &[f32],
        m: usize,
        panel: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the caller upholds this function's safety contract (its doc comment).
        unsafe {
            use std::arch::x86_64::*;
            let inputs = self.inputs;
            let a = x.as_ptr().add(m * inputs);
            let b = self.packed.as_ptr().add(panel * inputs * PANEL);
            let mut acc = [[_mm512_setzero_ps(); P]; R];
            for k in 0..inputs {
                let mut w = [_mm512_setzero_ps(); P];
                for (p, w) in w.iter_mut().enumerate() {
                    *w = _mm512_loadu_ps(b.add(p * inputs * PANEL + k * PANEL));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = _mm512_set1_ps(*a.add(r * inputs + k));
                    for (acc, &w) in acc.iter_mut().zip(&w) {
                        *acc = _mm512_fmadd_ps(v, w, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (p, &acc) in acc.iter().enumerate() {
                    tiles::add_to_panel(out, m + r, self.outputs, (panel + p) * PANEL, acc);
                }
            }
        }
    }
}

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
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

    /// The packed layout read back with plain scalar loops over the same tile walk: what the
    /// AVX-512 tile computes, one multiply-add at a time. There is no portable kernel (the
    /// encoder uses gemm without AVX-512), so this checks the packing and the walk everywhere.
    fn scalar_over_packed(weights: &Weights, x: &[f32], rows: usize, out: &mut [f32]) {
        let (inputs, outputs) = (weights.inputs, weights.outputs);
        tiles::walk(rows, weights.panels, |m, panel, take| {
            for r in m..(m + MR).min(rows) {
                for p in panel..panel + take {
                    for lane in 0..PANEL {
                        let n = p * PANEL + lane;
                        if n >= outputs {
                            continue;
                        }
                        let sum: f32 = (0..inputs)
                            .map(|k| {
                                x[r * inputs + k]
                                    * weights.packed[p * inputs * PANEL + k * PANEL + lane]
                            })
                            .sum();
                        out[r * outputs + n] += sum;
                    }
                }
            }
        });
    }

    /// Every available path (the scalar walk over the packed weights always, the AVX-512
    /// kernel where the CPU has it) computes the product to f32 rounding on every test shape.
    #[test]
    fn kernel_matches_the_product() {
        let fast = available();
        eprintln!(
            "f32x16: checking the packing with scalar loops{}",
            if fast {
                " and the AVX-512F kernel"
            } else {
                "; AVX-512F kernel not checked (this CPU lacks it)"
            }
        );
        for (rows, inputs, outputs) in TEST_SHAPES {
            let (x, w, bias) = test_case(rows, inputs, outputs);
            let weights = Weights::pack(&w, inputs, outputs);
            let exact = reference(&x, &w, &bias, rows, inputs);
            let check = |out: &[f32], path: &str| {
                assert_eq!(out.len(), exact.len());
                for (i, (&got, &want)) in out.iter().zip(&exact).enumerate() {
                    let tolerance = 1e-6 * (inputs as f64).sqrt() * (1.0 + want.abs());
                    assert!(
                        (f64::from(got) - want).abs() <= tolerance,
                        "{path}, shape {rows}x{inputs}x{outputs}, value {i}: {got} vs {want}"
                    );
                }
            };
            let mut scalar = bias.clone();
            scalar_over_packed(&weights, &x, rows, &mut scalar);
            check(&scalar, "scalar");
            if fast {
                let mut out = bias.clone();
                weights.forward_add(&x, rows, &mut out);
                check(&out, "AVX-512F");
            }
        }
    }
}
