//! Values as JSON: results and event arguments printed, and JSON given on
//! the command line (`--var`, procedure arguments) turned into values.
//!
//! MessagePack is richer than JSON, so printing follows these rules:
//!
//! | MessagePack | JSON |
//! |---|---|
//! | nil, bool, string, array | the same |
//! | integer (i64 or u64) | a number, exactly |
//! | float | a number; NaN and the infinities as the strings `"nan"`, `"inf"`, `"-inf"` |
//! | map with string keys (a thing, with its `#` id) | an object, keys in the node's order |
//! | map key that is not a string | the key printed as compact JSON, as a string (`1` → `"1"`) |
//! | bin (`mpdata`, bytes) | a base64 string (standard alphabet, padded) |
//! | ext | `{"ext": TYPE, "data": BASE64}` |
//! | a string that is not valid UTF-8 | the string with invalid bytes replaced by U+FFFD |
//!
//! The conversion is done by a [`serde::Serialize`] view ([`Json`]), so
//! objects keep the order their keys came in.

use base64::Engine as _;
use rmpv::Value;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Indented JSON over several lines (the default, for people).
    Pretty,
    /// One line of JSON per value (`--json`, for scripts).
    Compact,
}

/// A [`Serialize`] view of an [`rmpv::Value`] that writes it as JSON
/// following the [module rules](self).
#[derive(Debug, Clone, Copy)]
pub struct Json<'a>(pub &'a Value);

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The JSON object key used for a map key.
fn key_string(key: &Value) -> String {
    match key {
        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => compact(other),
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Nil => s.serialize_unit(),
            Value::Boolean(b) => s.serialize_bool(*b),
            Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
                (Some(v), _) => s.serialize_i64(v),
                (None, Some(v)) => s.serialize_u64(v),
                // An rmpv integer is always an i64 or a u64.
                (None, None) => s.serialize_unit(),
            },
            Value::F32(f) => float(s, f64::from(*f)),
            Value::F64(f) => float(s, *f),
            Value::String(st) => s.serialize_str(&String::from_utf8_lossy(st.as_bytes())),
            Value::Binary(b) => s.serialize_str(&base64(b)),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            Value::Map(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(&key_string(k), &Json(v))?;
                }
                map.end()
            }
            Value::Ext(ty, data) => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("ext", ty)?;
                map.serialize_entry("data", &base64(data))?;
                map.end()
            }
        }
    }
}

fn float<S: Serializer>(s: S, f: f64) -> Result<S::Ok, S::Error> {
    if f.is_nan() {
        s.serialize_str("nan")
    } else if f.is_infinite() {
        s.serialize_str(if f > 0.0 { "inf" } else { "-inf" })
    } else {
        s.serialize_f64(f)
    }
}

/// The value as one line of JSON.
pub fn compact(value: &Value) -> String {
    // Serializing into a String cannot fail: keys are always strings.
    serde_json::to_string(&Json(value)).unwrap_or_else(|e| format!("\"<unprintable: {e}>\""))
}

/// The value as indented JSON.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(&Json(value)).unwrap_or_else(|e| format!("\"<unprintable: {e}>\""))
}

/// The value in the given format (no trailing newline).
pub fn render(value: &Value, format: Format) -> String {
    match format {
        Format::Pretty => pretty(value),
        Format::Compact => compact(value),
    }
}

/// The value as a [`serde_json::Value`] (object keys then lose their
/// order; use [`render`] to print). Used by the tests.
#[cfg(test)]
pub fn to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(Json(value)).unwrap_or(serde_json::Value::Null)
}

