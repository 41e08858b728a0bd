//! Types and enums of a collection (`@collection:NAME` scope): info, new,
//! set, mod, rename, del; and reading and writing derived types.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::{Collection, ScopeApi};
use crate::error::Error;
use crate::typed::{build_expr, Fetch, FieldType};

/// What `type_info()` and `types_info()` say about a type. Fields a newer
/// node adds are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct TypeInfo {
    /// The type's id.
    #[serde(default)]
    pub type_id: u64,
    /// Its name.
    pub name: String,
    /// Whether it is wrap-only (no instances, only for `wrap()`).
    #[serde(default)]
    pub wrap_only: bool,
    /// Whether `#` is left out when an instance is returned.
    #[serde(default)]
    pub hide_id: bool,
    /// Whether instances get an id as soon as they are made.
    #[serde(default)]
    pub auto_index: bool,
    /// When it was made, in seconds since the Unix epoch.
    #[serde(default)]
    pub created_at: u64,
    /// When it last changed (`None` if never).
    #[serde(default)]
    pub modified_at: Option<u64>,
    /// The fields, `(name, definition)`, in order.
    pub fields: Vec<(String, String)>,
    /// The methods, by name (their info as the node gives it).
    #[serde(default)]
    pub methods: BTreeMap<String, rmpv::Value>,
    /// The relations, by field name (as the node gives them).
    #[serde(default)]
    pub relations: BTreeMap<String, rmpv::Value>,
}

impl TypeInfo {
    /// A type's info made by hand (name and fields; everything else
    /// empty), for tests and for [`rust_source`](crate::typed::rust_source).
    pub fn new(name: &str, fields: &[(&str, &str)]) -> TypeInfo {
        TypeInfo {
            type_id: 0,
            name: name.to_string(),
            wrap_only: false,
            hide_id: false,
            auto_index: false,
            created_at: 0,
            modified_at: None,
            fields: fields
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
            methods: BTreeMap::new(),
            relations: BTreeMap::new(),
        }
    }
}

/// What `enum_info()` and `enums_info()` say about an enum. Fields a
/// newer node adds are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct EnumInfo {
    /// The enum's id.
    #[serde(default)]
    pub enum_id: u64,
    /// Its name.
    pub name: String,
    /// The default member's name.
    #[serde(default)]
    pub default: Option<String>,
    /// When it was made, in seconds since the Unix epoch.
    #[serde(default)]
    pub created_at: u64,
    /// When it last changed (`None` if never).
    #[serde(default)]
    pub modified_at: Option<u64>,
    /// The members, `(name, value)`, in order.
    pub members: Vec<(String, rmpv::Value)>,
    /// The methods, by name (their info as the node gives it).
    #[serde(default)]
    pub methods: BTreeMap<String, rmpv::Value>,
}

impl EnumInfo {
    /// An enum's info made by hand (name and members), for tests and for
    /// [`rust_source`](crate::typed::rust_source).
    pub fn new(name: &str, members: &[(&str, rmpv::Value)]) -> EnumInfo {
        EnumInfo {
            enum_id: 0,
            name: name.to_string(),
            default: members.first().map(|(n, _)| n.to_string()),
            created_at: 0,
            modified_at: None,
            members: members
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            methods: BTreeMap::new(),
        }
    }
}

/// Pairs written as one map, in order (a type's fields for `set_type`,
/// an enum's members for `set_enum`).
pub(crate) struct OrderedMap<'a, V>(pub &'a [(String, V)]);

impl<V: Serialize> Serialize for OrderedMap<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A query variable's name and value.
type Var<'v> = (&'v str, rmpv::Value);

/// `value` as a query variable's value.
fn val<V: Serialize + ?Sized>(value: &V) -> Result<rmpv::Value, Error> {
    rmpv::ext::to_value(value)
        .map_err(|e| Error::BadArgument(format!("cannot serialize a value: {e}")))
}

