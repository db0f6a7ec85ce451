//! Fused operations with their own backward for the autograd reference forward
//! (`TrainModel::forward_autograd`), where candle's generic ones cost too much on the CPU, and
//! the frozen matrices packed once that the hand-written step (`finetune::engine`) shares:
//! - a frozen linear layer, whose backward computes the input's gradient only (candle's matmul
//!   backward also computes the gradient of the frozen weight, a third of the layer's work, and
//!   throws it away);
//! - softmax over the last dimension (candle's differentiable softmax is five passes forward);
//! - LayerNorm with frozen weight and bias (candle's fused one has no backward).
//!
//! Each backward is the textbook formula; the tests check them against candle's own autograd
//! on the composite operations.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::encode::model::packed::{f32x16, kernels};

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, name: &str) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data.as_slice(),
        _ => candle_core::bail!("{name}: f32 only"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{name}: the input must be contiguous"),
    }
}

/// `x · W^T + b` with W and b frozen.
pub struct FrozenLinear {
    pub(super) forward: Product,
    /// W itself, the matrix of the backward product `grad · W`.
    pub(super) backward: Product,
    pub(super) bias: Vec<f32>,
    pub(super) inputs: usize,
    pub(super) outputs: usize,
}

/// A frozen `(inputs, outputs)` matrix for `out += x · M`: packed once for the AVX-512 kernel,
/// or kept row-major for gemm where the CPU lacks it.
pub(super) enum Product {
    Packed(f32x16::Weights),
    Plain(Vec<f32>),
}

impl Product {
    fn new(matrix: Vec<f32>, inputs: usize, outputs: usize) -> Self {
        if f32x16::available() {
            Product::Packed(f32x16::Weights::pack(&matrix, inputs, outputs))
        } else {
            Product::Plain(matrix)
        }
    }

    /// `out (rows x outputs) += x (rows x inputs) · M`, row blocks spread over the threads
    /// (no sum crosses threads, so the bits do not depend on the split).
    fn apply(&self, x: &[f32], out: &mut [f32], inputs: usize, outputs: usize) {
        let block = block_rows(x.len() / inputs);
        out.par_chunks_mut(block * outputs)
            .zip(x.par_chunks(block * inputs))
            .for_each(|(out, x)| self.block(x, out, inputs, outputs));
    }

    /// `out += x · M` for one block of rows, on the calling thread.
    pub(super) fn block(&self, x: &[f32], out: &mut [f32], inputs: usize, outputs: usize) {
        let m = x.len() / inputs;
        debug_assert_eq!(out.len(), m * outputs);
        match self {
            Product::Packed(weights) => weights.forward_add(x, m, out),
            // SAFETY: out is m x outputs, x is m x inputs and the matrix inputs x
            // outputs, all row-major and contiguous, as checked above.
            Product::Plain(matrix) => unsafe {
                gemm::gemm(
                    m,
                    outputs,
                    inputs,
                    out.as_mut_ptr(),
                    1,
                    outputs as isize,
                    true,
                    x.as_ptr(),
                    1,
                    inputs as isize,
                    matrix.as_ptr(),
                    1,
                    outputs as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            },
        }
    }
}

/// Rows per block when work on `rows` rows is split over the threads: about four blocks per
/// thread, at least 16 rows each.
pub(super) fn block_rows(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads().max(1) * 4)
        .max(16)
}

impl FrozenLinear {
    pub fn new(weight: &Tensor, bias: &Tensor) -> Result<Arc<Self>> {
        let (outputs, inputs) = weight.dims2()?;
        let weight_t = weight.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let plain = weight.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Arc::new(Self {
            forward: Product::new(weight_t, inputs, outputs),
            backward: Product::new(plain, outputs, inputs),
            bias: bias.to_vec1::<f32>()?,
            inputs,
            outputs,
        }))
    }

    /// The base bias as a tensor (to pack a trained W beside it).
    pub fn bias_tensor(&self) -> Result<Tensor> {
        Tensor::from_slice(&self.bias, self.outputs, &candle_core::Device::Cpu)
    }

    pub fn forward(self: &Arc<Self>, xs: &Tensor) -> Result<Tensor> {
        xs.contiguous()?.apply_op1(FrozenLinearOp(self.clone()))
    }
}

