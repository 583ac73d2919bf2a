//! The one error path. Domain and store errors convert into [`ApiError`]; its response carries
//! the error in an extension, and [`render_errors`] writes the body in the format and language
//! the request asked for. So every 4xx/5xx looks the same, whichever handler raised it.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::domain::rights::Reason;
use crate::domain::{DomainError, Expected};
use crate::i18n::{Key, Msg, TypeWord};
use crate::identity::IdentityError;
use crate::store::StoreError;

use super::context::Prefs;
use super::format;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub msg: Msg,
}

impl ApiError {
    pub fn new(status: StatusCode, msg: Msg) -> ApiError {
        ApiError { status, msg }
    }
    pub fn bad_request(msg: Msg) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    }
    pub fn not_found(id: impl ToString) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, Msg::new(Key::TaskNotFound).arg("id", id))
    }
    pub fn unauthorized(key: Key) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, Msg::new(key))
    }
    pub fn internal() -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, Msg::new(Key::Internal))
    }

    /// SuperOffice's exception name for each status (docs/API.md, "Errors").
    pub fn error_type(&self) -> &'static str {
        error_type(self.status)
    }
}

pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "ArgumentException",
        401 => "SoAuthenticationException",
        403 => "SoAccessDeniedException",
        404 => "SoNotFoundException",
        405 => "MethodNotAllowedException",
        408 => "RequestTimeoutException",
        409 => "SoConflictException",
        412 => "SoPreconditionFailedException",
        413 => "PayloadTooLargeException",
        415 => "UnsupportedMediaTypeException",
        422 => "ArgumentException",
        429 => "TooManyRequestsException",
        503 => "ServiceUnavailableException",
        507 => "InsufficientStorageException",
        _ => "InternalServerException",
    }
}

