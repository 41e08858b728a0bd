//! What can go wrong, how it is printed, and the exit status it gives.

use std::fmt;

use thingsdb_client::{Error, ErrorCode};

/// Exit status for a ThingsDB error: the node refused the request.
pub const EXIT_THINGSDB: u8 = 1;
/// Exit status for a usage error or a connection problem.
pub const EXIT_USAGE: u8 = 2;

/// An error that ends a one-shot command (or is printed by the prompt).
#[derive(Debug)]
pub enum CliError {
    /// The command line or its input is wrong.
    Usage(String),
    /// Connecting or authenticating failed.
    Connect {
        /// The target(s) tried, as text.
        targets: String,
        /// Why.
        source: Error,
    },
    /// A request failed after connecting.
    Request(Error),
    /// Reading input or writing output failed.
    Io(String),
    /// `thingsdb status`: the node is not ready (or not reachable).
    Probe(String),
}

impl CliError {
    /// The process exit status for this error: [`EXIT_THINGSDB`] when the
    /// node refused a query or procedure, [`EXIT_USAGE`] otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Request(Error::Thingsdb(_)) | CliError::Probe(_) => EXIT_THINGSDB,
            _ => EXIT_USAGE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Io(m) | CliError::Probe(m) => f.write_str(m),
            CliError::Connect { targets, source } => match source {
                Error::Thingsdb(e) if e.code == ErrorCode::Auth => {
                    write!(f, "authentication failed at {targets}: {e}")
                }
                Error::Thingsdb(e) => write!(f, "{targets} refused the connection: {e}"),
                Error::Transport(m) => write!(f, "cannot connect to {targets}: {m}"),
                other => write!(f, "cannot connect to {targets}: {other}"),
            },
            CliError::Request(e) => fmt_request_error(f, e),
        }
    }
}

/// A request error: ThingsDB errors as `NAME (CODE): MESSAGE`.
fn fmt_request_error(f: &mut fmt::Formatter<'_>, e: &Error) -> fmt::Result {
    match e {
        Error::Thingsdb(t) => write!(f, "{t}"),
        other => write!(f, "{other}"),
    }
}

impl std::error::Error for CliError {}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Request(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingsdb_client::{ThingsdbError, TransportError, TransportErrorKind};

    #[test]
    fn thingsdb_errors_show_name_and_code_and_exit_1() {
        let e = CliError::Request(Error::Thingsdb(ThingsdbError::new(
            ErrorCode::ZeroDiv,
            "division or modulo by zero",
        )));
        assert_eq!(e.to_string(), "zero_div (-58): division or modulo by zero");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn connection_problems_exit_2() {
        let e = CliError::Connect {
            targets: "thingsdb://127.0.0.1:1".into(),
            source: Error::Transport(TransportError::new(
                TransportErrorKind::Refused,
                "connection refused",
            )),
        };
        assert_eq!(
            e.to_string(),
            "cannot connect to thingsdb://127.0.0.1:1: connection refused"
        );
        assert_eq!(e.exit_code(), 2);
        let e = CliError::Connect {
            targets: "x".into(),
            source: Error::Thingsdb(ThingsdbError::new(
                ErrorCode::Auth,
                "invalid username or password",
            )),
        };
        assert_eq!(
            e.to_string(),
            "authentication failed at x: auth (-56): invalid username or password"
        );
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            CliError::Request(Error::ConnectionLost("gone".into())).exit_code(),
            2
        );
        assert_eq!(CliError::Usage("bad".into()).exit_code(), 2);
    }
}
