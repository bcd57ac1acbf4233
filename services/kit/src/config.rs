//! Configuration: defaults → a TOML file → `CIVIC_…` environment variables (nested keys with a
//! double underscore: `CIVIC_AUTH__DEV_KEY` sets `auth.dev_key`) → command-line flags. Validated
//! once at start; a bad value is reported with the key that holds it and where it came from.
//!
//! [`Config`] holds what the whole process shares. Each service owns a section of its own,
//! `[<service>]`, which only the service reads (through [`Section`]) and validates: the config
//! knows the sections' names, so that an unknown top-level key is still an error naming it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
pub use figment::value::Value;
use serde::{Deserialize, Serialize};

use crate::auth::AuthSettings;
use crate::calendar::CalendarSettings;

/// The whole configuration of a civic process. Every field has a default that runs a laptop
/// demo; `civic config` prints the effective values.
///
/// Unknown keys are errors: inside a section serde refuses them, and at the top level
/// [`Config::load`] does, since the services' sections sit beside these keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the embedded SQLite files and local secrets live.
    pub data_dir: PathBuf,
    /// The address the gRPC server listens on (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// The address of the HTTP listener: metrics, health probes and (with the gateway) the API.
    pub http_addr: SocketAddr,
    /// The database: empty for an SQLite file per service under `data_dir`, or a
    /// `postgres://` URL, where each service keeps its tables in a schema of its own.
    pub database_url: String,
    /// NATS with JetStream for events between processes (`nats://host:4222`); empty for the
    /// in-process bus, which only the all-in-one target may use.
    pub nats_url: String,
    /// The JetStream stream that holds civic's events (several deployments may share a NATS
    /// cluster with streams and subject prefixes of their own).
    pub nats_stream: String,
    /// The prefix of civic's NATS subjects: events go to `{prefix}.{topic}`.
    pub nats_subject_prefix: String,
    /// How long the NATS stream keeps an event, in hours (its `max_age`), set when civic makes the
    /// stream or finds it without one.
    pub nats_max_age_hours: u64,
    /// The secret that signs page tokens, at least 32 bytes. Replicas of a service must share
    /// it. When empty, a random one is made once and kept in `data_dir/secret.key`.
    pub secret_key: String,
    /// Logging.
    pub log: LogSettings,
    /// Token verification.
    pub auth: AuthSettings,
    /// The server stack's limits.
    pub server: ServerSettings,
    /// Working days, for deadlines.
    pub calendar: CalendarSettings,
    /// The HTTP API's edge policy.
    pub gateway: GatewaySettings,
    /// Where the services of a split deployment are, and how this process calls them.
    pub directory: DirectorySettings,
    /// Every source as loaded, for the services' own sections.
    #[serde(skip)]
    sources: Figment,
}

/// The edge policy of the HTTP API (`[gateway]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Requests per second each authenticated principal may make on average; 0 turns the
    /// limit off.
    pub rate_per_second: f64,
    /// How many requests a principal may make at once above the average.
    pub burst: u32,
    /// Requests per second each client address may make without a token; 0 turns the limit off.
    pub address_rate_per_second: f64,
    /// How many requests an address may make at once above the average.
    pub address_burst: u32,
    /// The total time a request may take, in milliseconds, passed on as the gRPC deadline.
    pub request_timeout_ms: u64,
    /// Origins allowed to call the API from a browser; `*` allows any.
    pub cors_origins: Vec<String>,
    /// The Open311 GeoReport v2 interface at `/open311/v2/`.
    pub open311: Open311Settings,
}

/// The Open311 GeoReport v2 interface (`[gateway.open311]`): the street's issue categories and
/// published service items as Open311 services, its issues as service requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Open311Settings {
    /// The streets served (their ids): any other `jurisdiction_id` is not found.
    pub jurisdictions: Vec<String>,
    /// The street a request without `jurisdiction_id` is for: one of `jurisdictions`.
    pub default_jurisdiction: String,
    /// The interface's public URL (`https://civic.example.gov.cn/open311/v2`), as discovery
    /// tells it; empty: made from the request's `Host`.
    pub base_url: String,
    /// Who to contact about the interface, as discovery tells clients.
    pub contact: String,
    /// The clients allowed to file requests: each API key and the principal it acts as.
    pub clients: Vec<Open311Client>,
}

