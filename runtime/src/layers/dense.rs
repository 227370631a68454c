//! Fully connected layers, dropout, flattening and activations.

use super::{expect_input, not_built, Layer};
use crate::error::{Error, Result};
use tch::{nn, Tensor};

/// Fully connected layer `y = x Wᵀ + b` over the last dimension (Keras `Dense`, PyTorch `Linear`).
#[derive(Debug)]
pub struct Dense {
    units: i64,
    bias: bool,
    params: Option<(Tensor, Option<Tensor>)>,
}

/// PyTorch's name for [`Dense`].
pub type Linear = Dense;

impl Dense {
    pub fn new(units: i64) -> Self {
        Dense {
            units,
            bias: true,
            params: None,
        }
    }

    /// Without the bias term.
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }
}

/// PyTorch's default initialisation for weights and biases: U(-1/√fan_in, 1/√fan_in).
pub(crate) fn fan_in_uniform(vs: &nn::Path, name: &str, dims: &[i64], fan_in: i64) -> Tensor {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    vs.uniform(name, dims, -bound, bound)
}

impl Layer for Dense {
    fn name(&self) -> String {
        format!("Dense({})", self.units)
    }

    fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> Result<()> {
        let size = sample.size();
        let Some(&inputs) = size.last().filter(|_| size.len() >= 2) else {
            return Err(Error::shape(self.name(), "[batch, …, features]", &size));
        };
        let weight = vs.kaiming_uniform("weight", &[self.units, inputs]);
        let bias = self
            .bias
            .then(|| fan_in_uniform(vs, "bias", &[self.units], inputs));
        self.params = Some((weight, bias));
        Ok(())
    }

    fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let (weight, bias) = self.params.as_ref().ok_or_else(|| not_built(&self.name()))?;
        let inputs = weight.size()[1];
        if xs.size().last() != Some(&inputs) {
            return Err(Error::shape(
                format!("{} input", self.name()),
                format!("[batch, …, {inputs}]"),
                &xs.size(),
            ));
        }
        Ok(xs.f_linear(weight, bias.as_ref())?)
    }
}

/// Randomly zeroes elements with probability `p` while training.
#[derive(Debug)]
pub struct Dropout(pub f64);

impl Layer for Dropout {
    fn name(&self) -> String {
        format!("Dropout({})", self.0)
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if !(0.0..1.0).contains(&self.0) {
            return Err(Error::Usage(format!("Dropout probability must be in [0, 1), got {}", self.0)));
        }
        Ok(xs.f_dropout(self.0, train)?)
    }
}

/// Flattens everything but the batch dimension.
#[derive(Debug)]
pub struct Flatten;

impl Layer for Flatten {
    fn name(&self) -> String {
        "Flatten".into()
    }

    fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        expect_input_rank_at_least(xs, "Flatten", 2)?;
        Ok(xs.f_flatten(1, -1)?)
    }
}

fn expect_input_rank_at_least(xs: &Tensor, layer: &str, rank: usize) -> Result<()> {
    if xs.dim() >= rank {
        Ok(())
    } else {
        expect_input(xs, layer, rank, None, "[batch, …] with at least 2 dimensions")
    }
}

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, |$x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl Layer for $name {
            fn name(&self) -> String {
                stringify!($name).into()
            }

            fn forward(&self, $x: &Tensor, _train: bool) -> Result<Tensor> {
                Ok($body?)
            }
        }
    };
}

activation!(/// max(0, x)
    ReLU, |x| x.f_relu());
activation!(/// Gaussian error linear unit (exact form, as PyTorch's default).
    GELU, |x| x.f_gelu("none"));
activation!(/// 1 / (1 + e⁻ˣ)
    Sigmoid, |x| x.f_sigmoid());
activation!(/// Hyperbolic tangent.
    Tanh, |x| x.f_tanh());

/// Softmax over one dimension (the last by default).
#[derive(Debug, Clone, Copy)]
pub struct Softmax(pub i64);

impl Default for Softmax {
    fn default() -> Self {
        Softmax(-1)
    }
}

impl Layer for Softmax {
    fn name(&self) -> String {
        format!("Softmax(dim={})", self.0)
    }

    fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(xs.f_softmax(self.0, xs.kind())?)
    }
}

/// max(0, x) + slope · min(0, x).
#[derive(Debug, Clone, Copy)]
pub struct LeakyReLU(pub f64);

impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU(0.01)
    }
}

impl Layer for LeakyReLU {
    fn name(&self) -> String {
        format!("LeakyReLU({})", self.0)
    }

    fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let negative = xs.f_clamp_max(0.0)?.f_mul_scalar(self.0)?;
        Ok(xs.f_clamp_min(0.0)?.f_add(&negative)?)
    }
}
