//! `writers add|remove|list` and `sign` (SPEC 9): thin over
//! `meshseal::writers::admin`.

use meshseal::problem::Problem;
use meshseal::scope::Scope;
use meshseal::store::{scope_flag, Store};
use meshseal::writers::admin;

use super::args::WritersCommand;
use super::exit::Exit;
use super::output::say;
use super::{mesh_scope, scope_of, Context, Result};

pub(super) fn cmd_writers(ctx: &Context, cmd: WritersCommand) -> Result<Exit> {
    let store = ctx.writing_store()?;
    match cmd {
        WritersCommand::List { scope } => {
            let scope = scope_of(&scope)?;
            let entries = admin::list(&store, &scope)?;
            for e in &entries {
                say!("{}\t{}", e.principals(), e.fingerprint());
            }
            eprintln!(
                "# {} writer key(s) in {}",
                entries.len(),
                scope.writers_path().display()
            );
        }
        WritersCommand::Add {
            scope,
            principal,
            key,
        } => {
            let scope = scope_of(&scope)?;
            let signer = store
                .signing()
                .signer
                .as_ref()
                .ok_or(admin::AdminError::NoSignKey)?;
            let key = match key {
                Some(k) => admin::parse_key(&k)?,
                None => signer.public_key().clone(),
            };
            let added = admin::add(&store, &scope, &principal, &key)?;
            let file = scope.writers_path();
            if added {
                say!(
                    "added writer {principal} ({}) to {}, signed by {}",
                    key.fingerprint(ssh_key::HashAlg::Sha256),
                    file.display(),
                    signer.fingerprint()
                );
            } else {
                say!("{principal} is already a writer in {}", file.display());
            }
        }
        WritersCommand::Remove { scope, principal } => {
            let scope = scope_of(&scope)?;
            if store.signing().signer.is_none() {
                return Err(admin::AdminError::NoSignKey.into());
            }
            let removed = admin::remove(&store, &scope, &principal)?;
            say!(
                "removed writer {principal} ({} key(s)) from {}",
                removed.keys.len(),
                scope.writers_path().display()
            );
            if !removed.to_resign.is_empty() {
                eprintln!(
                    "warning: {} secret(s) were signed by a removed key; verifiers drop them until a remaining writer re-signs them (`meshseal -S KEY sign {}`):",
                    removed.to_resign.len(),
                    scope_flag(&scope).trim_end()
                );
                for file in &removed.to_resign {
                    eprintln!("  {}", file.display());
                }
            }
        }
    }
    Ok(Exit::Success)
}

pub(super) fn cmd_sign(
    ctx: &Context,
    mesh: Option<String>,
    global: bool,
    all: bool,
) -> Result<Exit> {
    let store = ctx.writing_store()?;
    let scopes = selected_scopes(&store, mesh, global, all)?;
    let report = admin::sign(&store, &scopes)?;
    for file in &report.signed {
        say!("signed {}", file.display());
    }
    for (file, why) in &report.refused {
        eprintln!("error: {}: not signed: {why}", file.display());
    }
    let already = report.already.len();
    eprintln!(
        "{} signed, {already} already signed, {} left alone",
        report.signed.len(),
        report.refused.len()
    );
    Ok(if report.refused.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// `-m M`, `--global`, `--all` (every scope with a folder), or else the
/// default mesh, as kumactl does.
fn selected_scopes(
    store: &Store,
    mesh: Option<String>,
    global: bool,
    all: bool,
) -> Result<Vec<Scope>> {
    if global {
        return Ok(vec![Scope::Global]);
    }
    if !all {
        return Ok(vec![mesh_scope(
            mesh.as_deref().unwrap_or(meshseal::scope::DEFAULT_MESH),
        )?]);
    }
    let mut scopes = Vec::new();
    if store.root().join("global").is_dir() {
        scopes.push(Scope::Global);
    }
    let meshes = store.root().join("meshes");
    if let Ok(read) = std::fs::read_dir(&meshes) {
        let mut names: Vec<String> = read
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            scopes.push(Scope::mesh(&name).map_err(Problem::from)?);
        }
    }
    Ok(scopes)
}
