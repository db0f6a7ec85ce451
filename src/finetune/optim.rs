//! AdamW (Loshchilov and Hutter 2019, as `torch.optim.AdamW` computes it) with its moments held
//! here, so a checkpoint saves and restores them exactly; and the learning-rate schedule, a
//! linear warm-up then a linear decay to zero.

use std::collections::HashMap;

use candle_core::{Tensor, Var};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self {
            learning_rate: 3e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

pub struct AdamW {
    settings: AdamWSettings,
    vars: Vec<(String, Var)>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    /// Steps taken so far.
    pub steps: usize,
}

impl AdamW {
    pub fn new(vars: &[(String, Var)], settings: AdamWSettings) -> candle_core::Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Self {
            settings,
            first: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            second: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            vars: vars.to_vec(),
            steps: 0,
        })
    }

    /// One update at `learning_rate` from `grads`, one per var in order (scaled by
    /// `grad_scale`, for gradient accumulation). A var without a gradient is left as it is.
    pub fn step(
        &mut self,
        grads: &[Option<Tensor>],
        learning_rate: f64,
        grad_scale: f64,
    ) -> candle_core::Result<()> {
        if grads.len() != self.vars.len() {
            candle_core::bail!("{} gradients for {} vars", grads.len(), self.vars.len());
        }
        self.steps += 1;
        let s = self.settings;
        let t = self.steps as i32;
        let correction1 = 1.0 - s.beta1.powi(t);
        let correction2 = 1.0 - s.beta2.powi(t);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(grad) = &grads[i] else {
                continue;
            };
            let grad = (grad * grad_scale)?;
            let first = ((&self.first[i] * s.beta1)? + (&grad * (1.0 - s.beta1))?)?;
            let second = ((&self.second[i] * s.beta2)? + (grad.sqr()? * (1.0 - s.beta2))?)?;
            let denominator = ((&second / correction2)?.sqrt()? + s.eps)?;
            let update = ((&first / correction1)? / denominator)?;
            let decayed = (var.as_tensor() * (1.0 - learning_rate * s.weight_decay))?;
            var.set(&(decayed - (update * learning_rate)?)?)?;
            self.first[i] = first;
            self.second[i] = second;
        }
        Ok(())
    }

    /// The moments, by `NAME.adam_m` / `NAME.adam_v`, for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut state = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            state.insert(format!("{name}.adam_m"), self.first[i].clone());
            state.insert(format!("{name}.adam_v"), self.second[i].clone());
        }
        state
    }

    /// Restores the moments saved by [`AdamW::state`].
    pub fn restore(
        &mut self,
        state: &HashMap<String, Tensor>,
        steps: usize,
    ) -> candle_core::Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            let get = |suffix: &str| {
                state
                    .get(&format!("{name}.{suffix}"))
                    .cloned()
                    .ok_or_else(|| {
                        candle_core::Error::Msg(format!("the checkpoint has no {name}.{suffix}"))
                    })
            };
            self.first[i] = get("adam_m")?;
            self.second[i] = get("adam_v")?;
        }
        self.steps = steps;
        Ok(())
    }
}

/// The learning rate at optimizer step `step` (0-based) of `total`: linear warm-up over
/// `warmup` steps to `peak`, then linear decay to zero at `total`.
pub fn learning_rate(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let remaining = total.saturating_sub(step) as f64;
    let span = total.saturating_sub(warmup).max(1) as f64;
    peak * (remaining / span).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((learning_rate(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(100, 100, 10, 1.0), 0.0);
        assert!(learning_rate(5, 100, 0, 1.0) <= 1.0);
    }

    #[test]
    fn adamw_matches_a_hand_computed_step() {
        // One parameter, gradient 2 (from loss = 2x): the first bias-corrected step moves by
        // exactly lr (m/v^0.5 = 1), plus the decay lr * wd * x.
        let device = candle_core::Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[1.0f32], &device).unwrap()).unwrap();
        let settings = AdamWSettings {
            learning_rate: 0.1,
            weight_decay: 0.5,
            ..AdamWSettings::default()
        };
        let mut adam = AdamW::new(&[("x".into(), x.clone())], settings).unwrap();
        let grad = Tensor::new(&[2.0f32], &device).unwrap();
        adam.step(&[Some(grad)], 0.1, 1.0).unwrap();
        let value = x.as_tensor().to_vec1::<f32>().unwrap()[0];
        let expected = 1.0 * (1.0 - 0.1 * 0.5) - 0.1;
        assert!((f64::from(value) - expected).abs() < 1e-6, "{value}");
    }
}
