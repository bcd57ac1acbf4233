//! Authentication and authorisation: who is calling ([`Caller`], [`Principal`]), the roles of
//! civic's users ([`Role`]), and the [`Verifier`] that turns an `authorization: Bearer <jwt>`
//! header into a caller.
//!
//! Tokens are compact JWTs. Two kinds of keys are trusted, each only for its own algorithm, so a
//! token can never choose how it is checked (no algorithm confusion):
//! - `HS256` with the shared `auth.dev_key`, for local runs, tests and `civic token`;
//! - `RS256` / `ES256` (P-256) with the public keys of a JWKS file (`auth.jwks_file`), for
//!   production, selected by the token's `kid` (or the only key of that algorithm when it has none).
//!
//! `alg: none` is never accepted. Rejections are UNAUTHENTICATED with a short reason; the token
//! itself is never echoed or logged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The algorithms civic can verify. The allow-list in [`AuthSettings::algorithms`] picks from these.
pub const SUPPORTED_ALGORITHMS: [&str; 3] = ["HS256", "RS256", "ES256"];

/// The shortest `auth.dev_key` accepted: 256 bits, the size of the HS256 digest (RFC 7518 §3.2).
pub const MIN_DEV_KEY_BYTES: usize = 32;

/// The largest clock-skew allowance accepted in `auth.leeway_seconds`.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// The shortest RSA modulus accepted from a JWKS file, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Tokens longer than this are refused before any parsing (a cheap guard against oversized input).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The gRPC metadata key / HTTP header that carries the token.
const AUTHORIZATION: &str = "authorization";

/// The roles of civic's users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A resident of a community: files issues, books services.
    Resident,
    /// A grid worker: looks after the households of one or more grids.
    GridWorker,
    /// A cadre of a street or community office.
    Cadre,
    /// A party-member volunteer.
    PartyVolunteer,
    /// An officer of a functional department that issues are routed to.
    DepartmentOfficer,
    /// An administrator of a street's civic installation.
    Admin,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 6] =
        [Role::Resident, Role::GridWorker, Role::Cadre, Role::PartyVolunteer, Role::DepartmentOfficer, Role::Admin];

    /// The role's name in tokens, configuration and APIs (`grid_worker`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::GridWorker => "grid_worker",
            Role::Cadre => "cadre",
            Role::PartyVolunteer => "party_volunteer",
            Role::DepartmentOfficer => "department_officer",
            Role::Admin => "admin",
        }
    }

    /// The role with the given name (exactly as [`Role::as_str`] writes it), if there is one.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::parse(s).ok_or_else(|| format!("unknown role {s:?}; valid roles are {}", role_list(&Role::ALL)))
    }
}

/// `cadre, admin`.
fn role_list(roles: &[Role]) -> String {
    roles.iter().map(Role::as_str).collect::<Vec<_>>().join(", ")
}

/// Who is calling, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's stable id (the token's `sub`); never empty and never contains `/`.
    pub subject: String,
    /// The user's roles; unknown role names in the token are dropped.
    pub roles: Vec<Role>,
    /// The street the roles apply in: the street's id segment, e.g. `zhongjie`.
    pub street: Option<String>,
    /// The user's community within the street, as its id segment.
    pub community: Option<String>,
    /// The grids a grid worker looks after, as id segments.
    pub grids: Vec<String>,
}

impl Principal {
    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the principal's scope is `street` (a street id segment such as `zhongjie`).
    pub fn in_street(&self, street: &str) -> bool {
        self.street.as_deref() == Some(street)
    }

    /// Whether the principal works for `street`: scoped to it and a cadre, grid worker,
    /// department officer or admin.
    pub fn is_staff_of(&self, street: &str) -> bool {
        self.in_street(street)
            && [Role::Cadre, Role::GridWorker, Role::DepartmentOfficer, Role::Admin].iter().any(|r| self.has_role(*r))
    }

    /// How the user is referred to from other resources: `users/{subject}`.
    pub fn resource_name(&self) -> String {
        format!("users/{}", self.subject)
    }

    /// The user's name, `users/{subject}`, typed.
    pub fn user_name(&self) -> crate::names::UserName {
        crate::names::UserName::of_subject(&self.subject)
    }
}

/// Another civic service calling on its own behalf (a background job), not for a user: its
/// token carries a `service` claim naming it, and no user's roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePrincipal {
    /// The calling service's name, such as `issues`.
    pub service: String,
    /// The token's subject (the client id at the identity provider).
    pub subject: String,
}

impl ServicePrincipal {
    /// How the service is referred to: `services/{service}`.
    pub fn resource_name(&self) -> String {
        format!("services/{}", self.service)
    }
}

/// The caller of one request: anonymous (no token), a user, or a service acting on its own
/// behalf.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The request carried no `authorization` header.
    Anonymous,
    /// The request carried a valid bearer token of a user.
    Principal(Principal),
    /// The request carried a valid bearer token of a civic service.
    Service(ServicePrincipal),
}

impl Caller {
    /// The authenticated user, if any.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Principal(principal) => Some(principal),
            Caller::Anonymous | Caller::Service(_) => None,
        }
    }

    /// The calling service, when a service calls on its own behalf.
    pub fn service(&self) -> Option<&ServicePrincipal> {
        match self {
            Caller::Service(service) => Some(service),
            Caller::Anonymous | Caller::Principal(_) => None,
        }
    }

    /// The authenticated user: UNAUTHENTICATED when the caller is anonymous, PERMISSION_DENIED
    /// when it is a service (calls made for people are not open to services acting alone).
    pub fn require(&self) -> Result<&Principal> {
        match self {
            Caller::Principal(principal) => Ok(principal),
            Caller::Anonymous => Err(Error::unauthenticated("this call needs a bearer token")),
            Caller::Service(_) => Err(Error::permission_denied("this call is made for a user, not by a service")),
        }
    }

    /// The calling service, if it is one of `services`: UNAUTHENTICATED when the caller is
    /// anonymous, PERMISSION_DENIED for a user or another service.
    pub fn require_service(&self, services: &[&str]) -> Result<&ServicePrincipal> {
        match self {
            Caller::Service(service) if services.contains(&service.service.as_str()) => Ok(service),
            Caller::Anonymous => Err(Error::unauthenticated("this call needs a bearer token")),
            _ => Err(Error::permission_denied(format!("only the services {} make this call", services.join(", ")))),
        }
    }

    /// The principal, if it holds one of `roles` scoped to `street`: PERMISSION_DENIED when it
    /// does not, UNAUTHENTICATED when the caller is anonymous.
    pub fn require_role_in(&self, street: &str, roles: &[Role]) -> Result<&Principal> {
        let principal = self.require()?;
        if principal.in_street(street) && roles.iter().any(|role| principal.has_role(*role)) {
            Ok(principal)
        } else {
            Err(Error::permission_denied(format!(
                "this call needs one of the roles {} in street {street}",
                role_list(roles)
            )))
        }
    }

    /// The stable id of the caller for idempotency keys: `anonymous`, `users/{subject}` or
    /// `services/{service}`.
    pub fn key(&self) -> String {
        match self {
            Caller::Anonymous => "anonymous".to_owned(),
            Caller::Principal(principal) => principal.resource_name(),
            Caller::Service(service) => service.resource_name(),
        }
    }
}

