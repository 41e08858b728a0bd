//! Typed ThingsDB: Rust structs as ThingsDB types, Rust enums as ThingsDB
//! enums and room events, and results read into them without `deep`
//! puzzles.
//!
//! A struct says what a ThingsDB type says. `#[derive(Thing)]` gives its
//! type definition (name, fields and their definitions) and serde in and
//! out; `#[derive(ThingsEnum)]` gives an enum; `#[derive(RoomEvent)]` maps
//! a room's events to an enum's variants (see [`TypedEvent`]).
//!
//! ```no_run
//! use thingsdb_client::typed::{Datetime, Schema};
//! use thingsdb_client::{Thing, ThingsEnum};
//!
//! #[derive(Debug, Clone, PartialEq, ThingsEnum)]
//! enum Color { Red, Green }
//!
//! #[derive(Debug, Clone, PartialEq, Thing)]
//! struct Address { street: String, number: Option<i64> }
//!
//! #[derive(Debug, Clone, PartialEq, Thing)]
//! struct Person {
//!     #[thingsdb(id)]
//!     id: Option<u64>,                 // the thing's `#`
//!     name: String,                    // str
//!     #[thingsdb(rename = "mail")]
//!     email: Option<String>,           // str?
//!     address: Address,                // Address
//!     friends: Vec<Person>,            // [Person]: refers to itself
//!     color: Color,                    // Color
//!     born: Datetime,                  // datetime
//!     #[thingsdb(skip)]
//!     cache: Vec<u8>,                  // not in ThingsDB
//! }
//!
//! # async fn demo(client: thingsdb_client::Client, alice: Person) -> Result<(), thingsdb_client::Error> {
//! let stuff = client.collection("stuff")?;
//! // Create or migrate the types (the plan can be printed first).
//! let schema = Schema::new().with::<Person>();
//! let plan = stuff.plan(&schema).await?;
//! println!("{plan}");
//! stuff.apply(&plan).await?;
//!
//! // Store one, read all back: nested things decode, no `deep` needed.
//! stuff.push(".people", &alice).await?;
//! let people: Vec<Person> = stuff.fetch(".people").await?;
//! # Ok(()) }
//! ```
//!
//! # Reading nested things: two ways
//!
//! A node returns things one level deep unless asked otherwise, so a plain
//! `client.query(".people")` gives `{"#": 12}` where a nested `Address`
//! should be. Both ways below ask for exactly the shape of the Rust type:
//!
//! 1. **wrap with the type**: [`Fetch::wrap_code`] turns an expression
//!    into `return (EXPR).wrap('Person'), DEPTH;` (`map_wrap` for a list):
//!    the node returns the type's fields and nothing else, at the depth
//!    the type needs. [`ScopeApi::fetch`](crate::management::ScopeApi::fetch)
//!    runs it.
//! 2. **a computed depth**: [`Fetch::depth`] is how deep the type nests
//!    (`1` for a struct of plain fields, `2` when it holds another struct,
//!    ...; the node's maximum, 127, for types that refer to themselves),
//!    for `return EXPR, DEPTH;` in your own code.
//!
//! ```no_run
//! # use thingsdb_client::Thing;
//! # #[derive(Thing)] struct Address { street: String }
//! # #[derive(Thing)] struct Person { name: String, address: Address }
//! use thingsdb_client::typed::Fetch;
//! # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
//! // 1. wrap
//! let code = Vec::<Person>::wrap_code(".people");
//! assert_eq!(code, "return (.people).map_wrap('Person'), 2;");
//! let people: Vec<Person> = client.query(&code).scope("//stuff").decode().await?;
//! // 2. depth
//! let code = format!("return .people.filter(|p| p.name == n), {};", Vec::<Person>::depth());
//! let named: Vec<Person> = client.query(&code).scope("//stuff").var("n", "Iris").decode().await?;
//! # Ok(()) }
//! ```
//!
//! A thing reached twice on one path (a cycle) comes back as its id only;
//! reading it into a struct fails with an error that says so.
//!
//! # Writing
//!
//! A node does not turn nested maps into instances of a type by itself.
//! [`build_expr`] writes the ThingsDB code that makes the instances from a
//! query variable holding the value (values are never pasted into code):
//! `Person({name: v.name, address: Address({street: v.address.street})})`.
//! A nested struct whose `#[thingsdb(id)]` is set is the existing thing
//! with that id (`Person(12)`), not a new one.

