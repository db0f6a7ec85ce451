//! The training step by hand: the cross-encoder's forward and backward on the packed layout
//! (a batch's sequences end to end, no padding), the frozen matrices packed once
//! (`ops::FrozenLinear`), every trained tensor's gradient written once into its own buffer.
//!
//! candle's autograd ran this before, and still does in `TrainModel::forward_autograd`, the
//! reference the tests hold this file to. There every gradient is a fresh zero tensor plus an
//! add, attention needs padding, a mask and head transposes, and a LoRA layer is five
//! operations with their own passes over memory. Here each stage is one pass, each product
//! one gemm call per block of rows or per (sequence, head), and the work is split over the
//! threads by rows or by (sequence, head): no sum crosses threads (the few that would, the
//! gradients of A, B, biases and norms, run whole on one thread each), so the bits do not
//! depend on the split.
//!
//! The forward keeps what the backward needs (each layer's input, q, k, v, the attention
//! probabilities, the normalised rows, the feed-forward activations); for MiniLM-L6 and a
//! batch of 16 pairs of ~130 tokens that is about 50 MB a layer.

use std::borrow::Cow;
use std::sync::Arc;

use rayon::prelude::*;

use super::model::{Layer, LayerNorm, Linear, Lora, Param, TrainModel};
use super::ops::{self, block_rows};
use crate::encode::model::bert::Activation;
use crate::encode::model::packed::{kernels, matmul, Shared};
use crate::encode::model::Batch;

type Result<T> = candle_core::Result<T>;

/// A tensor's values, row-major.
fn values(tensor: &candle_core::Tensor) -> Result<Vec<f32>> {
    tensor.flatten_all()?.to_vec1::<f32>()
}

/// Gradients of the trained tensors, by their index in the model's list.
pub struct Gradients(pub Vec<Option<Vec<f32>>>);

impl Gradients {
    fn set(&mut self, index: Option<usize>, gradient: impl FnOnce() -> Vec<f32>) {
        if let Some(index) = index {
            self.0[index] = Some(gradient());
        }
    }
}

/// Column sums of a row-major (rows x width) matrix, on one thread.
fn column_sums(matrix: &[f32], width: usize) -> Vec<f32> {
    let mut sums = vec![0f32; width];
    for row in matrix.chunks_exact(width) {
        kernels::add(&mut sums, row);
    }
    sums
}

/// `dW = dout^T · x` (outputs x inputs) for `dout` (rows x outputs) and `x` (rows x inputs),
/// summed over all rows. Blocks of a fixed number of W's rows are spread over the threads, each
/// block one product over every row, so the bits depend neither on the threads nor the split.
fn weight_gradient(dout: &[f32], x: &[f32], outputs: usize, inputs: usize) -> Vec<f32> {
    const BLOCK: usize = 64;
    let rows = dout.len() / outputs;
    let mut dw = vec![0f32; outputs * inputs];
    dw.par_chunks_mut(BLOCK * inputs)
        .enumerate()
        .for_each(|(i, block)| {
            let first = i * BLOCK;
            let m = block.len() / inputs;
            // SAFETY: dout is rows x outputs, read transposed from column `first` (m columns);
            // x rows x inputs; the block m x inputs; all contiguous, as sized.
            unsafe {
                matmul(
                    m,
                    inputs,
                    rows,
                    block.as_mut_ptr(),
                    inputs,
                    false,
                    dout.as_ptr().add(first),
                    1,
                    outputs,
                    x.as_ptr(),
                    inputs,
                    1,
                    1.0,
                )
            };
        });
    dw
}

/// A linear layer's values for one step: the matrices (packed once for a frozen W, afresh for
/// a trained one), the bias and LoRA's A and B.
struct LinearStep<'m> {
    linear: &'m Linear,
    packed: Arc<ops::FrozenLinear>,
    bias: Cow<'m, [f32]>,
    /// A (rank x inputs) and B (outputs x rank), and the rank.
    lora: Option<(Vec<f32>, Vec<f32>, usize)>,
    scale: f32,
}

impl<'m> LinearStep<'m> {
    fn new(linear: &'m Linear) -> Result<Self> {
        let bias = match &linear.bias {
            Param::Frozen(_) => Cow::Borrowed(linear.base.bias.as_slice()),
            Param::Trained { var, .. } => Cow::Owned(values(var.as_tensor())?),
        };
        let packed = match &linear.weight {
            Param::Frozen(_) => linear.base.clone(),
            Param::Trained { var, .. } => {
                ops::FrozenLinear::new(var.as_tensor(), &linear.base.bias_tensor()?)?
            }
        };
        let lora = match &linear.lora {
            None => None,
            Some(Lora { a, b, .. }) => {
                let rank = a.as_tensor().dim(0)?;
                Some((values(a.as_tensor())?, values(b.as_tensor())?, rank))
            }
        };
        Ok(Self {
            linear,
            packed,
            bias,
            lora,
            scale: linear.scale as f32,
        })
    }

    fn inputs(&self) -> usize {
        self.packed.inputs
    }

    fn outputs(&self) -> usize {
        self.packed.outputs
    }

