//! One DNS exchange over UDP: a query, or an RFC 2136 update signed with TSIG, and the
//! check of the server's answer (its id, its source, and its TSIG signature).

use super::config::SrvRecord;
use hickory_proto::op::update_message::UpdateMessage;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigVerifier, TSigner};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long the server may take to answer one message.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an exchange failed, in words for the log and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// No answer: nothing listens, or it timed out.
    NoAnswer(String),
    /// The server answered with an error code.
    Rcode {
        /// The code, e.g. `NOTAUTH`.
        rcode: String,
        /// The TSIG error the server reported, e.g. `BADSIG`.
        tsig: Option<String>,
    },
    /// The answer was not acceptable (unsigned, badly signed, garbled).
    BadAnswer(String),
    /// The message could not be built.
    Local(String),
}

/// A name in absolute form (`name.`).
pub fn fqdn(name: &str) -> Result<Name, WireError> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| WireError::Local(format!("`{name}` is not a DNS name: {e}")))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sends `message` to `server` and returns its answer. With a signer, the message is
/// signed and a successful answer must carry a valid signature with the same key, so a
/// forged "NOERROR" cannot make the host believe it is published.
pub async fn exchange(
    server: SocketAddr,
    mut message: Message,
    signer: Option<&TSigner>,
) -> Result<Message, WireError> {
    let mut verifier = match signer {
        Some(s) => message
            .finalize(s, unix_now())
            .map_err(|e| WireError::Local(format!("cannot sign the update: {e}")))?,
        None => None,
    };
    let bytes = message
        .to_vec()
        .map_err(|e| WireError::Local(format!("cannot encode the message: {e}")))?;
    let local: SocketAddr = match server.ip() {
        IpAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        IpAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let no_answer = |e: std::io::Error| {
        WireError::NoAnswer(format!("the DNS server {server} did not answer ({e})"))
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(no_answer)?;
    // A connected socket only receives from the server, and learns of "port unreachable"
    // at once instead of waiting for the timeout.
    socket.connect(server).await.map_err(no_answer)?;
    socket.send(&bytes).await.map_err(no_answer)?;
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    let mut buf = vec![0u8; 65_535];
    // Bounded: each turn waits until the deadline at most, and stray datagrams are few.
    for _ in 0..32 {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(left, socket.recv(&mut buf)).await {
            Err(_) => {
                return Err(WireError::NoAnswer(format!(
                    "the DNS server {server} did not answer within {} s",
                    EXCHANGE_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(no_answer(e)),
            Ok(Ok(n)) => n,
        };
        if let Some(answer) = read_answer(&buf[..n], message.metadata.id, verifier.as_mut()) {
            return answer;
        }
    }
    Err(WireError::BadAnswer(format!(
        "the DNS server {server} sent only answers that do not match the request"
    )))
}

/// What one datagram received from the server means for a request with id `id`: `None`
/// when it is not the answer (garbled, or another id: a stray or a forgery to ignore),
/// else the answer or why it fails. With a `verifier`, a successful answer must carry a
/// valid TSIG signature. Public so the fuzz targets reach the parser of server input.
pub fn read_answer(
    answer_bytes: &[u8],
    id: u16,
    verifier: Option<&mut TSigVerifier>,
) -> Option<Result<Message, WireError>> {
    let Ok(answer) = Message::from_vec(answer_bytes) else {
        return None;
    };
    if answer.metadata.id != id {
        return None;
    }
    if answer.metadata.response_code != ResponseCode::NoError {
        return Some(Err(WireError::Rcode {
            rcode: mnemonic(answer.metadata.response_code),
            tsig: answer
                .signature()
                .and_then(|s| s.data.error)
                .map(|e| format!("{e:?}").to_uppercase()),
        }));
    }
    if let Some(v) = verifier
        && let Err(e) = v.verify(answer_bytes)
    {
        return Some(Err(WireError::BadAnswer(format!(
            "the server's answer is not signed with the TSIG key ({e}); it may not be the server the key belongs to"
        ))));
    }
    Some(Ok(answer))
}

/// The RFC mnemonic of a response code (`NOTAUTH`, `REFUSED`…), as BIND logs it.
pub fn mnemonic(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// A plain query (no recursion) for `name`/`kind`.
pub fn query(name: &Name, kind: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(name.clone(), kind));
    m
}

/// An empty update of `zone`.
pub fn update(zone: &Name) -> Message {
    let mut m = Message::query();
    m.metadata.op_code = OpCode::Update;
    m.metadata.recursion_desired = false;
    let mut z = Query::new();
    z.set_name(zone.clone())
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    m.add_zone(z);
    m
}

/// The SRV record of `r`, in class IN with its TTL.
pub fn srv_record(r: &SrvRecord) -> Result<Record, WireError> {
    Ok(Record::from_rdata(
        fqdn(&r.owner())?,
        r.ttl,
        RData::SRV(SRV::new(r.priority, r.weight, r.port, fqdn(&r.name)?)),
    ))
}

/// The SRV record of `r`'s TLS listener under `_volact-tls._tcp`, if it has one.
pub fn tls_srv_record(r: &SrvRecord) -> Result<Option<Record>, WireError> {
    let Some(port) = r.tls_port else {
        return Ok(None);
    };
    Ok(Some(Record::from_rdata(
        fqdn(&r.tls_owner())?,
        r.ttl,
        RData::SRV(SRV::new(r.priority, r.weight, port, fqdn(&r.name)?)),
    )))
}

/// The address record of `r`, if it has one.
pub fn address_record(r: &SrvRecord) -> Result<Option<Record>, WireError> {
    let Some(ip) = r.address else {
        return Ok(None);
    };
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Ok(Some(Record::from_rdata(fqdn(&r.name)?, r.ttl, data)))
}

/// `record` as an RFC 2136 "delete this RR" entry: class NONE, TTL 0.
pub fn deletion(mut record: Record) -> Record {
    record.dns_class = DNSClass::NONE;
    record.ttl = 0;
    record
}

/// "Delete the whole RRset `name`/`kind`": class ANY, TTL 0, no data.
pub fn rrset_deletion(name: &Name, kind: RecordType) -> Record {
    let mut r = Record::update0(name.clone(), 0, kind);
    r.dns_class = DNSClass::ANY;
    r
}