impl Default for Open311Settings {
    fn default() -> Self {
        Self {
            jurisdictions: vec!["zhongjie".into()],
            default_jurisdiction: "zhongjie".into(),
            base_url: String::new(),
            contact: String::new(),
            clients: Vec::new(),
        }
    }
}

/// An Open311 client: its API key (only the key's hash is configured) and the service
/// principal its requests are filed as — one of `issues.platform_services`, so its requests
/// are work orders of that platform, and it reads back the ones it filed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Open311Client {
    /// The service principal (`city_platform`): the `service` claim of its tokens.
    pub service: String,
    /// The SHA-256 of the API key, 64 hex digits (`printf %s "$KEY" | sha256sum`).
    pub api_key_sha256: String,
    /// A file holding the principal's current token, kept fresh by the identity provider's
    /// tooling. Without it the token is minted with `auth.dev_key` (development only).
    pub token_file: Option<PathBuf>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            rate_per_second: 50.0,
            burst: 100,
            address_rate_per_second: 50.0,
            address_burst: 100,
            request_timeout_ms: 15_000,
            cors_origins: Vec::new(),
            open311: Open311Settings::default(),
        }
    }
}

/// Where the services of a split deployment are, and how a process calls them on its own behalf
/// (`[directory]`). The gateway and every service that calls another share it. In the
/// all-in-one process every service is in-process and none of it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectorySettings {
    /// Each service's gRPC URLs, by the service's name: `catalogue = ["http://civic-catalogue:50051"]`.
    /// Host names are resolved again every `resolve_every_ms` and calls are balanced over every
    /// address (a Kubernetes headless Service lists every replica).
    pub addresses: BTreeMap<String, Vec<String>>,
    /// The URL of a service that `addresses` does not list, `{service}` standing for its name:
    /// `http://civic-{service}:50051` matches the Kubernetes manifests. Empty: such a service
    /// cannot be called.
    pub address_template: String,
    /// How often host names are resolved again, in milliseconds.
    pub resolve_every_ms: u64,
    /// How this process proves who it is when it calls another service on its own behalf (a
    /// background job, not a user's request): a file holding a bearer token, read again when
    /// it changes (a token a sidecar or the platform keeps fresh).
    pub token_file: Option<PathBuf>,
    /// Or: the identity provider's token endpoint (`https://…/token`), asked for a token with
    /// the OAuth 2.0 client-credentials grant, again before each one expires.
    pub token_url: Option<String>,
    /// The client id for `token_url`.
    pub client_id: String,
    /// The client secret for `token_url`. Never printed.
    pub client_secret: String,
    /// The scope asked for at `token_url`; empty asks for none.
    pub scope: String,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        Self {
            addresses: BTreeMap::new(),
            address_template: String::new(),
            resolve_every_ms: 10_000,
            token_file: None,
            token_url: None,
            client_id: String::new(),
            client_secret: String::new(),
            scope: String::new(),
        }
    }
}