    /// `x · W^T + b + scale · (x · A^T) · B^T` for `x` (rows x inputs); also returns
    /// `u = x · A^T` (rows x rank, empty without LoRA), which the backward needs.
    fn forward(&self, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (inputs, outputs) = (self.inputs(), self.outputs());
        let rows = x.len() / inputs;
        let block = block_rows(rows);
        let mut out = vec![0f32; rows * outputs];
        let lows: Vec<Vec<f32>> = out
            .par_chunks_mut(block * outputs)
            .zip(x.par_chunks(block * inputs))
            .map(|(out, x)| {
                let m = x.len() / inputs;
                for row in out.chunks_exact_mut(outputs) {
                    row.copy_from_slice(&self.bias);
                }
                self.packed.forward.block(x, out, inputs, outputs);
                let Some((a, b, rank)) = &self.lora else {
                    return Vec::new();
                };
                let rank = *rank;
                let mut u = vec![0f32; m * rank];
                // SAFETY: x is m x inputs, A rank x inputs (read transposed), u m x rank, B
                // outputs x rank (read transposed), out m x outputs: all contiguous, as sized.
                unsafe {
                    matmul(
                        m,
                        rank,
                        inputs,
                        u.as_mut_ptr(),
                        rank,
                        false,
                        x.as_ptr(),
                        inputs,
                        1,
                        a.as_ptr(),
                        1,
                        inputs,
                        1.0,
                    );
                    matmul(
                        m,
                        outputs,
                        rank,
                        out.as_mut_ptr(),
                        outputs,
                        true,
                        u.as_ptr(),
                        rank,
                        1,
                        b.as_ptr(),
                        1,
                        rank,
                        self.scale,
                    );
                }
                u
            })
            .collect();
        (out, lows.concat())
    }

    /// The backward of [`LinearStep::forward`] for the gradient `dout` (rows x outputs): the
    /// input's gradient when `need_input`, and the gradients of A, B and a trained bias into
    /// `grads`.
    fn backward(
        &self,
        x: &[f32],
        u: &[f32],
        dout: &[f32],
        need_input: bool,
        grads: &mut Gradients,
    ) -> Vec<f32> {
        let (inputs, outputs) = (self.inputs(), self.outputs());
        let rows = dout.len() / outputs;
        let block = block_rows(rows);
        let lora = self.lora.as_ref();
        // v = dout · B (rows x rank), per block, and dx = dout · W + scale · v · A.
        let low = |g: &[f32], dx: Option<&mut [f32]>| -> Vec<f32> {
            let m = g.len() / outputs;
            let v = match lora {
                None => Vec::new(),
                Some((_, b, rank)) => {
                    let mut v = vec![0f32; m * rank];
                    // SAFETY: g is m x outputs, B outputs x rank, v m x rank, contiguous.
                    unsafe {
                        matmul(
                            m,
                            *rank,
                            outputs,
                            v.as_mut_ptr(),
                            *rank,
                            false,
                            g.as_ptr(),
                            outputs,
                            1,
                            b.as_ptr(),
                            *rank,
                            1,
                            1.0,
                        )
                    };
                    v
                }
            };
            if let Some(dx) = dx {
                self.packed.backward.block(g, dx, outputs, inputs);
                if let Some((a, _, rank)) = lora {
                    // SAFETY: v is m x rank, A rank x inputs, dx m x inputs, contiguous.
                    unsafe {
                        matmul(
                            m,
                            inputs,
                            *rank,
                            dx.as_mut_ptr(),
                            inputs,
                            true,
                            v.as_ptr(),
                            *rank,
                            1,
                            a.as_ptr(),
                            inputs,
                            1,
                            self.scale,
                        )
                    };
                }
            }
            v
        };
        let mut dx = Vec::new();
        let lows: Vec<Vec<f32>> = if need_input {
            dx = vec![0f32; rows * inputs];
            dx.par_chunks_mut(block * inputs)
                .zip(dout.par_chunks(block * outputs))
                .map(|(dx, g)| low(g, Some(dx)))
                .collect()
        } else if lora.is_some() {
            dout.par_chunks(block * outputs)
                .map(|g| low(g, None))
                .collect()
        } else {
            Vec::new()
        };
        if let (
            Some((_, _, rank)),
            Some(Lora {
                a_index, b_index, ..
            }),
        ) = (lora, &self.linear.lora)
        {
            let rank = *rank;
            let v = lows.concat();
            let (da, db) = rayon::join(
                || {
                    // dA = scale · v^T · x (rank x inputs), summed over all rows.
                    let mut da = vec![0f32; rank * inputs];
                    // SAFETY: v is rows x rank (read transposed), x rows x inputs, dA rank x
                    // inputs, contiguous.
                    unsafe {
                        matmul(
                            rank,
                            inputs,
                            rows,
                            da.as_mut_ptr(),
                            inputs,
                            false,
                            v.as_ptr(),
                            1,
                            rank,
                            x.as_ptr(),
                            inputs,
                            1,
                            self.scale,
                        )
                    };
                    da
                },
                || {
                    // dB = scale · dout^T · u (outputs x rank).
                    let mut db = vec![0f32; outputs * rank];
                    // SAFETY: dout is rows x outputs (read transposed), u rows x rank, dB
                    // outputs x rank, contiguous.
                    unsafe {
                        matmul(
                            outputs,
                            rank,
                            rows,
                            db.as_mut_ptr(),
                            rank,
                            false,
                            dout.as_ptr(),
                            1,
                            outputs,
                            u.as_ptr(),
                            rank,
                            1,
                            self.scale,
                        )
                    };
                    db
                },
            );
            grads.0[*a_index] = Some(da);
            grads.0[*b_index] = Some(db);
        }
        grads.set(self.linear.bias.index(), || column_sums(dout, outputs));
        grads.set(self.linear.weight.index(), || {
            weight_gradient(dout, x, outputs, inputs)
        });
        dx
    }
}

