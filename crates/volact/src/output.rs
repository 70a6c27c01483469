//! Printing results and errors: text for people, JSON for programs.

use serde::Serialize;
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
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: cannot print the result as JSON: {e}"),
            }
        } else {
            let t = text();
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
                Ok(s) => println!("{s}"),
                Err(_) => eprintln!("error: {}", e.message),
            }
        } else {
            // "Not yet" is the product's state, not a failure of the command.
            let label = if e.code == volact_proto::ErrorCode::CountInsufficient {
                "not activated yet"
            } else {
                "error"
            };
            eprintln!("{label}: {} [{}]", e.message, e.code);
        }
    }
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

/// Whether logs on stderr are coloured: only on a terminal, since a file or a journal
/// would keep the escape codes, and never when `NO_COLOR` is set to anything but the
/// empty string (<https://no-color.org>).
fn colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
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
