//! A CPU-only BERT forward on packed sequences: the same checkpoint and the same arithmetic as
//! [`super::bert::Bert`], without padding and without a tensor library in the loop.
//!
//! A batch's real tokens are stacked into one `(tokens, hidden)` matrix, so every per-token stage
//! (the linear layers, LayerNorm, GELU) runs on real tokens only, and attention runs per sequence
//! and head, where no mask is needed. Time goes where it should:
//! - the linear layers' products run on register-tiled AVX-512 kernels with the weights packed
//!   once at load (f32 in `f32x16`, or the reduced-precision variants in `bf16` and `int8`), the
//!   `gemm` crate (the kernel candle itself uses on the CPU) where the CPU lacks AVX-512 and for
//!   attention; the bias, and for the output projections the residual, are already in the
//!   destination, so the product adds onto them instead of a separate pass over memory;
//! - the rows are processed in chunks small enough to stay in cache, each chunk running the
//!   attention output, LayerNorm, feed-forward, LayerNorm and the next layer's QKV projection back
//!   to back, with the chunks (and attention's sequence x head tasks) spread over rayon's threads;
//! - GELU (erf) and softmax (exp) use branch-free polynomial approximations accurate to a few ulp,
//!   compiled for AVX2+FMA or AVX-512 when the CPU has it, instead of scalar libm calls.
//!
//! Results per sequence do not depend on what else is in the batch (up to the last bits of gemm's
//! blocking, where gemm runs) and the same batch gives the same bits every time: no reduction
//! crosses threads.
//!
//! This file holds only the model: no I/O, no tokenization, no printing.

use std::cell::RefCell;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::bert::{Activation, BertConfig};
use super::{Batch, Matmul, Pooling};
use profile::Stage;

/// Most rows (tokens) in one chunk of the per-token stages: enough for gemm to run at full speed
/// and to pay for packing the weights once per chunk (measured on a 2-core Zen 4: 64 rows ran
/// ~7% slower than 256, 384 ~1% faster than 256, 512 no faster than 384).
const MAX_CHUNK_ROWS: usize = 384;

/// Rows per chunk for a batch of `tokens`: at most [`MAX_CHUNK_ROWS`], and the chunks split
/// the batch evenly into a multiple of the thread count, so no thread waits long for another at
/// the end of a phase (7 equal chunks on 2 threads leave one thread idle a quarter of the time).
fn chunk_rows(tokens: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let chunks = threads * tokens.div_ceil(threads * MAX_CHUNK_ROWS).max(1);
    tokens.div_ceil(chunks).max(1)
}