/// A LayerNorm's values for one step.
struct NormStep<'m> {
    norm: &'m LayerNorm,
    weight: Cow<'m, [f32]>,
    bias: Cow<'m, [f32]>,
}

/// What a LayerNorm's backward needs: the normalised rows and each row's 1/σ.
struct NormSaved {
    normed: Vec<f32>,
    inverse: Vec<f32>,
}

impl<'m> NormStep<'m> {
    fn new(norm: &'m LayerNorm) -> Result<Self> {
        let read = |param: &'m Param, base: &'m [f32]| -> Result<Cow<'m, [f32]>> {
            Ok(match param {
                Param::Frozen(_) => Cow::Borrowed(base),
                Param::Trained { var, .. } => Cow::Owned(values(var.as_tensor())?),
            })
        };
        Ok(Self {
            weight: read(&norm.weight, &norm.base.weight)?,
            bias: read(&norm.bias, &norm.base.bias)?,
            norm,
        })
    }

    /// `LayerNorm(x + residual)` (the residual optional), row by row.
    fn forward(&self, x: &[f32], residual: Option<&[f32]>) -> (Vec<f32>, NormSaved) {
        let width = self.weight.len();
        let rows = x.len() / width;
        let block = block_rows(rows);
        let eps = self.norm.base.eps;
        let mut out = vec![0f32; x.len()];
        let mut normed = vec![0f32; x.len()];
        let mut inverse = vec![0f32; rows];
        out.par_chunks_mut(block * width)
            .zip(normed.par_chunks_mut(block * width))
            .zip(inverse.par_chunks_mut(block))
            .enumerate()
            .for_each(|(i, ((out, normed), inverse))| {
                let start = i * block * width;
                let x = &x[start..start + out.len()];
                if let Some(residual) = residual {
                    normed.copy_from_slice(x);
                    kernels::add(normed, &residual[start..start + out.len()]);
                } else {
                    normed.copy_from_slice(x);
                }
                for ((out, row), inverse) in out
                    .chunks_exact_mut(width)
                    .zip(normed.chunks_exact_mut(width))
                    .zip(inverse.iter_mut())
                {
                    let (mean, inv) = ops::moments(row, eps);
                    *inverse = inv;
                    for (((o, v), w), b) in out
                        .iter_mut()
                        .zip(row.iter_mut())
                        .zip(self.weight.iter())
                        .zip(self.bias.iter())
                    {
                        *v = (*v - mean) * inv;
                        *o = *v * w + b;
                    }
                }
            });
        (out, NormSaved { normed, inverse })
    }

    /// The gradient of the normalised input (of x + residual) for `dy`, and a trained
    /// weight's and bias's gradients into `grads`.
    fn backward(&self, saved: &NormSaved, dy: &[f32], grads: &mut Gradients) -> Vec<f32> {
        // With x̂ the normalised row and h = dy * w: dx = (h - mean(h) - x̂ * mean(h * x̂)) / σ.
        let width = self.weight.len();
        let rows = dy.len() / width;
        let block = block_rows(rows);
        let mut dx = vec![0f32; dy.len()];
        dx.par_chunks_mut(block * width)
            .zip(dy.par_chunks(block * width))
            .zip(saved.normed.par_chunks(block * width))
            .zip(saved.inverse.par_chunks(block))
            .for_each(|(((dx, dy), normed), inverse)| {
                for (((dx, dy), normed), &inv) in dx
                    .chunks_exact_mut(width)
                    .zip(dy.chunks_exact(width))
                    .zip(normed.chunks_exact(width))
                    .zip(inverse)
                {
                    let (mut mean_h, mut mean_hx) = (0f32, 0f32);
                    for ((d, &g), (&w, &x)) in
                        dx.iter_mut().zip(dy).zip(self.weight.iter().zip(normed))
                    {
                        *d = g * w;
                        mean_h += *d;
                        mean_hx += *d * x;
                    }
                    mean_h /= width as f32;
                    mean_hx /= width as f32;
                    for (d, &x) in dx.iter_mut().zip(normed) {
                        *d = (*d - mean_h - x * mean_hx) * inv;
                    }
                }
            });
        grads.set(self.norm.weight.index(), || {
            let mut sums = vec![0f32; width];
            for (dy, x) in dy.chunks_exact(width).zip(saved.normed.chunks_exact(width)) {
                for ((s, &g), &x) in sums.iter_mut().zip(dy).zip(x) {
                    *s += g * x;
                }
            }
            sums
        });
        grads.set(self.norm.bias.index(), || column_sums(dy, width));
        dx
    }
}

/// One (sequence, head) of attention: the sequence's first token and length, the head, and
/// where its probabilities start in the saved buffer.
#[derive(Clone, Copy)]
struct Task {
    start: usize,
    length: usize,
    head: usize,
    probabilities: usize,
}

/// The attention tasks of a batch, and the size of the probabilities buffer they fill.
fn tasks(offsets: &[usize], heads: usize) -> (Vec<Task>, usize) {
    let mut tasks = Vec::with_capacity((offsets.len() - 1) * heads);
    let mut total = 0;
    for range in offsets.windows(2) {
        let length = range[1] - range[0];
        for head in 0..heads {
            tasks.push(Task {
                start: range[0],
                length,
                head,
                probabilities: total,
            });
            total += length * length;
        }
    }
    (tasks, total)
}

