//! Batches worker output lines into `stream` messages: a cell that prints 10,000 lines becomes a
//! handful of messages, not 10,000. Text is flushed when the stream switches (so stdout and stderr
//! keep their relative order), when the batch grows large, or a short while after it started.
//! A cell may print more than anyone can read: past a limit per cell
//! (`TORCHBOOK_MAX_OUTPUT_BYTES`, default 16 MiB) text is counted, not kept, and the cell ends
//! with a note saying how much was left out, so that the kernel and the notebook stay usable.

use crate::protocol::messages::{Stream, StreamName};
use std::time::Duration;
use tokio::time::Instant;

/// How long text may wait before it is sent. Frontends redraw at about this rate anyway.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(30);
/// A batch this large is sent at once, to bound memory and the size of one message.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// The default for how much text one cell may send.
const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 << 20;

pub struct StreamBatcher {
    pending: Option<(StreamName, String, Instant)>,
    budget: usize,
    dropped: usize,
}

impl Default for StreamBatcher {
    fn default() -> Self {
        let budget = std::env::var("TORCHBOOK_MAX_OUTPUT_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
        StreamBatcher::with_budget(budget)
    }
}

impl StreamBatcher {
    pub fn with_budget(budget: usize) -> Self {
        StreamBatcher {
            pending: None,
            budget,
            dropped: 0,
        }
    }

    /// Adds one line; returns a batch that must be sent now, if any.
    pub fn push(&mut self, name: StreamName, line: &str) -> Option<Stream> {
        self.push_text(name, &format!("{line}\n"))
    }

    /// Adds text as it is (no newline added).
    pub fn push_text(&mut self, name: StreamName, text: &str) -> Option<Stream> {
        if text.len() > self.budget {
            self.dropped += text.len();
            return None;
        }
        self.budget -= text.len();
        let switched = matches!(&self.pending, Some((current, _, _)) if *current != name);
        let ready = if switched { self.take() } else { None };
        let (_, pending, _) = self
            .pending
            .get_or_insert_with(|| (name, String::new(), Instant::now()));
        pending.push_str(text);
        let text = pending;
        if ready.is_some() {
            return ready;
        }
        if text.len() >= MAX_BATCH_BYTES {
            return self.take();
        }
        None
    }

    /// When the pending batch is due, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending
            .as_ref()
            .map(|(_, _, started)| *started + FLUSH_INTERVAL)
    }

    /// Takes what is pending and, when text was left out, the note that says so.
    pub fn finish(&mut self) -> Vec<Stream> {
        let mut last: Vec<Stream> = self.take().into_iter().collect();
        if self.dropped > 0 {
            let note = format!(
                "\n[torchbook: {:.1} MB of output from this cell were not shown; the limit is \
                 TORCHBOOK_MAX_OUTPUT_BYTES]\n",
                self.dropped as f64 / 1e6
            );
            last.push(Stream { name: StreamName::Stderr, text: note });
            self.dropped = 0;
        }
        last
    }

    /// Takes whatever is pending.
    pub fn take(&mut self) -> Option<Stream> {
        self.pending
            .take()
            .map(|(name, text, _)| Stream { name, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_one_stream_are_joined() {
        let mut b = StreamBatcher::default();
        for i in 0..1000 {
            assert!(b.push(StreamName::Stdout, &i.to_string()).is_none());
        }
        let s = b.take().unwrap();
        assert_eq!(s.text.lines().count(), 1000);
        assert!(b.take().is_none());
    }

    #[test]
    fn switching_stream_flushes_in_order() {
        let mut b = StreamBatcher::default();
        assert!(b.push(StreamName::Stdout, "out").is_none());
        let first = b.push(StreamName::Stderr, "err").unwrap();
        assert_eq!((first.name, first.text.as_str()), (StreamName::Stdout, "out\n"));
        let second = b.take().unwrap();
        assert_eq!((second.name, second.text.as_str()), (StreamName::Stderr, "err\n"));
    }

    #[test]
    fn partial_text_is_kept_as_is() {
        let mut b = StreamBatcher::default();
        assert!(b.push_text(StreamName::Stdout, "10%\r").is_none());
        assert!(b.push_text(StreamName::Stdout, "20%\r").is_none());
        assert_eq!(b.take().unwrap().text, "10%\r20%\r");
    }

    #[test]
    fn output_past_the_budget_is_counted_and_noted() {
        let mut b = StreamBatcher::with_budget(100);
        let line = "y".repeat(30);
        let kept: usize = (0..10)
            .filter_map(|_| b.push(StreamName::Stdout, &line))
            .map(|s| s.text.len())
            .sum();
        let last = b.finish();
        let total = kept + last[0].text.len();
        assert!(total <= 100, "kept {total} bytes");
        assert_eq!(last.len(), 2);
        assert!(last[1].text.contains("were not shown"), "{}", last[1].text);
    }

    #[test]
    fn big_batches_go_out_early() {
        let mut b = StreamBatcher::default();
        let line = "x".repeat(1000);
        let sent = (0..2000).filter_map(|_| b.push(StreamName::Stdout, &line)).count();
        assert!(sent >= 1);
    }
}
