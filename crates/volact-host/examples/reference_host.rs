//! The yardstick of docs/PERFORMANCE.md: the least an activation server can do, measured
//! on the same machine as the host so the host's figures can be read as a ratio.
//!
//! It is the "minimal axum handler" of the performance targets: it parses the request's
//! JSON, notes the client in an in-memory map and signs an Ed25519 ticket (a PASETO
//! v4.public token of the same claims as a real ticket). It keeps nothing on disk, counts
//! nothing, checks nothing, and answers `{"result":"activated","ticket":"…"}`, which
//! `volact bench --verify-sample 0` tallies as activated. Not a host: never serve clients
//! with it.
//!
//! ```text
//! cargo run --release -p volact-host --example reference_host -- 127.0.0.1:7699 [--sign-only]
//! volact bench --url http://127.0.0.1:7699 --setup-key ANY --verify-sample 0
//! ```

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use volact_core::keys::KeyPair;
use volact_core::ticket::{Ticket, sign_ticket};
use volact_proto::{ActivationRequest, ApiError, ErrorCode};

struct Reference {
    key: KeyPair,
    host_id: String,
    seen: Mutex<HashMap<String, i64>>,
    sign_only: bool,
}

#[derive(serde::Serialize)]
struct Answer {
    result: &'static str,
    ticket: String,
}

fn failed(e: ApiError) -> (axum::http::StatusCode, String) {
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.message)
}

async fn activate(
    State(r): State<Arc<Reference>>,
    body: axum::body::Bytes,
) -> Result<Json<Answer>, (axum::http::StatusCode, String)> {
    let now = Timestamp::now();
    let (client_id, nonce, count) = if r.sign_only {
        (String::new(), String::new(), 1)
    } else {
        let req: ActivationRequest = serde_json::from_slice(&body).map_err(|e| {
            failed(ApiError::new(
                ErrorCode::BadRequest,
                format!("not an activation request: {e}"),
            ))
        })?;
        let count = {
            let mut seen = r
                .seen
                .lock()
                .map_err(|_| failed(ApiError::new(ErrorCode::Internal, "map lock poisoned")))?;
            seen.insert(req.client_id.clone(), now.as_second());
            u32::try_from(seen.len()).unwrap_or(u32::MAX)
        };
        (req.client_id, req.nonce, count)
    };
    let ticket = Ticket {
        jti: uuid::Uuid::new_v4().to_string(),
        sub: client_id,
        product: "demo-os-workstation".into(),
        application: "demo-os".into(),
        count,
        minimum: 25,
        iat: now,
        renew_after: now + SignedDuration::from_hours(7 * 24),
        exp: now + SignedDuration::from_hours(180 * 24),
        iss: r.host_id.clone(),
        nonce,
        intervals: None,
    };
    let ticket = sign_ticket(&r.key, &ticket).map_err(failed)?;
    Ok(Json(Answer {
        result: "activated",
        ticket,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:7699".into());
    let sign_only = args.any(|a| a == "--sign-only");
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
    let key = KeyPair::from_seed(seed)?;
    let host_id = key.public().host_id();
    let state = Arc::new(Reference {
        key,
        host_id,
        seen: Mutex::new(HashMap::new()),
        sign_only,
    });
    let app = Router::new()
        .route("/v1/activations", post(activate))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!(
        "reference server on http://{listen}{}",
        if sign_only { " (signing only)" } else { "" }
    );
    axum::serve(listener, app).await?;
    Ok(())
}