/// What the step needs of the model's shape, and its feed-forward activation.
#[derive(Clone, Copy)]
struct Shape {
    heads: usize,
    head_size: usize,
    hidden: usize,
    activation: Activation,
}

/// `context = softmax(q k^T * scale) v` for every task; also returns the probabilities.
fn attention_forward(
    shape: Shape,
    tasks: &[Task],
    total: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let Shape {
        head_size, hidden, ..
    } = shape;
    let scale = 1.0 / (head_size as f32).sqrt();
    let mut context = vec![0f32; q.len()];
    let mut probabilities = vec![0f32; total];
    let (out, probs) = (
        Shared(context.as_mut_ptr()),
        Shared(probabilities.as_mut_ptr()),
    );
    tasks.par_iter().for_each(|task| {
        let (length, column) = (task.length, task.start * hidden + task.head * head_size);
        // SAFETY: the task's probabilities (length x length from its offset) and its output
        // block (rows start..start + length, this head's columns) belong to it alone; q, k and
        // v cover those rows at stride `hidden`.
        unsafe {
            let scores = std::slice::from_raw_parts_mut(
                probs.ptr().add(task.probabilities),
                length * length,
            );
            matmul(
                length,
                length,
                head_size,
                scores.as_mut_ptr(),
                length,
                false,
                q[column..].as_ptr(),
                hidden,
                1,
                k[column..].as_ptr(),
                1,
                hidden,
                scale,
            );
            for row in scores.chunks_exact_mut(length) {
                kernels::softmax(row);
            }
            matmul(
                length,
                head_size,
                length,
                out.ptr().add(column),
                hidden,
                false,
                scores.as_ptr(),
                length,
                1,
                v[column..].as_ptr(),
                hidden,
                1,
                1.0,
            );
        }
    });
    (context, probabilities)
}

/// The backward of [`attention_forward`]: the gradients of q, k and v for `dcontext`.
#[allow(clippy::too_many_arguments)]
fn attention_backward(
    shape: Shape,
    tasks: &[Task],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probabilities: &[f32],
    dcontext: &[f32],
) -> [Vec<f32>; 3] {
    let Shape {
        head_size, hidden, ..
    } = shape;
    let scale = 1.0 / (head_size as f32).sqrt();
    let mut dq = vec![0f32; q.len()];
    let mut dk = vec![0f32; q.len()];
    let mut dv = vec![0f32; q.len()];
    let (oq, ok, ov) = (
        Shared(dq.as_mut_ptr()),
        Shared(dk.as_mut_ptr()),
        Shared(dv.as_mut_ptr()),
    );
    tasks.par_iter().for_each(|task| {
        let (length, column) = (task.length, task.start * hidden + task.head * head_size);
        let p = &probabilities[task.probabilities..task.probabilities + length * length];
        let mut ds = vec![0f32; length * length];
        // SAFETY: as in the forward: the output blocks (this task's rows and head columns of
        // dq, dk, dv) belong to this task alone; p and ds are length x length; the inputs
        // cover the task's rows at stride `hidden`.
        unsafe {
            // dP = dC · V^T
            matmul(
                length,
                length,
                head_size,
                ds.as_mut_ptr(),
                length,
                false,
                dcontext[column..].as_ptr(),
                hidden,
                1,
                v[column..].as_ptr(),
                1,
                hidden,
                1.0,
            );
            // dS = P ⊙ (dP - rowsum(dP ⊙ P))
            for (ds, p) in ds.chunks_exact_mut(length).zip(p.chunks_exact(length)) {
                let dot: f32 = ds.iter().zip(p).map(|(a, b)| a * b).sum();
                for (d, &p) in ds.iter_mut().zip(p) {
                    *d = p * (*d - dot);
                }
            }
            // dQ = scale · dS · K
            matmul(
                length,
                head_size,
                length,
                oq.ptr().add(column),
                hidden,
                false,
                ds.as_ptr(),
                length,
                1,
                k[column..].as_ptr(),
                hidden,
                1,
                scale,
            );
            // dK = scale · dS^T · Q
            matmul(
                length,
                head_size,
                length,
                ok.ptr().add(column),
                hidden,
                false,
                ds.as_ptr(),
                1,
                length,
                q[column..].as_ptr(),
                hidden,
                1,
                scale,
            );
            // dV = P^T · dC
            matmul(
                length,
                head_size,
                length,
                ov.ptr().add(column),
                hidden,
                false,
                p.as_ptr(),
                1,
                length,
                dcontext[column..].as_ptr(),
                hidden,
                1,
                1.0,
            );
        }
    });
    [dq, dk, dv]
}

/// The feed-forward activation, in place.
fn activate(activation: Activation, xs: &mut [f32]) {
    match activation {
        Activation::Gelu => xs.par_chunks_mut(4096).for_each(kernels::gelu_erf),
        Activation::GeluApproximate => xs.par_chunks_mut(4096).for_each(kernels::gelu_tanh),
        Activation::Relu => xs.par_iter_mut().for_each(|x| *x = x.max(0.0)),
    }
}

