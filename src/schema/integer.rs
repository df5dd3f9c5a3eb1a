//! Integers as JSON (and the JSON Schema of `/openapi.json`) define them: `5.0` is the integer
//! 5. serde's own integer parsing refuses `5.0`, which made the gateway reject requests its own
//! published schema calls valid (found by Schemathesis); the client's bytes are forwarded as
//! they are, so the backend still sees `5.0`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

/// An integer field that also accepts integral floats (`5.0`), within `T`'s range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integer<T>(pub T);

impl<'de, T: TryFrom<u64> + TryFrom<i64>> Deserialize<'de> for Integer<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(IntegerVisitor(PhantomData))
            .map(Integer)
    }
}

/// For `#[serde(default, deserialize_with = "integer::optional")]` on an `Option<T>` field:
/// absent or `null` is `None`.
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + TryFrom<i64>,
{
    Option::<Integer<T>>::deserialize(deserializer).map(|v| v.map(|Integer(v)| v))
}

struct IntegerVisitor<T>(PhantomData<T>);

impl<T: TryFrom<u64> + TryFrom<i64>> Visitor<'_> for IntegerVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // Named like serde's own messages ("expected u32").
        f.write_str(std::any::type_name::<T>())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // serde_json hands over as f64 both `5.0` and integer literals outside i64/u64, which
        // f64 rounds: `-9223372036854775809` arrives as -2^63. So the bounds are exclusive:
        // -2^63 and 2^64 as floats may stand for a number out of range. (Integer literals in
        // range never come here; they arrive exactly through `visit_u64` / `visit_i64`.)
        const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
        const MINUS_TWO_POW_63: f64 = -9_223_372_036_854_775_808.0;
        if v.fract() != 0.0 || !v.is_finite() {
            Err(E::invalid_type(Unexpected::Float(v), &self))
        } else if (0.0..TWO_POW_64).contains(&v) {
            self.visit_u64(v as u64)
        } else if v > MINUS_TWO_POW_63 && v < 0.0 {
            self.visit_i64(v as i64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_of(json: &str) -> Result<u32, String> {
        serde_json::from_str::<Integer<u32>>(json)
            .map(|Integer(v)| v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integral_floats_are_integers_and_everything_else_is_refused() {
        assert_eq!(u32_of("5"), Ok(5));
        assert_eq!(u32_of("5.0"), Ok(5));
        assert_eq!(u32_of("4294967295"), Ok(u32::MAX));
        assert_eq!(u32_of("1e3"), Ok(1000));
        assert!(u32_of("4294967296").unwrap_err().contains("expected u32"));
        assert!(u32_of("5.5").unwrap_err().contains("floating point `5.5`"));
        assert!(u32_of("-1").is_err());
        assert!(u32_of("-1.0").is_err());
        assert!(u32_of("1e300").is_err());
        assert!(u32_of("\"5\"").is_err());
        let i64_of = |json: &str| serde_json::from_str::<Integer<i64>>(json).map(|Integer(v)| v);
        assert_eq!(i64_of("-1207662155678.0").unwrap(), -1_207_662_155_678);
        assert_eq!(i64_of("-9223372036854775808").unwrap(), i64::MIN);
        assert_eq!(i64_of("9223372036854775807").unwrap(), i64::MAX);
        assert!(i64_of("-9223372036854775809").is_err());
        assert!(i64_of("9223372036854775808").is_err());
    }
}
