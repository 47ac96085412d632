//! What operators see of the engine (issue 16 item 4): a trigger's logs, the adapter's own
//! included, carry the payout id, the attempt's key and the provider. Alone in its test binary:
//! a thread-local subscriber shares tracing's callsite cache with every other test's threads.

use std::io::Write;
use std::sync::{Arc, Mutex};

use payout_core::domain::{Actor, Provider};

mod common;
use common::gated::{GatedProvider, approved_payouts};

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The log lines that contain `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

// A current-thread runtime: the capturing subscriber is this thread's default.
#[tokio::test]
async fn a_triggers_logs_carry_the_payout_its_attempt_key_and_the_provider() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let provider = Arc::new(GatedProvider::new(usize::MAX >> 4));
    let (service, _store, ids) = approved_payouts(3, provider, 4).await;
    let admin = Actor::admin("triggerer");
    service.trigger(&admin, &ids[0], Provider::MpesaB2c).await.unwrap();
    let bulk = service.bulk_trigger(&admin, &ids[1..], Provider::MpesaB2c).await;
    assert!(bulk.iter().all(|o| o.result.is_ok()), "{bulk:?}");

    let log = captured.text();
    for id in &ids {
        let key = format!("{id}-1");
        // The adapter's own line, and the engine's line about the answer, each carry all three.
        for message in ["adapter: sending to the provider", "provider answered"] {
            let lines = lines_with(&log, message);
            let line = lines
                .iter()
                .find(|l| l.contains(&format!("payout_id={id}")))
                .unwrap_or_else(|| panic!("no {message:?} line for {id}:\n{log}"));
            assert!(line.contains(&format!("attempt_key={key}")), "{line}");
            assert!(line.contains("provider=MPESA_B2C"), "{line}");
        }
    }
    // The single trigger's own span carries the key once the attempt is committed.
    let triggered = lines_with(&log, ": triggered status=PAID");
    assert_eq!(triggered.len(), 1, "{log}");
    assert!(
        triggered[0].contains(&format!(
            "trigger{{payout_id={} provider=MPESA_B2C attempt_key={}-1}}",
            ids[0], ids[0]
        )),
        "{}",
        triggered[0]
    );
    // The bulk trigger's span names its provider and size.
    let done = lines_with(&log, "bulk trigger done");
    assert_eq!(done.len(), 1, "{log}");
    assert!(
        done[0].contains("bulk_trigger{provider=MPESA_B2C payouts=2}"),
        "{}",
        done[0]
    );
}
