//! Protobuf JSON numbers (`42`, `"42"`, `1e3`, `"NaN"`) read straight from the
//! deserializer. The generated serde impls use this in place of pbjson's helper, which
//! buffers every number and builds a throw-away error before accepting it.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Visitor};

/// A number type protobuf JSON carries.
pub trait JsonNumber: Sized + FromStr {
    fn from_u64(v: u64) -> Option<Self>;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl JsonNumber for $t {
            fn from_u64(v: u64) -> Option<Self> { <$t>::try_from(v).ok() }
            fn from_i64(v: i64) -> Option<Self> { <$t>::try_from(v).ok() }
            fn from_f64(v: f64) -> Option<Self> {
                // Integral floats such as 1e3 are accepted, as protojson does.
                (v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64).then(|| v as $t)
            }
        }
    )*};
}
integer!(u32, i32, u64, i64);

impl JsonNumber for f64 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl JsonNumber for f32 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v as f32)
    }
}

/// A number field of a generated message.
pub struct NumberDeserialize<T>(pub T);

struct NumberVisitor<T>(PhantomData<T>);

impl<T: JsonNumber> NumberVisitor<T> {
    fn out_of_range<E: de::Error>(what: impl fmt::Display) -> E {
        E::custom(format!(
            "number {what} is out of range for {}",
            std::any::type_name::<T>()
        ))
    }
}

impl<'de, T: JsonNumber> Visitor<'de> for NumberVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a string holding a number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::from_u64(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_i64(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_f64(v).ok_or_else(|| Self::out_of_range(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(|_| {
            E::custom(format!(
                "{v:?} is not a valid {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl<'de, T: JsonNumber> serde::Deserialize<'de> for NumberDeserialize<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(NumberVisitor(PhantomData))
            .map(NumberDeserialize)
    }
}

/// A singular enum field of a generated message, read as protojson with
/// `DiscardUnknown` reads it: a known name, any 32-bit number (enums are open), and an
/// unknown name (written by a newer Hubble) as the zero value, which is what a
/// discarded singular field leaves.
pub struct OpenEnum<T>(pub i32, PhantomData<T>);

struct OpenEnumVisitor<T>(PhantomData<T>);

impl<'de, T: serde::Deserialize<'de> + Into<i32>> Visitor<'de> for OpenEnumVisitor<T> {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an enum name or number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| NumberVisitor::<i32>::out_of_range(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| NumberVisitor::<i32>::out_of_range(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
        let known = T::deserialize(de::value::StrDeserializer::<E>::new(v));
        Ok(known.map(Into::into).unwrap_or(0))
    }
}

impl<'de, T: serde::Deserialize<'de> + Into<i32>> serde::Deserialize<'de> for OpenEnum<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(OpenEnumVisitor::<T>(PhantomData))
            .map(|v| OpenEnum(v, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: JsonNumber>(json: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str::<NumberDeserialize<T>>(json).map(|n| n.0)
    }

    #[test]
    fn numbers_and_strings() {
        assert_eq!(parse::<u32>("80").unwrap(), 80);
        assert_eq!(parse::<u64>("\"18446744073709551615\"").unwrap(), u64::MAX);
        assert_eq!(parse::<i32>("-5").unwrap(), -5);
        assert_eq!(parse::<u32>("1e3").unwrap(), 1000);
        assert!(parse::<f64>("\"NaN\"").unwrap().is_nan());
        assert!(parse::<u32>("-1")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(parse::<u32>("\"eighty\"")
            .unwrap_err()
            .to_string()
            .contains("\"eighty\""));
        assert!(parse::<u32>("1.5").is_err());
    }
}
