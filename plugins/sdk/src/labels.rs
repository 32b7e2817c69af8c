//! Label values as [`Output`](crate::Output) methods take them.

/// Label values, in the order the family declared its label names.
///
/// Implemented for arrays of `&str` (including the empty array, so a family
/// without labels takes `&[]`), and for slices and vectors of anything that
/// is `AsRef<str>` (`String`, `&str`, `Cow<str>`).
///
/// ```
/// use weir_sdk::{FamilyId, Output};
/// let (lines, requests) = (FamilyId(0), FamilyId(1));
/// let mut out = Output::new();
/// out.add(lines, &[], 1.0); // a family without labels
/// out.add(requests, &["GET", "200"], 1.0); // an array of &str
/// let owned: Vec<String> = vec!["GET".into(), "200".into()];
/// out.add(requests, &owned, 1.0); // a Vec<String>, or a &[String]
/// let status = String::from("500");
/// out.add(requests, &["GET", status.as_str()], 1.0);
/// assert_eq!(out.len(), 3);
/// ```
///
/// An array of `String` is not accepted (it would make `&[]` ambiguous):
/// write `&[a.as_str(), b.as_str()]`, or pass a `Vec` or slice.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as label values",
    note = "pass `&[]`, an array of &str (`&[a.as_str(), \"x\"]`), or a slice or Vec of String/&str"
)]
pub trait Labels {
    /// How many values there are.
    ///
    /// ```
    /// use weir_sdk::Labels;
    /// assert_eq!(["a", "b"].count(), 2);
    /// ```
    fn count(&self) -> usize;
    /// The value at `i`, if any.
    ///
    /// ```
    /// use weir_sdk::Labels;
    /// assert_eq!(vec![String::from("x")].get(0), Some("x"));
    /// ```
    fn get(&self, i: usize) -> Option<&str>;
}

impl<const N: usize> Labels for [&str; N] {
    fn count(&self) -> usize {
        N
    }
    fn get(&self, i: usize) -> Option<&str> {
        self.as_slice().get(i).copied()
    }
}

impl<S: AsRef<str>> Labels for [S] {
    fn count(&self) -> usize {
        self.len()
    }
    fn get(&self, i: usize) -> Option<&str> {
        <[S]>::get(self, i).map(|s| s.as_ref())
    }
}

impl<S: AsRef<str>> Labels for Vec<S> {
    fn count(&self) -> usize {
        self.len()
    }
    fn get(&self, i: usize) -> Option<&str> {
        self.as_slice().get(i).map(|s| s.as_ref())
    }
}

/// The values in order.
pub(crate) fn iter<L: Labels + ?Sized>(labels: &L) -> impl Iterator<Item = &str> {
    (0..labels.count()).filter_map(move |i| labels.get(i))
}
