//! `agora doctor`'s verdict for each group of recent failures on the status page.
//!
//! Doctor tries each step of a fetch for real, so it is not run per failure: when an admin opens
//! the status page, each failure cause whose verdict is missing, stale ([`FRESH`]) or about an
//! older failed target gets one doctor run for its latest failure, in the background, one at a time
//! per cause. The page shows the verdict once it is there (or that it is being checked). Nothing
//! runs while nobody looks, and an outage's many failures cost one run per cause and period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use agora_core::failures::FailureGroup;

use super::Doctor;

/// How long a verdict stands before the next look at the page checks again.
pub(crate) const FRESH: Duration = Duration::from_secs(600);

/// A verdict, or a run under way.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    Running {
        target: String,
    },
    Done {
        target: String,
        at: SystemTime,
        ok: bool,
        report: String,
    },
}

/// The verdicts by failure cause.
#[derive(Debug, Default)]
pub struct Verdicts {
    by_cause: Mutex<HashMap<&'static str, Verdict>>,
}

impl Verdicts {
    /// Starts the doctor runs `groups` need (see the module docs) and answers the verdicts
    /// known now, by cause.
    pub(crate) fn refresh(
        self: &Arc<Self>,
        groups: &[FailureGroup],
        doctor: Option<&Doctor>,
    ) -> HashMap<&'static str, Verdict> {
        let mut by_cause = self.by_cause.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Doctor(run)) = doctor {
            for g in groups {
                let Some(target) = &g.last.target else {
                    continue;
                };
                let due = match by_cause.get(g.cause) {
                    None => true,
                    Some(Verdict::Running { .. }) => false,
                    Some(Verdict::Done {
                        at, target: seen, ..
                    }) => {
                        let age = SystemTime::now().duration_since(*at).unwrap_or_default();
                        age >= FRESH || (seen != target && g.last.at > *at)
                    }
                };
                if !due {
                    continue;
                }
                by_cause.insert(
                    g.cause,
                    Verdict::Running {
                        target: target.clone(),
                    },
                );
                let (this, run, cause, target) =
                    (self.clone(), run.clone(), g.cause, target.clone());
                tokio::spawn(async move {
                    tracing::info!(cause, target = %target, "running doctor for a failure on the status page");
                    let (ok, report) = run(target.clone()).await;
                    this.by_cause
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(
                            cause,
                            Verdict::Done {
                                target,
                                at: SystemTime::now(),
                                ok,
                                report,
                            },
                        );
                });
            }
        }
        by_cause
            .iter()
            .filter(|(cause, _)| groups.iter().any(|g| g.cause == **cause))
            .map(|(c, v)| (*c, v.clone()))
            .collect()
    }
}
