//! The errors of a module: a handler's [`Error`] (sent to the node as
//! MODULE_ERR) and a [`RunError`] that ends [`Module::run`](crate::Module::run).

use std::fmt;

use thingsdb_protocol::module::{is_module_error_code, MAX_ERROR_MSG};
use thingsdb_protocol::ErrorCode;

/// An error a handler returns for a request (or for a configuration); the
/// node raises it in the ThingsDB code that called the module, where
/// `try()` and `.else()` see its code and message.
///
/// A node accepts only codes in `-127..=-50` and messages up to 16383
/// bytes (see [`thingsdb_protocol::module`]); anything else would be
/// replaced by the node with an error of its own. So [`Error::new`] turns
/// another code into `operation` (-63), naming the original code in the
/// message, and cuts a longer message at a character boundary:
/// [`Error::code`] and [`Error::message`] are exactly what the node gets.
///
/// ```
/// use thingsdb_module::{Error, ErrorCode};
/// let e = Error::lookup("no key `a`");
/// assert_eq!(e.code(), ErrorCode::Lookup);
/// assert_eq!(Error::custom(-100, "busy").code(), ErrorCode::Custom(-100));
/// // -5 is not a code a module may send.
/// let e = Error::new(ErrorCode::RequestTimeout, "slow");
/// assert_eq!(e.code(), ErrorCode::Operation);
/// assert_eq!(e.message(), "slow (error code -5)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    /// An error with `code` and `message`, made acceptable to a node as
    /// the [type documentation](Error) says.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        let code = if is_module_error_code(code) {
            code
        } else {
            message = format!("{message} (error code {})", code.code());
            ErrorCode::Operation
        };
        if message.len() > MAX_ERROR_MSG {
            let mut end = MAX_ERROR_MSG;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Error { code, message }
    }

    /// A custom error, as ThingsDB code raises with `err(code, msg)`;
    /// `code` should be in `-127..=-100` (others become `operation`, see
    /// [`Error::new`]).
    pub fn custom(code: i64, message: impl Into<String>) -> Self {
        Error::new(ErrorCode::from_code(code), message)
    }

    /// `cancelled` (-64): the operation was cancelled before completion
    /// (this crate uses it for timeouts and shutdown).
    pub fn cancelled(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Cancelled, message)
    }

    /// `operation` (-63): not valid in the current state.
    pub fn operation(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Operation, message)
    }

    /// `num_arguments` (-62): wrong number of arguments.
    pub fn num_arguments(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::NumArguments, message)
    }

    /// `type_err` (-61): an argument has the wrong type.
    pub fn type_error(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Type, message)
    }

    /// `value_err` (-60): an argument has a wrong value.
    pub fn value(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Value, message)
    }

    /// `overflow_err` (-59): an integer overflow.
    pub fn overflow(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Overflow, message)
    }

    /// `max_quota_err` (-57): a quota or limit was reached.
    pub fn max_quota(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::MaxQuota, message)
    }

    /// `forbidden_err` (-55): not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Forbidden, message)
    }

    /// `lookup_err` (-54): what was asked for does not exist.
    pub fn lookup(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Lookup, message)
    }

    /// `bad_data_err` (-53): the request's data is malformed (this crate
    /// uses it for a request that does not decode into the handler's type).
    pub fn bad_data(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::BadData, message)
    }

    /// The code the node gets.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message the node gets.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// Why [`Module::run`](crate::Module::run) stopped with an error. Before
/// returning it, the module answered or cancelled the requests in flight
/// as far as its output allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The node's packages could not be read: a bad check byte, or a
    /// length over the module's maximum. The stream cannot be trusted
    /// after that, so the module stops (exit non-zero, and the node
    /// restarts it).
    #[error("unreadable input from the node: {0}")]
    Protocol(#[from] thingsdb_protocol::Error),
    /// Reading the input failed.
    #[error("reading from the node failed: {0}")]
    Input(#[source] std::io::Error),
    /// Writing an answer to the node failed; later answers cannot reach it.
    #[error("writing to the node failed: {0}")]
    Output(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_the_node_refuses_become_operation() {
        for c in [0, -1, -6, -49, -128, 7, i64::MIN] {
            let e = Error::custom(c, "m");
            assert_eq!(e.code(), ErrorCode::Operation, "{c}");
            assert!(e.message().contains(&c.to_string()));
        }
        for c in -127..=-50 {
            assert_eq!(Error::custom(c, "m").code().code(), c);
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let m = "é".repeat(MAX_ERROR_MSG); // two bytes each
        let e = Error::value(m);
        assert!(e.message().len() <= MAX_ERROR_MSG);
        assert!(e.message().len() >= MAX_ERROR_MSG - 1);
        assert!(e.message().chars().all(|c| c == 'é'));
    }
}
