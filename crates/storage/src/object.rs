//! What reads and writes of stored objects return: [`ObjectInfo`], [`Object`] and [`PutOutcome`],
//! shared by [`crate::store`] and the backends under it.

use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::BoxStream;

/// Metadata of a stored object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub size: u64,
    pub last_modified: SystemTime,
    pub e_tag: Option<String>,
}

/// A stored object opened for reading: metadata plus a body stream.
pub struct Object {
    pub info: ObjectInfo,
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

/// What a write-once put found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// Another writer stored the key first; its bytes are kept and ours dropped.
    AlreadyExists,
}

pub(crate) fn info_of(meta: &object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        size: meta.size,
        last_modified: SystemTime::from(meta.last_modified),
        e_tag: meta.e_tag.clone(),
    }
}