struct FrozenLinearOp(Arc<FrozenLinear>);

impl CustomOp1 for FrozenLinearOp {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let this = &self.0;
        let x = f32_slice(storage, layout, "frozen-linear")?;
        let dims = layout.dims();
        if dims.last() != Some(&this.inputs) {
            candle_core::bail!(
                "frozen-linear: input {dims:?}, expected (.., {})",
                this.inputs
            );
        }
        let rows = x.len() / this.inputs;
        let mut out = vec![0f32; rows * this.outputs];
        for row in out.chunks_exact_mut(this.outputs) {
            row.copy_from_slice(&this.bias);
        }
        this.forward.apply(x, &mut out, this.inputs, this.outputs);
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = this.outputs;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let this = &self.0;
        let grad = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let rows = grad.len() / this.outputs;
        let mut dx = vec![0f32; rows * this.inputs];
        this.backward
            .apply(&grad, &mut dx, this.outputs, this.inputs);
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    xs.apply_op1(Softmax)
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, "softmax")?;
        let width = *layout.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(width * 64)
            .zip(x.par_chunks(width * 64))
            .for_each(|(out, x)| {
                out.copy_from_slice(x);
                for row in out.chunks_exact_mut(width) {
                    kernels::softmax(row);
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // dx = y * (g - sum(g * y)) over the last dimension.
        let y = res.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let width = *res.dims().last().unwrap_or(&1);
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(width * 64)
            .zip(y.par_chunks(width * 64).zip(g.par_chunks(width * 64)))
            .for_each(|(dx, (y, g))| {
                for ((dx, y), g) in dx
                    .chunks_exact_mut(width)
                    .zip(y.chunks_exact(width))
                    .zip(g.chunks_exact(width))
                {
                    let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
                    for ((d, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                        *d = y * (g - dot);
                    }
                }
            });
        Ok(Some(Tensor::from_vec(dx, res.shape(), res.device())?))
    }
}

/// The exact (erf) GELU.
pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op1(Gelu)
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, "gelu")?;
        let mut out = x.to_vec();
        out.par_chunks_mut(4096).for_each(kernels::gelu_erf);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let x = arg.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(4096)
            .zip(x.par_chunks(4096).zip(g.par_chunks(4096)))
            .for_each(|(dx, (x, g))| kernels::gelu_erf_backward(x, g, dx));
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// LayerNorm over the last dimension with a frozen weight and bias.
pub struct FrozenLayerNorm {
    pub(super) weight: Vec<f32>,
    pub(super) bias: Vec<f32>,
    pub(super) eps: f32,
}

impl FrozenLayerNorm {
    pub fn new(weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            weight: weight.to_vec1::<f32>()?,
            bias: bias.to_vec1::<f32>()?,
            eps: eps as f32,
        }))
    }

    pub fn forward(self: &Arc<Self>, xs: &Tensor) -> Result<Tensor> {
        xs.contiguous()?.apply_op1(LayerNormOp(self.clone()))
    }
}

struct LayerNormOp(Arc<FrozenLayerNorm>);

/// Mean and 1/sqrt(variance + eps) of a row.
pub(super) fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let variance = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (variance + eps).sqrt())
}

