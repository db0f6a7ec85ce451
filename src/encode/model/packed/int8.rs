//! 8-bit matrix products for the linear layers: weights quantised once per output channel,
//! activations quantised per row at run time (dynamic quantisation), products accumulated exactly
//! in 32-bit integers and scaled back to f32.
//!
//! With `W` quantised as `w = sw[n] * qw` (`qw` in -127..=127) and a row of `x` as
//! `x = sx[m] * qx` (`qx` in -127..=127), `x · W^T = sx[m] * sw[n] * sum_k qx * qw`. AVX512-VNNI's
//! `vpdpbusd` multiplies unsigned by signed bytes, so activations are stored shifted by 128
//! (`ux = qx + 128`, 1..=255) and the shift is taken back out with the weights' column sums:
//! `sum_k qx * qw = sum_k ux * qw - 128 * sum_k qw`.
//!
//! The integer sums are exact, so the VNNI kernel and the portable one give the same bits; only
//! the choice of quantised values loses precision (measured in BENCHMARKS.md).

use super::tiles::{self, MR, PANEL};

/// A linear layer's weights, quantised and packed for the kernel.
pub struct Weights {
    /// `[panel][k / 4][lane][4]`: for each panel of 16 output columns, groups of four
    /// consecutive inputs for each column, the layout `vpdpbusd` reads.
    packed: Vec<i8>,
    /// Per output (padded to whole panels): the dequantisation scale.
    scales: Vec<f32>,
    /// Per output (padded to whole panels): `128 * sum_k qw`.
    corrections: Vec<i32>,
    inputs: usize,
    /// `inputs` rounded up to a multiple of 4.
    depth: usize,
    outputs: usize,
    panels: usize,
}

impl Weights {
    /// Quantises a `(inputs, outputs)` row-major matrix (the transposed weight).
    pub fn quantize(weight_t: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(weight_t.len(), inputs * outputs);
        let depth = inputs.next_multiple_of(4);
        let panels = outputs.div_ceil(PANEL);
        let mut scales = vec![0.0f32; panels * PANEL];
        for (n, scale) in scales.iter_mut().enumerate().take(outputs) {
            let max = (0..inputs).fold(0.0f32, |m, k| m.max(weight_t[k * outputs + n].abs()));
            *scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        }
        let mut packed = vec![0i8; panels * depth * PANEL];
        let mut corrections = vec![0i32; panels * PANEL];
        for n in 0..outputs {
            let inverse = 1.0 / scales[n];
            let (panel, lane) = (n / PANEL, n % PANEL);
            let mut sum = 0i32;
            for k in 0..inputs {
                let q = (weight_t[k * outputs + n] * inverse)
                    .round_ties_even()
                    .clamp(-127.0, 127.0) as i8;
                sum += i32::from(q);
                packed[panel * depth * PANEL + (k / 4) * PANEL * 4 + lane * 4 + k % 4] = q;
            }
            corrections[n] = 128 * sum;
        }
        Self {
            packed,
            scales,
            corrections,
            inputs,
            depth,
            outputs,
            panels,
        }
    }

    /// `out (rows x outputs, row stride outputs) += x (rows x inputs) · W^T`, single-threaded.
    /// `scratch` holds the quantised rows between calls (grown as needed).
    pub fn forward_add(&self, x: &[f32], rows: usize, out: &mut [f32], scratch: &mut Scratch) {
        assert!(x.len() >= rows * self.inputs && out.len() >= rows * self.outputs);
        let padded_rows = rows.next_multiple_of(MR);
        scratch.quantize(x, rows, padded_rows, self.inputs, self.depth);
        #[cfg(target_arch = "x86_64")]
        if vnni_available() {
            // SAFETY: the CPU has AVX512-F/BW/VNNI (checked); the buffers hold padded_rows x
            // depth quantised values, panels x depth x 16 packed weights and rows x outputs
            // results, as sized above.
            unsafe { self.forward_vnni(scratch, rows, out) };
            return;
        }
        self.forward_portable(scratch, rows, out);
    }

