//! `torchbook`: the cell-side API of torchbook notebooks — tch underneath, a Keras-like layer on
//! top. Every session starts with `use torchbook::prelude::*;`.
//!
//! ```no_run
//! use torchbook::prelude::*;
//!
//! # fn main() -> torchbook::Result<()> {
//! let xs = Tensor::randn([256, 4], (Kind::Float, Device::Cpu));
//! let ys = xs.sum_dim_intlist(1, false, Kind::Float).gt(0.0).to_kind(Kind::Int64);
//! let data = Dataset::new(xs, ys)?;
//! let mut model = Model::new(Sequential::new().add(Dense::new(16)).add(ReLU).add(Dense::new(2)), &[4])?;
//! model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
//! let history = model.fit(&data, FitOptions { epochs: 5, batch_size: 32, ..Default::default() })?;
//! println!("{}", model.summary());
//! # Ok(()) }
//! ```

pub mod callbacks;
pub mod cell_store;
pub mod cell_value;
pub mod checkpoint;
pub mod data;
pub mod datasets;
pub mod detection;
pub mod device;
pub mod distributed;
pub mod error;
pub mod export;
pub mod history;
pub mod input;
pub mod interrupt;
pub mod layers;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod progress;
pub mod report;
pub mod render;
mod rng;
pub mod secure;
pub mod table;
pub mod tokenizer;
pub mod tune;

/// Rich output: everything of `torchbook-display`, plus the tensor helpers.
pub mod display {
    pub use crate::render::{batch_grid, image_grid, show_image, tensor_to_image, TensorRender, TensorSummary};
    pub use torchbook_display::*;
}
pub use torchbook_display::plot;

pub use error::{Error, Result};
pub use input::{input, input_password};
pub use interrupt::{check_interrupt, Interrupted};

/// Everything a notebook needs in scope.
pub mod prelude {
    pub use crate::callbacks::{Callback, EarlyStopping, LrSchedule, ModelCheckpoint, OnBatchEnd, OnEpochEnd, TrainContext};
    pub use crate::data::*;
    pub use crate::device::BestDevice;
    pub use crate::distributed::{self, ReduceOp};
    pub use crate::error::{Error as TorchbookError, Result as TorchbookResult};
    pub use crate::history::{EpochLog, History};
    pub use crate::input::{input, input_password};
    pub use crate::interrupt::check_interrupt;
    pub use crate::layers::*;
    pub use crate::loss::Loss;
    pub use crate::metrics::Metric;
    pub use crate::export::{ExportReport, Precision};
    pub use crate::model::{Evaluation, FitOptions, Model, Summary, Validation};
    pub use crate::optim::Optimizer;
    pub use crate::display::{
        batch_grid, clear_output, display, image_grid, show_image, tensor_to_image, DisplayHandle, EvcxrDisplay, Html,
        Image, Jpeg, Json, Latex, Markdown, MimeBundle, Png, Render, Svg, TensorRender,
    };
    pub use crate::plot;
    pub use crate::datasets;
    pub use crate::detection::{self, Detection, GridSpec};
    pub use crate::tokenizer::Tokenizer;
    pub use crate::tune;
    pub use crate::secure;
    pub use crate::table::Table;
    pub use tch::{self, nn, no_grad, manual_seed, Device, Kind, Tensor};
    // tch's own shorthands for `(Kind, Device)`, as in tch's examples: `Tensor::randn(&[3, 3], FLOAT_CPU)`.
    pub use tch::kind::{DOUBLE_CPU, FLOAT_CPU, INT64_CPU};
}
