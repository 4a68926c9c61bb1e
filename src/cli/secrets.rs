//! Commands that read and write secrets: create, apply, get, delete, export,
//! edit, mtls init.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use serde_json::json;
use zeroize::Zeroizing;

use meshseal::apply::{self, Input, Plan};
use meshseal::document::{check_data, Document, SecretData};
use meshseal::edit;
use meshseal::kuma::{self, describe};
use meshseal::listing::{self, Row};
use meshseal::policy;
use meshseal::problem::Problem;
use meshseal::scope::{Scope, SecretId};
use meshseal::store::{Store, StoreError, WriteError, WriteOutcome};

use super::args::{
    CreateCommand, DeleteCommand, EditCommand, GetRequest, ListFormat, Listed, Output, ValueSource,
};
use super::error::CliError;
use super::exit::Exit;
use super::output::{self, say};
use super::{mesh_scope, secret_id, Context, Result};

const STDIN: &str = "<stdin>";

/// BYTES of a listed secret that none of the caller's identities opens.
const LOCKED: &str = "no-key";

pub(super) fn read_value(store: &Store, source: &ValueSource) -> Result<SecretData> {
    let limit = store.config().limits.max_data_bytes;
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CliError::Read { path, source }
    };
    let (bytes, input): (Zeroizing<Vec<u8>>, &Path) = if let Some(v) = &source.literal {
        if looks_like_key_value(v) {
            eprintln!(
                "warning: the --from-literal value looks like kubectl's KEY=VALUE; a meshseal secret holds one value, so it is stored whole, `=` included (pass only the value to store just that)"
            );
        }
        (
            Zeroizing::new(v.as_bytes().to_vec()),
            Path::new("--from-literal"),
        )
    } else if let Some(path) = &source.file {
        let file = fs::File::open(path).map_err(read_error(path))?;
        (read_limited(file, limit).map_err(read_error(path))?, path)
    } else {
        let stdin = Path::new(STDIN);
        (
            read_limited(io::stdin().lock(), limit).map_err(read_error(stdin))?,
            stdin,
        )
    };
    check_data(&bytes, limit).map_err(|source| CliError::Value {
        input: input.to_path_buf(),
        source,
    })?;
    Ok(SecretData::new(bytes.to_vec()))
}

/// kubectl's `--from-literal=KEY=VALUE`: a key of a Secret's data, `=`, a
/// value. A value that merely ends in `=` (base64 padding) is not one.
fn looks_like_key_value(value: &str) -> bool {
    match value.split_once('=') {
        Some((key, rest)) => {
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                && !rest.is_empty()
                && !rest.starts_with('=')
        }
        None => false,
    }
}

