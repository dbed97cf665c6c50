//! PostgreSQL's text forms for dates and times where DataFusion's differ: `to_char` templates
//! (`YYYY-MM-DD HH24:MI:SS`) become chrono formats before planning, and intervals are answered
//! as PostgreSQL prints them (`1 year 2 mons 3 days 04:05:06.5`); `age` is PostgreSQL's.

use std::sync::Arc;

use chrono::{Datelike, Timelike};
use datafusion::arrow::array::{Array, AsArray, IntervalMonthDayNanoBuilder};
use datafusion::arrow::datatypes::{
    DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The chrono format for a PostgreSQL `to_char` template, or `None` when the template uses a
/// pattern without a chrono counterpart (it is then refused, never answered differently).
pub(crate) fn chrono_format(template: &str) -> Option<String> {
    // Longest patterns first; fill mode (`FM`) suppresses PostgreSQL's padding.
    const PATTERNS: &[(&str, &str, &str)] = &[
        // (pattern, padded, FM)
        ("HH24", "%H", "%-H"),
        ("HH12", "%I", "%-I"),
        ("YYYY", "%Y", "%Y"),
        ("MONTH", "", ""),
        ("Month", "", ""),
        ("month", "", ""),
        ("DAY", "", ""),
        ("Day", "", ""),
        ("day", "", ""),
        ("Mon", "%b", "%b"),
        ("Dy", "%a", "%a"),
        ("DDD", "%j", "%-j"),
        ("YY", "%y", "%y"),
        ("MM", "%m", "%-m"),
        ("DD", "%d", "%-d"),
        ("HH", "%I", "%-I"),
        ("MI", "%M", "%-M"),
        ("SS", "%S", "%-S"),
        ("MS", "%3f", "%3f"),
        ("US", "%6f", "%6f"),
        ("AM", "%p", "%p"),
        ("PM", "%p", "%p"),
        ("IW", "%V", "%-V"),
    ];
    let mut out = String::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"')?;
            out.push_str(&quoted[..end].replace('%', "%%"));
            rest = &quoted[end + 1..];
            continue;
        }
        let (fill, body) = match rest.strip_prefix("FM") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if let Some((pattern, padded, fm)) = PATTERNS.iter().find(|(p, _, _)| body.starts_with(p)) {
            let chrono = if fill { fm } else { padded };
            if chrono.is_empty() {
                // Month and day names: PostgreSQL pads them to 9 characters and cases them
                // as written; only the fill-mode, capitalized forms map to chrono.
                match (*pattern, fill) {
                    ("Month", true) => out.push_str("%B"),
                    ("Day", true) => out.push_str("%A"),
                    _ => return None,
                }
            } else {
                out.push_str(chrono);
            }
            rest = &body[pattern.len()..];
            continue;
        }
        if c.is_ascii_alphabetic() {
            // A pattern this translation does not know (Q, WW, TZ, J, ...).
            return None;
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

/// An interval's text with each `[-]H:MM[:SS[.f]]` part written as hours, minutes and seconds
/// (`1 day 04:05:06` is `1 day 4 hours 5 minutes 6 seconds`); `None` when it has no such part.
pub(crate) fn clock_as_units(text: &str) -> Option<String> {
    let mut changed = false;
    let words: Vec<String> = text
        .split_whitespace()
        .map(|word| {
            let (sign, digits) = match word.strip_prefix('-') {
                Some(rest) => ("-", rest),
                None => ("", word.strip_prefix('+').unwrap_or(word)),
            };
            let parts: Vec<&str> = digits.split(':').collect();
            let numeric =
                |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.');
            if (2..=3).contains(&parts.len())
                && parts.iter().all(|p| numeric(p))
                && parts[..parts.len() - 1].iter().all(|p| !p.contains('.'))
            {
                changed = true;
                let mut units = format!("{sign}{} hours {sign}{} minutes", parts[0], parts[1]);
                if let Some(secs) = parts.get(2) {
                    units.push_str(&format!(" {sign}{secs} seconds"));
                }
                units
            } else {
                word.to_owned()
            }
        })
        .collect();
    changed.then(|| words.join(" "))
}

/// An interval as PostgreSQL prints it (`IntervalStyle = postgres`): each non-zero field with
/// its unit (plural unless 1), a `+` on a positive field after a negative one, then the time of
/// day when it is not zero (or when nothing else is printed).
pub(crate) fn interval_text(months: i32, days: i32, nanos: i64) -> String {
    let mut out = String::new();
    let mut before_negative = false;
    let mut field = |out: &mut String, value: i64, unit: &str| {
        if value == 0 {
            return;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let plus = if before_negative && value > 0 {
            "+"
        } else {
            ""
        };
        let s = if value == 1 { "" } else { "s" };
        out.push_str(&format!("{plus}{value} {unit}{s}"));
        before_negative = value < 0;
    };
    field(&mut out, i64::from(months / 12), "year");
    field(&mut out, i64::from(months % 12), "mon");
    field(&mut out, i64::from(days), "day");
    let micros = nanos / 1_000;
    if micros != 0 || out.is_empty() {
        let sign = if micros < 0 {
            "-"
        } else if before_negative {
            "+"
        } else {
            ""
        };
        let abs = micros.unsigned_abs();
        let (secs, frac) = (abs / 1_000_000, abs % 1_000_000);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!(
            "{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        ));
        if frac != 0 {
            let digits = format!("{frac:06}");
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
    }
    out
}

/// PostgreSQL's `age(a, b)` (and `age(a)`: from `a` to today's midnight, UTC): the difference in
/// years, months and days as a calendar counts them, then the time of day, as an interval.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Age {
    signature: Signature,
}

impl Age {
    pub(crate) fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Stable),
        }
    }
}

fn instant_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(crate::convert::UTC.into()))
}

