//! TSIG keys in BIND's key-file format, as `tsig-keygen` writes them:
//!
//! ```text
//! key "volact-update" {
//!         algorithm hmac-sha256;
//!         secret "base64…";
//! };
//! ```

use base64::Engine as _;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};
use std::path::Path;
use volact_proto::{ApiError, ErrorCode};

/// How far apart the host's and the DNS server's clocks may be (RFC 8945 recommends 300 s).
pub const FUDGE_SECS: u16 = 300;

/// A TSIG key read from a key file.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name, as the server knows it.
    pub name: String,
    /// The algorithm, e.g. `hmac-sha256`.
    pub algorithm: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn bad_key(path: &Path, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::BadRequest,
        format!(
            "{} is not a usable TSIG key file: {why}; write it as BIND does (`tsig-keygen -a hmac-sha256 NAME > FILE`): key \"NAME\" {{ algorithm hmac-sha256; secret \"BASE64\"; }};",
            path.display()
        ),
    )
}

/// Splits key-file text into words, quoted strings and the punctuation `{ } ;`, dropping
/// `#`, `//` and `/* */` comments.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '{' | '}' | ';' => out.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    s.push(c);
                }
                out.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    out
}

impl TsigKey {
    /// Parses the first `key` statement of a BIND key file's text.
    pub fn parse(text: &str, path: &Path) -> Result<TsigKey, ApiError> {
        let t = tokens(text);
        let start = t
            .iter()
            .position(|w| w == "key")
            .ok_or_else(|| bad_key(path, "it has no `key` statement"))?;
        let name = t
            .get(start + 1)
            // An empty name (`key "" {`) would sign as the root name, which no server has.
            .filter(|n| n.as_str() != "{" && !n.trim().is_empty())
            .ok_or_else(|| bad_key(path, "the key has no name"))?
            .clone();
        if t.get(start + 2).map(String::as_str) != Some("{") {
            return Err(bad_key(path, "expected `{` after the key name"));
        }
        let (mut algorithm, mut secret) = (None, None);
        let mut i = start + 3;
        while let Some(word) = t.get(i) {
            match word.as_str() {
                "}" => break,
                "algorithm" => algorithm = t.get(i + 1).cloned(),
                "secret" => secret = t.get(i + 1).cloned(),
                _ => {}
            }
            // Skip to the end of this clause.
            while t.get(i).is_some_and(|w| w != ";") {
                i += 1;
            }
            i += 1;
        }
        let algorithm = algorithm
            .ok_or_else(|| bad_key(path, "the key has no `algorithm`"))?
            .to_ascii_lowercase();
        let secret = secret.ok_or_else(|| bad_key(path, "the key has no `secret`"))?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.trim())
            .map_err(|e| bad_key(path, format!("the secret is not base64 ({e})")))?;
        if secret.is_empty() {
            return Err(bad_key(path, "the secret is empty"));
        }
        let key = TsigKey {
            name,
            algorithm,
            secret,
        };
        key.algorithm_id()
            .map_err(|why| bad_key(path, why))
            .map(|_| key)
    }

    /// Reads and parses a key file.
    pub fn read(path: &Path) -> Result<TsigKey, ApiError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "cannot read the TSIG key file {} ({e}); check dns.publish.key_file in volact.toml",
                    path.display()
                ),
            )
        })?;
        TsigKey::parse(&text, path)
    }

    fn algorithm_id(&self) -> Result<TsigAlgorithm, String> {
        match self.algorithm.as_str() {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            other => Err(format!(
                "algorithm `{other}` is not supported; use hmac-sha256, hmac-sha384 or hmac-sha512"
            )),
        }
    }

    /// The signer that authenticates update messages.
    pub fn signer(&self) -> Result<TSigner, ApiError> {
        let internal = |why: String| {
            ApiError::new(
                ErrorCode::Internal,
                format!("cannot use TSIG key {}: {why}", self.name),
            )
        };
        let algorithm = self.algorithm_id().map_err(internal)?;
        let name = Name::from_ascii(format!("{}.", self.name.trim_end_matches('.')))
            .map_err(|e| internal(e.to_string()))?;
        TSigner::new(self.secret.clone(), algorithm, name, FUDGE_SECS)
            .map_err(|e| internal(e.to_string()))
    }
}
