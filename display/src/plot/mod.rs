//! Charts drawn with plotters: line, scatter, histogram, bar, heatmap (with a confusion-matrix
//! preset) and image grids (with boxes and labels, for detection). Every chart is drawn twice,
//! as SVG and as PNG, and shows as both plus `text/html` (the SVG inline) and `text/plain`.
//! Text in the PNG uses the DejaVu Sans font that this crate embeds, so nothing depends on the
//! fonts installed on the machine.
//!
//! ```
//! use torchbook_display::{plot, Render};
//!
//! let loss = [0.9, 0.5, 0.3, 0.2];
//! let chart = plot::line(&loss).title("training loss").x_label("epoch").size(400, 300);
//! let bundle = chart.render();
//! assert!(bundle.get("image/png").is_some() && bundle.get("image/svg+xml").is_some());
//! ```

mod grid;
mod heatmap;
mod xy;

pub use grid::{image_grid, BoundingBox, ImageGrid};
pub use heatmap::{confusion_matrix, heatmap, Heatmap};
pub use xy::{bar, histogram, line, panels, scatter, Bar, Histogram, Line, Panels, Scatter};

use crate::{MimeBundle, Png, Render};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

/// The size charts get unless told otherwise, in pixels.
pub const DEFAULT_SIZE: (u32, u32) = (640, 400);

static FONT: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot: {0}")]
    NoData(String),
    #[error("drawing failed: {0}")]
    Drawing(String),
    #[error(transparent)]
    Image(#[from] crate::ImageError),
}

/// Something plotters can draw on any backend.
pub(crate) trait Chart {
    fn size(&self) -> (u32, u32);
    fn describe(&self) -> String;
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>;
}

pub(crate) fn drawing<E: std::error::Error + Send + Sync>(
    e: plotters::drawing::DrawingAreaErrorKind<E>,
) -> PlotError {
    PlotError::Drawing(e.to_string())
}

/// A drawn chart: SVG and PNG of the same picture.
#[derive(Clone)]
pub struct Figure {
    pub svg: String,
    pub png: Png,
    description: String,
}

impl std::fmt::Debug for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Figure({}, {:?})", self.description, self.png)
    }
}

impl Figure {
    pub(crate) fn draw<C: Chart>(chart: &C) -> Result<Figure, PlotError> {
        let (width, height) = chart.size();
        if width == 0 || height == 0 {
            return Err(PlotError::Drawing(format!("a chart of {width}×{height} pixels")));
        }
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            chart.draw(&root)?;
            root.present().map_err(drawing)?;
        }
        let png = rasterize(width, height, |root| chart.draw(root))?;
        Ok(Figure {
            svg,
            png,
            description: chart.describe(),
        })
    }

    /// Writes the SVG (`.svg`) or the PNG (any other extension), replacing the file whole.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")) {
            crate::atomic::write(path, &self.svg)
        } else {
            self.png.save(path)
        }
    }
}

impl Render for Figure {
    fn render(&self) -> MimeBundle {
        let (width, height) = self.png.size();
        self.png
            .render()
            .with("image/svg+xml", self.svg.clone())
            .with("text/html", self.svg.clone())
            .with("text/plain", format!("<{} {width}×{height}>", self.description))
    }
}

/// Draws on an RGB bitmap and encodes it as PNG.
pub(crate) fn rasterize(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), PlotError>,
) -> Result<Png, PlotError> {
    register_font();
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(drawing)?;
    }
    let bytes = crate::image::encode_png(width, height, png::ColorType::Rgb, &pixels)?;
    Ok(Png::from_parts(bytes, width, height))
}

fn register_font() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            // The embedded font is known to parse; a failure would only cost the PNG its text.
            let _ = plotters::style::register_font("sans-serif", style, FONT);
        }
    });
}

/// Title, axis labels and size, shared by every chart builder.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub size: (u32, u32),
}

impl Default for Frame {
    fn default() -> Self {
        Frame {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            size: DEFAULT_SIZE,
        }
    }
}

/// Adds `title`, `x_label`, `y_label` and `size` to a builder with a `frame` field.
macro_rules! frame_methods {
    ($builder:ty) => {
        impl $builder {
            pub fn title(mut self, title: impl Into<String>) -> Self {
                self.frame.title = title.into();
                self
            }
            pub fn x_label(mut self, label: impl Into<String>) -> Self {
                self.frame.x_label = label.into();
                self
            }
            pub fn y_label(mut self, label: impl Into<String>) -> Self {
                self.frame.y_label = label.into();
                self
            }
            /// Width and height in pixels.
            pub fn size(mut self, width: u32, height: u32) -> Self {
                self.frame.size = (width, height);
                self
            }
            /// Draws the chart as SVG and PNG.
            pub fn figure(&self) -> Result<$crate::plot::Figure, $crate::plot::PlotError> {
                $crate::plot::Figure::draw(self)
            }
        }

        impl $crate::Render for $builder {
            fn render(&self) -> $crate::MimeBundle {
                match self.figure() {
                    Ok(figure) => figure.render(),
                    Err(e) => $crate::MimeBundle::text(format!("<chart not drawn: {e}>")),
                }
            }
        }
    };
}
pub(crate) use frame_methods;

/// A colour for series `i`, from a palette that stays distinguishable for the first ten.
pub(crate) fn series_color(i: usize) -> RGBColor {
    const PALETTE: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Lower and upper bound of finite values, widened when they are equal or absent.
pub(crate) fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}