impl DirectorySettings {
    /// The URLs of `service`'s replicas: its entry in `addresses`, else the template filled in.
    pub fn urls(&self, service: &str) -> Option<Vec<String>> {
        match self.addresses.get(service) {
            Some(urls) => Some(urls.clone()),
            None if !self.address_template.is_empty() => {
                Some(vec![self.address_template.replace("{service}", service)])
            }
            None => None,
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `pretty` for people, `json` for collectors.
    pub format: LogFormat,
    /// A tracing filter, such as `info` or `info,civic_catalogue=debug`.
    pub level: String,
}

/// The log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object a line.
    Json,
}

/// Limits of the gRPC server stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// The longest a request may run, in milliseconds; a shorter `grpc-timeout` wins.
    pub request_timeout_ms: u64,
    /// Requests served at once; more are refused at once (load shedding) rather than queued.
    pub concurrency_limit: usize,
    /// Connections per database pool.
    pub db_max_connections: u32,
    /// How often the relay looks for events written by other replicas, in milliseconds.
    pub outbox_poll_ms: u64,
    /// How long shutdown waits for requests in flight, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// How long published events stay in the outbox, in hours, for looking into what was sent;
    /// older ones are deleted every five minutes. Events still to publish are never deleted.
    pub outbox_retention_hours: u64,
    /// How long the answer to a request with a `request_id` is kept for its retries, in hours.
    pub idempotency_retention_hours: u64,
    /// How long the record of an applied event is kept, in hours: longer than any event can
    /// come again (the NATS stream keeps events `nats_max_age_hours`).
    pub inbox_retention_hours: u64,
    /// How many times the relay offers an event before it sets it aside as a dead letter (the
    /// bus refused it for good, or a consumer in this process kept failing on it), so that
    /// later events flow on. `civic events dead-letters` lists them; `civic events replay` sends
    /// one again.
    pub dead_letter_after_attempts: u32,
    /// Streams (watches) open at once in this process, at most.
    pub max_streams: usize,
    /// Streams one caller (a user, a service, or an anonymous address) may hold open at once.
    pub max_streams_per_caller: usize,
    /// The longest a stream stays open, in seconds; then it ends, and the client watches again.
    pub stream_lifetime_seconds: u64,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs, such as the cluster's pod range), so
    /// that clients behind them are told apart; everyone else is known by the connection's own
    /// address.
    pub trusted_proxies: Vec<String>,
    /// Whether a caller's W3C `traceparent` is continued (its trace id, and its choice to sample);
    /// off, every request arriving here starts a trace of its own. Turn it off where callers
    /// are outside the operator's control.
    pub trust_traceparent: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: String::new(),
            nats_url: String::new(),
            nats_stream: "CIVIC".into(),
            nats_subject_prefix: "civic".into(),
            nats_max_age_hours: 3 * 24,
            secret_key: String::new(),
            log: LogSettings::default(),
            auth: AuthSettings::default(),
            server: ServerSettings::default(),
            calendar: CalendarSettings::default(),
            gateway: GatewaySettings::default(),
            directory: DirectorySettings::default(),
            sources: Figment::new(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Pretty, level: "info".into() }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            concurrency_limit: 1024,
            db_max_connections: 8,
            outbox_poll_ms: 500,
            shutdown_grace_ms: 10_000,
            outbox_retention_hours: 24,
            idempotency_retention_hours: 24,
            inbox_retention_hours: 7 * 24,
            dead_letter_after_attempts: 10,
            max_streams: 1000,
            max_streams_per_caller: 16,
            stream_lifetime_seconds: 3600,
            trusted_proxies: Vec::new(),
            trust_traceparent: true,
        }
    }
}

/// A configuration that cannot be used: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad configuration: `{key}`: {message}")]
pub struct ConfigError {
    /// The dotted key, such as `server.request_timeout_ms`.
    pub key: String,
    /// What is wrong, and where the value came from when known.
    pub message: String,
}

/// The top-level keys, so that unrelated `CIVIC_…` variables (a test's, a shell's) are not read.
const KEYS: &[&str] = &[
    "data_dir",
    "grpc_addr",
    "http_addr",
    "database_url",
    "nats_url",
    "nats_stream",
    "nats_subject_prefix",
    "nats_max_age_hours",
    "secret_key",
    "log",
    "auth",
    "server",
    "calendar",
    "gateway",
    "directory",
];

impl Config {
    /// Loads the configuration: defaults, then `file` when given (it must exist), then the
    /// environment, then `overrides` (command-line flags; only the keys they hold), validated.
    /// `sections` names the services' own sections, which may stand beside the process-wide keys
    /// (each service validates its own, see [`Config::section`]).
    pub fn load(file: Option<&Path>, overrides: &figment::value::Dict, sections: &[&str]) -> Result<Self, ConfigError> {
        Self::load_from(file, overrides, sections, Env::prefixed("CIVIC_"))
    }

