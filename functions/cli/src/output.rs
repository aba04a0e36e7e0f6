//! Where answers go: stdout, as the API's JSON (`--json`) or as text for people.

use std::io::Write;

use serde_json::Value;

use crate::error::{CliError, CliResult};

/// Output mode of the command.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print the API's JSON answers instead of text.
    pub json: bool,
}

impl Output {
    /// Prints a JSON value (pretty, one document) on stdout.
    pub fn json_value(&self, value: &Value) -> CliResult<()> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Protocol(format!("cannot print the answer: {e}")))?;
        self.line(&text)
    }

    /// Prints a line of text on stdout.
    pub fn line(&self, text: &str) -> CliResult<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::io("stdout", e))
    }

    /// The JSON answer with `--json`, else `text()`.
    pub fn either(&self, value: &Value, text: impl FnOnce() -> String) -> CliResult<()> {
        if self.json {
            self.json_value(value)
        } else {
            self.line(&text())
        }
    }
}
