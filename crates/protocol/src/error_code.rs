//! ThingsDB error codes.

use core::fmt;

/// A ThingsDB error code, as carried in an ERROR package's `error_code`.
///
/// Every code the node defines has its own variant; codes raised by user
/// code (`-127..=-100`) are [`ErrorCode::Custom`]; anything else is kept in
/// [`ErrorCode::Other`] so that no code is ever lost.
///
/// ```
/// use thingsdb_protocol::ErrorCode;
/// assert_eq!(ErrorCode::from_code(-58), ErrorCode::ZeroDiv);
/// assert_eq!(ErrorCode::ZeroDiv.code(), -58);
/// assert_eq!(ErrorCode::ZeroDiv.name(), "zero_div");
/// assert_eq!(ErrorCode::from_code(-100), ErrorCode::Custom(-100));
/// assert_eq!(ErrorCode::from_code(7), ErrorCode::Other(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// -64: the operation was cancelled (for example by a node going away).
    Cancelled,
    /// -63: the operation is not valid in the current state.
    Operation,
    /// -62: wrong number of arguments.
    NumArguments,
    /// -61: wrong type.
    Type,
    /// -60: wrong value.
    Value,
    /// -59: integer overflow.
    Overflow,
    /// -58: division or modulo by zero.
    ZeroDiv,
    /// -57: a quota was reached.
    MaxQuota,
    /// -56: bad credentials, or the connection is not authenticated.
    Auth,
    /// -55: the user lacks the privileges.
    Forbidden,
    /// -54: the requested thing, procedure, room or scope does not exist.
    Lookup,
    /// -53: the request's data is malformed.
    BadData,
    /// -52: a syntax error in the code.
    Syntax,
    /// -51: the node cannot handle the request now.
    Node,
    /// -50: an assertion in the code failed.
    Assert,
    /// -6: the result is larger than the node's `result_size_limit`.
    ResultTooLarge,
    /// -5: the request timed out on the node.
    RequestTimeout,
    /// -4: the request was cancelled on the node.
    RequestCancel,
    /// -3: the node failed to write to a stream.
    WriteUv,
    /// -2: the node ran out of memory.
    Memory,
    /// -1: an internal error in the node.
    Internal,
    /// -127..=-100: raised by user code with `raise(err(code, msg))`.
    Custom(i64),
    /// Any other code, carried through unchanged.
    Other(i64),
}

impl ErrorCode {
    /// The code for a number received from a node.
    pub fn from_code(code: i64) -> ErrorCode {
        use ErrorCode::*;
        match code {
            -64 => Cancelled,
            -63 => Operation,
            -62 => NumArguments,
            -61 => Type,
            -60 => Value,
            -59 => Overflow,
            -58 => ZeroDiv,
            -57 => MaxQuota,
            -56 => Auth,
            -55 => Forbidden,
            -54 => Lookup,
            -53 => BadData,
            -52 => Syntax,
            -51 => Node,
            -50 => Assert,
            -6 => ResultTooLarge,
            -5 => RequestTimeout,
            -4 => RequestCancel,
            -3 => WriteUv,
            -2 => Memory,
            -1 => Internal,
            -127..=-100 => Custom(code),
            _ => Other(code),
        }
    }

    /// The number as the node sends it.
    pub fn code(self) -> i64 {
        use ErrorCode::*;
        match self {
            Cancelled => -64,
            Operation => -63,
            NumArguments => -62,
            Type => -61,
            Value => -60,
            Overflow => -59,
            ZeroDiv => -58,
            MaxQuota => -57,
            Auth => -56,
            Forbidden => -55,
            Lookup => -54,
            BadData => -53,
            Syntax => -52,
            Node => -51,
            Assert => -50,
            ResultTooLarge => -6,
            RequestTimeout => -5,
            RequestCancel => -4,
            WriteUv => -3,
            Memory => -2,
            Internal => -1,
            Custom(c) | Other(c) => c,
        }
    }

    /// The name ThingsDB uses for the code (`zero_div`, `lookup`, ...);
    /// `custom` and `unknown` for the open ranges.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Cancelled => "cancelled",
            Operation => "operation",
            NumArguments => "num_arguments",
            Type => "type",
            Value => "value",
            Overflow => "overflow",
            ZeroDiv => "zero_div",
            MaxQuota => "max_quota",
            Auth => "auth",
            Forbidden => "forbidden",
            Lookup => "lookup",
            BadData => "bad_data",
            Syntax => "syntax",
            Node => "node",
            Assert => "assert",
            ResultTooLarge => "result_too_large",
            RequestTimeout => "request_timeout",
            RequestCancel => "request_cancel",
            WriteUv => "write_uv",
            Memory => "memory",
            Internal => "internal",
            Custom(_) => "custom",
            Other(_) => "unknown",
        }
    }
}

impl From<i64> for ErrorCode {
    fn from(code: i64) -> Self {
        ErrorCode::from_code(code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_roundtrips() {
        for c in -200..=200 {
            assert_eq!(ErrorCode::from_code(c).code(), c);
        }
        assert_eq!(ErrorCode::from_code(i64::MIN).code(), i64::MIN);
    }

    #[test]
    fn named_codes_have_distinct_names() {
        let mut names: alloc::vec::Vec<_> = (-64..=-1)
            .map(ErrorCode::from_code)
            .filter(|c| !matches!(c, ErrorCode::Other(_)))
            .map(ErrorCode::name)
            .collect();
        assert_eq!(names.len(), 21);
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 21);
    }

    #[test]
    fn custom_range_is_exact() {
        assert_eq!(ErrorCode::from_code(-127), ErrorCode::Custom(-127));
        assert_eq!(ErrorCode::from_code(-128), ErrorCode::Other(-128));
        assert_eq!(ErrorCode::from_code(-99), ErrorCode::Other(-99));
    }
}