fn type_word(e: Expected) -> TypeWord {
    match e {
        Expected::Integer => TypeWord::Integer,
        Expected::Boolean => TypeWord::Boolean,
        Expected::Text => TypeWord::Text,
        Expected::DateTime => TypeWord::DateTime,
        Expected::State => TypeWord::State,
        Expected::Cancellation => TypeWord::Cancellation,
        Expected::StringDictionary => TypeWord::StringDictionary,
        Expected::IntegerList => TypeWord::IntegerList,
        Expected::Object => TypeWord::Object,
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        use StatusCode as S;
        let (status, msg) = match e {
            DomainError::Required { field } => {
                (S::BAD_REQUEST, Msg::new(Key::FieldRequired).arg("field", field.name()))
            }
            DomainError::WrongType { field, expected } => (
                S::BAD_REQUEST,
                Msg::new(Key::FieldWrongType).arg("field", field.name()).type_arg("expected", type_word(expected)),
            ),
            DomainError::TooLong { field, max, actual } => (
                S::BAD_REQUEST,
                Msg::new(Key::FieldTooLong).arg("field", field.name()).arg("max", max).arg("actual", actual),
            ),
            DomainError::OutOfRange { field, min, max } => (
                S::BAD_REQUEST,
                Msg::new(Key::FieldOutOfRange).arg("field", field.name()).arg("min", min).arg("max", max),
            ),
            DomainError::UnknownValue { field, value } => (
                S::BAD_REQUEST,
                Msg::new(Key::FieldUnknownValue).arg("field", field.name()).arg("value", truncate(&value, 80)),
            ),
            DomainError::StateNotAllowed { state } => {
                (S::BAD_REQUEST, Msg::new(Key::StateNotAllowed).arg("state", state.name()))
            }
            DomainError::BadStateMove { from, to } => {
                (S::CONFLICT, Msg::new(Key::BadStateMove).arg("from", from.name()).arg("to", to.name()))
            }
            DomainError::IdMismatch { path, body } => {
                (S::BAD_REQUEST, Msg::new(Key::IdMismatch).arg("path", path).arg("body", body))
            }
            DomainError::TaskNotFound { id } => (S::NOT_FOUND, Msg::new(Key::TaskNotFound).arg("id", id)),
            DomainError::TaskBusy { id, state } => {
                (S::CONFLICT, Msg::new(Key::TaskBusy).arg("id", id).arg("state", state.name()))
            }
            DomainError::Stale { id } => (S::PRECONDITION_FAILED, Msg::new(Key::Stale).arg("id", id)),
            DomainError::NoneMatched { id } => (S::PRECONDITION_FAILED, Msg::new(Key::NoneMatched).arg("id", id)),
            DomainError::Forbidden { reason } => (S::FORBIDDEN, Msg::new(Key::Forbidden).reason_arg("reason", reason)),
            DomainError::StopRefused => {
                (S::CONFLICT, Msg::new(Key::Forbidden).reason_arg("reason", Reason::TaskCannotBeStopped))
            }
            DomainError::UnknownDefinition { name } => {
                (S::BAD_REQUEST, Msg::new(Key::UnknownDefinition).arg("name", truncate(&name, 80)))
            }
            DomainError::PatchReadOnly { property } => {
                (S::BAD_REQUEST, Msg::new(Key::PatchReadOnly).arg("field", truncate(&property, 80)))
            }
            DomainError::PatchTestFailed { operation, path } => (
                S::CONFLICT,
                Msg::new(Key::PatchTestFailed).arg("operation", operation).arg("path", truncate(&path, 120)),
            ),
            DomainError::PatchPathInvalid { operation, path } => (
                S::BAD_REQUEST,
                Msg::new(Key::PatchPathInvalid).arg("operation", operation).arg("path", truncate(&path, 120)),
            ),
            DomainError::PatchTooLarge { operation, max } => {
                (S::BAD_REQUEST, Msg::new(Key::PatchTooLarge).arg("operation", operation).arg("max", max))
            }
            DomainError::PatchTooDeep { operation, max } => {
                (S::BAD_REQUEST, Msg::new(Key::PatchTooDeep).arg("operation", operation).arg("max", max))
            }
            DomainError::Contended { id } => (S::CONFLICT, Msg::new(Key::TaskContended).arg("id", id)),
            DomainError::LeaseStale { id } => (S::CONFLICT, Msg::new(Key::LeaseStale).arg("id", id)),
            DomainError::NotFailed { id, state } => {
                (S::CONFLICT, Msg::new(Key::TaskNotFailed).arg("id", id).arg("state", state.name()))
            }
            DomainError::DefinitionNotFound { name } => {
                (S::NOT_FOUND, Msg::new(Key::DefinitionNotFound).arg("name", truncate(&name, 80)))
            }
            DomainError::BulkTooMany { max } => (S::BAD_REQUEST, Msg::new(Key::BulkTooMany).arg("max", max)),
            DomainError::IdempotencyKeyReused => (S::UNPROCESSABLE_ENTITY, Msg::new(Key::IdempotencyKeyReused)),
            DomainError::TooManyIds { field, max, actual } => (
                S::BAD_REQUEST,
                Msg::new(Key::TooManyIds).arg("field", field.name()).arg("max", max).arg("actual", actual),
            ),
            DomainError::DependencyNotMet { id, after, state } => (
                S::CONFLICT,
                Msg::new(Key::DependencyNotMet)
                    .arg("id", id)
                    .arg("after", after)
                    .arg("state", state.map_or("deleted", |s| s.name())),
            ),
            DomainError::TooManyDependents { field, id, max } => (
                S::BAD_REQUEST,
                Msg::new(Key::TooManyDependents).arg("field", field.name()).arg("id", id).arg("max", max),
            ),
            DomainError::ChainTooDeep { field, max } => {
                (S::BAD_REQUEST, Msg::new(Key::ChainTooDeep).arg("field", field.name()).arg("max", max))
            }
            DomainError::UniqueHeld { holder: Some(holder) } => {
                (S::CONFLICT, Msg::new(Key::UniqueHeld).arg("holder", holder))
            }
            DomainError::UniqueHeld { holder: None } => (S::CONFLICT, Msg::new(Key::UniqueHeldRacing)),
            DomainError::NotExternal { name } => {
                (S::BAD_REQUEST, Msg::new(Key::NotExternal).arg("name", truncate(&name, 80)))
            }
        };
        ApiError { status, msg }
    }
}

