//! Logical column types shared by the configuration and the core.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The logical type of a column, independent of the store that holds it.
///
/// `decimal` values are exact and always rendered with `scale` fraction digits; `decimal` alone
/// means `decimal(18,2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogicalType {
    /// 64-bit signed integer.
    Int,
    /// 64-bit IEEE float.
    Float,
    /// Exact decimal with `precision` total digits (at most 28) and `scale` fraction digits.
    Decimal {
        /// Total number of significant digits.
        precision: u8,
        /// Digits after the decimal point.
        scale: u8,
    },
    /// UTF-8 text.
    Text,
    /// Boolean.
    Bool,
    /// Instant in time, stored as UTC, rendered as RFC 3339.
    Timestamp,
    /// Calendar date without a time of day, rendered as `YYYY-MM-DD`.
    Date,
    /// Arbitrary JSON document (objects, arrays, scalars).
    Json,
}

impl LogicalType {
    /// Default precision of `decimal` without arguments.
    pub const DEFAULT_DECIMAL_PRECISION: u8 = 18;
    /// Default scale of `decimal` without arguments.
    pub const DEFAULT_DECIMAL_SCALE: u8 = 2;
    /// Largest precision a decimal can have (limit of the exact decimal arithmetic used).
    pub const MAX_DECIMAL_PRECISION: u8 = 28;

    /// Whether values of this type are numbers (int, float, decimal).
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Int | Self::Float | Self::Decimal { .. })
    }

    /// The short name used in error messages and API answers (`decimal(18,2)` -> `decimal`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Float => "float",
            Self::Decimal { .. } => "decimal",
            Self::Text => "text",
            Self::Bool => "bool",
            Self::Timestamp => "timestamp",
            Self::Date => "date",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for LogicalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            other => f.write_str(other.name()),
        }
    }
}

/// A column type string that is not one of the logical types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown column type `{given}`, expected one of: int, float, decimal, decimal(P,S), text, bool, timestamp, date, json"
)]
pub struct TypeParseError {
    /// The text that was given.
    pub given: String,
}

impl FromStr for LogicalType {
    type Err = TypeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TypeParseError {
            given: s.to_owned(),
        };
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "int" | "integer" | "bigint" => Self::Int,
            "float" | "double" => Self::Float,
            "decimal" | "numeric" => Self::Decimal {
                precision: Self::DEFAULT_DECIMAL_PRECISION,
                scale: Self::DEFAULT_DECIMAL_SCALE,
            },
            "text" | "string" => Self::Text,
            "bool" | "boolean" => Self::Bool,
            "timestamp" | "timestamptz" => Self::Timestamp,
            "date" => Self::Date,
            "json" => Self::Json,
            _ => {
                let args = t
                    .strip_prefix("decimal(")
                    .or_else(|| t.strip_prefix("numeric("))
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(err)?;
                let (p, s) = args.split_once(',').ok_or_else(err)?;
                let precision: u8 = p.trim().parse().map_err(|_| err())?;
                let scale: u8 = s.trim().parse().map_err(|_| err())?;
                if precision == 0 || precision > Self::MAX_DECIMAL_PRECISION || scale > precision {
                    return Err(err());
                }
                Self::Decimal { precision, scale }
            }
        })
    }
}

impl Serialize for LogicalType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogicalType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for LogicalType {
    fn schema_name() -> Cow<'static, str> {
        "LogicalType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Logical column type: int, float, decimal (= decimal(18,2)), decimal(P,S) with P <= 28, text, bool, timestamp, date, json",
            "pattern": "^(int|integer|bigint|float|double|decimal|numeric|text|string|bool|boolean|timestamp|json|(decimal|numeric)\\(\\s*[0-9]+\\s*,\\s*[0-9]+\\s*\\))$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_and_rejects_the_rest() {
        let ok = [
            "int",
            "float",
            "decimal",
            "decimal(12, 4)",
            "TEXT",
            "bool",
            "timestamp",
            "json",
        ];
        let got: Vec<String> = ok
            .iter()
            .map(|s| {
                s.parse::<LogicalType>()
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            got,
            [
                "int",
                "float",
                "decimal(18,2)",
                "decimal(12,4)",
                "text",
                "bool",
                "timestamp",
                "json"
            ]
        );
        for bad in [
            "varchar",
            "decimal(40,2)",
            "decimal(2,3)",
            "decimal(x,1)",
            "",
        ] {
            assert!(
                bad.parse::<LogicalType>().is_err(),
                "{bad} should be refused"
            );
        }
    }
}