    /// The same integer arithmetic in plain Rust, for CPUs without AVX512-VNNI.
    fn forward_portable(&self, scratch: &Scratch, rows: usize, out: &mut [f32]) {
        let mut sums = [0i32; PANEL];
        for m in 0..rows {
            let a = &scratch.values[m * self.depth..][..self.depth];
            for panel in 0..self.panels {
                sums.fill(0);
                let b = &self.packed[panel * self.depth * PANEL..][..self.depth * PANEL];
                for (group, weights) in a.chunks_exact(4).zip(b.chunks_exact(4 * PANEL)) {
                    for (sum, w) in sums.iter_mut().zip(weights.chunks_exact(4)) {
                        for (&u, &q) in group.iter().zip(w) {
                            *sum += i32::from(u) * i32::from(q);
                        }
                    }
                }
                self.store(m, panel, &sums, scratch.scales[m], out);
            }
        }
    }

    /// Scales one row's sums for one panel back to f32 and adds them to `out`.
    #[inline(always)]
    fn store(&self, m: usize, panel: usize, sums: &[i32; PANEL], row_scale: f32, out: &mut [f32]) {
        let first = panel * PANEL;
        let last = (first + PANEL).min(self.outputs);
        let row = &mut out[m * self.outputs..][..self.outputs];
        for n in first..last {
            let exact = sums[n - first] - self.corrections[n];
            // Multiplied, then added, as the VNNI kernel does it, so both give the same bits.
            row[n] += exact as f32 * (self.scales[n] * row_scale);
        }
    }

    /// Every tile of the product (the target features are here too, so that the walk and the
    /// tiles inline into one loop).
    ///
    /// # Safety
    /// The CPU must have AVX-512F, BW and VNNI, and `scratch` and `out` must hold `rows` rows of
    /// the input and output widths.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn forward_vnni(&self, scratch: &Scratch, rows: usize, out: &mut [f32]) {
        // SAFETY: the caller upholds this function's safety contract (its doc comment).
        unsafe {
            tiles::walk(rows, self.panels, |m, panel, take| match take {
                3 => self.tile_vnni::<3>(scratch, m, rows, panel, out),
                2 => self.tile_vnni::<2>(scratch, m, rows, panel, out),
                _ => self.tile_vnni::<1>(scratch, m, rows, panel, out),
            });
        }
    }

    /// One MR x (P x 16) tile: rows `m..m + MR` (stores only those below `rows`), panels
    /// `panel..panel + P`.
    ///
    /// # Safety
    /// As for `forward_vnni`, with the tile's panels inside the weights.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn tile_vnni<const P: usize>(
        &self,
        scratch: &Scratch,
        m: usize,
        rows: usize,
        panel: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the caller upholds this function's safety contract (its doc comment).
        unsafe {
            use std::arch::x86_64::*;
            let depth = self.depth;
            let groups = depth / 4;
            let a = scratch.values.as_ptr().add(m * depth);
            let b = self.packed.as_ptr().add(panel * depth * PANEL);
            let mut acc = [[_mm512_setzero_si512(); P]; MR];
            for g in 0..groups {
                let mut w = [_mm512_setzero_si512(); P];
                for (p, w) in w.iter_mut().enumerate() {
                    *w = _mm512_loadu_si512(b.add(p * depth * PANEL + g * 4 * PANEL) as *const _);
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_epi32(
                        (a.add(r * depth + g * 4) as *const i32).read_unaligned(),
                    );
                    for (acc, &w) in acc.iter_mut().zip(&w) {
                        *acc = _mm512_dpbusd_epi32(*acc, x, w);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate().take(rows - m) {
                let row_scale = _mm512_set1_ps(scratch.scales[m + r]);
                for (p, &acc) in acc.iter().enumerate() {
                    let first = (panel + p) * PANEL;
                    // Both are padded to whole panels.
                    let correction =
                        _mm512_loadu_si512(self.corrections.as_ptr().add(first) as *const _);
                    let scale =
                        _mm512_mul_ps(_mm512_loadu_ps(self.scales.as_ptr().add(first)), row_scale);
                    let exact = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, correction));
                    tiles::add_to_panel(
                        out,
                        m + r,
                        self.outputs,
                        first,
                        _mm512_mul_ps(exact, scale),
                    );
                }
            }
        }
    }
}