use std::collections::BTreeMap;
use std::fmt;

mod rust;
mod spec;
mod values;

pub use rust::rust_source;
pub use spec::Spec;
pub use values::{Blob, Datetime, SetOf, Timeval};

pub use crate::typed_room::TypedEvent;
/// Any value: the Rust type of `any` fields.
pub use rmpv::Value;

/// A Rust struct that is a ThingsDB type; `#[derive(Thing)]` implements it
/// (with [`FieldType`], `Serialize` and `Deserialize`).
pub trait Thing: FieldType + serde::Serialize + serde::de::DeserializeOwned {
    /// The ThingsDB type's name.
    const TYPE_NAME: &'static str;
    /// The type's definition: its fields and what they refer to.
    fn type_def() -> TypeDef;
    /// The thing's id (`#`), from the `#[thingsdb(id)]` field.
    fn thing_id(&self) -> Option<u64>;
}

/// A Rust enum of unit variants that is a ThingsDB enum;
/// `#[derive(ThingsEnum)]` implements it.
pub trait ThingsEnum: FieldType + serde::Serialize + serde::de::DeserializeOwned {
    /// The ThingsDB enum's name.
    const ENUM_NAME: &'static str;
    /// The enum's definition: its members and their values.
    fn enum_def() -> EnumDef;
}

/// A Rust type that can be a field of a [`Thing`]: its ThingsDB
/// definition, the types and enums it refers to, and how to make its
/// value in ThingsDB code from a query variable.
///
/// | Rust | definition |
/// |---|---|
/// | `String` | `str` |
/// | `i8` ... `i64`, `u8` ... `u64`, `isize`, `usize` | `int` |
/// | `f32`, `f64` | `float` |
/// | `bool` | `bool` |
/// | [`Blob`] | `bytes` |
/// | [`Datetime`] / [`Timeval`] | `datetime` / `timeval` |
/// | [`Value`] | `any` |
/// | `Option<T>` | `T?` |
/// | `Vec<T>` | `[T]` |
/// | [`SetOf<T>`] | `{T}` |
/// | `Box<T>` | as `T` |
/// | a `#[derive(Thing)]` struct / `#[derive(ThingsEnum)]` enum | its name |
///
/// Other definitions (`int<0:10>`, `utf8`, `email`, ...) are given with
/// `#[thingsdb(spec = "...")]` on the field.
pub trait FieldType {
    /// The field's definition.
    fn spec() -> Spec;
    /// Adds the types and enums the definition refers to.
    fn deps(deps: &mut Vec<Dep>) {
        let _ = deps;
    }
    /// Whether the value is stored as the query variable holds it (no
    /// instance, enum member or datetime to make).
    fn plain() -> bool {
        true
    }
    /// Appends ThingsDB code that makes this value from the query variable
    /// at `path` (such as `v.friends[2]`), which holds `self` serialized.
    fn build(&self, path: &str, out: &mut String) {
        out.push_str(path);
    }
}

/// A type or enum a definition refers to, with the function that defines
/// it (called only when needed, so types may refer to each other).
#[derive(Clone, Copy)]
pub enum Dep {
    /// A type, by name.
    Type(&'static str, fn() -> TypeDef),
    /// An enum, by name.
    Enum(&'static str, fn() -> EnumDef),
}

impl fmt::Debug for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dep::Type(n, _) => write!(f, "Type({n})"),
            Dep::Enum(n, _) => write!(f, "Enum({n})"),
        }
    }
}

