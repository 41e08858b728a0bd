// The types of collection `stuff`, as `thingsdb types --rust` printed them.
use thingsdb_client::typed::{Blob, Datetime};
use thingsdb_client::{Thing, ThingsEnum};

/// The ThingsDB enum `Color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ThingsEnum)]
pub enum Color {
    Red,
    Green,
    Blue,
}

/// The ThingsDB type `Address`.
#[derive(Debug, Clone, PartialEq, Thing)]
pub struct Address {
    /// The thing's id (`#`).
    #[thingsdb(id)]
    pub id: Option<u64>,
    pub street: String,
    pub number: Option<i64>,
}

/// The ThingsDB type `Category`.
#[derive(Debug, Clone, PartialEq, Thing)]
pub struct Category {
    /// The thing's id (`#`).
    #[thingsdb(id)]
    pub id: Option<u64>,
    pub name: String,
    pub children: Vec<Category>,
    pub parent: Option<Box<Category>>,
}

/// The ThingsDB type `Person`.
#[derive(Debug, Clone, PartialEq, Thing)]
pub struct Person {
    /// The thing's id (`#`).
    #[thingsdb(id)]
    pub id: Option<u64>,
    pub name: String,
    pub email: Option<String>,
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
}

/// The ThingsDB type `Team`.
#[derive(Debug, Clone, PartialEq, Thing)]
pub struct Team {
    /// The thing's id (`#`).
    #[thingsdb(id)]
    pub id: Option<u64>,
    pub name: String,
    pub lead: Option<Box<Person>>,
}
