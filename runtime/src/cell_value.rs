//! How a cell's final value is shown when the kernel hands it over itself, so that evcxr
//! compiles a value cell once.
//!
//! evcxr shows a final value by compiling `(value).evcxr_display()` and, when that does not
//! compile (most values: numbers, strings, vectors), compiling the cell a second time with
//! `Debug` formatting. The torchbook kernel instead rewrites a cell's final expression into
//!
//! ```text
//! { use ::torchbook::cell_value::*; (&&&CellValue(&(expression))).evcxr_display(); };
//! ```
//!
//! and method resolution picks, in this order (each step of autoderef is one level of
//! "autoref specialisation"): a tensor's summary (`ShowTensor`, on `&&CellValue`),
//! nothing for `()` (`ShowUnit`, same level), any [`Render`](crate::Render) type (`ShowRender`, on
//! `&CellValue`), then — after dereferencing to the value itself — the value type's own inherent
//! `evcxr_display` (plotters' figures, user types written for evcxr), and last its `Debug` text
//! (`ShowDebug`), so the result is what evcxr would have shown. A value with none of these
//! does not compile; the kernel then runs the cell unchanged and evcxr reports why.
//!
//! ```
//! use torchbook::cell_value::*;
//! use torchbook::prelude::Html;
//!
//! // Text mode (outside a kernel) prints the text/plain part.
//! (&&&CellValue(&(1 + 1))).evcxr_display(); // "2", through Debug
//! (&&&CellValue(&Html("<b>hi</b>"))).evcxr_display(); // through Render
//! (&&&CellValue(&())).evcxr_display(); // nothing
//! ```

use std::ops::Deref;

/// The value of a cell's final expression, borrowed (so a variable named last is not moved).
pub struct CellValue<'a, T: ?Sized>(pub &'a T);

/// Dereferencing is what lets the value's own inherent `evcxr_display` and its `Debug` impl be
/// found after every `CellValue` level has been tried.
impl<T: ?Sized> Deref for CellValue<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0
    }
}

// The levels are reachable only through this module's glob (`use …::cell_value::*`), never by
// name, and they must be defined in this crate: a nameable trait, or one re-exported from
// another crate, makes rustc answer evcxr's own `(value).evcxr_display()` for every `Debug`
// type with "trait `ShowDebug` … is implemented but not in scope; perhaps you want to import
// it", an error evcxr does not recognise as the cue for its `Debug` fallback.
pub use levels::{ShowDebug as _, ShowRender as _, ShowTensor as _, ShowUnit as _};

mod levels {
    use super::CellValue;
    use crate::render::TensorSummary;
    use std::fmt::Debug;
    use tch::Tensor;
    use torchbook_display::{emit_result, Render};

    /// A tensor (or a reference to one) shows its summary.
    pub trait ShowTensor {
        fn evcxr_display(&self);
    }

    impl ShowTensor for &&CellValue<'_, Tensor> {
        fn evcxr_display(&self) {
            emit_result(&TensorSummary(self.0).render());
        }
    }

    impl ShowTensor for &&CellValue<'_, &Tensor> {
        fn evcxr_display(&self) {
            emit_result(&TensorSummary(self.0).render());
        }
    }

    /// `()` (a final `println!(…)`, a call for its effect) shows nothing.
    pub trait ShowUnit {
        fn evcxr_display(&self);
    }

    impl ShowUnit for &&CellValue<'_, ()> {
        fn evcxr_display(&self) {}
    }

    /// A [`Render`] value becomes the cell's result with all its MIME types.
    pub trait ShowRender {
        fn evcxr_display(&self);
    }

    impl<R: Render + ?Sized> ShowRender for &CellValue<'_, R> {
        fn evcxr_display(&self) {
            super::emit_owned(self.0.render());
        }
    }

    /// Any other value shows its `Debug` text, as evcxr would.
    pub trait ShowDebug {
        fn evcxr_display(&self);
    }

    impl<T: Debug + ?Sized> ShowDebug for T {
        fn evcxr_display(&self) {
            super::emit_debug(format_args!("{self:?}"));
        }
    }
}

// What the generic levels call. These are instantiated in every cell that shows a value, and
// the cell crate is compiled without optimisation: a `MimeBundle` built or dropped there
// pulls its map's insert and drop code (a few hundred functions) into the cell, about 100 ms
// of each value cell's build (docs/PERFORMANCE.md). Out here they are compiled once.

/// Shows `text` (a value's `Debug` formatting) as the cell's result.
#[inline(never)]
fn emit_debug(text: std::fmt::Arguments<'_>) {
    torchbook_display::emit_result(&torchbook_display::MimeBundle::text(text.to_string()));
}

/// Shows a rendered value as the cell's result; takes the bundle so the cell never drops one.
#[inline(never)]
fn emit_owned(bundle: torchbook_display::MimeBundle) {
    torchbook_display::emit_result(&bundle);
}

/// A value's `Debug` text handed back to evcxr as its plain-text result, for the kernel's
/// `user_expressions`: they need the value as data in the reply, not shown in the notebook.
pub struct EvcxrText(pub String);

impl EvcxrText {
    /// evcxr's content protocol; the worker passes a lone text/plain block on as the value.
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/plain\n{}\nEVCXR_END_CONTENT",
            self.0
        );
    }
}