/// What a storage failure answers (below): 500, 503 while the database is unreachable, 507 when
/// it is full.
pub const STORAGE_STATUSES: [u16; 3] = [500, 503, 507];

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Rejected(d) => d.into(),
            StoreError::NotFound => ApiError::new(StatusCode::NOT_FOUND, Msg::new(Key::TaskNotFound).arg("id", "?")),
            StoreError::DuplicateName => ApiError::new(
                StatusCode::CONFLICT,
                Msg::new(Key::FieldUnknownValue).arg("field", "associate_name_key").arg("value", "duplicate"),
            ),
            StoreError::LastAdmin => ApiError::new(StatusCode::CONFLICT, Msg::new(Key::LastAdmin)),
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::new(Key::StorageUnavailable))
            }
            StoreError::Full(detail) => {
                tracing::error!(%detail, "storage full");
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, Msg::new(Key::StorageFull))
            }
            StoreError::Backend(e) => {
                // The whole chain for the operator; the client gets the fixed 500 text only.
                tracing::error!(detail = %e.chain(), "storage failure");
                ApiError::internal()
            }
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> ApiError {
        use StatusCode as S;
        let (status, msg) = match e {
            IdentityError::Rejected(d) => return d.into(),
            IdentityError::Store(e) => return e.into(),
            IdentityError::CredentialsTooNarrow => (S::FORBIDDEN, Msg::new(Key::CredentialsTooNarrow)),
            IdentityError::AdminOnly { action } => (S::FORBIDDEN, Msg::new(Key::AdminOnly).arg("action", action)),
            IdentityError::AssociateNotFound { id } => (S::NOT_FOUND, Msg::new(Key::AssociateNotFound).arg("id", id)),
            IdentityError::NoSuchName { name } => (S::NOT_FOUND, Msg::new(Key::AssociateNotFound).arg("id", name)),
            IdentityError::CallerGone => (S::UNAUTHORIZED, Msg::new(Key::AuthFailed)),
            IdentityError::NameInvalid { .. } => (S::BAD_REQUEST, Msg::new(Key::AssociateNameInvalid)),
            IdentityError::NameTaken { name } => (S::CONFLICT, Msg::new(Key::AssociateNameTaken).arg("name", name)),
            IdentityError::LastAdmin => (S::CONFLICT, Msg::new(Key::LastAdmin)),
            IdentityError::ScopeTooWide { scope, name, role } => (
                S::BAD_REQUEST,
                Msg::new(Key::ScopeTooWide)
                    .arg("scope", scope.as_str())
                    .arg("needed", scope.required_role().as_str())
                    .arg("name", name)
                    .arg("role", role.as_str()),
            ),
            IdentityError::TokenNotFound { id } => {
                (S::NOT_FOUND, Msg::new(Key::CredentialNotFound).arg("kind", "Token").arg("id", id))
            }
            IdentityError::Hashing(detail) => {
                tracing::error!(%detail, "hashing a password failed");
                return ApiError::internal();
            }
        };
        ApiError { status, msg }
    }
}

/// What `Retry-After` says on a 503 or 507.
pub const RETRY_AFTER_SECONDS: u32 = 2;

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { s.chars().take(max).chain("…".chars()).collect() }
}

/// Marks a response whose body [`Errors::finish`] must write.
#[derive(Debug, Clone)]
pub struct PendingError(pub ApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE || self.status == StatusCode::INSUFFICIENT_STORAGE {
            // A restart or a failover takes seconds; freed disk space is noticed on the next write.
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"SuperOffice Username or Ticket\""),
            );
        }
        res.extensions_mut().insert(PendingError(self));
        res
    }
}

/// The 401 challenge for requests with `X-Requested-With` (see [`Errors`]).
pub const SCRIPT_CHALLENGE: &str = "Session realm=\"batchd\"";

const X_REQUESTED_WITH: header::HeaderName = header::HeaderName::from_static("x-requested-with");

/// What rendering an error needs from its request, kept while the request is handled (cheap
/// reference-counted clones); the work of reading preferences is done only when there is an
/// error to render. With [`Errors::finish`], writes the body of every [`ApiError`] response, and
/// turns axum's own plain-text rejections (404 route, 405 method) into the same error body.
pub struct Errors {
    wanted: [Option<HeaderValue>; 3],
    scripted: bool,
    uri: axum::http::Uri,
    method: axum::http::Method,
}

