//! Per-thread memos of recent results of costly pure functions of long
//! text: the same analysis query arrives over and over, and hashing it is
//! several times cheaper than decoding or scanning it again.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::thread::LocalKey;

/// Inputs at least this long are remembered.
pub const MIN_LEN: usize = 64;
/// Longer inputs are computed every time.
pub const MAX_LEN: usize = 16 << 10;
/// Results one memo keeps before it starts over.
pub const ENTRIES: usize = 64;

/// One thread's memo (declare it with `thread_local!`).
pub type Memo<K, V> = RefCell<HashMap<K, V, foldhash::fast::RandomState>>;

/// `f(input)`, from `memo` when `input` (of `len` bytes) was seen lately.
pub fn recall<Q, V>(
    memo: &'static LocalKey<Memo<Q::Owned, V>>,
    input: &Q,
    len: usize,
    f: impl FnOnce(&Q) -> V,
) -> V
where
    Q: ?Sized + ToOwned + Hash + Eq,
    Q::Owned: Borrow<Q> + Hash + Eq,
    V: Clone,
{
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return f(input);
    }
    memo.with(|cell| {
        let mut memo = cell.borrow_mut();
        if let Some(v) = memo.get(input) {
            return v.clone();
        }
        let v = f(input);
        if memo.len() >= ENTRIES {
            memo.clear();
        }
        memo.insert(input.to_owned(), v.clone());
        v
    })
}
