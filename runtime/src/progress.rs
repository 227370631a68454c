//! What `fit` shows while it trains. In a notebook (verbose 1): one live block — epoch, batch,
//! a progress bar, running loss and metrics, samples/s, ETA — updated in place a few times a
//! second, and the loss/metric curves redrawn after every epoch; at the end both are cleared and
//! a static final render (summary table and curves) is shown, because Zeppelin ignores updates.
//! Verbose 2, or a frontend without HTML (`TORCHBOOK_PLAIN=1`, or outside the kernel): one text
//! line per epoch. Verbose 0: nothing.

use crate::history::{EpochLog, History};
use std::time::{Duration, Instant};
use torchbook_display::{display, frontend, html_escape, output_mode, DisplayHandle, Frontend, MimeBundle, OutputMode, Render};

/// How often the live block may be redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// Keras's levels: 0 silent, 1 live progress bar, 2 one line per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Silent,
    Bar,
    Lines,
}

impl Verbosity {
    pub fn from_level(level: u8) -> Verbosity {
        match level {
            0 => Verbosity::Silent,
            1 => Verbosity::Bar,
            _ => Verbosity::Lines,
        }
    }
}

/// Where the batch loop is, for a redraw.
pub struct BatchState<'a> {
    pub epoch: usize,
    pub batch: usize,
    pub seen: i64,
    pub loss: f64,
    pub metrics: &'a [(String, f64)],
}

pub struct Progress {
    live: Option<Live>,
    lines: bool,
    /// Under Zeppelin, which drops updates: epoch lines while training (its text streams), then
    /// the headline and the epochs as a Zeppelin table instead of the live block.
    zeppelin_summary: bool,
}

struct Live {
    bar: DisplayHandle,
    curves: DisplayHandle,
    first_epoch: usize,
    epochs: usize,
    batches_per_epoch: usize,
    samples_per_epoch: i64,
    started: Instant,
    epoch_started: Instant,
    last_redraw: Instant,
}

impl Progress {
    /// `first_epoch` is the number the first epoch of this run will have.
    pub fn start(verbosity: Verbosity, first_epoch: usize, epochs: usize, samples: i64, batch_size: i64) -> Progress {
        let rich = output_mode() == OutputMode::Rich;
        let zeppelin = frontend() == Frontend::Zeppelin;
        if verbosity != Verbosity::Bar || !rich || zeppelin {
            return Progress {
                live: None,
                lines: verbosity != Verbosity::Silent,
                zeppelin_summary: rich && zeppelin && verbosity == Verbosity::Bar,
            };
        }
        let batches_per_epoch = ((samples + batch_size - 1) / batch_size.max(1)).max(0) as usize;
        let now = Instant::now();
        let bar = display(&html_block(
            &format!("training: {epochs} epoch(s) of {batches_per_epoch} batches"),
            &format!("<b>Training</b>: {epochs} epoch(s) of {batches_per_epoch} batches …"),
        ));
        let curves = display(&html_block("curves appear after the first epoch", "<i>curves appear after the first epoch</i>"));
        Progress {
            live: Some(Live {
                bar,
                curves,
                first_epoch,
                epochs,
                batches_per_epoch,
                samples_per_epoch: samples,
                started: now,
                epoch_started: now,
                last_redraw: now - REDRAW_EVERY,
            }),
            lines: false,
            zeppelin_summary: false,
        }
    }