/// The activation's backward: `dx = g * act'(x)`.
fn activate_backward(activation: Activation, x: &[f32], g: &[f32]) -> Vec<f32> {
    let mut dx = vec![0f32; x.len()];
    let chunks = dx
        .par_chunks_mut(4096)
        .zip(x.par_chunks(4096).zip(g.par_chunks(4096)));
    match activation {
        Activation::Gelu => {
            chunks.for_each(|(dx, (x, g))| kernels::gelu_erf_backward(x, g, dx));
        }
        Activation::GeluApproximate => chunks.for_each(|(dx, (x, g))| {
            // d/dx of 0.5 x (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2/pi).
            const C: f32 = 0.797_884_6;
            for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                let inner = C * (x + 0.044715 * x * x * x);
                let t = inner.tanh();
                let derivative =
                    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044715 * x * x);
                *d = g * derivative;
            }
        }),
        Activation::Relu => chunks.for_each(|(dx, (x, g))| {
            for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                *d = if x > 0.0 { g } else { 0.0 };
            }
        }),
    }
    dx
}

/// One layer's values for a step.
struct LayerStep<'m> {
    query: LinearStep<'m>,
    key: LinearStep<'m>,
    value: LinearStep<'m>,
    attention_output: LinearStep<'m>,
    attention_norm: NormStep<'m>,
    intermediate: LinearStep<'m>,
    output: LinearStep<'m>,
    output_norm: NormStep<'m>,
}

impl<'m> LayerStep<'m> {
    fn new(layer: &'m Layer) -> Result<Self> {
        Ok(Self {
            query: LinearStep::new(&layer.query)?,
            key: LinearStep::new(&layer.key)?,
            value: LinearStep::new(&layer.value)?,
            attention_output: LinearStep::new(&layer.attention_output)?,
            attention_norm: NormStep::new(&layer.attention_norm)?,
            intermediate: LinearStep::new(&layer.intermediate)?,
            output: LinearStep::new(&layer.output)?,
            output_norm: NormStep::new(&layer.output_norm)?,
        })
    }
}

/// What one layer's forward keeps for its backward.
struct LayerSaved {
    input: Vec<f32>,
    /// q, k, v and their LoRA `u`s.
    qkv: [(Vec<f32>, Vec<f32>); 3],
    probabilities: Vec<f32>,
    context: (Vec<f32>, Vec<f32>),
    attention_norm: NormSaved,
    attended: Vec<f32>,
    /// Before the activation, and the intermediate layer's `u`.
    inner: (Vec<f32>, Vec<f32>),
    activated: (Vec<f32>, Vec<f32>),
    output_norm: NormSaved,
}

impl LayerStep<'_> {
    fn forward(
        &self,
        shape: Shape,
        tasks: &(Vec<Task>, usize),
        input: Vec<f32>,
    ) -> (Vec<f32>, LayerSaved) {
        let (q, qu) = self.query.forward(&input);
        let (k, ku) = self.key.forward(&input);
        let (v, vu) = self.value.forward(&input);
        let (context, probabilities) = attention_forward(shape, &tasks.0, tasks.1, &q, &k, &v);
        let (projected, cu) = self.attention_output.forward(&context);
        let (attended, attention_norm) = self.attention_norm.forward(&projected, Some(&input));
        let (inner, iu) = self.intermediate.forward(&attended);
        let mut activated = inner.clone();
        activate(shape.activation, &mut activated);
        let (out, ou) = self.output.forward(&activated);
        let (out, output_norm) = self.output_norm.forward(&out, Some(&attended));
        let saved = LayerSaved {
            input,
            qkv: [(q, qu), (k, ku), (v, vu)],
            probabilities,
            context: (context, cu),
            attention_norm,
            attended,
            inner: (inner, iu),
            activated: (activated, ou),
            output_norm,
        };
        (out, saved)
    }

    /// The gradient of the layer's input for `dout`, the gradient of its output (empty when
    /// `need_input` is false), and the trained tensors' gradients into `grads`.
    fn backward(
        &self,
        shape: Shape,
        tasks: &[Task],
        saved: &LayerSaved,
        dout: &[f32],
        need_input: bool,
        grads: &mut Gradients,
    ) -> Vec<f32> {
        // out = LN2(output(act(inner)) + attended), attended = LN1(attn_out(ctx) + input).
        let dsum2 = self.output_norm.backward(&saved.output_norm, dout, grads);
        let dact =
            self.output
                .backward(&saved.activated.0, &saved.activated.1, &dsum2, true, grads);
        let dinner = activate_backward(shape.activation, &saved.inner.0, &dact);
        let mut dattended =
            self.intermediate
                .backward(&saved.attended, &saved.inner.1, &dinner, true, grads);
        kernels::add(&mut dattended, &dsum2);
        let dsum1 = self
            .attention_norm
            .backward(&saved.attention_norm, &dattended, grads);
        let dcontext =
            self.attention_output
                .backward(&saved.context.0, &saved.context.1, &dsum1, true, grads);
        let [dq, dk, dv] = attention_backward(
            shape,
            tasks,
            &saved.qkv[0].0,
            &saved.qkv[1].0,
            &saved.qkv[2].0,
            &saved.probabilities,
            &dcontext,
        );
        let mut dinput = dsum1;
        for (linear, (d, (_, u))) in [&self.query, &self.key, &self.value]
            .into_iter()
            .zip([dq, dk, dv].iter().zip(&saved.qkv))
        {
            let dx = linear.backward(&saved.input, u, d, need_input, grads);
            if need_input {
                kernels::add(&mut dinput, &dx);
            }
        }
        if need_input {
            dinput
        } else {
            Vec::new()
        }
    }
}