pub(super) fn read_limited(reader: impl Read, limit: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    reader.take(limit as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

pub(super) fn cmd_create(ctx: &Context, cmd: CreateCommand) -> Result<Exit> {
    let store = ctx.writing_store()?;
    let (id, value) = match cmd {
        CreateCommand::Secret { name, mesh, value } => {
            (secret_id(mesh_scope(&mesh)?, &name)?, value)
        }
        CreateCommand::GlobalSecret { name, value } => (secret_id(Scope::Global, &name)?, value),
    };
    if store.exists(&id) {
        return Err(Problem::from(WriteError::Refused {
            file: id.path(),
            source: StoreError::AlreadyExists(id),
        }));
    }
    let data = read_value(&store, &value)?;
    store.put(&Document::new(id.clone(), data), None)?;
    say!("{} created", describe(&id));
    Ok(Exit::Success)
}

pub(super) fn cmd_apply(ctx: &Context, file: &str, dry_run: bool) -> Result<Exit> {
    let store = ctx.writing_store()?;
    let input = Path::new(if file == "-" { STDIN } else { file });
    let limit = apply::input_limit(store.config());
    let text = if file == "-" {
        Input::read(io::stdin().lock(), input, limit)?
    } else {
        let reader = fs::File::open(file).map_err(|source| apply::InputError::Read {
            input: input.to_path_buf(),
            source,
        })?;
        Input::read(reader, input, limit)?
    };
    let plan = match Plan::new(&store, text.text()) {
        Ok(plan) => plan,
        Err(e) => {
            output::problems(&e.problems(input));
            // A missing recipients file is its own answer, as it always was.
            if !matches!(e, apply::ApplyError::Recipients(_)) {
                eprintln!("nothing was applied");
            }
            return Ok(Exit::Failure);
        }
    };
    let identities = ctx.optional_identities()?;
    let applied = if dry_run {
        plan.preview_all(&store, identities.as_ref())
    } else {
        plan.write_all(&store, identities.as_ref())?
    };
    let suffix = if dry_run { " (dry run)" } else { "" };
    for a in applied.secrets {
        say!("{} {}{suffix}", describe(&a.id), outcome_word(a.outcome));
    }
    for r in applied.resources {
        say!(
            "{} {} ({}){suffix}",
            r.what,
            outcome_word(r.outcome),
            r.file.display()
        );
    }
    for mesh in plan.meshes_needing_mtls_init(&store) {
        eprintln!(
            "note: mesh {mesh:?} has a builtin CA backend without its CA secrets: run `meshseal mtls init -m {mesh}`"
        );
    }
    Ok(Exit::Success)
}

/// kubectl's words for what a write did.
fn outcome_word(outcome: WriteOutcome) -> &'static str {
    match outcome {
        WriteOutcome::Created => "created",
        WriteOutcome::Updated => "configured",
        WriteOutcome::Unchanged => "unchanged",
    }
}

pub(super) fn print_list(rows: &[Row], format: ListFormat, global: bool) {
    match format {
        ListFormat::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut c = Vec::new();
                    if !global {
                        c.push(r.id.scope.mesh_name().unwrap_or("").to_string());
                    }
                    c.push(r.id.name.clone());
                    c.push(match (r.bytes, r.locked) {
                        (Some(b), _) => b.to_string(),
                        (None, true) => LOCKED.to_string(),
                        (None, false) => "-".to_string(),
                    });
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
        ListFormat::Json | ListFormat::Yaml => {
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
                    if r.locked {
                        v["locked"] = json!(true);
                    }
                    v
                })
                .collect();
            let v = json!({ "total": rows.len(), "items": items, "next": null });
            print_value(&v, format == ListFormat::Yaml);
        }
    }
}

pub(super) fn print_value(v: &serde_json::Value, yaml: bool) {
    let text = Zeroizing::new(if yaml {
        serde_yaml_ng::to_string(v).expect("JSON values serialize")
    } else {
        let mut s = serde_json::to_string_pretty(v).expect("JSON values serialize");
        s.push('\n');
        s
    });
    output::stdout(text.as_bytes());
}

pub(super) fn cmd_get(ctx: &Context, request: GetRequest) -> Result<Exit> {
    let store = ctx.store()?;
    let (ids, format, global) = match request {
        GetRequest::One { name, mesh, output } => {
            let scope = match mesh {
                Some(m) => mesh_scope(&m)?,
                None => Scope::Global,
            };
            return get_one(ctx, &store, secret_id(scope, &name)?, output);
        }
        GetRequest::List { listed, format } => match listed {
            Listed::AllMeshes => {
                let ids = store
                    .secret_ids(None)?
                    .into_iter()
                    .filter(|id| id.scope != Scope::Global)
                    .collect();
                (ids, format, false)
            }
            Listed::Mesh(mesh) => (store.secret_ids(Some(&mesh_scope(&mesh)?))?, format, false),
            Listed::Global => (store.secret_ids(Some(&Scope::Global))?, format, true),
        },
    };
    let identities = ctx.optional_identities()?;
    let (rows, problems) = listing::list(&store, &ids, identities.as_ref());
    print_list(&rows, format, global);
    let locked = rows.iter().filter(|r| r.locked).count();
    if locked > 0 {
        eprintln!(
            "note: your identities open none of {locked} listed secret(s) (BYTES `{LOCKED}`): they are encrypted to other recipients"
        );
    }
    let problems: Vec<Problem> = problems.into_iter().map(Problem::from).collect();
    output::problems(&problems);
    Ok(Exit::from_problems(&problems))
}