/// A ThingsDB type's definition, as `#[derive(Thing)]` gives it.
#[derive(Debug, Clone)]
pub struct TypeDef {
    /// The type's name.
    pub name: String,
    /// Its fields, in order.
    pub fields: Vec<FieldDef>,
    /// The types and enums its fields refer to.
    pub deps: Vec<Dep>,
}

/// One field of a [`TypeDef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    /// The field's name in ThingsDB.
    pub name: String,
    /// Its definition.
    pub spec: Spec,
    /// Names the field had before (`#[thingsdb(renamed_from = "...")]`): a
    /// migration renames a field found under one of them.
    pub renamed_from: Vec<String>,
}

/// A ThingsDB enum's definition, as `#[derive(ThingsEnum)]` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumDef {
    /// The enum's name.
    pub name: String,
    /// Its members, in order (the first is the default).
    pub members: Vec<EnumMember>,
}

/// One member of an [`EnumDef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumMember {
    /// The member's name.
    pub name: String,
    /// Its value.
    pub value: EnumValue,
}

/// The value of an enum member (a derived enum's values are all strings
/// or all integers).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum EnumValue {
    /// A string value.
    Str(String),
    /// An integer value.
    Int(i64),
}

impl fmt::Display for EnumValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnumValue::Str(s) => write!(f, "{s:?}"),
            EnumValue::Int(i) => write!(f, "{i}"),
        }
    }
}

/// A set of types and enums: the ones asked for and everything they refer
/// to, each once. What a migration creates or changes.
///
/// ```
/// use thingsdb_client::typed::Schema;
/// use thingsdb_client::Thing;
/// #[derive(Thing)]
/// struct Node { name: String, children: Vec<Node>, parent: Option<Box<Node>> }
/// let schema = Schema::new().with::<Node>();
/// assert_eq!(schema.types().len(), 1);
/// assert_eq!(schema.types()[0].fields[1].spec.to_string(), "[Node]");
/// assert_eq!(schema.depth("Node"), Some(127)); // refers to itself
/// ```
#[derive(Debug, Clone, Default)]
pub struct Schema {
    types: Vec<TypeDef>,
    enums: Vec<EnumDef>,
}

impl Schema {
    /// An empty schema.
    pub fn new() -> Schema {
        Schema::default()
    }

    /// The schema with `T` and what it refers to added.
    pub fn with<T: Thing>(mut self) -> Schema {
        self.add::<T>();
        self
    }

    /// The schema with the enum `E` added (enums that fields use are added
    /// with their types; this is for enums no field uses).
    pub fn with_enum<E: ThingsEnum>(mut self) -> Schema {
        self.add_enum_def(E::enum_def());
        self
    }

    /// Adds `T` and what it refers to.
    pub fn add<T: Thing>(&mut self) {
        if !self.has_type(T::TYPE_NAME) {
            self.add_type_def(T::type_def());
        }
    }

    /// Adds a type definition and, through its dependencies, every type
    /// and enum it refers to that is not in the schema yet.
    pub fn add_type_def(&mut self, def: TypeDef) {
        if self.has_type(&def.name) {
            return;
        }
        let deps = def.deps.clone();
        self.types.push(def);
        for dep in deps {
            match dep {
                Dep::Type(name, f) if !self.has_type(name) => self.add_type_def(f()),
                Dep::Enum(name, f) if !self.enums.iter().any(|e| e.name == name) => {
                    self.add_enum_def(f())
                }
                _ => {}
            }
        }
    }

    /// Adds an enum definition, unless one of that name is there.
    pub fn add_enum_def(&mut self, def: EnumDef) {
        if !self.enums.iter().any(|e| e.name == def.name) {
            self.enums.push(def);
        }
    }

    fn has_type(&self, name: &str) -> bool {
        self.types.iter().any(|t| t.name == name)
    }

    /// The types, in the order they were found.
    pub fn types(&self) -> &[TypeDef] {
        &self.types
    }

