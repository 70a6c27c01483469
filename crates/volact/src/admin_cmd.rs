//! `volact host clients | events | revoke | unrevoke`: administration of a running host
//! through its admin API, with the token from the data directory or `--token-file`.

use crate::output::Output;
use crate::table::{csv, line, table, widths};
use clap::Args;
use jiff::Timestamp;
use std::path::PathBuf;
use std::time::Duration;
use volact_client::admin::AdminClient;
use volact_engine::data::HostData;
use volact_proto::admin::{ClientList, ClientQuery, ClientRow, EventList, EventQuery, EventRow};
use volact_proto::{ApiError, DEFAULT_PORT, ErrorCode};

/// How often `events --follow` asks for new events.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Where the host is and how to authenticate.
#[derive(Debug, Args)]
pub struct Connection {
    /// The host's data directory: its admin token, and where it serves.
    #[arg(long, env = "VOLACT_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The host's URL [default: where the host of --data serves, else http://127.0.0.1:7688].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the admin token [default: DATA/admin.token].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// For an https:// URL: trust exactly the certificate with this SHA-256 fingerprint
    /// (what `volact host init` printed) [default: from DATA/serving.json on the host
    /// machine].
    #[arg(long, env = "VOLACT_TLS_FINGERPRINT", value_name = "SHA256")]
    pub tls_fingerprint: Option<String>,
    /// For an https:// URL: trust certificates issued by the CAs in this PEM file.
    #[arg(long, value_name = "PEM", conflicts_with = "tls_fingerprint")]
    pub ca_file: Option<PathBuf>,
}

/// `volact host clients`.
#[derive(Debug, Args)]
pub struct ClientsArgs {
    #[command(flatten)]
    conn: Connection,
    /// Only clients of this application (count group).
    #[arg(long, value_name = "A")]
    application: Option<String>,
    /// Only clients of this product.
    #[arg(long, value_name = "P")]
    product: Option<String>,
    /// Only active (counted within the window), stale or revoked clients.
    #[arg(long, value_name = "active|stale|revoked", value_parser = ["active", "stale", "revoked"])]
    state: Option<String>,
    /// Only clients whose id, machine name or address contains TEXT.
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// Print CSV instead of a table.
    #[arg(long)]
    csv: bool,
    /// At most N clients, most recently seen first.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    limit: u32,
}

/// `volact host events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    conn: Connection,
    /// From TIME: 2026-01-31, 2026-01-31T12:00:00Z, or a duration ago such as 24h or 7d.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only this client id.
    #[arg(long, value_name = "ID")]
    client: Option<String>,
    /// Only this result code (e.g. activated, count-insufficient, clock-skew, cloned-image).
    #[arg(long, value_name = "CODE")]
    result: Option<String>,
    /// Keep printing new events as they arrive, until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
    /// At most the latest N events.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    limit: u32,
}

/// `volact host revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    conn: Connection,
    /// Why, for the inventory.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// The client id.
    client_id: String,
}

/// `volact host unrevoke`.
#[derive(Debug, Args)]
pub struct UnrevokeArgs {
    #[command(flatten)]
    conn: Connection,
    /// The client id.
    client_id: String,
}

/// The admin client that `conn` describes: the token from `--token-file` or the data
/// directory, the URL and TLS trust from the flags or, on the host machine, serving.json.
fn connect(conn: &Connection) -> Result<AdminClient, ApiError> {
    let data = conn.data.as_ref().map(HostData::new);
    let token = match (&conn.token_file, &data) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidState,
                    format!("cannot read the admin token file {}: {e}", path.display()),
                )
            })?;
            text.trim().to_string()
        }
        (None, Some(data)) => data.admin_token()?,
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                "no admin token: give --data DIR (the host's data directory, which holds admin.token) or --token-file FILE",
            ));
        }
    };
    // On the host machine, serving.json says where it serves and, with TLS, which
    // certificate it presents: TLS is preferred, pinned to that certificate.
    let serving = data.as_ref().and_then(|d| d.serving());
    let url = conn
        .url
        .clone()
        .or_else(|| {
            serving
                .as_ref()
                .map(|s| s.tls_url.clone().unwrap_or_else(|| s.url.clone()))
        })
        .unwrap_or_else(|| format!("http://127.0.0.1:{DEFAULT_PORT}"));
    // The URL itself is checked by the admin client.
    let fingerprint = conn.tls_fingerprint.clone().or_else(|| {
        if conn.ca_file.is_some() {
            return None;
        }
        serving.and_then(|s| s.tls_fingerprint)
    });
    let trust =
        volact_client::tls::TlsTrust::from_flags(fingerprint.as_deref(), conn.ca_file.as_deref())?;
    let serve_hint = match &conn.data {
        Some(d) => format!("volact host serve --data {}", d.display()),
        None => "volact host serve --data DIR".to_string(),
    };
    Ok(AdminClient::new(&url, &token, &trust)?.with_serve_hint(serve_hint))
}

