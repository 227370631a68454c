//! Token embeddings and recurrent layers over `[batch, time, features]` (batch first).

use super::{expect_input, not_built, Layer};
use crate::error::{Error, Result};
use tch::{nn, Kind, Tensor};

/// Maps integer token ids `[batch, time]` to vectors `[batch, time, dim]`.
#[derive(Debug)]
pub struct Embedding {
    vocab: i64,
    dim: i64,
    padding_idx: Option<i64>,
    weight: Option<Tensor>,
}

impl Embedding {
    pub fn new(vocab: i64, dim: i64) -> Self {
        Embedding {
            vocab,
            dim,
            padding_idx: None,
            weight: None,
        }
    }

    /// The id whose vector stays zero and gets no gradient (padding).
    pub fn padding_idx(mut self, idx: i64) -> Self {
        self.padding_idx = Some(idx);
        self
    }
}

impl Layer for Embedding {
    fn name(&self) -> String {
        format!("Embedding({}, {})", self.vocab, self.dim)
    }

    fn build(&mut self, vs: &nn::Path, _sample: &Tensor) -> Result<()> {
        let weight = vs.randn_standard("weight", &[self.vocab, self.dim]);
        if let Some(p) = self.padding_idx {
            tch::no_grad(|| weight.get(p).f_zero_().map(|_| ()))?;
        }
        self.weight = Some(weight);
        Ok(())
    }

    fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let weight = self.weight.as_ref().ok_or_else(|| not_built(&self.name()))?;
        if !matches!(xs.kind(), Kind::Int64 | Kind::Int) {
            return Err(Error::Usage(format!(
                "{} input: expected integer token ids (Int64), found {:?}",
                self.name(),
                xs.kind()
            )));
        }
        // One pass for both ends: this runs on every batch.
        let (min, max) = if xs.numel() == 0 {
            (0, 0)
        } else {
            let (min, max) = xs.f_aminmax(None::<i64>, false)?;
            (min.int64_value(&[]), max.int64_value(&[]))
        };
        if min < 0 || max >= self.vocab {
            return Err(Error::Usage(format!(
                "{} input: token ids must be in 0..{}, found ids from {min} to {max}",
                self.name(),
                self.vocab
            )));
        }
        Ok(Tensor::f_embedding(weight, xs, self.padding_idx.unwrap_or(-1), false, false)?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Lstm,
    Gru,
}

/// Shared implementation of LSTM and GRU (one layer, optionally bidirectional).
#[derive(Debug)]
struct Recurrent {
    cell: Cell,
    hidden: i64,
    bidirectional: bool,
    return_sequences: bool,
    params: Vec<Tensor>,
    inputs: i64,
}

impl Recurrent {
    fn new(cell: Cell, hidden: i64) -> Self {
        Recurrent {
            cell,
            hidden,
            bidirectional: false,
            return_sequences: false,
            params: Vec::new(),
            inputs: 0,
        }
    }

    fn gates(&self) -> i64 {
        match self.cell {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }

    fn label(&self) -> String {
        let kind = match self.cell {
            Cell::Lstm => "LSTM",
            Cell::Gru => "GRU",
        };
        let mut label = format!("{kind}({}", self.hidden);
        if self.bidirectional {
            label.push_str(", bidirectional");
        }
        if self.return_sequences {
            label.push_str(", sequences");
        }
        label + ")"
    }

    fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> Result<()> {
        expect_input(sample, &self.label(), 3, None, "[batch, time, features]")?;
        self.inputs = sample.size()[2];
        let g = self.gates() * self.hidden;
        let bound = 1.0 / (self.hidden as f64).sqrt();
        self.params.clear();
        let directions: &[&str] = if self.bidirectional { &["", "_reverse"] } else { &[""] };
        for suffix in directions {
            let p = |name: &str, dims: &[i64]| vs.uniform(&format!("{name}_l0{suffix}"), dims, -bound, bound);
            self.params.push(p("weight_ih", &[g, self.inputs]));
            self.params.push(p("weight_hh", &[g, self.hidden]));
            self.params.push(p("bias_ih", &[g]));
            self.params.push(p("bias_hh", &[g]));
        }
        Ok(())
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if self.params.is_empty() {
            return Err(not_built(&self.label()));
        }
        expect_input(xs, &self.label(), 3, Some((2, self.inputs)), &format!("[batch, time, {}]", self.inputs))?;
        let dirs = if self.bidirectional { 2 } else { 1 };
        let h0 = Tensor::f_zeros([dirs, xs.size()[0], self.hidden], (xs.kind(), xs.device()))?;
        let (output, h_n) = match self.cell {
            Cell::Lstm => {
                let c0 = h0.zeros_like();
                let (output, h_n, _c_n) =
                    xs.f_lstm(&[&h0, &c0], &self.params.iter().collect::<Vec<_>>(), true, 1, 0.0, train, self.bidirectional, true)?;
                (output, h_n)
            }
            Cell::Gru => xs.f_gru(&h0, &self.params, true, 1, 0.0, train, self.bidirectional, true)?,
        };
        if self.return_sequences {
            Ok(output)
        } else {
            // The final hidden state of each direction, side by side: [batch, dirs * hidden].
            Ok(h_n.f_permute([1, 0, 2])?.f_reshape([xs.size()[0], dirs * self.hidden])?)
        }
    }
}

macro_rules! recurrent_layer {
    ($(#[$doc:meta])* $name:ident, $cell:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(Recurrent);

        impl $name {
            pub fn new(hidden: i64) -> Self {
                $name(Recurrent::new($cell, hidden))
            }

            /// Run a second layer over the reversed sequence and concatenate both.
            pub fn bidirectional(mut self) -> Self {
                self.0.bidirectional = true;
                self
            }

            /// Output every time step `[batch, time, hidden]`, not just the final state.
            pub fn return_sequences(mut self) -> Self {
                self.0.return_sequences = true;
                self
            }
        }

        impl Layer for $name {
            fn name(&self) -> String {
                self.0.label()
            }

            fn build(&mut self, vs: &nn::Path, sample: &Tensor) -> Result<()> {
                self.0.build(vs, sample)
            }

            fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
                self.0.forward(xs, train)
            }
        }
    };
}

recurrent_layer!(/// Long short-term memory over `[batch, time, features]`; returns the final hidden state
    /// `[batch, hidden]` (× 2 when bidirectional) unless `return_sequences`.
    LSTM, Cell::Lstm);
recurrent_layer!(/// Gated recurrent unit, shaped like [`LSTM`].
    GRU, Cell::Gru);
