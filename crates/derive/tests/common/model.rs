//! The test model: a set of types with nesting, lists, optional fields,
//! an enum, a type that refers to itself and two that refer to each
//! other; `v1`, then `v2` with a field renamed and one added.
#![allow(dead_code)]

pub mod v1 {
    use thingsdb_client::typed::{Blob, Datetime};
    use thingsdb_client::{Thing, ThingsEnum};

    /// An enum.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, ThingsEnum)]
    pub enum Color {
        Red,
        Green,
        Blue,
    }

    /// A plain nested type.
    #[derive(Debug, Clone, PartialEq, Thing)]
    pub struct Address {
        pub street: String,
        pub number: Option<i64>,
    }

    /// Refers to itself (a list of friends) and to `Team`, which refers
    /// back to it.
    #[derive(Debug, Clone, PartialEq, Thing)]
    pub struct Person {
        #[thingsdb(id)]
        pub id: Option<u64>,
        pub name: String,
        pub mail: Option<String>,
        pub address: Address,
        pub friends: Vec<Person>,
        pub team: Option<Box<Team>>,
        pub color: Color,
        pub born: Datetime,
        pub avatar: Blob,
        pub tags: Vec<String>,
        pub scores: Vec<f64>,
        pub active: bool,
    }

    /// Refers to `Person`, which refers back.
    #[derive(Debug, Clone, PartialEq, Thing)]
    pub struct Team {
        #[thingsdb(id)]
        pub id: Option<u64>,
        pub name: String,
        pub lead: Option<Person>,
    }

    /// A tree: refers to itself directly.
    #[derive(Debug, Clone, PartialEq, Thing)]
    pub struct Category {
        pub name: String,
        pub children: Vec<Category>,
        pub parent: Option<Box<Category>>,
    }
}

pub mod v2 {
    use thingsdb_client::typed::{Blob, Datetime};
    use thingsdb_client::Thing;

    pub use super::v1::{Address, Color};

    /// `mail` renamed to `email`, `nickname` added.
    #[derive(Debug, Clone, PartialEq, Thing)]
    pub struct Person {
        #[thingsdb(id)]
        pub id: Option<u64>,
        pub name: String,
        #[thingsdb(rename = "email", renamed_from = "mail")]
        pub email_address: Option<String>,
        pub address: Address,
        pub friends: Vec<Person>,
        pub team: Option<Box<Team>>,
        pub color: Color,
        pub born: Datetime,
        pub avatar: Blob,
        pub tags: Vec<String>,
        pub scores: Vec<f64>,
        pub active: bool,
        pub nickname: Option<String>,
        #[thingsdb(skip)]
        pub cache: Vec<u8>,
    }

    /// As in v1, holding the v2 `Person`.
    #[derive(Debug, Clone, PartialEq, Thing)]
    pub struct Team {
        #[thingsdb(id)]
        pub id: Option<u64>,
        pub name: String,
        pub lead: Option<Person>,
    }
}
