//! What the derives generate: type and enum definitions, serde in and
//! out, the code that builds instances, and typed room events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::model::{v1, v2};
use thingsdb_client::typed::{
    build_expr, Blob, Datetime, EnumValue, Fetch, Schema, Spec, Thing, ThingsEnum, MAX_DEPTH,
};
use thingsdb_client::{Emitted, RoomEvent, TypedEvent, Value};

fn person() -> v1::Person {
    v1::Person {
        id: None,
        name: "Iris".into(),
        mail: Some("iris@example.com".into()),
        address: v1::Address {
            street: "Elm".into(),
            number: None,
        },
        friends: vec![],
        team: None,
        color: v1::Color::Green,
        born: Datetime::from_unix(1_700_000_000),
        avatar: Blob(vec![1, 2]),
        tags: vec!["a".into()],
        scores: vec![1.5],
        active: true,
    }
}

fn specs<T: Thing>() -> Vec<(String, String)> {
    T::type_def()
        .fields
        .into_iter()
        .map(|f| (f.name, f.spec.to_string()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn a_struct_is_a_type_definition() {
    assert_eq!(v1::Person::TYPE_NAME, "Person");
    assert_eq!(
        specs::<v1::Person>(),
        pairs(&[
            ("name", "str"),
            ("mail", "str?"),
            ("address", "Address"),
            ("friends", "[Person]"),
            ("team", "Team?"),
            ("color", "Color"),
            ("born", "datetime"),
            ("avatar", "bytes"),
            ("tags", "[str]"),
            ("scores", "[float]"),
            ("active", "bool"),
        ])
    );
    // Renamed, skipped, renamed_from, the id left out.
    let def = v2::Person::type_def();
    let email = def.fields.iter().find(|f| f.name == "email").unwrap();
    assert_eq!(email.renamed_from, ["mail"]);
    assert_eq!(email.spec, Spec::Optional(Box::new(Spec::Str)));
    assert!(def
        .fields
        .iter()
        .all(|f| f.name != "cache" && f.name != "id"));
    assert_eq!(def.fields.last().unwrap().name, "nickname");
}

#[test]
fn a_schema_follows_references_once_and_knows_depths() {
    let s = Schema::new().with::<v1::Person>().with::<v1::Category>();
    let names: Vec<&str> = s.types().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Person", "Address", "Team", "Category"]);
    assert_eq!(s.enums().len(), 1);
    assert_eq!(
        s.enums()[0]
            .members
            .iter()
            .map(|m| m.value.clone())
            .collect::<Vec<_>>(),
        [
            EnumValue::Str("Red".into()),
            EnumValue::Str("Green".into()),
            EnumValue::Str("Blue".into())
        ]
    );
    assert_eq!(s.depth("Address"), Some(1));
    assert_eq!(s.depth("Person"), Some(MAX_DEPTH));
    assert_eq!(s.depth("Category"), Some(MAX_DEPTH));
    assert_eq!(<v1::Address as Fetch>::depth(), 1);
    assert_eq!(
        Vec::<v1::Person>::wrap_code(".people"),
        "return (.people).map_wrap('Person'), 127;"
    );
    assert_eq!(
        v1::Address::wrap_code(".a"),
        "return (.a).wrap('Address'), 1;"
    );
    assert!(Option::<v1::Address>::wrap_code(".a").contains("is_nil(x) ? nil : x.wrap('Address')"));
}

/// A value as the node would send it: `#` first, fields in any order,
/// and maybe fields the Rust side does not know.
fn node_map(fields: Vec<(&str, Value)>) -> Vec<u8> {
    let v = Value::Map(fields.into_iter().map(|(k, v)| (k.into(), v)).collect());
    rmp_serde::to_vec(&v).unwrap()
}

#[test]
fn serde_out_and_in() {
    let p = person();
    let bytes = rmp_serde::to_vec_named(&p).unwrap();
    let v: Value = rmp_serde::from_slice(&bytes).unwrap();
    let keys: Vec<String> = v
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys[0], "name"); // no `#`: ids are not sent
    assert!(!keys.contains(&"#".to_string()));
    let back: v1::Person = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, p);

    // As a node sends it.
    let addr = node_map(vec![
        ("#", 12.into()),
        ("extra", "ignored".into()),
        ("street", "Elm".into()),
    ]);
    let a: v1::Address = rmp_serde::from_slice(&addr).unwrap();
    assert_eq!(
        a,
        v1::Address {
            street: "Elm".into(),
            number: None
        }
    );
    let t: v1::Team = rmp_serde::from_slice(&node_map(vec![
        ("#", 7.into()),
        ("name", "core".into()),
        ("lead", Value::Nil),
    ]))
    .unwrap();
    assert_eq!(t.id, Some(7));

    // A required field missing, and a thing cut off at its id.
    let e =
        rmp_serde::from_slice::<v1::Address>(&node_map(vec![("number", 1.into())])).unwrap_err();
    assert!(e.to_string().contains("missing field `street`"), "{e}");
    let e = rmp_serde::from_slice::<v1::Address>(&node_map(vec![("#", 3.into())])).unwrap_err();
    assert!(
        e.to_string()
            .contains("thing #3 of type `Address` came back as its id only"),
        "{e}"
    );
    let e = rmp_serde::from_slice::<v1::Address>(&node_map(vec![
        ("street", "a".into()),
        ("street", "b".into()),
    ]))
    .unwrap_err();
    assert!(e.to_string().contains("duplicate field"), "{e}");
    // The skipped field is its default.
    let p2: v2::Person = rmp_serde::from_slice(&rmp_serde::to_vec_named(&p).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(p2.cache.is_empty());
    assert_eq!(p2.email_address, None); // v1 wrote `mail`
}

#[derive(Debug, Clone, Copy, PartialEq, thingsdb_client::ThingsEnum)]
#[thingsdb(name = "Level")]
enum Priority {
    Low = 1,
    #[thingsdb(rename = "HIGH")]
    High = 10,
}

#[derive(Debug, Clone, Copy, PartialEq, thingsdb_client::ThingsEnum)]
enum Mood {
    #[thingsdb(value = "happy :)")]
    Happy,
    Sad,
}

#[test]
fn enums_are_members_by_value_and_by_name() {
    assert_eq!(Priority::ENUM_NAME, "Level");
    let def = Priority::enum_def();
    assert_eq!(def.members[1].name, "HIGH");
    assert_eq!(def.members[1].value, EnumValue::Int(10));
    assert_eq!(rmp_serde::to_vec(&Priority::High).unwrap(), [10]);
    assert_eq!(
        rmp_serde::from_slice::<Priority>(&[1]).unwrap(),
        Priority::Low
    );
    // A field with the `*` flag sends names.
    assert_eq!(
        rmp_serde::from_slice::<Priority>(b"\xa4HIGH").unwrap(),
        Priority::High
    );
    assert!(rmp_serde::from_slice::<Priority>(&[2]).is_err());
    assert_eq!(rmp_serde::to_vec(&Mood::Happy).unwrap(), b"\xa8happy :)");
    assert_eq!(
        rmp_serde::from_slice::<Mood>(b"\xa3Sad").unwrap(),
        Mood::Sad
    );
    assert!(rmp_serde::from_slice::<Mood>(b"\xa3Mad").is_err());
}

#[test]
fn build_makes_instances_members_and_references() {
    let mut p = person();
    p.team = Some(Box::new(v1::Team {
        id: Some(5),
        name: "core".into(),
        lead: None,
    }));
    let mut friend = person();
    friend.name = "Ada".into();
    p.friends = vec![friend];
    let code = build_expr(&p, "v");
    assert!(code.starts_with("Person({name:v.name,mail:v.mail,address:Address({street:v.address.street,number:nil}),friends:[Person({name:v.friends[0].name,"), "{code}");
    assert!(code.contains("team:Team(5),color:Color(v.color),born:datetime(v.born),avatar:v.avatar,tags:v.tags,scores:v.scores,active:v.active})"), "{code}");
}

#[derive(Debug, Clone, PartialEq, RoomEvent)]
enum Chat {
    Message {
        user: String,
        text: String,
    },
    #[thingsdb(rename = "typing")]
    IsTyping(String),
    UserLeft,
    Scores(Vec<i64>, Option<v1::Address>),
}

#[test]
fn room_events_both_ways() {
    assert_eq!(Chat::names(), ["message", "typing", "user_left", "scores"]);
    for ev in [
        Chat::Message {
            user: "a".into(),
            text: "b".into(),
        },
        Chat::IsTyping("a".into()),
        Chat::UserLeft,
        Chat::Scores(
            vec![1, 2],
            Some(v1::Address {
                street: "x".into(),
                number: Some(1),
            }),
        ),
    ] {
        // What emit sends, and what a stream gets back.
        struct Args<'a>(&'a Chat);
        impl serde::Serialize for Args<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_args(s)
            }
        }
        let args = rmp_serde::to_vec_named(&Args(&ev)).unwrap();
        let e = Emitted {
            event: ev.name().into(),
            args: args.into(),
        };
        assert_eq!(Chat::from_emitted(&e).unwrap().unwrap(), ev);
    }
    let e = Emitted {
        event: "message".into(),
        args: rmp_serde::to_vec(&("only one",)).unwrap().into(),
    };
    assert!(Chat::from_emitted(&e).unwrap().is_err());
    let e = Emitted {
        event: "nope".into(),
        args: vec![0x90].into(),
    };
    assert!(Chat::from_emitted(&e).is_none());
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    fn color() -> impl Strategy<Value = v1::Color> {
        prop_oneof![
            Just(v1::Color::Red),
            Just(v1::Color::Green),
            Just(v1::Color::Blue)
        ]
    }

    fn address() -> impl Strategy<Value = v1::Address> {
        (".{0,8}", proptest::option::of(any::<i64>()))
            .prop_map(|(street, number)| v1::Address { street, number })
    }

    fn leaf_person() -> impl Strategy<Value = v1::Person> {
        (
            ".{0,8}",
            proptest::option::of(".{0,8}"),
            address(),
            color(),
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 0..4),
            proptest::collection::vec(".{0,4}", 0..3),
            proptest::collection::vec(-1e9f64..1e9, 0..3),
            any::<bool>(),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(name, mail, address, color, born, avatar, tags, scores, active, id)| v1::Person {
                    id,
                    name,
                    mail,
                    address,
                    friends: vec![],
                    team: None,
                    color,
                    born: Datetime::from_unix(born),
                    avatar: Blob(avatar),
                    tags,
                    scores,
                    active,
                },
            )
    }

    fn person() -> impl Strategy<Value = v1::Person> {
        (
            leaf_person(),
            proptest::collection::vec(leaf_person(), 0..3),
            proptest::option::of(leaf_person()),
        )
            .prop_map(|(mut p, friends, lead)| {
                p.friends = friends;
                p.team = Some(Box::new(v1::Team {
                    id: None,
                    name: "t".into(),
                    lead,
                }));
                p
            })
    }

    /// `p` with the ids a node would not echo back (ids are not sent).
    fn sent(mut p: v1::Person) -> v1::Person {
        p.id = None;
        p.friends = p.friends.into_iter().map(sent).collect();
        if let Some(t) = p.team.as_mut() {
            t.lead = t.lead.take().map(sent);
        }
        p
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back(p in person()) {
            let bytes = rmp_serde::to_vec_named(&p).unwrap();
            let back: v1::Person = rmp_serde::from_slice(&bytes).unwrap();
            prop_assert_eq!(back, sent(p));
        }

        #[test]
        fn a_node_map_in_any_key_order_with_an_id_and_extras_reads(a in address(), id in any::<u64>(), seed in any::<u64>()) {
            let mut fields: Vec<(&str, Value)> = vec![
                ("#", id.into()),
                ("street", a.street.as_str().into()),
                ("extra", Value::Array(vec![1.into()])),
            ];
            if let Some(n) = a.number {
                fields.push(("number", n.into()));
            }
            // A deterministic shuffle from the seed.
            let n = fields.len();
            for i in 0..n {
                let j = ((seed >> (i * 8)) as usize) % n;
                fields.swap(i, j);
            }
            let back: v1::Address = rmp_serde::from_slice(&node_map(fields)).unwrap();
            prop_assert_eq!(back, a);
        }

        #[test]
        fn build_code_names_only_the_variable(p in person()) {
            // Every value comes from `v`: no string of the value is pasted.
            let code = build_expr(&p, "v");
            let shape = match p.id {
                // A thing with an id is the existing thing.
                Some(id) => code == format!("Person({id})"),
                None => code.starts_with("Person({name:v.name,"),
            };
            prop_assert!(shape && !code.contains('"') && !code.contains('\''), "{}", code);
        }
    }
}
