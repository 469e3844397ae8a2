//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), exactly enough for `resourceFieldRef`
//! and for telling whether the API server's canonical form of a quantity is the one we wrote.
//!
//! A quantity is kept as an exact fraction `mantissa * 10^exp10 * 2^exp2`, so rounding happens once,
//! upward, as `resource.Quantity.Value()` and `MilliValue()` do.

/// A parsed quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

/// Why a quantity string could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantityError {
    #[error("invalid quantity {0:?}: expected a number with an optional suffix such as m, Ki, Mi, G or e3")]
    Invalid(String),
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

impl Quantity {
    /// Parses a quantity string in Kubernetes' syntax.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let invalid = || QuantityError::Invalid(text.to_owned());
        let s = text.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let mut mantissa: u128 = 0;
        for c in int_part.chars().chain(frac_part.chars()) {
            let digit = u128::from(c.to_digit(10).ok_or_else(invalid)?);
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(digit))
                .ok_or_else(|| QuantityError::TooLarge(text.to_owned()))?;
        }
        let frac_len = i32::try_from(frac_part.len()).map_err(|_| invalid())?;
        let (exp10, exp2) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other => {
                let exp = other.strip_prefix(['e', 'E']).ok_or_else(invalid)?;
                let value: i32 = exp.parse().map_err(|_| invalid())?;
                if !(-100..=100).contains(&value) {
                    return Err(QuantityError::TooLarge(text.to_owned()));
                }
                (value, 0)
            }
        };
        Ok(Quantity { negative, mantissa, exp10: exp10 - frac_len, exp2 })
    }

    /// The value in units of `10^-scale`, rounded up (towards positive infinity), as Kubernetes does.
    fn scaled_ceil(&self, scale: i32) -> Option<i128> {
        let mut num: u128 = self.mantissa.checked_mul(1u128.checked_shl(self.exp2)?)?;
        let mut den: u128 = 1;
        let e = self.exp10 + scale;
        if e >= 0 {
            num = num.checked_mul(10u128.checked_pow(u32::try_from(e).ok()?)?)?;
        } else {
            den = 10u128.checked_pow(u32::try_from(-e).ok()?)?;
        }
        let q = i128::try_from(num / den).ok()?;
        let exact = num.is_multiple_of(den);
        Some(match (self.negative, exact) {
            (false, true) => q,
            (false, false) => q.checked_add(1)?,
            (true, _) => -q,
        })
    }

    /// `Quantity.Value()`: whole units, rounded up.
    pub fn value(&self) -> Option<i128> {
        self.scaled_ceil(0)
    }

    /// `Quantity.MilliValue()`: thousandths, rounded up.
    pub fn milli_value(&self) -> Option<i128> {
        self.scaled_ceil(3)
    }

    /// Whether two quantities are the same amount however written (`1000m` and `1`, `1Gi` and
    /// `1024Mi`), to the nano unit Kubernetes keeps.
    pub fn same_amount(&self, other: &Quantity) -> bool {
        match (self.scaled_ceil(9), other.scaled_ceil(9)) {
            (Some(a), Some(b)) => a == b,
            _ => self == other,
        }
    }

    /// True for a zero quantity (`0`, `0m`, `0Gi`).
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// True for a quantity below zero (`-0` is zero).
    pub fn is_negative(&self) -> bool {
        self.negative && !self.is_zero()
    }

    /// How two quantities compare, to the nano unit Kubernetes keeps; `None` when one is too
    /// large to compare that way.
    pub fn compare(&self, other: &Quantity) -> Option<std::cmp::Ordering> {
        Some(self.scaled_ceil(9)?.cmp(&other.scaled_ceil(9)?))
    }
}

/// `ceil(a / b)` for integers, `None` when `b` is zero.
pub fn div_ceil(a: i128, b: i128) -> Option<i128> {
    if b == 0 {
        return None;
    }
    let q = a.checked_div(b)?;
    let r = a.checked_rem(b)?;
    if r != 0 && ((r > 0) == (b > 0)) { q.checked_add(1) } else { Some(q) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_table() {
        let cases: [(&str, i128, i128); 14] = [
            ("1", 1, 1000),
            ("500m", 1, 500),
            ("1500m", 2, 1500),
            ("0.5", 1, 500),
            ("2.25", 3, 2250),
            ("1Ki", 1024, 1_024_000),
            ("64Mi", 67_108_864, 67_108_864_000),
            ("1Gi", 1_073_741_824, 1_073_741_824_000),
            ("1k", 1000, 1_000_000),
            ("1M", 1_000_000, 1_000_000_000),
            ("2e3", 2000, 2_000_000),
            ("1E3", 1000, 1_000_000),
            ("100n", 1, 1),
            ("0", 0, 0),
        ];
        for (text, value, milli) in cases {
            let q = Quantity::parse(text).expect(text);
            assert_eq!(q.value(), Some(value), "{text} value");
            assert_eq!(q.milli_value(), Some(milli), "{text} milli");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "1Xi", ".", "1e", "m", "1 Gi x"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            Quantity::parse("1Zi").unwrap_err().to_string(),
            "invalid quantity \"1Zi\": expected a number with an optional suffix such as m, Ki, Mi, G or e3"
        );
    }

    #[test]
    fn huge_is_an_error_not_a_panic() {
        assert!(Quantity::parse("1e100").is_ok_and(|q| q.value().is_none()));
        assert!(Quantity::parse("999999999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn signs_and_order() {
        let q = |s| Quantity::parse(s).unwrap();
        assert!(q("-1Gi").is_negative());
        assert!(!q("-0").is_negative());
        assert!(!q("1").is_negative());
        assert_eq!(q("1Gi").compare(&q("1024Mi")), Some(std::cmp::Ordering::Equal));
        assert_eq!(q("500m").compare(&q("1")), Some(std::cmp::Ordering::Less));
        assert_eq!(q("2G").compare(&q("1Gi")), Some(std::cmp::Ordering::Greater));
        assert_eq!(q("1e100").compare(&q("1")), None);
    }

    #[test]
    fn div_ceil_rounds_up() {
        assert_eq!(div_ceil(7, 2), Some(4));
        assert_eq!(div_ceil(6, 2), Some(3));
        assert_eq!(div_ceil(1, 0), None);
        assert_eq!(div_ceil(-7, 2), Some(-3));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,20}") {
            if let Ok(q) = Quantity::parse(&s) {
                let _ = (q.value(), q.milli_value());
            }
        }

        #[test]
        fn milli_roundtrip(n in 0u64..10_000_000) {
            let q = Quantity::parse(&format!("{n}m")).unwrap();
            prop_assert_eq!(q.milli_value(), Some(i128::from(n)));
            prop_assert_eq!(q.value(), div_ceil(i128::from(n), 1000));
        }
    }
}
