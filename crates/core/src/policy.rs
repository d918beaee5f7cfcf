//! Routing by module path, with the go command's pattern syntax (comma-separated globs matching a
//! path prefix, as in `GOPRIVATE=*.corp.example,gitlab.corp.example/team`).

use agora_gomod::module::{match_prefix_patterns, ModulePath};

use crate::filter::Filter;

/// Where a module's artifacts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through the upstream chain (public modules).
    Upstream,
    /// Straight from version control, never sent to an upstream proxy (private modules).
    Direct,
}

/// What to do when a requested artifact is not cached (Athens calls these download modes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadMode {
    /// Fetch it now and answer when done (the default).
    Sync,
    /// Answer 404 at once and fetch it in the background; a retry finds it cached.
    Async,
    /// Send the client to another proxy (`base` + the request path).
    Redirect(String),
    /// Serve only what is cached.
    None,
}

/// The routing rules, built once from configuration.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Patterns fetched directly (GONOPROXY, defaulting to GOPRIVATE).
    direct: String,
    /// Patterns never looked up in a checksum database (GONOSUMDB, defaulting to GOPRIVATE).
    nosum: String,
    /// Download modes by pattern; the first match wins, [`DownloadMode::Sync`] otherwise.
    download: Vec<(String, DownloadMode)>,
    /// What may be fetched at all.
    filter: Filter,
}

impl Policy {
    pub fn new(direct: &[String], nosum: &[String]) -> Self {
        Policy {
            direct: direct.join(","),
            nosum: nosum.join(","),
            download: Vec::new(),
            filter: Filter::default(),
        }
    }

    /// Adds allow/deny rules for what may be fetched.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Adds download-mode rules (`pattern` in GOPRIVATE glob syntax).
    pub fn with_download_modes(mut self, rules: Vec<(String, DownloadMode)>) -> Self {
        self.download = rules;
        self
    }

    pub fn download_mode(&self, module: &ModulePath) -> DownloadMode {
        self.download
            .iter()
            .find(|(pattern, _)| match_prefix_patterns(pattern, module.as_str()))
            .map(|(_, mode)| mode.clone())
            .unwrap_or(DownloadMode::Sync)
    }

    pub fn route(&self, module: &ModulePath) -> Route {
        if match_prefix_patterns(&self.direct, module.as_str()) {
            Route::Direct
        } else {
            Route::Upstream
        }
    }

    /// Whether a checksum-database lookup for this module may leave the building.
    pub fn sum_lookup_allowed(&self, module: &str) -> bool {
        !match_prefix_patterns(&self.nosum, module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_prefix_patterns() {
        let p = Policy::new(
            &["gitlab.corp.example".into(), "*.internal.example".into()],
            &["gitlab.corp.example".into()],
        );
        let m = |s| ModulePath::new(s).unwrap();
        assert_eq!(p.route(&m("gitlab.corp.example/team/svc")), Route::Direct);
        assert_eq!(p.route(&m("git.internal.example/x")), Route::Direct);
        assert_eq!(
            p.route(&m("gitlab.corp.example.evil.com/x")),
            Route::Upstream
        );
        assert_eq!(p.route(&m("github.com/pkg/errors")), Route::Upstream);
        assert!(!p.sum_lookup_allowed("gitlab.corp.example/team/svc"));
        assert!(p.sum_lookup_allowed("github.com/pkg/errors"));
    }

    #[test]
    fn download_modes_first_match_wins() {
        let p = Policy::new(&[], &[]).with_download_modes(vec![
            ("github.com/big/*".into(), DownloadMode::Async),
            (
                "github.com".into(),
                DownloadMode::Redirect("https://proxy.golang.org".into()),
            ),
        ]);
        let m = |s| ModulePath::new(s).unwrap();
        assert_eq!(
            p.download_mode(&m("github.com/big/repo")),
            DownloadMode::Async
        );
        assert_eq!(
            p.download_mode(&m("github.com/other/repo")),
            DownloadMode::Redirect("https://proxy.golang.org".into())
        );
        assert_eq!(p.download_mode(&m("golang.org/x/text")), DownloadMode::Sync);
    }
}