/// Settings of token verification: the `[auth]` section of the config file, or `CIVIC_AUTH__*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The value the token's `aud` must be or contain.
    pub audience: String,
    /// Development signing: tokens minted by `civic token` (and by services for their own
    /// calls) with an HS256 key — `dev_key`, or one kept in the data directory. Whoever holds
    /// the key can act as anyone, so it is never on unless asked for: `true` turns it on (with a
    /// warning at start), `false` keeps it off; unset, only the laptop default — `serve
    /// --target=all` on the embedded store, no NATS — turns it on. It cannot stand beside a
    /// JWKS source.
    pub dev_mode: Option<bool>,
    /// The HS256 key of development mode; at least 32 bytes when set. Unset in development mode,
    /// a key of its own is made in the data directory (`dev.key`, never the page-token secret).
    pub dev_key: Option<String>,
    /// Production keys: a JWKS JSON file of RS256 / ES256 (P-256) public keys.
    pub jwks_file: Option<PathBuf>,
    /// Production keys fetched from the identity provider (`https://…/jwks.json`), at start
    /// and then every `jwks_refresh_seconds`; the last good set stays in use while a refresh
    /// fails.
    pub jwks_url: Option<String>,
    /// How often the JWKS URL is fetched again, in seconds.
    pub jwks_refresh_seconds: u64,
    /// The algorithms accepted, from [`SUPPORTED_ALGORITHMS`]; `none` is never accepted.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated when checking `exp` and `nbf`, in seconds (at most 300).
    pub leeway_seconds: u64,
    /// The longest a token may be valid, from its `iat` to its `exp`, in seconds: longer ones are
    /// refused, and `civic token` mints none longer.
    pub max_token_lifetime_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "civic".to_owned(),
            audience: "civic".to_owned(),
            dev_mode: None,
            dev_key: None,
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_seconds: 600,
            algorithms: SUPPORTED_ALGORITHMS.iter().map(|alg| (*alg).to_owned()).collect(),
            leeway_seconds: 30,
            max_token_lifetime_seconds: 24 * 3600,
        }
    }
}

impl AuthSettings {
    /// Whether production keys are configured (a JWKS file or URL).
    pub fn has_jwks(&self) -> bool {
        self.jwks_file.is_some() || self.jwks_url.is_some()
    }

    /// Checks the settings without touching the file system: on failure, the offending key
    /// (`auth.dev_key`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        fn problem(key: &str, text: impl Into<String>) -> Result<(), (String, String)> {
            Err((key.to_owned(), text.into()))
        }
        if self.issuer.trim().is_empty() {
            return problem("auth.issuer", "must not be empty");
        }
        if self.audience.trim().is_empty() {
            return problem("auth.audience", "must not be empty");
        }
        if self.dev_key.as_ref().is_some_and(|key| key.len() < MIN_DEV_KEY_BYTES) {
            return problem("auth.dev_key", format!("must be at least {MIN_DEV_KEY_BYTES} bytes long"));
        }
        if self.has_jwks() && self.dev_key.is_some() {
            return problem(
                "auth.dev_key",
                "cannot stand beside a JWKS source: tokens come from the identity provider (remove auth.dev_key)",
            );
        }
        if self.has_jwks() && self.dev_mode == Some(true) {
            return problem("auth.dev_mode", "cannot be true beside a JWKS source (auth.jwks_url or auth.jwks_file)");
        }
        if self.max_token_lifetime_seconds == 0 {
            return problem("auth.max_token_lifetime_seconds", "must be greater than 0");
        }
        if let Some(url) = &self.jwks_url {
            if !url.starts_with("https://") && !crate::config::is_loopback_http(url) {
                return problem("auth.jwks_url", "must be an https:// URL (plain http only to this machine)");
            }
            if self.jwks_file.is_some() {
                return problem("auth.jwks_url", "set either auth.jwks_file or auth.jwks_url, not both");
            }
            if self.jwks_refresh_seconds < 10 {
                return problem("auth.jwks_refresh_seconds", "must be at least 10");
            }
        }
        if self.algorithms.is_empty() {
            return problem("auth.algorithms", "must name at least one algorithm");
        }
        for alg in &self.algorithms {
            if alg.trim().eq_ignore_ascii_case("none") {
                return problem("auth.algorithms", "\"none\" is never accepted: tokens must be signed");
            }
            if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                return problem(
                    "auth.algorithms",
                    format!("unsupported algorithm {alg:?}; supported: {}", SUPPORTED_ALGORITHMS.join(", ")),
                );
            }
        }
        if self.leeway_seconds > MAX_LEEWAY_SECONDS {
            return problem("auth.leeway_seconds", format!("must be at most {MAX_LEEWAY_SECONDS}"));
        }
        Ok(())
    }
}

/// Token settings or keys that cannot be used, or a token that cannot be minted: what and why,
/// naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);

/// Verifies bearer tokens. Cheap to clone: the keys are shared.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    leeway_seconds: u64,
    max_lifetime: u64,
    algorithms: Vec<Algorithm>,
    dev_key: Option<DecodingKey>,
    /// The JWKS keys in use; replaced whole when a JWKS URL is fetched again.
    public_keys: tokio::sync::watch::Sender<Arc<Vec<PublicKey>>>,
}

