//! How ternd's log looks. Colour (terminal escape sequences) only on a terminal, and never when
//! `NO_COLOR` is set to anything non-empty (<https://no-color.org>): `kubectl logs`, journald and
//! log files get plain text. The JSON format is never coloured.

use std::ffi::OsStr;

/// Whether to colour the log: stderr is a terminal and `NO_COLOR` is unset or empty.
pub fn colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new(""))));
    }
}
