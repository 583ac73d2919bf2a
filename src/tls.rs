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
        next = match cur.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            // hyper-rustls wraps tokio-rustls's io::Error in another one.
            Some(inner) => Some(inner),
            None => cur.source(),
        };
    }
    None
}

/// Why the peer's certificate was rejected, when that is what `e` comes from.
pub fn certificate_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::CertificateError> {
    match rustls_error(e)? {
        rustls::Error::InvalidCertificate(cause) => Some(cause),
        _ => None,
    }
}

/// What to change, for the usual causes.
pub fn certificate_hint(cause: &rustls::CertificateError) -> &'static str {
    use rustls::CertificateError as C;
    match cause {
        C::UnknownIssuer | C::BadSignature => "the CA that signed it is not trusted",
        C::NotValidForName | C::NotValidForNameContext { .. } => "it is not issued for the host name in the URL",
        C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
            "it is outside its validity period (or this machine's clock is wrong)"
        }
        _ => "it was rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_error_is_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
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
        let cause = certificate_error(&outer).expect("found");
        assert_eq!(*cause, rustls::CertificateError::UnknownIssuer);
        assert_eq!(certificate_hint(cause), "the CA that signed it is not trusted");
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(certificate_error(&plain).is_none());
    }
}