pub(super) fn get_one(ctx: &Context, store: &Store, id: SecretId, output: Output) -> Result<Exit> {
    let yaml = match output {
        Output::Table => {
            let identities = ctx.optional_identities()?;
            let (rows, problems) =
                listing::list(store, std::slice::from_ref(&id), identities.as_ref());
            if let Some(e) = problems.into_iter().next() {
                return Err(e.into());
            }
            print_list(&rows, ListFormat::Table, id.scope == Scope::Global);
            return Ok(Exit::Success);
        }
        Output::Raw => None,
        Output::Yaml => Some(true),
        Output::Json => Some(false),
    };
    let identities = ctx.identities()?;
    let loaded = store.load(&id, &identities)?;
    match yaml {
        None => output::stdout(loaded.doc.data.expose()),
        Some(yaml) => print_value(&kuma::to_json(&loaded.doc, true), yaml),
    }
    Ok(Exit::Success)
}

pub(super) fn cmd_delete(ctx: &Context, cmd: DeleteCommand) -> Result<Exit> {
    let store = ctx.writing_store()?;
    let (id, force) = match cmd {
        DeleteCommand::Secret { name, mesh, force } => {
            (secret_id(mesh_scope(&mesh)?, &name)?, force)
        }
        DeleteCommand::GlobalSecret { name } => (secret_id(Scope::Global, &name)?, false),
    };
    if !force {
        policy::ensure_unused(&store, &id)?;
    }
    store.delete(&id)?;
    say!("{} deleted", describe(&id));
    Ok(Exit::Success)
}

pub(super) fn cmd_export(
    ctx: &Context,
    kubernetes: bool,
    mesh: Option<String>,
    all: bool,
    global: bool,
    namespace: &str,
) -> Result<Exit> {
    let store = ctx.store()?;
    let mesh = mesh.unwrap_or_else(|| meshseal::scope::DEFAULT_MESH.to_string());
    let ids = if all {
        store.secret_ids(None)?
    } else if global {
        store.secret_ids(Some(&Scope::Global))?
    } else {
        store.secret_ids(Some(&mesh_scope(&mesh)?))?
    };
    // The Mesh and policy resources of the meshes exported.
    let meshes: Vec<String> = if all {
        policy::mesh_names(&store)
    } else if global {
        Vec::new()
    } else {
        vec![mesh]
    };
    let mut problems = Vec::new();
    let mut resources = Vec::new();
    for m in &meshes {
        for r in policy::load_mesh_resources(&store, m) {
            match r {
                Ok(r) => resources.push(r),
                Err(e) => problems.push(Problem::from(e)),
            }
        }
    }
    let identities = ctx.identities()?;
    let mut docs = Vec::new();
    for res in store.load_many(&ids, &identities) {
        match res {
            Ok(l) => docs.push(l.doc),
            Err(e) => problems.push(Problem::from(e)),
        }
    }
    let export = kuma::Export {
        secrets: docs.iter().collect(),
        resources: resources.iter().collect(),
    };
    let text = if problems.is_empty() {
        match kuma::export_all(&export, kubernetes.then_some(namespace)) {
            Ok(text) => Some(text),
            Err(errors) => {
                problems.extend(errors.iter().map(|e| Problem::report(e)));
                None
            }
        }
    } else {
        None
    };
    let Some(text) = text else {
        output::problems(&problems);
        eprintln!("nothing was exported");
        return Ok(Exit::Failure);
    };
    output::stdout(text.as_bytes());
    Ok(Exit::Success)
}

pub(super) fn cmd_edit(ctx: &Context, cmd: EditCommand) -> Result<Exit> {
    let store = ctx.writing_store()?;
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
    Ok(Exit::Success)
}

pub(super) fn cmd_mtls_init(ctx: &Context, mesh: &str) -> Result<Exit> {
    let store = ctx.writing_store()?;
    let created = meshseal::ca::mtls_init(&store, mesh)?;
    if created.is_empty() {
        say!("nothing to do: every builtin backend of mesh {mesh:?} has its CA secrets");
    }
    for id in &created {
        say!("{} created", describe(id));
    }
    Ok(Exit::Success)
}
