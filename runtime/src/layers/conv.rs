//! Convolutions and pooling over `[batch, channels, …]` inputs.

use super::dense::fan_in_uniform;
use super::{expect_input, not_built, Layer};
use crate::error::Result;
use tch::{nn, Kind, Tensor};

macro_rules! conv_layer {
    ($(#[$doc:meta])* $name:ident, $rank:expr, $spatial:expr, $call:ident, $shape:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            filters: i64,
            kernel: i64,
            stride: i64,
            padding: i64,
            params: Option<(Tensor, Tensor)>,
        }

        impl $name {
            pub fn new(filters: i64, kernel: i64) -> Self {
                $name { filters, kernel, stride: 1, padding: 0, params: None }
            }

            pub fn stride(mut self, stride: i64) -> Self {
                self.stride = stride;
                self
            }

            /// Zero padding on every side; `same` for odd kernels is `kernel / 2`.
            pub fn padding(mut self, padding: i64) -> Self {
                self.padding = padding;
                self
            }

            /// Padding that keeps the spatial size at stride 1 (odd kernels).
            pub fn same(self) -> Self {
                let p = self.kernel / 2;
                self.padding(p)
            }
        }

        impl Layer for $name {
            fn name(&self) -> String {
                format!("{}({}, k={}, s={}, p={})", stringify!($name), self.filters, self.kernel, self.stride, self.padding)
            }

            fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> Result<()> {
                expect_input(sample, &self.name(), $rank, None, $shape)?;
                let channels = sample.size()[1];
                let mut dims = vec![self.filters, channels];
                dims.extend(std::iter::repeat_n(self.kernel, $spatial));
                let fan_in = channels * self.kernel.pow($spatial as u32);
                let weight = vs.kaiming_uniform("weight", &dims);
                let bias = fan_in_uniform(vs, "bias", &[self.filters], fan_in);
                self.params = Some((weight, bias));
                Ok(())
            }

            fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
                let (weight, bias) = self.params.as_ref().ok_or_else(|| not_built(&self.name()))?;
                let channels = weight.size()[1];
                expect_input(xs, &self.name(), $rank, Some((1, channels)), &$shape.replace("channels", &channels.to_string()))?;
                let s = [self.stride; $spatial];
                let p = [self.padding; $spatial];
                Ok(xs.$call(weight, Some(bias), s, p, [1; $spatial], 1)?)
            }
        }
    };
}

conv_layer!(/// 1-D convolution over `[batch, channels, length]`.
    Conv1d, 3, 1, f_conv1d, "[batch, channels, length]");
conv_layer!(/// 2-D convolution over `[batch, channels, height, width]`.
    Conv2d, 4, 2, f_conv2d, "[batch, channels, height, width]");

macro_rules! pool_layer {
    ($(#[$doc:meta])* $name:ident, |$xs:ident, $k:ident, $s:ident| $call:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name {
            kernel: i64,
            stride: i64,
        }

        impl $name {
            pub fn new(kernel: i64) -> Self {
                $name { kernel, stride: kernel }
            }

            pub fn stride(mut self, stride: i64) -> Self {
                self.stride = stride;
                self
            }
        }

        impl Layer for $name {
            fn name(&self) -> String {
                format!("{}({}, s={})", stringify!($name), self.kernel, self.stride)
            }

            fn forward(&self, $xs: &Tensor, _train: bool) -> Result<Tensor> {
                expect_input($xs, &self.name(), 4, None, "[batch, channels, height, width]")?;
                let ($k, $s) = ([self.kernel; 2], [self.stride; 2]);
                Ok($call?)
            }
        }
    };
}

pool_layer!(/// 2-D max pooling; the stride defaults to the kernel size.
    MaxPool2d, |xs, k, s| xs.f_max_pool2d(k, s, [0, 0], [1, 1], false));
pool_layer!(/// 2-D average pooling; the stride defaults to the kernel size.
    AvgPool2d, |xs, k, s| xs.f_avg_pool2d(k, s, [0, 0], false, true, None));

/// Mean over every spatial dimension: `[batch, channels, …]` → `[batch, channels]`.
#[derive(Debug, Clone, Copy)]
pub struct GlobalAvgPool;

impl Layer for GlobalAvgPool {
    fn name(&self) -> String {
        "GlobalAvgPool".into()
    }

    fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        if xs.dim() < 3 {
            expect_input(xs, &self.name(), 3, None, "[batch, channels, …spatial]")?;
        }
        let dims: Vec<i64> = (2..xs.dim() as i64).collect();
        Ok(xs.f_mean_dim(dims.as_slice(), false, Kind::Float)?)
    }
}
