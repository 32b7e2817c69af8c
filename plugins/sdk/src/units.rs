//! Unit conversions that are exact where a user reads them as exact.
//!
//! `350 * 0.001` is `0.35000000000000003` in binary floating point, one
//! step above the `0.35` a user wrote as a bucket bound, so a request of
//! 350 ms would land one bucket too high (buckets are inclusive upper
//! bounds). [`Scale`] multiplies in decimal instead: the value and the
//! factor are taken as the shortest decimals that read back as the same
//! `f64` (what a log and a config file hold: `350`, `0.001`), multiplied
//! exactly, and rounded once to the nearest `f64`. The result is the same
//! number the config's `0.35` parses to.
//!
//! No crate does this one step without bringing a decimal type along, and
//! the step is small: Rust's `{:e}` formatting gives the shortest decimal
//! and its `f64` parsing rounds correctly (both documented by the standard
//! library), which leaves only the integer product.

/// A conversion factor from config (`scale = 0.001`), applied exactly.
///
/// ```
/// let ms_to_s = weir_sdk::Scale::new(0.001).unwrap();
/// assert_eq!(350.0 * 0.001, 0.35000000000000003); // one bucket too high
/// assert_eq!(ms_to_s.apply(350.0), 0.35);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    factor: f64,
    fast: Fast,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fast {
    /// `factor` is 1.
    One,
    /// `factor` is 10^-k, k <= 22: a whole value divided by 10^k (an exact
    /// `f64`) is correctly rounded in one step.
    Div(f64),
    /// `factor` is a whole number below 2^53: a whole value times it is
    /// correctly rounded in one step.
    Mul,
    /// Anything else: decimal multiplication.
    None,
}

/// 2^53: every whole `f64` below it is exact.
const EXACT: f64 = 9_007_199_254_740_992.0;

impl Scale {
    /// The identity.
    ///
    /// ```
    /// assert_eq!(weir_sdk::Scale::ONE.apply(0.1), 0.1);
    /// ```
    pub const ONE: Scale = Scale {
        factor: 1.0,
        fast: Fast::One,
    };

    /// A factor; errors when it is not a finite number.
    ///
    /// ```
    /// assert!(weir_sdk::Scale::new(1048576.0).is_ok());
    /// assert!(weir_sdk::Scale::new(f64::NAN).is_err());
    /// ```
    pub fn new(factor: f64) -> Result<Scale, String> {
        if !factor.is_finite() {
            return Err(format!("scale must be a finite number, not {factor}"));
        }
        let fast = if factor == 1.0 {
            Fast::One
        } else if factor.fract() == 0.0 && factor.abs() < EXACT {
            Fast::Mul
        } else {
            match (1..=22).find(|k| 10f64.powi(-k) == factor) {
                Some(k) => Fast::Div(10f64.powi(k)),
                None => Fast::None,
            }
        };
        Ok(Scale { factor, fast })
    }

    /// The factor as given.
    ///
    /// ```
    /// assert_eq!(weir_sdk::Scale::new(0.001).unwrap().factor(), 0.001);
    /// ```
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// `value` times the factor, rounded once from the exact decimal
    /// product. Non-finite values pass through the plain product.
    ///
    /// ```
    /// let us = weir_sdk::Scale::new(0.000001).unwrap();
    /// assert_eq!(us.apply(700000.0), 0.7);
    /// assert_eq!(weir_sdk::Scale::new(0.001).unwrap().apply(0.35), 0.00035);
    /// ```
    pub fn apply(&self, value: f64) -> f64 {
        let whole = value.fract() == 0.0 && value.abs() < EXACT;
        match self.fast {
            Fast::One => value,
            Fast::Div(d) if whole => value / d,
            Fast::Mul if whole => value * self.factor,
            _ if !value.is_finite() || value == 0.0 => value * self.factor,
            _ => decimal_product(value, self.factor),
        }
    }
}

impl Default for Scale {
    fn default() -> Self {
        Scale::ONE
    }
}

