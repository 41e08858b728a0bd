//! Creating and migrating a collection's types and enums from a
//! [`Schema`]: a plan to print first, then applied in an order that works
//! for types that refer to each other.

use std::fmt;

use super::types::{EnumInfo, TypeInfo};
use super::{Collection, ScopeApi};
use crate::error::Error;
use crate::typed::{EnumValue, Schema, Spec};

/// One step of a [`Plan`], in the ThingsDB function it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// `set_enum(name, {member: value, ...})`: a new enum.
    NewEnum {
        /// The enum.
        name: String,
        /// Its members, in order.
        members: Vec<(String, EnumValue)>,
    },
    /// `mod_enum(name, 'add', member, value)`.
    AddMember {
        /// The enum.
        name: String,
        /// The new member.
        member: String,
        /// Its value.
        value: EnumValue,
    },
    /// `mod_enum(name, 'mod', member, value)`: a member's value changed.
    ModMember {
        /// The enum.
        name: String,
        /// The member.
        member: String,
        /// Its value on the node.
        from: String,
        /// The value it gets.
        to: EnumValue,
    },
    /// `new_type(name)`: a type without fields yet, so that the types can
    /// refer to each other before they get their fields.
    NewType {
        /// The type.
        name: String,
    },
    /// `set_type(name, {field: definition, ...})` on a type just made.
    SetType {
        /// The type.
        name: String,
        /// Its fields, in order.
        fields: Vec<(String, String)>,
    },
    /// `mod_type(name, 'ren', from, to)`: a field renamed, values kept.
    RenameField {
        /// The type.
        name: String,
        /// The field's old name.
        from: String,
        /// Its new name.
        to: String,
    },
    /// `mod_type(name, 'add', field, definition)`: existing instances get
    /// the definition's default value.
    AddField {
        /// The type.
        name: String,
        /// The new field.
        field: String,
        /// Its definition.
        spec: String,
    },
    /// `mod_type(name, 'mod', field, definition)`: the node refuses a
    /// definition the field's values do not fit.
    ModField {
        /// The type.
        name: String,
        /// The field.
        field: String,
        /// Its definition on the node.
        from: String,
        /// The definition it gets.
        to: String,
    },
    /// `mod_type(name, 'del', field)`: the field and its values are
    /// removed. Destructive.
    DelField {
        /// The type.
        name: String,
        /// The field.
        field: String,
    },
    /// `mod_enum(name, 'del', member)`: destructive (and refused by the
    /// node while a thing uses the member).
    DelMember {
        /// The enum.
        name: String,
        /// The member.
        member: String,
    },
}

impl Step {
    /// Whether the step removes data (field values, enum members).
    pub fn is_destructive(&self) -> bool {
        matches!(self, Step::DelField { .. } | Step::DelMember { .. })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::NewEnum { name, members } => {
                let m: Vec<String> = members.iter().map(|(n, v)| format!("{n}: {v}")).collect();
                write!(f, "+ enum {name} {{{}}}", m.join(", "))
            }
            Step::AddMember {
                name,
                member,
                value,
            } => {
                write!(f, "~ enum {name}: add member {member}: {value}")
            }
            Step::ModMember {
                name,
                member,
                from,
                to,
            } => write!(f, "~ enum {name}: change member {member}: {from} -> {to}"),
            Step::NewType { name } => write!(f, "+ type {name}"),
            Step::SetType { name, fields } => {
                let m: Vec<String> = fields.iter().map(|(n, s)| format!("{n}: {s}")).collect();
                write!(f, "+ type {name} {{{}}}", m.join(", "))
            }
            Step::RenameField { name, from, to } => {
                write!(f, "~ type {name}: rename field {from} -> {to}")
            }
            Step::AddField { name, field, spec } => {
                write!(f, "~ type {name}: add field {field}: {spec}")
            }
            Step::ModField {
                name,
                field,
                from,
                to,
            } => {
                write!(f, "~ type {name}: change field {field}: {from} -> {to}")
            }
            Step::DelField { name, field } => {
                write!(f, "- type {name}: remove field {field} (destructive)")
            }
            Step::DelMember { name, member } => {
                write!(f, "- enum {name}: remove member {member} (destructive)")
            }
        }
    }
}

