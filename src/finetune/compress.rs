//! A fully fine-tuned model as a LoRA adapter: each trained weight matrix's change from the base,
//! `D = W - W0`, replaced by its best rank-r approximation `B · A` (a truncated SVD), so the
//! result loads, merges and ships like any LoRA adapter (scale 1: alpha = rank).
//!
//! The SVD is by subspace iteration on the smaller Gram matrix (`DᵀD` or `DDᵀ`) with a few
//! extra vectors, then Rayleigh-Ritz with Jacobi on the small projected matrix: in f64,
//! seeded, and the same on every machine. Each matrix reports the share of `‖D‖²` the rank
//! keeps, so what the compression loses is written into the model card.

use crate::eval::bootstrap::SplitMix64;

/// Extra vectors beyond the rank, and iterations of the subspace.
const OVERSAMPLE: usize = 16;
const ITERATIONS: usize = 60;

/// A rank-r factorisation `D ≈ B · A` of an (m x n) matrix: B (m x r) and A (r x n), row-major,
/// and the share of `‖D‖²` it keeps.
pub struct LowRank {
    pub b: Vec<f32>,
    pub a: Vec<f32>,
    pub rank: usize,
    pub kept: f64,
}

/// The best rank-`rank` approximation of `d` (m x n, row-major), to the subspace iteration's
/// precision.
pub fn low_rank(d: &[f32], m: usize, n: usize, rank: usize, seed: u64) -> LowRank {
    assert_eq!(d.len(), m * n, "this is a bug: the matrix is m x n");
    let d: Vec<f64> = d.iter().map(|&v| v as f64).collect();
    let total: f64 = d.iter().map(|v| v * v).sum();
    // Work on the side with the smaller dimension: right singular vectors of D (n <= m), or of
    // Dᵀ.
    let (rows, cols, matrix) = if n <= m {
        (m, n, d)
    } else {
        (n, m, transpose(&d, m, n))
    };
    let rank = rank.min(cols);
    let vectors = right_singular_vectors(&matrix, rows, cols, rank, seed);
    // B' = M · V (rows x rank) and A' = Vᵀ, so M ≈ B' · A'.
    let mut projected = vec![0f64; rows * rank];
    for (r, out) in projected.chunks_exact_mut(rank).enumerate() {
        let row = &matrix[r * cols..(r + 1) * cols];
        for (k, o) in out.iter_mut().enumerate() {
            *o = (0..cols).map(|c| row[c] * vectors[c * rank + k]).sum();
        }
    }
    let kept_energy: f64 = projected.iter().map(|v| v * v).sum();
    let kept = if total > 0.0 {
        kept_energy / total
    } else {
        1.0
    };
    let to32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let (b, a) = if n <= m {
        // D ≈ (D V) · Vᵀ.
        (projected, transpose(&vectors, cols, rank))
    } else {
        // Dᵀ ≈ B' A', so D ≈ A'ᵀ B'ᵀ = V · B'ᵀ.
        (vectors, transpose(&projected, rows, rank))
    };
    LowRank {
        b: to32(b),
        a: to32(a),
        rank,
        kept,
    }
}

fn transpose(matrix: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0f64; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = matrix[r * cols + c];
        }
    }
    out
}

