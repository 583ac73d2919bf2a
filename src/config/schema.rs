//! The shape of the config file, read from the file structs' own `Deserialize` impls: every
//! table, key and value kind. The environment layer maps `BATCHD_…` names with it, `config check`
//! finds unknown keys and wrong types with it, and a field added to a file struct is known to
//! both without being listed anywhere else.

use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// What a key holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Bool,
    /// A whole number within the field type's range.
    Int {
        min: i128,
        max: i128,
    },
    Float,
    Text,
    /// A number or a string (an untagged value such as a duration: `30` or `"30s"`).
    NumberOrText,
    List(Box<Kind>),
    /// A table of free keys (`env = { A = "1" }`).
    Map(Box<Kind>),
    /// A table of known keys.
    Table(Vec<Field>),
    /// Something the probe could not see into; taken as it comes.
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

impl Kind {
    /// The field named `name`, when this is a table of known keys.
    pub fn field(&self, name: &str) -> Option<&Field> {
        match self {
            Kind::Table(fields) => fields.iter().find(|f| f.name == name),
            _ => None,
        }
    }

    /// How `config check` names what it expected.
    pub fn describe(&self) -> String {
        match self {
            Kind::Bool => "true or false".into(),
            Kind::Int { min, max } => format!("a whole number from {min} to {max}"),
            Kind::Float => "a number".into(),
            Kind::Text => "a string".into(),
            Kind::NumberOrText => "a number or a string (a duration: 30 or \"30s\")".into(),
            Kind::List(inner) => match **inner {
                Kind::Table(_) => "an array of tables".into(),
                ref k => format!("an array of {}", k.describe_plural()),
            },
            Kind::Map(inner) => format!("a table of {}", inner.describe_plural()),
            Kind::Table(_) => "a table".into(),
            Kind::Any => "a value".into(),
        }
    }

    fn describe_plural(&self) -> String {
        match self {
            Kind::Text => "strings".into(),
            Kind::Bool => "booleans".into(),
            Kind::Int { .. } | Kind::Float => "numbers".into(),
            other => other.describe(),
        }
    }
}

/// The config file's shape (`FileConfig`), probed once.
pub fn file() -> &'static Kind {
    static SCHEMA: OnceLock<Kind> = OnceLock::new();
    SCHEMA.get_or_init(of::<super::FileConfig>)
}

/// The shape `T`'s `Deserialize` asks for. A type that refuses the probe's placeholder values
/// (custom validation in `deserialize`) still shows what it asked for up to there.
pub fn of<'de, T: serde::Deserialize<'de>>() -> Kind {
    let mut kind = Kind::Any;
    let _ = T::deserialize(Probe { out: &mut kind });
    kind
}

/// Answers every request with a placeholder and writes down what was requested.
struct Probe<'a> {
    out: &'a mut Kind,
}

type Error = de::value::Error;

macro_rules! int {
    ($($method:ident $visit:ident $t:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            *self.out = Kind::Int { min: <$t>::MIN as i128, max: <$t>::MAX as i128 };
            v.$visit(0)
        }
    )*};
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Error;

    int!(deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16, deserialize_i32 visit_i32 i32,
         deserialize_i64 visit_i64 i64, deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
         deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64);

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        // Untagged values buffer what they get and try each variant: a number is what the
        // duration's first variant takes.
        *self.out = Kind::NumberOrText;
        v.visit_u64(0)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        *self.out = Kind::Bool;
        v.visit_bool(false)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        *self.out = Kind::Float;
        v.visit_f32(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        *self.out = Kind::Float;
        v.visit_f64(0.0)
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        *self.out = Kind::Text;
        v.visit_char('x')
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        *self.out = Kind::Text;
        v.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let mut inner = Kind::Any;
        let result = v.visit_seq(OneElement { inner: &mut inner, done: false });
        *self.out = Kind::List(Box::new(inner));
        result
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, _: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let mut inner = Kind::Any;
        let result = v.visit_map(OneEntry { inner: &mut inner, state: 0 });
        *self.out = Kind::Map(Box::new(inner));
        result
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        names: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let mut fields = Vec::new();
        let result = v.visit_map(Fields { names, fields: &mut fields });
        *self.out = Kind::Table(fields);
        result
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        *self.out = Kind::Text;
        let first: de::value::StrDeserializer<'_, Error> = variants.first().copied().unwrap_or("").into_deserializer();
        v.visit_enum(first)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }
}

