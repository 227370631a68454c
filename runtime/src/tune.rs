//! Hyperparameter search: grid or random search over named numeric parameters (learning rate,
//! batch size, width, dropout, …). Each trial is a function of its parameters that trains and
//! returns its `History` (use `EarlyStopping` inside); trials are ranked by the best value of
//! one figure (`val_accuracy` by default). An interrupt keeps the trials that finished.

use crate::error::{Error, Result};
use crate::history::History;
use crate::interrupt;
use crate::rng::SplitMix64;
use std::collections::BTreeMap;
use torchbook_display::plot;
use crate::table::Table;
use torchbook_display::{html_escape, MimeBundle, Render};

/// How one parameter is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// One of these values (grid and random search).
    Values(Vec<f64>),
    /// Uniform between the bounds (random search only).
    Uniform(f64, f64),
    /// Log-uniform between the bounds, for learning rates (random search only).
    LogUniform(f64, f64),
}

/// The parameters to search, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Space {
    params: Vec<(String, Choice)>,
}

impl Space {
    pub fn new() -> Space {
        Space::default()
    }

    pub fn values(mut self, name: &str, values: &[f64]) -> Space {
        self.params.push((name.to_owned(), Choice::Values(values.to_vec())));
        self
    }

    pub fn uniform(mut self, name: &str, low: f64, high: f64) -> Space {
        self.params.push((name.to_owned(), Choice::Uniform(low, high)));
        self
    }

    pub fn log_uniform(mut self, name: &str, low: f64, high: f64) -> Space {
        self.params.push((name.to_owned(), Choice::LogUniform(low, high)));
        self
    }
}

/// One trial's parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Params(BTreeMap<String, f64>);

impl Params {
    /// A parameter's value; panics with the known names when `name` is not one, since that is
    /// a typo in the trial function.
    pub fn get(&self, name: &str) -> f64 {
        match self.0.get(name) {
            Some(v) => *v,
            None => panic!("no parameter {name:?}; the search has {:?}", self.0.keys().collect::<Vec<_>>()),
        }
    }

    /// A parameter rounded to an integer (batch size, width).
    pub fn int(&self, name: &str) -> i64 {
        self.get(name).round() as i64
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &f64)> {
        self.0.iter()
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={}", short(*v))).collect();
        write!(f, "{}", parts.join(", "))
    }
}

