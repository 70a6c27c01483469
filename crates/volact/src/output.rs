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
            eprintln!("error: {} [{}]", e.message, e.code);
        }
    }
}

/// Starts logging to stderr in the chosen format.
pub fn init_logging(format: &str) -> Result<(), ApiError> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VOLACT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