struct OneElement<'a> {
    inner: &'a mut Kind,
    done: bool,
}

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(None);
        }
        seed.deserialize(Probe { out: self.inner }).map(Some)
    }
}

struct OneEntry<'a> {
    inner: &'a mut Kind,
    state: u8,
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if self.state > 0 {
            return Ok(None);
        }
        self.state = 1;
        let key: de::value::StrDeserializer<'_, Error> = "key".into_deserializer();
        seed.deserialize(key).map(Some)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(Probe { out: self.inner })
    }
}

struct Fields<'a> {
    names: &'static [&'static str],
    fields: &'a mut Vec<Field>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some(name) = self.names.get(self.fields.len()).copied() else { return Ok(None) };
        self.fields.push(Field { name, kind: Kind::Any });
        let key: de::value::StrDeserializer<'_, Error> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let field = self.fields.last_mut().expect("a key comes first");
        seed.deserialize(Probe { out: &mut field.kind })
    }
}

/// A leaf the environment can set: its dotted key, its variable and what it holds.
#[derive(Debug, Clone)]
pub struct EnvKey {
    pub key: String,
    pub var: String,
    pub kind: Kind,
}

/// `BATCHD_` and the key's table path and name joined with `_`, upper case:
/// `[http] max_connections` → `BATCHD_HTTP_MAX_CONNECTIONS`, `listen` → `BATCHD_LISTEN`.
pub fn env_var(key: &str) -> String {
    format!("BATCHD_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every key the environment can set: each key of each table, and an array of tables
/// (`[[definition]]`) as one variable holding the whole array.
pub fn env_keys() -> &'static [EnvKey] {
    static KEYS: OnceLock<Vec<EnvKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut out = Vec::new();
        leaves(file(), "", &mut out);
        out
    })
}

fn leaves(kind: &Kind, prefix: &str, out: &mut Vec<EnvKey>) {
    let Kind::Table(fields) = kind else { return };
    for f in fields {
        let key = if prefix.is_empty() { f.name.to_owned() } else { format!("{prefix}.{}", f.name) };
        match &f.kind {
            Kind::Table(_) => leaves(&f.kind, &key, out),
            other => out.push(EnvKey { var: env_var(&key), key, kind: other.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_sees_every_table_key_and_kind() {
        let schema = file();
        let http = &schema.field("http").expect("[http]").kind;
        assert_eq!(
            http.field("max_connections").map(|f| &f.kind),
            Some(&Kind::Int { min: 0, max: u64::MAX as i128 }),
            "usize on 64-bit targets"
        );
        assert_eq!(http.field("body_read_timeout").map(|f| &f.kind), Some(&Kind::NumberOrText));
        let auth = &schema.field("auth").expect("[auth]").kind;
        assert_eq!(auth.field("app_tokens").map(|f| &f.kind), Some(&Kind::List(Box::new(Kind::Text))));
        assert_eq!(auth.field("secure_cookies").map(|f| &f.kind), Some(&Kind::Bool));
        let Kind::List(def) = &schema.field("definition").expect("[[definition]]").kind else { panic!() };
        assert_eq!(def.field("env").map(|f| &f.kind), Some(&Kind::Map(Box::new(Kind::Text))));
        assert_eq!(def.field("follow_redirects").map(|f| &f.kind), Some(&Kind::Int { min: 0, max: 255 }));
    }

    #[test]
    fn every_key_has_its_own_variable() {
        let keys = env_keys();
        let mut vars: Vec<&str> = keys.iter().map(|k| k.var.as_str()).collect();
        vars.sort_unstable();
        let before = vars.len();
        vars.dedup();
        assert_eq!(before, vars.len(), "two keys map to one variable");
        let var = |key: &str| keys.iter().find(|k| k.key == key).map(|k| k.var.clone());
        assert_eq!(var("http.max_connections").as_deref(), Some("BATCHD_HTTP_MAX_CONNECTIONS"));
        assert_eq!(var("listen").as_deref(), Some("BATCHD_LISTEN"));
        assert_eq!(var("definition").as_deref(), Some("BATCHD_DEFINITION"));
        assert_eq!(
            var("retention.succeeded_manual_cleanup").as_deref(),
            Some("BATCHD_RETENTION_SUCCEEDED_MANUAL_CLEANUP")
        );
    }
}
