//! What the load tool sends: the activation request of a given client, written straight
//! into reusable buffers.
//!
//! Every request differs only in the client id, the client time, the nonce and the
//! machine name, so the rest is serialized once into a [`Template`] and each request is
//! assembled from it, numbers included, without going through `fmt` or serde: on the
//! tool's hot path that is several times cheaper, and the tests check that the bytes are
//! exactly what serde writes for the wire type the host parses.

use super::refuse;
use crate::fleet::Rng;
use jiff::Timestamp;
use volact_proto::ApiError;

/// The `i`-th client id of a run: derived, not stored, so a million clients cost nothing.
pub fn client_id(seed: u64, i: u64) -> String {
    client_uuid(seed, i).hyphenated().to_string()
}

pub(super) fn client_uuid(seed: u64, i: u64) -> uuid::Uuid {
    let mut rng = Rng::new(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.uuid()
}

/// The nonce of a connection's `seq`-th request: unique per run without any shared state.
pub(super) fn nonce(task: u32, seq: u64) -> String {
    format!("b{task:04x}n{seq:012x}")
}

/// The parts of every request that do not change, serialized once.
pub(super) struct Template {
    /// Seed of the client ids.
    pub(super) seed: u64,
    /// The minimum count every request asks for, which a verified ticket must reach.
    pub(super) minimum_count: u32,
    /// The request head up to the `Content-Length` value.
    head: Vec<u8>,
    /// The body between the client id and the client time: setup key and minimum count.
    after_id: Vec<u8>,
}

impl Template {
    pub(super) fn new(
        seed: u64,
        authority: &str,
        setup_key: &str,
        minimum_count: u32,
    ) -> Result<Template, ApiError> {
        let setup_key = serde_json::to_string(setup_key).map_err(|e| refuse(e.to_string()))?;
        Ok(Template {
            seed,
            minimum_count,
            head: format!(
                "POST /v1/activations HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\ncontent-length: "
            )
            .into_bytes(),
            after_id: format!(
                r#"","setup_key":{setup_key},"minimum_count":{minimum_count},"client_time":"#
            )
            .into_bytes(),
        })
    }

    /// Writes the whole request of client `i` into `request`, the connection's `seq`-th;
    /// `body` is scratch space. Both keep their allocations from one request to the next.
    pub(super) fn write(
        &self,
        request: &mut Vec<u8>,
        body: &mut Vec<u8>,
        client_time: &[u8],
        i: u64,
        task: u32,
        seq: u64,
    ) {
        self.write_body(body, client_time, i, task, seq);
        request.clear();
        request.extend_from_slice(&self.head);
        push_decimal(request, u64::try_from(body.len()).unwrap_or(u64::MAX));
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
    }

    /// Writes the JSON of an `ActivationRequest` (same fields, same order, same bytes as
    /// serde's) into `body`.
    fn write_body(&self, body: &mut Vec<u8>, client_time: &[u8], i: u64, task: u32, seq: u64) {
        let mut id = uuid::Uuid::encode_buffer();
        body.clear();
        body.extend_from_slice(br#"{"client_id":""#);
        body.extend_from_slice(
            client_uuid(self.seed, i)
                .hyphenated()
                .encode_lower(&mut id)
                .as_bytes(),
        );
        body.extend_from_slice(&self.after_id);
        body.extend_from_slice(client_time);
        // The nonce as `nonce()` writes it, without going through `fmt`.
        body.extend_from_slice(br#","nonce":"b"#);
        push_hex(body, u64::from(task), 4);
        body.push(b'n');
        push_hex(body, seq, 12);
        body.extend_from_slice(br#"","machine_name":"bench-"#);
        push_decimal(body, i);
        body.extend_from_slice(br#""}"#);
    }
}

/// Appends `v` in decimal; `fmt` costs several times more, on every request.
fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10).to_le_bytes()[0];
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `v` in lower-case hex, zero-padded to at least `width` digits (at most 16).
fn push_hex(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut digits = [b'0'; 16];
    let mut at = digits.len();
    while v != 0 {
        at -= 1;
        digits[at] = b"0123456789abcdef"[usize::from((v & 0xF).to_le_bytes()[0])];
        v >>= 4;
    }
    out.extend_from_slice(&digits[at.min(digits.len().saturating_sub(width))..]);
}

/// The client time as the request carries it, re-serialized only when the second changes.
#[derive(Default)]
pub(super) struct WallClock {
    second: Option<i64>,
    json: Vec<u8>,
}

impl WallClock {
    pub(super) fn json(&mut self) -> &[u8] {
        let now = volact_engine::whole_seconds(Timestamp::now());
        if self.second != Some(now.as_second()) {
            self.json.clear();
            // Serialized by serde, like the rest of the protocol, so the host reads the
            // very format it expects.
            if serde_json::to_writer(&mut self.json, &now).is_ok() {
                self.second = Some(now.as_second());
            }
        }
        &self.json
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use volact_proto::ActivationRequest;

    #[test]
    fn client_ids_are_stable_and_distinct() {
        assert_eq!(client_id(1, 5), client_id(1, 5));
        assert_ne!(client_id(1, 5), client_id(1, 6));
        assert!(uuid::Uuid::parse_str(&client_id(0, 0)).is_ok());
    }

    #[test]
    fn numbers_are_written_like_fmt() {
        for v in [0, 1, 9, 10, 15, 16, 255, 4096, 65_535, 1 << 40, u64::MAX] {
            let (mut dec, mut hex4, mut hex12) = (Vec::new(), Vec::new(), Vec::new());
            push_decimal(&mut dec, v);
            push_hex(&mut hex4, v, 4);
            push_hex(&mut hex12, v, 12);
            assert_eq!(dec, format!("{v}").into_bytes());
            assert_eq!(hex4, format!("{v:04x}").into_bytes());
            assert_eq!(hex12, format!("{v:012x}").into_bytes());
        }
    }

    /// The hand-written body must be exactly what serde writes for the wire type the host
    /// parses.
    #[test]
    fn body_is_the_serde_request() {
        let time = Timestamp::from_second(1_790_000_000).unwrap();
        let time_json = serde_json::to_vec(&time).unwrap();
        for (seed, key, minimum, i, task, seq) in [
            (0, "3M9JF-MD3QD-XP2FM-MFCFQ-KQR2W", 1, 0, 0, 0),
            (7, "a \"quoted\" \\ key é\n", 0, 9_999, 63, 1),
            (u64::MAX, "K", u32::MAX, u64::MAX, u32::MAX, u64::MAX),
            (3, "K", 5, 1 << 33, 0x1_2345, 0xABC_DEF0_1234),
        ] {
            let template = Template::new(seed, "127.0.0.1:7688", key, minimum).unwrap();
            let mut body = Vec::new();
            template.write_body(&mut body, &time_json, i, task, seq);
            let expected = serde_json::to_vec(&ActivationRequest {
                client_id: client_id(seed, i),
                setup_key: key.into(),
                minimum_count: minimum,
                client_time: time,
                nonce: nonce(task, seq),
                machine_name: format!("bench-{i}"),
                ticket_id: None,
                machine_fingerprint: None,
                previous_client_id: None,
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(body).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    #[test]
    fn request_is_one_http_post() {
        let template = Template::new(1, "127.0.0.1:7688", "K", 1).unwrap();
        let (mut request, mut body) = (Vec::new(), Vec::new());
        template.write(
            &mut request,
            &mut body,
            b"\"2026-01-01T00:00:00Z\"",
            4,
            2,
            3,
        );
        let text = String::from_utf8(request).unwrap();
        let (head, sent) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            format!(
                "POST /v1/activations HTTP/1.1\r\nhost: 127.0.0.1:7688\r\ncontent-type: application/json\r\ncontent-length: {}",
                sent.len()
            )
        );
        let parsed: ActivationRequest = serde_json::from_str(sent).unwrap();
        assert_eq!(parsed.machine_name, "bench-4");
        assert_eq!(parsed.nonce, nonce(2, 3));
    }
}
