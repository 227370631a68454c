//! Batches worker output lines into `stream` messages: a cell that prints 10,000 lines becomes a
//! handful of messages, not 10,000. Text is flushed when the stream switches (so stdout and stderr
//! keep their relative order), when the batch grows large, or a short while after it started.

use crate::protocol::messages::{Stream, StreamName};
use std::time::Duration;
use tokio::time::Instant;

/// How long text may wait before it is sent. Frontends redraw at about this rate anyway.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(30);
/// A batch this large is sent at once, to bound memory and the size of one message.
const MAX_BATCH_BYTES: usize = 1 << 20;

#[derive(Default)]
pub struct StreamBatcher {
    pending: Option<(StreamName, String, Instant)>,
}

impl StreamBatcher {
    /// Adds one line; returns a batch that must be sent now, if any.
    pub fn push(&mut self, name: StreamName, line: &str) -> Option<Stream> {
        let switched = matches!(&self.pending, Some((current, _, _)) if *current != name);
        let ready = if switched { self.take() } else { None };
        let (_, text, _) = self
            .pending
            .get_or_insert_with(|| (name, String::new(), Instant::now()));
        text.push_str(line);
        text.push('\n');
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
    fn big_batches_go_out_early() {
        let mut b = StreamBatcher::default();
        let line = "x".repeat(1000);
        let sent = (0..2000).filter_map(|_| b.push(StreamName::Stdout, &line)).count();
        assert!(sent >= 1);
    }
}
