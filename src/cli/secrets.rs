//! Commands that read and write secrets: create, apply, get, delete, export,
//! edit, mtls init.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use zeroize::Zeroizing;

use meshseal::document::{check_data, Document, SecretData};
use meshseal::edit;
use meshseal::kuma;
use meshseal::problem::Problem;
use meshseal::scope::{Scope, SecretId};
use meshseal::store::{short_sha, Store, WriteOutcome};

use super::args::{CreateCommand, DeleteCommand, EditCommand, GetCommand, Output};
use super::output::{self, say};
use super::{describe, io_problem, mesh_scope, secret_id, Context, Result};

pub(super) fn read_value(store: &Store, source: &super::args::ValueSource) -> Result<SecretData> {
    let limit = store.config().limits.max_data_bytes;
    let bytes: Zeroizing<Vec<u8>> = if let Some(v) = &source.literal {
        Zeroizing::new(v.as_bytes().to_vec())
    } else if let Some(path) = &source.file {
        read_limited(
            fs::File::open(path).map_err(|e| io_problem(path, e))?,
            limit,
        )
        .map_err(|e| io_problem(path, e))?
    } else {
        read_limited(io::stdin().lock(), limit).map_err(|e| io_problem(Path::new("<stdin>"), e))?
    };
    check_data(&bytes, limit).map_err(|e| match &source.file {
        Some(path) => Problem::at(path, &e),
        None if source.stdin => Problem::at("<stdin>", &e),
        None => Problem::at("--from-literal", &e),
    })?;
    Ok(SecretData::new(bytes.to_vec()))
}