fn to_vec(tensor: &Tensor) -> candle_core::Result<Vec<f32>> {
    tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// How a linear layer's weights are held: f32 for gemm or packed for the AVX-512 kernel, or in
/// reduced precision.
enum Product {
    /// The weight transposed, `(inputs, outputs)` row-major, the layout `x · W^T` reads along
    /// rows.
    F32(Vec<f32>),
    /// The same f32 weights packed once for the AVX-512 kernel.
    F32Packed(f32x16::Weights),
    Int8(int8::Weights),
    Bf16(bf16::Weights),
}

/// A linear layer.
struct Linear {
    product: Product,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

thread_local! {
    /// Per-thread quantised activations for the int8 products.
    static INT8_SCRATCH: RefCell<int8::Scratch> = RefCell::new(int8::Scratch::default());
    /// Per-thread bf16 activations for the bf16 products.
    static BF16_SCRATCH: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

impl Linear {
    fn load(
        vb: VarBuilder,
        inputs: usize,
        outputs: usize,
        matmul: Matmul,
    ) -> candle_core::Result<Self> {
        let weight = vb.get((outputs, inputs), "weight")?;
        let bias = vb.get(outputs, "bias")?;
        Self::from_parts(&[(weight, bias)], inputs, matmul)
    }

    /// Stacks several linear layers over the same input into one (query, key, value -> qkv).
    fn from_parts(
        parts: &[(Tensor, Tensor)],
        inputs: usize,
        matmul: Matmul,
    ) -> candle_core::Result<Self> {
        let weight = Tensor::cat(&parts.iter().map(|p| p.0.clone()).collect::<Vec<_>>(), 0)?;
        let bias = Tensor::cat(&parts.iter().map(|p| p.1.clone()).collect::<Vec<_>>(), 0)?;
        let outputs = weight.dim(0)?;
        let weight_t = to_vec(&weight.t()?.contiguous()?)?;
        let product = match matmul {
            Matmul::F32 if f32x16::available() => {
                Product::F32Packed(f32x16::Weights::pack(&weight_t, inputs, outputs))
            }
            Matmul::F32 => Product::F32(weight_t),
            Matmul::Int8 => Product::Int8(int8::Weights::quantize(&weight_t, inputs, outputs)),
            Matmul::Bf16 => Product::Bf16(bf16::Weights::round(&weight_t, inputs, outputs)),
            Matmul::Q4 => candle_core::bail!("this is a bug: q4 products run on candle"),
        };
        Ok(Self {
            product,
            bias: to_vec(&bias)?,
            inputs,
            outputs,
        })
    }

    /// `out = bias + x · W^T` for `rows` rows of `x` (row stride `inputs`) into `out` (row stride
    /// `outputs`). With `accumulate`, `out` already holds something to add to (a residual) and
    /// the bias is added on top of it.
    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], accumulate: bool) {
        assert!(x.len() >= rows * self.inputs && out.len() >= rows * self.outputs);
        for row in out[..rows * self.outputs].chunks_exact_mut(self.outputs) {
            if accumulate {
                kernels::add(row, &self.bias);
            } else {
                row.copy_from_slice(&self.bias);
            }
        }
        let weight_t = match &self.product {
            Product::F32(weight_t) => weight_t,
            Product::Int8(weights) => {
                INT8_SCRATCH.with(|cell| {
                    weights.forward_add(x, rows, out, &mut cell.borrow_mut());
                });
                return;
            }
            Product::F32Packed(weights) => {
                weights.forward_add(x, rows, out);
                return;
            }
            Product::Bf16(weights) => {
                BF16_SCRATCH.with(|cell| {
                    weights.forward_add(x, rows, out, &mut cell.borrow_mut());
                });
                return;
            }
        };
        // SAFETY: the slices hold rows x inputs, inputs x outputs and rows x outputs values with
        // the strides given, as checked above and by construction.
        unsafe {
            matmul(
                rows,
                self.outputs,
                self.inputs,
                out.as_mut_ptr(),
                self.outputs,
                true,
                x.as_ptr(),
                self.inputs,
                1,
                weight_t.as_ptr(),
                self.outputs,
                1,
                1.0,
            );
        }
    }
}

/// `dst (m x n, row stride dst_rs) = [dst +] scale * a (m x k) · b (k x n)`, single-threaded:
/// callers spread work over threads themselves.
///
/// # Safety
/// The pointers must cover the m x k, k x n and m x n matrices at their strides, and no other
/// thread may touch `dst`'s block meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    b_rs: usize,
    b_cs: usize,
    scale: f32,
) {
    // SAFETY: the caller upholds this function's safety contract (its doc comment).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a,
            a_cs as isize,
            a_rs as isize,
            b,
            b_cs as isize,
            b_rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            weight: to_vec(&vb.get(size, "weight")?)?,
            bias: to_vec(&vb.get(size, "bias")?)?,
            eps: eps as f32,
        })
    }

    fn forward(&self, rows: &mut [f32]) {
        for row in rows.chunks_exact_mut(self.weight.len()) {
            kernels::layer_norm(row, &self.weight, &self.bias, self.eps);
        }
    }
}

/// The word-embedding table: f32 rows, or Q4_0 blocks (an E5S1 container's) dequantised a row
/// at a time, with the same values the whole table dequantised at load would hold.
enum Words {
    F32(Vec<f32>),
    Q4(Vec<u8>),
}

/// `embeddings.*`: word + position + token type, then LayerNorm.
struct Embeddings {
    word: Words,
    position: Vec<f32>,
    token_type: Vec<f32>,
    types: usize,
    norm: LayerNorm,
    vocab: usize,
}

impl Embeddings {
    fn load(
        vb: VarBuilder,
        cfg: &BertConfig,
        word_blocks: Option<Vec<u8>>,
    ) -> candle_core::Result<Self> {
        let hidden = cfg.hidden_size;
        let word = match word_blocks {
            Some(blocks) => {
                if !hidden.is_multiple_of(32) || blocks.len() != cfg.vocab_size * hidden / 32 * 18 {
                    candle_core::bail!("the Q4_0 word embeddings do not fit the vocabulary");
                }
                Words::Q4(blocks)
            }
            None => Words::F32(to_vec(
                &vb.pp("word_embeddings")
                    .get((cfg.vocab_size, hidden), "weight")?,
            )?),
        };
        let position = vb
            .pp("position_embeddings")
            .get((cfg.max_position_embeddings, hidden), "weight")?;
        let token_type = vb
            .pp("token_type_embeddings")
            .get((cfg.type_vocab_size, hidden), "weight")?;
        Ok(Self {
            word,
            position: to_vec(&position)?,
            token_type: to_vec(&token_type)?,
            types: cfg.type_vocab_size,
            norm: LayerNorm::load(vb.pp("LayerNorm"), hidden, cfg.layer_norm_eps)?,
            vocab: cfg.vocab_size,
        })
    }

