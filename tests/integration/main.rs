//! meshseal's integration tests: one binary, as fd's `tests/integration/`.
//!
//! Every test drives the built `meshseal` binary through one `TestEnv`
//! (`env.rs`): a throwaway store with its own identity and an isolated
//! HOME. The watcher's tests add tokens and a running watcher (`watcher.rs`),
//! the git workflow's a git repository (`git.rs`). Hand-made age files come
//! from `age_files.rs`, store snapshots from `snapshot.rs`, outside tools
//! from `tools.rs`. The CLI's user-facing errors are pinned as snapshot cases
//! in `tests/cmd/` (`cli_snapshots.rs`).

mod age_files;
mod env;
mod git;
mod snapshot;
mod tools;
mod watcher;

mod api_security;
mod bad_input;
mod cli;
mod cli_snapshots;
mod crash;
mod deploy;
mod deploy_gaps;
mod fuzz_corpus;
mod git_workflow;
mod hardening;
mod hostile;
mod interop;
mod kuma_resources;
mod leaks;
mod materialize;
mod policies;
mod readme;
mod rekey_batch;
mod root_swap;
mod sds_envoy;
mod signing_cli;
mod signing_interop;
mod signing_watch;
mod state;
mod watch;
