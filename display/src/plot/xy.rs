//! Charts on x/y axes: line, scatter, histogram and bar.

use super::{bounds, drawing, frame_methods, series_color, Chart, Frame, PlotError};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One or more curves. `plot::line(&ys)` plots `ys` against 0, 1, 2, …; add more with
/// [`Line::series`] or give x values with [`Line::xy`].
#[derive(Debug, Clone, Default)]
pub struct Line {
    frame: Frame,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

/// A line chart of `ys` against their index.
pub fn line(ys: &[f64]) -> Line {
    Line::default().series("", ys)
}

impl Line {
    /// An empty chart to add named series to.
    pub fn new() -> Line {
        Line::default()
    }

    /// Adds a named curve over the index 0, 1, 2, ….
    pub fn series(self, name: impl Into<String>, ys: &[f64]) -> Line {
        let points = ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect();
        self.points(name, points)
    }

    /// Adds a named curve through (x, y) points.
    pub fn xy(self, name: impl Into<String>, xs: &[f64], ys: &[f64]) -> Line {
        let points = xs.iter().zip(ys).map(|(&x, &y)| (x, y)).collect();
        self.points(name, points)
    }

    fn points(mut self, name: impl Into<String>, points: Vec<(f64, f64)>) -> Line {
        self.series.push((name.into(), points));
        self
    }
}

frame_methods!(Line);

impl Chart for Line {
    fn size(&self) -> (u32, u32) {
        self.frame.size
    }

    fn describe(&self) -> String {
        described("line chart", &self.frame.title)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let all = || self.series.iter().flat_map(|(_, p)| p.iter());
        if all().next().is_none() {
            return Err(PlotError::NoData("a line chart without points".into()));
        }
        let x = bounds(all().map(|p| p.0));
        let y = bounds(all().map(|p| p.1));
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = axes(root, &self.frame, x.0..x.1, y.0..y.1)?;
        for (i, (name, points)) in self.series.iter().enumerate() {
            let color = series_color(i);
            let finite = points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite());
            let drawn = chart
                .draw_series(LineSeries::new(finite, color.stroke_width(2)))
                .map_err(drawing)?;
            if !name.is_empty() {
                drawn.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
            if points.len() <= 30 {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(drawing)?;
            }
        }
        if self.series.iter().any(|(name, _)| !name.is_empty()) {
            legend(&mut chart)?;
        }
        Ok(())
    }
}

/// Points, optionally in groups (one colour and legend entry per group).
#[derive(Debug, Clone, Default)]
pub struct Scatter {
    frame: Frame,
    groups: Vec<(String, Vec<(f64, f64)>)>,
}

/// A scatter plot of (x, y) pairs.
pub fn scatter(xs: &[f64], ys: &[f64]) -> Scatter {
    Scatter::default().group("", xs, ys)
}

impl Scatter {
    pub fn new() -> Scatter {
        Scatter::default()
    }

    /// Adds a named group of points.
    pub fn group(mut self, name: impl Into<String>, xs: &[f64], ys: &[f64]) -> Scatter {
        let points = xs.iter().zip(ys).map(|(&x, &y)| (x, y)).collect();
        self.groups.push((name.into(), points));
        self
    }

    /// Splits points into groups by label, e.g. by class.
    pub fn by_label(xs: &[f64], ys: &[f64], labels: &[impl ToString]) -> Scatter {
        let mut scatter = Scatter::default();
        for ((&x, &y), label) in xs.iter().zip(ys).zip(labels) {
            let label = label.to_string();
            match scatter.groups.iter_mut().find(|(name, _)| *name == label) {
                Some((_, points)) => points.push((x, y)),
                None => scatter.groups.push((label, vec![(x, y)])),
            }
        }
        scatter
    }
}

frame_methods!(Scatter);

impl Chart for Scatter {
    fn size(&self) -> (u32, u32) {
        self.frame.size
    }

    fn describe(&self) -> String {
        described("scatter plot", &self.frame.title)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let all = || self.groups.iter().flat_map(|(_, p)| p.iter());
        if all().next().is_none() {
            return Err(PlotError::NoData("a scatter plot without points".into()));
        }
        let x = bounds(all().map(|p| p.0));
        let y = bounds(all().map(|p| p.1));
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = axes(root, &self.frame, x.0..x.1, y.0..y.1)?;
        for (i, (name, points)) in self.groups.iter().enumerate() {
            let color = series_color(i);
            let drawn = chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.mix(0.8).filled())))
                .map_err(drawing)?;
            if !name.is_empty() {
                drawn
                    .label(name.as_str())
                    .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
            }
        }
        if self.groups.iter().any(|(name, _)| !name.is_empty()) {
            legend(&mut chart)?;
        }
        Ok(())
    }
}

/// The distribution of values in equal-width bins.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    frame: Frame,
    values: Vec<f64>,
    bins: usize,
}

