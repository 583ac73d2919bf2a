//! The message catalogue: every text a client can read (error messages, rights reasons), by key
//! and language. Handlers never write prose; they name a [`Key`] and its arguments.

use std::fmt::{self, Write as _};

pub use crate::domain::rights::Reason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    En,
    Nb,
    Sv,
    Da,
    De,
    Fr,
    Nl,
}

impl Lang {
    pub const ALL: [Lang; 7] = [Lang::En, Lang::Nb, Lang::Sv, Lang::Da, Lang::De, Lang::Fr, Lang::Nl];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Nb => "nb",
            Lang::Sv => "sv",
            Lang::Da => "da",
            Lang::De => "de",
            Lang::Fr => "fr",
            Lang::Nl => "nl",
        }
    }

    /// A language tag (`nb-NO`, `en`, `NO`) to a catalogue language, if there is one.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" | "us" | "gb" => Some(Lang::En),
            "nb" | "no" | "nn" => Some(Lang::Nb),
            "sv" | "se" => Some(Lang::Sv),
            "da" | "dk" => Some(Lang::Da),
            "de" => Some(Lang::De),
            "fr" => Some(Lang::Fr),
            "nl" => Some(Lang::Nl),
            _ => None,
        }
    }
}

/// Every message batchd can send. Arguments are named `{like_this}` in the templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    FieldRequired,
    FieldWrongType,
    FieldTooLong,
    FieldOutOfRange,
    FieldUnknownValue,
    StateNotAllowed,
    BadStateMove,
    IdMismatch,
    TaskNotFound,
    TaskBusy,
    Stale,
    EntityTagsInvalid,
    NoneMatched,
    Forbidden,
    UnknownDefinition,
    BodyUnreadable,
    BodyNotObject,
    BodyMissing,
    BodyTooLarge,
    BodyTooDeep,
    BodyTimeout,
    UnsupportedMediaType,
    BadPathSegment,
    AuthRequired,
    AuthFailed,
    NotFoundRoute,
    MethodNotAllowed,
    Internal,
    StorageUnavailable,
    StorageFull,
    RequestInvalid,
    ParameterMissing,
    UnknownSelect,
    Cancelled,
    CancelWarning,
    // -- identity and access --
    AuthUnsupportedScheme,
    AuthExpired,
    AuthAppToken,
    AuthXsrfMissing,
    AuthXsrfMismatch,
    TooManyAttempts,
    CrossSiteForm,
    PasswordChecksBusy,
    ScopeDenied,
    AdminOnly,
    CredentialsTooNarrow,
    AssociateNotFound,
    AssociateNameTaken,
    LastAdmin,
    ScopeTooWide,
    CredentialNotFound,
    AssociateNameInvalid,
    FilterInvalid,
    PatchReadOnly,
    PatchTestFailed,
    PatchPathInvalid,
    PatchNotAllowedType,
    PatchTooManyOperations,
    PatchTooLarge,
    PatchTooDeep,
    TaskContended,
    // -- runner --
    LeaseStale,
    NotExternal,
    // -- scheduling --
    TaskNotFailed,
    DefinitionNotFound,
    BulkTooMany,
    IdempotencyKeyReused,
    TooManyIds,
    DependencyNotMet,
    TooManyDependents,
    ChainTooDeep,
    UniqueHeld,
    UniqueHeldRacing,
    // -- event stream --
    TooManyStreams,
}

/// Type words used in "must be {expected}" messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeWord {
    Integer,
    Boolean,
    Text,
    DateTime,
    State,
    Cancellation,
    StringDictionary,
    IntegerList,
    Object,
}