/// One usable key of the JWKS file, bound to the one algorithm it verifies.
struct PublicKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material stays out of debug output.
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("algorithms", &self.inner.algorithms)
            .field("dev_key", &self.inner.dev_key.is_some())
            .field("public_keys", &self.inner.public_keys.borrow().iter().map(|k| k.kid.clone()).collect::<Vec<_>>())
            .finish()
    }
}

impl Verifier {
    /// A verifier for `settings`, reading the JWKS file if one is set. The error names the
    /// setting and the problem.
    pub fn new(settings: &AuthSettings) -> Result<Self, SetupError> {
        Self::from_settings(settings).map_err(SetupError)
    }

    fn from_settings(settings: &AuthSettings) -> Result<Self, String> {
        settings.validate().map_err(|(key, problem)| format!("{key}: {problem}"))?;
        let algorithms = settings
            .algorithms
            .iter()
            .map(|alg| alg.parse::<Algorithm>().map_err(|_| format!("auth.algorithms: unsupported algorithm {alg:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let dev_key = settings
            .dev_key
            .as_ref()
            .map(|secret| DecodingKey::from_secret(secret.as_bytes()))
            .transpose()
            .map_err(|_| "auth.dev_key: cannot be used as an HS256 key".to_owned())?;
        let public_keys = match &settings.jwks_file {
            Some(path) => load_jwks(path)?,
            None => Vec::new(),
        };
        let public_keys = tokio::sync::watch::Sender::new(Arc::new(public_keys));
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                leeway_seconds: settings.leeway_seconds,
                max_lifetime: settings.max_token_lifetime_seconds,
                algorithms,
                dev_key,
                public_keys,
            }),
        })
    }

    /// A verifier for `settings` that also fetches the JWKS URL, when one is set: once now
    /// (failing if the keys cannot be had, so a misconfiguration shows at start) and then every
    /// `jwks_refresh_seconds` in the background for as long as the verifier lives.
    pub async fn start(settings: &AuthSettings) -> Result<Self, SetupError> {
        let verifier = Self::new(settings)?;
        let Some(url) = settings.jwks_url.clone() else {
            return Ok(verifier);
        };
        verifier.inner.public_keys.send_replace(Arc::new(fetch_jwks(&url).await.map_err(SetupError)?));
        let every = Duration::from_secs(settings.jwks_refresh_seconds);
        let weak = Arc::downgrade(&verifier.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { break };
                match fetch_jwks(&url).await {
                    Ok(keys) => {
                        inner.public_keys.send_replace(Arc::new(keys));
                    }
                    Err(problem) => tracing::warn!(%problem, "jwks refresh failed; the previous keys stay in use"),
                }
            }
        });
        Ok(verifier)
    }

    /// Verifies a compact JWT and returns its principal: the header's `alg` must be allowed and
    /// match the key (HS256 only with the dev key; RS256 / ES256 only with a JWKS key chosen by
    /// `kid`), the signature must hold, `exp` must be present and not past (with leeway), `nbf`
    /// not ahead, `iss` the issuer and `aud` contain the audience. Any failure is
    /// UNAUTHENTICATED with a short reason.
    pub fn verify(&self, token: &str) -> Result<Caller> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(reject("token is too large"));
        }
        // The header is read unverified only to pick the key; `decode` checks it again.
        let header = jsonwebtoken::decode_header(token).map_err(|_| reject("malformed token"))?;
        if !self.inner.algorithms.contains(&header.alg) {
            return Err(reject("token algorithm is not accepted"));
        }
        let key = self.key_for(&header)?;

        let mut validation = Validation::new(header.alg);
        validation.leeway = self.inner.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[&self.inner.audience]);

        let data = jsonwebtoken::decode::<TokenClaims>(token, &key, &validation).map_err(|e| reject(reason(&e)))?;
        let (iat, exp) = (data.claims.iat, data.claims.exp);
        if iat > unix_now().saturating_add(self.inner.leeway_seconds) {
            return Err(reject("token was issued in the future"));
        }
        if exp.saturating_sub(iat) > self.inner.max_lifetime {
            return Err(reject("token is valid for longer than allowed"));
        }
        data.claims.into_caller()
    }

    /// The key that may verify a token with this header, or why there is none.
    fn key_for(&self, header: &Header) -> Result<DecodingKey> {
        if header.alg == Algorithm::HS256 {
            // Only the dev key verifies HS256: never a public key used as an HMAC secret.
            return self.inner.dev_key.clone().ok_or_else(|| reject("token algorithm is not accepted"));
        }
        let public_keys = self.inner.public_keys.borrow().clone();
        let mut candidates = public_keys.iter().filter(|key| key.algorithm == header.alg);
        match &header.kid {
            Some(kid) => candidates
                .find(|key| key.kid.as_deref() == Some(kid.as_str()))
                .map(|key| key.key.clone())
                .ok_or_else(|| reject("token key is not known")),
            None => match (candidates.next(), candidates.next()) {
                (Some(only), None) => Ok(only.key.clone()),
                (None, _) => Err(reject("token algorithm is not accepted")),
                (Some(_), Some(_)) => Err(reject("token has no key id (kid)")),
            },
        }
    }

    /// The caller of a gRPC request, from its `authorization: Bearer <token>` metadata: no
    /// header is [`Caller::Anonymous`]; a malformed header or an invalid token is UNAUTHENTICATED.
    pub fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller> {
        let mut values = metadata.get_all(AUTHORIZATION).iter();
        let Some(value) = values.next() else { return Ok(Caller::Anonymous) };
        if values.next().is_some() {
            return Err(reject("send one authorization header, not several"));
        }
        self.caller_from_value(value.to_str().ok())
    }

    /// The caller of an HTTP request, from its `Authorization: Bearer <token>` header; the same
    /// rules as [`Verifier::caller`].
    pub fn caller_from_headers(&self, headers: &http::HeaderMap) -> Result<Caller> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let Some(value) = values.next() else { return Ok(Caller::Anonymous) };
        if values.next().is_some() {
            return Err(reject("send one authorization header, not several"));
        }
        self.caller_from_value(value.to_str().ok())
    }

    /// `value` is the header's text, or `None` when it is not visible ASCII.
    fn caller_from_value(&self, value: Option<&str>) -> Result<Caller> {
        let value = value.ok_or_else(|| reject("the authorization header is not ASCII text"))?;
        let token = bearer_token(value).ok_or_else(|| reject("authorization must be \"Bearer <token>\""))?;
        self.verify(token)
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(char::is_whitespace))
        .then_some(token)
}

