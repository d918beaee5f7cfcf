//! [`VcsSource`]: answering for a module straight from its git repository (agora-vcs), with no Go
//! toolchain. Used for private-module patterns and for `direct` entries of the upstream chain.

use std::path::Path;
use std::sync::Arc;

use agora_gomod::module::ModulePath;
use agora_vcs::{Origin, RevInfo, Vcs};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::source::{Source, SourceError, SourceKind, ZipWritten};

pub struct VcsSource {
    vcs: Arc<Vcs>,
}

impl VcsSource {
    pub fn new(vcs: Arc<Vcs>) -> Self {
        VcsSource { vcs }
    }

    async fn repo(&self, module: &ModulePath) -> Result<agora_vcs::CodeRepo, SourceError> {
        Ok(self.vcs.code_repo(module.as_str()).await?)
    }
}

/// An `.info` body: `{"Version":…,"Time":…,"Origin":{…}}`, the go command's field names and order
/// (go: `modfetch.RevInfo`, `codehost.Origin`). Clients that do not know `Origin` (or one of its
/// fields) ignore it, as Go's JSON decoding does.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InfoJson {
    version: String,
    time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<OriginJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OriginJson {
    #[serde(rename = "VCS", default, skip_serializing_if = "String::is_empty")]
    vcs: String,
    #[serde(rename = "URL", default, skip_serializing_if = "String::is_empty")]
    url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    subdir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    hash: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    tag_prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    tag_sum: String,
    #[serde(rename = "Ref", default, skip_serializing_if = "String::is_empty")]
    reference: String,
}

impl From<&Origin> for OriginJson {
    fn from(o: &Origin) -> Self {
        OriginJson {
            vcs: o.vcs.clone(),
            url: o.url.clone(),
            subdir: o.subdir.clone(),
            hash: o.hash.clone(),
            tag_prefix: o.tag_prefix.clone(),
            tag_sum: o.tag_sum.clone(),
            reference: o.reference.clone(),
        }
    }
}

impl From<OriginJson> for Origin {
    fn from(o: OriginJson) -> Self {
        Origin {
            vcs: o.vcs,
            url: o.url,
            subdir: o.subdir,
            hash: o.hash,
            tag_prefix: o.tag_prefix,
            tag_sum: o.tag_sum,
            reference: o.reference,
        }
    }
}

/// The `.info` JSON for `rev`, with its full origin: the answer to a query (`latest`, a branch,
/// a commit).
pub fn info_json(rev: &RevInfo) -> Bytes {
    write_info(&rev.version, rev.time_rfc3339(), rev.origin.as_ref())
}

/// The `.info` JSON for `rev` as cached for its version: the origin of the version itself
/// ([`Origin::for_version`]), since a cached `.info` is served for every later request.
pub fn version_info_json(rev: &RevInfo) -> Bytes {
    let origin = rev.origin.as_ref().map(|o| o.for_version(&rev.version));
    write_info(&rev.version, rev.time_rfc3339(), origin.as_ref())
}

/// [`version_info_json`] from a query's `.info` body (as [`info_json`] wrote it) that resolved
/// to `version`.
fn version_info_from(body: Bytes, version: &str) -> Bytes {
    match serde_json::from_slice::<InfoJson>(&body) {
        Ok(info) if info.version == version => {
            let origin = info.origin.map(|o| Origin::from(o).for_version(version));
            write_info(version, info.time, origin.as_ref())
        }
        _ => body,
    }
}

fn write_info(version: &str, time: String, origin: Option<&Origin>) -> Bytes {
    let info = InfoJson {
        version: version.to_owned(),
        time,
        origin: origin.map(OriginJson::from),
    };
    Bytes::from(serde_json::to_vec(&info).expect("an info serializes"))
}

#[async_trait]
impl Source for VcsSource {
    fn describe(&self) -> String {
        "direct".into()
    }

    fn kind(&self) -> SourceKind {
        SourceKind::Git
    }

    async fn list(&self, module: &ModulePath) -> Result<Bytes, SourceError> {
        let repo = self.repo(module).await?;
        let versions = repo.versions().await?;
        let mut out = String::new();
        for v in versions {
            out.push_str(&v);
            out.push('\n');
        }
        Ok(Bytes::from(out))
    }

    async fn latest(&self, module: &ModulePath) -> Result<Bytes, SourceError> {
        let repo = self.repo(module).await?;
        Ok(info_json(&repo.latest().await?))
    }

