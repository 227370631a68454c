//! Optimizers, written over tch tensors so that their state can be saved in a checkpoint and
//! their learning rate changed by schedules. Updates run in place under `no_grad`.

// tch's in-place operations return a second handle to the tensor they modified; the updates
// below keep using the original, so those handles are dropped on purpose.
#![allow(unused_must_use)]

use crate::error::{Error, Result};
use tch::Tensor;

/// Which update rule, with its hyper-parameters. Build with [`Optimizer::sgd`], [`Optimizer::adam`],
/// [`Optimizer::adamw`] or [`Optimizer::rmsprop`] and the builder methods.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Sgd { momentum: f64, nesterov: bool },
    Adam { beta1: f64, beta2: f64, eps: f64, decoupled: bool },
    RmsProp { alpha: f64, eps: f64, momentum: f64 },
}

/// An optimizer: the rule, learning rate, weight decay, gradient clipping and per-parameter state.
#[derive(Debug)]
pub struct Optimizer {
    pub rule: Rule,
    pub lr: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value before each step.
    pub clip_norm: Option<f64>,
    /// Clip every gradient element to ±this value before each step.
    pub clip_value: Option<f64>,
    step: i64,
    /// Per parameter: the rule's buffers (momentum / first and second moments).
    state: Vec<Vec<Tensor>>,
}

impl Optimizer {
    fn with_rule(rule: Rule, lr: f64) -> Self {
        Optimizer {
            rule,
            lr,
            weight_decay: 0.0,
            clip_norm: None,
            clip_value: None,
            step: 0,
            state: Vec::new(),
        }
    }

    /// Stochastic gradient descent (add `.momentum(0.9)` and `.nesterov()` as needed).
    pub fn sgd(lr: f64) -> Self {
        Self::with_rule(Rule::Sgd { momentum: 0.0, nesterov: false }, lr)
    }