fn english(key: Key) -> &'static str {
    match key {
        Key::FieldRequired => "{field} is required.",
        Key::FieldWrongType => "{field} must be {expected}.",
        Key::FieldTooLong => "{field} is too long: at most {max} characters are allowed, {actual} were given.",
        Key::FieldOutOfRange => "{field} must be between {min} and {max}.",
        Key::FieldUnknownValue => "{field} has an unknown value '{value}'.",
        Key::StateNotAllowed => "State {state} cannot be stored on a task.",
        Key::BadStateMove => "State: a task cannot move from {from} to {to}.",
        Key::IdMismatch => "Id: the body says {body} but the path says {path}.",
        Key::TaskNotFound => "BatchTask id {id} not found.",
        Key::TaskBusy => "BatchTask id {id} is {state}; stop it before deleting it.",
        Key::Stale => "BatchTask id {id} has changed since the version you have (If-Match/If-Unmodified-Since).",
        Key::NoneMatched => "BatchTask id {id} matches If-None-Match, so the request was not carried out.",
        Key::EntityTagsInvalid => "{header} must be * or a list of entity-tags such as \"12-3\".",
        Key::Forbidden => "Access denied: {reason}.",
        Key::UnknownDefinition => "Name: no task definition is named '{name}'.",
        Key::BodyUnreadable => "The request body cannot be read: {detail}.",
        Key::BodyNotObject => "The request body must be an object with the properties of {type}.",
        Key::BodyMissing => "The request body is empty; it must hold a {type}.",
        Key::BodyTooLarge => "The request body is larger than {max} bytes.",
        Key::BodyTooDeep => "The request body is nested deeper than {max} levels.",
        Key::BodyTimeout => "The request body did not arrive within {seconds} seconds.",
        Key::UnsupportedMediaType => "Content-Type '{type}' is not supported; use {supported}.",
        Key::BadPathSegment => "'{segment}' is neither a task id nor a BatchTaskState name.",
        Key::AuthRequired => "Credentials are required: Basic, SOTicket or Bearer.",
        Key::AuthFailed => "The credentials were not accepted.",
        Key::NotFoundRoute => "No endpoint answers {path}.",
        Key::MethodNotAllowed => "{path} does not answer {method}.",
        Key::Internal => "The server failed to handle the request. It has been logged.",
        Key::StorageUnavailable => "The database cannot be reached just now. Try again shortly.",
        Key::StorageFull => "The database has no room to store the change. Nothing was written.",
        Key::RequestInvalid => "The request is invalid.",
        Key::ParameterMissing => "The parameter '{name}' is required.",
        Key::UnknownSelect => "$select: '{name}' is not a property of {type}.",
        Key::Cancelled => "Cancelled by {who}.",
        Key::CancelWarning => "Task {id} was cancelled although it is marked CancelWithWarning.",
        Key::AuthUnsupportedScheme => "The Authorization scheme is not supported: use Basic, SOTicket or Bearer.",
        Key::AuthExpired => "The ticket, token or session has expired: log in again.",
        Key::AuthAppToken => "SO-AppToken is missing or is not a known application token.",
        Key::AuthXsrfMissing => "X-XSRF-TOKEN is required on {method} requests authenticated by the session cookie.",
        Key::AuthXsrfMismatch => "X-XSRF-TOKEN does not match the session's XSRF-TOKEN.",
        Key::TooManyAttempts => "Too many failed logins: try again in {seconds} seconds.",
        Key::PasswordChecksBusy => "Too many password checks at once: try again in {seconds} seconds.",
        Key::CrossSiteForm => "A login sent from another site is refused: log in from this server's own pages.",
        Key::ScopeDenied => "The token's scope '{scope}' does not allow this request.",
        Key::AdminOnly => "Access denied: only admins may {action}.",
        Key::CredentialsTooNarrow => {
            "Access denied: managing tickets and tokens needs a password, ticket, session or admin-scope token."
        }
        Key::AssociateNotFound => "Associate {id} not found.",
        Key::AssociateNameTaken => "Name: an associate named '{name}' already exists.",
        Key::LastAdmin => "Access denied: the change would leave no active admin.",
        Key::ScopeTooWide => "Scope: '{scope}' needs the {needed} role, and {name} has the {role} role.",
        Key::CredentialNotFound => "{kind} {id} not found.",
        Key::AssociateNameInvalid => {
            "Name: an associate name has 1 to 100 characters, no ':', no control characters and no outer spaces."
        }
        Key::FilterInvalid => "$filter: at position {position} {expected} was expected, but found {found}.",
        Key::PatchReadOnly => {
            "{field} cannot be changed: a patch may change only State, Description, Response and Request."
        }
        Key::PatchTestFailed => "Patch operation {operation} (test) failed: {path} does not hold the given value.",
        Key::PatchPathInvalid => "Patch operation {operation}: the path '{path}' does not exist in the task.",
        Key::PatchNotAllowedType => {
            "PATCH takes application/json-patch+json or application/merge-patch+json, not '{type}'."
        }
        Key::PatchTooManyOperations => "A JSON Patch may have at most {max} operations; this one has {actual}.",
        Key::PatchTooLarge => "Patch operation {operation} would make the task document larger than {max} bytes.",
        Key::PatchTooDeep => "Patch operation {operation} would nest the task document deeper than {max} levels.",
        Key::TaskContended => "BatchTask id {id} kept changing while the patch was applied; send it again.",
        Key::LeaseStale => {
            "X-Lease-Token: the token is not the current lease of BatchTask id {id} (it expired or the task was taken back)."
        }
        Key::NotExternal => "Names: '{name}' is run by the server itself, not by external workers.",
        Key::TaskNotFailed => "BatchTask id {id} is {state}; only a Failed task can be retried.",
        Key::DefinitionNotFound => "No task definition is named '{name}'.",
        Key::BulkTooMany => "Filter: it matches more than {max} tasks; a bulk action takes at most {max}.",
        Key::TooManyIds => "{field}: at most {max} ids are allowed, {actual} were given.",
        Key::DependencyNotMet => {
            "BatchTask id {id} waits for BatchTask id {after}, which is {state}; run that one again first."
        }
        Key::TooManyDependents => {
            "{field}: BatchTask id {id} already has {max} tasks waiting for it, the most allowed."
        }
        Key::ChainTooDeep => "{field}: the chain of dependencies would be longer than {max} tasks, the most allowed.",
        Key::IdempotencyKeyReused => {
            "Idempotency-Key: this key was used within the last 24 hours for a different request; use a new key."
        }
        Key::UniqueHeld => {
            "BatchTask id {holder} is live with the same unique parameters; it must end before this task can run again."
        }
        Key::UniqueHeldRacing => {
            "Another task with the same unique parameters became live meanwhile; try again once it has ended."
        }
        Key::TooManyStreams => "{max} event streams are open already: try again shortly.",
    }
}

