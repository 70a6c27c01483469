//! Printing results and errors: text for people, JSON for programs.

use serde::Serialize;
use volact_core::util::{printable, printable_lines};
use volact_proto::ApiError;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints a result: `value` as JSON, or `text()` for people.
    pub fn result<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => println!("{}", json_text(&s)),
                Err(e) => eprintln!("error: cannot print the result as JSON: {e}"),
            }
        } else {
            let t = printable_lines(&text());
            print!("{t}");
            if !t.ends_with('\n') {
                println!();
            }
        }
    }

    /// Prints an error: the object as JSON on stdout, or the message on stderr.
    pub fn error(&self, e: &ApiError) {
        if self.json {
            match serde_json::to_string_pretty(e) {
                Ok(s) => println!("{}", json_text(&s)),
                Err(_) => eprintln!("error: {}", printable(&e.message)),
            }
        } else {
            // "Not yet" is the product's state, not a failure of the command.
            let label = if e.code == volact_proto::ErrorCode::CountInsufficient {
                "not activated yet"
            } else {
                "error"
            };
            eprintln!("{label}: {} [{}]", printable(&e.message), e.code);
        }
    }
}

/// JSON as printed: serde escapes the C0 controls in strings, but not DEL, the C1
/// controls (a terminal may take U+009B for an escape sequence) nor the controls that
/// reorder text; they are escaped here too, so the data stays exact and the terminal
/// safe. Text printed for people goes through `printable_lines` instead: whatever a
/// host sent, or a state file holds, is shown as plain text (the client already strips
/// it when it arrives; this is the second line of defence).
fn json_text(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if printable(c.encode_utf8(&mut [0; 4])).is_empty() {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts logging to stderr in the chosen format.
pub fn init_logging(format: &str) -> Result<(), ApiError> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VOLACT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr);
    let result = match format {
        "json" => builder.json().try_init(),
        "text" => builder.try_init(),
        other => {
            return Err(ApiError::bad_request(
                "log-format",
                format!("`{other}` is not text or json"),
            ));
        }
    };
    // A second initialisation (tests, quickstart calling serve) is harmless.
    let _ = result;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_output_escapes_every_control_and_keeps_the_data() {
        let hostile = "a\u{1b}[2J\u{9b}1m\u{7f}\u{202e}b";
        let json = serde_json::to_string_pretty(&serde_json::json!({ "m": hostile })).unwrap();
        let printed = json_text(&json);
        assert!(
            printed
                .chars()
                .all(|c| c == '\n' || !printable(&c.to_string()).is_empty()),
            "{printed:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(back["m"], hostile);
    }
}

/// Whether logs on stderr are coloured: only on a terminal, since a file or a journal
/// would keep the escape codes, and never when `NO_COLOR` is set to anything but the
/// empty string (<https://no-color.org>).
fn colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod colour_tests {
    use super::colour;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
        assert!(!colour(false, Some("1".into())));
    }
}