pub(super) fn read_limited(reader: impl Read, limit: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    reader.take(limit as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

pub(super) fn cmd_create(ctx: &Context, cmd: CreateCommand) -> Result<ExitCode> {
    let store = ctx.store()?;
    let (id, value) = match cmd {
        CreateCommand::Secret { name, mesh, value } => {
            (secret_id(mesh_scope(&mesh)?, &name)?, value)
        }
        CreateCommand::GlobalSecret { name, value } => (secret_id(Scope::Global, &name)?, value),
    };
    if store.exists(&id) {
        return Err(Problem::at(
            id.path(),
            &meshseal::store::StoreError::AlreadyExists(id),
        ));
    }
    let data = read_value(&store, &value)?;
    store.put(&Document::new(id.clone(), data), None)?;
    say!("{} created", describe(&id));
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cmd_apply(ctx: &Context, file: &str) -> Result<ExitCode> {
    let store = ctx.store()?;
    let label = if file == "-" { "<stdin>" } else { file };
    let limit = store.config().max_file_bytes().saturating_mul(4);
    let bytes = if file == "-" {
        read_limited(io::stdin().lock(), limit)
    } else {
        fs::File::open(file).and_then(|f| read_limited(f, limit))
    }
    .map_err(|e| io_problem(Path::new(label), e))?;
    if bytes.len() > limit {
        return Err(Problem::new(
            Some(label.into()),
            "too-large",
            "input is larger than any valid apply",
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Problem::new(
            Some(label.into()),
            "invalid-yaml",
            "input is not UTF-8 text",
        )
    })?;
    let docs = match kuma::parse_apply(text, store.config().limits.max_data_bytes) {
        Ok(d) => d,
        Err(errors) => {
            let ps: Vec<Problem> = errors.iter().map(|e| Problem::at(label, e)).collect();
            output::problems(&ps);
            eprintln!("nothing was applied");
            return Ok(ExitCode::FAILURE);
        }
    };
    // Check every scope's recipients before writing anything.
    let scopes: BTreeSet<&Scope> = docs.iter().map(|d| &d.id.scope).collect();
    for scope in scopes {
        store
            .recipients(scope)?
            .require_some()
            .map_err(|e| Problem::at(scope.recipients_path(), &e))?;
    }
    // Refuse unwritable targets (symlinks) before writing anything.
    let unwritable: Vec<Problem> = docs
        .iter()
        .filter_map(|d| store.check_writable(&d.id).err().map(Problem::from))
        .collect();
    if !unwritable.is_empty() {
        output::problems(&unwritable);
        eprintln!("nothing was applied");
        return Ok(ExitCode::FAILURE);
    }
    let identities = ctx.optional_identities()?;
    let mut failed = false;
    for doc in &docs {
        match store.put(doc, identities.as_ref()) {
            Ok(outcome) => say!(
                "{} {}",
                describe(&doc.id),
                match outcome {
                    WriteOutcome::Created => "created",
                    WriteOutcome::Updated => "configured",
                    WriteOutcome::Unchanged => "unchanged",
                }
            ),
            Err(p) => {
                output::problem(&Problem::from(p));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) struct Row {
    id: SecretId,
    bytes: Option<usize>,
    fingerprint: String,
}

/// Lists secrets without data. With an identity each is decrypted (sizes are
/// shown and broken files reported); without one, headers are read.
pub(super) fn list(
    ctx: &Context,
    store: &Store,
    ids: &[SecretId],
) -> Result<(Vec<Row>, Vec<Problem>)> {
    let identities = ctx.optional_identities()?;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    match &identities {
        Some(idents) => {
            for (id, res) in ids.iter().zip(store.load_many(ids, idents)) {
                match res {
                    Ok(l) => rows.push(Row {
                        id: id.clone(),
                        bytes: Some(l.doc.data.len()),
                        fingerprint: short_sha(&l.file_sha256),
                    }),
                    Err(e) => problems.push(Problem::from(e)),
                }
            }
        }
        None => {
            for id in ids {
                match store.inspect(id) {
                    Ok((header, _)) if header.metadata.as_ref().is_some_and(|m| &m.id != id) => {
                        let found = &header.metadata.as_ref().expect("checked").id;
                        problems.push(Problem::new(
                            Some(id.path()),
                            "scope-mismatch",
                            format!("header metadata says {found} but the path says {id}"),
                        ));
                    }
                    Ok((_, sha)) => rows.push(Row {
                        id: id.clone(),
                        bytes: None,
                        fingerprint: short_sha(&sha),
                    }),
                    Err(e) => problems.push(Problem::from(e)),
                }
            }
        }
    }
    Ok((rows, problems))
}

pub(super) fn print_list(rows: &[Row], output: Output, global: bool) -> Result<()> {
    match output {
        Output::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut c = Vec::new();
                    if !global {
                        c.push(r.id.scope.mesh_name().unwrap_or("").to_string());
                    }
                    c.push(r.id.name.clone());
                    c.push(r.bytes.map_or("-".to_string(), |b| b.to_string()));
                    c.push(r.fingerprint.clone());
                    c
                })
                .collect();
            let headers: &[&str] = if global {
                &["NAME", "BYTES", "FINGERPRINT"]
            } else {
                &["MESH", "NAME", "BYTES", "FINGERPRINT"]
            };
            output::stdout(output::table(headers, &cells).as_bytes());
        }
        Output::Json | Output::Yaml => {
            let items: Vec<_> = rows
                .iter()
                .map(|r| {
                    let mut v = json!({
                        "type": r.id.scope.resource_type(),
                        "name": r.id.name,
                        "fingerprint": r.fingerprint,
                    });
                    if let Some(m) = r.id.scope.mesh_name() {
                        v["mesh"] = json!(m);
                    }
                    if let Some(b) = r.bytes {
                        v["bytes"] = json!(b);
                    }
                    v
                })
                .collect();
            let v = json!({ "total": rows.len(), "items": items, "next": null });
            print_value(&v, output);
        }
        Output::Raw => {
            return Err(Problem::new(
                None,
                "usage",
                "-o raw prints one secret's data; use it with `get secret NAME`",
            ))
        }
    }
    Ok(())
}

pub(super) fn print_value(v: &serde_json::Value, output: Output) {
    let text = Zeroizing::new(match output {
        Output::Yaml => serde_yaml_ng::to_string(v).expect("JSON values serialize"),
        _ => {
            let mut s = serde_json::to_string_pretty(v).expect("JSON values serialize");
            s.push('\n');
            s
        }
    });
    output::stdout(text.as_bytes());
}

pub(super) fn cmd_get(ctx: &Context, cmd: GetCommand) -> Result<ExitCode> {
    let store = ctx.store()?;
    let (ids, output, global) = match cmd {
        GetCommand::Secret { name, mesh, output } => {
            return get_one(ctx, &store, secret_id(mesh_scope(&mesh)?, &name)?, output)
        }
        GetCommand::GlobalSecret { name, output } => {
            return get_one(ctx, &store, secret_id(Scope::Global, &name)?, output)
        }
        GetCommand::Secrets { mesh, all, output } => {
            let ids = if all {
                store
                    .secret_ids(None)?
                    .into_iter()
                    .filter(|id| id.scope != Scope::Global)
                    .collect()
            } else {
                store.secret_ids(Some(&mesh_scope(&mesh)?))?
            };
            (ids, output, false)
        }
        GetCommand::GlobalSecrets { output } => {
            (store.secret_ids(Some(&Scope::Global))?, output, true)
        }
    };
    if output == Output::Raw {
        output::problem(&Problem::new(
            None,
            "usage",
            "-o raw prints one secret's data; use it with `get secret NAME`",
        ));
        return Ok(ExitCode::from(2));
    }
    let (rows, problems) = list(ctx, &store, &ids)?;
    print_list(&rows, output, global)?;
    output::problems(&problems);
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) fn get_one(
    ctx: &Context,
    store: &Store,
    id: SecretId,
    output: Output,
) -> Result<ExitCode> {
    if output == Output::Table {
        let (rows, problems) = list(ctx, store, std::slice::from_ref(&id))?;
        if let Some(p) = problems.into_iter().next() {
            return Err(p);
        }
        print_list(&rows, Output::Table, id.scope == Scope::Global)?;
        return Ok(ExitCode::SUCCESS);
    }
    let identities = ctx.identities()?;
    let loaded = store.load(&id, &identities)?;
    match output {
        Output::Raw => output::stdout(loaded.doc.data.expose()),
        other => print_value(&kuma::to_json(&loaded.doc, true), other),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cmd_delete(ctx: &Context, cmd: DeleteCommand) -> Result<ExitCode> {
    let store = ctx.store()?;
    let (id, force) = match cmd {
        DeleteCommand::Secret { name, mesh, force } => {
            (secret_id(mesh_scope(&mesh)?, &name)?, force)
        }
        DeleteCommand::GlobalSecret { name } => (secret_id(Scope::Global, &name)?, false),
    };
    let users = meshseal::policy::references_to(&store, &id);
    if !users.is_empty() && !force {
        let list: Vec<String> = users
            .iter()
            .map(|(path, field)| format!("{} ({field})", path.display()))
            .collect();
        return Err(Problem::new(
            Some(id.path()),
            "in-use",
            format!("{} is in use by {}", describe(&id), list.join(", ")),
        )
        .with_hint("change those policies first, or delete anyway with --force"));
    }
    store.delete(&id)?;
    say!("{} deleted", describe(&id));
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cmd_export(
    ctx: &Context,
    kubernetes: bool,
    mesh: Option<String>,
    all: bool,
    global: bool,
    namespace: &str,
) -> Result<ExitCode> {
    let store = ctx.store()?;
    let ids = if all {
        store.secret_ids(None)?
    } else if global {
        store.secret_ids(Some(&Scope::Global))?
    } else {
        let mesh = mesh.unwrap_or_else(|| meshseal::scope::DEFAULT_MESH.to_string());
        store.secret_ids(Some(&mesh_scope(&mesh)?))?
    };
    let identities = ctx.identities()?;
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for res in store.load_many(&ids, &identities) {
        match res {
            Ok(l) => docs.push(l.doc),
            Err(e) => problems.push(Problem::from(e)),
        }
    }
    if !problems.is_empty() {
        output::problems(&problems);
        eprintln!("nothing was exported");
        return Ok(ExitCode::FAILURE);
    }
    let refs: Vec<&Document> = docs.iter().collect();
    let text = if kubernetes {
        kuma::export_kubernetes(&refs, namespace)
    } else {
        kuma::export_universal(&refs)
    };
    output::stdout(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cmd_edit(ctx: &Context, cmd: EditCommand) -> Result<ExitCode> {
    let store = ctx.store()?;
    let id = match cmd {
        EditCommand::Secret { name, mesh } => secret_id(mesh_scope(&mesh)?, &name)?,
        EditCommand::GlobalSecret { name } => secret_id(Scope::Global, &name)?,
    };
    let identities = ctx.identities()?;
    let outcome = edit::edit(
        &store,
        &id,
        &identities,
        &edit::editor_from_env(),
        &edit::private_base(),
    )?;
    match outcome {
        edit::EditOutcome::Unchanged => say!("{} unchanged", describe(&id)),
        edit::EditOutcome::Updated => say!("{} edited", describe(&id)),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cmd_mtls_init(ctx: &Context, mesh: &str) -> Result<ExitCode> {
    let store = ctx.store()?;
    let created = meshseal::ca::mtls_init(&store, mesh)?;
    if created.is_empty() {
        say!("nothing to do: every builtin backend of mesh {mesh:?} has its CA secrets");
    }
    for id in &created {
        say!("{} created", describe(id));
    }
    Ok(ExitCode::SUCCESS)
}