    /// Whether a batch redraw is due now (asking costs nothing; the caller then reads the loss,
    /// which waits for the device, only when it is).
    pub fn redraw_due(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.last_redraw.elapsed() >= REDRAW_EVERY)
    }

    pub fn epoch_started(&mut self) {
        if let Some(live) = &mut self.live {
            live.epoch_started = Instant::now();
        }
    }

    pub fn batch(&mut self, state: &BatchState<'_>) {
        let Some(live) = &mut self.live else { return };
        live.last_redraw = Instant::now();
        live.bar.update(&live.bar_bundle(state));
    }

    pub fn epoch_end(&mut self, log: &EpochLog, history: &History) {
        if self.lines {
            println!("{log}");
        }
        if let Some(live) = &mut self.live {
            // Fast epochs may finish between redraws: show each one complete.
            let metrics: Vec<(String, f64)> = log.metrics.clone().into_iter().collect();
            let done = BatchState {
                epoch: log.epoch,
                batch: live.batches_per_epoch,
                seen: live.samples_per_epoch,
                loss: log.loss,
                metrics: &metrics,
            };
            live.bar.update(&live.bar_bundle(&done));
            live.last_redraw = Instant::now();
            live.curves.update(&history.curves());
        }
    }

    /// Clears the live block and shows the final, static render.
    pub fn finish(&mut self, history: &History, note: Option<&str>) {
        if let Some(note) = note.filter(|_| self.lines) {
            println!("{note}");
        }
        if self.zeppelin_summary && !history.is_empty() {
            // `%table` must start a line: the headline goes on the line before.
            let headline = note.map(str::to_owned).unwrap_or_else(|| format!("Trained {} epoch(s)", history.len()));
            display(&MimeBundle::text(format!("{headline}\n%table {}", history.table().to_tsv())));
        }
        let Some(live) = self.live.take() else { return };
        let empty = MimeBundle::text("").with("text/html", "");
        live.bar.update(&empty);
        live.curves.update(&empty);
        let elapsed = live.started.elapsed().as_secs_f64();
        let mut bundle = history.render();
        let headline = match note {
            Some(note) => note.to_owned(),
            None => format!("Trained {} epoch(s) in {}", history.len(), clock(elapsed)),
        };
        let html = bundle.get("text/html").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let text = bundle.text_plain().to_owned();
        bundle = bundle
            .with("text/html", format!("<div><b>{}</b></div>{html}", html_escape(&headline)))
            .with("text/plain", format!("{headline}\n{text}"));
        display(&bundle);
    }
}

/// A run that ends without [`Progress::finish`] (an error passed on with `?`, a panic) must not
/// leave a block on screen that looks as if training were still going.
impl Drop for Progress {
    fn drop(&mut self) {
        let Some(live) = self.live.take() else { return };
        let stopped = format!("Training stopped by an error after {}", clock(live.started.elapsed().as_secs_f64()));
        live.bar.update(&html_block(&stopped, &format!("<b>{}</b>", html_escape(&stopped))));
        live.curves.update(&MimeBundle::text("").with("text/html", ""));
    }
}

impl Live {
    fn bar_bundle(&self, state: &BatchState<'_>) -> MimeBundle {
        let done_batches = state.batch.min(self.batches_per_epoch);
        let fraction = if self.batches_per_epoch == 0 { 1.0 } else { done_batches as f64 / self.batches_per_epoch as f64 };
        let epoch_seconds = self.epoch_started.elapsed().as_secs_f64();
        let rate = state.seen as f64 / epoch_seconds.max(1e-9);
        let epochs_left = (self.first_epoch + self.epochs).saturating_sub(state.epoch + 1) as f64;
        let remaining_samples = (self.samples_per_epoch - state.seen).max(0) as f64 + epochs_left * self.samples_per_epoch as f64;
        let eta = if rate > 0.0 { clock(remaining_samples / rate) } else { "?".into() };
        let epoch_of = format!("{}/{}", state.epoch - self.first_epoch + 1, self.epochs);
        let mut figures = format!("loss {:.4}", state.loss);
        for (name, value) in state.metrics {
            figures.push_str(&format!(" · {name} {value:.4}"));
        }
        let filled = (fraction * 30.0).round() as usize;
        let text = format!(
            "epoch {epoch_of} [{}{}] {done_batches}/{} {figures} · {rate:.0} samples/s · ETA {eta}",
            "=".repeat(filled),
            " ".repeat(30 - filled.min(30)),
            self.batches_per_epoch,
        );
        let html = format!(
            "<div style=\"font-family: monospace\"><b>Epoch {epoch_of}</b> \
             <progress value=\"{done_batches}\" max=\"{}\" style=\"width: 240px; vertical-align: middle\"></progress> \
             batch {done_batches}/{} · {} · {rate:.0} samples/s · ETA {eta}</div>",
            self.batches_per_epoch.max(1),
            self.batches_per_epoch,
            html_escape(&figures),
        );
        MimeBundle::text(text).with("text/html", html)
    }
}

fn html_block(text: &str, html: &str) -> MimeBundle {
    MimeBundle::text(text).with("text/html", format!("<div style=\"font-family: monospace\">{html}</div>"))
}

/// `m:ss`, or `h:mm:ss` past an hour.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_format() {
        assert_eq!(clock(5.4), "0:05");
        assert_eq!(clock(125.0), "2:05");
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn verbosity_levels() {
        assert_eq!(Verbosity::from_level(0), Verbosity::Silent);
        assert_eq!(Verbosity::from_level(1), Verbosity::Bar);
        assert_eq!(Verbosity::from_level(2), Verbosity::Lines);
    }
}