/// A reason's English text: lower case, no final stop, as it fills `{reason}`.
fn english_reason(r: Reason) -> &'static str {
    match r {
        Reason::ReadOnlyTokenMayNotCreate => "a read-only token may not create tasks",
        Reason::OnlyWorkersMayCreateInternalTasks => "only workers and admins may create tasks with IsInternalTask",
        Reason::OnlyWorkersMayCreateSystemTasks => "only workers and admins may create system tasks",
        Reason::OnlyAdminsMayCreateForOthers => "only admins may create tasks for another associate",
        Reason::MayNotUpdateTask => "you may not update this task",
        Reason::MayNotStopTask => "you may not stop this task",
        Reason::MayNotDeleteTask => "you may not delete this task",
        Reason::TaskCannotBeStopped => "the task cannot be stopped",
        Reason::OnlyWorkersMayRunTasks => "only worker and admin associates may run tasks",
        Reason::OnlyWorkersMayReadMetrics => "the metrics count every task: only workers and admins may read them",
        Reason::OnlyAdminsMayListNodes => "only admins may list the nodes",
        Reason::OnlyAdminsMayPauseDefinitions => "only admins may pause or resume a definition",
        Reason::MayNotRetryTask => "you may not retry this task",
    }
}

/// A reason's text in `lang`.
pub fn reason_text(r: Reason, lang: Lang) -> &'static str {
    translations::reason(r, lang).unwrap_or_else(|| english_reason(r))
}

