//! Errors as one log line: an error and the errors that caused it.

use std::error::Error;
use std::fmt;

/// An error and its sources on one line, `error: cause: cause's cause`, for log lines (`%`
/// shows only the top error). A source whose text the line already ends with is not repeated:
/// intake's errors name their cause in their own message.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl<'a> Chain<'a> {
    /// Only the sources of `error`, for a log line that shows the error itself in other fields;
    /// `None` when it has no source.
    pub fn sources(error: &'a (dyn Error + 'static)) -> Option<Self> {
        error.source().map(Chain)
    }
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn every_cause_is_named_once() {
        let refused = Layer("refused", None);
        let named = Layer("connecting: refused", Some(Box::new(refused)));
        let top = Layer("starting", Some(Box::new(named)));
        assert_eq!(Chain(&top).to_string(), "starting: connecting: refused");
        assert_eq!(
            Chain::sources(&top).map(|c| c.to_string()).as_deref(),
            Some("connecting: refused")
        );
        assert!(Chain::sources(&Layer("alone", None)).is_none());
    }
}