/// Whether this CPU runs the VNNI kernel (else the portable one, same results, slower).
pub fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Quantised activations of one chunk: `values` (rows padded to the tile height, shifted by
/// 128) and one scale per row.
#[derive(Default)]
pub struct Scratch {
    values: Vec<u8>,
    scales: Vec<f32>,
}

impl Scratch {
    fn quantize(
        &mut self,
        x: &[f32],
        rows: usize,
        padded_rows: usize,
        inputs: usize,
        depth: usize,
    ) {
        self.values.clear();
        self.values.resize(padded_rows * depth, 128);
        self.scales.clear();
        self.scales.resize(padded_rows, 0.0);
        let fast = vnni_available();
        for m in 0..rows {
            let row = &x[m * inputs..][..inputs];
            let target = &mut self.values[m * depth..][..inputs];
            self.scales[m] = if fast {
                // SAFETY: the CPU has AVX512-F/BW (checked with VNNI).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    quantize_row_avx512(row, target)
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!()
            } else {
                super::kernels::quantize_row(row, target)
            };
        }
    }
}

/// [`super::kernels::quantize_row`] with AVX-512, same results: the maximum is exact whatever the
/// order, the product rounds the same, and the conversion rounds to nearest even like
/// `round_ties_even`.
///
/// # Safety
/// The CPU must have AVX-512F and BW, and `out` must be at least as long as `row`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_row_avx512(row: &[f32], out: &mut [u8]) -> f32 {
    // SAFETY: the caller upholds this function's safety contract (its doc comment).
    unsafe {
        use std::arch::x86_64::*;
        let len = row.len();
        let whole = len / 16 * 16;
        let mask_tail: __mmask16 = ((1u32 << (len - whole)) - 1) as __mmask16;
        let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
        let abs =
            |v: __m512| _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
        let mut maxes = _mm512_setzero_ps();
        for i in (0..whole).step_by(16) {
            maxes = _mm512_max_ps(maxes, abs(_mm512_loadu_ps(row.as_ptr().add(i))));
        }
        if whole < len {
            maxes = _mm512_max_ps(
                maxes,
                abs(_mm512_maskz_loadu_ps(mask_tail, row.as_ptr().add(whole))),
            );
        }
        let max = _mm512_reduce_max_ps(maxes);
        if max == 0.0 || !max.is_finite() {
            // Rare; the portable code handles it the same way.
            return super::kernels::quantize_row(row, out);
        }
        let inverse = _mm512_set1_ps(127.0 / max);
        let (low, high, shift) = (
            _mm512_set1_epi32(1),
            _mm512_set1_epi32(255),
            _mm512_set1_epi32(128),
        );
        let convert = |v: __m512| {
            let q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, inverse)), shift);
            _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(q, low), high))
        };
        for i in (0..whole).step_by(16) {
            let bytes = convert(_mm512_loadu_ps(row.as_ptr().add(i)));
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, bytes);
        }
        if whole < len {
            let bytes = convert(_mm512_maskz_loadu_ps(mask_tail, row.as_ptr().add(whole)));
            _mm_mask_storeu_epi8(out.as_mut_ptr().add(whole) as *mut i8, mask_tail, bytes);
        }
        max / 127.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::model::packed::tiles::{pseudo_random, reference, test_case, TEST_SHAPES};

    /// The int8 product written out plainly, the arithmetic the module doc defines without the
    /// packing or the +128 shift: a scale per output (`max |w| / 127`) and per row
    /// (`max |x| / 127`), signed values rounded to nearest even, exact integer sums, then
    /// `out = bias + sum * (weight scale * row scale)`. Returns the output and each row's
    /// shifted bytes (`q + 128`), what the kernels keep in their scratch.
    fn scalar_reference(
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        rows: usize,
        inputs: usize,
    ) -> (Vec<f32>, Vec<Vec<u8>>) {
        let outputs = w.len() / inputs;
        let weight_scale: Vec<f32> = (0..outputs)
            .map(|n| {
                let max = (0..inputs).fold(0.0f32, |m, k| m.max(w[k * outputs + n].abs()));
                if max > 0.0 {
                    max / 127.0
                } else {
                    1.0
                }
            })
            .collect();
        let quantized_weight = |k: usize, n: usize| -> i64 {
            (w[k * outputs + n] * (1.0 / weight_scale[n]))
                .round_ties_even()
                .clamp(-127.0, 127.0) as i64
        };
        let mut out = bias.to_vec();
        let mut bytes = Vec::new();
        for m in 0..rows {
            let row = &x[m * inputs..][..inputs];
            let max = row.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let (row_scale, q): (f32, Vec<i64>) = if max == 0.0 {
                (0.0, vec![0; inputs])
            } else {
                let inverse = 127.0 / max;
                let q = row
                    .iter()
                    .map(|v| (v * inverse).round_ties_even().clamp(-127.0, 127.0) as i64)
                    .collect();
                (max / 127.0, q)
            };
            bytes.push(q.iter().map(|&v| (v + 128) as u8).collect());
            for n in 0..outputs {
                let sum: i64 = (0..inputs).map(|k| q[k] * quantized_weight(k, n)).sum();
                out[m * outputs + n] += sum as f32 * (weight_scale[n] * row_scale);
            }
        }
        (out, bytes)
    }

    fn assert_rows(scratch: &Scratch, bytes: &[Vec<u8>], depth: usize, path: &str) {
        for (m, row) in bytes.iter().enumerate() {
            let got = &scratch.values[m * depth..][..depth];
            assert_eq!(&got[..row.len()], &row[..], "{path}: quantised row {m}");
            assert!(
                got[row.len()..].iter().all(|&b| b == 128),
                "{path}: padding"
            );
        }
    }

    /// Each available path (the portable one always, VNNI where the CPU has it) equals the
    /// scalar reference bit for bit, quantised rows included, on every test shape; and the
    /// product is close to the exact f32 one.
    #[test]
    fn kernels_equal_the_scalar_reference_and_approximate_f32() {
        let vnni = vnni_available();
        eprintln!(
            "int8: checking the portable path{}",
            if vnni {
                " and the AVX512-VNNI path"
            } else {
                "; AVX512-VNNI path not checked (this CPU lacks it)"
            }
        );
        for (rows, inputs, outputs) in TEST_SHAPES {
            let shape = format!("{rows}x{inputs}x{outputs}");
            let (x, w, bias) = test_case(rows, inputs, outputs);
            let (expected, bytes) = scalar_reference(&x, &w, &bias, rows, inputs);
            let weights = Weights::quantize(&w, inputs, outputs);

            let mut portable = bias.clone();
            let mut scratch = Scratch::default();
            scratch
                .values
                .resize(rows.next_multiple_of(MR) * weights.depth, 128);
            scratch.scales.resize(rows.next_multiple_of(MR), 0.0);
            for m in 0..rows {
                scratch.scales[m] = crate::encode::model::packed::kernels::quantize_row(
                    &x[m * inputs..][..inputs],
                    &mut scratch.values[m * weights.depth..][..inputs],
                );
            }
            assert_rows(&scratch, &bytes, weights.depth, "portable");
            weights.forward_portable(&scratch, rows, &mut portable);
            assert_eq!(portable, expected, "portable, shape {shape}");

            let mut dispatched = bias.clone();
            let mut scratch = Scratch::default();
            weights.forward_add(&x, rows, &mut dispatched, &mut scratch);
            assert_rows(&scratch, &bytes, weights.depth, "dispatched");
            assert_eq!(dispatched, expected, "dispatched, shape {shape}");
            #[cfg(target_arch = "x86_64")]
            if vnni {
                let mut out = bias.clone();
                // SAFETY: the CPU has AVX512-F/BW/VNNI (checked); scratch was sized for these
                // rows by forward_add above, `out` holds rows x outputs.
                unsafe { weights.forward_vnni(&scratch, rows, &mut out) };
                assert_eq!(out, expected, "VNNI, shape {shape}");
            }

            let exact = reference(&x, &w, &bias, rows, inputs);
            let scale = (inputs as f32).sqrt();
            let worst = expected
                .iter()
                .zip(&exact)
                .map(|(&got, &want)| (got - want as f32).abs() / scale)
                .fold(0.0f32, f32::max);
            // Two 8-bit roundings of values in [-1, 1]: errors of ~1/254 each, summed over
            // `inputs` terms like a random walk.
            assert!(worst < 0.02, "shape {shape}: error {worst}");
        }
    }

    /// The AVX-512 row quantiser (where the CPU has it) and the portable one equal the scalar
    /// definition on rows of every length mod 16, including zero and non-finite rows.
    #[test]
    fn row_quantisers_equal_the_scalar_reference() {
        let vnni = vnni_available();
        eprintln!(
            "int8 rows: checking the portable quantiser{}",
            if vnni {
                " and the AVX-512 one"
            } else {
                "; the AVX-512 one not checked (this CPU lacks AVX512-VNNI)"
            }
        );
        let mut cases: Vec<Vec<f32>> = (1..=40).map(|len| pseudo_random(len as u64, len)).collect();
        cases.push(vec![0.0; 19]);
        cases.push(vec![1.0, f32::INFINITY, -2.0]);
        cases.push(vec![0.5, -0.5, 0.25, 1.5 / 127.0, 2.5 / 127.0]);
        for row in &cases {
            let max = row
                .iter()
                .fold(0.0f32, |a, v| if v.abs() > a { v.abs() } else { a });
            let (scale, expected): (f32, Vec<u8>) = if max == 0.0 || !max.is_finite() {
                (if max == 0.0 { 0.0 } else { max }, vec![128; row.len()])
            } else {
                let inverse = 127.0 / max;
                let bytes = row
                    .iter()
                    .map(|v| ((v * inverse).round_ties_even() + 128.0).clamp(1.0, 255.0) as u8)
                    .collect();
                (max / 127.0, bytes)
            };
            let mut out = vec![0u8; row.len()];
            let got = crate::encode::model::packed::kernels::quantize_row(row, &mut out);
            assert_eq!(
                (got.to_bits(), &out),
                (scale.to_bits(), &expected),
                "{row:?}"
            );
            #[cfg(target_arch = "x86_64")]
            if vnni {
                let mut out = vec![0u8; row.len()];
                // SAFETY: the CPU has AVX512-F/BW (checked with VNNI).
                let got = unsafe { quantize_row_avx512(row, &mut out) };
                assert_eq!(
                    (got.to_bits(), &out),
                    (scale.to_bits(), &expected),
                    "{row:?}"
                );
            }
        }
    }

    #[test]
    fn zero_rows_and_zero_weights_are_exact() {
        let weights = Weights::quantize(&[0.0; 8 * 16], 8, 16);
        let mut out = vec![1.0f32; 2 * 16];
        let mut scratch = Scratch::default();
        weights.forward_add(&[0.5; 16], 2, &mut out, &mut scratch);
        assert!(out.iter().all(|&v| v == 1.0));
        let weights = Weights::quantize(&pseudo_random(3, 8 * 16), 8, 16);
        weights.forward_add(&[0.0; 16], 2, &mut out, &mut scratch);
        assert!(out.iter().all(|&v| v == 1.0));
    }
}
