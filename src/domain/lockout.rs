//! Which login throttles an attempt must pass, and which its failure counts against, so that
//! guessing stays bounded per name without letting anyone lock a user out.
//!
//! A per-name limit alone lets anyone lock a user out: failing for the name from anywhere makes
//! even the right password wait. So a client that has logged in as the name before is not held
//! to the name's limit (OWASP's "device cookies"): it is counted on its own. Knowing a client
//! takes a successful login as that name, so an attacker without the password cannot make more
//! of them, and every way in stays bounded:
//!
//! | standing | must have a token in | a failure takes one from |
//! |---|---|---|
//! | a valid device cookie for the name | that device | device, address, name |
//! | an address that logged in as the name | that (name, address) pair | pair, address, name |
//! | any other client | its address and the name | address, name |

/// How an attempt stands with the name it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Sent a valid device cookie issued at a login as this name.
    Device,
    /// Comes from an address that logged in as this name before.
    KnownAddress,
    Unknown,
}

/// The throttle buckets of a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// The client address.
    Address,
    /// The associate name (known or not).
    Name,
    /// The name at a known address.
    Pair,
    /// The device cookie.
    Device,
}

impl Standing {
    /// The buckets that must have a token left before the password is checked.
    pub fn gates(self) -> &'static [Bucket] {
        match self {
            Standing::Device => &[Bucket::Device],
            Standing::KnownAddress => &[Bucket::Pair],
            Standing::Unknown => &[Bucket::Address, Bucket::Name],
        }
    }

    /// The buckets a failure takes a token from.
    pub fn charged(self) -> &'static [Bucket] {
        match self {
            Standing::Device => &[Bucket::Device, Bucket::Address, Bucket::Name],
            Standing::KnownAddress => &[Bucket::Pair, Bucket::Address, Bucket::Name],
            Standing::Unknown => &[Bucket::Address, Bucket::Name],
        }
    }

    /// Is the attempt held to the per-address bound on password checks? Not with a device
    /// cookie: others at the same address (a shared NAT) must not be able to refuse the user's
    /// right password, and the device's failures are bounded on their own.
    pub fn checks_bounded(self) -> bool {
        self != Standing::Device
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_clients_wait_for_the_name_and_every_failure_is_counted() {
        for s in [Standing::Device, Standing::KnownAddress, Standing::Unknown] {
            assert_eq!(s.gates().contains(&Bucket::Name), s == Standing::Unknown, "{s:?}");
            assert!(s.gates().iter().all(|b| s.charged().contains(b)), "{s:?}: what gates is charged");
            assert!(s.charged().contains(&Bucket::Name) && s.charged().contains(&Bucket::Address), "{s:?}");
        }
    }
}