/// The shortest decimal that reads back as `v` (finite, non-zero):
/// (negative, digits, exponent) with `v = ±digits × 10^exponent`.
fn decimal(v: f64) -> (bool, u128, i32) {
    let s = format!("{:e}", v.abs());
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let mut exp: i32 = e.parse().unwrap_or(0);
    let mut digits: u128 = 0;
    let mut frac = false;
    for c in m.bytes() {
        match c {
            b'.' => frac = true,
            b'0'..=b'9' => {
                digits = digits * 10 + u128::from(c - b'0');
                if frac {
                    exp -= 1;
                }
            }
            _ => {}
        }
    }
    (v < 0.0, digits, exp)
}

fn decimal_product(a: f64, b: f64) -> f64 {
    let (na, da, ea) = decimal(a);
    let (nb, db, eb) = decimal(b);
    // At most 17 significant digits each: the product fits in a u128.
    let Some(d) = da.checked_mul(db) else {
        return a * b;
    };
    let sign = if na != nb { "-" } else { "" };
    format!("{sign}{d}e{}", ea + eb).parse().unwrap_or(a * b)
}

/// `a + b`, `a - b`, `a * b` and `a / b` computed on the shortest decimals
/// of `a` and `b` and rounded once, so `0.1 + 0.2` is `0.3` and
/// `350 / 1000` and `350 * 0.001` are both `0.35`, the number a config's
/// `0.35` parses to. A quotient that is no finite decimal (`1 / 3`) is the
/// ordinary correctly rounded `f64` quotient; so is anything too large for
/// exact digits. `None` for a division by zero.
///
/// ```
/// use weir_sdk::units::{exact, Op};
/// assert_eq!(0.1 + 0.2, 0.30000000000000004);
/// assert_eq!(exact(Op::Add, 0.1, 0.2), Some(0.3));
/// assert_eq!(exact(Op::Mul, 350.0, 0.001), Some(0.35));
/// assert_eq!(exact(Op::Div, 0.35, 1000.0), Some(0.00035));
/// assert_eq!(exact(Op::Div, 1.0, 0.0), None);
/// ```
pub fn exact(op: Op, a: f64, b: f64) -> Option<f64> {
    let plain = match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Div => {
            if b == 0.0 {
                return None;
            }
            a / b
        }
    };
    if !a.is_finite() || !b.is_finite() || a == 0.0 || b == 0.0 {
        return Some(plain);
    }
    Some(match op {
        Op::Add => decimal_sum(a, b).unwrap_or(plain),
        Op::Sub => decimal_sum(a, -b).unwrap_or(plain),
        Op::Mul => decimal_product(a, b),
        Op::Div => decimal_quotient(a, b).unwrap_or(plain),
    })
}

/// An operation of [`exact`].
///
/// ```
/// use weir_sdk::units::{exact, Op};
/// assert_eq!(exact(Op::Sub, 0.3, 0.1), Some(0.2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

fn pow10(n: u32) -> Option<u128> {
    10u128.checked_pow(n)
}

fn decimal_sum(a: f64, b: f64) -> Option<f64> {
    let (na, da, ea) = decimal(a);
    let (nb, db, eb) = decimal(b);
    let e = ea.min(eb);
    let da = da.checked_mul(pow10(u32::try_from(ea - e).ok()?)?)?;
    let db = db.checked_mul(pow10(u32::try_from(eb - e).ok()?)?)?;
    let sa = i128::try_from(da).ok()?;
    let sb = i128::try_from(db).ok()?;
    let sum = (if na { -sa } else { sa }).checked_add(if nb { -sb } else { sb })?;
    if sum == 0 {
        return Some(0.0);
    }
    format!("{sum}e{e}").parse().ok()
}

