//! Rich output from torchbook notebook cells: MIME bundles, displays that update in place,
//! images and plots. This crate knows nothing of ZeroMQ or of tch: it writes side-channel
//! records (specified in docs/ARCHITECTURE.md) that the torchbook kernel turns into
//! `display_data`, `update_display_data` and `clear_output` messages while the cell runs.
//! Outside a torchbook worker (a plain program, a test) everything is printed as text instead.
//!
//! ```
//! use torchbook_display::{display, Html, MimeBundle, Render};
//!
//! // Anything that can describe itself as a MIME bundle can be shown.
//! struct Accuracy(f64);
//! impl Render for Accuracy {
//!     fn render(&self) -> MimeBundle {
//!         MimeBundle::text(format!("accuracy {:.1}%", self.0 * 100.0))
//!             .with("text/html", format!("<b>accuracy</b> {:.1}%", self.0 * 100.0))
//!     }
//! }
//!
//! let bundle = Accuracy(0.975).render();
//! assert_eq!(bundle.text_plain(), "accuracy 97.5%");
//! let shown = display(&Accuracy(0.5)); // a new output ...
//! shown.update(&Html("<i>finished</i>")); // ... replaced in place later
//! ```

pub mod atomic;
mod bundle;
mod channel;
mod frontend;
mod image;
mod media;
pub mod plot;

pub use bundle::MimeBundle;
pub use frontend::{frontend, Frontend};
pub use channel::{clear_output, display, emit_result, output_mode, DisplayHandle, OutputMode};
pub use image::{Image, ImageError};
pub use media::{html_escape, Html, Jpeg, Json, Latex, Markdown, Png, Svg};

/// Anything that can produce a MIME bundle. The kernel shows a cell's final value through this
/// trait when the value's type implements it, and `display`/`show` put one on screen mid-cell.
pub trait Render {
    fn render(&self) -> MimeBundle;

    /// Shows the value now, as a new output that can be updated through the handle.
    fn show(&self) -> DisplayHandle
    where
        Self: Sized,
    {
        display(self)
    }
}

impl<R: Render + ?Sized> Render for &R {
    fn render(&self) -> MimeBundle {
        (**self).render()
    }
}

impl Render for MimeBundle {
    fn render(&self) -> MimeBundle {
        self.clone()
    }
}

/// The method evcxr calls on a cell's final value (`(value).evcxr_display()`). Implemented for
/// every [`Render`] type, so that such a value becomes the cell's `execute_result` with all
/// its MIME types; types without `Render` fall back to their `Debug` text.
pub trait EvcxrDisplay {
    fn evcxr_display(&self);
}

impl<R: Render + ?Sized> EvcxrDisplay for R {
    fn evcxr_display(&self) {
        emit_result(&self.render());
    }
}