impl ScopeApi<'_, Collection> {
    /// Runs `code` with `vars` and decodes its result.
    async fn call<T: DeserializeOwned + 'static>(
        &self,
        code: &str,
        vars: &[Var<'_>],
    ) -> Result<T, Error> {
        let q = self.client.query(code).scope(self.scope.as_str());
        match vars.split_first() {
            None => q.decode().await,
            Some(((k, v), rest)) => {
                let mut q = q.var(k, v);
                for (k, v) in rest {
                    q = q.var(k, v);
                }
                q.decode().await
            }
        }
    }

    /// Every type of the collection (`types_info()`).
    pub async fn types_info(&self) -> Result<Vec<TypeInfo>, Error> {
        self.get("types_info();").await
    }

    /// One type's info (`type_info(name)`); a `lookup` error when there is
    /// no such type.
    pub async fn type_info(&self, name: &str) -> Result<TypeInfo, Error> {
        self.call("type_info(name);", &[("name", name.into())])
            .await
    }

    /// Whether the collection has a type of that name (`has_type(name)`).
    pub async fn has_type(&self, name: &str) -> Result<bool, Error> {
        self.call("has_type(name);", &[("name", name.into())]).await
    }

    /// How many instances of the type there are (`type_count(name)`).
    pub async fn type_count(&self, name: &str) -> Result<u64, Error> {
        self.call("type_count(name);", &[("name", name.into())])
            .await
    }

    /// Makes a type without fields (`new_type(name)`), which other types
    /// can then refer to before it is [set](Self::set_type).
    pub async fn new_type(&self, name: &str) -> Result<(), Error> {
        self.call("new_type(name); nil;", &[("name", name.into())])
            .await
    }

    /// Gives a type without fields (or a new type) its fields, in order
    /// (`set_type(name, {field: definition, ...})`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let stuff = client.collection("stuff")?;
    /// stuff.new_type("Person").await?;
    /// stuff.set_type("Person", &[("name".into(), "str".into()), ("friends".into(), "[Person]".into())]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_type(&self, name: &str, fields: &[(String, String)]) -> Result<(), Error> {
        self.query("set_type(name, fields);")
            .var("name", name)
            .var("fields", &OrderedMap(fields))
            .decode()
            .await
    }

    /// Adds a field to a type (`mod_type(name, 'add', field, definition)`);
    /// existing instances get the definition's default value.
    pub async fn mod_type_add(&self, name: &str, field: &str, spec: &str) -> Result<(), Error> {
        self.call(
            "mod_type(name, 'add', field, spec);",
            &[
                ("name", name.into()),
                ("field", field.into()),
                ("spec", spec.into()),
            ],
        )
        .await
    }

    /// Adds a field to a type, giving existing instances `initial`
    /// (`mod_type(name, 'add', field, definition, initial)`).
    pub async fn mod_type_add_with<V: Serialize + ?Sized>(
        &self,
        name: &str,
        field: &str,
        spec: &str,
        initial: &V,
    ) -> Result<(), Error> {
        self.call(
            "mod_type(name, 'add', field, spec, initial);",
            &[
                ("name", name.into()),
                ("field", field.into()),
                ("spec", spec.into()),
                ("initial", val(initial)?),
            ],
        )
        .await
    }

    /// Changes a field's definition (`mod_type(name, 'mod', field,
    /// definition)`); the node refuses a change its values do not fit.
    pub async fn mod_type_mod(&self, name: &str, field: &str, spec: &str) -> Result<(), Error> {
        self.call(
            "mod_type(name, 'mod', field, spec);",
            &[
                ("name", name.into()),
                ("field", field.into()),
                ("spec", spec.into()),
            ],
        )
        .await
    }

    /// Renames a field, keeping its values (`mod_type(name, 'ren', field,
    /// new_name)`).
    pub async fn mod_type_ren(&self, name: &str, field: &str, new_name: &str) -> Result<(), Error> {
        self.call(
            "mod_type(name, 'ren', field, new_name);",
            &[
                ("name", name.into()),
                ("field", field.into()),
                ("new_name", new_name.into()),
            ],
        )
        .await
    }

    /// Removes a field and its values from every instance
    /// (`mod_type(name, 'del', field)`).
    pub async fn mod_type_del(&self, name: &str, field: &str) -> Result<(), Error> {
        self.call(
            "mod_type(name, 'del', field);",
            &[("name", name.into()), ("field", field.into())],
        )
        .await
    }

    /// Turns wrap-only mode on or off (`mod_type(name, 'wpo', on)`).
    pub async fn mod_type_wpo(&self, name: &str, on: bool) -> Result<(), Error> {
        self.call(
            "mod_type(name, 'wpo', on);",
            &[("name", name.into()), ("on", on.into())],
        )
        .await
    }

    /// Turns hiding the `#` id of returned instances on or off
    /// (`mod_type(name, 'hid', on)`).
    pub async fn mod_type_hid(&self, name: &str, on: bool) -> Result<(), Error> {
        self.call(
            "mod_type(name, 'hid', on);",
            &[("name", name.into()), ("on", on.into())],
        )
        .await
    }

    /// Turns giving instances an id as soon as they are made on or off
    /// (`mod_type(name, 'idx', on)`).
    pub async fn mod_type_idx(&self, name: &str, on: bool) -> Result<(), Error> {
        self.call(
            "mod_type(name, 'idx', on);",
            &[("name", name.into()), ("on", on.into())],
        )
        .await
    }

    /// Makes `field` and the field `other` of the type it refers to a
    /// relation (kept in sync both ways), or with `None` ends the relation
    /// (`mod_type(name, 'rel', field, other)`).
    pub async fn mod_type_rel(
        &self,
        name: &str,
        field: &str,
        other: Option<&str>,
    ) -> Result<(), Error> {
        self.call(
            "mod_type(name, 'rel', field, other);",
            &[
                ("name", name.into()),
                ("field", field.into()),
                ("other", other.map_or(rmpv::Value::Nil, rmpv::Value::from)),
            ],
        )
        .await
    }

    /// Renames a type (`rename_type(name, new_name)`).
    pub async fn rename_type(&self, name: &str, new_name: &str) -> Result<(), Error> {
        self.call(
            "rename_type(name, new_name);",
            &[("name", name.into()), ("new_name", new_name.into())],
        )
        .await
    }

    /// Deletes a type; its instances become plain things (`del_type(name)`).
    pub async fn del_type(&self, name: &str) -> Result<(), Error> {
        self.call("del_type(name);", &[("name", name.into())]).await
    }

    /// Every enum of the collection (`enums_info()`).
    pub async fn enums_info(&self) -> Result<Vec<EnumInfo>, Error> {
        self.get("enums_info();").await
    }

    /// One enum's info (`enum_info(name)`).
    pub async fn enum_info(&self, name: &str) -> Result<EnumInfo, Error> {
        self.call("enum_info(name);", &[("name", name.into())])
            .await
    }

    /// Whether the collection has an enum of that name (`has_enum(name)`).
    pub async fn has_enum(&self, name: &str) -> Result<bool, Error> {
        self.call("has_enum(name);", &[("name", name.into())]).await
    }

    /// Makes an enum with its members, in order; the first is the default
    /// (`set_enum(name, {member: value, ...})`).
    pub async fn set_enum<V: Serialize>(
        &self,
        name: &str,
        members: &[(String, V)],
    ) -> Result<(), Error> {
        self.query("set_enum(name, members); nil;")
            .var("name", name)
            .var("members", &OrderedMap(members))
            .decode()
            .await
    }

    /// Adds a member to an enum (`mod_enum(name, 'add', member, value)`).
    pub async fn mod_enum_add<V: Serialize>(
        &self,
        name: &str,
        member: &str,
        value: &V,
    ) -> Result<(), Error> {
        self.call(
            "mod_enum(name, 'add', member, value);",
            &[
                ("name", name.into()),
                ("member", member.into()),
                ("value", val(value)?),
            ],
        )
        .await
    }

    /// Removes a member that no thing uses (`mod_enum(name, 'del', member)`).
    pub async fn mod_enum_del(&self, name: &str, member: &str) -> Result<(), Error> {
        self.call(
            "mod_enum(name, 'del', member);",
            &[("name", name.into()), ("member", member.into())],
        )
        .await
    }

    /// Makes a member the default (`mod_enum(name, 'def', member)`).
    pub async fn mod_enum_def(&self, name: &str, member: &str) -> Result<(), Error> {
        self.call(
            "mod_enum(name, 'def', member);",
            &[("name", name.into()), ("member", member.into())],
        )
        .await
    }

    /// Changes a member's value (`mod_enum(name, 'mod', member, value)`).
    pub async fn mod_enum_mod<V: Serialize>(
        &self,
        name: &str,
        member: &str,
        value: &V,
    ) -> Result<(), Error> {
        self.call(
            "mod_enum(name, 'mod', member, value);",
            &[
                ("name", name.into()),
                ("member", member.into()),
                ("value", val(value)?),
            ],
        )
        .await
    }

    /// Renames a member (`mod_enum(name, 'ren', member, new_name)`).
    pub async fn mod_enum_ren(
        &self,
        name: &str,
        member: &str,
        new_name: &str,
    ) -> Result<(), Error> {
        self.call(
            "mod_enum(name, 'ren', member, new_name);",
            &[
                ("name", name.into()),
                ("member", member.into()),
                ("new_name", new_name.into()),
            ],
        )
        .await
    }

    /// Renames an enum (`rename_enum(name, new_name)`).
    pub async fn rename_enum(&self, name: &str, new_name: &str) -> Result<(), Error> {
        self.call(
            "rename_enum(name, new_name);",
            &[("name", name.into()), ("new_name", new_name.into())],
        )
        .await
    }

    /// Deletes an enum that no type uses (`del_enum(name)`).
    pub async fn del_enum(&self, name: &str) -> Result<(), Error> {
        self.call("del_enum(name);", &[("name", name.into())]).await
    }

    /// The value of the ThingsDB expression `expr`, in the shape of `T`
    /// (a derived [`Thing`](crate::typed::Thing), or a `Vec` or `Option`
    /// of one): wrapped in the type at the depth it nests, so nested
    /// things decode (see [`Fetch`]).
    ///
    /// ```no_run
    /// # use thingsdb_client::Thing;
    /// # #[derive(Thing)] struct Person { name: String }
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let people: Vec<Person> = client.collection("stuff")?.fetch(".people").await?;
    /// # Ok(()) }
    /// ```
    pub async fn fetch<T: Fetch + 'static>(&self, expr: &str) -> Result<T, Error> {
        self.call(&T::wrap_code(expr), &[]).await
    }

    /// As [`fetch`](Self::fetch), with query variables for `expr` (a
    /// struct or a map).
    pub async fn fetch_with<T: Fetch + 'static, V: Serialize + ?Sized>(
        &self,
        expr: &str,
        vars: &V,
    ) -> Result<T, Error> {
        let code = T::wrap_code(expr);
        self.client
            .query(&code)
            .scope(self.scope.as_str())
            .vars(vars)
            .decode()
            .await
    }

    /// Stores `value` at `target` (`TARGET = VALUE;`, such as `.people`
    /// or `.config`), making the instances of its types from a query
    /// variable (see [`build_expr`]).
    pub async fn store<T: FieldType + Serialize + ?Sized>(
        &self,
        target: &str,
        value: &T,
    ) -> Result<(), Error> {
        let code = format!("{target} = {}; nil;", build_expr(value, "v"));
        self.run_with_value(&code, value).await
    }

    /// Appends `value` to the list at `target` (`TARGET.push(VALUE);`) and
    /// returns the new thing's id (or `None` when `value` is not a thing).
    pub async fn push<T: FieldType + Serialize + ?Sized>(
        &self,
        target: &str,
        value: &T,
    ) -> Result<Option<u64>, Error> {
        let code = format!(
            "x = {}; {target}.push(x); is_thing(x) ? x.id() : nil;",
            build_expr(value, "v")
        );
        self.run_with_value(&code, value).await
    }

    /// Runs `code` with `value` as the variable `v` (structs as maps).
    async fn run_with_value<T: Serialize + ?Sized, R: DeserializeOwned + 'static>(
        &self,
        code: &str,
        value: &T,
    ) -> Result<R, Error> {
        self.client
            .query(code)
            .scope(self.scope.as_str())
            .var("v", value)
            .decode()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_and_enum_info_read_what_a_node_sends() {
        let v = rmpv::Value::Map(vec![
            ("type_id".into(), 1.into()),
            ("name".into(), "Addr".into()),
            ("wrap_only".into(), false.into()),
            ("hide_id".into(), false.into()),
            ("auto_index".into(), false.into()),
            ("created_at".into(), 1796284215.into()),
            ("modified_at".into(), rmpv::Value::Nil),
            (
                "fields".into(),
                rmpv::Value::Array(vec![rmpv::Value::Array(vec![
                    "street".into(),
                    "str".into(),
                ])]),
            ),
            ("methods".into(), rmpv::Value::Map(vec![])),
            ("relations".into(), rmpv::Value::Map(vec![])),
            ("something_new".into(), 1.into()),
        ]);
        let bytes = rmp_serde::to_vec(&v).unwrap();
        let t: TypeInfo = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(
            t,
            TypeInfo {
                type_id: 1,
                created_at: 1796284215,
                ..TypeInfo::new("Addr", &[("street", "str")])
            }
        );

        let v = rmpv::Value::Map(vec![
            ("enum_id".into(), 0.into()),
            ("name".into(), "Color".into()),
            ("default".into(), "RED".into()),
            (
                "members".into(),
                rmpv::Value::Array(vec![rmpv::Value::Array(vec!["RED".into(), "r".into()])]),
            ),
        ]);
        let e: EnumInfo = rmp_serde::from_slice(&rmp_serde::to_vec(&v).unwrap()).unwrap();
        assert_eq!(e, EnumInfo::new("Color", &[("RED", "r".into())]));
    }

    #[test]
    fn ordered_maps_keep_their_order() {
        let fields = vec![
            ("z".to_string(), "str".to_string()),
            ("a".to_string(), "int".to_string()),
        ];
        let bytes = rmp_serde::to_vec(&OrderedMap(&fields)).unwrap();
        assert_eq!(bytes, b"\x82\xa1z\xa3str\xa1a\xa3int");
    }
}
