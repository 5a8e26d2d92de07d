//! One float of a XOR (Gorilla) stream, as Prometheus's XOR chunks and
//! the float fields of its histogram chunks write it: `0` repeats the
//! previous value; `10` XORs in bits within the previous window; `11`
//! brings a new window (5 bits of leading zeros, 6 bits of length, 0
//! meaning 64) and then the bits.

use super::chunk::{BitReader, OutOfBits};

/// Why a value could not be read.
pub(super) enum XorValueError {
    OutOfBits,
    /// A window claims more than 64 bits.
    BadWindow {
        leading: u32,
        bits: u32,
    },
}

impl From<OutOfBits> for XorValueError {
    fn from(_: OutOfBits) -> Self {
        XorValueError::OutOfBits
    }
}

/// A float XORed with its previous value, with the window of meaningful
/// bits it was last written with.
#[derive(Clone, Copy, Default)]
pub(super) struct XorValue {
    pub(super) bits: u64,
    leading: u32,
    trailing: u32,
}

impl XorValue {
    pub(super) fn first(r: &mut BitReader<'_>) -> Result<Self, OutOfBits> {
        Ok(XorValue {
            bits: r.read_bits(64)?,
            ..XorValue::default()
        })
    }

    pub(super) fn read(&mut self, r: &mut BitReader<'_>) -> Result<(), XorValueError> {
        if !r.read_bit()? {
            return Ok(());
        }
        if r.read_bit()? {
            // Both fields are at most 6 bits wide: the conversions are exact.
            let leading = r.read_bits(5)? as u32;
            let mut bits = r.read_bits(6)? as u32;
            if bits == 0 {
                bits = 64;
            }
            if leading + bits > 64 {
                return Err(XorValueError::BadWindow { leading, bits });
            }
            self.leading = leading;
            self.trailing = 64 - leading - bits;
        }
        let bits = 64 - self.leading - self.trailing;
        let delta = r.read_bits(bits)?;
        // `trailing` < 64 whenever bits are read (at least one bit is meaningful).
        self.bits ^= delta.checked_shl(self.trailing).unwrap_or(0);
        Ok(())
    }

    pub(super) fn value(&self) -> f64 {
        f64::from_bits(self.bits)
    }
}