    async fn info(&self, module: &ModulePath, query: &str) -> Result<Bytes, SourceError> {
        let repo = self.repo(module).await?;
        let rev = repo.stat(query).await?;
        // A version's own `.info` is cached for good: give it the version's origin.
        Ok(if rev.version == query {
            version_info_json(&rev)
        } else {
            info_json(&rev)
        })
    }

    fn info_for_version(&self, body: Bytes, version: &str) -> Bytes {
        version_info_from(body, version)
    }

    async fn go_mod(&self, module: &ModulePath, version: &str) -> Result<Bytes, SourceError> {
        let repo = self.repo(module).await?;
        let rev = repo.stat(version).await?;
        let body = repo.go_mod_at(&rev.hash, version).await?;
        Ok(Bytes::from(body))
    }

    async fn zip(
        &self,
        module: &ModulePath,
        version: &str,
        dest: &Path,
    ) -> Result<ZipWritten, SourceError> {
        let repo = self.repo(module).await?;
        let info = repo.zip(version, dest).await?;
        Ok(ZipWritten {
            size: info.size,
            h1: Some(info.h1),
        })
    }

    async fn repository(
        &self,
        module: &ModulePath,
        network: bool,
    ) -> Result<Option<String>, SourceError> {
        Ok(self.vcs.repository(module.as_str(), network).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoreError;
    use agora_vcs::GitFailure;

    /// The go command's field names and order; empty fields left out; a branch's answer cached
    /// for its version names the version's tag instead of the branch, without the tag list.
    #[test]
    fn info_has_the_go_commands_origin_and_caches_the_versions() {
        let rev = RevInfo {
            version: "v1.2.0".into(),
            hash: "abc".into(),
            short: "abc".into(),
            time: 1_704_164_645,
            origin: Some(Origin {
                vcs: "git".into(),
                url: "https://h/team/mono.git".into(),
                subdir: "go".into(),
                hash: "abc".into(),
                tag_prefix: "go/".into(),
                tag_sum: "t1:x".into(),
                reference: "refs/heads/main".into(),
            }),
        };
        let full = info_json(&rev);
        assert_eq!(
            std::str::from_utf8(&full).unwrap(),
            r#"{"Version":"v1.2.0","Time":"2024-01-02T03:04:05Z","Origin":{"VCS":"git","URL":"https://h/team/mono.git","Subdir":"go","Hash":"abc","TagPrefix":"go/","TagSum":"t1:x","Ref":"refs/heads/main"}}"#
        );
        let version = r#"{"Version":"v1.2.0","Time":"2024-01-02T03:04:05Z","Origin":{"VCS":"git","URL":"https://h/team/mono.git","Subdir":"go","Hash":"abc","Ref":"refs/tags/go/v1.2.0"}}"#;
        assert_eq!(
            std::str::from_utf8(&version_info_json(&rev)).unwrap(),
            version
        );
        assert_eq!(
            std::str::from_utf8(&version_info_from(full, "v1.2.0")).unwrap(),
            version
        );
        let bare = RevInfo {
            origin: None,
            ..rev
        };
        assert_eq!(
            std::str::from_utf8(&info_json(&bare)).unwrap(),
            r#"{"Version":"v1.2.0","Time":"2024-01-02T03:04:05Z"}"#
        );
    }

    fn subject() -> crate::Subject {
        crate::Subject::version(&ModulePath::new("example.com/m").unwrap(), "v1.0.0")
    }

    /// Regression: a full local disk during git work answered 502 "upstream git failed"; it is
    /// a storage failure (503, generic body, counted as a storage error).
    #[test]
    fn a_full_local_disk_under_git_is_a_storage_error() {
        let full = agora_vcs::Error::Git {
            command: "git fetch".into(),
            kind: GitFailure::LocalStorage,
            stderr: "fatal: write error: No space left on device".into(),
        };
        let io = agora_vcs::Error::Io {
            path: "/data/_agora/mirrors/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        for err in [full, io] {
            let core = CoreError::from_source(&subject(), err.into());
            assert!(matches!(core, CoreError::Storage(_)), "{core:?}");
        }
        let other = agora_vcs::Error::Git {
            command: "git fetch".into(),
            kind: GitFailure::Other,
            stderr: "fatal: bad object".into(),
        };
        let core = CoreError::from_source(&subject(), other.into());
        assert!(matches!(core, CoreError::Git { .. }), "{core:?}");
        assert_eq!(
            core.to_string(),
            "example.com/m@v1.0.0: upstream git failed: unexpected git failure (the details are in agora's log)"
        );
    }
}
