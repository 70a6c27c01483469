//! Setup keys: `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`, 24 data characters and one check character
//! from an alphabet without look-alike characters (no 0/O, 1/I/L, 5/S, 8/B… pairs).
//!
//! The check character is Luhn mod N over the alphabet, which catches every single
//! mistyped character and every swap of two neighbours but `B`↔`9`, so a typo is reported as a typo
//! instead of as an unknown product.

use volact_proto::{ApiError, ErrorCode};

/// The characters a setup key is made of.
pub const ALPHABET: &[u8; 24] = b"BCDFGHJKMPQRTVWXY2346789";

const N: usize = ALPHABET.len();
const DATA_LEN: usize = 24;

/// A well-formed setup key, normalised to upper case with dashes.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct SetupKey(String);

impl TryFrom<String> for SetupKey {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        SetupKey::parse(&text).map_err(|e| e.message)
    }
}

impl From<SetupKey> for String {
    fn from(key: SetupKey) -> String {
        key.0
    }
}

impl SetupKey {
    /// The key in its canonical `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Builds a key from 24 random bytes (the caller supplies the randomness).
    pub fn generate(random: [u8; DATA_LEN]) -> SetupKey {
        let data: Vec<usize> = random.iter().map(|b| usize::from(*b) % N).collect();
        let check = check_digit(&data);
        let mut chars: Vec<u8> = data.iter().map(|&d| ALPHABET[d]).collect();
        chars.push(ALPHABET[check]);
        SetupKey(group(&chars))
    }

    /// Parses what a person typed: case, spaces and dashes are forgiven; a wrong length,
    /// a character outside the alphabet or a failed check is `unknown-setup-key` with a
    /// message that says which.
    pub fn parse(text: &str) -> Result<SetupKey, ApiError> {
        let chars: Vec<u8> = text
            .bytes()
            .filter(|c| !matches!(c, b'-' | b' ' | b'\t'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let refuse = |why: String| {
            ApiError::with_details(
                ErrorCode::UnknownSetupKey,
                format!("`{}` is not a setup key: {why}", text.trim()),
                serde_json::json!({ "setup_key": text.trim(), "reason": why }),
            )
        };
        if chars.len() != DATA_LEN + 1 {
            return Err(refuse(format!(
                "it has {} characters; a setup key has 25, written XXXXX-XXXXX-XXXXX-XXXXX-XXXXX",
                chars.len()
            )));
        }
        let mut values = Vec::with_capacity(chars.len());
        for (i, c) in chars.iter().enumerate() {
            match ALPHABET.iter().position(|a| a == c) {
                Some(v) => values.push(v),
                None => {
                    return Err(refuse(format!(
                        "character {} (`{}`) never appears in setup keys (they use only {}); check for a look-alike such as 0/O or 1/I",
                        i + 1,
                        char::from(*c),
                        String::from_utf8_lossy(ALPHABET)
                    )));
                }
            }
        }
        let (data, check) = values.split_at(DATA_LEN);
        if check.first() != Some(&check_digit(data)) {
            return Err(refuse(
                "its check character does not match, so a character is mistyped; compare it with the key in the vendor's documentation".to_string(),
            ));
        }
        Ok(SetupKey(group(&chars)))
    }
}

impl std::fmt::Display for SetupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn group(chars: &[u8]) -> String {
    chars
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// Luhn mod N check character over `data` (values 0..N).
fn check_digit(data: &[usize]) -> usize {
    let mut factor = 2;
    let mut sum = 0;
    for &v in data.iter().rev() {
        let addend = factor * v;
        sum += addend / N + addend % N;
        factor = if factor == 2 { 1 } else { 2 };
    }
    (N - sum % N) % N
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_parse_and_normalise() {
        let key = SetupKey::generate([3; 24]);
        assert_eq!(key.as_str().len(), 29);
        let lower = key.as_str().to_lowercase().replace('-', " ");
        assert_eq!(SetupKey::parse(&lower).unwrap(), key);
    }

    #[test]
    fn wrong_length_and_alphabet_are_explained() {
        let e = SetupKey::parse("ABC").unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownSetupKey);
        assert!(e.message.contains("25"));
        let e = SetupKey::parse("00000-00000-00000-00000-00000").unwrap_err();
        assert!(e.message.contains("character 1"));
    }

    proptest! {
        #[test]
        fn any_single_substitution_is_caught(seed in proptest::array::uniform24(any::<u8>()), pos in 0usize..25, delta in 1usize..24) {
            let key = SetupKey::generate(seed);
            let mut chars: Vec<u8> = key.as_str().bytes().filter(|c| *c != b'-').collect();
            // Positive control: the key written exactly this way parses, so the refusal
            // below is the typo's doing and not the form's.
            prop_assert_eq!(SetupKey::parse(std::str::from_utf8(&chars).unwrap()).unwrap(), key.clone());
            let v = ALPHABET.iter().position(|a| *a == chars[pos]).unwrap();
            chars[pos] = ALPHABET[(v + delta) % N];
            let typo = String::from_utf8(chars).unwrap();
            let err = SetupKey::parse(&typo).unwrap_err();
            prop_assert_eq!(err.code, ErrorCode::UnknownSetupKey);
        }

        #[test]
        fn adjacent_swaps_are_caught(seed in proptest::array::uniform24(any::<u8>()), pos in 0usize..24) {
            let key = SetupKey::generate(seed);
            let mut chars: Vec<u8> = key.as_str().bytes().filter(|c| *c != b'-').collect();
            prop_assert_eq!(SetupKey::parse(std::str::from_utf8(&chars).unwrap()).unwrap(), key.clone());
            prop_assume!(chars[pos] != chars[pos + 1]);
            // Luhn mod N's one blind spot: the first and last characters of the alphabet.
            let pair = [chars[pos], chars[pos + 1]];
            prop_assume!(pair != [b'B', b'9'] && pair != [b'9', b'B']);
            chars.swap(pos, pos + 1);
            let typo = String::from_utf8(chars).unwrap();
            prop_assert!(SetupKey::parse(&typo).is_err());
        }

        #[test]
        fn generated_keys_parse_in_every_written_form(seed in proptest::array::uniform24(any::<u8>()), sep in prop::sample::select(vec!["-", " ", "", "\t", " - "])) {
            let key = SetupKey::generate(seed);
            prop_assert_eq!(key.as_str().len(), 29);
            prop_assert_eq!(SetupKey::parse(key.as_str()).unwrap(), key.clone());
            let groups: Vec<&str> = key.as_str().split('-').collect();
            prop_assert_eq!(groups.len(), 5);
            let written = groups.join(sep).to_lowercase();
            prop_assert_eq!(SetupKey::parse(&written).unwrap(), key.clone());
            let json = serde_json::to_string(&key).unwrap();
            prop_assert_eq!(serde_json::from_str::<SetupKey>(&json).unwrap(), key);
        }

        #[test]
        fn parse_never_panics(text in ".{0,64}") {
            let _ = SetupKey::parse(&text);
        }
    }
}
