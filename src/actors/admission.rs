//! Telling an ingress when an alert is durably accepted.
//!
//! An ingress answers "accepted" (HTTP 202, the library's [`crate::Engine::try_accept`]) only
//! once the alert row is committed. The supervisor signals that moment on a oneshot; a second
//! submission of the same alert joining one in flight (a twin) is told when the first one's row
//! is committed.

use tokio::sync::{oneshot, watch};

use crate::domain::decision::Decision;
use crate::error::TriageError;

/// Signals `admitted`, if anyone waits for it.
pub(crate) fn notify(admitted: Option<oneshot::Sender<()>>) {
    if let Some(tx) = admitted {
        let _ = tx.send(());
    }
}

/// Forwards the pipeline's admission signal (`from`) to the in-flight entry (`twins`, which
/// twin submissions watch) and to the submitter (`to`). Ends when the signal is given or its
/// sender is dropped (the alert was not admitted).
pub(crate) async fn relay(
    from: oneshot::Receiver<()>,
    twins: watch::Sender<bool>,
    to: Option<oneshot::Sender<()>>,
) {
    if from.await.is_ok() {
        twins.send_replace(true);
        notify(to);
    }
}

/// A twin submission: told "admitted" when the first submission's row is committed, then
/// shares its result.
pub(crate) async fn join_twin(
    mut result: oneshot::Receiver<Result<Decision, TriageError>>,
    mut first_admitted: watch::Receiver<bool>,
    admitted: Option<oneshot::Sender<()>>,
) -> Result<Decision, TriageError> {
    let dropped = || {
        Err(TriageError::Unavailable(
            "twin submission was dropped".into(),
        ))
    };
    if let Some(tx) = admitted {
        tokio::select! {
            ok = first_admitted.wait_for(|a| *a) => {
                if ok.is_ok() {
                    let _ = tx.send(());
                }
            }
            r = &mut result => return r.unwrap_or_else(|_| dropped()),
        }
    }
    result.await.unwrap_or_else(|_| dropped())
}