/// English, for logs (`DomainError`'s own text).
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(english_reason(*self))
    }
}

/// The template for `key` in `lang`; English where a translation is missing.
pub fn template(key: Key, lang: Lang) -> &'static str {
    translations::lookup(key, lang).unwrap_or_else(|| english(key))
}

pub fn type_word(w: TypeWord, lang: Lang) -> &'static str {
    translations::type_word(w, lang).unwrap_or(match w {
        TypeWord::Integer => "a whole number",
        TypeWord::Boolean => "true or false",
        TypeWord::Text => "text",
        TypeWord::DateTime => "a date-time like 2024-05-01T12:00:00+02:00",
        TypeWord::State => "a BatchTaskState name or number",
        TypeWord::Cancellation => "CanCancel, CancelWithWarning or CannotCancel",
        TypeWord::StringDictionary => "an object of text values",
        TypeWord::IntegerList => "a list of whole numbers",
        TypeWord::Object => "an object",
    })
}

/// A message: a key and its arguments, rendered late in the caller's language.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub key: Key,
    pub args: Vec<(&'static str, Arg)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    Type(TypeWord),
    /// A refusal's reason, rendered in the message's language.
    Reason(Reason),
}

impl Msg {
    pub fn new(key: Key) -> Msg {
        Msg { key, args: Vec::new() }
    }
    pub fn arg(mut self, name: &'static str, value: impl ToString) -> Msg {
        self.args.push((name, Arg::Text(value.to_string())));
        self
    }
    pub fn reason_arg(mut self, name: &'static str, reason: Reason) -> Msg {
        self.args.push((name, Arg::Reason(reason)));
        self
    }
    pub fn type_arg(mut self, name: &'static str, w: TypeWord) -> Msg {
        self.args.push((name, Arg::Type(w)));
        self
    }