    /// Writes the embedding of `id` of segment `type_id` at `position` into `out` (one row).
    fn row(&self, id: u32, type_id: u32, position: usize, out: &mut [f32]) {
        let hidden = out.len();
        let dequantised;
        let word = match &self.word {
            Words::F32(table) => &table[id as usize * hidden..][..hidden],
            Words::Q4(blocks) => {
                let row = hidden / 32 * 18;
                dequantised = super::e5s1::dequantise_q4_0(&blocks[id as usize * row..][..row]);
                &dequantised[..]
            }
        };
        let position = &self.position[position * hidden..][..hidden];
        let token_type = &self.token_type[type_id as usize * hidden..][..hidden];
        for (((o, w), p), t) in out.iter_mut().zip(word).zip(position).zip(token_type) {
            *o = w + p + t;
        }
        self.norm.forward(out);
    }
}

/// One `encoder.layer.N`.
struct Layer {
    qkv: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &BertConfig, matmul: Matmul) -> candle_core::Result<Self> {
        let hidden = cfg.hidden_size;
        let attention = vb.pp("attention");
        let this = attention.pp("self");
        let parts = ["query", "key", "value"]
            .iter()
            .map(|name| {
                let vb = this.pp(name);
                Ok((vb.get((hidden, hidden), "weight")?, vb.get(hidden, "bias")?))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            qkv: Linear::from_parts(&parts, hidden, matmul)?,
            attention_output: Linear::load(
                attention.pp("output").pp("dense"),
                hidden,
                hidden,
                matmul,
            )?,
            attention_norm: LayerNorm::load(
                attention.pp("output").pp("LayerNorm"),
                hidden,
                cfg.layer_norm_eps,
            )?,
            intermediate: Linear::load(
                vb.pp("intermediate").pp("dense"),
                hidden,
                cfg.intermediate_size,
                matmul,
            )?,
            output: Linear::load(
                vb.pp("output").pp("dense"),
                cfg.intermediate_size,
                hidden,
                matmul,
            )?,
            output_norm: LayerNorm::load(
                vb.pp("output").pp("LayerNorm"),
                hidden,
                cfg.layer_norm_eps,
            )?,
        })
    }
}

/// A raw pointer that rayon tasks may share; each task writes a region no other task touches.
#[derive(Clone, Copy)]
pub(crate) struct Shared(pub(crate) *mut f32);
// SAFETY: only used for disjoint writes, joined before the buffer is read again.
unsafe impl Send for Shared {}
// SAFETY: as for Send: tasks sharing it write disjoint regions and are joined before a read.
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer, through a method so closures capture the whole (Send) wrapper.
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    /// Per-thread scratch: a chunk's intermediate activations, or one head's attention scores.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        if scratch.len() < len {
            scratch.resize(len, 0.0);
        }
        f(&mut scratch[..len])
    })
}

/// The packed CPU BERT encoder.
pub struct PackedBert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    pooling: Pooling,
    activation: Activation,
    hidden: usize,
    heads: usize,
    head_size: usize,
    intermediate: usize,
    max_positions: usize,
}

impl PackedBert {
    /// Loads the same tensor names as [`super::bert::Bert::load`]; `vb` must be on the CPU.
    /// The linear layers' products run in `matmul` precision.
    pub fn load(
        vb: VarBuilder,
        cfg: &BertConfig,
        pooling: Pooling,
        matmul: Matmul,
    ) -> candle_core::Result<Self> {
        Self::load_with_words(vb, cfg, pooling, matmul, None)
    }

