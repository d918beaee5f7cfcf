//! [`Guard`]: who is asking, may they, and the audit trail. Every GOPROXY and checksum-database
//! request passes through it: credentials are checked before the path is looked at, the access
//! rules before anything is read from storage or fetched, and requests for private modules are
//! written to the audit log whatever their outcome.
//!
//! Refusals never carry more than the client already said: a 404 that hides a module reads like
//! any other "not found", without detail from storage or sources.

use std::sync::Arc;

use agora_access::{
    parse_authorization, AccessRules, AuditLog, Decision, DenyStatus, Principal, TokenStore,
};
use agora_core::{Policy, Route};
use agora_gomod::module::ModulePath;
use axum::http::{header, HeaderMap};

use crate::error::{AppError, BearerError};
use crate::identity::{ClientInfo, TrustedProxies};

/// The token group allowed to use the admin endpoints.
pub const ADMIN_GROUP: &str = "admin";

/// Authentication, authorization and audit settings. [`Guard::open`] lets everyone in and
/// audits only private modules (to the main log).
pub struct Guard {
    tokens: Arc<TokenStore>,
    rules: AccessRules,
    audit: Arc<AuditLog>,
    trusted: TrustedProxies,
    require_tls: bool,
}

impl Guard {
    pub fn new(
        tokens: Arc<TokenStore>,
        rules: AccessRules,
        audit: Arc<AuditLog>,
        trusted: TrustedProxies,
        require_tls: bool,
    ) -> Guard {
        Guard {
            tokens,
            rules,
            audit,
            trusted,
            require_tls,
        }
    }

    /// No tokens, everything readable by anyone, audit lines to the main log.
    pub fn open() -> Guard {
        Guard {
            tokens: Arc::new(TokenStore::new(Vec::new(), None).expect("an empty token store")),
            rules: AccessRules::open(),
            audit: Arc::new(AuditLog::new(None).expect("an audit log without a file")),
            trusted: TrustedProxies::default(),
            require_tls: false,
        }
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Where the request comes from, believing forwarding headers only from trusted proxies.
    pub fn client(&self, extensions: &http::Extensions, headers: &HeaderMap) -> ClientInfo {
        ClientInfo::from_extensions(extensions, headers, &self.trusted)
    }

    /// Who the request is. Credentials that are present must be valid: a wrong or revoked token
    /// is refused (401), never downgraded to anonymous, so that a typo in `.netrc` is reported
    /// rather than showing up as a puzzling 404.
    pub fn authenticate(
        &self,
        client: &ClientInfo,
        headers: &HeaderMap,
    ) -> Result<Principal, AppError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Principal::Anonymous);
        };
        if self.require_tls && !client.secure {
            return Err(denied(
                DenyStatus::Forbidden,
                "credentials must be sent over HTTPS (auth.require_tls); this token may have been exposed and should be replaced".into(),
            ));
        }
        let credential = parse_authorization(value.as_bytes()).map_err(|e| AppError::Denied {
            status: DenyStatus::Unauthorized,
            message: format!("unusable Authorization header: {e}"),
            bearer_error: Some(BearerError::InvalidRequest),
        })?;
        match self.tokens.authenticate(&credential) {
            Some(identity) => Ok(Principal::Token(identity)),
            None => Err(AppError::Denied {
                status: DenyStatus::Unauthorized,
                message: "unknown or revoked token".into(),
                bearer_error: Some(BearerError::InvalidToken),
            }),
        }
    }

    /// May `who` read `module` (at `version`, which only shapes the refusal's message)?
    pub fn authorize(
        &self,
        who: &Principal,
        module: &ModulePath,
        version: Option<&str>,
    ) -> Result<(), AppError> {
        self.check(who, module.as_str(), module, version)
    }

    /// Whether any client could be refused anything; when not, no repository needs resolving
    /// for an access check.
    pub fn restricts(&self) -> bool {
        !self.rules.is_open()
    }

    /// May `who` read `repository`, the repository `module` resolved to? Rules protect
    /// repositories, not only the path a client chose to name one by, so a module path that
    /// passed [`Guard::authorize`] is checked again against its repository. The refusal speaks
    /// of the requested module only: a hidden repository stays hidden.
    pub fn authorize_repository(
        &self,
        who: &Principal,
        repository: &str,
        module: &ModulePath,
        version: Option<&str>,
    ) -> Result<(), AppError> {
        self.check(who, repository, module, version)
    }

    /// The rules for `path`, refused in the words of the request for `module@version`.
    fn check(
        &self,
        who: &Principal,
        path: &str,
        module: &ModulePath,
        version: Option<&str>,
    ) -> Result<(), AppError> {
        match self.rules.check(who, path) {
            Decision::Allow => Ok(()),
            denied => {
                let what = match version {
                    Some(v) => format!("{module}@{v}"),
                    None => module.to_string(),
                };
                refusal(denied, who, &what)
            }
        }
    }

    /// Whether reads of `repository` go to the audit log (it is readable by fewer than all).
    pub fn audited_repository(&self, repository: &str) -> bool {
        self.rules.restricted(repository)
    }

    /// For the admin endpoints: `who` must hold a token in the `admin` group. Anonymous clients
    /// are asked for one (401), others refused (403).
    pub fn require_admin(&self, who: &Principal) -> Result<(), AppError> {
        match who {
            Principal::Token(identity) if identity.in_group(ADMIN_GROUP) => Ok(()),
            Principal::Token(identity) => Err(denied(
                DenyStatus::Forbidden,
                format!("{} is not in the {ADMIN_GROUP} group", identity.name),
            )),
            Principal::Anonymous => Err(AppError::Denied {
                status: DenyStatus::Unauthorized,
                message: format!("administration needs a token in the {ADMIN_GROUP} group"),
                bearer_error: None,
            }),
        }
    }

    /// For requests that name no module (checksum-database tiles): the default rule.
    pub fn authorize_unscoped(&self, who: &Principal, what: &str) -> Result<(), AppError> {
        refusal(self.rules.check_unscoped(who), who, what)
    }

    /// Whether requests for `module` go to the audit log: private modules (fetched directly) and
    /// modules not readable by everyone.
    pub fn audited(&self, policy: &Policy, module: &ModulePath) -> bool {
        policy.route(module) == Route::Direct || self.rules.restricted(module.as_str())
    }
}

/// A refusal that is not about credentials the client sent.
fn denied(status: DenyStatus, message: String) -> AppError {
    AppError::Denied {
        status,
        message,
        bearer_error: None,
    }
}

fn refusal(decision: Decision, who: &Principal, what: &str) -> Result<(), AppError> {
    let Decision::Deny { status, rule } = decision else {
        return Ok(());
    };
    let rule = match rule {
        Some(i) => format!("access rule {}", i + 1),
        None => "the default access rule".into(),
    };
    let message = match status {
        DenyStatus::Unauthorized => {
            format!("{what} needs a token ({rule}); send one with GOAUTH (agora auth) or from .netrc for this host")
        }
        DenyStatus::Forbidden => format!("{} may not read {what} ({rule})", who.name()),
        // No more than the client said: this must read like any other "not found".
        DenyStatus::NotFound => what.to_owned(),
    };
    Err(denied(status, message))
}
