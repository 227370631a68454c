//! Rich output for tch values. A tensor shows as a summary — shape, dtype, device,
//! requires_grad, min/max/mean/std, NaN/Inf counts — and a preview of its values (the corners
//! of large tensors, as PyTorch prints them); CHW/HW tensors convert to images. `Render` and
//! `Tensor` both come from other crates, so tensors get their methods through [`TensorRender`].

use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};
use torchbook_display::plot::{self, ImageGrid};
use torchbook_display::{display, emit_result, html_escape, DisplayHandle, Image, MimeBundle, Render};

/// How many leading and trailing entries a long dimension shows.
const EDGE_ITEMS: i64 = 3;
/// Dimensions up to this length are shown whole.
const SHOWN_WHOLE: i64 = 10;

/// Display methods for tensors: `t.show()`, `t.summary()`, and the `evcxr_display` that makes a
/// tensor cell value render as a summary.
pub trait TensorRender {
    /// The summary as a renderable value.
    fn summary(&self) -> TensorSummary<'_>;
    /// Shows the summary now.
    fn show(&self) -> DisplayHandle;
    /// Called by evcxr on a cell's final value.
    fn evcxr_display(&self);
}

impl TensorRender for Tensor {
    fn summary(&self) -> TensorSummary<'_> {
        TensorSummary(self)
    }

    fn show(&self) -> DisplayHandle {
        display(&TensorSummary(self))
    }

    fn evcxr_display(&self) {
        emit_result(&TensorSummary(self).render());
    }
}

/// A tensor's summary and preview, as text and as an HTML table.
pub struct TensorSummary<'a>(pub &'a Tensor);

struct Stats {
    min: f64,
    max: f64,
    mean: f64,
    std: f64,
    nan: i64,
    inf: i64,
}

impl Render for TensorSummary<'_> {
    fn render(&self) -> MimeBundle {
        let t = self.0;
        if !t.defined() {
            return MimeBundle::text("Tensor (undefined)");
        }
        let shape = format!("{:?}", t.size());
        let kind = t.f_kind().map(|k| format!("{k:?}")).unwrap_or_else(|_| "unknown".into());
        let device = device_name(t.device());
        let grad = t.requires_grad();
        let values = host_values(t);
        let stats = values.as_ref().and_then(|v| stats(v));
        let preview = values.as_ref().map(|v| preview(v, is_integral(t)));

        let mut text = format!("Tensor{shape} {kind} {device} requires_grad={grad}");
        if let Some(s) = &stats {
            text.push_str(&format!(
                "\nmin {} · max {} · mean {} · std {}",
                number(s.min),
                number(s.max),
                number(s.mean),
                number(s.std)
            ));
            if s.nan > 0 || s.inf > 0 {
                text.push_str(&format!(" · NaN {} · Inf {}", s.nan, s.inf));
            }
        }
        if let Some(p) = &preview {
            text.push('\n');
            text.push_str(&p.text());
        }

        let mut html = String::from("<div><table><tbody>");
        let mut row = |name: &str, value: String| {
            html.push_str(&format!("<tr><th style=\"text-align:left\">{name}</th><td style=\"text-align:left\">{}</td></tr>", html_escape(&value)));
        };
        row("shape", shape);
        row("dtype", kind);
        row("device", device);
        row("requires_grad", grad.to_string());
        if let Some(s) = &stats {
            row("min / max", format!("{} / {}", number(s.min), number(s.max)));
            row("mean / std", format!("{} / {}", number(s.mean), number(s.std)));
            row("NaN / Inf", format!("{} / {}", s.nan, s.inf));
        }
        html.push_str("</tbody></table>");
        if let Some(p) = &preview {
            html.push_str(&p.html());
        }
        html.push_str("</div>");
        MimeBundle::text(text).with("text/html", html)
    }
}

/// The tensor's values as f64 on the CPU (None when empty or not convertible).
fn host_values(t: &Tensor) -> Option<Tensor> {
    if t.numel() == 0 {
        return None;
    }
    let kind = t.f_kind().ok()?;
    if matches!(kind, Kind::ComplexFloat | Kind::ComplexDouble | Kind::ComplexHalf) {
        return None;
    }
    tch::no_grad(|| t.detach().f_to_device(Device::Cpu).ok()?.f_to_kind(Kind::Double).ok())
}

fn stats(values: &Tensor) -> Option<Stats> {
    let nan = values.isnan().sum(Kind::Int64).int64_value(&[]);
    let inf = values.isinf().sum(Kind::Int64).int64_value(&[]);
    let finite = values.masked_select(&values.isfinite());
    if finite.numel() == 0 {
        let n = f64::NAN;
        return Some(Stats { min: n, max: n, mean: n, std: n, nan, inf });
    }
    let std = if finite.numel() > 1 { finite.std(true).double_value(&[]) } else { 0.0 };
    Some(Stats {
        min: finite.min().double_value(&[]),
        max: finite.max().double_value(&[]),
        mean: finite.mean(Kind::Double).double_value(&[]),
        std,
        nan,
        inf,
    })
}

fn is_integral(t: &Tensor) -> bool {
    matches!(
        t.f_kind(),
        Ok(Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64 | Kind::Bool)
    )
}

