//! meshseal: a service mesh's secrets kept in git, encrypted with age.
//!
//! Layers, bottom to top (nothing imports from above itself):
//! `problem`, `scope`, `document` → `recipients`, `identity`, `envelope`,
//! `atomic` → `config`, `store` → `kuma`, `check`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod atomic;
pub mod document;
pub mod envelope;
pub mod identity;
pub mod problem;
pub mod recipients;
pub mod scope;
