//! The outbox event as a receiver reads it: `payout_core::events::PayoutEvent` (and `StoredEvent`,
//! the events API's item) through serde_json, and `payout_core::events::signature::verify` on
//! arbitrary `Payouts-Signature` headers and bodies.
//!
//! The first byte chooses a mode:
//! - `0`: the rest is a JSON body. An accepted event serializes and reads back to itself, and its
//!   JSON is stable (serializing the re-read event gives the same bytes); the same for `StoredEvent`
//!   (with its `cursor`). The same bytes as an `EventCursor` (`{commit}-{seq}`, the events API's
//!   `after`): one that parses prints as text that parses back to it.
//! - `1`: the rest is `<header>\n<body>`, checked with a known secret at a fixed `now`. No panic;
//!   when it verifies, some `t` and `v1` of the header are a timestamp within the tolerance and the
//!   HMAC-SHA256 of `t.body` computed here independently of `verify`.
//! - `2`: the next 8 bytes are a timestamp, the rest a body, signed with the known secret. It verifies
//!   at that time; it is refused as expired more than the tolerance away, either way; it is refused as
//!   a mismatch with another secret, with a byte of the body changed, with a byte appended, and
//!   with its timestamp moved by one second.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use payout_core::events::signature::{SignatureError, sign, verify};
use payout_core::events::{EventCursor, PayoutEvent, StoredEvent};
use payouts_fuzz::mode;
use sha2::Sha256;

const SECRET: &[u8] = b"whsec_fuzz";
const NOW: i64 = 1_765_000_000;
const TOLERANCE: i64 = 300;

fn json_round_trip(body: &[u8]) {
    if let Ok(event) = serde_json::from_slice::<PayoutEvent>(body) {
        let json = serde_json::to_vec(&event).expect("an event serializes");
        let again: PayoutEvent = serde_json::from_slice(&json).expect("its own JSON reads back");
        assert_eq!(again, event, "{}", String::from_utf8_lossy(&json));
        assert_eq!(serde_json::to_vec(&again).unwrap(), json, "stable JSON");
    }
    if let Ok(stored) = serde_json::from_slice::<StoredEvent>(body) {
        let json = serde_json::to_vec(&stored).expect("a stored event serializes");
        let again: StoredEvent = serde_json::from_slice(&json).expect("its own JSON reads back");
        assert_eq!(again, stored, "{}", String::from_utf8_lossy(&json));
    }
    // An events page's `after`: a cursor that parses prints as text that parses back to it.
    if let Some(cursor) = std::str::from_utf8(body)
        .ok()
        .and_then(|t| t.parse::<EventCursor>().ok())
    {
        assert_eq!(cursor.to_string().parse::<EventCursor>(), Ok(cursor));
        assert!(body.len() <= 41, "a cursor is at most two 20-digit numbers and a dash");
    }
}

/// Whether some `t=` and some `v1=` of `header` make a valid signature of `body`, computed
/// without `verify`.
fn some_pair_signs(header: &str, body: &[u8]) -> bool {
    let parts: Vec<(&str, &str)> = header.split(',').filter_map(|p| p.trim().split_once('=')).collect();
    let times: Vec<i64> = parts
        .iter()
        .filter(|(k, _)| *k == "t")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let tags: Vec<Vec<u8>> = parts
        .iter()
        .filter(|(k, _)| *k == "v1")
        .filter_map(|(_, v)| hex::decode(v).ok())
        .collect();
    times.iter().any(|t| {
        if NOW.abs_diff(*t) > TOLERANCE as u64 {
            return false;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        tags.iter().any(|v| v.as_slice() == tag.as_slice())
    })
}

fuzz_target!(|data: &[u8]| {
    let rest = data.get(1..).unwrap_or_default();
    match mode(data, 3) {
        0 => json_round_trip(rest),
        1 => {
            let (head, body) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            let Ok(header) = std::str::from_utf8(head) else { return };
            if verify(SECRET, header, body, NOW, TOLERANCE).is_ok() {
                assert!(some_pair_signs(header, body), "{header:?} verified");
            }
            json_round_trip(body);
        }
        _ => {
            let Some((t, body)) = rest.split_first_chunk::<8>() else {
                return;
            };
            let t = i64::from_le_bytes(*t);
            let header = sign(SECRET, t, body);
            assert_eq!(verify(SECRET, &header, body, t, TOLERANCE), Ok(()));
            for now in [t.checked_add(TOLERANCE + 1), t.checked_sub(TOLERANCE + 1)]
                .into_iter()
                .flatten()
            {
                assert_eq!(
                    verify(SECRET, &header, body, now, TOLERANCE),
                    Err(SignatureError::Expired)
                );
            }
            assert_eq!(
                verify(b"another secret", &header, body, t, TOLERANCE),
                Err(SignatureError::Mismatch)
            );
            let mut longer = body.to_vec();
            longer.push(b' ');
            assert_eq!(
                verify(SECRET, &header, &longer, t, TOLERANCE),
                Err(SignatureError::Mismatch)
            );
            if let Some(first) = body.first() {
                let mut changed = body.to_vec();
                changed[usize::from(*first) % body.len()] ^= 1;
                assert_eq!(
                    verify(SECRET, &header, &changed, t, TOLERANCE),
                    Err(SignatureError::Mismatch)
                );
            }
            if let Some(moved) = t.checked_add(1) {
                let tag = header.split_once(",v1=").map(|(_, v)| v).unwrap();
                let forged = format!("t={moved},v1={tag}");
                assert_eq!(
                    verify(SECRET, &forged, body, t, TOLERANCE),
                    Err(SignatureError::Mismatch)
                );
            }
        }
    }
});
