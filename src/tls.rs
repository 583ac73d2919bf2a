//! What the TLS stack (rustls, under sqlx and reqwest) said, found in a driver's error chain, so
//! that a certificate failure can be named as one.

use std::error::Error;

/// The rustls error behind `e`, if any. `io::Error::source` skips the error it wraps (it answers
/// that error's source), so an `io::Error` is looked into with `get_ref`.
pub fn rustls_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next: Option<&'a (dyn Error + 'static)> = Some(e);
    // Bounded: chains are a few links; a cycle must not loop.
    for _ in 0..32 {
        let cur = next?;
        if let Some(r) = cur.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = cur.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                return Some(r);
            }
            next = inner.source().or_else(|| cur.source());
            continue;
        }
        next = cur.source();
    }
    None
}

/// "certificate verification failed: …" when `e` comes from a rejected peer certificate.
pub fn certificate_failure(e: &(dyn Error + 'static)) -> Option<String> {
    match rustls_error(e)? {
        rustls::Error::InvalidCertificate(cause) => Some(format!("certificate verification failed: {cause:?}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_error_is_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connect failed")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let outer = Outer(io);
        assert_eq!(certificate_failure(&outer).as_deref(), Some("certificate verification failed: UnknownIssuer"));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(certificate_failure(&plain).is_none());
    }
}
