//! Normalisation layers.

use super::{expect_input, not_built, Layer};
use crate::error::{Error, Result};
use tch::{nn, Tensor};

#[derive(Debug)]
struct BatchNormParams {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

macro_rules! batch_norm {
    ($(#[$doc:meta])* $name:ident, $ranks:expr, $shape:expr) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $name {
            params: Option<BatchNormParams>,
        }

        impl $name {
            pub fn new() -> Self {
                Self::default()
            }
        }

        impl Layer for $name {
            fn name(&self) -> String {
                stringify!($name).into()
            }

            fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> Result<()> {
                if !$ranks.contains(&sample.dim()) {
                    return Err(Error::shape(self.name(), $shape, &sample.size()));
                }
                let c = sample.size()[1];
                self.params = Some(BatchNormParams {
                    weight: vs.ones("weight", &[c]),
                    bias: vs.zeros("bias", &[c]),
                    running_mean: vs.zeros_no_train("running_mean", &[c]),
                    running_var: vs.ones_no_train("running_var", &[c]),
                });
                Ok(())
            }

            fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
                let p = self.params.as_ref().ok_or_else(|| not_built(&self.name()))?;
                let c = p.weight.size()[0];
                if !$ranks.contains(&xs.dim()) || xs.size()[1] != c {
                    return Err(Error::shape(format!("{} input", self.name()), $shape.replace("channels", &c.to_string()), &xs.size()));
                }
                Ok(xs.f_batch_norm(
                    Some(&p.weight), Some(&p.bias), Some(&p.running_mean), Some(&p.running_var),
                    train, 0.1, 1e-5, false,
                )?)
            }
        }
    };
}

batch_norm!(/// Batch normalisation over `[batch, channels]` or `[batch, channels, length]`.
    BatchNorm1d, [2usize, 3], "[batch, channels] or [batch, channels, length]");
batch_norm!(/// Batch normalisation over `[batch, channels, height, width]`.
    BatchNorm2d, [4usize], "[batch, channels, height, width]");

/// Layer normalisation over the last dimension.
#[derive(Debug, Default)]
pub struct LayerNorm {
    params: Option<(Tensor, Tensor)>,
}

impl LayerNorm {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for LayerNorm {
    fn name(&self) -> String {
        "LayerNorm".into()
    }

    fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> Result<()> {
        let size = sample.size();
        let Some(&d) = size.last().filter(|_| size.len() >= 2) else {
            return Err(Error::shape(self.name(), "[batch, …, features]", &size));
        };
        self.params = Some((vs.ones("weight", &[d]), vs.zeros("bias", &[d])));
        Ok(())
    }

    fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let (w, b) = self.params.as_ref().ok_or_else(|| not_built(&self.name()))?;
        let d = w.size()[0];
        if xs.size().last() != Some(&d) {
            expect_input(xs, "LayerNorm", usize::MAX, None, &format!("[batch, …, {d}]"))?;
        }
        Ok(xs.f_layer_norm([d], Some(w), Some(b), 1e-5, false)?)
    }
}