impl CustomOp1 for LayerNormOp {
    fn name(&self) -> &'static str {
        "frozen-layer-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let this = &self.0;
        let x = f32_slice(storage, layout, "layer-norm")?;
        let width = this.weight.len();
        if layout.dims().last() != Some(&width) {
            candle_core::bail!(
                "layer-norm: input {:?}, expected (.., {width})",
                layout.dims()
            );
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(width * 64)
            .zip(x.par_chunks(width * 64))
            .for_each(|(out, x)| {
                for (o, x) in out.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
                    let (mean, inverse) = moments(x, this.eps);
                    for (((o, &v), &w), &b) in o.iter_mut().zip(x).zip(&this.weight).zip(&this.bias)
                    {
                        *o = (v - mean) * inverse * w + b;
                    }
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // With x̂ = (x - mean) / σ and h = g * w:
        // dx = (h - mean(h) - x̂ * mean(h * x̂)) / σ.
        let this = &self.0;
        let width = this.weight.len();
        let x = arg.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(width * 64)
            .zip(x.par_chunks(width * 64).zip(g.par_chunks(width * 64)))
            .for_each(|(dx, (x, g))| {
                let mut h = vec![0f32; width];
                for ((dx, x), g) in dx
                    .chunks_exact_mut(width)
                    .zip(x.chunks_exact(width))
                    .zip(g.chunks_exact(width))
                {
                    let (mean, inverse) = moments(x, this.eps);
                    let n = width as f32;
                    let mut mean_h = 0f32;
                    let mut mean_hx = 0f32;
                    for i in 0..width {
                        h[i] = g[i] * this.weight[i];
                        let normed = (x[i] - mean) * inverse;
                        mean_h += h[i];
                        mean_hx += h[i] * normed;
                    }
                    mean_h /= n;
                    mean_hx /= n;
                    for i in 0..width {
                        let normed = (x[i] - mean) * inverse;
                        dx[i] = (h[i] - mean_h - normed * mean_hx) * inverse;
                    }
                }
            });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut state = seed;
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Value and input gradient of `loss = sum(f(x) * weights)`.
    fn value_and_gradient(
        x: &Tensor,
        weights: &Tensor,
        f: impl Fn(&Tensor) -> Tensor,
    ) -> (Tensor, Tensor) {
        let var = Var::from_tensor(x).unwrap();
        let y = f(var.as_tensor());
        let loss = (&y * weights).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        (y, grads.get(var.as_tensor()).unwrap().clone())
    }

    #[test]
    fn frozen_linear_matches_candle_forward_and_backward() {
        let x = random(&[2, 5, 12], 1);
        let w = random(&[7, 12], 2);
        let b = random(&[7], 3);
        let weights = random(&[2, 5, 7], 4);
        let linear = FrozenLinear::new(&w, &b).unwrap();
        let (y1, g1) = value_and_gradient(&x, &weights, |x| linear.forward(x).unwrap());
        let (y2, g2) = value_and_gradient(&x, &weights, |x| {
            x.broadcast_matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap()
        });
        assert!(max_difference(&y1, &y2) < 1e-5);
        assert!(max_difference(&g1, &g2) < 1e-5);
    }

    #[test]
    fn softmax_matches_candle_forward_and_backward() {
        let x = (random(&[3, 4, 9], 5) * 4.0).unwrap();
        let weights = random(&[3, 4, 9], 6);
        let (y1, g1) = value_and_gradient(&x, &weights, |x| softmax_last_dim(x).unwrap());
        let (y2, g2) = value_and_gradient(&x, &weights, |x| {
            candle_nn::ops::softmax(x, D::Minus1).unwrap()
        });
        assert!(max_difference(&y1, &y2) < 1e-6);
        assert!(max_difference(&g1, &g2) < 1e-6);
    }

    #[test]
    fn gelu_matches_candle_forward_and_backward() {
        let x = (random(&[5, 40], 11) * 5.0).unwrap();
        let weights = random(&[5, 40], 12);
        let (y1, g1) = value_and_gradient(&x, &weights, |x| gelu_erf(x).unwrap());
        let (y2, g2) = value_and_gradient(&x, &weights, |x| x.gelu_erf().unwrap());
        assert!(
            max_difference(&y1, &y2) < 1e-5,
            "{}",
            max_difference(&y1, &y2)
        );
        assert!(
            max_difference(&g1, &g2) < 1e-5,
            "{}",
            max_difference(&g1, &g2)
        );
    }

    #[test]
    fn layer_norm_matches_candle_forward_and_backward() {
        let x = (random(&[6, 16], 7) * 3.0).unwrap();
        let w = random(&[16], 8);
        let b = random(&[16], 9);
        let weights = random(&[6, 16], 10);
        let norm = FrozenLayerNorm::new(&w, &b, 1e-12).unwrap();
        let (y1, g1) = value_and_gradient(&x, &weights, |x| norm.forward(x).unwrap());
        let (y2, g2) = value_and_gradient(&x, &weights, |x| {
            candle_nn::ops::layer_norm_slow(x, &w, &b, 1e-12).unwrap()
        });
        assert!(
            max_difference(&y1, &y2) < 1e-5,
            "{}",
            max_difference(&y1, &y2)
        );
        assert!(
            max_difference(&g1, &g2) < 1e-4,
            "{}",
            max_difference(&g1, &g2)
        );
    }
}