/// A JSON value as a MessagePack value: objects become maps with string
/// keys, integers stay integers (i64, or u64 above `i64::MAX`), other
/// numbers become floats.
pub fn from_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// Parses JSON text given on the command line into a value; the error
/// says what is wrong with the text.
pub fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|j| from_json(&j))
        .map_err(|e| format!("invalid JSON ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: Vec<(Value, Value)>) -> Value {
        Value::Map(pairs)
    }

    #[test]
    fn scalars() {
        assert_eq!(compact(&Value::Nil), "null");
        assert_eq!(compact(&Value::from(true)), "true");
        assert_eq!(compact(&Value::from(2)), "2");
        assert_eq!(compact(&Value::from(-58)), "-58");
        assert_eq!(compact(&Value::from(u64::MAX)), "18446744073709551615");
        assert_eq!(compact(&Value::from(i64::MIN)), "-9223372036854775808");
        assert_eq!(compact(&Value::F64(1.5)), "1.5");
        assert_eq!(compact(&Value::F32(0.25)), "0.25");
        assert_eq!(compact(&Value::from("hi \"there\"")), r#""hi \"there\"""#);
    }

    #[test]
    fn non_finite_floats_are_strings() {
        assert_eq!(compact(&Value::F64(f64::NAN)), r#""nan""#);
        assert_eq!(compact(&Value::F64(f64::INFINITY)), r#""inf""#);
        assert_eq!(compact(&Value::F32(f32::NEG_INFINITY)), r#""-inf""#);
    }

    #[test]
    fn things_keep_their_id_and_key_order() {
        let thing = map(vec![
            (Value::from("#"), Value::from(42)),
            (Value::from("name"), Value::from("Iris")),
            (Value::from("age"), Value::from(6)),
        ]);
        assert_eq!(compact(&thing), r##"{"#":42,"name":"Iris","age":6}"##);
        assert_eq!(to_json(&thing), json!({"#": 42, "name": "Iris", "age": 6}));
    }

    #[test]
    fn bin_is_base64() {
        let v = Value::Binary(vec![0, 1, 2, 250, 251, 252]);
        assert_eq!(compact(&v), r#""AAEC+vv8""#);
        assert_eq!(compact(&Value::Binary(vec![])), r#""""#);
    }

    #[test]
    fn ext_is_an_object() {
        let v = Value::Ext(5, vec![1, 2, 3]);
        assert_eq!(to_json(&v), json!({"ext": 5, "data": "AQID"}));
        assert_eq!(
            to_json(&Value::Ext(-1, vec![])),
            json!({"ext": -1, "data": ""})
        );
    }

    #[test]
    fn non_string_keys_are_stringified() {
        let v = map(vec![
            (Value::from(1), Value::from("one")),
            (Value::Nil, Value::from(0)),
            (Value::from(true), Value::from(1)),
            (
                Value::Array(vec![Value::from(1), Value::from("a")]),
                Value::from(2),
            ),
            (Value::Binary(vec![255]), Value::from(3)),
        ]);
        assert_eq!(
            compact(&v),
            r#"{"1":"one","null":0,"true":1,"[1,\"a\"]":2,"\"/w==\"":3}"#
        );
    }

    #[test]
    fn nested_values() {
        let v = map(vec![
            (Value::from("#"), Value::from(7)),
            (
                Value::from("items"),
                Value::Array(vec![
                    map(vec![
                        (Value::from("#"), Value::from(8)),
                        (Value::from("data"), Value::Binary(b"hi".to_vec())),
                    ]),
                    Value::Nil,
                    Value::Array(vec![Value::F64(f64::NAN)]),
                ]),
            ),
        ]);
        assert_eq!(
            to_json(&v),
            json!({"#": 7, "items": [{"#": 8, "data": "aGk="}, null, ["nan"]]})
        );
        let p = pretty(&v);
        assert!(p.contains("\n  \"items\": [\n"), "{p}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&p).unwrap(),
            to_json(&v)
        );
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let bytes: &[u8] = &[0xa3, b'a', 0xff, b'b'];
        let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        assert!(v.as_str().is_none());
        assert_eq!(compact(&v), "\"a\u{fffd}b\"");
    }

    #[test]
    fn render_formats() {
        let v = Value::Array(vec![Value::from(1), Value::from(2)]);
        assert_eq!(render(&v, Format::Compact), "[1,2]");
        assert_eq!(render(&v, Format::Pretty), "[\n  1,\n  2\n]");
    }

    #[test]
    fn json_to_values() {
        assert_eq!(parse_json("6").unwrap(), Value::from(6));
        assert_eq!(parse_json("-6").unwrap(), Value::from(-6));
        assert_eq!(
            parse_json("18446744073709551615").unwrap(),
            Value::from(u64::MAX)
        );
        assert_eq!(parse_json("1.5").unwrap(), Value::F64(1.5));
        assert_eq!(parse_json("null").unwrap(), Value::Nil);
        assert_eq!(parse_json("\"x\"").unwrap(), Value::from("x"));
        assert_eq!(
            parse_json(r#"[1, {"x": [true]}]"#).unwrap(),
            Value::Array(vec![
                Value::from(1),
                map(vec![(
                    Value::from("x"),
                    Value::Array(vec![Value::from(true)])
                )]),
            ])
        );
        let e = parse_json("{oops").unwrap_err();
        assert!(e.starts_with("invalid JSON"), "{e}");
    }

    #[test]
    fn round_trip_through_json() {
        let j = json!({"a": [1, 2.5, "s", null, {"b": false}]});
        assert_eq!(to_json(&from_json(&j)), j);
    }
}
