//! What the three linear-layer kernels (`f32x16`, `bf16`, `int8`) share: the register tiling, the
//! walk over tiles, the masked store into the output, and test data.
//!
//! Weights are packed in panels of [`PANEL`] output columns (one 512-bit register of 32-bit
//! lanes); a tile is [`MR`] rows by up to [`J`] panels, so its MR x J accumulators (24) plus the J
//! weight registers and one broadcast fit in the 32 vector registers. The walk takes J panels at a
//! time and every row block under them, so those panels' weights stay in cache while the rows
//! stream past.

/// Output columns per panel.
pub const PANEL: usize = 16;
/// Rows per register tile.
pub const MR: usize = 8;
/// Panels per register tile.
pub const J: usize = 3;

/// Calls `tile(first_row, first_panel, panels)` for every tile of `rows` x `panels` panels:
/// `panels` is 1 to [`J`], the rows of the last block may run past `rows` (the kernel decides
/// what to do with them).
#[inline(always)]
pub fn walk(rows: usize, panels: usize, mut tile: impl FnMut(usize, usize, usize)) {
    let mut panel = 0;
    while panel < panels {
        let take = (panels - panel).min(J);
        let mut m = 0;
        while m < rows {
            tile(m, panel, take);
            m += MR;
        }
        panel += take;
    }
}

/// `out[row * outputs + first ..][..16] += values`, for the columns below `outputs`.
///
/// # Safety
/// The CPU must have AVX-512F, and `out` must hold row `row` of `outputs` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn add_to_panel(
    out: &mut [f32],
    row: usize,
    outputs: usize,
    first: usize,
    values: std::arch::x86_64::__m512,
) {
    // SAFETY: the caller upholds this function's safety contract (its doc comment).
    unsafe {
        use std::arch::x86_64::*;
        debug_assert!((row + 1) * outputs <= out.len() && first < outputs);
        let valid = outputs.saturating_sub(first).min(PANEL);
        let mask: __mmask16 = if valid == PANEL {
            0xffff
        } else {
            (1u16 << valid) - 1
        };
        let dst = out.as_mut_ptr().add(row * outputs + first);
        _mm512_mask_storeu_ps(
            dst,
            mask,
            _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), values),
        );
    }
}

/// Values in [-1, 1) from a fixed seed, for the kernels' tests.
#[cfg(test)]
pub fn pseudo_random(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The shapes every kernel is tested on (rows, inputs, outputs): rows not a multiple of the tile
/// height, outputs not a multiple of 16 or 48, inputs not a multiple of 2 or 4, and the model's
/// own shapes.
#[cfg(test)]
pub const TEST_SHAPES: [(usize, usize, usize); 4] =
    [(1, 3, 16), (13, 30, 50), (37, 384, 1152), (9, 1537, 384)];

/// The inputs of one test shape: `x` (rows x inputs), the transposed weight (inputs x outputs)
/// and a bias-and-residual already in the output (rows x outputs).
#[cfg(test)]
pub fn test_case(rows: usize, inputs: usize, outputs: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = pseudo_random(rows as u64, rows * inputs);
    let w = pseudo_random(outputs as u64 + 7, inputs * outputs);
    let bias = (0..rows * outputs).map(|i| (i % 7) as f32).collect();
    (x, w, bias)
}

/// `x · W^T + bias` in f64, the reference the kernels' tests compare with.
#[cfg(test)]
pub fn reference(x: &[f32], w: &[f32], bias: &[f32], rows: usize, inputs: usize) -> Vec<f64> {
    let outputs = w.len() / inputs;
    (0..rows * outputs)
        .map(|i| {
            let (m, n) = (i / outputs, i % outputs);
            (0..inputs)
                .map(|k| f64::from(x[m * inputs + k]) * f64::from(w[k * outputs + n]))
                .sum::<f64>()
                + f64::from(bias[i])
        })
        .collect()
}
