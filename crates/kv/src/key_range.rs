//! etcd's `key`/`range_end` pair as a key interval.

use std::ops::Bound;

/// The keys selected by a `(key, range_end)` pair, following etcd's rules:
/// an empty `range_end` selects `key` alone, `"\0"` selects every key `>= key`,
/// anything else selects `[key, range_end)` (empty when `range_end <= key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    start: Vec<u8>,
    end: RangeEnd,
}

/// Lower and upper bound of a non-empty [`KeyRange`], for `BTreeMap::range`.
pub type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// Upper end of a [`KeyRange`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum RangeEnd {
    /// Only the start key.
    Single,
    /// Every key from the start on.
    Unbounded,
    /// Keys strictly below this one.
    Before(Vec<u8>),
}

impl KeyRange {
    /// The range etcd means by `key` and `range_end`.
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        let end = match range_end {
            [] => RangeEnd::Single,
            [0] => RangeEnd::Unbounded,
            other => RangeEnd::Before(other.to_vec()),
        };
        KeyRange { start: key.to_vec(), end }
    }

    /// The range holding exactly `key`.
    pub fn single(key: &[u8]) -> KeyRange {
        KeyRange::new(key, &[])
    }

    /// True if `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            RangeEnd::Single => key == self.start.as_slice(),
            RangeEnd::Unbounded => key >= self.start.as_slice(),
            RangeEnd::Before(end) => key >= self.start.as_slice() && key < end.as_slice(),
        }
    }

    /// True if the range holds no key at all.
    pub fn is_empty(&self) -> bool {
        match &self.end {
            RangeEnd::Single | RangeEnd::Unbounded => false,
            RangeEnd::Before(end) => end.as_slice() <= self.start.as_slice(),
        }
    }

    /// True if some key lies in both ranges.
    pub fn intersects(&self, other: &KeyRange) -> bool {
        if self.is_empty() || other.is_empty() {
            return false;
        }
        // Two non-empty intervals meet when each starts before the other ends.
        self.starts_before_end_of(other) && other.starts_before_end_of(self)
    }

    fn starts_before_end_of(&self, other: &KeyRange) -> bool {
        match &other.end {
            RangeEnd::Single => self.start <= other.start,
            RangeEnd::Unbounded => true,
            RangeEnd::Before(end) => self.start.as_slice() < end.as_slice(),
        }
    }

    /// Bounds for `BTreeMap::range`; `None` when the range is empty (a reversed
    /// bound pair would make `BTreeMap::range` panic).
    pub fn bounds(&self) -> Option<KeyBounds<'_>> {
        if self.is_empty() {
            return None;
        }
        let start = Bound::Included(self.start.as_slice());
        let end = match &self.end {
            RangeEnd::Single => Bound::Included(self.start.as_slice()),
            RangeEnd::Unbounded => Bound::Unbounded,
            RangeEnd::Before(end) => Bound::Excluded(end.as_slice()),
        };
        Some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_range_rules() {
        let single = KeyRange::new(b"a", b"");
        assert!(single.contains(b"a") && !single.contains(b"ab"));
        let prefix = KeyRange::new(b"a", b"b");
        assert!(prefix.contains(b"a") && prefix.contains(b"azz") && !prefix.contains(b"b"));
        let from = KeyRange::new(b"b", b"\0");
        assert!(from.contains(b"b") && from.contains(b"zzz") && !from.contains(b"a"));
        let reversed = KeyRange::new(b"b", b"a");
        assert!(reversed.is_empty() && reversed.bounds().is_none());
    }

    #[test]
    fn intersections() {
        let point = KeyRange::single(b"k");
        assert!(point.intersects(&KeyRange::new(b"a", b"z")));
        assert!(!point.intersects(&KeyRange::new(b"a", b"k")));
        assert!(point.intersects(&KeyRange::new(b"k", b"\0")));
        assert!(!point.intersects(&KeyRange::single(b"j")));
        assert!(KeyRange::new(b"a", b"c").intersects(&KeyRange::new(b"b", b"d")));
        assert!(!KeyRange::new(b"a", b"b").intersects(&KeyRange::new(b"b", b"d")));
    }
}
