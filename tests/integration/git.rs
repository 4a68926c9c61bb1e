//! A `TestEnv` whose store is a git repository, for the git workflow's
//! tests: the pre-commit hook, the diff driver, edit and rekey.

use assert_cmd::Command;

use crate::env::{run, Run, TestEnv};

impl TestEnv {
    /// A git repository holding a store made by `meshseal init` with the
    /// store identity (its recipients, meshseal's hook and diff driver).
    pub fn git_repo() -> TestEnv {
        let env = TestEnv::without_store();
        env.git_ok(&["init", "-q", "-b", "main"]);
        env.git_ok(&["config", "user.email", "test@example.com"]);
        env.git_ok(&["config", "user.name", "test"]);
        env.ok_key(&["init"]);
        env
    }

    /// `git` in the store, isolated like `cmd`: without an identity, so the
    /// hook and the diff driver it runs are keyless.
    pub fn git_cmd(&self) -> Command {
        let mut cmd = Command::new("git");
        self.isolate(&mut cmd);
        cmd
    }

    /// Runs git; its outcome.
    pub fn git(&self, args: &[&str]) -> Run {
        run(self.git_cmd().args(args))
    }

    /// Runs git, which must succeed; its stdout.
    #[track_caller]
    pub fn git_ok(&self, args: &[&str]) -> String {
        self.git(args).success().stdout()
    }

    /// Stages everything and commits (the hook runs keyless):
    /// (success, stderr).
    pub fn commit(&self, message: &str) -> (bool, String) {
        self.git_ok(&["add", "-A"]);
        let r = self.git(&["commit", "-q", "-m", message]);
        (r.code == Some(0), r.stderr)
    }
}