/// A histogram with `bins` equal-width bins between the smallest and largest finite value.
pub fn histogram(values: &[f64], bins: usize) -> Histogram {
    Histogram {
        frame: Frame::default(),
        values: values.to_vec(),
        bins: bins.max(1),
    }
}

impl Histogram {
    /// The count in each bin and the bins' edges.
    pub fn counts(&self) -> (Vec<usize>, Vec<f64>) {
        let finite: Vec<f64> = self.values.iter().copied().filter(|v| v.is_finite()).collect();
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if !lo.is_finite() {
            (0.0, 1.0)
        } else if lo == hi {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        };
        let width = (hi - lo) / self.bins as f64;
        let mut counts = vec![0; self.bins];
        for v in finite {
            let bin = (((v - lo) / width) as usize).min(self.bins - 1);
            counts[bin] += 1;
        }
        let edges = (0..=self.bins).map(|i| lo + width * i as f64).collect();
        (counts, edges)
    }
}

frame_methods!(Histogram);

impl Chart for Histogram {
    fn size(&self) -> (u32, u32) {
        self.frame.size
    }

    fn describe(&self) -> String {
        described("histogram", &self.frame.title)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        if !self.values.iter().any(|v| v.is_finite()) {
            return Err(PlotError::NoData("a histogram without finite values".into()));
        }
        let (counts, edges) = self.counts();
        let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.05;
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = axes(root, &self.frame, edges[0]..edges[self.bins], 0.0..top.max(1.0))?;
        let color = series_color(0);
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &count)| {
                Rectangle::new([(edges[i], 0.0), (edges[i + 1], count as f64)], color.mix(0.8).filled())
            }))
            .map_err(drawing)?;
        Ok(())
    }
}

/// One bar per label.
#[derive(Debug, Clone, Default)]
pub struct Bar {
    frame: Frame,
    labels: Vec<String>,
    values: Vec<f64>,
}

/// A bar chart: `plot::bar(&["cat", "dog"], &[3.0, 5.0])`.
pub fn bar(labels: &[impl ToString], values: &[f64]) -> Bar {
    Bar {
        frame: Frame::default(),
        labels: labels.iter().map(ToString::to_string).collect(),
        values: values.to_vec(),
    }
}

frame_methods!(Bar);

impl Chart for Bar {
    fn size(&self) -> (u32, u32) {
        self.frame.size
    }

    fn describe(&self) -> String {
        described("bar chart", &self.frame.title)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        let n = self.values.len().min(self.labels.len());
        if n == 0 {
            return Err(PlotError::NoData("a bar chart without bars".into()));
        }
        let lo = self.values.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::min);
        let hi = self.values.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
        let pad = ((hi - lo) * 0.05).max(1e-9);
        root.fill(&WHITE).map_err(drawing)?;
        let labels = self.labels.clone();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.frame.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, (lo - pad)..(hi + pad))
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc(&self.frame.x_label)
            .y_desc(&self.frame.y_label)
            .draw()
            .map_err(drawing)?;
        chart
            .draw_series(self.values.iter().take(n).enumerate().map(|(i, &v)| {
                let x = i as f64;
                Rectangle::new([(x - 0.35, 0.0), (x + 0.35, v)], series_color(0).filled())
            }))
            .map_err(drawing)?;
        Ok(())
    }
}

type Cartesian<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Caption, margins, mesh and axis titles for an f64 × f64 chart.
fn axes<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    frame: &Frame,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Cartesian<'a, DB>, PlotError> {
    let mut chart = ChartBuilder::on(root)
        .caption(&frame.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x, y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .x_desc(&frame.x_label)
        .y_desc(&frame.y_label)
        .draw()
        .map_err(drawing)?;
    Ok(chart)
}

fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Cartesian<'a, DB>) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(drawing)
}

fn described(kind: &str, title: &str) -> String {
    if title.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {title}")
    }
}

/// Line charts side by side in one picture, e.g. loss and accuracy curves of a training run.
#[derive(Debug, Clone, Default)]
pub struct Panels {
    frame: Frame,
    charts: Vec<Line>,
}

/// Puts `charts` side by side; the default size grows with their number.
pub fn panels(charts: Vec<Line>) -> Panels {
    let width = 420 * charts.len().max(1) as u32;
    Panels {
        frame: Frame {
            size: (width.min(1400), 300),
            ..Frame::default()
        },
        charts,
    }
}

frame_methods!(Panels);

impl Chart for Panels {
    fn size(&self) -> (u32, u32) {
        self.frame.size
    }

    fn describe(&self) -> String {
        let titles: Vec<&str> = self.charts.iter().map(|c| c.frame.title.as_str()).collect();
        format!("charts: {}", titles.join(", "))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError> {
        if self.charts.is_empty() {
            return Err(PlotError::NoData("no charts to put side by side".into()));
        }
        root.fill(&WHITE).map_err(drawing)?;
        for (chart, area) in self.charts.iter().zip(root.split_evenly((1, self.charts.len()))) {
            chart.draw(&area)?;
        }
        Ok(())
    }
}