/// What a migration would do: the steps in the order they run. Print it
/// (one step a line: `+` adds, `~` changes, `-` removes) before
/// [applying](ScopeApi::apply) it.
///
/// Made by [`ScopeApi::plan`]; types and enums of the collection that the
/// schema does not name are left alone. Removing what the Rust side no
/// longer has is destructive: those steps are listed but only run when
/// the plan [allows](Plan::allow_destructive) it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    steps: Vec<Step>,
    destructive_allowed: bool,
}

impl Plan {
    /// The plan from what the collection has (`types`, `enums`, as
    /// `types_info()` and `enums_info()` give them) to `schema`.
    ///
    /// Order: new enums and members; `new_type` for every new type; then
    /// `set_type` for each (so new types may refer to each other and to
    /// themselves); then renames, new fields and changed definitions of
    /// existing types; destructive steps last.
    ///
    /// ```
    /// use thingsdb_client::management::{Plan, TypeInfo};
    /// use thingsdb_client::typed::Schema;
    /// use thingsdb_client::Thing;
    /// #[derive(Thing)]
    /// struct Person {
    ///     name: String,
    ///     #[thingsdb(renamed_from = "mail")]
    ///     email: Option<String>,
    ///     age: Option<i64>,
    /// }
    /// let node = TypeInfo::new("Person", &[("name", "str"), ("mail", "str?")]);
    /// let plan = Plan::between(&[node], &[], &Schema::new().with::<Person>());
    /// assert_eq!(
    ///     plan.to_string(),
    ///     "~ type Person: rename field mail -> email\n~ type Person: add field age: int?\n"
    /// );
    /// ```
    pub fn between(types: &[TypeInfo], enums: &[EnumInfo], schema: &Schema) -> Plan {
        let mut first = Vec::new();
        let mut new_types = Vec::new();
        let mut set_types = Vec::new();
        let mut changes = Vec::new();
        let mut destructive = Vec::new();

        for e in schema.enums() {
            let Some(have) = enums.iter().find(|h| h.name == e.name) else {
                first.push(Step::NewEnum {
                    name: e.name.clone(),
                    members: e
                        .members
                        .iter()
                        .map(|m| (m.name.clone(), m.value.clone()))
                        .collect(),
                });
                continue;
            };
            for m in &e.members {
                match have.members.iter().find(|(n, _)| *n == m.name) {
                    None => first.push(Step::AddMember {
                        name: e.name.clone(),
                        member: m.name.clone(),
                        value: m.value.clone(),
                    }),
                    Some((_, v)) if !same_value(v, &m.value) => first.push(Step::ModMember {
                        name: e.name.clone(),
                        member: m.name.clone(),
                        from: v.to_string(),
                        to: m.value.clone(),
                    }),
                    Some(_) => {}
                }
            }
            for (n, _) in &have.members {
                if !e.members.iter().any(|m| m.name == *n) {
                    destructive.push(Step::DelMember {
                        name: e.name.clone(),
                        member: n.clone(),
                    });
                }
            }
        }

        for t in schema.types() {
            let fields: Vec<(String, String)> = t
                .fields
                .iter()
                .map(|f| (f.name.clone(), f.spec.to_string()))
                .collect();
            let Some(have) = types.iter().find(|h| h.name == t.name) else {
                new_types.push(Step::NewType {
                    name: t.name.clone(),
                });
                set_types.push(Step::SetType {
                    name: t.name.clone(),
                    fields,
                });
                continue;
            };
            let mut names: Vec<&str> = have.fields.iter().map(|(n, _)| n.as_str()).collect();
            for f in &t.fields {
                if names.contains(&f.name.as_str()) {
                    continue;
                }
                let old = f.renamed_from.iter().find(|o| {
                    names.contains(&o.as_str()) && !t.fields.iter().any(|g| g.name == **o)
                });
                if let Some(old) = old {
                    changes.push(Step::RenameField {
                        name: t.name.clone(),
                        from: old.clone(),
                        to: f.name.clone(),
                    });
                    if let Some(n) = names.iter_mut().find(|n| **n == old.as_str()) {
                        *n = f.name.as_str();
                    }
                }
            }
            for f in &t.fields {
                let spec = f.spec.to_string();
                let at = names.iter().position(|n| *n == f.name);
                match at {
                    None => changes.push(Step::AddField {
                        name: t.name.clone(),
                        field: f.name.clone(),
                        spec,
                    }),
                    Some(i) => {
                        let from = &have.fields[i].1;
                        // As text: a parsed definition cannot tell an enum
                        // from a type, and both print as their name.
                        if Spec::parse(from).to_string() != spec {
                            changes.push(Step::ModField {
                                name: t.name.clone(),
                                field: f.name.clone(),
                                from: from.clone(),
                                to: spec,
                            });
                        }
                    }
                }
            }
            for n in &names {
                if !t.fields.iter().any(|f| f.name == *n) {
                    destructive.push(Step::DelField {
                        name: t.name.clone(),
                        field: n.to_string(),
                    });
                }
            }
        }
        let mut steps = first;
        steps.extend(new_types);
        steps.extend(set_types);
        steps.extend(changes);
        steps.extend(destructive);
        Plan {
            steps,
            destructive_allowed: false,
        }
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether some step removes data.
    pub fn is_destructive(&self) -> bool {
        self.steps.iter().any(Step::is_destructive)
    }

    /// The same plan, allowed to run its destructive steps.
    pub fn allow_destructive(mut self) -> Plan {
        self.destructive_allowed = true;
        self
    }

    /// Whether destructive steps run when the plan is applied.
    pub fn destructive_allowed(&self) -> bool {
        self.destructive_allowed
    }
}

/// Whether a member's value on the node is `want`.
fn same_value(have: &rmpv::Value, want: &EnumValue) -> bool {
    match want {
        EnumValue::Str(s) => have.as_str() == Some(s.as_str()),
        EnumValue::Int(i) => have.as_i64() == Some(*i),
    }
}

impl fmt::Display for Plan {
    /// One step a line; `nothing to do` for an empty plan; destructive steps
    /// not allowed to run are marked `(skipped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return writeln!(f, "nothing to do");
        }
        for s in &self.steps {
            if s.is_destructive() && !self.destructive_allowed {
                writeln!(f, "{s} (skipped)")?;
            } else {
                writeln!(f, "{s}")?;
            }
        }
        Ok(())
    }
}

