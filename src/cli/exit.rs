//! How a run ends, decided once (ripgrep's `messages.rs`, fd's
//! `exit_codes.rs`): commands say whether they succeeded or failed, a usage
//! error found before a command runs is [`Exit::Usage`], and `main` turns
//! the one [`Exit`] into the process's exit code. clap exits 2 on its own
//! usage errors, so every misuse of the command line exits 2.

use std::process::ExitCode;

use thiserror::Error;

use meshseal::problem::{Diagnostic, Problem};

/// The outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done (0).
    Success,
    /// The operation failed, or `check` found problems (1).
    Failure,
    /// The command line is wrong (2).
    Usage,
}

impl Exit {
    /// Success when nothing went wrong.
    pub fn from_problems<T>(problems: &[T]) -> Exit {
        if problems.is_empty() {
            Exit::Success
        } else {
            Exit::Failure
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        match exit {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Failure => ExitCode::FAILURE,
            Exit::Usage => ExitCode::from(2),
        }
    }
}

/// A command line clap accepts but the command cannot honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UsageError {
    /// `-o raw` on a listing.
    #[error("-o raw prints one secret's data; use it with `get secret NAME`")]
    RawListing,
    /// `check -o` other than table or json.
    #[error("-o {0}: check prints table or json")]
    CheckOutput(&'static str),
    /// `export` without a format.
    #[error("export needs one of --kuma or --kubernetes")]
    ExportFormat,
    /// `token create` without a scope.
    #[error("token create needs one of --admin or -m MESH")]
    TokenScope,
}

impl Diagnostic for UsageError {
    fn code(&self) -> &'static str {
        "usage"
    }

    fn hint(&self) -> Option<String> {
        match self {
            UsageError::ExportFormat => Some(
                "--kuma prints Kuma Universal YAML (kumactl apply -f -), --kubernetes Kubernetes Secrets (kubectl apply -f -)"
                    .to_string(),
            ),
            UsageError::TokenScope => Some(
                "--admin reads everything, global secrets included; -m MESH reads one mesh's secrets"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// Why a run did not succeed: the one problem to print, and how to exit.
#[derive(Debug)]
pub enum Failure {
    /// A usage error: exit 2.
    Usage(UsageError),
    /// The operation failed: exit 1.
    Failed(Problem),
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Failure {
        Failure::Usage(e)
    }
}

impl From<Problem> for Failure {
    fn from(p: Problem) -> Failure {
        Failure::Failed(p)
    }
}

impl Failure {
    /// The problem to print, and the exit that follows.
    pub fn report(self) -> (Problem, Exit) {
        match self {
            Failure::Usage(e) => (Problem::report(&e), Exit::Usage),
            Failure::Failed(p) => (p, Exit::Failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_exit_code() {
        assert_eq!(ExitCode::from(Exit::Success), ExitCode::SUCCESS);
        assert_eq!(ExitCode::from(Exit::Failure), ExitCode::FAILURE);
        assert_eq!(ExitCode::from(Exit::Usage), ExitCode::from(2));
        assert_eq!(Exit::from_problems::<()>(&[]), Exit::Success);
        assert_eq!(Exit::from_problems(&[()]), Exit::Failure);
    }

    #[test]
    fn a_usage_error_exits_2_and_any_other_failure_1() {
        let (problem, exit) = Failure::from(UsageError::RawListing).report();
        assert_eq!((problem.code, exit), ("usage", Exit::Usage));
        assert_eq!(problem.file, None);
        let failed = Problem::report(&UsageError::CheckOutput("yaml"));
        let (_, exit) = Failure::from(failed).report();
        assert_eq!(
            exit,
            Exit::Failure,
            "a Problem is a failure, whatever its code"
        );
    }
}
