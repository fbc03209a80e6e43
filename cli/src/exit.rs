//! Exit codes, documented in `safeship --help`: scripts branch on them.

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done, the check passed, the gate let through.
    Ok,
    /// 1: a check failed or a gate refused (e.g. no fresh snapshot).
    Refused,
    /// 2: a usage or configuration error: nothing was called.
    Usage,
    /// 3: an AWS or network error.
    Remote,
}

impl Exit {
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Refused => 1,
            Exit::Usage => 2,
            Exit::Remote => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// The exit for a function's error, by its kind (`Failure::kind`): what the user must fix (the
/// configuration, the policy, the request) is 2; what AWS or the network did is 3.
#[must_use]
pub fn for_kind(kind: &str) -> Exit {
    match kind {
        "Config" | "Policy" | "Event" | "Request" | "UnknownDatabase" | "NoSnapshotPolicy"
        | "NotGuarded" | "Flags" => Exit::Usage,
        _ => Exit::Remote,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_user_fixes_is_2_and_what_aws_did_is_3() {
        assert_eq!(for_kind("Config"), Exit::Usage);
        assert_eq!(for_kind("UnknownDatabase"), Exit::Usage);
        assert_eq!(for_kind("Aws"), Exit::Remote);
        assert_eq!(for_kind("Unexpected"), Exit::Remote);
        assert_eq!(
            [Exit::Ok, Exit::Refused, Exit::Usage, Exit::Remote].map(Exit::code),
            [0, 1, 2, 3]
        );
    }
}
