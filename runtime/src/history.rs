//! What `fit` returns: one [`EpochLog`] per finished epoch, train and validation.

use std::collections::BTreeMap;
use std::fmt;
use torchbook_display::plot::{self, Line, Panels};
use crate::table::Table;
use torchbook_display::{frontend, html_escape, Frontend, MimeBundle, Render};

/// The figures of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochLog {
    /// 1-based, counting epochs trained before this `fit` too.
    pub epoch: usize,
    pub loss: f64,
    pub metrics: BTreeMap<String, f64>,
    pub val_loss: Option<f64>,
    pub val_metrics: BTreeMap<String, f64>,
    /// The learning rate used during the epoch.
    pub lr: f64,
    pub seconds: f64,
    /// Samples per second over the training part of the epoch.
    pub samples_per_second: f64,
}

impl EpochLog {
    /// A figure by its Keras name: `loss`, `val_loss`, `accuracy`, `val_accuracy`, `lr`, ….
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "loss" => Some(self.loss),
            "val_loss" => self.val_loss,
            "lr" => Some(self.lr),
            _ => match name.strip_prefix("val_") {
                Some(metric) => self.val_metrics.get(metric).copied(),
                None => self.metrics.get(name).copied(),
            },
        }
    }
}

impl fmt::Display for EpochLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {:3}  loss {:.4}", self.epoch, self.loss)?;
        for (k, v) in &self.metrics {
            write!(f, "  {k} {v:.4}")?;
        }
        if let Some(v) = self.val_loss {
            write!(f, "  val_loss {v:.4}")?;
        }
        for (k, v) in &self.val_metrics {
            write!(f, "  val_{k} {v:.4}")?;
        }
        write!(f, "  lr {:.2e}  {:.1}s  {:.0} samples/s", self.lr, self.seconds, self.samples_per_second)
    }
}

/// The record of a training run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub epochs: Vec<EpochLog>,
    /// True when the user interrupted `fit`; `epochs` holds the epochs that finished.
    pub interrupted: bool,
    /// True when a callback (e.g. EarlyStopping) ended training early.
    pub stopped_early: bool,
}

impl History {
    /// One figure across epochs (`history.get("val_loss")`); epochs without it are skipped.
    pub fn get(&self, name: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.get(name)).collect()
    }

    pub fn last(&self) -> Option<&EpochLog> {
        self.epochs.last()
    }

    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// The figures recorded, in Keras order: `loss`, metrics, then their `val_` twins.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec!["loss".to_owned()];
        if let Some(last) = self.epochs.last() {
            names.extend(last.metrics.keys().cloned());
            if last.val_loss.is_some() {
                names.push("val_loss".to_owned());
            }
            names.extend(last.val_metrics.keys().map(|k| format!("val_{k}")));
        }
        names
    }

    /// Loss and metric curves, one panel per figure with its validation twin.
    pub fn curves(&self) -> Panels {
        let epochs: Vec<f64> = self.epochs.iter().map(|e| e.epoch as f64).collect();
        let charts = self
            .names()
            .into_iter()
            .filter(|name| !name.starts_with("val_"))
            .map(|name| {
                let mut chart = Line::new().title(name.as_str()).x_label("epoch");
                for series in [name.clone(), format!("val_{name}")] {
                    let points: Vec<(f64, f64)> = self
                        .epochs
                        .iter()
                        .zip(&epochs)
                        .filter_map(|(e, &x)| e.get(&series).map(|y| (x, y)))
                        .collect();
                    if !points.is_empty() {
                        let (xs, ys): (Vec<f64>, Vec<f64>) = points.into_iter().unzip();
                        chart = chart.xy(series, &xs, &ys);
                    }
                }
                chart
            })
            .collect();
        plot::panels(charts)
    }

    /// The epochs as a [`Table`]: epoch, each figure (NaN where an epoch lacks it), seconds and
    /// samples/s. Under Zeppelin a `History` shows as this table, with Zeppelin's charts.
    pub fn table(&self) -> Table {
        let mut table = Table::new().column("epoch", self.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>());
        for name in self.names() {
            let values: Vec<f64> = self.epochs.iter().map(|e| e.get(&name).unwrap_or(f64::NAN)).collect();
            table = table.and_then(|t| t.column(&name, values));
        }
        table
            .and_then(|t| t.column("seconds", self.epochs.iter().map(|e| e.seconds).collect::<Vec<_>>()))
            .and_then(|t| t.column("samples/s", self.epochs.iter().map(|e| e.samples_per_second.round()).collect::<Vec<_>>()))
            .expect("one value per epoch in every column")
    }

    /// The epochs as an HTML table.
    fn html_table(&self) -> String {
        let names = self.names();
        let mut html = String::from("<table><thead><tr><th>epoch</th>");
        for name in &names {
            html.push_str(&format!("<th>{}</th>", html_escape(name)));
        }
        html.push_str("<th>time</th><th>samples/s</th></tr></thead><tbody>");
        for e in &self.epochs {
            html.push_str(&format!("<tr><td>{}</td>", e.epoch));
            for name in &names {
                match e.get(name) {
                    Some(v) => html.push_str(&format!("<td>{v:.4}</td>")),
                    None => html.push_str("<td></td>"),
                }
            }
            html.push_str(&format!("<td>{:.1} s</td><td>{:.0}</td></tr>", e.seconds, e.samples_per_second));
        }
        html.push_str("</tbody></table>");
        html
    }
}

/// Shown as its curves (SVG inline and PNG) above a table of the epochs.
impl Render for History {
    fn render(&self) -> MimeBundle {
        let text = if self.is_empty() { "History: no finished epochs".to_owned() } else { self.to_string() };
        if self.is_empty() {
            return MimeBundle::text(text);
        }
        if frontend() == Frontend::Zeppelin {
            return self.table().zeppelin_bundle();
        }
        let table = self.html_table();
        match self.curves().figure() {
            Ok(figure) => figure
                .render()
                .with("text/html", format!("<div>{}</div>{table}", figure.svg))
                .with("text/plain", text),
            Err(_) => MimeBundle::text(text).with("text/html", table),
        }
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.epochs {
            writeln!(f, "{e}")?;
        }
        if self.interrupted {
            writeln!(f, "(interrupted: {} complete epochs)", self.epochs.len())?;
        } else if self.stopped_early {
            writeln!(f, "(stopped early after {} epochs)", self.epochs.len())?;
        }
        Ok(())
    }
}
