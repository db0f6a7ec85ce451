//! f32 matrix products for the linear layers with the weights packed once, at load: the same
//! register tiling as the bf16 and int8 kernels (8 rows x 48 columns of accumulators, weights in
//! panels of 16 output columns), with one fused multiply-add per weight and row (AVX-512F).
//!
//! `gemm` packs the weights again for every call (every chunk of rows), which cost ~8% of the
//! forward; here that work is done once per model.

/// Output columns per panel: one 512-bit register of f32 lanes.
const PANEL: usize = 16;
/// Rows per register tile.
const MR: usize = 8;
/// Panels per register tile.
const J: usize = 3;

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

    /// `out (rows x outputs) += x (rows x inputs) · W^T`, single-threaded, or `None` when this
    /// CPU lacks AVX-512F (the caller then uses gemm).
    pub fn forward_add(&self, x: &[f32], rows: usize, out: &mut [f32]) -> Option<()> {
        assert!(x.len() >= rows * self.inputs && out.len() >= rows * self.outputs);
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: the CPU has AVX-512F (checked); the slices hold rows x inputs inputs,
            // panels x inputs x 16 packed weights and rows x outputs results.
            unsafe { self.forward_avx512(x, rows, out) };
            return Some(());
        }
        None
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn forward_avx512(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        let mut panel = 0;
        while panel < self.panels {
            let take = (self.panels - panel).min(J);
            let mut m = 0;
            while m < rows {
                let height = (rows - m).min(MR);
                match (take, height == MR) {
                    (3, true) => self.tile::<3, MR>(x, m, panel, out),
                    (2, true) => self.tile::<2, MR>(x, m, panel, out),
                    (_, true) => self.tile::<1, MR>(x, m, panel, out),
                    // The last rows of a chunk, one at a time (x has no padding rows to read).
                    (3, false) => (m..rows).for_each(|r| self.tile::<3, 1>(x, r, panel, out)),
                    (2, false) => (m..rows).for_each(|r| self.tile::<2, 1>(x, r, panel, out)),
                    (_, false) => (m..rows).for_each(|r| self.tile::<1, 1>(x, r, panel, out)),
                }
                m += MR;
            }
            panel += take;
        }
    }

    /// One R x (P x 16) tile: rows `m..m + R`, panels `panel..panel + P`.
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
                let first = (panel + p) * PANEL;
                let valid = self.outputs.saturating_sub(first).min(PANEL);
                let mask: __mmask16 = if valid == PANEL {
                    0xffff
                } else {
                    (1u16 << valid) - 1
                };
                let dst = out.as_mut_ptr().add((m + r) * self.outputs + first);
                let value = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), acc);
                _mm512_mask_storeu_ps(dst, mask, value);
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

    /// The kernel computes the product to f32 rounding, for shapes with every edge: rows not a
    /// multiple of the tile height, outputs not a multiple of 16 or 48.
    #[test]
    fn kernel_matches_the_product() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        for &(rows, inputs, outputs) in &[(1, 3, 16), (13, 30, 50), (37, 384, 1152), (9, 1536, 384)]
        {
            let value = |i: usize| ((i * 7919) % 1000) as f32 / 500.0 - 1.0;
            let x: Vec<f32> = (0..rows * inputs).map(value).collect();
            let w: Vec<f32> = (0..inputs * outputs).map(|i| value(i * 31 + 5)).collect();
            let weights = Weights::pack(&w, inputs, outputs);
            let bias: Vec<f32> = (0..rows * outputs).map(|i| (i % 7) as f32).collect();
            let mut out = bias.clone();
            weights.forward_add(&x, rows, &mut out).unwrap();
            for m in 0..rows {
                for n in 0..outputs {
                    let exact: f64 = (0..inputs)
                        .map(|k| f64::from(x[m * inputs + k]) * f64::from(w[k * outputs + n]))
                        .sum::<f64>()
                        + f64::from(bias[m * outputs + n]);
                    let got = f64::from(out[m * outputs + n]);
                    assert!(
                        (got - exact).abs() <= 1e-5 * (inputs as f64).sqrt() * (1.0 + exact.abs()),
                        "shape {rows}x{inputs}x{outputs} at ({m}, {n}): {got} vs {exact}"
                    );
                }
            }
        }
    }
}