impl ScopeApi<'_, Collection> {
    /// The plan that brings the collection's types and enums to `schema`
    /// (see [`Plan::between`]). Changes nothing.
    pub async fn plan(&self, schema: &Schema) -> Result<Plan, Error> {
        let types = self.types_info().await?;
        let enums = self.enums_info().await?;
        Ok(Plan::between(&types, &enums, schema))
    }

    /// Runs the steps of `plan`, one request each, in order; destructive
    /// steps only when the plan [allows](Plan::allow_destructive) them.
    /// Stops at the first step the node refuses, with its error; the
    /// steps before it stay done (make a new plan to see where things
    /// stand).
    pub async fn apply(&self, plan: &Plan) -> Result<(), Error> {
        for step in &plan.steps {
            if step.is_destructive() && !plan.destructive_allowed {
                continue;
            }
            let r = match step {
                Step::NewEnum { name, members } => self.set_enum(name, members).await,
                Step::AddMember {
                    name,
                    member,
                    value,
                } => self.mod_enum_add(name, member, value).await,
                Step::ModMember {
                    name, member, to, ..
                } => self.mod_enum_mod(name, member, to).await,
                Step::NewType { name } => self.new_type(name).await,
                Step::SetType { name, fields } => self.set_type(name, fields).await,
                Step::RenameField { name, from, to } => self.mod_type_ren(name, from, to).await,
                Step::AddField { name, field, spec } => self.mod_type_add(name, field, spec).await,
                Step::ModField {
                    name, field, to, ..
                } => self.mod_type_mod(name, field, to).await,
                Step::DelField { name, field } => self.mod_type_del(name, field).await,
                Step::DelMember { name, member } => self.mod_enum_del(name, member).await,
            };
            r.map_err(|e| match e {
                Error::Thingsdb(t) => Error::Thingsdb(crate::ThingsdbError::new(
                    t.code,
                    format!("{} (in migration step `{step}`)", t.message),
                )),
                other => other,
            })?;
        }
        Ok(())
    }

    /// Plans and applies in one go, without destructive steps; returns
    /// the plan that ran.
    pub async fn migrate(&self, schema: &Schema) -> Result<Plan, Error> {
        let plan = self.plan(schema).await?;
        self.apply(&plan).await?;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::{Dep, EnumDef, EnumMember, FieldDef, TypeDef};

    fn field(name: &str, spec: &str) -> FieldDef {
        FieldDef {
            name: name.into(),
            spec: Spec::parse(spec),
            renamed_from: vec![],
        }
    }

    fn color() -> EnumDef {
        EnumDef {
            name: "Color".into(),
            members: vec![
                EnumMember {
                    name: "RED".into(),
                    value: EnumValue::Str("RED".into()),
                },
                EnumMember {
                    name: "BLUE".into(),
                    value: EnumValue::Str("BLUE".into()),
                },
            ],
        }
    }

    fn a() -> TypeDef {
        TypeDef {
            name: "A".into(),
            fields: vec![field("b", "B?"), field("me", "[A]"), field("c", "Color")],
            deps: vec![Dep::Type("B", b), Dep::Enum("Color", color)],
        }
    }

    fn b() -> TypeDef {
        TypeDef {
            name: "B".into(),
            fields: vec![field("a", "A")],
            deps: vec![Dep::Type("A", a)],
        }
    }

    fn schema() -> Schema {
        let mut s = Schema::new();
        s.add_type_def(a());
        s
    }

    #[test]
    fn a_new_collection_gets_enums_then_all_types_then_their_fields() {
        let plan = Plan::between(&[], &[], &schema());
        assert_eq!(
            plan.to_string(),
            "+ enum Color {RED: \"RED\", BLUE: \"BLUE\"}\n+ type A\n+ type B\n\
             + type A {b: B?, me: [A], c: Color}\n+ type B {a: A}\n"
        );
        assert!(!plan.is_destructive());
        let again = Plan::between(
            &[
                TypeInfo::new("A", &[("b", "B?"), ("me", "[A]"), ("c", "Color")]),
                TypeInfo::new("B", &[("a", "A")]),
            ],
            &[EnumInfo::new(
                "Color",
                &[("RED", "RED".into()), ("BLUE", "BLUE".into())],
            )],
            &schema(),
        );
        assert!(again.is_empty(), "{again}");
        assert_eq!(again.to_string(), "nothing to do\n");
    }

    #[test]
    fn removals_are_destructive_and_skipped_unless_allowed() {
        let plan = Plan::between(
            &[
                TypeInfo::new(
                    "A",
                    &[("b", "B?"), ("old", "str"), ("me", "[A]?"), ("c", "Color")],
                ),
                TypeInfo::new("B", &[("a", "A")]),
                TypeInfo::new("Unrelated", &[("x", "int")]),
            ],
            &[EnumInfo::new(
                "Color",
                &[("RED", "red".into()), ("GREEN", "GREEN".into())],
            )],
            &schema(),
        );
        assert_eq!(
            plan.to_string(),
            "~ enum Color: change member RED: \"red\" -> \"RED\"\n\
             ~ enum Color: add member BLUE: \"BLUE\"\n\
             ~ type A: change field me: [A]? -> [A]\n\
             - enum Color: remove member GREEN (destructive) (skipped)\n\
             - type A: remove field old (destructive) (skipped)\n"
        );
        assert!(plan.is_destructive());
        let allowed = plan.allow_destructive();
        assert!(allowed.destructive_allowed());
        assert!(!allowed.to_string().contains("skipped"));
    }

    #[test]
    fn a_rename_needs_the_old_name_on_the_node_and_not_in_rust() {
        let mut t = a();
        t.fields[0].renamed_from = vec!["bee".into()];
        let mut s = Schema::new();
        s.add_type_def(t.clone());
        let have = [
            TypeInfo::new("A", &[("bee", "B?"), ("me", "[A]"), ("c", "Color")]),
            TypeInfo::new("B", &[("a", "A")]),
        ];
        let enums = [EnumInfo::new(
            "Color",
            &[("RED", "RED".into()), ("BLUE", "BLUE".into())],
        )];
        let plan = Plan::between(&have, &enums, &s);
        assert_eq!(
            plan.steps(),
            [Step::RenameField {
                name: "A".into(),
                from: "bee".into(),
                to: "b".into()
            }]
        );
        // Already renamed: nothing to do.
        let have = [
            TypeInfo::new("A", &[("b", "B?"), ("me", "[A]"), ("c", "Color")]),
            TypeInfo::new("B", &[("a", "A")]),
        ];
        assert!(Plan::between(&have, &enums, &s).is_empty());
    }
}