fn when(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
}

/// Runs `volact host clients`.
/// The status of the host serving from `data`, asked of the host itself, or `None` when
/// no host serves there (or it does not answer). A serving host applies activations to
/// its database in the background, so only it knows the last fraction of a second.
pub async fn live_status(data: &std::path::Path) -> Option<volact_engine::status::HostStatus> {
    let host = HostData::new(data);
    host.serving()?;
    let conn = Connection {
        data: Some(data.to_path_buf()),
        url: None,
        token_file: None,
        tls_fingerprint: None,
        ca_file: None,
    };
    let client = connect(&conn).ok()?;
    client.status().await.ok()
}

pub async fn clients(args: ClientsArgs, out: Output) -> Result<(), ApiError> {
    if args.csv && out.json {
        return Err(ApiError::bad_request(
            "csv",
            "choose --csv or --json, not both",
        ));
    }
    let admin = connect(&args.conn)?;
    let query = ClientQuery {
        application: args.application,
        product: args.product,
        state: args.state,
        search: args.search,
        limit: Some(args.limit),
    };
    let list = admin.clients(&query).await?;
    if args.csv {
        print!("{}", clients_csv(&list.clients));
        return Ok(());
    }
    out.result(&list, || clients_text(&list));
    Ok(())
}

const CLIENT_CSV_HEADERS: [&str; 16] = [
    "client_id",
    "machine_name",
    "address",
    "product",
    "application",
    "state",
    "in_count_window",
    "cloned",
    "first_seen",
    "last_seen",
    "last_counted",
    "last_result",
    "last_count",
    "requests",
    "ticket_valid_until",
    "revoked_reason",
];