    /// [`Config::load`] with the environment provider given, for tests.
    pub fn load_from(
        file: Option<&Path>,
        overrides: &figment::value::Dict,
        sections: &[&str],
        env: Env,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError {
                    key: "--config".into(),
                    message: format!("no such file: {}", file.display()),
                });
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let known: Vec<String> = KEYS.iter().chain(sections).map(|k| (*k).to_owned()).collect();
        let env = env.split("__").filter(move |k| {
            let key = k.as_str().to_ascii_lowercase();
            known.iter().any(|top| key == *top || key.starts_with(&format!("{top}.")))
        });
        figment = figment.merge(env).merge(Serialized::globals(overrides.clone()));
        let top: BTreeMap<String, figment::value::Value> = figment.extract().map_err(config_error)?;
        if let Some((key, value)) =
            top.iter().find(|(k, _)| !KEYS.contains(&k.as_str()) && !sections.contains(&k.as_str()))
        {
            let from = figment.find_metadata(key).map(|m| format!(" (from {})", m.name)).unwrap_or_default();
            let message = if value.as_dict().is_some() {
                format!("is not a section civic knows (the services are {}){from}", sections.join(", "))
            } else {
                format!("is not a setting civic knows{from}")
            };
            return Err(ConfigError { key: key.clone(), message });
        }
        let mut config: Config = figment.extract().map_err(config_error)?;
        config.sources = figment;
        config.validate()?;
        for service in config.directory.addresses.keys() {
            if !sections.is_empty() && !sections.contains(&service.as_str()) {
                return Err(ConfigError {
                    key: format!("directory.addresses.{service}"),
                    message: format!("is not a service (the services are {})", sections.join(", ")),
                });
            }
        }
        Ok(config)
    }

    /// The section `[name]` of a service, as loaded (empty for a configuration made in code;
    /// see [`Config::set`]).
    pub fn section(&self, name: &str) -> Section {
        Section { name: name.to_owned(), figment: self.sources.focus(name) }
    }

    /// Sets `key` (dotted, such as `catalogue.item_cache_ttl_ms`) to `value` over every source:
    /// for a configuration made in code, as tests make theirs.
    pub fn set(&mut self, key: &str, value: impl Serialize) {
        let sources = std::mem::take(&mut self.sources);
        self.sources = sources.merge(Serialized::global(key, value));
    }

    /// Checks the values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| Err(ConfigError { key: key.into(), message: message.into() });
        if !self.database_url.is_empty()
            && !["sqlite:", "postgres:", "postgresql:"].iter().any(|p| self.database_url.starts_with(p))
        {
            return bad("database_url", "must be empty (embedded SQLite) or start with sqlite: or postgres:");
        }
        if !self.nats_url.is_empty() && !self.nats_url.starts_with("nats://") {
            return bad("nats_url", "must be empty (in-process events) or start with nats://");
        }
        let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !token(&self.nats_stream) {
            return bad("nats_stream", "must be letters, digits, '-' or '_'");
        }
        if !token(&self.nats_subject_prefix) {
            return bad("nats_subject_prefix", "must be letters, digits, '-' or '_'");
        }
        if !self.secret_key.is_empty() && self.secret_key.len() < 32 {
            return bad("secret_key", "must be at least 32 bytes");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad("log.level", "is not a tracing filter (for example `info` or `info,civic_kit=debug`)");
        }
        if self.server.request_timeout_ms == 0 {
            return bad("server.request_timeout_ms", "must be greater than 0");
        }
        if self.server.concurrency_limit == 0 {
            return bad("server.concurrency_limit", "must be greater than 0");
        }
        if self.server.db_max_connections == 0 {
            return bad("server.db_max_connections", "must be greater than 0");
        }
        if self.server.outbox_poll_ms == 0 {
            return bad("server.outbox_poll_ms", "must be greater than 0");
        }
        if let Err(why) = crate::client::TrustedProxies::parse(&self.server.trusted_proxies) {
            return Err(ConfigError { key: "server.trusted_proxies".into(), message: why });
        }
        if self.server.max_streams == 0 || self.server.max_streams_per_caller == 0 {
            return bad("server.max_streams", "and server.max_streams_per_caller must be greater than 0");
        }
        if self.server.stream_lifetime_seconds == 0 {
            return bad("server.stream_lifetime_seconds", "must be greater than 0");
        }
        if self.server.dead_letter_after_attempts == 0 {
            return bad("server.dead_letter_after_attempts", "must be greater than 0");
        }
        if self.nats_max_age_hours == 0 {
            return bad("nats_max_age_hours", "must be greater than 0");
        }
        if self.server.inbox_retention_hours <= self.nats_max_age_hours {
            return bad(
                "server.inbox_retention_hours",
                "must be longer than nats_max_age_hours, or an event could come again after its record is gone",
            );
        }
        if !(self.gateway.rate_per_second >= 0.0 && self.gateway.rate_per_second.is_finite()) {
            return bad("gateway.rate_per_second", "must be 0 (no limit) or more");
        }
        if !(self.gateway.address_rate_per_second >= 0.0 && self.gateway.address_rate_per_second.is_finite()) {
            return bad("gateway.address_rate_per_second", "must be 0 (no limit) or more");
        }
        for (service, urls) in &self.directory.addresses {
            if urls.is_empty() || urls.iter().any(|u| !u.starts_with("http://")) {
                return Err(ConfigError {
                    key: format!("directory.addresses.{service}"),
                    message: "must list one or more URLs starting with http:// (plaintext gRPC inside the cluster)"
                        .into(),
                });
            }
        }
        let template = &self.directory.address_template;
        let template_ok = template.starts_with("http://") && template.contains("{service}");
        if !template.is_empty() && !template_ok {
            return bad("directory.address_template", "must start with http:// and hold {service}");
        }
        if self.directory.resolve_every_ms == 0 {
            return bad("directory.resolve_every_ms", "must be greater than 0");
        }
        if let Some(url) = &self.directory.token_url {
            if !url.starts_with("https://") && !is_loopback_http(url) {
                return bad("directory.token_url", "must be an https:// URL (plain http only to this machine)");
            }
            if self.directory.client_id.is_empty() || self.directory.client_secret.is_empty() {
                return bad("directory.token_url", "needs directory.client_id and directory.client_secret");
            }
            if self.directory.token_file.is_some() {
                return bad("directory.token_url", "set either directory.token_file or directory.token_url, not both");
            }
        }
        let open311 = &self.gateway.open311;
        if open311.jurisdictions.len() > 100 || open311.jurisdictions.iter().any(|j| !crate::names::is_valid_id(j)) {
            return bad("gateway.open311.jurisdictions", "at most 100 streets' ids");
        }
        if !open311.default_jurisdiction.is_empty() && !open311.jurisdictions.contains(&open311.default_jurisdiction) {
            return bad(
                "gateway.open311.default_jurisdiction",
                "must be one of gateway.open311.jurisdictions (or empty)",
            );
        }
        let base = &open311.base_url;
        if !base.is_empty()
            && (!(base.starts_with("https://") || base.starts_with("http://"))
                || base.len() > 200
                || base.ends_with('/')
                || base.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return bad("gateway.open311.base_url", "an http(s) URL of at most 200 characters, without a trailing /");
        }
        if open311.contact.chars().count() > 200 {
            return bad("gateway.open311.contact", "at most 200 characters");
        }
        if open311.clients.len() > 100 {
            return bad("gateway.open311.clients", "at most 100 clients");
        }
        let mut hashes = std::collections::BTreeSet::new();
        let mut services = std::collections::BTreeSet::new();
        for client in &open311.clients {
            if !services.insert(client.service.as_str()) {
                return bad(
                    "gateway.open311.clients.service",
                    "two clients act as the same principal: they would read each other's requests",
                );
            }
            if !crate::names::is_valid_id(&client.service.replace('_', "-")) {
                return bad("gateway.open311.clients.service", "must be a service principal's name");
            }
            let hash = &client.api_key_sha256;
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad("gateway.open311.clients.api_key_sha256", "must be 64 hex digits: the key's SHA-256");
            }
            if !hashes.insert(hash.to_ascii_lowercase()) {
                return bad("gateway.open311.clients.api_key_sha256", "two clients have the same key");
            }
            if client.token_file.is_none() && self.auth.dev_key.is_none() {
                return bad(
                    "gateway.open311.clients.token_file",
                    "is required (a token can be minted only with auth.dev_key, in development)",
                );
            }
        }
        if self.gateway.request_timeout_ms == 0 {
            return bad("gateway.request_timeout_ms", "must be greater than 0");
        }
        if !(-14..=14).contains(&self.calendar.utc_offset_hours) {
            return bad("calendar.utc_offset_hours", "must be between -14 and 14");
        }
        if let Err(message) = self.calendar.periods() {
            return bad("calendar.working_hours", &message);
        }
        self.auth.validate().map_err(|(key, message)| ConfigError { key, message })
    }

    /// The database URL of `service`: the configured one, or its SQLite file under `data_dir`.
    pub fn database_url_for(&self, service: &str) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join(format!("{service}.db")).display())
        } else {
            self.database_url.clone()
        }
    }

    /// The page-token secret: the configured one, or the one kept in `data_dir/secret.key` (made
    /// on first use). Split mode must configure it, since replicas don't share a data directory.
    pub fn secret(&self) -> std::io::Result<Vec<u8>> {
        if !self.secret_key.is_empty() {
            return Ok(self.secret_key.as_bytes().to_vec());
        }
        self.local_key("secret.key")
    }

    /// The key of development mode when `auth.dev_key` is unset: `data_dir/dev.key`, made on first
    /// use — a key of its own, never the page-token secret.
    pub fn dev_key(&self) -> std::io::Result<String> {
        self.local_key("dev.key").map(|key| String::from_utf8_lossy(&key).into_owned())
    }

    /// A random 32-byte key kept (hex) in `data_dir/name`; see [`local_key`].
    fn local_key(&self, name: &str) -> std::io::Result<Vec<u8>> {
        local_key(&self.data_dir, name)
    }
}