/// What a step's forward computed: the logits (rows x classes), and what the backward needs.
struct Forward {
    logits: Vec<f32>,
    pooled: Vec<f32>,
    /// The attention tasks and the head's weight (classes x hidden), as the forward used them.
    tasks: Vec<Task>,
    head_weight: Vec<f32>,
    embedding_norm: NormSaved,
    layers: Vec<LayerSaved>,
}

impl TrainModel {
    fn shape(&self) -> Shape {
        Shape {
            heads: self.heads,
            head_size: self.head_size,
            hidden: self.heads * self.head_size,
            activation: self.activation,
        }
    }

    /// The summed word, position and type embeddings of every token, (tokens x hidden).
    fn embed(&self, batch: &Batch) -> Vec<f32> {
        let hidden = self.shape().hidden;
        let [word, position, types] = &self.tables;
        let mut out = vec![0f32; batch.ids.len() * hidden];
        out.par_chunks_mut(hidden).enumerate().for_each(|(t, row)| {
            fn at(table: &[f32], id: u32, hidden: usize) -> &[f32] {
                let start = id as usize * hidden;
                &table[start..start + hidden]
            }
            row.copy_from_slice(at(word, batch.ids[t], hidden));
            kernels::add(row, at(position, batch.positions[t], hidden));
            kernels::add(row, at(types, batch.type_ids[t], hidden));
        });
        out
    }

    fn forward_saved(&self, batch: &Batch, steps: &[LayerStep<'_>]) -> Result<Forward> {
        let shape = self.shape();
        let hidden = shape.hidden;
        let tasks = tasks(&batch.offsets, shape.heads);
        let norm = NormStep::new(&self.embedding_norm)?;
        let (mut states, embedding_norm) = norm.forward(&self.embed(batch), None);
        let mut layers = Vec::with_capacity(steps.len());
        for step in steps {
            let (out, saved) = step.forward(shape, &tasks, states);
            layers.push(saved);
            states = out;
        }
        let rows = batch.offsets.len() - 1;
        let mut pooled = vec![0f32; rows * hidden];
        for (r, row) in pooled.chunks_exact_mut(hidden).enumerate() {
            let (start, end) = (batch.offsets[r], batch.offsets[r + 1]);
            for token in states[start * hidden..end * hidden].chunks_exact(hidden) {
                kernels::add(row, token);
            }
            let count = (end - start).max(1) as f32;
            row.iter_mut().for_each(|v| *v /= count);
        }
        let weight = values(self.head_weight.as_tensor())?;
        let bias = values(self.head_bias.as_tensor())?;
        let classes = bias.len();
        let mut logits = vec![0f32; rows * classes];
        for (row, out) in pooled
            .chunks_exact(hidden)
            .zip(logits.chunks_exact_mut(classes))
        {
            for ((o, w), b) in out.iter_mut().zip(weight.chunks_exact(hidden)).zip(&bias) {
                *o = row.iter().zip(w).map(|(x, w)| x * w).sum::<f32>() + b;
            }
        }
        Ok(Forward {
            logits,
            pooled,
            tasks: tasks.0,
            head_weight: weight,
            embedding_norm,
            layers,
        })
    }

    fn layer_steps(&self) -> Result<Vec<LayerStep<'_>>> {
        self.layers.iter().map(LayerStep::new).collect()
    }

    /// Logits (rows, classes) for a packed batch, by the hand-written forward.
    pub fn forward(&self, batch: &Batch) -> Result<candle_core::Tensor> {
        let steps = self.layer_steps()?;
        let forward = self.forward_saved(batch, &steps)?;
        let classes = self.head_bias.as_tensor().dim(0)?;
        let rows = batch.offsets.len() - 1;
        candle_core::Tensor::from_vec(forward.logits, (rows, classes), &candle_core::Device::Cpu)
    }

