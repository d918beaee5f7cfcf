//! The not-found memory: a "does not exist" answer from the sources is remembered for a short
//! time (`cache.not_found`), so a build that asks 200 times for a missing module or version costs
//! one upstream request, not 200. The go command makes many such requests on purpose: it probes
//! every path prefix of an import path (`github.com/a/b/c`, `github.com/a/b`, ...).
//!
//! Remembered per storage key and per process: replicas each ask once. After the time has passed
//! the next request asks again, so a version published meanwhile is found within that time.
//! Bounded in entries, so random paths cannot make it grow without limit.

use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use crate::error::CoreError;

/// Most answers remembered at once; the least used are forgotten first.
const CAPACITY: usize = 50_000;

pub(super) struct Absent {
    ttl: Duration,
    answers: Option<Cache<String, (Instant, CoreError)>>,
}

impl Absent {
    /// A memory keeping answers for `ttl`; zero remembers nothing.
    pub(super) fn new(ttl: Duration) -> Absent {
        Absent {
            ttl,
            answers: (!ttl.is_zero()).then(|| Cache::new(CAPACITY)),
        }
    }

    /// The remembered "not found" for `key`, while it is recent.
    pub(super) fn get(&self, key: &str) -> Option<CoreError> {
        let answers = self.answers.as_ref()?;
        match answers.get(key) {
            Some((at, err)) if at.elapsed() < self.ttl => Some(err),
            Some(_) => {
                answers.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers `outcome` for `key` when it is a "not found"; forgets an older one otherwise
    /// (the thing exists now).
    pub(super) fn note<T>(&self, key: &str, outcome: &Result<T, CoreError>) {
        let Some(answers) = &self.answers else {
            return;
        };
        match outcome {
            Err(err) if err.is_not_found() => {
                answers.insert(key.to_owned(), (Instant::now(), err.clone()))
            }
            _ => {
                answers.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Subject;

    fn not_found() -> CoreError {
        let m = agora_gomod::module::ModulePath::new("example.com/m").unwrap();
        CoreError::not_found(Subject::Module(m), "no such module")
    }

    #[test]
    fn remembers_not_found_for_its_time_only() {
        let memory = Absent::new(Duration::from_millis(50));
        memory.note::<()>("k", &Err(not_found()));
        assert!(memory.get("k").is_some_and(|e| e.is_not_found()));
        std::thread::sleep(Duration::from_millis(60));
        assert!(memory.get("k").is_none(), "asked again after the time");
    }

    #[test]
    fn other_failures_and_successes_are_not_remembered() {
        let memory = Absent::new(Duration::from_secs(60));
        memory.note::<()>("k", &Err(CoreError::Internal("x".into())));
        assert!(memory.get("k").is_none());
        memory.note::<()>("k", &Err(not_found()));
        memory.note("k", &Ok(()));
        assert!(memory.get("k").is_none(), "found since: forgotten");
    }

    #[test]
    fn zero_disables_it() {
        let memory = Absent::new(Duration::ZERO);
        memory.note::<()>("k", &Err(not_found()));
        assert!(memory.get("k").is_none());
    }
}
