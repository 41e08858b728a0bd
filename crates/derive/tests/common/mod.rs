//! Shared by the derive tests.
#![allow(dead_code)]

pub mod handler;
pub mod model;
