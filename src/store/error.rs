//! The storage failure behind [`super::StoreError::Backend`].

use std::borrow::Cow;
use std::sync::Arc;

/// What went wrong in the storage, with the driver's error kept as the source for the logs.
/// Cloneable (a `StoreError` is), so the source is shared.
#[derive(Debug, Clone)]
pub struct BackendError {
    context: Option<Cow<'static, str>>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// A driver's (or a thread's) error as it came.
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> BackendError {
        BackendError { context: None, source: Some(Arc::new(source)) }
    }

    /// An error that happened while doing `context`.
    pub fn with_context(
        context: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> BackendError {
        BackendError { context: Some(context.into()), source: Some(Arc::new(source)) }
    }

    /// The message and every source under it, for a log line.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        // The first source is in the message already.
        let mut next = self.source.as_deref().and_then(std::error::Error::source);
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        out
    }
}

/// The message the storage failed with, when there is no error value to keep.
impl From<&'static str> for BackendError {
    fn from(what: &'static str) -> BackendError {
        BackendError { context: Some(what.into()), source: None }
    }
}

impl From<String> for BackendError {
    fn from(what: String) -> BackendError {
        BackendError { context: Some(what.into()), source: None }
    }
}

/// `storage failure: CONTEXT: SOURCE`. The source's own message is part of it, so the log lines
/// that print a store error with `%e` keep the driver's words; [`BackendError::chain`] adds the
/// sources under it.
impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("storage failure")?;
        if let Some(c) = &self.context {
            write!(f, ": {c}")?;
        }
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[derive(Debug, thiserror::Error)]
    #[error("disk I/O error")]
    struct Driver(#[source] std::io::Error);

    #[test]
    fn a_backend_error_keeps_its_source_through_clones() {
        let e = StoreError::Backend(BackendError::new(Driver(std::io::Error::other("EIO on page 7"))));
        let copy = e.clone();
        assert_eq!(copy.to_string(), "storage failure: disk I/O error");
        let source = std::error::Error::source(&copy).expect("the driver's error is kept");
        assert!(source.downcast_ref::<Driver>().is_some(), "{source:?}");
        let StoreError::Backend(b) = &copy else { unreachable!() };
        assert_eq!(b.chain(), "storage failure: disk I/O error: EIO on page 7");
        let with = BackendError::with_context("listing tasks", Driver(std::io::Error::other("x")));
        assert_eq!(with.to_string(), "storage failure: listing tasks: disk I/O error");
        let plain = BackendError::from("the writer thread has stopped");
        assert_eq!(
            (plain.to_string().as_str(), plain.chain().as_str()),
            ("storage failure: the writer thread has stopped", "storage failure: the writer thread has stopped")
        );
        assert!(std::error::Error::source(&plain).is_none());
    }
}
