//! Payload sizes for the load generator: one fixed size (`10KiB`) or a uniform range (`1KiB..1MiB`).

use std::str::FromStr;

use rand::Rng;

/// How big each generated payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    Fixed(u64),
    /// Uniform over `min..=max`, drawn per request.
    Uniform {
        min: u64,
        max: u64,
    },
}

impl SizeSpec {
    /// The largest size this spec can draw (the payload buffer holds that many bytes).
    pub fn max(&self) -> u64 {
        match *self {
            Self::Fixed(n) => n,
            Self::Uniform { max, .. } => max,
        }
    }

    /// Draws one size.
    pub fn draw(&self, rng: &mut impl Rng) -> u64 {
        match *self {
            Self::Fixed(n) => n,
            Self::Uniform { min, max } => rng.random_range(min..=max),
        }
    }
}

fn parse_one(text: &str) -> Result<u64, String> {
    // The one size grammar of intake's configuration.
    intake_core::config::units::parse_size(text)
        .map_err(|_| format!("{:?} is not a size (e.g. 10KiB, 1MiB, 2048)", text.trim()))
}

impl FromStr for SizeSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once("..") {
            None => Ok(Self::Fixed(parse_one(text)?)),
            Some((lo, hi)) => {
                let (min, max) = (parse_one(lo)?, parse_one(hi)?);
                if min > max {
                    return Err(format!("range {text:?} has its minimum above its maximum"));
                }
                Ok(Self::Uniform { min, max })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_fixed_sizes_and_ranges() {
        assert_eq!("10KiB".parse(), Ok(SizeSpec::Fixed(10 * 1024)));
        assert_eq!("2048".parse(), Ok(SizeSpec::Fixed(2048)));
        assert_eq!("1 MiB".parse(), Ok(SizeSpec::Fixed(1 << 20)));
        assert_eq!(
            "1KiB..1MiB".parse(),
            Ok(SizeSpec::Uniform {
                min: 1024,
                max: 1 << 20
            })
        );
        assert!("1MiB..1KiB".parse::<SizeSpec>().is_err());
        assert!("lots".parse::<SizeSpec>().is_err());
    }

    #[test]
    fn draws_stay_in_the_range() {
        let spec = SizeSpec::Uniform { min: 10, max: 20 };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let draws: Vec<u64> = (0..1000).map(|_| spec.draw(&mut rng)).collect();
        assert!(draws.iter().all(|d| (10..=20).contains(d)));
        assert!(draws.contains(&10) && draws.contains(&20));
        assert_eq!(spec.max(), 20);
    }
}
