//! Asking the notebook user for a line of text: `torchbook::input("Name: ")` and
//! `input_password`. In a kernel the request goes out as evcxr's input-request line (with the
//! prompt hex-encoded, because evcxr cuts prompts at the first `:`); the kernel sends the
//! frontend an `input_request` and the answer comes back on stdin. Reading `std::io::stdin()`
//! directly works too: the worker notices the blocked read and asks with an empty prompt.

use crate::error::{Error, Result};
use crate::interrupt;
use std::io::{BufRead, Write};
use torchbook_display::{output_mode, OutputMode};

/// Asks for one line of text; the prompt is shown by the frontend.
pub fn input(prompt: &str) -> Result<String> {
    ask(prompt, false)
}

/// Asks for one line of text that the frontend does not echo.
pub fn input_password(prompt: &str) -> Result<String> {
    ask(prompt, true)
}

fn ask(prompt: &str, password: bool) -> Result<String> {
    let mut stdout = std::io::stdout().lock();
    if output_mode() == OutputMode::Rich {
        let kind = if password { "EVCXR_INPUT_REQUEST_PASSWORD" } else { "EVCXR_INPUT_REQUEST" };
        let hex: String = prompt.bytes().map(|b| format!("{b:02x}")).collect();
        writeln!(stdout, "{kind}:tbhex{hex}").map_err(|e| Error::Usage(format!("cannot ask for input: {e}")))?;
    } else {
        write!(stdout, "{prompt}").map_err(|e| Error::Usage(format!("cannot ask for input: {e}")))?;
    }
    let _ = stdout.flush();
    drop(stdout);
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::Usage(format!("cannot read input: {e}")))?;
    if read == 0 {
        if interrupt::take_interrupt() {
            return Err(Error::Usage(interrupt::Interrupted.to_string()));
        }
        return Err(Error::Usage(
            "no input: the frontend does not accept input (allow_stdin is false), or the request was cancelled"
                .into(),
        ));
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}