    pub fn render(&self, lang: Lang) -> String {
        let t = template(self.key, lang);
        let mut out = String::with_capacity(t.len() + 32);
        let mut rest = t;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = &after[..end];
            match self.args.iter().find(|(n, _)| *n == name) {
                Some((_, Arg::Text(v))) => out.push_str(v),
                Some((_, Arg::Type(w))) => out.push_str(type_word(*w, lang)),
                Some((_, Arg::Reason(r))) => out.push_str(reason_text(*r, lang)),
                None => {
                    let _ = write!(out, "{{{name}}}");
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

pub mod culture;
mod translations;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_arguments_and_type_words() {
        let m = Msg::new(Key::FieldWrongType).arg("field", "StartCount").type_arg("expected", TypeWord::Integer);
        assert_eq!(m.render(Lang::En), "StartCount must be a whole number.");
    }

    /// Every key this catalogue knows, for the completeness checks below.
    const KEYS: [Key; 74] = [
        Key::FieldRequired,
        Key::FieldWrongType,
        Key::FieldTooLong,
        Key::FieldOutOfRange,
        Key::FieldUnknownValue,
        Key::StateNotAllowed,
        Key::BadStateMove,
        Key::IdMismatch,
        Key::TaskNotFound,
        Key::TaskBusy,
        Key::Stale,
        Key::EntityTagsInvalid,
        Key::NoneMatched,
        Key::Forbidden,
        Key::UnknownDefinition,
        Key::BodyUnreadable,
        Key::BodyNotObject,
        Key::BodyMissing,
        Key::BodyTooLarge,
        Key::BodyTooDeep,
        Key::BodyTimeout,
        Key::UnsupportedMediaType,
        Key::BadPathSegment,
        Key::AuthRequired,
        Key::AuthFailed,
        Key::NotFoundRoute,
        Key::MethodNotAllowed,
        Key::Internal,
        Key::StorageUnavailable,
        Key::StorageFull,
        Key::RequestInvalid,
        Key::ParameterMissing,
        Key::UnknownSelect,
        Key::Cancelled,
        Key::CancelWarning,
        Key::FilterInvalid,
        Key::PatchReadOnly,
        Key::PatchTestFailed,
        Key::PatchPathInvalid,
        Key::PatchNotAllowedType,
        Key::PatchTooManyOperations,
        Key::PatchTooLarge,
        Key::PatchTooDeep,
        Key::TaskContended,
        Key::AuthUnsupportedScheme,
        Key::AuthExpired,
        Key::AuthAppToken,
        Key::AuthXsrfMissing,
        Key::AuthXsrfMismatch,
        Key::TooManyAttempts,
        Key::CrossSiteForm,
        Key::PasswordChecksBusy,
        Key::ScopeDenied,
        Key::AdminOnly,
        Key::CredentialsTooNarrow,
        Key::AssociateNotFound,
        Key::AssociateNameTaken,
        Key::LastAdmin,
        Key::ScopeTooWide,
        Key::CredentialNotFound,
        Key::AssociateNameInvalid,
        Key::LeaseStale,
        Key::NotExternal,
        Key::TaskNotFailed,
        Key::DefinitionNotFound,
        Key::BulkTooMany,
        Key::IdempotencyKeyReused,
        Key::TooManyIds,
        Key::DependencyNotMet,
        Key::TooManyDependents,
        Key::ChainTooDeep,
        Key::UniqueHeld,
        Key::UniqueHeldRacing,
        Key::TooManyStreams,
    ];

    fn placeholders(t: &str) -> Vec<&str> {
        let mut names: Vec<&str> = t.split('{').skip(1).filter_map(|p| p.split('}').next()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn every_key_is_translated_with_the_same_placeholders() {
        for key in KEYS {
            let wanted = placeholders(english(key));
            for lang in Lang::ALL.into_iter().filter(|l| *l != Lang::En) {
                let t = translations::lookup(key, lang).unwrap_or_else(|| panic!("{key:?} has no {lang:?} text"));
                assert_ne!(t, english(key), "{key:?} {lang:?} is untranslated");
                assert_eq!(placeholders(t), wanted, "{key:?} {lang:?}: {t}");
                assert_eq!(t.matches('{').count(), t.matches('}').count(), "{key:?} {lang:?}");
            }
        }
    }

    #[test]
    fn every_reason_has_all_languages() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert!(!Reason::ALL[..i].contains(&r), "{r:?} is listed twice");
            let en = reason_text(r, Lang::En);
            assert_eq!(en, r.to_string(), "{r:?}");
            for lang in Lang::ALL {
                let t = reason_text(r, lang);
                assert!(!t.is_empty() && !t.ends_with('.') && !t.contains('{'), "{r:?} {lang:?}: {t}");
                if lang != Lang::En {
                    assert!(translations::reason(r, lang).is_some(), "{r:?} has no {lang:?} text");
                    assert_ne!(t, en, "{r:?} {lang:?} is untranslated");
                }
            }
        }
    }

    #[test]
    fn type_words_and_reasons_are_translated() {
        let m = Msg::new(Key::FieldWrongType).arg("field", "StartCount").type_arg("expected", TypeWord::Integer);
        assert_eq!(m.render(Lang::De), "StartCount muss eine ganze Zahl sein.");
        assert_eq!(m.render(Lang::Nb), "StartCount må være et heltall.");
        let m = Msg::new(Key::Forbidden).reason_arg("reason", Reason::MayNotDeleteTask);
        assert_eq!(m.render(Lang::Sv), "Åtkomst nekad: du får inte ta bort den här uppgiften.");
        assert_eq!(m.render(Lang::En), "Access denied: you may not delete this task.");
        // A reason can no longer be unknown (it is a `Reason`); plain text still goes in as given.
        let unknown = Msg::new(Key::Forbidden).arg("reason", "a reason added later");
        assert_eq!(unknown.render(Lang::Fr), "Accès refusé : a reason added later.");
    }
}
