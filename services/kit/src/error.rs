//! One error type for every service, and its one mapping to `tonic::Status` (AIP-193): a
//! canonical code, a short actionable message, `google.rpc.ErrorInfo` on every error and
//! `google.rpc.BadRequest` field violations for invalid input. Causes are logged, never returned.

use std::collections::HashMap;

use tonic::Code;

/// The `ErrorInfo.domain` of every civic error.
pub use civic_proto::bounds::ERROR_DOMAIN;

/// One invalid field of a request: the field's path (`service_item.title`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The path of the field, in the request's proto field names.
    pub field: String,
    /// What is wrong with it, in words the caller can act on.
    pub description: String,
}

/// An error a request can end with. Boxed, so results stay small on the happy path.
#[derive(Debug)]
pub struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    code: Code,
    reason: &'static str,
    message: String,
    violations: Vec<FieldViolation>,
    metadata: HashMap<String, String>,
    retry_after: Option<std::time::Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The result of anything that can fail with an [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with the given code, stable reason (UPPER_SNAKE_CASE) and message.
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            code,
            reason,
            message: message.into(),
            violations: Vec::new(),
            metadata: HashMap::new(),
            retry_after: None,
            source: None,
        }))
    }

    /// Invalid input: one violated field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::invalid_fields(vec![FieldViolation { field: field.into(), description: description.into() }])
    }

    /// Invalid input: every violated field at once.
    pub fn invalid_fields(violations: Vec<FieldViolation>) -> Self {
        let message = match violations.as_slice() {
            [one] => format!("invalid {}: {}", one.field, one.description),
            many => format!("{} invalid fields", many.len()),
        };
        let mut error = Self::new(Code::InvalidArgument, "INVALID_ARGUMENT", message);
        error.0.violations = violations;
        error
    }

    /// The named resource does not exist (or the caller may not know that it does).
    pub fn not_found(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        Self::new(Code::NotFound, "NOT_FOUND", format!("{resource} not found")).with_metadata("resource", resource)
    }

    /// The resource to create exists already.
    pub fn already_exists(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        Self::new(Code::AlreadyExists, "ALREADY_EXISTS", format!("{resource} already exists"))
            .with_metadata("resource", resource)
    }

    /// The resource is not in a state that allows the operation.
    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, reason, message)
    }

    /// The etag sent does not match the stored one: somebody changed the resource meanwhile.
    pub fn etag_mismatch(resource: impl Into<String>) -> Self {
        let resource = resource.into();
        Self::new(
            Code::Aborted,
            "ETAG_MISMATCH",
            format!("{resource} was changed by someone else; read it again and retry"),
        )
        .with_metadata("resource", resource)
    }

    /// No credentials, or credentials that cannot be trusted.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, "UNAUTHENTICATED", message)
    }

    /// The caller is known but may not do this (AIP-211: said whether or not the resource exists).
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, "PERMISSION_DENIED", message)
    }

    /// A dependency (the database, the event bus) cannot be reached now; the caller may retry.
    pub fn unavailable(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(Code::Unavailable, "UNAVAILABLE", "the service is unavailable; retry later").with_source(cause)
    }

    /// A fault of the service itself. The cause is logged when the error is turned into a status.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(Code::Internal, "INTERNAL", "internal error").with_source(cause)
    }

    /// Adds a metadata entry to the error's `ErrorInfo`.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.metadata.insert(key.into(), value.into());
        self
    }

    /// Tells the caller when to try again (`google.rpc.RetryInfo`).
    pub fn with_retry_after(mut self, delay: std::time::Duration) -> Self {
        self.0.retry_after = Some(delay);
        self
    }

    /// Keeps the cause for the log.
    pub fn with_source(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(cause));
        self
    }

    /// The canonical code.
    pub fn code(&self) -> Code {
        self.0.code
    }

    /// The stable `ErrorInfo.reason`.
    pub fn reason(&self) -> &'static str {
        self.0.reason
    }

    /// The invalid fields, for INVALID_ARGUMENT.
    pub fn violations(&self) -> &[FieldViolation] {
        &self.0.violations
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let error = *error.0;
        if let Some(cause) = &error.source {
            // The chain goes to the log only; the caller sees the short message.
            let chain = std::iter::successors(Some(cause.as_ref() as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            if error.code == Code::Internal {
                tracing::error!(reason = error.reason, cause = %chain, "request failed");
            } else {
                tracing::warn!(reason = error.reason, cause = %chain, "request failed");
            }
        }
        let violations = error.violations.into_iter().map(|v| (v.field, v.description)).collect();
        let status = civic_proto::bounds::status(error.code, error.reason, error.message, error.metadata, violations);
        match error.retry_after {
            None => status,
            Some(delay) => {
                use tonic_types::StatusExt;
                let mut details = status.get_error_details();
                details.set_retry_info(Some(delay));
                tonic::Status::with_error_details(status.code(), status.message(), details)
            }
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => Error::unavailable(e),
            other => Error::internal(other),
        }
    }
}

/// Collects the violations of a request's fields, to report them all at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation { field: field.into(), description: description.into() });
    }

    /// Records the violation of a parse result and returns its value, if it parsed.
    pub fn check<T>(&mut self, result: Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.0.violations);
                None
            }
        }
    }

    /// Ok when nothing was recorded, INVALID_ARGUMENT naming every field otherwise.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::invalid_fields(self.0)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn invalid_argument_carries_error_info_and_field_violations() {
        let status: tonic::Status = Error::invalid("service_item.title", "must not be empty").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "INVALID_ARGUMENT");
        assert_eq!(info.domain, ERROR_DOMAIN);
        let bad = details.bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "service_item.title");
    }

    #[test]
    fn internal_cause_is_not_returned() {
        let cause = std::io::Error::other("password=secret at db.internal:5432");
        let status: tonic::Status = Error::internal(cause).into();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert!(!format!("{status:?}").contains("secret"));
    }
}