/// A figment error as the key it concerns and what is wrong, with the value's source.
fn config_error(e: figment::Error) -> ConfigError {
    let key = if e.path.is_empty() { "(file)".to_owned() } else { e.path.join(".") };
    let from = e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
    ConfigError { key, message: format!("{}{from}", e.kind) }
}

/// A random 32-byte key kept (hex) in `dir/name`, readable by its owner only; made when missing
/// or too short. For what an embedded installation keeps beside its data.
pub fn local_key(dir: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(key) if key.len() >= 32 => Ok(key),
        _ => {
            let key: [u8; 32] = rand::random();
            let text = key.iter().map(|b| format!("{b:02x}")).collect::<String>();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            // An older file keeps its mode when opened: make it the owner's alone.
            #[cfg(unix)]
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            Ok(text.into_bytes())
        }
    }
}

/// `url` with its credentials hidden — the password of `user:password@` (a NATS URL's token), and the values of
/// `password`, `token` and `secret` query parameters — for printing.
pub fn redacted_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains('/') => {
                let user = match user.split_once(':') {
                    Some((name, _)) => format!("{name}:(hidden)"),
                    // NATS takes a token alone where others put a user name.
                    None if scheme == "nats" => "(hidden)".to_owned(),
                    None => user.to_owned(),
                };
                format!("{scheme}://{user}@{host}")
            }
            _ => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _))
                    if ["password", "pass", "pwd", "token", "secret"].contains(&key.to_ascii_lowercase().as_str()) =>
                {
                    format!("{key}=(hidden)")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Whether `url` is plain http to this machine (127.0.0.0/8, ::1 or localhost), where no one
/// else can listen in.
pub fn is_loopback_http(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else { return false };
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    uri.scheme_str() == Some("http")
        && (host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

/// One service's own section of the configuration, `[<service>]`: defaults, the file, the
/// environment (`CIVIC_<SERVICE>__…`) and flags, as for the rest.
#[derive(Debug, Clone)]
pub struct Section {
    name: String,
    figment: Figment,
}

impl Section {
    /// The section's settings: `T`'s defaults where the sources are silent. `T` should be
    /// `#[serde(default, deny_unknown_fields)]`, so that an unknown key is an error naming it; an
    /// error names the key in full (`catalogue.item_cache_ttl_ms`).
    pub fn extract<T: serde::de::DeserializeOwned + Serialize + Default>(&self) -> Result<T, ConfigError> {
        Figment::from(Serialized::defaults(T::default())).merge(self.figment.clone()).extract().map_err(|e| {
            let mut error = config_error(e);
            error.key = if error.key == "(file)" { self.name.clone() } else { format!("{}.{}", self.name, error.key) };
            error
        })
    }

    /// The section's settings as `T` reads them, as a value: for `civic config`, and to check
    /// them at start.
    pub fn effective<T: serde::de::DeserializeOwned + Serialize + Default>(&self) -> Result<Value, ConfigError> {
        let settings: T = self.extract()?;
        Value::serialize(&settings).map_err(|e| ConfigError { key: self.name.clone(), message: e.to_string() })
    }

    /// The section's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::value::Dict;

    /// The environment as these tests see it: a prefix nothing sets, since the one test that
    /// sets variables (inside figment's Jail) runs beside them in the same process.
    /// The services' sections these tests know.
    const SERVICES: &[&str] = &["catalogue"];

    fn env() -> Env {
        Env::prefixed("CIVIC_UNSET_IN_TESTS_")
    }

    fn load_toml(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("civic.toml");
        std::fs::write(&path, toml).expect("write config");
        Config::load_from(Some(&path), &Dict::new(), SERVICES, env())
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load_from(None, &Dict::new(), SERVICES, env()).expect("defaults load");
        assert_eq!(config.grpc_addr.port(), 50051);
        assert_eq!(config.log.format, LogFormat::Pretty);
    }

    #[test]
    fn a_wrongly_typed_value_names_its_key() {
        let err = load_toml("[server]\nrequest_timeout_ms = \"soon\"\n").expect_err("must fail");
        assert_eq!(err.key, "server.request_timeout_ms");
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = load_toml("[server]\nrequest_timeout = 5\n").expect_err("must fail");
        assert_eq!(err.key, "server.request_timeout", "{err}");
    }

    #[test]
    fn a_bad_address_names_its_key() {
        let err = load_toml("grpc_addr = \"localhost\"\n").expect_err("must fail");
        assert_eq!(err.key, "grpc_addr");
    }

    #[test]
    fn a_value_that_parses_but_cannot_work_names_its_key() {
        let err = load_toml("[server]\nconcurrency_limit = 0\n").expect_err("must fail");
        assert_eq!(err.key, "server.concurrency_limit");
        let err = load_toml("database_url = \"mysql://x\"\n").expect_err("must fail");
        assert_eq!(err.key, "database_url");
        let err = load_toml("[log]\nformat = \"xml\"\n").expect_err("must fail");
        assert_eq!(err.key, "log.format");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("civic.toml");
        std::fs::write(&path, "grpc_addr = \"127.0.0.1:6000\"\n").expect("write config");
        let mut flags = Dict::new();
        flags.insert("grpc_addr".into(), "127.0.0.1:7000".into());
        let config = Config::load_from(Some(&path), &flags, SERVICES, env()).expect("load");
        assert_eq!(config.grpc_addr.port(), 7000);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type, not ours
    fn an_environment_variable_names_its_key_and_source() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CIVIC_SERVER__OUTBOX_POLL_MS", "often");
            jail.set_env("CIVIC_TEST_SOMETHING_ELSE", "ignored");
            let err = Config::load_from(None, &Dict::new(), SERVICES, Env::prefixed("CIVIC_")).expect_err("must fail");
            assert_eq!(err.key, "server.outbox_poll_ms");
            assert!(err.message.contains("CIVIC_"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type, not ours
    fn service_addresses_come_from_the_environment_as_in_the_kubernetes_manifests() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CIVIC_DIRECTORY__ADDRESS_TEMPLATE", "http://civic-{service}:50051");
            jail.set_env("CIVIC_GATEWAY__ADDRESS_RATE_PER_SECOND", "7");
            let config = Config::load_from(None, &Dict::new(), SERVICES, Env::prefixed("CIVIC_")).expect("loads");
            assert_eq!(config.directory.urls("catalogue"), Some(vec!["http://civic-catalogue:50051".to_owned()]));
            assert_eq!(config.gateway.address_rate_per_second, 7.0);
            jail.set_env("CIVIC_DIRECTORY__ADDRESSES__CATALOGUE", r#"["http://10.0.0.7:50051"]"#);
            let config = Config::load_from(None, &Dict::new(), SERVICES, Env::prefixed("CIVIC_")).expect("loads");
            assert_eq!(config.directory.urls("catalogue"), Some(vec!["http://10.0.0.7:50051".to_owned()]));
            jail.set_env("CIVIC_DIRECTORY__ADDRESSES__CATALOGUE", r#"["grpc://x"]"#);
            let err = Config::load_from(None, &Dict::new(), SERVICES, Env::prefixed("CIVIC_")).expect_err("must fail");
            assert_eq!(err.key, "directory.addresses.catalogue");
            jail.set_env("CIVIC_DIRECTORY__ADDRESSES__CATALOGUE", r#"["http://x:1"]"#);
            jail.set_env("CIVIC_DIRECTORY__ADDRESSES__CATALOG", r#"["http://x:1"]"#);
            let err = Config::load_from(None, &Dict::new(), SERVICES, Env::prefixed("CIVIC_")).expect_err("must fail");
            assert_eq!(err.key, "directory.addresses.catalog", "a misspelt service is named");
            Ok(())
        });
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct CatalogueSettings {
        cache_ms: u64,
    }

    #[test]
    fn a_service_section_is_its_own_and_its_keys_are_named_in_full() {
        let config = load_toml("[catalogue]\ncache_ms = 250\n").expect("a known section loads");
        assert_eq!(
            config.section("catalogue").extract::<CatalogueSettings>().expect("valid"),
            CatalogueSettings { cache_ms: 250 }
        );
        let empty = load_toml("").expect("loads");
        assert_eq!(
            empty.section("catalogue").extract::<CatalogueSettings>().expect("defaults"),
            CatalogueSettings::default()
        );

        let config = load_toml("[catalogue]\ncache = 250\n").expect("the service checks its own keys");
        let err = config.section("catalogue").extract::<CatalogueSettings>().expect_err("unknown key");
        assert_eq!(err.key, "catalogue.cache");
        let config = load_toml("[catalogue]\ncache_ms = \"soon\"\n").expect("loads");
        let err = config.section("catalogue").extract::<CatalogueSettings>().expect_err("wrong type");
        assert_eq!(err.key, "catalogue.cache_ms");

        let err = load_toml("[catalog]\ncache_ms = 1\n").expect_err("an unknown section");
        assert_eq!(err.key, "catalog");
        assert!(err.message.contains("catalogue"), "{err}");
        let err = load_toml("verbose = true\n").expect_err("an unknown top-level key");
        assert_eq!(err.key, "verbose");

        let mut config = Config::default();
        config.set("catalogue.cache_ms", 9);
        assert_eq!(config.section("catalogue").extract::<CatalogueSettings>().expect("set in code").cache_ms, 9);
    }

    #[test]
    fn credentials_in_urls_are_hidden_for_printing() {
        assert_eq!(redacted_url("postgres://civic:s3cret@db:5432/civic"), "postgres://civic:(hidden)@db:5432/civic");
        assert_eq!(redacted_url("nats://t0ken@nats:4222"), "nats://(hidden)@nats:4222");
        assert_eq!(redacted_url("postgres://civic@db/civic"), "postgres://civic@db/civic");
        assert_eq!(redacted_url("nats://u:p@nats:4222"), "nats://u:(hidden)@nats:4222");
        assert_eq!(
            redacted_url("postgres://db/civic?sslmode=require&password=s3cret"),
            "postgres://db/civic?sslmode=require&password=(hidden)"
        );
        assert_eq!(redacted_url(""), "");
    }

    #[cfg(unix)]
    #[test]
    fn local_keys_are_the_owners_alone_and_never_one_another() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        let secret = config.secret().expect("secret");
        let dev = config.dev_key().expect("dev key");
        assert_ne!(secret, dev.as_bytes(), "page tokens and token signing never share a key");
        for name in ["secret.key", "dev.key"] {
            let mode = std::fs::metadata(dir.path().join(name)).expect("the file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_eq!(config.secret().expect("again"), secret, "kept");
    }

    #[test]
    fn a_missing_file_is_reported() {
        let err = Config::load_from(Some(Path::new("/nonexistent/civic.toml")), &Dict::new(), SERVICES, env())
            .expect_err("must fail");
        assert_eq!(err.key, "--config");
    }
}