fn short(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e6 {
        format!("{v:.0}")
    } else if v.abs() < 1e-2 {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

/// A finished trial.
#[derive(Debug, Clone)]
pub struct Trial {
    pub number: usize,
    pub params: Params,
    /// The best value of the search's figure over the trial's epochs.
    pub score: f64,
    pub epochs: usize,
    pub seconds: f64,
    pub history: History,
}

/// Grid (every combination) or random (`trials` draws) search.
#[derive(Debug, Clone)]
pub struct Search {
    space: Space,
    random: Option<(usize, u64)>,
    figure: String,
    maximize: bool,
}

/// Tries every combination of the `Values` of `space`.
pub fn grid(space: Space) -> Search {
    Search { space, random: None, figure: "val_accuracy".into(), maximize: true }
}

/// Draws `trials` parameter sets from `space` with `seed`.
pub fn random(space: Space, trials: usize, seed: u64) -> Search {
    Search { space, random: Some((trials, seed)), figure: "val_accuracy".into(), maximize: true }
}

impl Search {
    /// Ranks trials by the best `figure` (a History name such as `val_loss`), highest first
    /// when `maximize`, lowest first otherwise.
    pub fn rank_by(mut self, figure: &str, maximize: bool) -> Search {
        self.figure = figure.to_owned();
        self.maximize = maximize;
        self
    }

    /// The parameter sets this search will try, in order.
    pub fn candidates(&self) -> Result<Vec<Params>> {
        match self.random {
            None => {
                let mut sets = vec![Params::default()];
                for (name, choice) in &self.space.params {
                    let Choice::Values(values) = choice else {
                        return Err(Error::Usage(format!(
                            "grid search needs a list of values for {name:?}; use random search for ranges"
                        )));
                    };
                    sets = sets
                        .into_iter()
                        .flat_map(|set| {
                            values.iter().map(move |v| {
                                let mut next = set.clone();
                                next.0.insert(name.clone(), *v);
                                next
                            })
                        })
                        .collect();
                }
                Ok(sets)
            }
            Some((trials, seed)) => {
                let mut rng = SplitMix64::new(seed);
                let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                Ok((0..trials)
                    .map(|_| {
                        let mut set = Params::default();
                        for (name, choice) in &self.space.params {
                            let value = match choice {
                                Choice::Values(values) => values[((unit() * values.len() as f64) as usize).min(values.len() - 1)],
                                Choice::Uniform(lo, hi) => lo + (hi - lo) * unit(),
                                Choice::LogUniform(lo, hi) => (lo.ln() + (hi.ln() - lo.ln()) * unit()).exp(),
                            };
                            set.0.insert(name.clone(), value);
                        }
                        set
                    })
                    .collect())
            }
        }
    }

    /// Runs `trial` for each candidate. A failing trial ends the search with its error; an
    /// interrupt (during a trial's `fit`, or between trials) ends it with the finished trials.
    pub fn run(&self, mut trial: impl FnMut(&Params) -> Result<History>) -> Result<TuneResults> {
        let mut results = TuneResults { figure: self.figure.clone(), maximize: self.maximize, ..Default::default() };
        for (number, params) in self.candidates()?.into_iter().enumerate() {
            if interrupt::take_interrupt() {
                results.interrupted = true;
                break;
            }
            let started = std::time::Instant::now();
            let history = trial(&params)?;
            if history.interrupted {
                results.interrupted = true;
                break;
            }
            let values = history.get(&self.figure);
            if values.is_empty() {
                return Err(Error::Usage(format!(
                    "trial {number} has no {:?} in its History (it has {:?}); train with validation data or rank by another figure",
                    self.figure,
                    history.names()
                )));
            }
            let pick = if self.maximize { f64::max } else { f64::min };
            let score = values.iter().copied().fold(if self.maximize { f64::NEG_INFINITY } else { f64::INFINITY }, pick);
            results.trials.push(Trial {
                number: number + 1,
                params,
                score,
                epochs: history.len(),
                seconds: started.elapsed().as_secs_f64(),
                history,
            });
        }
        let maximize = self.maximize;
        results.trials.sort_by(|a, b| if maximize { b.score.total_cmp(&a.score) } else { a.score.total_cmp(&b.score) });
        Ok(results)
    }
}

/// Finished trials, best first.
#[derive(Debug, Clone, Default)]
pub struct TuneResults {
    pub trials: Vec<Trial>,
    pub figure: String,
    pub maximize: bool,
    /// True when an interrupt ended the search early.
    pub interrupted: bool,
}

impl TuneResults {
    pub fn best(&self) -> Option<&Trial> {
        self.trials.first()
    }

    fn text(&self) -> String {
        let mut out = format!("{} trial(s), ranked by best {}", self.trials.len(), self.figure);
        if self.interrupted {
            out.push_str(" (interrupted: the finished trials are kept)");
        }
        for t in &self.trials {
            out.push_str(&format!("\n#{:<3} {:.4}  {}  ({} epochs, {:.1} s)", t.number, t.score, t.params, t.epochs, t.seconds));
        }
        out
    }
}

impl TuneResults {
    /// The trials, best first: rank, trial, the search's figure, each parameter, epochs and
    /// seconds. Under Zeppelin the results show as this table.
    pub fn table(&self) -> Table {
        let names: Vec<String> = self.trials.first().map(|t| t.params.0.keys().cloned().collect()).unwrap_or_default();
        let mut table = Table::new()
            .column("rank", (1..=self.trials.len()).collect::<Vec<_>>())
            .and_then(|t| t.column("trial", self.trials.iter().map(|t| t.number).collect::<Vec<_>>()))
            .and_then(|t| t.column(&self.figure, self.trials.iter().map(|t| t.score).collect::<Vec<_>>()));
        for name in &names {
            let values: Vec<f64> = self.trials.iter().map(|t| t.params.0.get(name).copied().unwrap_or(f64::NAN)).collect();
            table = table.and_then(|t| t.column(name, values));
        }
        table
            .and_then(|t| t.column("epochs", self.trials.iter().map(|t| t.epochs).collect::<Vec<_>>()))
            .and_then(|t| t.column("seconds", self.trials.iter().map(|t| t.seconds).collect::<Vec<_>>()))
            .expect("one value per trial in every column")
    }
}

/// A table of the trials, best first, and a bar chart of their scores.
impl Render for TuneResults {
    fn render(&self) -> MimeBundle {
        if torchbook_display::frontend() == torchbook_display::Frontend::Zeppelin {
            return self.table().zeppelin_bundle();
        }
        let names: Vec<String> = self.trials.first().map(|t| t.params.0.keys().cloned().collect()).unwrap_or_default();
        let mut html = format!("<table><thead><tr><th>rank</th><th>trial</th><th>{}</th>", html_escape(&self.figure));
        for name in &names {
            html.push_str(&format!("<th>{}</th>", html_escape(name)));
        }
        html.push_str("<th>epochs</th><th>time</th></tr></thead><tbody>");
        for (rank, t) in self.trials.iter().enumerate() {
            html.push_str(&format!("<tr><td>{}</td><td>#{}</td><td>{:.4}</td>", rank + 1, t.number, t.score));
            for name in &names {
                html.push_str(&format!("<td>{}</td>", short(t.params.get(name))));
            }
            html.push_str(&format!("<td>{}</td><td>{:.1} s</td></tr>", t.epochs, t.seconds));
        }
        html.push_str("</tbody></table>");
        if self.interrupted {
            html.push_str("<div><i>interrupted: the finished trials are kept</i></div>");
        }
        let labels: Vec<String> = self.trials.iter().map(|t| format!("#{}", t.number)).collect();
        let scores: Vec<f64> = self.trials.iter().map(|t| t.score).collect();
        let chart = plot::bar(&labels, &scores).title(format!("best {} per trial", self.figure)).y_label(self.figure.clone()).size(560, 300);
        let bundle = MimeBundle::text(self.text()).with("text/html", html.clone());
        match chart.figure() {
            Ok(figure) if !self.trials.is_empty() => figure
                .render()
                .with("text/html", format!("{html}<div>{}</div>", figure.svg))
                .with("text/plain", self.text()),
            _ => bundle,
        }
    }
}
