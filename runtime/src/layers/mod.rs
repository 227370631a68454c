//! Layers: plain structs implementing one trait, [`Layer`]. A layer creates its parameters when
//! it is built for a sample input (so shapes are inferred, as in Keras) and then maps a batch to
//! a batch. [`Sequential`] stacks layers; [`Lambda`] turns a closure into a layer; a user struct
//! implementing [`Layer`] composes the same way.

mod attention;
mod conv;
mod dense;
mod norm;
mod recurrent;

pub use attention::{MultiHeadAttention, TransformerEncoderLayer};
pub use conv::{AvgPool2d, Conv1d, Conv2d, GlobalAvgPool, MaxPool2d};
pub use dense::{Dense, Dropout, Flatten, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh, GELU};
pub use norm::{BatchNorm1d, BatchNorm2d, LayerNorm};
pub use recurrent::{Embedding, GRU, LSTM};

use crate::error::{Error, Result};
use tch::{nn, Tensor};

/// A building block of a model.
pub trait Layer: std::fmt::Debug {
    /// A short description, shown by `Model::summary` (e.g. `Dense(128)`).
    fn name(&self) -> String;

    /// Creates the layer's parameters under `vs` for inputs like `sample` (a small batch of the
    /// right shape, kind and device). Layers without parameters keep the default.
    fn build(&mut self, _vs: &nn::Path, _sample: &Tensor) -> Result<()> {
        Ok(())
    }

    /// Maps a batch to a batch; `train` switches dropout and batch statistics.
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor>;

    /// The rows this layer contributes to a summary table; a container lists its children.
    fn summary_rows(&self) -> Vec<SummaryRow> {
        Vec::new()
    }
}

/// One line of a model summary: a layer, its output shape and where its parameters live.
#[derive(Debug, Clone)]
pub struct SummaryRow {
    pub name: String,
    pub output_shape: Vec<i64>,
    /// Prefix of the layer's variables in the model's VarStore (e.g. `"0."`).
    pub prefix: String,
}

/// The error for a layer used before `Model` built it.
pub(crate) fn not_built(layer: &str) -> Error {
    Error::Usage(format!(
        "{layer} has no parameters yet: add it to a Sequential/Model, which builds it for its input shape"
    ))
}

/// Checks that `xs` has `rank` dimensions and, when given, that dimension `dim` equals `size`.
pub(crate) fn expect_input(xs: &Tensor, layer: &str, rank: usize, dim_size: Option<(usize, i64)>, expected: &str) -> Result<()> {
    let size = xs.size();
    let rank_ok = size.len() == rank;
    let dim_ok = dim_size.is_none_or(|(d, n)| size.get(d) == Some(&n));
    if rank_ok && dim_ok {
        Ok(())
    } else {
        Err(Error::shape(format!("{layer} input"), expected, &size))
    }
}

/// Layers applied one after the other: the Keras `Sequential` model body.
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
    rows: Vec<SummaryRow>,
}

impl Sequential {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer (builder style).
    pub fn add(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a layer in place.
    pub fn push(&mut self, layer: impl Layer + 'static) {
        self.layers.push(Box::new(layer));
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Layer for Sequential {
    fn name(&self) -> String {
        format!("Sequential({} layers)", self.layers.len())
    }

    fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> Result<()> {
        let mut x = sample.shallow_clone();
        self.rows.clear();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let sub = vs.sub(i);
            layer.build(&sub, &x)?;
            x = tch::no_grad(|| layer.forward(&x, false))?;
            self.rows.push(SummaryRow {
                name: layer.name(),
                output_shape: x.size()[1..].to_vec(),
                prefix: sub.path(""),
            });
        }
        Ok(())
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = xs.shallow_clone();
        for layer in &self.layers {
            x = layer.forward(&x, train)?;
        }
        Ok(x)
    }

    fn summary_rows(&self) -> Vec<SummaryRow> {
        self.rows.clone()
    }
}

/// A closure as a layer (no parameters): `Lambda::new("double", |x| x * 2)`.
/// A libtorch error inside the closure becomes an error, not a crash of the cell.
pub struct Lambda {
    name: String,
    f: Box<dyn Fn(&Tensor) -> Tensor>,
}

impl Lambda {
    pub fn new(name: impl Into<String>, f: impl Fn(&Tensor) -> Tensor + 'static) -> Self {
        Lambda {
            name: name.into(),
            f: Box::new(f),
        }
    }
}

impl std::fmt::Debug for Lambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lambda({})", self.name)
    }
}

impl Layer for Lambda {
    fn name(&self) -> String {
        format!("Lambda({})", self.name)
    }

    fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let run = std::panic::AssertUnwindSafe(|| (self.f)(xs));
        // tch's non-`f_` functions panic on libtorch errors; report those as errors instead.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = std::panic::catch_unwind(run);
        std::panic::set_hook(previous);
        result.map_err(|payload| {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".to_owned());
            let first = message.lines().next().unwrap_or_default().to_owned();
            Error::Usage(format!("Lambda({}) failed: {first}", self.name))
        })
    }
}