    /// The enums, in the order they were found.
    pub fn enums(&self) -> &[EnumDef] {
        &self.enums
    }

    /// How many levels of things an instance of type `name` nests: 1 for a
    /// type of plain fields, one more per level of types it holds, and
    /// [`MAX_DEPTH`] for a type that refers to itself (directly or through
    /// others). `None` for a type not in the schema.
    pub fn depth(&self, name: &str) -> Option<u8> {
        let by_name: BTreeMap<&str, &TypeDef> =
            self.types.iter().map(|t| (t.name.as_str(), t)).collect();
        by_name.get(name)?;
        Some(type_depth(name, &by_name, &mut Vec::new()).unwrap_or(MAX_DEPTH))
    }
}

/// The deepest `deep` a node accepts; the depth of types that refer to
/// themselves.
pub const MAX_DEPTH: u8 = 127;

/// Depth of `name`; `None` when a cycle is met.
fn type_depth<'a>(
    name: &'a str,
    types: &BTreeMap<&'a str, &'a TypeDef>,
    path: &mut Vec<&'a str>,
) -> Option<u8> {
    if path.contains(&name) {
        return None;
    }
    let Some(def) = types.get(name) else {
        return Some(0);
    };
    path.push(name);
    let mut below = 0u8;
    for f in &def.fields {
        for r in f.spec.references() {
            if types.contains_key(r) {
                below = below.max(type_depth(r, types, path)?);
            }
        }
    }
    path.pop();
    Some(below.saturating_add(1).min(MAX_DEPTH))
}

/// Something a query can return that reads into a Rust type: a derived
/// [`Thing`], a `Vec` or an `Option` of one. Gives the code that asks the
/// node for exactly that shape.
pub trait Fetch: serde::de::DeserializeOwned {
    /// The type's nesting depth (see [`Schema::depth`]), for
    /// `return EXPR, DEPTH;`.
    fn depth() -> u8;
    /// `return (EXPR).wrap('T'), DEPTH;` (or `map_wrap` for a list): the
    /// value of the ThingsDB expression `expr` wrapped in the type, at the
    /// depth it needs.
    fn wrap_code(expr: &str) -> String;
}

fn depth_of<T: Thing>() -> u8 {
    Schema::new().with::<T>().depth(T::TYPE_NAME).unwrap_or(1)
}

impl<T: Thing> Fetch for T {
    fn depth() -> u8 {
        depth_of::<T>()
    }
    fn wrap_code(expr: &str) -> String {
        format!(
            "return ({expr}).wrap('{}'), {};",
            T::TYPE_NAME,
            depth_of::<T>()
        )
    }
}

impl<T: Thing> Fetch for Vec<T> {
    fn depth() -> u8 {
        depth_of::<T>()
    }
    fn wrap_code(expr: &str) -> String {
        format!(
            "return ({expr}).map_wrap('{}'), {};",
            T::TYPE_NAME,
            depth_of::<T>()
        )
    }
}

impl<T: Thing> Fetch for Option<T> {
    fn depth() -> u8 {
        depth_of::<T>()
    }
    fn wrap_code(expr: &str) -> String {
        format!(
            "return [{expr}].map(|x| is_nil(x) ? nil : x.wrap('{}'))[0], {};",
            T::TYPE_NAME,
            depth_of::<T>()
        )
    }
}

/// ThingsDB code that makes `value` (instances of its types, enum members,
/// datetimes) from the query variable `var` holding `value` serialized.
///
/// ```
/// use thingsdb_client::typed::build_expr;
/// use thingsdb_client::Thing;
/// #[derive(Thing)]
/// struct Address { street: String }
/// #[derive(Thing)]
/// struct Person { name: String, home: Option<Address>, tags: Vec<String> }
/// let p = Person { name: "Iris".into(), home: Some(Address { street: "Elm".into() }), tags: vec![] };
/// assert_eq!(
///     build_expr(&p, "p"),
///     "Person({name:p.name,home:Address({street:p.home.street}),tags:p.tags})"
/// );
/// ```
pub fn build_expr<T: FieldType + ?Sized>(value: &T, var: &str) -> String {
    let mut out = String::new();
    value.build(var, &mut out);
    out
}

