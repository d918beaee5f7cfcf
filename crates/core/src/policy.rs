//! Routing by module path, with the go command's pattern syntax (comma-separated globs matching a
//! path prefix, as in `GOPRIVATE=*.corp.example,gitlab.corp.example/team`).

use agora_gomod::module::{match_prefix_patterns, ModulePath};

/// Where a module's artifacts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through the upstream chain (public modules).
    Upstream,
    /// Straight from version control, never sent to an upstream proxy (private modules).
    Direct,
}

/// The routing rules, built once from configuration.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Patterns fetched directly (GONOPROXY, defaulting to GOPRIVATE).
    direct: String,
    /// Patterns never looked up in a checksum database (GONOSUMDB, defaulting to GOPRIVATE).
    nosum: String,
}

impl Policy {
    pub fn new(direct: &[String], nosum: &[String]) -> Self {
        Policy {
            direct: direct.join(","),
            nosum: nosum.join(","),
        }
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
}