/// The top `rank` right singular vectors of `matrix` (rows x cols), as a (cols x rank) matrix.
fn right_singular_vectors(
    matrix: &[f64],
    rows: usize,
    cols: usize,
    rank: usize,
    seed: u64,
) -> Vec<f64> {
    // G = MᵀM (cols x cols).
    let mut gram = vec![0f64; cols * cols];
    for row in matrix.chunks_exact(cols) {
        for (i, &x) in row.iter().enumerate() {
            if x == 0.0 {
                continue;
            }
            let out = &mut gram[i * cols..(i + 1) * cols];
            for (o, &y) in out.iter_mut().zip(row) {
                *o += x * y;
            }
        }
    }
    let _ = rows;
    let width = (rank + OVERSAMPLE).min(cols);
    let mut random = SplitMix64::new(seed);
    let mut q: Vec<f64> = (0..cols * width)
        .map(|_| (random.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        .collect();
    orthonormalise(&mut q, cols, width);
    for _ in 0..ITERATIONS {
        q = multiply(&gram, &q, cols, cols, width);
        orthonormalise(&mut q, cols, width);
    }
    // Rayleigh-Ritz: T = Qᵀ G Q (width x width), T = V Λ Vᵀ, the vectors Q V by Λ descending.
    let gq = multiply(&gram, &q, cols, cols, width);
    let qt = transpose(&q, cols, width);
    let small = multiply(&qt, &gq, width, cols, width);
    let (values, eigenvectors) = jacobi(small, width);
    let mut order: Vec<usize> = (0..width).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut out = vec![0f64; cols * rank];
    for c in 0..cols {
        for (k, &j) in order.iter().take(rank).enumerate() {
            out[c * rank + k] = (0..width)
                .map(|i| q[c * width + i] * eigenvectors[i * width + j])
                .sum();
        }
    }
    out
}

/// a (m x k) · b (k x n), row-major.
fn multiply(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for (r, o) in out.chunks_exact_mut(n).enumerate() {
        for (i, &x) in a[r * k..(r + 1) * k].iter().enumerate() {
            if x == 0.0 {
                continue;
            }
            for (o, &y) in o.iter_mut().zip(&b[i * n..(i + 1) * n]) {
                *o += x * y;
            }
        }
    }
    out
}

/// The columns of `q` (rows x cols) made orthonormal, by modified Gram-Schmidt twice over.
fn orthonormalise(q: &mut [f64], rows: usize, cols: usize) {
    for _ in 0..2 {
        for j in 0..cols {
            for i in 0..j {
                let dot: f64 = (0..rows).map(|r| q[r * cols + i] * q[r * cols + j]).sum();
                for r in 0..rows {
                    q[r * cols + j] -= dot * q[r * cols + i];
                }
            }
            let norm = (0..rows)
                .map(|r| q[r * cols + j] * q[r * cols + j])
                .sum::<f64>()
                .sqrt();
            // A column with nothing left (a matrix of lower rank than asked) stays zero.
            let inverse = if norm > 1e-300 { 1.0 / norm } else { 0.0 };
            for r in 0..rows {
                q[r * cols + j] *= inverse;
            }
        }
    }
}

/// Eigenvalues and eigenvectors (columns of the returned n x n matrix) of a symmetric matrix,
/// by cyclic Jacobi rotations.
fn jacobi(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(random: &mut SplitMix64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| (random.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
            .collect()
    }

    /// An (m x n) matrix of exact rank `rank` plus a little noise.
    fn matrix(m: usize, n: usize, rank: usize, noise: f64) -> Vec<f32> {
        let mut random = SplitMix64::new(9);
        let (u, v) = (draw(&mut random, m * rank), draw(&mut random, rank * n));
        let mut d = multiply(&u, &v, m, rank, n);
        for (x, e) in d.iter_mut().zip(draw(&mut random, m * n)) {
            *x += noise * e;
        }
        d.into_iter().map(|x| x as f32).collect()
    }

    fn error(d: &[f32], low: &LowRank, m: usize, n: usize) -> f64 {
        let b: Vec<f64> = low.b.iter().map(|&x| x as f64).collect();
        let a: Vec<f64> = low.a.iter().map(|&x| x as f64).collect();
        let product = multiply(&b, &a, m, low.rank, n);
        let num: f64 = d
            .iter()
            .zip(&product)
            .map(|(&x, y)| (x as f64 - y).powi(2))
            .sum();
        let den: f64 = d.iter().map(|&x| (x as f64).powi(2)).sum();
        (num / den).sqrt()
    }

    #[test]
    fn a_matrix_of_low_rank_is_recovered_on_either_side() {
        for (m, n) in [(60, 24), (24, 60)] {
            let d = matrix(m, n, 5, 0.0);
            let low = low_rank(&d, m, n, 5, 1);
            assert!(
                error(&d, &low, m, n) < 1e-5,
                "{m}x{n}: {}",
                error(&d, &low, m, n)
            );
            assert!((low.kept - 1.0).abs() < 1e-9);
            // A rank too small keeps less, and says so.
            let low = low_rank(&d, m, n, 2, 1);
            assert!(low.kept < 0.999 && low.kept > 0.1, "kept {}", low.kept);
            assert!((1.0 - low.kept - error(&d, &low, m, n).powi(2)).abs() < 1e-6);
        }
    }

    #[test]
    fn the_kept_share_is_the_optimum_the_singular_values_allow() {
        // Noise on top of rank 4: rank 4 keeps nearly all of it, and a full rank keeps all.
        let (m, n) = (40, 30);
        let d = matrix(m, n, 4, 0.01);
        assert!(low_rank(&d, m, n, 4, 3).kept > 0.999);
        let full = low_rank(&d, m, n, 30, 3);
        assert!(error(&d, &full, m, n) < 1e-5);
    }
}