/// UNAUTHENTICATED with `reason`. Logged at debug level without the token or its claims.
fn reject(reason: &str) -> Error {
    tracing::debug!(reason, "bearer token rejected");
    Error::unauthenticated(reason)
}

/// A short reason for a failed `decode`, safe to return (no claim values, no token text).
fn reason(error: &jsonwebtoken::errors::Error) -> &'static str {
    match error.kind() {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token is not valid yet",
        ErrorKind::InvalidSignature => "bad token signature",
        ErrorKind::InvalidAudience => "token audience is not accepted",
        ErrorKind::InvalidIssuer => "token issuer is not accepted",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "token algorithm is not accepted",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "token has no expiry (exp)",
            "iss" => "token has no issuer (iss)",
            "aud" => "token has no audience (aud)",
            "sub" => "token has no subject (sub)",
            _ => "token lacks a required claim",
        },
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => "token claims are malformed",
        _ => "malformed token",
    }
}

/// The claims civic reads from a verified token; `exp`, `iss` and `aud` are checked by `decode`.
#[derive(Deserialize)]
struct TokenClaims {
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    street: Option<String>,
    #[serde(default)]
    community: Option<String>,
    #[serde(default)]
    grids: Vec<String>,
    /// Set only in the tokens of civic's services acting on their own behalf.
    #[serde(default)]
    service: Option<String>,
}

impl TokenClaims {
    fn into_caller(self) -> Result<Caller> {
        if !is_valid_subject(&self.sub) {
            return Err(reject("token subject is not a valid user id"));
        }
        if let Some(service) = self.service {
            if !is_valid_service(&service) {
                return Err(reject("token names no valid service"));
            }
            return Ok(Caller::Service(ServicePrincipal { service, subject: self.sub }));
        }
        let mut roles = Vec::with_capacity(self.roles.len());
        // Unknown roles (from a newer issuer, say) are dropped, not fatal.
        for role in self.roles.iter().filter_map(|name| Role::parse(name)) {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(Caller::Principal(Principal {
            subject: self.sub,
            roles,
            street: non_empty(self.street),
            community: non_empty(self.community),
            grids: self.grids.into_iter().filter(|g| !g.is_empty()).collect(),
        }))
    }
}

/// A service's name in a token: a lowercase letter, then lowercase letters, digits, `-` or `_`
/// (at most 63).
fn is_valid_service(service: &str) -> bool {
    let b = service.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// A subject must make a well-formed `users/{subject}` name.
use crate::names::is_valid_subject;

/// The claims of a token minted by [`mint_dev_token`].
#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    roles: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    street: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    community: Option<&'a str>,
    grids: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
}

/// Mints an HS256 token for `principal`, valid for `ttl`, signed with `auth.dev_key` (used by
/// `civic token` and by tests). Fails when the settings are invalid, the dev key is unset, HS256
/// is not allowed or the subject cannot name a user.
pub fn mint_dev_token(settings: &AuthSettings, principal: &Principal, ttl: Duration) -> Result<String, SetupError> {
    mint_user(settings, principal, ttl).map_err(SetupError)
}

fn mint_user(settings: &AuthSettings, principal: &Principal, ttl: Duration) -> Result<String, String> {
    let secret = dev_signing_key(settings, ttl)?;
    if !is_valid_subject(&principal.subject) {
        return Err("the subject must be 1 to 256 bytes without '/', whitespace or control characters".to_owned());
    }
    let claims = MintClaims {
        roles: principal.roles.iter().map(Role::as_str).collect(),
        street: principal.street.as_deref(),
        community: principal.community.as_deref(),
        grids: &principal.grids,
        ..MintClaims::new(settings, &principal.subject, ttl)
    };
    sign_dev(secret, &claims)
}

/// Mints an HS256 token for the civic service `service` acting on its own behalf, valid for
/// `ttl`, signed with `auth.dev_key`: the service credential of a development process.
pub fn mint_service_token(settings: &AuthSettings, service: &str, ttl: Duration) -> Result<String, SetupError> {
    mint_service(settings, service, ttl).map_err(SetupError)
}

fn mint_service(settings: &AuthSettings, service: &str, ttl: Duration) -> Result<String, String> {
    let secret = dev_signing_key(settings, ttl)?;
    if !is_valid_service(service) {
        return Err(format!("{service:?} is not a service name"));
    }
    let subject = format!("service-{service}");
    sign_dev(secret, &MintClaims { service: Some(service), ..MintClaims::new(settings, &subject, ttl) })
}

impl<'a> MintClaims<'a> {
    /// The claims every development token carries: `sub`, `iss`, `aud`, and valid from now for
    /// `ttl`; no roles or scopes.
    fn new(settings: &'a AuthSettings, sub: &'a str, ttl: Duration) -> Self {
        let now = unix_now();
        Self {
            sub,
            iss: &settings.issuer,
            aud: &settings.audience,
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            roles: Vec::new(),
            street: None,
            community: None,
            grids: &[],
            service: None,
        }
    }
}

/// The key development tokens are signed with, once the settings, the lifetime and the
/// algorithm allow one.
fn dev_signing_key(settings: &AuthSettings, ttl: Duration) -> Result<&str, String> {
    settings.validate().map_err(|(key, problem)| format!("{key}: {problem}"))?;
    check_lifetime(settings, ttl)?;
    let secret = settings.dev_key.as_deref().ok_or("auth.dev_key is not set; dev tokens are signed with it")?;
    if !settings.algorithms.iter().any(|alg| alg == "HS256") {
        return Err("auth.algorithms does not allow HS256, so a dev token would be rejected".to_owned());
    }
    Ok(secret)
}

fn check_lifetime(settings: &AuthSettings, ttl: Duration) -> Result<(), String> {
    if ttl.is_zero() || ttl.as_secs() > settings.max_token_lifetime_seconds {
        return Err(format!(
            "a token may be valid for 1 to {} seconds (auth.max_token_lifetime_seconds)",
            settings.max_token_lifetime_seconds
        ));
    }
    Ok(())
}

fn sign_dev(secret: &str, claims: &MintClaims<'_>) -> Result<String, String> {
    let key = EncodingKey::from_secret(secret.as_bytes())
        .map_err(|_| "auth.dev_key: cannot be used as an HS256 key".to_owned())?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .map_err(|e| format!("cannot sign the dev token: {e}"))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The usable keys of a JWKS file. Keys that are not RS256 / ES256 signing keys are skipped with
/// a warning (a provider's JWKS may list others); a broken or weak usable key, duplicate `kid`s or
/// a file without any usable key are errors.
fn load_jwks(path: &Path) -> Result<Vec<PublicKey>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("auth.jwks_file: cannot read {shown}: {e}"))?;
    parse_jwks(&text, "auth.jwks_file", &shown.to_string())
}

