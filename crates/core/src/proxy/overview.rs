//! What agora knows about one module, gathered for people (the web UI's module page): its cached
//! versions newest first with their times, hashes (the `go.sum` lines), origin and policy state
//! (quarantined, blocked by a filter rule, too young under a minimum release age, retracted),
//! and its latest version's go.mod (requirements, deprecation) and license. Read from the index
//! and storage only: nothing is fetched.

use std::io::Read;
use std::time::SystemTime;

use agora_gomod::gomodfile::{deprecation, GoMod};
use agora_gomod::module::ModulePath;
use agora_index::{latest_of, Origin, Quarantine};
use agora_storage::{ArtifactKind, StorageKey};

use super::Proxy;
use crate::error::CoreError;
use crate::policy::Route;

/// Largest zip read to find its license file.
const LICENSE_ZIP_MAX: u64 = 32 << 20;
/// Largest license file read.
const LICENSE_MAX: u64 = 256 << 10;

/// One module, as [`Proxy::overview`] sees it.
#[derive(Clone, Debug)]
pub struct Overview {
    pub module: ModulePath,
    /// Fetched from git (private) rather than through the upstream chain.
    pub private: bool,
    /// Newest first (semver order).
    pub versions: Vec<VersionView>,
    /// The go command's choice without a query, among the cached versions that may be served.
    pub latest: Option<String>,
    /// The latest version's go.mod, as stored.
    pub go_mod: Option<String>,
    /// Its `require` directives.
    pub requires: Vec<(String, String)>,
    /// Its `// Deprecated:` message.
    pub deprecated: Option<String>,
    /// Its license file, if its zip is stored.
    pub license: Option<License>,
    /// A filter rule refusing the whole module.
    pub blocked: Option<String>,
}

/// One cached version.
#[derive(Clone, Debug)]
pub struct VersionView {
    pub version: String,
    /// The `.info` time (the commit's or the upstream's).
    pub time: Option<SystemTime>,
    /// When agora first stored any of its artifacts.
    pub stored: Option<SystemTime>,
    pub zip_h1: Option<String>,
    pub mod_h1: Option<String>,
    pub origin: Origin,
    pub served: u64,
    /// Retracted by the latest version's go.mod.
    pub retracted: bool,
    pub quarantine: Option<Quarantine>,
    /// Refused by a filter rule: its reason.
    pub blocked: Option<String>,
    /// Held back by a minimum release age until then.
    pub too_new_until: Option<SystemTime>,
}

/// A license file of a module zip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct License {
    /// Its name in the zip, without the `module@version/` prefix.
    pub file: String,
    /// An SPDX identifier when the text is recognized, else `"unknown"`.
    pub kind: &'static str,
}

impl Proxy {
    /// What is cached of `module`; `None` when nothing is (or there is no index).
    pub async fn overview(&self, module: &ModulePath) -> Result<Option<Overview>, CoreError> {
        let Some(index) = self.inner.index.get() else {
            return Ok(None);
        };
        let rows = index
            .versions(module)
            .await
            .map_err(|e| CoreError::Internal(format!("{module}: {e}")))?;
        if rows.iter().all(|r| r.artifacts.is_empty()) {
            return Ok(None);
        }
        let filter = self.inner.policy.filter();
        let blocked = filter.check_module(module.as_str()).err().map(|b| b.0);
        let servable: Vec<&str> = rows
            .iter()
            .filter(|r| r.quarantine.is_none() && !r.artifacts.is_empty())
            .filter(|r| filter.check_version(module.as_str(), &r.version).is_ok())
            .map(|r| r.version.as_str())
            .collect();
        let latest = latest_of(servable.into_iter());
        let go_mod = match &latest {
            Some(v) => self
                .stored_bytes(&StorageKey::artifact(module, v, ArtifactKind::Mod))
                .await?
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
            None => None,
        };
        let parsed = go_mod
            .as_deref()
            .and_then(|t| GoMod::parse(t.as_bytes()).ok());
        let license = match &latest {
            Some(v) => self.license(module, v).await,
            None => None,
        };
        let private = self.inner.policy.route(module) == Route::Direct;
        let now = SystemTime::now();
        let mut versions = Vec::with_capacity(rows.len());
        for row in rows.into_iter().rev() {
            let time = self.version_time_cached(module, &row.version).await;
            let too_new_until = match (self.min_age(module, &row.version), time) {
                (Some(min), Some(t)) if t + min.age > now => Some(t + min.age),
                _ => None,
            };
            let zip = row.artifact(ArtifactKind::Zip);
            let first = row.artifacts.first();
            versions.push(VersionView {
                time,
                stored: row.first_stored,
                zip_h1: zip.and_then(|a| a.h1.clone()),
                mod_h1: row.artifact(ArtifactKind::Mod).and_then(|a| a.h1.clone()),
                origin: first.map(|a| a.origin.clone()).unwrap_or(Origin::Unknown),
                served: row.artifacts.iter().map(|a| a.served_count).sum(),
                retracted: parsed
                    .as_ref()
                    .is_some_and(|g| g.is_retracted(&row.version)),
                blocked: filter
                    .check_version(module.as_str(), &row.version)
                    .err()
                    .map(|b| b.0),
                quarantine: row.quarantine,
                too_new_until,
                version: row.version,
            });
        }
        Ok(Some(Overview {
            module: module.clone(),
            private,
            versions,
            latest,
            requires: parsed.map(|g| g.require).unwrap_or_default(),
            deprecated: go_mod.as_deref().and_then(|t| deprecation(t.as_bytes())),
            go_mod,
            license,
            blocked,
        }))
    }