impl Errors {
    pub fn of(req: &Request) -> Errors {
        let h = req.headers();
        Errors {
            wanted: [
                h.get(header::ACCEPT).cloned(),
                h.get(header::ACCEPT_LANGUAGE).cloned(),
                h.get(super::context::SO_LANGUAGE).cloned(),
            ],
            // A page's script says so (the dashboard sends `X-Requested-With`): its 401s
            // challenge with a scheme browsers do not know, so the browser shows no password
            // dialog of its own and the page shows its login form instead.
            scripted: h.contains_key(X_REQUESTED_WITH),
            uri: req.uri().clone(),
            method: req.method().clone(),
        }
    }

    /// The answer to the request, its error body written.
    pub fn finish(self, mut res: Response) -> Response {
        let Errors { wanted, scripted, uri, method } = self;
        let pending = res.extensions_mut().remove::<PendingError>();
        let status = res.status();
        if pending.is_none() && status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED {
            // A success with a body says which language its texts are in (the agents' "request is
            // invalid" answer is translated; other bodies carry no prose, and the header is cheap).
            if status.is_success()
                && res.headers().contains_key(header::CONTENT_TYPE)
                && !res.headers().contains_key(header::CONTENT_LANGUAGE)
            {
                let lang = crate::http::context::language_from(wanted[2].as_ref(), wanted[1].as_ref());
                res.headers_mut().insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
            }
            return res;
        }
        let path = uri.path();
        let err = match pending {
            Some(PendingError(e)) => e,
            None if status == StatusCode::NOT_FOUND && res.headers().get(header::CONTENT_TYPE).is_none() => {
                ApiError::new(StatusCode::NOT_FOUND, Msg::new(Key::NotFoundRoute).arg("path", path))
            }
            None if status == StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Msg::new(Key::MethodNotAllowed).arg("path", path).arg("method", method.as_str()),
            ),
            None => return res,
        };
        let mut headers = axum::http::HeaderMap::new();
        for (name, value) in
            [header::ACCEPT, header::ACCEPT_LANGUAGE, super::context::SO_LANGUAGE].into_iter().zip(wanted)
        {
            if let Some(v) = value {
                headers.insert(name, v);
            }
        }
        let prefs = Prefs::from_request(&headers, uri.query());
        if err.status.is_server_error() {
            tracing::error!(status = %err.status, %path, "request failed");
        }
        let text = err.msg.render(prefs.lang);
        let body = format::error_body(prefs.format, err.error_type(), &text);
        let (mut parts, _) = res.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(header::CONTENT_TYPE, prefs.format.content_type());
        parts.headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(prefs.lang.code()));
        if scripted && err.status == StatusCode::UNAUTHORIZED {
            parts.headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(SCRIPT_CHALLENGE));
        }
        Response::from_parts(parts, axum::body::Body::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;
    use crate::store::BackendError;

    #[test]
    fn a_storage_failure_answers_500_and_says_nothing_of_it() {
        let driver = std::io::Error::other("password authentication failed for user \"batchd\" (secret hunter2)");
        let e = ApiError::from(StoreError::Backend(BackendError::with_context("SELECT * FROM ticket", driver)));
        assert_eq!(
            (e.status, e.msg.key, e.error_type()),
            (StatusCode::INTERNAL_SERVER_ERROR, Key::Internal, "InternalServerException")
        );
        for lang in [Lang::En, Lang::Nb] {
            let text = e.msg.render(lang);
            assert!(!text.contains("hunter2") && !text.contains("ticket"), "{text}");
        }
    }

    #[test]
    fn typed_conflicts_answer_409() {
        let last = ApiError::from(StoreError::LastAdmin);
        assert_eq!((last.status, last.msg.key), (StatusCode::CONFLICT, Key::LastAdmin));
        let dup = ApiError::from(StoreError::DuplicateName);
        assert_eq!((dup.status, dup.msg.key), (StatusCode::CONFLICT, Key::FieldUnknownValue));
    }
}
