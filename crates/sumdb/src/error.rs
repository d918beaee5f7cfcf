//! [`SumdbError`]: why a module version could not be verified. Each variant means one thing to a
//! client: not in the database (404), cannot ask it now (retry), our bytes differ from what it
//! recorded, or the database itself misbehaved.

/// Why verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SumdbError {
    /// The database does not know `module@version` (its lookup answered 404 or 410). The go
    /// command refuses such a version too.
    #[error("{module}@{version}: not found in checksum database {db}: {detail}")]
    NotFound {
        db: String,
        module: String,
        version: String,
        detail: String,
    },
    /// The database could not be asked (network, 5xx, time-out); nothing is wrong with the
    /// module, try again later.
    #[error("checksum database {db} unavailable: {detail}")]
    Unavailable { db: String, detail: String },
    /// The bytes agora has differ from what the database recorded for them.
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    /// The database answered something that cannot be true: a bad signature, a malformed
    /// answer, a proof that does not hold, or a tree head inconsistent with one verified before
    /// (a fork of the log).
    #[error("checksum database {db}: SECURITY ERROR: {detail}")]
    Security { db: String, detail: String },
}

/// A hash that differs from the database's record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{module}@{version}{file}: checksum mismatch\n\tdownloaded: {ours}\n\t{db}: {recorded}\n\n\
     SECURITY ERROR\nThis download does NOT match the one reported by the checksum server.\n\
     The bits may have been replaced on the origin server, or an attacker may\n\
     have intercepted the download attempt."
)]
pub struct Mismatch {
    pub db: String,
    pub module: String,
    pub version: String,
    /// `""` for the zip, `"/go.mod"` for the go.mod file.
    pub file: &'static str,
    pub ours: String,
    pub recorded: String,
}

impl SumdbError {
    /// Whether the database misbehaved (as opposed to not knowing a version, or being away).
    pub fn is_security(&self) -> bool {
        matches!(
            self,
            SumdbError::Security { .. } | SumdbError::Mismatch { .. }
        )
    }
}
