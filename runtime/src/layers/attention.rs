//! Self-attention and the Transformer encoder layer over `[batch, time, dim]`.

use super::{expect_input, Dense, Dropout, Layer, LayerNorm, ReLU};
use crate::error::{Error, Result};
use tch::{nn, Tensor};

/// Multi-head self-attention (queries, keys and values from the same sequence).
#[derive(Debug)]
pub struct MultiHeadAttention {
    dim: i64,
    heads: i64,
    dropout: f64,
    in_proj: Dense,
    out_proj: Dense,
}

impl MultiHeadAttention {
    pub fn new(dim: i64, heads: i64) -> Self {
        MultiHeadAttention {
            dim,
            heads,
            dropout: 0.0,
            in_proj: Dense::new(3 * dim),
            out_proj: Dense::new(dim),
        }
    }

    /// Dropout on the attention weights while training.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }
}

impl Layer for MultiHeadAttention {
    fn name(&self) -> String {
        format!("MultiHeadAttention({}, heads={})", self.dim, self.heads)
    }

    fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> Result<()> {
        if self.heads <= 0 || self.dim % self.heads != 0 {
            return Err(Error::Usage(format!(
                "{}: dim must be a multiple of heads ({} is not divisible by {})",
                self.name(),
                self.dim,
                self.heads
            )));
        }
        expect_input(sample, &self.name(), 3, Some((2, self.dim)), &format!("[batch, time, {}]", self.dim))?;
        self.in_proj.build(&vs.sub("in_proj"), sample)?;
        self.out_proj.build(&vs.sub("out_proj"), sample)?;
        Ok(())
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        expect_input(xs, &self.name(), 3, Some((2, self.dim)), &format!("[batch, time, {}]", self.dim))?;
        let (b, t) = (xs.size()[0], xs.size()[1]);
        let head_dim = self.dim / self.heads;
        let qkv = self.in_proj.forward(xs, train)?;
        let split = |i: i64| -> Result<Tensor> {
            Ok(qkv
                .f_narrow(2, i * self.dim, self.dim)?
                .f_reshape([b, t, self.heads, head_dim])?
                .f_transpose(1, 2)?)
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let p = if train { self.dropout } else { 0.0 };
        let attended =
            Tensor::f_scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, p, false, None, false)?;
        let merged = attended.f_transpose(1, 2)?.f_reshape([b, t, self.dim])?;
        self.out_proj.forward(&merged, train)
    }
}

/// One Transformer encoder block (post-norm, as PyTorch's default):
/// `x = norm1(x + drop(attn(x)))`, then `x = norm2(x + drop(ff(x)))`.
#[derive(Debug)]
pub struct TransformerEncoderLayer {
    attention: MultiHeadAttention,
    ff1: Dense,
    ff2: Dense,
    norm1: LayerNorm,
    norm2: LayerNorm,
    dropout: Dropout,
    dim: i64,
    heads: i64,
    ff_dim: i64,
}

impl TransformerEncoderLayer {
    pub fn new(dim: i64, heads: i64, ff_dim: i64) -> Self {
        TransformerEncoderLayer {
            attention: MultiHeadAttention::new(dim, heads),
            ff1: Dense::new(ff_dim),
            ff2: Dense::new(dim),
            norm1: LayerNorm::new(),
            norm2: LayerNorm::new(),
            dropout: Dropout(0.1),
            dim,
            heads,
            ff_dim,
        }
    }

    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = Dropout(p);
        self.attention = self.attention.dropout(p);
        self
    }
}

impl Layer for TransformerEncoderLayer {
    fn name(&self) -> String {
        format!("TransformerEncoderLayer({}, heads={}, ff={})", self.dim, self.heads, self.ff_dim)
    }

    fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> Result<()> {
        self.attention.build(&vs.sub("attention"), sample)?;
        self.norm1.build(&vs.sub("norm1"), sample)?;
        self.ff1.build(&vs.sub("ff1"), sample)?;
        let hidden = tch::no_grad(|| self.ff1.forward(sample, false))?;
        self.ff2.build(&vs.sub("ff2"), &hidden)?;
        self.norm2.build(&vs.sub("norm2"), sample)?;
        Ok(())
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let attended = self.dropout.forward(&self.attention.forward(xs, train)?, train)?;
        let x = self.norm1.forward(&xs.f_add(&attended)?, train)?;
        let hidden = ReLU.forward(&self.ff1.forward(&x, train)?, train)?;
        let ff = self.dropout.forward(&self.ff2.forward(&self.dropout.forward(&hidden, train)?, train)?, train)?;
        self.norm2.forward(&x.f_add(&ff)?, train)
    }
}