async fn fetch_jwks(url: &str) -> Result<Vec<PublicKey>, String> {
    let body = crate::fetch::get(url, Duration::from_secs(10)).await.map_err(|e| format!("auth.jwks_url: {e}"))?;
    parse_jwks(&String::from_utf8_lossy(&body), "auth.jwks_url", url)
}

/// The usable keys of a JWK set; errors name `setting` and `shown` (the file or URL).
fn parse_jwks(text: &str, setting: &str, shown: &str) -> Result<Vec<PublicKey>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("{setting}: {shown} is not a JWK set: {e}"))?;
    let mut keys: Vec<PublicKey> = Vec::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        let label = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{index}"));
        let Some(key) = public_key(jwk).map_err(|problem| format!("{setting}: {shown}: key {label}: {problem}"))?
        else {
            tracing::warn!(source = %shown, kid = %label, "skipping a JWKS key that is not an RS256 or ES256 signing key");
            continue;
        };
        if key.kid.is_some() && keys.iter().any(|other| other.kid == key.kid) {
            return Err(format!("{setting}: {shown}: key id {label} is used twice"));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(format!("{setting}: {shown} has no RS256 or ES256 (P-256) signing key"));
    }
    Ok(keys)
}

/// The key as civic uses it, `None` if it is not meant for RS256 / ES256 signatures.
fn public_key(jwk: &Jwk) -> Result<Option<PublicKey>, String> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
        return Ok(None);
    }
    let declared = jwk.common.key_algorithm;
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) if matches!(declared, None | Some(KeyAlgorithm::RS256)) => {
            let modulus = URL_SAFE_NO_PAD.decode(&rsa.n).map_err(|_| "n is not base64url")?;
            let bits = modulus.iter().position(|b| *b != 0).map_or(0, |first| (modulus.len() - first) * 8);
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA keys must have at least {MIN_RSA_BITS} bits"));
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(ec)
            if ec.curve == EllipticCurve::P256 && matches!(declared, None | Some(KeyAlgorithm::ES256)) =>
        {
            for (name, coordinate) in [("x", &ec.x), ("y", &ec.y)] {
                let bytes = URL_SAFE_NO_PAD.decode(coordinate).map_err(|_| format!("{name} is not base64url"))?;
                if bytes.len() != 32 {
                    return Err(format!("{name} must be 32 bytes for P-256"));
                }
            }
            Algorithm::ES256
        }
        _ => return Ok(None),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("not a usable public key: {e}"))?;
    Ok(Some(PublicKey { kid: jwk.common.key_id.clone(), algorithm, key }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use tonic::Code;
    use tonic::metadata::{MetadataMap, MetadataValue};

    const DEV_KEY: &str = "civic-test-dev-key-0123456789abcdef";
    const RSA_KID: &str = "civic-test-rsa-1";
    const EC_KID: &str = "civic-test-ec-1";

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    /// The DER inside a PEM file (jsonwebtoken is built without its `use_pem` feature).
    fn pem_der(name: &str) -> Vec<u8> {
        let text = std::fs::read_to_string(fixture(name)).expect("fixture key is readable");
        let body: String = text.lines().filter(|line| !line.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).expect("fixture key is base64")
    }

    fn dev_settings() -> AuthSettings {
        AuthSettings { dev_key: Some(DEV_KEY.to_owned()), ..AuthSettings::default() }
    }

    fn jwks_settings() -> AuthSettings {
        AuthSettings { jwks_file: Some(fixture("jwks.json")), ..AuthSettings::default() }
    }

    fn verifier(settings: &AuthSettings) -> Verifier {
        Verifier::new(settings).expect("settings are valid")
    }

    fn principal(roles: &[Role], street: &str) -> Principal {
        Principal {
            subject: "u-1001".to_owned(),
            roles: roles.to_vec(),
            street: Some(street.to_owned()),
            community: Some("heping".to_owned()),
            grids: vec!["g-03".to_owned(), "g-07".to_owned()],
        }
    }

    /// Claims that pass every check of the default settings.
    fn claims() -> serde_json::Value {
        let now = unix_now();
        serde_json::json!({
            "sub": "u-1001", "iss": "civic", "aud": "civic", "iat": now, "exp": now + 600,
            "roles": ["grid_worker"], "street": "zhongjie", "grids": ["g-03"],
        })
    }

    fn sign(header: Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, claims, key).expect("token is signed")
    }

    fn dev_token(claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_secret(DEV_KEY.as_bytes()).expect("dev key is usable");
        sign(Header::new(Algorithm::HS256), claims, &key)
    }

    fn with_kid(alg: Algorithm, kid: &str) -> Header {
        Header { kid: Some(kid.to_owned()), ..Header::new(alg) }
    }

    fn rsa_key() -> EncodingKey {
        EncodingKey::from_rsa_der(&pem_der("rsa_private.pem"))
    }

    fn ec_key() -> EncodingKey {
        EncodingKey::from_ec_der(&pem_der("ec_private.pem"))
    }

    #[test]
    fn development_signing_never_stands_beside_production_keys() {
        let both = AuthSettings { jwks_file: Some(fixture("jwks.json")), ..dev_settings() };
        assert_eq!(both.validate().expect_err("dev key beside JWKS").0, "auth.dev_key");
        let dev_mode = AuthSettings { dev_mode: Some(true), ..jwks_settings() };
        assert_eq!(dev_mode.validate().expect_err("dev mode beside JWKS").0, "auth.dev_mode");
        let plain = AuthSettings { jwks_url: Some("http://idp.example/jwks.json".into()), ..Default::default() };
        assert_eq!(plain.validate().expect_err("plain http to another machine").0, "auth.jwks_url");
        let local = AuthSettings { jwks_url: Some("http://127.0.0.1:8081/jwks.json".into()), ..Default::default() };
        assert!(local.validate().is_ok(), "plain http to this machine is allowed");
        // With production keys only, an HS256 token has no key to be checked with.
        let signed_with_anything = dev_token(&claims());
        assert_eq!(
            rejected(&verifier(&jwks_settings()), &signed_with_anything).to_string(),
            "token algorithm is not accepted"
        );
    }

    #[test]
    fn token_lifetimes_are_bounded_when_minting_and_verifying() {
        let settings = AuthSettings { max_token_lifetime_seconds: 3600, ..dev_settings() };
        let who = principal(&[Role::Resident], "zhongjie");
        assert!(mint_dev_token(&settings, &who, Duration::from_secs(7200)).is_err(), "longer than allowed");
        assert!(mint_dev_token(&settings, &who, Duration::from_secs(3600)).is_ok());
        let verifier = verifier(&settings);
        let mut long = claims();
        long["exp"] = serde_json::json!(unix_now() + 7200);
        assert_eq!(rejected(&verifier, &dev_token(&long)).to_string(), "token is valid for longer than allowed");
        let mut future = claims();
        future["iat"] = serde_json::json!(unix_now() + 3000);
        future["exp"] = serde_json::json!(unix_now() + 3300);
        assert_eq!(rejected(&verifier, &dev_token(&future)).to_string(), "token was issued in the future");
        let mut no_iat = claims();
        no_iat.as_object_mut().expect("claims").remove("iat");
        assert_eq!(rejected(&verifier, &dev_token(&no_iat)).code(), Code::Unauthenticated);
    }

    /// The user a verified token speaks for.
    fn user(caller: Caller) -> Principal {
        caller.principal().cloned().expect("a user's token")
    }

    #[test]
    fn a_service_token_is_a_service_not_a_user() {
        let settings = dev_settings();
        let token = mint_service_token(&settings, "issues", Duration::from_secs(60)).expect("minted");
        let caller = verifier(&settings).verify(&token).expect("verifies");
        assert_eq!(caller.service().map(|s| s.service.as_str()), Some("issues"));
        assert!(caller.principal().is_none(), "no user's roles");
        assert_eq!(caller.key(), "services/issues");
        assert_eq!(caller.require().expect_err("not for a user's calls").code(), Code::PermissionDenied);
        assert!(caller.require_service(&["issues"]).is_ok());
        assert_eq!(caller.require_service(&["grid"]).expect_err("another service").code(), Code::PermissionDenied);
        let user_token =
            mint_dev_token(&settings, &principal(&[Role::Admin], "zhongjie"), Duration::from_secs(60)).expect("minted");
        let user_caller = verifier(&settings).verify(&user_token).expect("verifies");
        assert_eq!(user_caller.require_service(&["issues"]).expect_err("a user").code(), Code::PermissionDenied);
        let mut claims = claims();
        claims["service"] = serde_json::json!("Not A Service");
        assert_eq!(rejected(&verifier(&settings), &dev_token(&claims)).code(), Code::Unauthenticated);
    }

    /// The error of a verification expected to fail.
    fn rejected(verifier: &Verifier, token: &str) -> Error {
        verifier.verify(token).expect_err("token must be rejected")
    }

    #[test]
    fn dev_token_round_trips_into_the_principal() {
        let settings = dev_settings();
        let original = principal(&[Role::GridWorker, Role::Cadre], "zhongjie");
        let token = mint_dev_token(&settings, &original, Duration::from_secs(600)).expect("token is minted");
        let verified = user(verifier(&settings).verify(&token).expect("token verifies"));
        assert_eq!(verified, original);
        assert_eq!(verified.resource_name(), "users/u-1001");
        assert!(verified.is_staff_of("zhongjie"));
        assert!(!verified.is_staff_of("xijie"));
    }

    #[test]
    fn unknown_roles_are_dropped_not_fatal() {
        let mut claims = claims();
        claims["roles"] = serde_json::json!(["mayor", "resident", "resident"]);
        let verified = user(verifier(&dev_settings()).verify(&dev_token(&claims)).expect("token verifies"));
        assert_eq!(verified.roles, vec![Role::Resident]);
    }

    #[test]
    fn expired_token_is_unauthenticated() {
        let mut claims = claims();
        // Past the 30 s leeway.
        claims["exp"] = serde_json::json!(unix_now() - 120);
        let error = rejected(&verifier(&dev_settings()), &dev_token(&claims));
        assert_eq!(error.code(), Code::Unauthenticated);
        assert_eq!(error.to_string(), "token expired");
    }

    #[test]
    fn token_without_expiry_is_unauthenticated() {
        let mut claims = claims();
        claims.as_object_mut().expect("claims are an object").remove("exp");
        let error = rejected(&verifier(&dev_settings()), &dev_token(&claims));
        assert_eq!(error.code(), Code::Unauthenticated);
    }

    #[test]
    fn token_not_yet_valid_is_unauthenticated() {
        let mut claims = claims();
        claims["nbf"] = serde_json::json!(unix_now() + 3600);
        let error = rejected(&verifier(&dev_settings()), &dev_token(&claims));
        assert_eq!(error.code(), Code::Unauthenticated);
        assert_eq!(error.to_string(), "token is not valid yet");
    }

    #[test]
    fn token_signed_with_another_key_is_unauthenticated() {
        let other = EncodingKey::from_secret(b"another-key-of-at-least-32-bytes!!").expect("key is usable");
        let token = sign(Header::new(Algorithm::HS256), &claims(), &other);
        let error = rejected(&verifier(&dev_settings()), &token);
        assert_eq!(error.code(), Code::Unauthenticated);
        assert_eq!(error.to_string(), "bad token signature");
    }

    #[test]
    fn alg_none_token_is_unauthenticated() {
        let part = |json: &serde_json::Value| URL_SAFE_NO_PAD.encode(json.to_string());
        let token = format!("{}.{}.", part(&serde_json::json!({"alg": "none", "typ": "JWT"})), part(&claims()));
        let error = rejected(&verifier(&dev_settings()), &token);
        assert_eq!(error.code(), Code::Unauthenticated);
        assert!(!error.to_string().contains(&token), "the token is never echoed");
    }

    #[test]
    fn wrong_audience_is_unauthenticated() {
        let mut claims = claims();
        claims["aud"] = serde_json::json!(["billing"]);
        let error = rejected(&verifier(&dev_settings()), &dev_token(&claims));
        assert_eq!(error.code(), Code::Unauthenticated);
        assert_eq!(error.to_string(), "token audience is not accepted");
    }

    #[test]
    fn audience_list_containing_ours_is_accepted() {
        let mut claims = claims();
        claims["aud"] = serde_json::json!(["billing", "civic"]);
        assert!(verifier(&dev_settings()).verify(&dev_token(&claims)).is_ok());
    }

    #[test]
    fn wrong_issuer_is_unauthenticated() {
        let mut claims = claims();
        claims["iss"] = serde_json::json!("someone-else");
        let error = rejected(&verifier(&dev_settings()), &dev_token(&claims));
        assert_eq!(error.code(), Code::Unauthenticated);
        assert_eq!(error.to_string(), "token issuer is not accepted");
    }

    #[test]
    fn hs256_token_is_unauthenticated_when_only_jwks_is_configured() {
        // The classic confusion attack: the public key used as an HMAC secret, with its kid.
        let public = std::fs::read(fixture("jwks.json")).expect("jwks is readable");
        let key = EncodingKey::from_secret(&public).expect("key is usable");
        let token = sign(with_kid(Algorithm::HS256, RSA_KID), &claims(), &key);
        let error = rejected(&verifier(&jwks_settings()), &token);
        assert_eq!(error.code(), Code::Unauthenticated);
        assert_eq!(error.to_string(), "token algorithm is not accepted");
    }

    #[test]
    fn algorithm_outside_the_allow_list_is_unauthenticated() {
        // HS256 signed with the right dev key, but the allow-list leaves HS256 out.
        let settings = AuthSettings { algorithms: vec!["RS256".to_owned(), "ES256".to_owned()], ..dev_settings() };
        let error = rejected(&verifier(&settings), &dev_token(&claims()));
        assert_eq!(error.code(), Code::Unauthenticated);
        assert_eq!(error.to_string(), "token algorithm is not accepted");

        // HS512 with the dev key is never in the allow-list.
        let key = EncodingKey::from_secret(DEV_KEY.as_bytes()).expect("dev key is usable");
        let token = sign(Header::new(Algorithm::HS512), &claims(), &key);
        let error = rejected(&verifier(&dev_settings()), &token);
        assert_eq!(error.code(), Code::Unauthenticated);
    }

    #[test]
    fn rs256_and_es256_tokens_verify_against_the_jwks_file() {
        let verifier = verifier(&jwks_settings());
        for token in [
            sign(with_kid(Algorithm::RS256, RSA_KID), &claims(), &rsa_key()),
            sign(with_kid(Algorithm::ES256, EC_KID), &claims(), &ec_key()),
            // Without a kid, the only key of the token's algorithm is used.
            sign(Header::new(Algorithm::RS256), &claims(), &rsa_key()),
            sign(Header::new(Algorithm::ES256), &claims(), &ec_key()),
        ] {
            let verified = user(verifier.verify(&token).expect("token verifies"));
            assert_eq!(verified.subject, "u-1001");
            assert_eq!(verified.roles, vec![Role::GridWorker]);
            assert_eq!(verified.street.as_deref(), Some("zhongjie"));
            assert_eq!(verified.grids, vec!["g-03".to_owned()]);
        }
    }

    #[test]
    fn jwks_key_must_match_the_tokens_kid_and_algorithm() {
        let verifier = verifier(&jwks_settings());
        let unknown_kid = sign(with_kid(Algorithm::RS256, "retired-key"), &claims(), &rsa_key());
        let ec_token_naming_the_rsa_key = sign(with_kid(Algorithm::ES256, RSA_KID), &claims(), &ec_key());
        for token in [unknown_kid, ec_token_naming_the_rsa_key] {
            assert_eq!(rejected(&verifier, &token).code(), Code::Unauthenticated);
        }
        // A token tampered with after signing.
        let token = sign(with_kid(Algorithm::ES256, EC_KID), &claims(), &ec_key());
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims();
        forged["roles"] = serde_json::json!(["admin"]);
        let forged = URL_SAFE_NO_PAD.encode(forged.to_string());
        parts[1] = &forged;
        let error = rejected(&verifier, &parts.join("."));
        assert_eq!(error.code(), Code::Unauthenticated);
        assert_eq!(error.to_string(), "bad token signature");
    }

    #[test]
    fn jwks_file_problems_are_reported() {
        let missing = AuthSettings { jwks_file: Some(fixture("no-such-jwks.json")), ..AuthSettings::default() };
        let problem = Verifier::new(&missing).expect_err("a missing file is an error");
        assert!(problem.to_string().starts_with("auth.jwks_file"), "{problem}");
        assert!(problem.to_string().contains("no-such-jwks.json"), "{problem}");

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).expect("write jwks");
        let only_symmetric = AuthSettings { jwks_file: Some(path), ..AuthSettings::default() };
        let problem = Verifier::new(&only_symmetric).expect_err("no usable key is an error");
        assert!(problem.to_string().contains("no RS256 or ES256"), "{problem}");
    }

    #[test]
    fn caller_reads_the_authorization_metadata() {
        let verifier = verifier(&dev_settings());
        let caller = verifier.caller(&MetadataMap::new()).expect("no header is fine");
        assert!(matches!(caller, Caller::Anonymous));
        assert_eq!(caller.key(), "anonymous");

        let mut basic = MetadataMap::new();
        basic.insert("authorization", MetadataValue::from_static("Basic x"));
        assert_eq!(verifier.caller(&basic).expect_err("basic auth").code(), Code::Unauthenticated);

        let mut bearer = MetadataMap::new();
        let value = format!("Bearer {}", dev_token(&claims()));
        bearer.insert("authorization", value.parse().expect("ascii value"));
        let caller = verifier.caller(&bearer).expect("valid token");
        assert_eq!(caller.key(), "users/u-1001");

        bearer.append("authorization", value.parse().expect("ascii value"));
        assert_eq!(verifier.caller(&bearer).expect_err("two headers").code(), Code::Unauthenticated);
    }

    #[test]
    fn caller_from_headers_reads_the_authorization_header() {
        let verifier = verifier(&dev_settings());
        let caller = verifier.caller_from_headers(&http::HeaderMap::new()).expect("no header is fine");
        assert!(caller.principal().is_none());

        let mut headers = http::HeaderMap::new();
        let value = format!("bearer {}", dev_token(&claims()));
        headers.insert(http::header::AUTHORIZATION, value.parse().expect("ascii value"));
        let caller = verifier.caller_from_headers(&headers).expect("valid token");
        assert_eq!(caller.principal().map(|p| p.subject.as_str()), Some("u-1001"));

        for bad in ["Bearer", "Bearer ", "Basic x", "Bearer not.a.jwt"] {
            headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static(bad));
            let error = verifier.caller_from_headers(&headers).expect_err("malformed header");
            assert_eq!(error.code(), Code::Unauthenticated, "{bad}");
        }
    }

    #[test]
    fn require_role_in_checks_the_role_and_the_street() {
        let allowed = [Role::Cadre, Role::Admin];

        let error = Caller::Anonymous.require_role_in("zhongjie", &allowed).expect_err("anonymous");
        assert_eq!(error.code(), Code::Unauthenticated);

        let resident = Caller::Principal(principal(&[Role::Resident], "zhongjie"));
        let error = resident.require_role_in("zhongjie", &allowed).expect_err("resident");
        assert_eq!(error.code(), Code::PermissionDenied);

        let other_street = Caller::Principal(principal(&[Role::Cadre], "xijie"));
        let error = other_street.require_role_in("zhongjie", &allowed).expect_err("other street");
        assert_eq!(error.code(), Code::PermissionDenied);

        let admin = Caller::Principal(principal(&[Role::Admin], "zhongjie"));
        let granted = admin.require_role_in("zhongjie", &allowed).expect("admin of the street");
        assert_eq!(granted.subject, "u-1001");
    }

    #[test]
    fn validate_names_the_offending_setting() {
        assert_eq!(AuthSettings::default().validate(), Ok(()));
        assert_eq!(dev_settings().validate(), Ok(()));

        let short = AuthSettings { dev_key: Some("too-short".to_owned()), ..AuthSettings::default() };
        let (key, _) = short.validate().expect_err("short dev key");
        assert_eq!(key, "auth.dev_key");

        let none = AuthSettings { algorithms: vec!["HS256".to_owned(), "none".to_owned()], ..AuthSettings::default() };
        let (key, problem) = none.validate().expect_err("none algorithm");
        assert_eq!(key, "auth.algorithms");
        assert!(problem.to_string().contains("none"), "{problem}");

        let unsupported = AuthSettings { algorithms: vec!["PS256".to_owned()], ..AuthSettings::default() };
        assert_eq!(unsupported.validate().expect_err("unsupported").0, "auth.algorithms");
    }

    #[test]
    fn mint_needs_a_dev_key() {
        let problem = mint_dev_token(
            &AuthSettings::default(),
            &principal(&[Role::Resident], "zhongjie"),
            Duration::from_secs(60),
        )
        .expect_err("no dev key");
        assert!(problem.to_string().contains("auth.dev_key"), "{problem}");
    }

    #[test]
    fn roles_parse_from_their_snake_case_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).expect("role serialises");
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
        let problem = "GridWorker".parse::<Role>().expect_err("not snake case");
        assert!(problem.to_string().contains("grid_worker"), "{problem}");
    }

    /// Serves `body` at `/jwks.json` on a loopback port for as long as the test runs.
    async fn serve_jwks(body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/jwks.json", axum::routing::get(move || std::future::ready(body.clone())));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/jwks.json")
    }

    #[tokio::test]
    async fn keys_fetched_from_a_jwks_url_verify_tokens() {
        let url = serve_jwks(std::fs::read(fixture("jwks.json")).expect("jwks")).await;
        let settings = AuthSettings { jwks_url: Some(url), ..AuthSettings::default() };
        let verifier = Verifier::start(&settings).await.expect("keys fetched");
        let key = EncodingKey::from_rsa_der(&pem_der("rsa_private.pem"));
        let token = sign(with_kid(Algorithm::RS256, RSA_KID), &claims(), &key);
        assert_eq!(user(verifier.verify(&token).expect("verified")).subject, "u-1001");
        let forged = sign(with_kid(Algorithm::RS256, "someone-else"), &claims(), &key);
        assert_eq!(rejected(&verifier, &forged).code(), Code::Unauthenticated);
    }

    #[tokio::test]
    async fn an_unusable_jwks_url_fails_at_start_naming_the_setting() {
        let url = serve_jwks(b"not json".to_vec()).await;
        let settings = AuthSettings { jwks_url: Some(url), ..AuthSettings::default() };
        let problem = Verifier::start(&settings).await.expect_err("no keys");
        assert!(problem.to_string().starts_with("auth.jwks_url"), "{problem}");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/jwks.json", closed.local_addr().expect("addr"));
        drop(closed);
        let settings = AuthSettings { jwks_url: Some(url), ..AuthSettings::default() };
        assert!(Verifier::start(&settings).await.expect_err("refused").to_string().starts_with("auth.jwks_url"));
        let both = AuthSettings { jwks_url: Some("https://idp/jwks".into()), ..jwks_settings() };
        assert_eq!(both.validate().expect_err("both").0, "auth.jwks_url");
    }
}
