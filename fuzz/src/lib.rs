//! Helpers shared by the fuzz targets: one runtime, and a readable input format for HTTP-shaped inputs.
//!
//! The webhook and router targets read their input as a small HTTP-like message, so the seeds in
//! `corpus/` are readable and libFuzzer's mutations keep their shape:
//!
//! ```text
//! <first line>            a mode digit (webhook targets) or "METHOD /path?query" (router)
//! name: value             header lines
//! name: value
//!                         an empty line
//! body bytes...
//! ```

use std::future::Future;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Runs a future to completion on a process-wide current-thread runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
    .block_on(f)
}

/// An input split into its first line, its header lines and its body.
pub struct Message<'a> {
    /// The first line.
    pub first: &'a str,
    /// `name: value` pairs in order (lines without a colon are dropped).
    pub headers: Vec<(&'a str, &'a str)>,
    /// Everything after the first empty line.
    pub body: &'a [u8],
}

/// Splits `data` as described in the crate docs; `None` when the head is not UTF-8.
pub fn message(data: &[u8]) -> Option<Message<'_>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &data[data.len()..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let first = lines.next().unwrap_or("");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim_start()))
        .collect();
    Some(Message { first, headers, body })
}

/// A header map of the pairs that are valid HTTP headers (the others could not arrive over HTTP).
pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            map.append(k, v);
        }
    }
    map
}

/// The mode a webhook input selects: its first byte modulo `modes` (so the digits `0`.. in a seed's
/// first line select modes 0.. for `modes` dividing 48).
pub fn mode(data: &[u8], modes: u8) -> u8 {
    data.first().copied().unwrap_or(0) % modes
}
