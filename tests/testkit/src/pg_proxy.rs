//! A TCP proxy in front of the local PostgreSQL that meets armed faults at a connection's start,
//! as a PostgreSQL server (or the network) would: `too many clients` (53300) for throttling, an
//! internal error (XX000), `the database system is starting up` (57P03) for unavailable, a
//! refused password (28P01) for access denied, a server that accepts and never answers, and a
//! connection closed at once. Every connection is recorded as a call of `postgres connect`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::split::{Fault, Faults, Wait};

/// The operation name a connection is recorded (and faulted) under.
pub const CONNECT: &str = "postgres connect";

pub struct PostgresProxy {
    pub port: u16,
    faults: Arc<Mutex<Faults>>,
    waits: Arc<Mutex<Vec<Wait>>>,
}

impl PostgresProxy {
    /// A proxy on a free port of 127.0.0.1 in front of `upstream` (`host:port`).
    pub async fn start(upstream: String) -> PostgresProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("bound address").port();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let waits = Arc::new(Mutex::new(Vec::new()));
        let (armed, recorded) = (faults.clone(), waits.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let fault = armed.lock().unwrap().clone().take(CONNECT);
                let (upstream, recorded) = (upstream.clone(), recorded.clone());
                tokio::spawn(async move {
                    let start = Instant::now();
                    let status = serve(client, &upstream, fault).await;
                    recorded.lock().unwrap().push(Wait {
                        operation: CONNECT.into(),
                        status,
                        request: Bytes::new(),
                        start,
                        end: Instant::now(),
                    });
                });
            }
        });
        PostgresProxy {
            port,
            faults,
            waits,
        }
    }

    /// From now on connections may meet `faults` (shared with the world's other endpoints).
    pub fn share_faults(&self, faults: &Faults) {
        *self.faults.lock().unwrap() = faults.clone();
    }

    /// The connections so far (each a call of [`CONNECT`]; status 200 when passed through).
    pub fn waits(&self) -> Vec<Wait> {
        self.waits.lock().unwrap().clone()
    }
}

/// One connection: the fault, or a byte-for-byte relay to the server. The status recorded is
/// 200 for a relayed connection, else the fault's.
async fn serve(mut client: TcpStream, upstream: &str, fault: Option<Fault>) -> u16 {
    let Some(fault) = fault else {
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            return 502;
        };
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return 200;
    };
    let refusal = |code: &str, message: &str| error_response(code, message);
    let answer = match fault {
        Fault::Reset => return 0,
        Fault::Slow => {
            // Accepts, reads what comes, never answers.
            let mut sink = [0u8; 1024];
            let until = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
            while let Ok(Ok(n)) = tokio::time::timeout_at(until, client.read(&mut sink)).await {
                if n == 0 {
                    break;
                }
            }
            return 504;
        }
        Fault::Throttling => refusal("53300", "sorry, too many clients already"),
        Fault::InternalError => refusal("XX000", "internal error"),
        Fault::Unavailable => refusal("57P03", "the database system is starting up"),
        Fault::AccessDenied => refusal(
            "28P01",
            "password authentication failed for user \"postgres\"",
        ),
    };
    // The startup message first (length-prefixed), then the server's refusal, then the close.
    let mut length = [0u8; 4];
    if client.read_exact(&mut length).await.is_ok() {
        let mut rest = vec![0u8; (u32::from_be_bytes(length) as usize).saturating_sub(4)];
        let _ = client.read_exact(&mut rest).await;
    }
    let _ = client.write_all(&answer).await;
    let _ = client.shutdown().await;
    500
}

/// A FATAL `ErrorResponse` message of the PostgreSQL wire protocol.
fn error_response(code: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (kind, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(kind);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&u32::try_from(fields.len() + 4).unwrap().to_be_bytes());
    out.extend(fields);
    out
}
