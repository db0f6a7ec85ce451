//! Attention for one head of one sequence: `context = softmax(q k^T * scale) v`, no mask.
//!
//! Both products go through gemm, reading q, k and v in place from the packed QKV matrix (k
//! transposed through its strides) and writing the context straight into its columns of the
//! output. A hand-written AVX2 kernel (k transposed into scratch, 4 x 16 register blocks) was
//! tried and measured ~4% slower in total CPU time on the built-in corpus, so it is not here.

use super::profile::{self, Stage};
use super::{kernels, matmul};

/// One head's operands: row `i` of q, k and v starts `i * stride` floats after the pointer; the
/// output row `i` starts `i * out_stride` floats after `out`.
#[derive(Clone, Copy)]
pub(super) struct Head {
    pub length: usize,
    pub size: usize,
    pub query: *const f32,
    pub key: *const f32,
    pub value: *const f32,
    pub stride: usize,
    pub out: *mut f32,
    pub out_stride: usize,
    pub scale: f32,
}

/// Computes one head into its output block.
///
/// # Safety
/// The pointers must cover `length` rows of `size` values at their strides, and no other thread
/// may touch the output block meanwhile.
pub(super) unsafe fn run(head: Head, scores: &mut [f32]) {
    // SAFETY: the caller upholds this function's safety contract (its doc comment).
    unsafe {
        let Head {
            length,
            size,
            query,
            key,
            value,
            stride,
            out,
            out_stride,
            scale,
        } = head;
        debug_assert_eq!(scores.len(), length * length);
        profile::time(Stage::Scores, || {
            matmul(
                length,
                length,
                size,
                scores.as_mut_ptr(),
                length,
                false,
                query,
                stride,
                1,
                key,
                1,
                stride,
                scale,
            )
        });
        profile::time(Stage::Softmax, || {
            for row in scores.chunks_exact_mut(length) {
                kernels::softmax(row);
            }
        });
        profile::time(Stage::Context, || {
            matmul(
                length,
                size,
                length,
                out,
                out_stride,
                false,
                scores.as_ptr(),
                length,
                1,
                value,
                stride,
                1,
                1.0,
            )
        });
    }
}
