//! Three stages run side by side, so none waits for another's turn to be polled: prepare (a chunk
//! of work at a time, ahead of the sends), send (several at once, unordered, so one slow send never
//! holds back the next), and record (whatever answers are in, together). Plumbing only: what each
//! stage does is the caller's.

use std::future::Future;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

/// How far ahead and how wide each stage runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stages {
    /// How many prepared units wait for a send, and sent ones for their recording, at most.
    pub queued: usize,
    /// How many sends run at once.
    pub send_at_once: usize,
    /// How many sent units one recording takes at most (as many as are in).
    pub record_at_once: usize,
}

/// Runs `prepare` on each chunk in turn, `send` on each unit it yields, and `record` on the sent
/// units as they come; returns everything `record` returned, in the order recorded.
pub(super) async fn run<C, U, S, D, Prep, PrepFut, Send, SendFut, Rec, RecFut>(
    chunks: Vec<C>,
    prepare: Prep,
    send: Send,
    mut record: Rec,
    stages: Stages,
) -> Vec<D>
where
    Prep: Fn(C) -> PrepFut,
    PrepFut: Future<Output = Vec<U>>,
    Send: Fn(U) -> SendFut,
    SendFut: Future<Output = S>,
    Rec: FnMut(Vec<S>) -> RecFut,
    RecFut: Future<Output = Vec<D>>,
{
    let queued = stages.queued.max(1);
    let (mut to_send, prepared) = mpsc::channel::<U>(queued);
    let (mut to_record, answered) = mpsc::channel::<S>(queued);
    let mut done = Vec::new();
    let prepare_stage = async move {
        for chunk in chunks {
            for unit in prepare(chunk).await {
                // The receiver lives until every unit is through.
                let _ = to_send.send(unit).await;
            }
        }
    };
    let send_stage = async move {
        let mut sent = prepared.map(send).buffer_unordered(stages.send_at_once.max(1));
        while let Some(unit) = sent.next().await {
            let _ = to_record.send(unit).await;
        }
    };
    let record_stage = async {
        let mut batches = answered.ready_chunks(stages.record_at_once.max(1));
        while let Some(batch) = batches.next().await {
            done.extend(record(batch).await);
        }
    };
    futures::join!(prepare_stage, send_stage, record_stage);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_unit_is_prepared_sent_and_recorded_once() {
        let chunks: Vec<Vec<u32>> = (0..10).map(|c| (c * 7..c * 7 + 7).collect()).collect();
        let mut recorded = run(
            chunks,
            |chunk| async move { chunk },
            |n| async move {
                // Later units finish first, so sends come back out of order.
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(70 - n) % 5)).await;
                n * 10
            },
            |batch| async move { batch },
            Stages {
                queued: 3,
                send_at_once: 4,
                record_at_once: 5,
            },
        )
        .await;
        recorded.sort_unstable();
        assert_eq!(recorded, (0..70).map(|n| n * 10).collect::<Vec<_>>());
    }
}
