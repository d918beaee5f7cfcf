//! The last failures agora answered (sources, checksums, storage), kept in memory for the status
//! page to group by cause: what fails, how often lately, and the latest words of each. Bounded;
//! per process; never holds credentials (error messages are already redacted where they are
//! made).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::{CoreError, Subject};

/// Failures kept.
const CAPACITY: usize = 256;

/// One failed answer.
#[derive(Clone, Debug)]
pub struct Failure {
    pub at: SystemTime,
    pub cause: &'static str,
    pub hint: &'static str,
    pub message: String,
    /// What `agora doctor` takes to check it again (`module@version` or `module`), when the
    /// failure was about a module.
    pub target: Option<String>,
}

/// Failures of one cause, as the status page shows them.
#[derive(Clone, Debug)]
pub struct FailureGroup {
    pub cause: &'static str,
    pub hint: &'static str,
    pub count: usize,
    /// The most recent one.
    pub last: Failure,
}

#[derive(Default)]
pub struct FailureLog {
    recent: Mutex<VecDeque<Failure>>,
}

impl FailureLog {
    /// Keeps `err` if it is a failure (see [`CoreError::failure_cause`]).
    pub fn note(&self, err: &CoreError) {
        let Some((cause, hint)) = err.failure_cause() else {
            return;
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == CAPACITY {
            recent.pop_front();
        }
        recent.push_back(Failure {
            at: SystemTime::now(),
            cause,
            hint,
            message: err.to_string(),
            target: err.subject().and_then(doctor_target),
        });
    }

    /// The kept failures by cause, most frequent first.
    pub fn groups(&self) -> Vec<FailureGroup> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let mut groups: Vec<FailureGroup> = Vec::new();
        for f in recent.iter() {
            match groups.iter_mut().find(|g| g.cause == f.cause) {
                Some(g) => {
                    g.count += 1;
                    g.last = f.clone();
                }
                None => groups.push(FailureGroup {
                    cause: f.cause,
                    hint: f.hint,
                    count: 1,
                    last: f.clone(),
                }),
            }
        }
        groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.cause.cmp(b.cause)));
        groups
    }
}

/// `subject` as `agora doctor` names it; checksum-database paths are not modules.
fn doctor_target(subject: &Subject) -> Option<String> {
    match subject {
        Subject::Module(m) => Some(m.to_string()),
        Subject::Version { module, version } => Some(format!("{module}@{version}")),
        Subject::Sumdb { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_gomod::module::ModulePath;

    #[test]
    fn failures_are_grouped_and_answers_that_are_not_failures_ignored() {
        let log = FailureLog::default();
        let subject = Subject::Module(ModulePath::new("example.com/m").unwrap());
        log.note(&CoreError::Git {
            subject: subject.clone(),
            message: "one".into(),
        });
        log.note(&CoreError::Git {
            subject: subject.clone(),
            message: "two".into(),
        });
        log.note(&CoreError::Internal("bug".into()));
        log.note(&CoreError::NotCached(subject));
        let groups = log.groups();
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].cause, groups[0].count), ("git", 2));
        assert!(groups[0].last.message.contains("two"));
        assert_eq!(groups[0].last.target.as_deref(), Some("example.com/m"));
        assert_eq!(groups[1].cause, "internal");
        assert_eq!(groups[1].last.target, None);
    }
}
