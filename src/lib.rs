//! meshseal: a service mesh's secrets kept in git, encrypted with age.
//!
//! Layers, bottom to top (nothing imports from above itself):
//! `problem`, `scope`, `document` → `recipients`, `identity`, `envelope`,
//! `atomic` → `config`, `store` → `kuma`, `check`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod atomic;
pub mod ca;
pub mod check;
pub mod config;
pub mod document;
pub mod edit;
pub mod envelope;
pub mod git;
pub mod identity;
pub mod index;
pub mod init;
pub mod kuma;
pub mod materialize;
pub mod policy;
pub mod problem;
pub mod recipients;
pub mod rekey;
pub mod scope;
pub mod store;
pub mod textconv;
pub mod tokens;
pub mod watch;