/// `[...]` of the elements, each made from `path[i]`; the list as it is
/// when its elements are plain.
pub(crate) fn build_list<T: FieldType>(items: &[T], path: &str, out: &mut String) {
    if T::plain() {
        out.push_str(path);
        return;
    }
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item.build(&format!("{path}[{i}]"), out);
    }
    out.push(']');
}

macro_rules! plain_field {
    ($spec:expr => $($t:ty),*) => {
        $(impl FieldType for $t {
            fn spec() -> Spec {
                $spec
            }
        })*
    };
}

plain_field!(Spec::Str => String);
plain_field!(Spec::Int => i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);
plain_field!(Spec::Float => f32, f64);
plain_field!(Spec::Bool => bool);
plain_field!(Spec::Any => rmpv::Value);

impl<T: FieldType> FieldType for Option<T> {
    fn spec() -> Spec {
        Spec::Optional(Box::new(T::spec()))
    }
    fn deps(deps: &mut Vec<Dep>) {
        T::deps(deps)
    }
    fn plain() -> bool {
        T::plain()
    }
    fn build(&self, path: &str, out: &mut String) {
        match self {
            Some(v) => v.build(path, out),
            None => out.push_str("nil"),
        }
    }
}

impl<T: FieldType> FieldType for Vec<T> {
    fn spec() -> Spec {
        Spec::List(Box::new(T::spec()))
    }
    fn deps(deps: &mut Vec<Dep>) {
        T::deps(deps)
    }
    fn plain() -> bool {
        T::plain()
    }
    fn build(&self, path: &str, out: &mut String) {
        build_list(self, path, out)
    }
}

impl<T: FieldType> FieldType for Box<T> {
    fn spec() -> Spec {
        T::spec()
    }
    fn deps(deps: &mut Vec<Dep>) {
        T::deps(deps)
    }
    fn plain() -> bool {
        T::plain()
    }
    fn build(&self, path: &str, out: &mut String) {
        (**self).build(path, out)
    }
}

/// What the derive macros' code uses; not for direct use.
#[doc(hidden)]
pub mod __private {
    use serde::de::{self, Deserializer, Visitor};

    pub use serde;

    /// `path.name`.
    pub fn join(path: &str, name: &str) -> String {
        let mut s = String::with_capacity(path.len() + 1 + name.len());
        s.push_str(path);
        s.push('.');
        s.push_str(name);
        s
    }

    /// `Type(id)`: the existing instance with that id.
    pub fn build_ref(out: &mut String, type_name: &str, id: u64) {
        out.push_str(type_name);
        out.push('(');
        out.push_str(&id.to_string());
        out.push(')');
    }

    /// `Enum(path)`: the member with the value at `path`.
    pub fn build_enum(out: &mut String, enum_name: &str, path: &str) {
        out.push_str(enum_name);
        out.push('(');
        out.push_str(path);
        out.push(')');
    }

    /// A map key: text (or bytes holding text).
    pub struct Key(String);