    /// As [`Self::load`], with the word embeddings given as Q4_0 blocks (bare tensor names).
    pub fn load_with_words(
        vb: VarBuilder,
        cfg: &BertConfig,
        pooling: Pooling,
        matmul: Matmul,
        word_blocks: Option<Vec<u8>>,
    ) -> candle_core::Result<Self> {
        let vb = if word_blocks.is_some() {
            vb
        } else {
            super::bert::checkpoint_root(vb)
        };
        let embeddings = Embeddings::load(vb.pp("embeddings"), cfg, word_blocks)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp(format!("layer.{i}")), cfg, matmul))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            pooling,
            activation: cfg.hidden_act,
            hidden: cfg.hidden_size,
            heads: cfg.num_attention_heads,
            head_size: cfg.hidden_size / cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            max_positions: cfg.max_position_embeddings,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Pooled vectors (not normalised), one per sequence, in order.
    pub fn forward_pooled(&self, batch: &Batch) -> candle_core::Result<Vec<Vec<f32>>> {
        let hidden = self.hidden;
        let offsets = &batch.offsets;
        for index in 0..batch.len() {
            let length = batch.range(index).len();
            if length == 0 || length > self.max_positions {
                candle_core::bail!(
                    "a sequence of {length} tokens; the model takes 1 to {}",
                    self.max_positions
                );
            }
        }
        if let Some(&id) = batch
            .ids
            .iter()
            .find(|&&id| id as usize >= self.embeddings.vocab)
        {
            candle_core::bail!(
                "token id {id} is outside the vocabulary ({})",
                self.embeddings.vocab
            );
        }
        if let Some(&id) = batch
            .type_ids
            .iter()
            .find(|&&id| id as usize >= self.embeddings.types)
        {
            candle_core::bail!(
                "token type id {id} is outside the model's {} segments",
                self.embeddings.types
            );
        }
        if let Some(&position) = batch
            .positions
            .iter()
            .find(|&&p| p as usize >= self.max_positions)
        {
            candle_core::bail!(
                "position {position} is outside the model's {} positions",
                self.max_positions
            );
        }
        let tokens = batch.ids.len();
        let chunk = chunk_rows(tokens);
        // (token, segment, position) for every packed row.
        let rows: Vec<(u32, u32, usize)> = (0..tokens)
            .map(|i| (batch.ids[i], batch.type_ids[i], batch.positions[i] as usize))
            .collect();

        let mut states = vec![0.0f32; tokens * hidden];
        let mut qkv = vec![0.0f32; tokens * 3 * hidden];
        let mut context = vec![0.0f32; tokens * hidden];

        // Embeddings and the first layer's QKV projection, chunk by chunk.
        if let Some(first) = self.layers.first() {
            states
                .par_chunks_mut(chunk * hidden)
                .zip(qkv.par_chunks_mut(chunk * 3 * hidden))
                .zip(rows.par_chunks(chunk))
                .for_each(|((states, qkv), rows)| {
                    profile::time(Stage::Embeddings, || {
                        for (out, &(id, type_id, position)) in
                            states.chunks_exact_mut(hidden).zip(rows)
                        {
                            self.embeddings.row(id, type_id, position, out);
                        }
                    });
                    profile::time(Stage::Qkv, || {
                        first.qkv.forward(states, rows.len(), qkv, false)
                    });
                });
        } else {
            for (out, &(id, type_id, position)) in states.chunks_exact_mut(hidden).zip(&rows) {
                self.embeddings.row(id, type_id, position, out);
            }
        }

        for (index, layer) in self.layers.iter().enumerate() {
            self.attention(&qkv, offsets, &mut context);
            let next = self.layers.get(index + 1);
            states
                .par_chunks_mut(chunk * hidden)
                .zip(qkv.par_chunks_mut(chunk * 3 * hidden))
                .zip(context.par_chunks(chunk * hidden))
                .for_each(|((states, qkv), context)| {
                    let rows = states.len() / hidden;
                    self.feed_forward(layer, states, context, rows);
                    if let Some(next) = next {
                        profile::time(Stage::Qkv, || next.qkv.forward(states, rows, qkv, false));
                    }
                });
        }

        Ok(profile::time(Stage::Pool, || {
            offsets
                .windows(2)
                .map(|range| self.pool(&states[range[0] * hidden..range[1] * hidden]))
                .collect()
        }))
    }

    /// The per-token part of a layer for a chunk of rows: attention output projection onto the
    /// residual, LayerNorm, feed-forward onto the residual, LayerNorm, in place in `states`.
    fn feed_forward(&self, layer: &Layer, states: &mut [f32], context: &[f32], rows: usize) {
        profile::time(Stage::AttentionOutput, || {
            layer.attention_output.forward(context, rows, states, true)
        });
        profile::time(Stage::LayerNorm, || layer.attention_norm.forward(states));
        with_scratch(rows * self.intermediate, |inner| {
            profile::time(Stage::Intermediate, || {
                layer.intermediate.forward(states, rows, inner, false)
            });
            profile::time(Stage::Activation, || match self.activation {
                Activation::Gelu => kernels::gelu_erf(inner),
                Activation::GeluApproximate => kernels::gelu_tanh(inner),
                Activation::Relu => inner.iter_mut().for_each(|x| *x = x.max(0.0)),
            });
            profile::time(Stage::Output, || {
                layer.output.forward(inner, rows, states, true)
            });
        });
        profile::time(Stage::LayerNorm, || layer.output_norm.forward(states));
    }

    /// Self-attention for every sequence and head: `context = softmax(q k^T / sqrt(d)) v`.
    fn attention(&self, qkv: &[f32], offsets: &[usize], context: &mut [f32]) {
        let hidden = self.hidden;
        let stride = 3 * hidden;
        let head_size = self.head_size;
        let scale = 1.0 / (head_size as f32).sqrt();
        let out = Shared(context.as_mut_ptr());
        let tasks: Vec<(usize, usize, usize)> = offsets
            .windows(2)
            .flat_map(|range| (0..self.heads).map(move |head| (range[0], range[1], head)))
            .collect();
        tasks.par_iter().for_each(|&(start, end, head)| {
            let length = end - start;
            let operands = attention::Head {
                length,
                size: head_size,
                query: qkv[start * stride + head * head_size..].as_ptr(),
                key: qkv[start * stride + hidden + head * head_size..].as_ptr(),
                value: qkv[start * stride + 2 * hidden + head * head_size..].as_ptr(),
                stride,
                // SAFETY: start x hidden + head x head_size is inside `context`.
                out: unsafe { out.ptr().add(start * hidden + head * head_size) },
                out_stride: hidden,
                scale,
            };
            // SAFETY: query, key and value rows lie inside `qkv` (length rows of stride
            // 3 x hidden from `start`); the output block (rows start..end, this head's columns)
            // belongs to this task alone; the scratch holds exactly length x length scores.
            with_scratch(length * length, |scores| unsafe {
                attention::run(operands, scores)
            });
        });
    }

    fn pool(&self, states: &[f32]) -> Vec<f32> {
        match self.pooling {
            Pooling::Cls => states[..self.hidden].to_vec(),
            Pooling::Mean => {
                let mut sum = vec![0.0f32; self.hidden];
                let rows = states.len() / self.hidden;
                for row in states.chunks_exact(self.hidden) {
                    kernels::add(&mut sum, row);
                }
                let count = rows as f32;
                sum.iter_mut().for_each(|s| *s /= count);
                sum
            }
        }
    }
}

