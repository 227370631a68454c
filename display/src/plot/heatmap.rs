//! Heatmaps: a matrix as coloured cells, with a confusion-matrix preset (counts written in the
//! cells, true class down, predicted class across).

use super::{drawing, frame_methods, Chart, Frame, PlotError};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

#[derive(Debug, Clone, Default)]
pub struct Heatmap {
    frame: Frame,
    values: Vec<Vec<f64>>,
    row_labels: Vec<String>,
    col_labels: Vec<String>,
    annotate: bool,
}

/// A heatmap of a matrix given as rows.
pub fn heatmap(rows: &[Vec<f64>]) -> Heatmap {
    Heatmap {
        values: rows.to_vec(),
        ..Heatmap::default()
    }
}

/// A confusion matrix (`counts[true][predicted]`) with class names on both axes and the count
/// in every cell.
pub fn confusion_matrix(counts: &[Vec<f64>], class_names: &[impl ToString]) -> Heatmap {
    let names: Vec<String> = class_names.iter().map(ToString::to_string).collect();
    heatmap(counts)
        .labels(&names, &names)
        .annotate(true)
        .title("Confusion matrix")
        .x_label("predicted")
        .y_label("true")
        .size(560, 500)
}

impl Heatmap {
    /// Labels for the rows (top to bottom) and columns (left to right).
    pub fn labels(mut self, rows: &[impl ToString], cols: &[impl ToString]) -> Heatmap {
        self.row_labels = rows.iter().map(ToString::to_string).collect();
        self.col_labels = cols.iter().map(ToString::to_string).collect();
        self
    }

    /// Writes each value in its cell.
    pub fn annotate(mut self, yes: bool) -> Heatmap {
        self.annotate = yes;
        self
    }
}

frame_methods!(Heatmap);

impl Chart for Heatmap {
    fn size(&self) -> (u32, u32) {
        self.frame.size
    }

    fn describe(&self) -> String {
        let rows = self.values.len();
        let cols = self.values.first().map_or(0, Vec::len);
        format!("heatmap {rows}×{cols}")
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let rows = self.values.len();
        let cols = self.values.iter().map(Vec::len).max().unwrap_or(0);
        if rows == 0 || cols == 0 {
            return Err(PlotError::NoData("an empty matrix".into()));
        }
        let finite = self.values.iter().flatten().copied().filter(|v| v.is_finite());
        let lo = finite.clone().fold(f64::INFINITY, f64::min);
        let hi = finite.fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let span = if hi > lo { hi - lo } else { 1.0 };

        root.fill(&WHITE).map_err(drawing)?;
        let (width, height) = self.frame.size;
        let (width, height) = (width as i32, height as i32);
        let top = if self.frame.title.is_empty() { 12 } else { 40 };
        let left = 40 + if self.row_labels.is_empty() { 24 } else { 70 };
        let bottom = 40 + if self.col_labels.is_empty() { 24 } else { 40 };
        let right = 70;
        let cell_w = ((width - left - right) / cols as i32).max(1);
        let cell_h = ((height - top - bottom) / rows as i32).max(1);
        let font = |size: i32| ("sans-serif", size).into_font();
        let centred = Pos::new(HPos::Center, VPos::Center);

        if !self.frame.title.is_empty() {
            let style = font(18).color(&BLACK).pos(centred);
            root.draw_text(&self.frame.title, &style, (width / 2, top / 2)).map_err(drawing)?;
        }
        let small = (cell_h.min(cell_w) / 3).clamp(9, 14);
        for (r, row) in self.values.iter().enumerate() {
            for c in 0..cols {
                let value = row.get(c).copied().unwrap_or(f64::NAN);
                let (x0, y0) = (left + c as i32 * cell_w, top + r as i32 * cell_h);
                let t = if value.is_finite() { (value - lo) / span } else { 0.0 };
                let fill = colormap(t);
                root.draw(&Rectangle::new([(x0, y0), (x0 + cell_w, y0 + cell_h)], fill.filled()))
                    .map_err(drawing)?;
                if self.annotate {
                    let ink = if t > 0.6 { BLACK } else { WHITE };
                    let text = format_value(value);
                    let style = font(small).color(&ink).pos(centred);
                    root.draw_text(&text, &style, (x0 + cell_w / 2, y0 + cell_h / 2))
                        .map_err(drawing)?;
                }
            }
        }
        let label_style = font(12).color(&BLACK);
        for (r, label) in self.row_labels.iter().enumerate().take(rows) {
            let style = label_style.clone().pos(Pos::new(HPos::Right, VPos::Center));
            let y = top + r as i32 * cell_h + cell_h / 2;
            root.draw_text(label, &style, (left - 6, y)).map_err(drawing)?;
        }
        for (c, label) in self.col_labels.iter().enumerate().take(cols) {
            let style = label_style.clone().pos(Pos::new(HPos::Center, VPos::Top));
            let x = left + c as i32 * cell_w + cell_w / 2;
            root.draw_text(label, &style, (x, top + rows as i32 * cell_h + 6)).map_err(drawing)?;
        }
        let axis_style = font(14).color(&BLACK).pos(centred);
        if !self.frame.x_label.is_empty() {
            let y = height - 16;
            root.draw_text(&self.frame.x_label, &axis_style, (left + cols as i32 * cell_w / 2, y))
                .map_err(drawing)?;
        }
        if !self.frame.y_label.is_empty() {
            let style = axis_style.transform(FontTransform::Rotate270);
            root.draw_text(&self.frame.y_label, &style, (14, top + rows as i32 * cell_h / 2))
                .map_err(drawing)?;
        }
        // The colour bar, with its low and high values.
        let (bar_x, bar_h) = (left + cols as i32 * cell_w + 16, rows as i32 * cell_h);
        for step in 0..bar_h.max(1) {
            let t = 1.0 - step as f64 / bar_h.max(1) as f64;
            let y = top + step;
            root.draw(&Rectangle::new([(bar_x, y), (bar_x + 14, y + 1)], colormap(t).filled()))
                .map_err(drawing)?;
        }
        let style = font(11).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        root.draw_text(&format_value(hi), &style, (bar_x + 18, top + 4)).map_err(drawing)?;
        root.draw_text(&format_value(lo), &style, (bar_x + 18, top + bar_h - 4)).map_err(drawing)?;
        Ok(())
    }
}

fn format_value(value: f64) -> String {
    if !value.is_finite() {
        "—".to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e7 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Viridis, interpolated between a few of its stops; `t` in [0, 1].
pub(crate) fn colormap(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 6] = [
        (68, 1, 84),
        (65, 68, 135),
        (42, 120, 142),
        (34, 168, 132),
        (122, 209, 81),
        (253, 231, 37),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let scaled = t * (STOPS.len() - 1) as f64;
    let i = (scaled.floor() as usize).min(STOPS.len() - 2);
    let f = scaled - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}
