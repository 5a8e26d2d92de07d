//! `Str`: a label name or value, cheap to clone (one shared allocation),
//! and `Interner`: a per-select pool so repeated names and values of one
//! backend answer share that allocation.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// An immutable string shared by reference count. Compares, orders and
/// hashes exactly as `str` (byte-wise), so label sets keep Prometheus's
/// `labels.Compare` order.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Str(Arc<str>);

impl Str {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when both share one allocation (as interned strings do).
    pub fn ptr_eq(a: &Str, b: &Str) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl Default for Str {
    fn default() -> Self {
        Str(Arc::from(""))
    }
}

impl Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Str {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl From<String> for Str {
    fn from(s: String) -> Self {
        Str(Arc::from(s))
    }
}

impl From<&String> for Str {
    fn from(s: &String) -> Self {
        Str(Arc::from(s.as_str()))
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Str(Arc::from(s))
    }
}

impl From<&Str> for Str {
    fn from(s: &Str) -> Self {
        s.clone()
    }
}

impl From<Arc<str>> for Str {
    fn from(s: Arc<str>) -> Self {
        Str(s)
    }
}

impl From<Str> for String {
    fn from(s: Str) -> Self {
        s.0.to_string()
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, o: &str) -> bool {
        &*self.0 == o
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, o: &&str) -> bool {
        &*self.0 == *o
    }
}

impl PartialEq<String> for Str {
    fn eq(&self, o: &String) -> bool {
        *self.0 == **o
    }
}

impl PartialEq<Str> for str {
    fn eq(&self, o: &Str) -> bool {
        self == &*o.0
    }
}

impl PartialEq<Str> for &str {
    fn eq(&self, o: &Str) -> bool {
        *self == &*o.0
    }
}

impl PartialEq<Str> for String {
    fn eq(&self, o: &Str) -> bool {
        **self == *o.0
    }
}

impl serde::Serialize for Str {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Str {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Str::from(&*s))
    }
}

/// A pool of label strings for one select against one backend: each
/// distinct name or value is allocated once and shared by every series.
#[derive(Default)]
pub struct Interner(HashSet<Arc<str>>);

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    /// The pooled copy of `s`, allocating it on first sight.
    pub fn intern(&mut self, s: &str) -> Str {
        if let Some(a) = self.0.get(s) {
            return Str(a.clone());
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(a.clone());
        Str(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_hashes_as_str() {
        let mut v: Vec<Str> = ["b", "a", "ab", "B", "é"]
            .iter()
            .map(|s| Str::from(*s))
            .collect();
        v.sort();
        let mut w = vec!["b", "a", "ab", "B", "é"];
        w.sort();
        assert!(v.iter().zip(&w).all(|(a, b)| a == b));
        let set: HashSet<Str> = v.into_iter().collect();
        assert!(set.contains("ab"));
    }

    #[test]
    fn interner_shares_one_allocation() {
        let mut p = Interner::new();
        let a = p.intern("job");
        let b = p.intern("job");
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, "job");
    }

    #[test]
    fn serde_as_string() {
        let s: Str = serde_json::from_str("\"x\\\"y\"").expect("json string");
        assert_eq!(s, "x\"y");
        assert_eq!(serde_json::to_string(&s).expect("serialize"), "\"x\\\"y\"");
    }
}