fn decimal_quotient(a: f64, b: f64) -> Option<f64> {
    let (na, da, ea) = decimal(a);
    let (nb, db, eb) = decimal(b);
    // da / db is a finite decimal when db = 2^p 5^q: da * 2^(k-p) 5^(k-q) / 10^k.
    let (mut rest, mut p, mut q) = (db, 0u32, 0u32);
    while rest % 2 == 0 {
        rest /= 2;
        p += 1;
    }
    while rest % 5 == 0 {
        rest /= 5;
        q += 1;
    }
    if rest != 1 {
        return None;
    }
    let k = p.max(q);
    let m = 2u128
        .checked_pow(k - p)?
        .checked_mul(5u128.checked_pow(k - q)?)?;
    let d = da.checked_mul(m)?;
    let sign = if na != nb { "-" } else { "" };
    format!("{sign}{d}e{}", ea - eb - i32::try_from(k).ok()?)
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: f64) -> Scale {
        Scale::new(f).expect("finite")
    }

    #[test]
    fn milliseconds_on_bucket_bounds_are_the_bounds() {
        // Issue 13: 350 * 0.001 is 0.35000000000000003 in binary.
        assert_ne!(350.0 * 0.001, 0.35);
        for (v, want) in [(350.0, 0.35), (700.0, 0.7), (950.0, 0.95), (1.0, 0.001)] {
            assert_eq!(s(0.001).apply(v), want, "{v}");
        }
        assert_eq!(s(0.000001).apply(700000.0), 0.7);
        assert_eq!(s(1e-9).apply(950000000.0), 0.95);
    }

    #[test]
    fn fractional_values_and_factors_are_exact_in_decimal() {
        assert_eq!(s(0.001).apply(0.35), 0.00035);
        assert_eq!(s(0.001).apply(950.5), 0.9505);
        assert_eq!(s(0.1).apply(3.0), 0.3);
        assert_eq!(s(0.25).apply(0.7), 0.175);
        assert_eq!(s(1048576.0).apply(1.5), 1572864.0);
        assert_eq!(s(-0.001).apply(350.0), -0.35);
        assert_eq!(s(0.001).apply(-350.0), -0.35);
        assert_eq!(s(60.0).apply(0.35), 21.0);
    }

    #[test]
    fn every_millisecond_below_a_minute_reads_as_its_decimal() {
        for ms in 0..60_000u32 {
            let want: f64 = format!("{}.{:03}", ms / 1000, ms % 1000).parse().unwrap();
            assert_eq!(s(0.001).apply(f64::from(ms)), want, "{ms}");
            let tenth = f64::from(ms) + 0.5;
            let want: f64 = format!("{}.{:03}5", ms / 1000, ms % 1000).parse().unwrap();
            assert_eq!(s(0.001).apply(tenth), want, "{tenth}");
        }
    }

    #[test]
    fn exact_arithmetic_is_decimal() {
        let x = |op, a, b| exact(op, a, b).expect("no division by zero");
        assert_eq!(x(Op::Sub, 1500.0, 1150.0), 350.0);
        assert_eq!(x(Op::Sub, 0.3, 0.1), 0.2);
        assert_ne!(0.3 - 0.1, 0.2);
        assert_eq!(x(Op::Add, -0.1, -0.2), -0.3);
        assert_eq!(x(Op::Add, 0.1, -0.1), 0.0);
        assert_eq!(x(Op::Div, 350.0, 1000.0), 0.35);
        assert_eq!(x(Op::Div, 0.35, 1000.0), 0.00035);
        assert_eq!(x(Op::Div, 3.0, 8.0), 0.375);
        assert_eq!(x(Op::Div, 1.0, 3.0), 1.0 / 3.0);
        assert_eq!(x(Op::Div, -7.0, 0.5), -14.0);
        assert_eq!(x(Op::Mul, 0.35, 60.0), 21.0);
        assert_eq!(x(Op::Add, 1e300, 1.0), 1e300);
        assert_eq!(x(Op::Add, f64::MAX, f64::MAX), f64::INFINITY);
        assert_eq!(exact(Op::Div, 1.0, 0.0), None);
        assert_eq!(exact(Op::Div, 0.0, -0.0), None);
        for ms in 0..20_000u32 {
            let want: f64 = format!("{}.{:03}", ms / 1000, ms % 1000).parse().unwrap();
            assert_eq!(x(Op::Div, f64::from(ms), 1000.0), want, "{ms}");
        }
    }

    #[test]
    fn odd_inputs_pass_through() {
        assert_eq!(s(0.001).apply(0.0), 0.0);
        assert!(s(0.001).apply(f64::NAN).is_nan());
        assert_eq!(s(0.001).apply(f64::INFINITY), f64::INFINITY);
        assert_eq!(s(1.0).apply(0.1), 0.1);
        assert!(s(0.001).apply(f64::MAX).is_finite());
        assert!(Scale::new(f64::NAN).is_err());
    }
}