/// Optional per-stage timing of the packed forward (`stancer bench --profile`): CPU time summed
/// over threads. Off by default, when it costs one relaxed atomic load per stage call.
pub mod profile {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Stage {
        Embeddings,
        Qkv,
        Scores,
        Softmax,
        Context,
        AttentionOutput,
        LayerNorm,
        Intermediate,
        Activation,
        Output,
        Pool,
    }

    /// Every stage with the name reports use, in forward order.
    pub const STAGES: [(Stage, &str); 11] = [
        (Stage::Embeddings, "embeddings (gather + LayerNorm)"),
        (Stage::Qkv, "QKV projection (matmul + bias)"),
        (Stage::Scores, "attention scores q·k^T (matmul)"),
        (Stage::Softmax, "softmax"),
        (Stage::Context, "attention context p·v (matmul)"),
        (
            Stage::AttentionOutput,
            "attention output (matmul + bias + residual)",
        ),
        (Stage::LayerNorm, "LayerNorm x2"),
        (Stage::Intermediate, "feed-forward in (matmul + bias)"),
        (Stage::Activation, "GELU"),
        (Stage::Output, "feed-forward out (matmul + bias + residual)"),
        (Stage::Pool, "pooling"),
    ];

    static ENABLED: AtomicBool = AtomicBool::new(false);
    static NANOS: [AtomicU64; 11] = [const { AtomicU64::new(0) }; 11];

    /// Starts (or stops) counting.
    pub fn enable(on: bool) {
        ENABLED.store(on, Ordering::Relaxed);
    }

    /// The seconds counted per stage since the last call, and resets them.
    pub fn take() -> Vec<(&'static str, f64)> {
        STAGES
            .iter()
            .map(|&(stage, name)| {
                let nanos = NANOS[stage as usize].swap(0, Ordering::Relaxed);
                (name, nanos as f64 * 1e-9)
            })
            .collect()
    }

    #[inline(always)]
    pub(super) fn time<R>(stage: Stage, f: impl FnOnce() -> R) -> R {
        if !ENABLED.load(Ordering::Relaxed) {
            return f();
        }
        let started = Instant::now();
        let result = f();
        NANOS[stage as usize].fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }
}

mod attention;
mod bf16;
pub(crate) mod f32x16;
mod int8;
pub(crate) mod kernels;
mod tiles;

pub use bf16::bf16_available;
pub use int8::vnni_available;