    impl Key {
        /// The key.
        pub fn as_str(&self) -> &str {
            &self.0
        }
    }

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a field name")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                    Ok(Key(v.to_string()))
                }
                fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Key, E> {
                    Ok(Key(String::from_utf8_lossy(v).into_owned()))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// The value of a field the map did not have: `None` for an `Option`,
    /// else an error (which says so when the thing came back as its id
    /// only: a cycle, or a depth too small).
    pub fn missing_field<'de, T: de::Deserialize<'de>, E: de::Error>(
        field: &'static str,
        type_name: &'static str,
        id: Option<u64>,
        keys: usize,
    ) -> Result<T, E> {
        if let Ok(v) = T::deserialize(Missing) {
            return Ok(v);
        }
        match id {
            Some(id) if keys == 1 => Err(E::custom(format_args!(
                "thing #{id} of type `{type_name}` came back as its id only (it was \
                 met before on the same path, a cycle, or the depth ran out); \
                 field `{field}` is missing"
            ))),
            _ => Err(E::missing_field(field)),
        }
    }

    /// A deserializer of nothing: `None` for options, an error otherwise.
    struct Missing;

    impl<'de> Deserializer<'de> for Missing {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("missing"))
        }
        fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
            v.visit_none()
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct newtype_struct seq tuple
            tuple_struct map struct enum identifier ignored_any
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf() -> TypeDef {
        TypeDef {
            name: "Leaf".into(),
            fields: vec![FieldDef {
                name: "n".into(),
                spec: Spec::Int,
                renamed_from: vec![],
            }],
            deps: vec![],
        }
    }

    fn mid() -> TypeDef {
        TypeDef {
            name: "Mid".into(),
            fields: vec![FieldDef {
                name: "leaves".into(),
                spec: Spec::parse("[Leaf]?"),
                renamed_from: vec![],
            }],
            deps: vec![Dep::Type("Leaf", leaf)],
        }
    }

    fn a() -> TypeDef {
        TypeDef {
            name: "A".into(),
            fields: vec![
                FieldDef {
                    name: "b".into(),
                    spec: Spec::parse("B?"),
                    renamed_from: vec![],
                },
                FieldDef {
                    name: "m".into(),
                    spec: Spec::parse("Mid"),
                    renamed_from: vec![],
                },
            ],
            deps: vec![Dep::Type("B", b), Dep::Type("Mid", mid)],
        }
    }

    fn b() -> TypeDef {
        TypeDef {
            name: "B".into(),
            fields: vec![FieldDef {
                name: "a".into(),
                spec: Spec::parse("A"),
                renamed_from: vec![],
            }],
            deps: vec![Dep::Type("A", a)],
        }
    }

    #[test]
    fn depth_counts_levels_and_caps_cycles() {
        let s = {
            let mut s = Schema::new();
            s.add_type_def(mid());
            s
        };
        assert_eq!(s.depth("Leaf"), Some(1));
        assert_eq!(s.depth("Mid"), Some(2));
        assert_eq!(s.depth("Nope"), None);
        let mut s = Schema::new();
        s.add_type_def(a());
        let names: Vec<&str> = s.types().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "Mid", "Leaf"]);
        assert_eq!(s.depth("A"), Some(MAX_DEPTH));
        assert_eq!(s.depth("Mid"), Some(2));
    }

    #[test]
    fn plain_lists_are_sent_as_they_are() {
        assert_eq!(build_expr(&vec![1i64, 2], "v"), "v");
        assert_eq!(
            build_expr(&Some(Datetime::from_unix(0)), "v"),
            "datetime(v)"
        );
        assert_eq!(build_expr(&None::<Datetime>, "v"), "nil");
        assert_eq!(
            build_expr(&vec![Datetime::from_unix(0), Datetime::from_unix(1)], "v.x"),
            "[datetime(v.x[0]),datetime(v.x[1])]"
        );
        assert_eq!(
            build_expr(&SetOf(vec![Timeval(1)]), "s"),
            "set([timeval(s[0])])"
        );
    }

    #[test]
    fn a_missing_option_is_none_and_a_missing_value_an_error() {
        let none: Result<Option<i64>, de::value::Error> =
            __private::missing_field("f", "T", None, 0);
        assert_eq!(none.unwrap(), None);
        let e: Result<i64, de::value::Error> = __private::missing_field("f", "T", None, 0);
        assert!(e.unwrap_err().to_string().contains("missing field `f`"));
        let e: Result<i64, de::value::Error> = __private::missing_field("f", "T", Some(7), 1);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("thing #7 of type `T` came back as its id only"));
    }

    use serde::de;
}
