//! The message catalogue: every text a client can read (error messages, rights reasons), by key
//! and language. Handlers never write prose; they name a [`Key`] and its arguments.

use std::fmt::Write as _;

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
    Forbidden,
    UnknownDefinition,
    BodyUnreadable,
    BodyNotObject,
    BodyMissing,
    BodyTooLarge,
    UnsupportedMediaType,
    BadPathSegment,
    AuthRequired,
    AuthFailed,
    NotFoundRoute,
    MethodNotAllowed,
    Internal,
    RequestInvalid,
    ParameterMissing,
    UnknownSelect,
    Cancelled,
    CancelWarning,
    // -- runner (issue 5) --
    LeaseStale,
    NotExternal,
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
        Key::Forbidden => "Access denied: {reason}.",
        Key::UnknownDefinition => "Name: no task definition is named '{name}'.",
        Key::BodyUnreadable => "The request body cannot be read: {detail}.",
        Key::BodyNotObject => "The request body must be an object with the properties of {type}.",
        Key::BodyMissing => "The request body is empty; it must hold a {type}.",
        Key::BodyTooLarge => "The request body is larger than {max} bytes.",
        Key::UnsupportedMediaType => "Content-Type '{type}' is not supported; use {supported}.",
        Key::BadPathSegment => "'{segment}' is neither a task id nor a BatchTaskState name.",
        Key::AuthRequired => "Credentials are required: Basic, SOTicket or Bearer.",
        Key::AuthFailed => "The credentials were not accepted.",
        Key::NotFoundRoute => "No endpoint answers {path}.",
        Key::MethodNotAllowed => "{path} does not answer {method}.",
        Key::Internal => "The server failed to handle the request. It has been logged.",
        Key::RequestInvalid => "The request is invalid.",
        Key::ParameterMissing => "The parameter '{name}' is required.",
        Key::UnknownSelect => "$select: '{name}' is not a property of {type}.",
        Key::Cancelled => "Cancelled by {who}.",
        Key::CancelWarning => "Task {id} was cancelled although it is marked CancelWithWarning.",
        Key::LeaseStale => {
            "X-Lease-Token: the token is not the current lease of BatchTask id {id} (it expired or the task was taken back)."
        }
        Key::NotExternal => "Names: '{name}' is run by the server itself, not by external workers.",
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
}

impl Msg {
    pub fn new(key: Key) -> Msg {
        Msg { key, args: Vec::new() }
    }
    pub fn arg(mut self, name: &'static str, value: impl ToString) -> Msg {
        self.args.push((name, Arg::Text(value.to_string())));
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

mod translations {
    //! Translations of the English templates. A missing entry falls back to English.
    use super::{Key, Lang, TypeWord};

    pub fn lookup(_key: Key, lang: Lang) -> Option<&'static str> {
        match lang {
            Lang::En => None,
            _ => None,
        }
    }

    pub fn type_word(_w: TypeWord, _lang: Lang) -> Option<&'static str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_arguments_and_type_words() {
        let m = Msg::new(Key::FieldWrongType).arg("field", "StartCount").type_arg("expected", TypeWord::Integer);
        assert_eq!(m.render(Lang::En), "StartCount must be a whole number.");
    }

    #[test]
    fn every_template_names_only_known_placeholders() {
        // A template with an unbalanced brace would render garbage; catch it here.
        for lang in Lang::ALL {
            for key in [Key::FieldRequired, Key::FieldTooLong, Key::BadStateMove, Key::Cancelled] {
                let t = template(key, lang);
                assert_eq!(t.matches('{').count(), t.matches('}').count(), "{key:?} {lang:?}");
            }
        }
    }
}