/// A 2-D window onto the values: `None` cells are the "…" gaps.
struct Preview {
    caption: String,
    rows: Vec<Vec<Option<String>>>,
}

fn preview(values: &Tensor, integral: bool) -> Preview {
    let dims = values.size();
    let format = |v: f64| if integral { format!("{v:.0}") } else { number(v) };
    // Fix leading indices at 0 so that what is left is at most a matrix.
    let mut view = values.shallow_clone();
    let mut caption = String::new();
    if dims.len() > 2 {
        let lead = dims.len() - 2;
        for _ in 0..lead {
            view = view.select(0, 0);
        }
        caption = format!("[{}:, :]", "0, ".repeat(lead));
    }
    let matrix = match view.dim() {
        0 => view.reshape([1, 1]),
        1 => view.reshape([1, -1]),
        _ => view,
    };
    let (rows, cols) = (matrix.size()[0], matrix.size()[1]);
    let indices = |n: i64| -> Vec<Option<i64>> {
        if n <= SHOWN_WHOLE {
            (0..n).map(Some).collect()
        } else {
            (0..EDGE_ITEMS).map(Some).chain([None]).chain((n - EDGE_ITEMS..n).map(Some)).collect()
        }
    };
    let cells = indices(rows)
        .into_iter()
        .map(|r| {
            indices(cols)
                .into_iter()
                .map(|c| match (r, c) {
                    (Some(r), Some(c)) => Some(format(matrix.double_value(&[r, c]))),
                    _ => None,
                })
                .collect()
        })
        .collect();
    Preview { caption, rows: cells }
}

impl Preview {
    fn text(&self) -> String {
        let width = self.rows.iter().flatten().flatten().map(|s| s.chars().count()).max().unwrap_or(1);
        let mut out = String::new();
        if !self.caption.is_empty() {
            out.push_str(&format!("{}\n", self.caption));
        }
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| format!("{:>width$}", c.as_deref().unwrap_or("…")))
                .collect();
            out.push_str(&format!("[{}]\n", cells.join(" ")));
        }
        out.trim_end().to_owned()
    }

    fn html(&self) -> String {
        let mut html = String::new();
        if !self.caption.is_empty() {
            html.push_str(&format!("<div><code>{}</code></div>", html_escape(&self.caption)));
        }
        html.push_str("<table style=\"font-family: monospace\"><tbody>");
        for row in &self.rows {
            html.push_str("<tr>");
            for cell in row {
                html.push_str(&format!("<td>{}</td>", cell.as_deref().map(html_escape).unwrap_or("…".into())));
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>");
        html
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// An image from a CHW (C = 1, 3 or 4) or HW tensor. Values in [0, 1] are scaled by 255,
/// values in [0, 255] kept, anything else stretched to fit.
pub fn tensor_to_image(t: &Tensor) -> Result<Image> {
    let size = t.size();
    let chw = match size.as_slice() {
        [h, w] => t.reshape([1, *h, *w]),
        [c, _, _] if matches!(c, 1 | 3 | 4) => t.shallow_clone(),
        [1, c, h, w] if matches!(c, 1 | 3 | 4) => t.reshape([*c, *h, *w]),
        _ => {
            return Err(Error::shape("an image tensor", "[H, W] or [C, H, W] with C = 1, 3 or 4", &size))
        }
    };
    let values = tch::no_grad(|| chw.detach().to_device(Device::Cpu).to_kind(Kind::Float));
    let finite = values.nan_to_num(0.0, 0.0, 0.0);
    let (lo, hi) = (finite.min().double_value(&[]), finite.max().double_value(&[]));
    let scaled = if t.kind() == Kind::Uint8 || (lo >= 0.0 && hi <= 255.0 && hi > 1.0) {
        finite
    } else if lo >= 0.0 && hi <= 1.0 {
        finite * 255.0
    } else {
        (finite - lo) * (255.0 / (hi - lo).max(1e-12))
    };
    let (c, h, w) = (chw.size()[0], chw.size()[1], chw.size()[2]);
    let hwc = scaled.clamp(0.0, 255.0).round().to_kind(Kind::Uint8).permute([1, 2, 0]).contiguous();
    let pixels = Vec::<u8>::try_from(hwc.reshape([-1])).map_err(Error::from)?;
    Image::new(w as u32, h as u32, c as u8, pixels).map_err(|e| Error::Usage(e.to_string()))
}

/// Shows a CHW/HW tensor as an image now.
pub fn show_image(t: &Tensor) -> Result<DisplayHandle> {
    Ok(display(&tensor_to_image(t)?))
}

/// A grid of CHW/HW images with one caption each (pass `&[] as &[&str]` for none).
pub fn image_grid(images: &[Tensor], captions: &[impl ToString]) -> Result<ImageGrid> {
    let images = images.iter().map(tensor_to_image).collect::<Result<Vec<_>>>()?;
    let mut grid = plot::image_grid(images);
    if !captions.is_empty() {
        grid = grid.captions(captions);
    }
    Ok(grid)
}

/// A grid of the images in an NCHW (or NHW) batch.
pub fn batch_grid(batch: &Tensor, captions: &[impl ToString]) -> Result<ImageGrid> {
    let n = batch.size().first().copied().unwrap_or(0);
    let images: Vec<Tensor> = (0..n).map(|i| batch.get(i)).collect();
    image_grid(&images, captions)
}