impl ScalarUDFImpl for Age {
    fn name(&self) -> &str {
        "age"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || arg_types.len() > 2 {
            return plan_err!("age takes one or two timestamps");
        }
        for t in arg_types {
            if !matches!(
                t,
                DataType::Timestamp(..)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Null
                    | DataType::Utf8
            ) {
                return plan_err!("age takes timestamps, not {t}");
            }
        }
        Ok(vec![instant_type(); arg_types.len()])
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let a = arrays[0].as_primitive::<TimestampMicrosecondType>();
        let today = chrono::Utc::now()
            .date_naive()
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros();
        let b = arrays
            .get(1)
            .map(|b| b.as_primitive::<TimestampMicrosecondType>());
        let mut out = IntervalMonthDayNanoBuilder::with_capacity(rows);
        for i in 0..rows {
            // age(x) is age(today, x).
            let (from, to) = match b {
                Some(b) if a.is_null(i) || b.is_null(i) => {
                    out.append_null();
                    continue;
                }
                Some(b) => (a.value(i), b.value(i)),
                None if a.is_null(i) => {
                    out.append_null();
                    continue;
                }
                None => (today, a.value(i)),
            };
            match age_between(from, to) {
                Some((months, days, micros)) => out.append_value(IntervalMonthDayNano::new(
                    months,
                    days,
                    micros.saturating_mul(1_000),
                )),
                None => return exec_err!("age: timestamp out of range"),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `a - b` as PostgreSQL's `age` counts it: field by field, borrowing from the next larger
/// field, a month borrowed counting the days of the earlier instant's month.
fn age_between(a: i64, b: i64) -> Option<(i32, i32, i64)> {
    if a < b {
        let (m, d, us) = age_between(b, a)?;
        return Some((-m, -d, -us));
    }
    let t1 = chrono::DateTime::from_timestamp_micros(a)?.naive_utc();
    let t2 = chrono::DateTime::from_timestamp_micros(b)?.naive_utc();
    let mut micros = i64::from(t1.time().num_seconds_from_midnight()) * 1_000_000
        + i64::from(t1.and_utc().timestamp_subsec_micros())
        - (i64::from(t2.time().num_seconds_from_midnight()) * 1_000_000
            + i64::from(t2.and_utc().timestamp_subsec_micros()));
    let mut days = i64::from(t1.day()) - i64::from(t2.day());
    let mut months = i64::from(t1.month()) - i64::from(t2.month());
    let mut years = i64::from(t1.year()) - i64::from(t2.year());
    if micros < 0 {
        micros += 86_400_000_000;
        days -= 1;
    }
    if days < 0 {
        // The days of the month before t1's (PostgreSQL uses the earlier date's month when the
        // result is positive).
        days += i64::from(days_in_month(t2.year(), t2.month()));
        months -= 1;
    }
    if months < 0 {
        months += 12;
        years -= 1;
    }
    Some((
        i32::try_from(years * 12 + months).ok()?,
        i32::try_from(days).ok()?,
        micros,
    ))
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    chrono::NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|first| first.pred_opt())
        .map_or(30, |last| last.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_map_to_chrono_formats() {
        let cases = [
            ("YYYY-MM-DD", Some("%Y-%m-%d")),
            ("YYYY-MM-DD HH24:MI:SS", Some("%Y-%m-%d %H:%M:%S")),
            ("DD/MM/YY HH12:MI AM", Some("%d/%m/%y %I:%M %p")),
            ("FMDD FMMonth YYYY", Some("%-d %B %Y")),
            ("Dy, DD Mon YYYY", Some("%a, %d %b %Y")),
            ("\"week\" IW, 100%", Some("week %V, 100%%")),
            ("HH24:MI:SS.MS", Some("%H:%M:%S.%3f")),
            ("Month", None),
            ("YYYY-Q", None),
            ("\"open", None),
        ];
        for (template, want) in cases {
            assert_eq!(chrono_format(template).as_deref(), want, "{template}");
        }
    }

    #[test]
    fn age_counts_calendar_fields_as_postgresql_does() {
        let t = |s: &str| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .expect("instant")
                .and_utc()
                .timestamp_micros()
        };
        // SELECT age(a, b) in PostgreSQL for each pair.
        let cases = [
            ("2024-03-31 00:00:00", "2024-02-29 00:00:00", "1 mon 2 days"),
            (
                "2024-05-01 10:00:00",
                "1990-06-15 12:30:00",
                "33 years 10 mons 15 days 21:30:00",
            ),
            ("2024-01-01 00:00:00", "2024-01-01 00:00:00", "00:00:00"),
            (
                "2023-01-15 00:00:00",
                "2024-03-10 06:00:00",
                "-1 years -1 mons -26 days -06:00:00",
            ),
        ];
        for (a, b, want) in cases {
            let (m, d, us) = age_between(t(a), t(b)).expect("age");
            assert_eq!(interval_text(m, d, us * 1_000), want, "age({a}, {b})");
        }
    }

    #[test]
    fn clock_parts_of_intervals_become_units() {
        assert_eq!(
            clock_as_units("1 day 04:05:06.5").as_deref(),
            Some("1 day 04 hours 05 minutes 06.5 seconds")
        );
        assert_eq!(
            clock_as_units("-01:30").as_deref(),
            Some("-01 hours -30 minutes")
        );
        assert_eq!(clock_as_units("3 days"), None);
        assert_eq!(clock_as_units("1:2:3:4"), None);
    }

    #[test]
    fn intervals_print_as_postgresql_does() {
        let hour = 3_600_000_000_000_i64;
        let cases = [
            ((0, 0, 0), "00:00:00"),
            (
                (14, 3, 4 * hour + 5 * 60_000_000_000 + 6_500_000_000),
                "1 year 2 mons 3 days 04:05:06.5",
            ),
            ((1, 0, 0), "1 mon"),
            ((0, 30, 0), "30 days"),
            ((0, -1, 0), "-1 days"),
            ((-13, 2, -hour), "-1 years -1 mons +2 days -01:00:00"),
            ((0, 0, 90 * hour), "90:00:00"),
        ];
        for ((m, d, n), want) in cases {
            assert_eq!(interval_text(m, d, n), want);
        }
    }
}
