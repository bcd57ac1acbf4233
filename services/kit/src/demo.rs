//! What the services' demo data is drawn with: a small deterministic generator (splitmix64), so
//! `civic seed` makes the same street on every machine, and again adds nothing.

/// A deterministic generator of numbers (splitmix64), seeded by the caller.
#[derive(Debug, Clone)]
pub struct Gen(u64);

impl Gen {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True `per_thousand` times in a thousand.
    pub fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::Gen;

    #[test]
    fn the_same_seed_draws_the_same_numbers_within_bounds() {
        let (mut a, mut b) = (Gen::new(7), Gen::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(a.below(10) < 10);
            b.unit();
            b.below(10);
        }
        assert_eq!(Gen::new(1).below(0), 0);
    }
}