fn clients_csv(clients: &[ClientRow]) -> String {
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|c| {
            vec![
                c.client_id.clone(),
                c.machine_name.clone(),
                c.address.clone(),
                c.product.clone(),
                c.application.clone(),
                c.state.as_str().to_string(),
                c.in_count_window.to_string(),
                c.cloned.to_string(),
                c.first_seen.to_string(),
                c.last_seen.to_string(),
                c.last_counted.map(|t| t.to_string()).unwrap_or_default(),
                c.last_result.clone(),
                c.last_count.to_string(),
                c.requests.to_string(),
                c.ticket_valid_until
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                c.revoked_reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    csv(&CLIENT_CSV_HEADERS, &rows)
}

fn clients_text(list: &ClientList) -> String {
    if list.clients.is_empty() {
        return "No clients match.\n".into();
    }
    let headers = [
        "CLIENT ID",
        "MACHINE",
        "ADDRESS",
        "PRODUCT",
        "STATE",
        "IN WINDOW",
        "FIRST SEEN",
        "LAST SEEN",
        "LAST RESULT",
        "TICKET EXPIRES",
        "CLONED",
    ];
    let rows: Vec<Vec<String>> = list
        .clients
        .iter()
        .map(|c| {
            vec![
                c.client_id.clone(),
                c.machine_name.clone(),
                c.address.clone(),
                c.product.clone(),
                c.state.as_str().to_string(),
                if c.in_count_window { "yes" } else { "no" }.to_string(),
                c.first_seen.to_string(),
                c.last_seen.to_string(),
                c.last_result.clone(),
                when(c.ticket_valid_until),
                if c.cloned { "yes" } else { "" }.to_string(),
            ]
        })
        .collect();
    let count = |s: &str| {
        list.clients
            .iter()
            .filter(|c| c.state.as_str() == s)
            .count()
    };
    let mut text = table(&headers, &rows);
    text.push_str(&format!(
        "\n{} clients: {} active, {} stale, {} revoked{}\n",
        list.clients.len(),
        count("active"),
        count("stale"),
        count("revoked"),
        if list.truncated {
            " (more match: narrow the filters or raise --limit)"
        } else {
            ""
        }
    ));
    text
}

const EVENT_HEADERS: [&str; 9] = [
    "ID",
    "TIME",
    "CLIENT ID",
    "MACHINE",
    "ADDRESS",
    "PRODUCT",
    "MIN",
    "COUNT",
    "RESULT",
];

fn event_row(e: &EventRow) -> Vec<String> {
    vec![
        e.id.to_string(),
        e.at.to_string(),
        e.client_id.clone(),
        e.machine_name.clone(),
        e.address.clone(),
        if e.product.is_empty() {
            "-".into()
        } else {
            e.product.clone()
        },
        e.minimum_asked.to_string(),
        e.count.to_string(),
        e.result.clone(),
    ]
}

/// Runs `volact host events`.
pub async fn events(args: EventsArgs, out: Output) -> Result<(), ApiError> {
    let admin = connect(&args.conn)?;
    let filters = EventQuery {
        since: args.since.clone(),
        client: args.client.clone(),
        result: args.result.clone(),
        ..EventQuery::default()
    };
    let mut list = admin
        .events(&EventQuery {
            limit: Some(args.limit),
            ..filters.clone()
        })
        .await?;
    if !args.follow {
        // JSON keeps the API's order (newest first); people read a log oldest first.
        out.result(&list, || {
            let mut oldest_first = list.clone();
            oldest_first.events.reverse();
            events_text(&oldest_first)
        });
        return Ok(());
    }
    // Following: oldest first, one event per line (JSON lines with --json).
    list.events.reverse();
    let rows: Vec<Vec<String>> = list.events.iter().map(event_row).collect();
    let widths = follow_widths(&rows);
    let print = |events: &[EventRow]| {
        for e in events {
            if out.json {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            } else {
                println!("{}", line(&event_row(e), &widths));
            }
        }
    };
    if !out.json {
        println!("{}", line(&EVENT_HEADERS.map(String::from), &widths));
    }
    print(&list.events);
    let mut last_id = list.last_id.unwrap_or(0);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        let page = admin
            .events(&EventQuery {
                after_id: Some(last_id),
                limit: Some(10_000),
                ..filters.clone()
            })
            .await?;
        print(&page.events);
        last_id = page.last_id.unwrap_or(last_id);
    }
}

fn events_text(list: &EventList) -> String {
    if list.events.is_empty() {
        return "No events match.\n".into();
    }
    let rows: Vec<Vec<String>> = list.events.iter().map(event_row).collect();
    let mut text = table(&EVENT_HEADERS, &rows);
    if list.truncated {
        text.push_str("\n(older events match too: narrow with --since or raise --limit)\n");
    }
    text
}

/// Column widths for following: at least what the first rows need, and room for the
/// usual widths of later ones.
fn follow_widths(rows: &[Vec<String>]) -> Vec<usize> {
    let minimum = [6, 20, 36, 15, 15, 20, 3, 5, 0];
    let mut widths = widths(&EVENT_HEADERS, rows);
    for (w, m) in widths.iter_mut().zip(minimum) {
        *w = (*w).max(m);
    }
    widths
}

/// Runs `volact host revoke`.
pub async fn revoke(args: RevokeArgs, out: Output) -> Result<(), ApiError> {
    let admin = connect(&args.conn)?;
    let id = args.client_id.trim();
    let answer = admin.revoke(id, args.reason.as_deref()).await?;
    out.result(&answer, || {
        let c = &answer.client;
        format!(
            "Client {} ({}) revoked{}.\nIt no longer counts and its renewals are refused with client-revoked; {} now counts {}.\nUndo with: volact host unrevoke {}\n",
            c.client_id,
            c.machine_name,
            c.revoked_reason
                .as_deref()
                .map(|r| format!(" (reason: {r})"))
                .unwrap_or_default(),
            c.application,
            answer.application_count,
            c.client_id
        )
    });
    Ok(())
}

/// Runs `volact host unrevoke`.
pub async fn unrevoke(args: UnrevokeArgs, out: Output) -> Result<(), ApiError> {
    let admin = connect(&args.conn)?;
    let id = args.client_id.trim();
    let answer = admin.unrevoke(id).await?;
    out.result(&answer, || {
        let c = &answer.client;
        format!(
            "Client {} ({}) is no longer revoked; it counts again from its next request.\n",
            c.client_id, c.machine_name
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_widths_leave_room_for_later_rows() {
        let w = follow_widths(&[]);
        assert_eq!(w[2], 36, "a whole client id");
        assert_eq!(w.len(), EVENT_HEADERS.len());
    }
}