    /// Adam with L2 weight decay added to the gradient (PyTorch's `Adam`).
    pub fn adam(lr: f64) -> Self {
        Self::with_rule(Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, decoupled: false }, lr)
    }

    /// Adam with decoupled weight decay (PyTorch's `AdamW`; default decay 0.01).
    pub fn adamw(lr: f64) -> Self {
        let mut o = Self::with_rule(Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, decoupled: true }, lr);
        o.weight_decay = 0.01;
        o
    }

    /// RMSprop (PyTorch's defaults: alpha 0.99, eps 1e-8).
    pub fn rmsprop(lr: f64) -> Self {
        Self::with_rule(Rule::RmsProp { alpha: 0.99, eps: 1e-8, momentum: 0.0 }, lr)
    }

    pub fn momentum(mut self, m: f64) -> Self {
        match &mut self.rule {
            Rule::Sgd { momentum, .. } | Rule::RmsProp { momentum, .. } => *momentum = m,
            Rule::Adam { .. } => {}
        }
        self
    }

    pub fn nesterov(mut self) -> Self {
        if let Rule::Sgd { nesterov, .. } = &mut self.rule {
            *nesterov = true;
        }
        self
    }

    pub fn betas(mut self, b1: f64, b2: f64) -> Self {
        if let Rule::Adam { beta1, beta2, .. } = &mut self.rule {
            (*beta1, *beta2) = (b1, b2);
        }
        self
    }

    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }

    pub fn clip_grad_norm(mut self, max: f64) -> Self {
        self.clip_norm = Some(max);
        self
    }

    pub fn clip_grad_value(mut self, max: f64) -> Self {
        self.clip_value = Some(max);
        self
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    fn buffers_per_param(&self) -> usize {
        match self.rule {
            Rule::Sgd { momentum, .. } => usize::from(momentum != 0.0),
            Rule::Adam { .. } => 2,
            Rule::RmsProp { momentum, .. } => 1 + usize::from(momentum != 0.0),
        }
    }

    /// Sets gradients to zero (drops them, like PyTorch's `set_to_none`).
    pub fn zero_grad(params: &mut [Tensor]) {
        for p in params.iter_mut() {
            p.zero_grad();
        }
    }

    /// Applies one update to `params` from their gradients.
    pub fn step(&mut self, params: &[Tensor]) -> Result<()> {
        if self.state.is_empty() {
            let n = self.buffers_per_param();
            self.state = params
                .iter()
                .map(|p| (0..n).map(|_| p.zeros_like()).collect())
                .collect();
        }
        if self.state.len() != params.len() {
            return Err(Error::Usage(format!(
                "optimizer holds state for {} parameters but the model has {}",
                self.state.len(),
                params.len()
            )));
        }
        self.step += 1;
        tch::no_grad(|| self.update(params))
    }

    fn clip(&self, grads: &mut [Tensor]) -> Result<()> {
        if let Some(max) = self.clip_value {
            for g in grads.iter_mut() {
                g.f_clamp_(-max, max)?;
            }
        }
        if let Some(max) = self.clip_norm {
            // Stays on the device: no host sync for the norm.
            let norms: Vec<Tensor> = grads.iter().map(|g| g.f_norm()).collect::<Result<_, _>>()?;
            let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
            let coef = (total.f_add_scalar(1e-6)?.f_reciprocal()? * max).f_clamp_max(1.0)?;
            for g in grads.iter_mut() {
                g.f_mul_(&coef)?;
            }
        }
        Ok(())
    }

    fn update(&mut self, params: &[Tensor]) -> Result<()> {
        let mut grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
        let defined: Vec<bool> = grads.iter().map(Tensor::defined).collect();
        let mut present: Vec<Tensor> = grads
            .iter()
            .zip(&defined)
            .filter(|(_, d)| **d)
            .map(|(g, _)| g.shallow_clone())
            .collect();
        self.clip(&mut present)?;
        let (lr, wd, t) = (self.lr, self.weight_decay, self.step as f64);
        for ((param, grad), (buffers, has_grad)) in params
            .iter()
            .zip(grads.iter_mut())
            .zip(self.state.iter_mut().zip(&defined))
        {
            if !has_grad {
                continue;
            }
            let mut p = param.shallow_clone();
            match self.rule {
                Rule::Sgd { momentum, nesterov } => {
                    let mut g = if wd != 0.0 { grad.f_add(&param.f_mul_scalar(wd)?)? } else { grad.shallow_clone() };
                    if momentum != 0.0 {
                        let buf = &mut buffers[0];
                        buf.f_mul_scalar_(momentum)?.f_add_(&g)?;
                        g = if nesterov { g.f_add(&buf.f_mul_scalar(momentum)?)? } else { buf.shallow_clone() };
                    }
                    p.f_add_(&g.f_mul_scalar(-lr)?)?;
                }
                Rule::Adam { beta1, beta2, eps, decoupled } => {
                    let g = if wd != 0.0 && !decoupled { grad.f_add(&param.f_mul_scalar(wd)?)? } else { grad.shallow_clone() };
                    if wd != 0.0 && decoupled {
                        p.f_mul_scalar_(1.0 - lr * wd)?;
                    }
                    let (m, v) = buffers.split_at_mut(1);
                    m[0].f_lerp_(&g, 1.0 - beta1)?;
                    v[0].f_mul_scalar_(beta2)?.f_addcmul_(&g.f_mul_scalar(1.0 - beta2)?, &g)?;
                    let bc1 = 1.0 - beta1.powf(t);
                    let bc2 = 1.0 - beta2.powf(t);
                    let step_size = lr / bc1;
                    let mut denom = v[0].f_sqrt()?;
                    denom.f_mul_scalar_(1.0 / bc2.sqrt())?.f_add_scalar_(eps)?.f_mul_scalar_(-1.0 / step_size)?;
                    p.f_addcdiv_(&m[0], &denom)?;
                }
                Rule::RmsProp { alpha, eps, momentum } => {
                    let g = if wd != 0.0 { grad.f_add(&param.f_mul_scalar(wd)?)? } else { grad.shallow_clone() };
                    let (sq, rest) = buffers.split_at_mut(1);
                    sq[0].f_mul_scalar_(alpha)?.f_addcmul_(&g.f_mul_scalar(1.0 - alpha)?, &g)?;
                    let mut denom = sq[0].f_sqrt()?;
                    denom.f_add_scalar_(eps)?;
                    if momentum != 0.0 {
                        let buf = &mut rest[0];
                        buf.f_mul_scalar_(momentum)?.f_addcdiv_(&g, &denom)?;
                        p.f_add_(&buf.f_mul_scalar(-lr)?)?;
                    } else {
                        denom.f_mul_scalar_(-1.0 / lr)?;
                        p.f_addcdiv_(&g, &denom)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors, for checkpoints.
    pub(crate) fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_owned(), Tensor::from(self.step))];
        for (i, buffers) in self.state.iter().enumerate() {
            for (j, b) in buffers.iter().enumerate() {
                out.push((format!("{i}.{j}"), b.shallow_clone()));
            }
        }
        out
    }

    /// Restores state saved by [`Optimizer::state_tensors`] for `params`.
    pub(crate) fn load_state(&mut self, named: &std::collections::HashMap<String, Tensor>, params: &[Tensor]) -> Result<()> {
        let n = self.buffers_per_param();
        let mut state = Vec::with_capacity(params.len());
        for (i, p) in params.iter().enumerate() {
            let mut buffers = Vec::with_capacity(n);
            for j in 0..n {
                let key = format!("{i}.{j}");
                let t = named.get(&key).ok_or_else(|| {
                    Error::Usage(format!("checkpoint has no optimizer buffer {key}: was it saved with another optimizer?"))
                })?;
                if t.size() != p.size() {
                    return Err(Error::shape(format!("optimizer buffer {key}"), format!("{:?}", p.size()), &t.size()));
                }
                buffers.push(t.to_device(p.device()).to_kind(p.kind()));
            }
            state.push(buffers);
        }
        self.state = state;
        self.step = named.get("step").map(|t| t.int64_value(&[])).unwrap_or(0);
        Ok(())
    }
}
