//! Resource quantities (`500m`, `128Mi`, `1.5`, `2e3`) as fixed-point milli-units.
//!
//! `k8s-openapi`'s `Quantity` is only the string; validation, the scheduler, quota and limit
//! ranges need the number. Everything is kept in milli-units in an `i128`, so memory in bytes
//! (up to exabytes) and CPU in millicores share one representation without floating point,
//! as Kubernetes' `resource.Quantity` does. Precision below one milli-unit is rounded up, as
//! `Quantity.MilliValue()` does.

use std::cmp::Ordering;

/// How a quantity was written; Kubernetes keeps it to print the canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Powers of 1024: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySi,
    /// Powers of 1000: `n`, `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSi,
    /// `e`/`E` followed by an exponent.
    DecimalExponent,
}

/// A parsed quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    /// Value in milli-units, rounded up to the next milli-unit.
    pub millis: i128,
    /// The suffix family the text used.
    pub format: Format,
}

impl Quantity {
    /// Whole units, rounded up (Kubernetes' `Quantity.Value()`), e.g. bytes for memory.
    pub fn value(&self) -> i128 {
        div_ceil(self.millis, 1000)
    }

    /// Kubernetes' canonical text (`Quantity.String()`): `1.5` is `1500m`, `1536Mi` stays,
    /// `1000` is `1k`.
    pub fn canonical(&self) -> String {
        format_millis(self.millis, self.format)
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.millis.cmp(&other.millis)
    }
}

/// The message Kubernetes gives for text that is not a quantity.
pub const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Parses a quantity into milli-units (`"500m"` is 500, `"1"` is 1000, `"1Ki"` is 1_024_000).
pub fn parse_quantity(s: &str) -> Result<i128, String> {
    parse(s).map(|q| q.millis)
}

/// Parses a quantity, keeping its format.
pub fn parse(s: &str) -> Result<Quantity, String> {
    let err = || QUANTITY_FORMAT_ERROR.to_string();
    let too_big = || "quantity is too large".to_string();
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    if number.is_empty() || number.matches('.').count() > 1 || number == "." {
        return Err(err());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // mantissa = all digits; value = mantissa * 10^(-frac_digits) * multiplier
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 36 {
        return Err(too_big());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| err())?
    };
    let frac_digits = i32::try_from(frac_part.len()).map_err(|_| too_big())?;

    let (format, base10_exp, binary_mult): (Format, i32, i128) = match suffix {
        "" => (Format::DecimalSi, 0, 1),
        "n" => (Format::DecimalSi, -9, 1),
        "u" => (Format::DecimalSi, -6, 1),
        "m" => (Format::DecimalSi, -3, 1),
        "k" => (Format::DecimalSi, 3, 1),
        "M" => (Format::DecimalSi, 6, 1),
        "G" => (Format::DecimalSi, 9, 1),
        "T" => (Format::DecimalSi, 12, 1),
        "P" => (Format::DecimalSi, 15, 1),
        "E" => (Format::DecimalSi, 18, 1),
        "Ki" => (Format::BinarySi, 0, 1 << 10),
        "Mi" => (Format::BinarySi, 0, 1 << 20),
        "Gi" => (Format::BinarySi, 0, 1 << 30),
        "Ti" => (Format::BinarySi, 0, 1 << 40),
        "Pi" => (Format::BinarySi, 0, 1 << 50),
        "Ei" => (Format::BinarySi, 0, 1 << 60),
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(err)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(err());
            }
            let e: i32 = exp.parse().map_err(|_| too_big())?;
            (Format::DecimalExponent, e, 1)
        }
    };
    // millis = mantissa * binary_mult * 10^(base10_exp - frac_digits + 3), rounded up.
    let exp10 = base10_exp - frac_digits + 3;
    let scaled = mantissa.checked_mul(binary_mult).ok_or_else(too_big)?;
    let millis = if exp10 >= 0 {
        if scaled == 0 {
            0
        } else {
            let factor = 10i128.checked_pow(u32::try_from(exp10).map_err(|_| too_big())?);
            factor
                .and_then(|f| scaled.checked_mul(f))
                .ok_or_else(too_big)?
        }
    } else {
        let neg = u32::try_from(-exp10).map_err(|_| too_big())?;
        match 10i128.checked_pow(neg) {
            Some(divisor) => div_ceil(scaled, divisor),
            // Smaller than anything representable: rounds up to one milli-unit.
            None => i128::from(scaled > 0),
        }
    };
    // Kubernetes caps quantities at 2^63-1 in magnitude; beyond that we refuse.
    if millis / 1000 > i128::from(i64::MAX) {
        return Err(too_big());
    }
    Ok(Quantity {
        millis: if negative { -millis } else { millis },
        format,
    })
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && ((a > 0) == (b > 0)) {
        q + 1
    } else {
        q
    }
}

