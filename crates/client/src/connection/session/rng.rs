//! The session's random numbers: reconnect and resend jitter, the random
//! start over the pool.

/// SplitMix64: small and the same on every platform, so that a seed
/// replays. The client seeds it at random, tests fix it.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Random numbers that follow from `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..=max`.
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            // Modulo bias is at most max / 2^64: irrelevant for jitter.
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..32).map(|_| a.up_to(1000)).collect();
        let ys: Vec<u64> = (0..32).map(|_| b.up_to(1000)).collect();
        assert_eq!(xs, ys);
        let mut c = Rng::new(8);
        let zs: Vec<u64> = (0..32).map(|_| c.up_to(1000)).collect();
        assert_ne!(xs, zs, "another seed, other numbers");
    }

    #[test]
    fn numbers_stay_in_range_and_cover_it() {
        let mut r = Rng::new(1);
        let mut seen = [false; 4];
        for _ in 0..200 {
            let n = r.up_to(3);
            assert!(n <= 3);
            seen[n as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
        assert_eq!(Rng::new(5).up_to(0), 0);
        // The full range does not overflow.
        let _ = Rng::new(5).up_to(u64::MAX);
    }

    #[test]
    fn splitmix64_reference_value() {
        // The first SplitMix64 output for seed 0 (a published test value).
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
