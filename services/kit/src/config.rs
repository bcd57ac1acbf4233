//! Configuration: defaults → a TOML file → `CIVIC_…` environment variables (nested keys with a
//! double underscore: `CIVIC_AUTH__DEV_KEY` sets `auth.dev_key`) → command-line flags. Validated
//! once at start; a bad value is reported with the key that holds it and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::AuthSettings;
use crate::calendar::CalendarSettings;

/// The whole configuration of a civic process. Every field has a default that runs a laptop
/// demo; `civic config` prints the effective values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Where a gateway of its own (`--target=gateway`) finds each service: the service's name
    /// (`catalogue`) to the gRPC URLs of its replicas (`http://catalogue:50051`). Host names
    /// are resolved again every `resolve_every_ms`, and calls are balanced over every address.
    pub upstreams: std::collections::BTreeMap<String, Vec<String>>,
    /// How often upstream host names are resolved again, in milliseconds.
    pub resolve_every_ms: u64,
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
            upstreams: std::collections::BTreeMap::new(),
            resolve_every_ms: 10_000,
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
            secret_key: String::new(),
            log: LogSettings::default(),
            auth: AuthSettings::default(),
            server: ServerSettings::default(),
            calendar: CalendarSettings::default(),
            gateway: GatewaySettings::default(),
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
    "secret_key",
    "log",
    "auth",
    "server",
    "calendar",
    "gateway",
];

impl Config {
    /// Loads the configuration: defaults, then `file` when given (it must exist), then the
    /// environment, then `overrides` (command-line flags; only the keys they hold), validated.
    pub fn load(file: Option<&Path>, overrides: &figment::value::Dict) -> Result<Self, ConfigError> {
        Self::load_from(file, overrides, Env::prefixed("CIVIC_"))
    }

    /// [`Config::load`] with the environment provider given, for tests.
    pub fn load_from(file: Option<&Path>, overrides: &figment::value::Dict, env: Env) -> Result<Self, ConfigError> {
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
        let env = env.split("__").filter(|k| {
            let key = k.as_str().to_ascii_lowercase();
            KEYS.iter().any(|top| key == *top || key.starts_with(&format!("{top}.")))
        });
        figment = figment.merge(env).merge(Serialized::globals(overrides.clone()));
        let config: Config = figment.extract().map_err(|e| {
            let key = if e.path.is_empty() { "(file)".to_owned() } else { e.path.join(".") };
            let from = e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
            ConfigError { key, message: format!("{}{from}", e.kind) }
        })?;
        config.validate()?;
        Ok(config)
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
        if !(self.gateway.rate_per_second >= 0.0 && self.gateway.rate_per_second.is_finite()) {
            return bad("gateway.rate_per_second", "must be 0 (no limit) or more");
        }
        if !(self.gateway.address_rate_per_second >= 0.0 && self.gateway.address_rate_per_second.is_finite()) {
            return bad("gateway.address_rate_per_second", "must be 0 (no limit) or more");
        }
        for (service, urls) in &self.gateway.upstreams {
            if urls.is_empty() || urls.iter().any(|u| !u.starts_with("http://")) {
                return Err(ConfigError {
                    key: format!("gateway.upstreams.{service}"),
                    message: "must list one or more URLs starting with http:// (plaintext gRPC inside the cluster)"
                        .into(),
                });
            }
        }
        if self.gateway.resolve_every_ms == 0 {
            return bad("gateway.resolve_every_ms", "must be greater than 0");
        }
        if self.gateway.request_timeout_ms == 0 {
            return bad("gateway.request_timeout_ms", "must be greater than 0");
        }
        if !(-14..=14).contains(&self.calendar.utc_offset_hours) {
            return bad("calendar.utc_offset_hours", "must be between -14 and 14");
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

    /// The page-token secret: the configured one, or the one kept in `data_dir` (made on first
    /// use). Split mode must configure it, since replicas don't share a data directory.
    pub fn secret(&self) -> std::io::Result<Vec<u8>> {
        if !self.secret_key.is_empty() {
            return Ok(self.secret_key.as_bytes().to_vec());
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let path = self.data_dir.join("secret.key");
        match std::fs::read(&path) {
            Ok(key) if key.len() >= 32 => Ok(key),
            _ => {
                let key: [u8; 32] = rand::random();
                let text = key.iter().map(|b| format!("{b:02x}")).collect::<String>();
                std::fs::write(&path, &text)?;
                Ok(text.into_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::value::Dict;

    /// The environment as these tests see it: a prefix nothing sets, since the one test that
    /// sets variables (inside figment's Jail) runs beside them in the same process.
    fn env() -> Env {
        Env::prefixed("CIVIC_UNSET_IN_TESTS_")
    }

    fn load_toml(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("civic.toml");
        std::fs::write(&path, toml).expect("write config");
        Config::load_from(Some(&path), &Dict::new(), env())
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load_from(None, &Dict::new(), env()).expect("defaults load");
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
        let config = Config::load_from(Some(&path), &flags, env()).expect("load");
        assert_eq!(config.grpc_addr.port(), 7000);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type, not ours
    fn an_environment_variable_names_its_key_and_source() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CIVIC_SERVER__OUTBOX_POLL_MS", "often");
            jail.set_env("CIVIC_TEST_SOMETHING_ELSE", "ignored");
            let err = Config::load_from(None, &Dict::new(), Env::prefixed("CIVIC_")).expect_err("must fail");
            assert_eq!(err.key, "server.outbox_poll_ms");
            assert!(err.message.contains("CIVIC_"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type, not ours
    fn gateway_upstreams_come_from_the_environment_as_in_the_kubernetes_manifests() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CIVIC_GATEWAY__UPSTREAMS__CATALOGUE", r#"["http://civic-catalogue-replicas:50051"]"#);
            jail.set_env("CIVIC_GATEWAY__ADDRESS_RATE_PER_SECOND", "7");
            let config = Config::load_from(None, &Dict::new(), Env::prefixed("CIVIC_")).expect("loads");
            assert_eq!(config.gateway.upstreams["catalogue"], vec!["http://civic-catalogue-replicas:50051".to_owned()]);
            assert_eq!(config.gateway.address_rate_per_second, 7.0);
            jail.set_env("CIVIC_GATEWAY__UPSTREAMS__CATALOGUE", r#"["grpc://x"]"#);
            let err = Config::load_from(None, &Dict::new(), Env::prefixed("CIVIC_")).expect_err("must fail");
            assert_eq!(err.key, "gateway.upstreams.catalogue");
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_reported() {
        let err =
            Config::load_from(Some(Path::new("/nonexistent/civic.toml")), &Dict::new(), env()).expect_err("must fail");
        assert_eq!(err.key, "--config");
    }
}
