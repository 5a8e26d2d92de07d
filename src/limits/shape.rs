//! The shape of query text, read lexically before anything parses it:
//! nesting depth and operator count (bounded by `limits.max_query_depth`
//! and `limits.max_query_operators`).

/// The nesting depth and operator count of query text, read lexically
/// (string literals skipped; an over-estimate is fine, it only bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryShape {
    pub depth: usize,
    pub operators: usize,
}

/// Bytes that continue an identifier (metric, label or function name).
static IDENT: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        c += 1;
    }
    t
};

thread_local! {
    /// This thread's shapes of recent long queries.
    static SHAPES: crate::recent::Memo<String, QueryShape> = Default::default();
}

impl QueryShape {
    /// [`of`](Self::of), remembered per thread for long queries.
    pub fn remembered(q: &str) -> QueryShape {
        crate::recent::recall(&SHAPES, q, q.len(), QueryShape::of)
    }

    pub fn of(q: &str) -> QueryShape {
        let b = q.as_bytes();
        let mut shape = QueryShape::default();
        let mut depth = 0usize;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b'"' | b'\'' | b'`' => {
                    // Skip the literal; escapes do not apply in raw (`) strings.
                    i += 1;
                    while i < b.len() {
                        let stop = |x: &u8| *x == c || (*x == b'\\' && c != b'`');
                        match b[i..].iter().position(stop) {
                            None => i = b.len(),
                            Some(n) if b[i + n] == c => {
                                i += n;
                                break;
                            }
                            Some(n) => i += n + 2,
                        }
                    }
                }
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    shape.depth = shape.depth.max(depth);
                }
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' => shape.operators += 1,
                b'=' | b'!' if b.get(i + 1) == Some(&b'=') => {
                    shape.operators += 1;
                    i += 1;
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let start = i;
                    i += b[i..]
                        .iter()
                        .position(|&x| !IDENT[usize::from(x)])
                        .unwrap_or(b.len() - i);
                    let word = &b[start..i];
                    if matches!(word.len(), 2 | 3 | 5 | 6)
                        && [&b"and"[..], b"or", b"unless", b"atan2"]
                            .iter()
                            .any(|k| word.eq_ignore_ascii_case(k))
                    {
                        shape.operators += 1;
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        shape
    }
}