/// Prints milli-units in Kubernetes' canonical form for `format`.
pub fn format_millis(millis: i128, format: Format) -> String {
    if millis == 0 {
        return "0".to_string();
    }
    let sign = if millis < 0 { "-" } else { "" };
    let abs = millis.abs();
    if format == Format::BinarySi && abs % 1000 == 0 && abs >= 1024 * 1000 {
        let units = abs / 1000;
        let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
        let mut value = units;
        let mut i = 0;
        while i + 1 < suffixes.len() && value % 1024 == 0 {
            value /= 1024;
            i += 1;
        }
        return format!("{sign}{value}{}", suffixes[i]);
    }
    // Decimal: the largest power of 1000 (from milli up) that keeps the mantissa whole.
    let mut value = abs;
    let mut exp = -3;
    while value % 1000 == 0 && exp < 18 {
        value /= 1000;
        exp += 3;
    }
    if format == Format::DecimalExponent {
        return if exp == 0 {
            format!("{sign}{value}")
        } else {
            format!("{sign}{value}e{exp}")
        };
    }
    let suffix = match exp {
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    format!("{sign}{value}{suffix}")
}

/// Canonical text of a quantity string, or the text itself when it does not parse.
pub fn canonical(s: &str) -> String {
    parse(s)
        .map(|q| q.canonical())
        .unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_suffixes() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("1", 1000),
            ("500m", 500),
            ("0.5", 500),
            (".5", 500),
            ("1.", 1000),
            ("100m", 100),
            ("2k", 2_000_000),
            ("1Ki", 1_024_000),
            ("128Mi", 128 * 1024 * 1024 * 1000),
            ("1Gi", 1_073_741_824_000),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("1E", 1_000_000_000_000_000_000_000),
            ("-1", -1000),
            ("+2", 2000),
            ("1n", 1),
            ("1u", 1),
            ("1500u", 2),
            ("0.1m", 1),
            ("12e-3", 12),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity(s), Ok(*want), "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "", "abc", "1x", "1..2", "Mi", "1 Mi", "1e", "1e+", "--1", "1.2.3", ".",
        ] {
            assert!(parse_quantity(s).is_err(), "{s}");
        }
        assert_eq!(parse_quantity("lots").unwrap_err(), QUANTITY_FORMAT_ERROR);
    }

    #[test]
    fn canonical_forms() {
        for (s, want) in [
            ("1.5", "1500m"),
            ("1000m", "1"),
            ("1000", "1k"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("1024", "1024"),
            ("1Ki", "1Ki"),
            ("0.5Ki", "512"),
            ("100m", "100m"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("-100m", "-100m"),
        ] {
            assert_eq!(canonical(s), want, "{s}");
        }
    }

    #[test]
    fn value_rounds_up() {
        assert_eq!(parse("1500m").unwrap().value(), 2);
        assert_eq!(parse("128Mi").unwrap().value(), 134_217_728);
        assert!(parse("1").unwrap() < parse("1001m").unwrap());
    }
}
