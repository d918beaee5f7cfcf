//! How each source has been doing lately, seen from the fetches agora made (no probes of its own):
//! per upstream proxy, per git host and per checksum database, how many requests it answered
//! (a "not found" is an answer) and how many failed, when it last answered, its last failure and
//! how long its answers took. For the status page; per process, bounded, and never on the path of
//! a cache hit.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Sources remembered; the least recently heard of is forgotten first.
const CAPACITY: usize = 64;

/// Longest failure message kept.
const MAX_MESSAGE: usize = 400;

/// One source's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceStats {
    /// `upstream`, `git` or `checksum database`.
    pub kind: &'static str,
    pub answered: u64,
    pub failed: u64,
    pub last_answer: Option<SystemTime>,
    pub last_failure: Option<(SystemTime, String)>,
    /// Time spent in answered requests, for [`SourceStats::mean_latency`].
    answering: Duration,
    last_heard: Option<SystemTime>,
}

impl SourceStats {
    fn new(kind: &'static str) -> Self {
        SourceStats {
            kind,
            answered: 0,
            failed: 0,
            last_answer: None,
            last_failure: None,
            answering: Duration::ZERO,
            last_heard: None,
        }
    }

    /// Mean time of the answered requests.
    pub fn mean_latency(&self) -> Option<Duration> {
        (self.answered > 0).then(|| self.answering / self.answered.min(u32::MAX as u64) as u32)
    }

    /// Whether the most recent request failed.
    pub fn failing(&self) -> bool {
        match (&self.last_failure, self.last_answer) {
            (Some((failed_at, _)), Some(answered_at)) => *failed_at > answered_at,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// What one request to a source came to.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// An answer, "not found" included.
    Answered(Duration),
    /// The source failed (error, timeout, refused credentials, an invalid answer).
    Failed(&'a str),
}

#[derive(Debug, Default)]
pub struct SourceHealth {
    sources: Mutex<BTreeMap<String, SourceStats>>,
}

impl SourceHealth {
    /// Records one request to the source `name` of `kind`.
    pub fn note(&self, name: &str, kind: &'static str, outcome: Outcome<'_>) {
        let now = SystemTime::now();
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if !sources.contains_key(name) && sources.len() >= CAPACITY {
            let oldest = sources
                .iter()
                .min_by_key(|(_, s)| s.last_heard)
                .map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                sources.remove(&oldest);
            }
        }
        let stats = sources
            .entry(name.to_owned())
            .or_insert_with(|| SourceStats::new(kind));
        stats.last_heard = Some(now);
        match outcome {
            Outcome::Answered(took) => {
                stats.answered += 1;
                stats.answering += took;
                stats.last_answer = Some(now);
            }
            Outcome::Failed(message) => {
                stats.failed += 1;
                let mut message = message.to_owned();
                if message.len() > MAX_MESSAGE {
                    let mut end = MAX_MESSAGE;
                    while !message.is_char_boundary(end) {
                        end -= 1;
                    }
                    message.truncate(end);
                    message.push('…');
                }
                stats.last_failure = Some((now, message));
            }
        }
    }

    /// Every source heard of, by name.
    pub fn snapshot(&self) -> Vec<(String, SourceStats)> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_failures_are_counted_per_source() {
        let health = SourceHealth::default();
        health.note(
            "https://proxy.golang.org",
            "upstream",
            Outcome::Answered(Duration::from_millis(30)),
        );
        health.note(
            "https://proxy.golang.org",
            "upstream",
            Outcome::Answered(Duration::from_millis(10)),
        );
        health.note("gitlab.corp.example", "git", Outcome::Failed("auth"));
        let all = health.snapshot();
        assert_eq!(all.len(), 2);
        let (name, git) = &all[0];
        assert_eq!(name, "gitlab.corp.example");
        assert_eq!((git.answered, git.failed), (0, 1));
        assert!(git.failing());
        assert_eq!(git.mean_latency(), None);
        let (_, up) = &all[1];
        assert_eq!((up.answered, up.failed), (2, 0));
        assert!(!up.failing());
        assert_eq!(up.mean_latency(), Some(Duration::from_millis(20)));

        std::thread::sleep(Duration::from_millis(2));
        health.note(
            "gitlab.corp.example",
            "git",
            Outcome::Answered(Duration::from_millis(5)),
        );
        assert!(!health.snapshot()[0].1.failing(), "recovered");
    }

    #[test]
    fn the_record_is_bounded() {
        let health = SourceHealth::default();
        for i in 0..CAPACITY + 10 {
            health.note(
                &format!("git host{i}"),
                "git",
                Outcome::Failed(&"x".repeat(5000)),
            );
        }
        let all = health.snapshot();
        assert_eq!(all.len(), CAPACITY);
        let (_, s) = &all[0];
        assert!(s.last_failure.as_ref().unwrap().1.len() <= MAX_MESSAGE + '…'.len_utf8());
    }
}