    async fn stored_bytes(&self, key: &StorageKey) -> Result<Option<bytes::Bytes>, CoreError> {
        Ok(self.inner.storage.get_bytes(key).await?.map(|(b, _)| b))
    }

    /// The `.info` time of a cached version (none when its `.info` is not stored).
    async fn version_time_cached(&self, module: &ModulePath, version: &str) -> Option<SystemTime> {
        if let Some(t) = super::age::pseudo_time(version) {
            return Some(t);
        }
        let key = StorageKey::artifact(module, version, ArtifactKind::Info);
        let body = self.stored_bytes(&key).await.ok()??;
        super::age::info_time(&body)
    }

    /// The license file of a stored zip (read only when the zip is at most 32 MiB).
    async fn license(&self, module: &ModulePath, version: &str) -> Option<License> {
        let key = StorageKey::artifact(module, version, ArtifactKind::Zip);
        let info = self.inner.storage.head(&key).await.ok()??;
        if info.size > LICENSE_ZIP_MAX {
            return None;
        }
        let (zip, _) = self.inner.storage.get_bytes(&key).await.ok()??;
        let root = format!("{module}@{version}/");
        tokio::task::spawn_blocking(move || license_of(&zip, &root))
            .await
            .ok()
            .flatten()
    }
}

/// The license file at the root of a module zip (whose entries begin with `root`,
/// `module@version/`), and what it is.
fn license_of(zip: &[u8], root: &str) -> Option<License> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).ok()?;
    let mut names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    names.sort();
    let name = names.iter().find(|n| {
        let Some(rest) = n.strip_prefix(root) else {
            return false;
        };
        let upper = rest.to_ascii_uppercase();
        !rest.contains('/')
            && ["LICENSE", "LICENCE", "COPYING"]
                .iter()
                .any(|p| upper.starts_with(p))
    })?;
    let mut text = String::new();
    archive
        .by_name(name)
        .ok()?
        .take(LICENSE_MAX)
        .read_to_string(&mut text)
        .ok()?;
    Some(License {
        file: name.strip_prefix(root)?.to_owned(),
        kind: classify(&text),
    })
}

/// Recognizes the common licenses of Go modules by phrases of their texts.
fn classify(text: &str) -> &'static str {
    let t: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let has = |p: &str| t.contains(p);
    if has("Apache License") && has("Version 2.0") {
        "Apache-2.0"
    } else if has("Mozilla Public License Version 2.0")
        || has("Mozilla Public License, version 2.0")
    {
        "MPL-2.0"
    } else if has("GNU LESSER GENERAL PUBLIC LICENSE") {
        "LGPL"
    } else if has("GNU AFFERO GENERAL PUBLIC LICENSE") {
        "AGPL-3.0"
    } else if has("GNU GENERAL PUBLIC LICENSE") {
        "GPL"
    } else if has("Permission is hereby granted, free of charge") {
        "MIT"
    } else if has("Permission to use, copy, modify, and/or distribute this software") {
        "ISC"
    } else if has("Redistribution and use in source and binary forms") {
        if has("Neither the name") || has("may be used to endorse or promote") {
            "BSD-3-Clause"
        } else {
            "BSD-2-Clause"
        }
    } else if has("This is free and unencumbered software released into the public domain") {
        "Unlicense"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licenses_are_recognized_by_their_texts() {
        assert_eq!(
            classify(
                "MIT License\n\nPermission is hereby granted, free of\n charge, to any person"
            ),
            "MIT"
        );
        assert_eq!(
            classify("Apache License\n Version 2.0, January 2004"),
            "Apache-2.0"
        );
        assert_eq!(
            classify("Redistribution and use in source and binary forms ... Neither the name of"),
            "BSD-3-Clause"
        );
        assert_eq!(classify("All rights reserved."), "unknown");
    }

    #[test]
    fn the_license_file_is_found_at_the_zip_root() {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default();
            w.start_file("example.com/m@v1.0.0/sub/LICENSE", opts)
                .unwrap();
            w.write_all(b"not this one").unwrap();
            w.start_file("example.com/m@v1.0.0/LICENSE.md", opts)
                .unwrap();
            w.write_all(b"Permission is hereby granted, free of charge")
                .unwrap();
            w.finish().unwrap();
        }
        assert_eq!(
            license_of(buf.get_ref(), "example.com/m@v1.0.0/"),
            Some(License {
                file: "LICENSE.md".into(),
                kind: "MIT"
            })
        );
    }
}
