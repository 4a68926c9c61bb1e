//! meshseal: a service mesh's secrets kept in git, encrypted with age.
//!
//! All logic lives here; the binary only turns flags into calls. Modules
//! follow the domain and depend one way, bottom to top (nothing imports a
//! module from a layer above its own):
//!
//! 1. `problem` (the report shape made from typed errors), `scope` (names,
//!    paths), `atomic` (writes), `confine` (reads that never follow a symlink)
//! 2. `recipients`, `document` (the TOML secret), `config`, `identity`,
//!    `tokens`, `signing` (sshsig signatures, allowed_signers, the trust root)
//! 3. `envelope` (age encryption and header metadata)
//! 4. `store` (walk, read, write a store on disk; one reader per file kind)
//! 5. `policy`, `kuma` (YAML in and out), `init`, `rekey`, `edit`, `textconv`,
//!    `listing`, `apply` (validate everything, then write one batch)
//! 6. `ca` (mTLS CAs), `check`, `git` (the index, hooks, registered stores),
//!    `index` (the in-memory view), `certs` (when served certificates expire)
//! 7. `serve`: the watcher, in one folder (sources, events, the update
//!    thread, tokens following, the HTTP server and API, metrics, materialize)
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod apply;
pub mod atomic;
pub mod ca;
pub mod certs;
pub mod check;
pub mod config;
pub mod confine;
pub mod document;
pub mod edit;
pub mod envelope;
pub mod git;
pub mod identity;
pub mod index;
pub mod init;
pub mod kuma;
pub mod listing;
pub mod policy;
pub mod problem;
pub mod recipients;
pub mod rekey;
pub mod scope;
pub mod serve;
pub mod signing;
pub mod store;
pub mod textconv;
pub mod tokens;
pub mod writers;
