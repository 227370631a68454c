//! Input history for `history_request`: every stored cell of this kernel, and of earlier
//! sessions, kept in a per-user JSON-lines file so that it survives kernel restarts
//! (`$XDG_DATA_HOME/torchbook/history.jsonl`, or `~/.local/share/torchbook/history.jsonl`;
//! `TORCHBOOK_HISTORY` overrides the path).

use crate::protocol::messages::HistoryRequest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub session: i64,
    pub line: i64,
    pub input: String,
    #[serde(default)]
    pub output: Option<String>,
}

pub struct History {
    pub session: i64,
    entries: Vec<Entry>,
    path: Option<PathBuf>,
}

fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TORCHBOOK_HISTORY") {
        return Some(p.into());
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("torchbook/history.jsonl"))
}

/// `*` and `?` wildcards over the whole input, as IPython's history search.
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some(('?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// True when the store's last byte is not a line end (a write cut short).
fn ends_torn(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let length = file.metadata()?.len();
    if length == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    file.read_exact_at(&mut last, length - 1)?;
    Ok(last[0] != b'\n')
}

impl History {
    /// Loads earlier sessions from the store and starts a new session after them.
    pub fn open() -> Self {
        Self::open_at(default_path())
    }

    pub fn open_at(path: Option<PathBuf>) -> Self {
        let entries: Vec<Entry> = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            // A line torn by a crash may end inside a character: the other lines still count.
            .map(|bytes| String::from_utf8_lossy(&bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
            .unwrap_or_default();
        let session = entries.iter().map(|e| e.session).max().unwrap_or(0) + 1;
        History { session, entries, path }
    }

    /// Records a cell of this session (and appends it to the store; a store that cannot be
    /// written only loses persistence, never the kernel).
    pub fn record(&mut self, line: i64, input: &str, output: Option<String>) {
        let entry = Entry { session: self.session, line, input: input.to_owned(), output };
        if let Some(path) = &self.path {
            let appended = (|| -> std::io::Result<()> {
                use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
                // What a user typed is private: a folder and file only they can read
                // (docs/SECURITY.md); modes apply when these are created, not to existing ones.
                if let Some(dir) = path.parent() {
                    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
                }
                let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).mode(0o600).open(path)?;
                // A kernel killed mid-write leaves a line without its end; ending it first keeps
                // this entry from being glued to it (and lost with it). One write per entry:
                // appends from kernels running at once do not interleave.
                let mut line = if ends_torn(&file)? { "\n".to_owned() } else { String::new() };
                line.push_str(&serde_json::to_string(&entry).expect("entry serialises"));
                line.push('\n');
                file.write_all(line.as_bytes())
            })();
            if let Err(e) = appended {
                eprintln!("torchbook: cannot append to history {}: {e}", path.display());
            }
        }
        self.entries.push(entry);
    }

    /// The `history` list of a `history_reply`.
    pub fn query(&self, request: &HistoryRequest) -> Vec<Value> {
        let selected: Vec<&Entry> = match request.hist_access_type.as_str() {
            "range" => {
                let session = if request.session <= 0 { self.session + request.session } else { request.session };
                self.entries
                    .iter()
                    .filter(|e| e.session == session && e.line >= request.start && request.stop.is_none_or(|s| e.line < s))
                    .collect()
            }
            "search" => {
                let pattern: Vec<char> = request.pattern.as_deref().unwrap_or("*").chars().collect();
                let mut found: Vec<&Entry> = Vec::new();
                for entry in self.entries.iter().rev() {
                    let text: Vec<char> = entry.input.chars().collect();
                    if !glob_match(&pattern, &text) {
                        continue;
                    }
                    if request.unique && found.iter().any(|f| f.input == entry.input) {
                        continue;
                    }
                    found.push(entry);
                    if request.n.is_some_and(|n| found.len() as i64 >= n) {
                        break;
                    }
                }
                found.reverse();
                found
            }
            _ => {
                let n = request.n.unwrap_or(10).max(0) as usize;
                let skip = self.entries.len().saturating_sub(n);
                self.entries.iter().skip(skip).collect()
            }
        };
        selected
            .into_iter()
            .map(|e| {
                if request.output {
                    json!([e.session, e.line, [e.input, e.output.clone().unwrap_or_default()]])
                } else {
                    json!([e.session, e.line, e.input])
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: &str) -> HistoryRequest {
        serde_json::from_value(json!({"hist_access_type": kind})).unwrap()
    }

    #[test]
    fn the_store_is_private_to_its_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tb-hist-mode-{}", std::process::id()));
        let path = dir.join("nested/history.jsonl");
        History::open_at(Some(path.clone())).record(1, "let secret = 1;", None);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn persists_across_sessions() {
        let path = std::env::temp_dir().join(format!("tb-history-{}.jsonl", uuid::Uuid::new_v4()));
        let mut first = History::open_at(Some(path.clone()));
        assert_eq!(first.session, 1);
        first.record(1, "let a = 1;", None);
        first.record(2, "a + 1", Some("2".into()));
        let mut second = History::open_at(Some(path.clone()));
        assert_eq!(second.session, 2);
        second.record(1, "a * 6", Some("6".into()));
        let mut tail = request("tail");
        tail.n = Some(2);
        assert_eq!(second.query(&tail), vec![json!([1, 2, "a + 1"]), json!([2, 1, "a * 6"])]);
        let mut previous = request("range");
        previous.session = -1;
        previous.start = 2;
        previous.output = true;
        assert_eq!(second.query(&previous), vec![json!([1, 2, ["a + 1", "2"]])]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_line_torn_by_a_crash_costs_only_itself() {
        let path = std::env::temp_dir().join(format!("tb-history-torn-{}.jsonl", uuid::Uuid::new_v4()));
        History::open_at(Some(path.clone())).record(1, "let kept = 1;", None);
        // A kernel killed in the middle of writing "é": the line and the character are cut.
        let mut torn = std::fs::read(&path).unwrap();
        torn.extend_from_slice(b"{\"session\":1,\"line\":2,\"input\":\"\xc3");
        std::fs::write(&path, torn).unwrap();
        let mut next = History::open_at(Some(path.clone()));
        assert_eq!(next.entries.len(), 1, "the whole lines are read");
        next.record(1, "kept + 1", None);
        let reopened = History::open_at(Some(path.clone()));
        let inputs: Vec<&str> = reopened.entries.iter().map(|e| e.input.as_str()).collect();
        assert_eq!(inputs, ["let kept = 1;", "kept + 1"]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn search_with_globs_unique_and_n() {
        let mut h = History::open_at(None);
        for (i, code) in ["6 * 7", "let x = 6;", "6 * 7", "6 * 8"].iter().enumerate() {
            h.record(i as i64 + 1, code, None);
        }
        let mut search = request("search");
        search.pattern = Some("6 *".into());
        assert_eq!(h.query(&search).len(), 3);
        search.unique = true;
        assert_eq!(h.query(&search), vec![json!([1, 3, "6 * 7"]), json!([1, 4, "6 * 8"])]);
        search.unique = false;
        search.n = Some(1);
        assert_eq!(h.query(&search), vec![json!([1, 4, "6 * 8"])]);
        search.pattern = Some("let ?*".into());
        search.n = None;
        assert_eq!(h.query(&search).len(), 1);
    }
}
