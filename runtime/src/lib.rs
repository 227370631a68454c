//! `torchbook`: the cell-side API of torchbook notebooks — tch underneath, a Keras-like layer on
//! top. Every session starts with `use torchbook::prelude::*;`.

pub mod device;
pub mod error;
pub mod interrupt;
pub mod layers;

pub use error::{Error, Result};
pub use interrupt::{check_interrupt, Interrupted};

/// Everything a notebook needs in scope.
pub mod prelude {
    pub use crate::device::BestDevice;
    pub use crate::error::{Error as TorchbookError, Result as TorchbookResult};
    pub use crate::interrupt::check_interrupt;
    pub use crate::layers::*;
    pub use tch::{self, nn, no_grad, manual_seed, Device, Kind, Tensor};
}
