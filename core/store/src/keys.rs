//! Byte ranges for prefix scans, shared by both backends.
//!
//! Prefix matching is byte-exact "starts with": `/registry/pods` matches `/registry/pods2/x`,
//! `/registry/pods/` does not. Ranges are `[start, end)` over the key bytes, so no wildcard
//! syntax (SQL `LIKE`, globs) is ever involved.

/// The smallest byte string greater than every string starting with `prefix`, or `None` when no
/// such string exists (empty prefix or only `0xff` bytes: the range is unbounded above).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The first key of a scan over `prefix` that skips keys `<= start_after`.
pub(crate) fn range_start(prefix: &[u8], start_after: Option<&[u8]>) -> Vec<u8> {
    match start_after {
        Some(after) => {
            // The smallest key strictly greater than `after` is `after` followed by a NUL byte.
            let mut next = after.to_vec();
            next.push(0);
            if next.as_slice() > prefix {
                next
            } else {
                prefix.to_vec()
            }
        }
        None => prefix.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(
            prefix_end(b"/registry/pods/"),
            Some(b"/registry/pods0".to_vec())
        );
        assert_eq!(prefix_end(b"a"), Some(b"b".to_vec()));
    }

    #[test]
    fn prefix_end_carries_over_ff_bytes() {
        assert_eq!(prefix_end(&[b'a', 0xff, 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn range_start_skips_start_after() {
        assert_eq!(range_start(b"/p/", None), b"/p/".to_vec());
        assert_eq!(range_start(b"/p/", Some(b"/p/b")), b"/p/b\0".to_vec());
        // A start_after before the prefix does not widen the scan.
        assert_eq!(range_start(b"/p/", Some(b"/a")), b"/p/".to_vec());
    }
}
