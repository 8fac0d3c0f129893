//! Deterministic key choice and key/value encoding.

/// A small deterministic pseudo-random generator (SplitMix64). Each client owns one, seeded
/// from the run's seed and the client's index, so a run's key sequence per client is
/// reproducible.
#[derive(Debug, Clone)]
pub struct KeyRandom {
    state: u64,
}

impl KeyRandom {
    /// A generator for client `client_index` of a run seeded with `seed`.
    pub fn for_client(seed: u64, client_index: u64) -> Self {
        let mut mixer = KeyRandom { state: seed };
        let base = mixer.next_u64();
        KeyRandom { state: base ^ client_index.wrapping_mul(0xA076_1D64_78BD_642F) }
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound` (`bound` > 0), by multiply-shift (bias below 2^-32 for bounds this small).
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0, "bound must be positive");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// Encodes key index `index` as exactly `key_size_bytes` ASCII digits, zero-padded.
///
/// Callers check with [`digits_needed`] that the key space fits the key size.
pub fn encode_key(index: u64, key_size_bytes: usize) -> Vec<u8> {
    format!("{index:0key_size_bytes$}").into_bytes()
}

/// Number of decimal digits needed to write every index below `key_space`.
pub fn digits_needed(key_space: u64) -> usize {
    let largest = key_space.saturating_sub(1);
    largest.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// A value of `value_size_bytes` printable bytes derived from `seed` (same seed, same value).
pub fn make_value(value_size_bytes: usize, seed: u64) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut random = KeyRandom::for_client(seed, u64::MAX);
    (0..value_size_bytes).map(|_| ALPHABET[random.below(ALPHABET.len() as u64) as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_decimal() {
        assert_eq!(encode_key(42, 8), b"00000042".to_vec());
        assert_eq!(encode_key(99_999, 8), b"00099999".to_vec());
        assert_eq!(encode_key(0, 1), b"0".to_vec());
    }

    #[test]
    fn digits_needed_covers_the_largest_index() {
        assert_eq!(digits_needed(0), 1);
        assert_eq!(digits_needed(1), 1);
        assert_eq!(digits_needed(10), 1);
        assert_eq!(digits_needed(11), 2);
        assert_eq!(digits_needed(100_000), 5);
        assert_eq!(digits_needed(100_001), 6);
        assert_eq!(digits_needed(u64::MAX), 20);
    }

    #[test]
    fn generators_are_deterministic_and_differ_per_client() {
        let first: Vec<u64> = (0..5)
            .map({
                let mut random = KeyRandom::for_client(7, 0);
                move |_| random.below(1000)
            })
            .collect();
        let again: Vec<u64> = (0..5)
            .map({
                let mut random = KeyRandom::for_client(7, 0);
                move |_| random.below(1000)
            })
            .collect();
        let other: Vec<u64> = (0..5)
            .map({
                let mut random = KeyRandom::for_client(7, 1);
                move |_| random.below(1000)
            })
            .collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert!(first.iter().all(|&value| value < 1000));
    }

    #[test]
    fn values_have_the_requested_size() {
        assert_eq!(make_value(256, 1).len(), 256);
        assert_eq!(make_value(256, 1), make_value(256, 1));
        assert!(make_value(0, 1).is_empty());
    }
}