    /// One training step's forward and backward: the mean cross-entropy of the batch against
    /// `labels` (class indices), and the gradient of every trained tensor.
    pub fn step(&self, batch: &Batch, labels: &[u32]) -> Result<(f32, Gradients)> {
        let shape = self.shape();
        let hidden = shape.hidden;
        let steps = self.layer_steps()?;
        let forward = self.forward_saved(batch, &steps)?;
        let rows = batch.offsets.len() - 1;
        let classes = forward.logits.len() / rows.max(1);
        if labels.len() != rows || labels.iter().any(|&l| l as usize >= classes) {
            candle_core::bail!(
                "{} labels for {rows} rows of {classes} classes",
                labels.len()
            );
        }
        // Cross-entropy and its gradient at the logits.
        let mut loss = 0f32;
        let mut dlogits = vec![0f32; rows * classes];
        for ((logits, d), &label) in forward
            .logits
            .chunks_exact(classes)
            .zip(dlogits.chunks_exact_mut(classes))
            .zip(labels)
        {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
            loss += sum.ln() + max - logits[label as usize];
            for (d, l) in d.iter_mut().zip(logits) {
                *d = (l - max).exp() / sum / rows as f32;
            }
            d[label as usize] -= 1.0 / rows as f32;
        }
        loss /= rows as f32;

        let mut grads = Gradients(vec![None; self.vars().len()]);
        let weight = &forward.head_weight;
        let mut dweight = vec![0f32; classes * hidden];
        for (d, pooled) in dlogits
            .chunks_exact(classes)
            .zip(forward.pooled.chunks_exact(hidden))
        {
            for (dw, &dc) in dweight.chunks_exact_mut(hidden).zip(d) {
                for (w, &p) in dw.iter_mut().zip(pooled) {
                    *w += dc * p;
                }
            }
        }
        let head_weight = self.vars().len() - 2;
        grads.0[head_weight] = Some(dweight);
        grads.0[head_weight + 1] = Some(column_sums(&dlogits, classes));
        // d(states) of each token: its row's d(pooled) / the row's length.
        let tokens = batch.ids.len();
        let mut dstates = vec![0f32; tokens * hidden];
        for r in 0..rows {
            let (start, end) = (batch.offsets[r], batch.offsets[r + 1]);
            let mut dpooled = vec![0f32; hidden];
            for (&dc, w) in dlogits[r * classes..(r + 1) * classes]
                .iter()
                .zip(weight.chunks_exact(hidden))
            {
                for (d, &w) in dpooled.iter_mut().zip(w) {
                    *d += dc * w;
                }
            }
            let count = (end - start).max(1) as f32;
            dpooled.iter_mut().for_each(|d| *d /= count);
            for token in dstates[start * hidden..end * hidden].chunks_exact_mut(hidden) {
                token.copy_from_slice(&dpooled);
            }
        }
        let embedding_norm = NormStep::new(&self.embedding_norm)?;
        let norms_trained = embedding_norm.norm.weight.index().is_some()
            || embedding_norm.norm.bias.index().is_some();
        for (i, (step, saved)) in steps.iter().zip(&forward.layers).enumerate().rev() {
            let need_input = i > 0 || norms_trained;
            dstates = step.backward(
                shape,
                &forward.tasks,
                saved,
                &dstates,
                need_input,
                &mut grads,
            );
        }
        if norms_trained {
            embedding_norm.backward(&forward.embedding_norm, &dstates, &mut grads);
        }
        Ok((loss, grads))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{Device, Tensor};

    use super::*;
    use crate::encode::model::adapter::LoraSettings;
    use crate::encode::model::bert::BertConfig;
    use crate::eval::bootstrap::SplitMix64;
    use crate::finetune::model::{Unfreeze, LORA_TARGETS};

    fn config(activation: Activation) -> BertConfig {
        BertConfig {
            vocab_size: 40,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 24,
            hidden_act: activation,
            max_position_embeddings: 32,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            model_type: None,
        }
    }

    /// A random BERT checkpoint of `config`'s shape (LayerNorm weights near 1).
    fn base(config: &BertConfig, seed: u64) -> HashMap<String, Tensor> {
        let mut random = SplitMix64::new(seed);
        let mut tensor = |shape: &[usize], centre: f32, spread: f32| {
            let count = shape.iter().product();
            let values: Vec<f32> = (0..count)
                .map(|_| {
                    let unit = (random.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                    centre + (unit * 2.0 - 1.0) * spread
                })
                .collect();
            Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
        };
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let mut map = HashMap::new();
        map.insert(
            "embeddings.word_embeddings.weight".into(),
            tensor(&[config.vocab_size, h], 0.0, 1.0),
        );
        map.insert(
            "embeddings.position_embeddings.weight".into(),
            tensor(&[config.max_position_embeddings, h], 0.0, 0.5),
        );
        map.insert(
            "embeddings.token_type_embeddings.weight".into(),
            tensor(&[2, h], 0.0, 0.5),
        );
        let mut norm = |map: &mut HashMap<String, Tensor>, name: &str| {
            map.insert(format!("{name}.weight"), tensor(&[h], 1.0, 0.2));
            map.insert(format!("{name}.bias"), tensor(&[h], 0.0, 0.2));
        };
        norm(&mut map, "embeddings.LayerNorm");
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            norm(&mut map, &format!("{p}.attention.output.LayerNorm"));
            norm(&mut map, &format!("{p}.output.LayerNorm"));
        }
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            for (module, outputs, inputs) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", i, h),
                ("output.dense", h, i),
            ] {
                let bound = 1.0 / (inputs as f32).sqrt();
                map.insert(
                    format!("{p}.{module}.weight"),
                    tensor(&[outputs, inputs], 0.0, bound),
                );
                map.insert(format!("{p}.{module}.bias"), tensor(&[outputs], 0.0, 0.1));
            }
        }
        map
    }

    /// Three pairs of different lengths (one of a single token), type ids 0 then 1.
    fn batch() -> Batch {
        let ids: [Vec<u32>; 3] = [
            (1..12).collect(),
            vec![5],
            (3..27).map(|i| i % 40).collect(),
        ];
        let types: Vec<Vec<u32>> = ids
            .iter()
            .map(|s| (0..s.len()).map(|i| u32::from(i * 2 >= s.len())).collect())
            .collect();
        Batch::new(
            ids.iter()
                .zip(&types)
                .map(|(i, t)| (i.as_slice(), Some(t.as_slice()))),
        )
    }

    fn model(activation: Activation, unfreeze: Unfreeze) -> TrainModel {
        let config = config(activation);
        let lora = LoraSettings {
            rank: 3,
            alpha: 6.0,
            targets: LORA_TARGETS.iter().map(|s| s.to_string()).collect(),
        };
        let model = TrainModel::new(
            &base(&config, 7),
            &config,
            &lora,
            unfreeze,
            3,
            11,
            &Device::Cpu,
        )
        .unwrap();
        // B starts at zero; give every trained tensor a random value so every path carries
        // a gradient.
        let mut random = SplitMix64::new(5);
        for (_, var) in model.vars() {
            let count = var.as_tensor().elem_count();
            let values: Vec<f32> = (0..count)
                .map(|_| ((random.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.6)
                .collect();
            let current = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let is_norm_weight =
                current.iter().all(|&v| (v - 1.0).abs() < 0.3) && var.as_tensor().rank() == 1;
            let values: Vec<f32> = if is_norm_weight {
                values
                    .iter()
                    .zip(&current)
                    .map(|(r, c)| c + r * 0.3)
                    .collect()
            } else {
                values
            };
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        model
    }

    fn max_difference(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// The hand-written forward and backward against candle's autograd on the same model.
    fn check(activation: Activation, unfreeze: Unfreeze) {
        let model = model(activation, unfreeze);
        let batch = batch();
        let labels = [2u32, 0, 1];
        let reference = model.forward_autograd(&batch).unwrap();
        let hand = model.forward(&batch).unwrap();
        let (reference_logits, hand_logits) = (
            reference.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            hand.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(
            max_difference(&reference_logits, &hand_logits) < 1e-5,
            "{reference_logits:?} vs {hand_logits:?}"
        );
        let targets = Tensor::new(&labels, &Device::Cpu).unwrap();
        let loss = candle_nn::loss::cross_entropy(&reference, &targets).unwrap();
        let store = loss.backward().unwrap();
        let (hand_loss, grads) = model.step(&batch, &labels).unwrap();
        assert!((loss.to_scalar::<f32>().unwrap() - hand_loss).abs() < 1e-5);
        for ((name, var), hand) in model.vars().iter().zip(&grads.0) {
            let expected = store
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let hand = hand
                .as_ref()
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
            let difference = max_difference(&expected, hand);
            // Relative to the tensor's largest gradient (at least 1e-3): only the summation
            // order differs (measured at most 1.6e-6; an error of 1% in one product is 1e-2).
            assert!(
                difference <= 2e-5 * scale,
                "{name}: max difference {difference} (largest gradient {scale})"
            );
            // (The key's bias shifts every score of a row alike, which softmax ignores: its
            // gradient is zero by the algebra.)
            assert!(
                name.ends_with("attention.self.key.bias")
                    || expected.iter().any(|v| v.abs() > 1e-7),
                "{name}: the reference gradient is zero, so the check proves nothing"
            );
        }
    }

    #[test]
    fn the_hand_written_step_matches_candle_autograd() {
        check(Activation::Gelu, Unfreeze::default());
    }

    #[test]
    fn the_hand_written_step_matches_with_norms_and_biases_trained() {
        check(
            Activation::Gelu,
            Unfreeze {
                norms: true,
                biases: true,
                weights: false,
            },
        );
    }

    #[test]
    fn the_hand_written_step_matches_with_every_weight_trained() {
        check(
            Activation::Gelu,
            Unfreeze {
                norms: true,
                biases: true,
                weights: true,
            },
        );
    }

    #[test]
    fn the_hand_written_step_matches_for_the_other_activations() {
        check(Activation::GeluApproximate, Unfreeze::default());
        check(Activation::Relu, Unfreeze::default());
    }

    #[test]
    fn copies_of_the_trained_tensors_carry_no_graph() {
        // A tracked copy would make the running mean of --average-from keep every earlier
        // value alive (it grew a run to 22 GB before the copies were detached).
        let model = model(Activation::Gelu, Unfreeze::default());
        let mut mean = model.tensors();
        for (name, tensor) in &mut mean {
            assert!(!tensor.track_op(), "{name} is tracked");
            *tensor = (&*tensor + 1.0).unwrap();
            assert!(!tensor.track_op(), "{name}: a sum of a copy is tracked");
        }
    }

    #[test]
    fn the_weight_gradient_matches_the_sum_over_rows_in_every_block() {
        // 150 outputs: three blocks of W's rows, the last one short.
        let (rows, outputs, inputs) = (7, 150, 5);
        let mut random = SplitMix64::new(3);
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (random.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                .collect()
        };
        let (dout, x) = (draw(rows * outputs), draw(rows * inputs));
        let dw = weight_gradient(&dout, &x, outputs, inputs);
        for o in 0..outputs {
            for i in 0..inputs {
                let expected: f32 = (0..rows)
                    .map(|r| dout[r * outputs + o] * x[r * inputs + i])
                    .sum();
                let got = dw[o * inputs + i];
                assert!(
                    (got - expected).abs() < 1e-5,
                    "dW[{o}][{i}] {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn the_step_is_the_same_on_one_thread_and_on_four() {
        let trained = Unfreeze {
            weights: true,
            ..Unfreeze::default()
        };
        for unfreeze in [Unfreeze::default(), trained] {
            same_on_one_thread_and_on_four(unfreeze);
        }
    }

    fn same_on_one_thread_and_on_four(unfreeze: Unfreeze) {
        let model = model(Activation::Gelu, unfreeze);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| model.step(&batch(), &[2, 0, 1]).unwrap())
        };
        let ((loss1, grads1), (loss4, grads4)) = (run(1), run(4));
        assert_eq!(loss1.to_bits(), loss4.to_bits());
        for (a, b) in grads1.0.iter().zip(&grads4.0) {
            let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}
