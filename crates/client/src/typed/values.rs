//! Field value types that ThingsDB has and Rust's standard types do not
//! map one to one: bytes, datetime, timeval, and sets of things.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{Dep, FieldType, Spec};

/// `bytes`: a byte string (MessagePack bin), where a `Vec<u8>` would be a
/// list of integers.
///
/// ```
/// use thingsdb_client::typed::Blob;
/// let b = Blob(b"\x00\x01".to_vec());
/// let packed = rmp_serde::to_vec(&b).unwrap();
/// assert_eq!(packed, [0xc4, 2, 0, 1]);
/// assert_eq!(rmp_serde::from_slice::<Blob>(&packed).unwrap(), b);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Blob, E> {
                Ok(Blob(v.as_bytes().to_vec()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Blob(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl FieldType for Blob {
    fn spec() -> Spec {
        Spec::Bytes
    }
}

/// `datetime`: seconds since the Unix epoch, and the offset from UTC in
/// minutes the node showed it with.
///
/// A node sends a datetime as text (`2023-11-14T22:13:20Z`, or with an
/// offset `...+0100`); this reads both, and integers. It is sent as the
/// number of seconds and stored as a UTC datetime (the offset is not sent).
///
/// ```
/// use thingsdb_client::typed::Datetime;
/// let d: Datetime = "2023-11-14T22:13:20Z".parse()?;
/// assert_eq!(d.unix, 1_700_000_000);
/// let d: Datetime = "2023-11-14T23:13:20+0100".parse()?;
/// assert_eq!((d.unix, d.offset_minutes), (1_700_000_000, 60));
/// assert_eq!(Datetime::from_unix(1_700_000_000).to_string(), "2023-11-14T22:13:20Z");
/// # Ok::<(), thingsdb_client::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Datetime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix: i64,
    /// The offset from UTC the node gave, in minutes (0 for UTC).
    pub offset_minutes: i16,
}

impl Datetime {
    /// A UTC datetime at `unix` seconds since the epoch.
    pub fn from_unix(unix: i64) -> Datetime {
        Datetime {
            unix,
            offset_minutes: 0,
        }
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

impl std::str::FromStr for Datetime {
    type Err = crate::Error;

    /// Reads `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DDTHH:MM:SS+hhmm` (the
    /// node's two forms).
    fn from_str(s: &str) -> Result<Datetime, crate::Error> {
        let bad = || crate::Error::Decode(format!("not a ThingsDB datetime: {s:?}"));
        let (date, rest) = s.split_once('T').ok_or_else(bad)?;
        let (neg, date) = match date.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, date),
        };
        let mut it = date.split('-');
        let num = |p: Option<&str>| p.and_then(|v| v.parse::<i64>().ok()).ok_or_else(bad);
        let y = num(it.next())?;
        let (mo, d) = (num(it.next())?, num(it.next())?);
        if it.next().is_some() || rest.len() < 9 {
            return Err(bad());
        }
        let y = if neg { -y } else { y };
        let (time, zone) = rest.split_at(8);
        let mut t = time.split(':');
        let (h, mi, sec) = (num(t.next())?, num(t.next())?, num(t.next())?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let offset: i64 = match zone {
            "Z" => 0,
            z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
                let hh: i64 = z[1..3].parse().map_err(|_| bad())?;
                let mm: i64 = z[3..5].parse().map_err(|_| bad())?;
                let o = hh * 60 + mm;
                if z.starts_with('-') {
                    -o
                } else {
                    o
                }
            }
            _ => return Err(bad()),
        };
        let local = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
        Ok(Datetime {
            unix: local - offset * 60,
            offset_minutes: i16::try_from(offset).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Datetime {
    /// The node's form: `Z` for UTC, else `+hhmm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let off = i64::from(self.offset_minutes);
        let local = self.unix + off * 60;
        let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if off == 0 {
            f.write_str("Z")
        } else {
            let sign = if off < 0 { '-' } else { '+' };
            write!(f, "{sign}{:02}{:02}", off.abs() / 60, off.abs() % 60)
        }
    }
}

impl Serialize for Datetime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.unix)
    }
}

impl<'de> Deserialize<'de> for Datetime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Datetime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a datetime (text) or seconds since the epoch")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Datetime, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Datetime, E> {
                Ok(Datetime::from_unix(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Datetime, E> {
                i64::try_from(v)
                    .map(Datetime::from_unix)
                    .map_err(|_| E::custom("datetime out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

impl FieldType for Datetime {
    fn spec() -> Spec {
        Spec::Datetime
    }
    fn plain() -> bool {
        false
    }
    fn build(&self, path: &str, out: &mut String) {
        out.push_str("datetime(");
        out.push_str(path);
        out.push(')');
    }
}

/// `timeval`: seconds since the Unix epoch (a node sends a timeval as an
/// integer).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timeval(pub i64);

impl FieldType for Timeval {
    fn spec() -> Spec {
        Spec::Timeval
    }
    fn plain() -> bool {
        false
    }
    fn build(&self, path: &str, out: &mut String) {
        out.push_str("timeval(");
        out.push_str(path);
        out.push(')');
    }
}

/// `{T}`: a set of things. A node sends a set as a list; the order is
/// the node's. (A set holds things only, so `T` is a derived `Thing`.)
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SetOf<T>(pub Vec<T>);

impl<T: FieldType> FieldType for SetOf<T> {
    fn spec() -> Spec {
        Spec::Set(Box::new(T::spec()))
    }
    fn deps(deps: &mut Vec<Dep>) {
        T::deps(deps)
    }
    fn plain() -> bool {
        false
    }
    fn build(&self, path: &str, out: &mut String) {
        out.push_str("set(");
        super::build_list(&self.0, path, out);
        out.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn node_forms_read() {
        let d: Datetime = "1970-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(d.unix, 0);
        let d: Datetime = "1969-12-31T19:00:00-0500".parse().unwrap();
        assert_eq!((d.unix, d.offset_minutes), (0, -300));
        assert_eq!(d.to_string(), "1969-12-31T19:00:00-0500");
        for bad in [
            "",
            "2020-01-01",
            "2020-13-01T00:00:00Z",
            "2020-01-01T00:00:00",
            "2020-01-01T00:00:00+01",
        ] {
            assert!(bad.parse::<Datetime>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_and_parse_agree(unix in -62_000_000_000i64..250_000_000_000, off in -900i16..900) {
            let d = Datetime { unix, offset_minutes: off };
            let back: Datetime = d.to_string().parse().unwrap();
            prop_assert_eq!(back, d);
        }
    }
}
