//! The command-line front end: turns flags into library calls and prints the
//! results. All logic lives in the library.

mod args;
mod output;
mod watch;

use output::say;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use clap::Parser;
use serde_json::json;
use zeroize::Zeroizing;

use meshseal::check::{self, CheckOptions};
use meshseal::document::{check_data, Document, SecretData};
use meshseal::edit;
use meshseal::git;
use meshseal::identity::{self, Identities, IdentityError, IDENTITY_ENV};
use meshseal::init;
use meshseal::kuma;
use meshseal::problem::Problem;
use meshseal::recipients::{self, Recipient};
use meshseal::rekey;
use meshseal::scope::{Scope, SecretId};
use meshseal::store::{short_sha, Store, WriteOutcome};

use args::{
    Cli, Command, CreateCommand, DeleteCommand, EditCommand, GetCommand, HookCommand, MtlsCommand,
    Output, RecipientsCommand,
};

/// Runs the CLI; the exit code is 0 on success, 1 on failure, 2 on usage errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(p) => {
            output::problem(&p);
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Problem>;

struct Context {
    repo: PathBuf,
    identity_paths: Vec<PathBuf>,
}

impl Context {
    fn store(&self) -> Result<Store> {
        Store::open(&self.repo)
    }

    /// The identity files to use: -i, else $MESHSEAL_IDENTITY, else the
    /// default file if it exists.
    fn identity_files(&self) -> Vec<PathBuf> {
        if !self.identity_paths.is_empty() {
            return self.identity_paths.clone();
        }
        if let Some(env) = std::env::var_os(IDENTITY_ENV).filter(|v| !v.is_empty()) {
            return vec![PathBuf::from(env)];
        }
        identity::default_path()
            .filter(|p| p.exists())
            .into_iter()
            .collect()
    }

    fn identities(&self) -> Result<Identities> {
        self.optional_identities()?.ok_or_else(|| {
            Problem::general(&IdentityError::NoneConfigured {
                default: identity::default_path(),
            })
        })
    }

    fn optional_identities(&self) -> Result<Option<Identities>> {
        let files = self.identity_files();
        if files.is_empty() {
            return Ok(None);
        }
        Identities::load(&files)
            .map(Some)
            .map_err(|(path, e)| Problem::at(path, &e))
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Context {
        repo: cli.repo,
        identity_paths: cli.identity,
    };
    match cli.command {
        Command::Init { recipients } => cmd_init(&ctx, &recipients),
        Command::Keygen { output } => cmd_keygen(output),
        Command::Recipients(cmd) => cmd_recipients(&ctx, cmd),
        Command::Create(cmd) => cmd_create(&ctx, cmd),
        Command::Apply { file } => cmd_apply(&ctx, &file),
        Command::Get(cmd) => cmd_get(&ctx, cmd),
        Command::Delete(cmd) => cmd_delete(&ctx, cmd),
        Command::Export {
            kubernetes,
            mesh,
            all,
            global,
            namespace,
            ..
        } => cmd_export(&ctx, kubernetes, mesh, all, global, &namespace),
        Command::Rekey {
            mesh,
            global,
            all,
            force,
        } => cmd_rekey(&ctx, mesh, global, all, force),
        Command::Check {
            paths,
            output,
            no_decrypt,
            staged,
        } => cmd_check(&ctx, &paths, output, no_decrypt, staged),
        Command::Edit(cmd) => cmd_edit(&ctx, cmd),
        Command::Mtls(MtlsCommand::Init { mesh }) => cmd_mtls_init(&ctx, &mesh),
        Command::Hook(HookCommand::Install { force }) => cmd_hook_install(&ctx, force),
        Command::Textconv { file, reveal } => cmd_textconv(&ctx, &file, reveal),
        Command::Watch(args) => watch::cmd_watch(&ctx, args),
        Command::Token(cmd) => watch::cmd_token(cmd),
    }
}

fn mesh_scope(mesh: &str) -> Result<Scope> {
    Scope::mesh(mesh).map_err(|e| Problem::general(&e))
}

fn secret_id(scope: Scope, name: &str) -> Result<SecretId> {
    SecretId::new(scope, name).map_err(|e| Problem::general(&e))
}

fn scope_of(args: &args::ScopeArgs) -> Result<Scope> {
    match &args.mesh {
        Some(m) => mesh_scope(m),
        None => Ok(Scope::Global),
    }
}

fn parse_keys(keys: &[String]) -> Result<Vec<Recipient>> {
    keys.iter()
        .map(|k| Recipient::from_str(k).map_err(|e| Problem::general(&e)))
        .collect()
}

fn cmd_init(ctx: &Context, keys: &[String]) -> Result<ExitCode> {
    let mut recipients = parse_keys(keys)?;
    if recipients.is_empty() {
        if let Some(ids) = ctx.optional_identities()? {
            recipients.extend(ids.recipients().iter().cloned());
        }
    }
    let (_, report) = init::init(&ctx.repo, &recipients)?;
    for f in &report.created {
        say!("created {f}");
    }
    if git::is_work_tree(&ctx.repo) {
        let exe = current_exe()?;
        git::set_diff_driver(&ctx.repo, &exe)?;
        say!("configured the git diff driver (git diff shows redacted secrets)");
        match git::install_hook(&ctx.repo, &exe, false) {
            Ok(outcome) => print_hook(&outcome),
            Err(p) => output::problem(&p),
        }
    } else {
        eprintln!("hint: not a git work tree: run `git init` and `meshseal hook install` to get the pre-commit hook and redacted diffs");
    }
    for f in &report.kept {
        say!("kept {f}");
    }
    if recipients.is_empty() {
        eprintln!("hint: no recipients yet: `meshseal keygen`, then `meshseal recipients add --global KEY` and `meshseal recipients add -m default KEY`");
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_keygen(output: Option<PathBuf>) -> Result<ExitCode> {
    let path = output
        .or_else(identity::default_path)
        .ok_or_else(|| Problem::new(None, "no-config-dir", "no config directory; pass -o FILE"))?;
    let (text, public) = identity::generate();
    identity::write_new(&path, &text).map_err(|e| Problem::at(&path, &e))?;
    eprintln!("wrote identity {} (mode 0600)", path.display());
    say!("{public}");
    Ok(ExitCode::SUCCESS)
}

fn cmd_recipients(ctx: &Context, cmd: RecipientsCommand) -> Result<ExitCode> {
    let store = ctx.store()?;
    match cmd {
        RecipientsCommand::List { scope } => {
            let scope = scope_of(&scope)?;
            let set = store.recipients(&scope)?;
            for r in set.iter() {
                say!("{r}");
            }
            eprintln!(
                "# {} recipient(s), fingerprint {}",
                set.len(),
                set.fingerprint()
            );
        }
        RecipientsCommand::Add { scope, keys } => {
            let scope = scope_of(&scope)?;
            let keys = parse_keys(&keys)?;
            let text = store.recipients_text(&scope)?;
            let (text, added) = recipients::add_to_text(&text, &keys)
                .map_err(|e| Problem::at(scope.recipients_path(), &e))?;
            if added > 0 {
                store.write_recipients(&scope, &text)?;
            }
            say!(
                "added {added} recipient(s) to {}",
                scope.recipients_path().display()
            );
            stale_hint(&store, &scope)?;
        }
        RecipientsCommand::Remove { scope, keys } => {
            let scope = scope_of(&scope)?;
            let keys = parse_keys(&keys)?;
            let mut text = store.recipients_text(&scope)?;
            let mut removed = 0;
            for key in &keys {
                let (t, n) = recipients::remove_from_text(&text, key);
                if n == 0 {
                    return Err(Problem::new(
                        Some(scope.recipients_path()),
                        "not-a-recipient",
                        format!("{key} is not a recipient of {scope}"),
                    ));
                }
                text = t;
                removed += n;
            }
            store.write_recipients(&scope, &text)?;
            say!(
                "removed {removed} recipient(s) from {}",
                scope.recipients_path().display()
            );
            let ids = store.secret_ids(Some(&scope))?;
            if !ids.is_empty() {
                eprintln!("warning: the removed key could read these secrets, and still can in git history; rotate their values:");
                for id in &ids {
                    eprintln!("  {}", id.path().display());
                }
            }
            stale_hint(&store, &scope)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stale_hint(store: &Store, scope: &Scope) -> Result<()> {
    // Count what is really stale: adding a key already present, or removing
    // one and re-adding it, changes nothing.
    let stale = rekey::plan(store, &rekey::Selection::Scope(scope.clone()), false)
        .map(|ids| ids.len())
        .unwrap_or(0);
    if stale > 0 {
        eprintln!(
            "hint: {stale} secret(s) of {scope} are now stale: run `meshseal rekey {}`",
            meshseal::store::scope_flag(scope).trim_end()
        );
    }
    Ok(())
}

fn read_value(store: &Store, source: &args::ValueSource) -> Result<SecretData> {
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

fn read_limited(reader: impl Read, limit: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    reader.take(limit as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

fn io_problem(path: &Path, e: io::Error) -> Problem {
    Problem::new(Some(path.to_path_buf()), "io", e.to_string())
}

fn cmd_create(ctx: &Context, cmd: CreateCommand) -> Result<ExitCode> {
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

fn describe(id: &SecretId) -> String {
    match &id.scope {
        Scope::Global => format!("GlobalSecret {}", id.name),
        Scope::Mesh(m) => format!("Secret {m}/{}", id.name),
    }
}

fn cmd_apply(ctx: &Context, file: &str) -> Result<ExitCode> {
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
        .filter_map(|d| store.check_writable(&d.id).err())
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
                output::problem(&p);
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

struct Row {
    id: SecretId,
    bytes: Option<usize>,
    fingerprint: String,
}

/// Lists secrets without data. With an identity each is decrypted (sizes are
/// shown and broken files reported); without one, headers are read.
fn list(ctx: &Context, store: &Store, ids: &[SecretId]) -> Result<(Vec<Row>, Vec<Problem>)> {
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
                    Err(p) => problems.push(p),
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
                    Err(p) => problems.push(p),
                }
            }
        }
    }
    Ok((rows, problems))
}

fn print_list(rows: &[Row], output: Output, global: bool) -> Result<()> {
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

fn print_value(v: &serde_json::Value, output: Output) {
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

fn cmd_get(ctx: &Context, cmd: GetCommand) -> Result<ExitCode> {
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

fn get_one(ctx: &Context, store: &Store, id: SecretId, output: Output) -> Result<ExitCode> {
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

fn cmd_delete(ctx: &Context, cmd: DeleteCommand) -> Result<ExitCode> {
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

fn cmd_export(
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
            Err(p) => problems.push(p),
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

fn cmd_rekey(
    ctx: &Context,
    mesh: Option<String>,
    global: bool,
    all: bool,
    force: bool,
) -> Result<ExitCode> {
    let store = ctx.store()?;
    let selection = if all {
        rekey::Selection::All
    } else if global {
        rekey::Selection::Scope(Scope::Global)
    } else {
        let mesh = mesh.unwrap_or_else(|| meshseal::scope::DEFAULT_MESH.to_string());
        rekey::Selection::Scope(mesh_scope(&mesh)?)
    };
    let ids = match rekey::plan(&store, &selection, force) {
        Ok(ids) => ids,
        Err(ps) => {
            output::problems(&ps);
            return Ok(ExitCode::FAILURE);
        }
    };
    if ids.is_empty() {
        say!("nothing to rekey: every selected secret is encrypted to its current recipients");
        return Ok(ExitCode::SUCCESS);
    }
    let identities = ctx.identities()?;
    // A bar on a terminal, for stores large enough to wait on.
    let bar = if ids.len() >= 200 {
        indicatif::ProgressBar::new(2 * ids.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("decrypt, then re-encrypt");
    let result = rekey::rekey_with_progress(&store, &ids, &identities, &|| bar.inc(1));
    bar.finish_and_clear();
    match result {
        Ok(n) => {
            say!("rekeyed {n} secret(s)");
            Ok(ExitCode::SUCCESS)
        }
        Err(rekey::RekeyFailure::NothingWritten(ps)) => {
            output::problems(&ps);
            eprintln!("nothing was rewritten: every file must decrypt before any is rekeyed");
            Ok(ExitCode::FAILURE)
        }
        Err(rekey::RekeyFailure::Partial(ps)) => {
            output::problems(&ps);
            eprintln!("some files were not rewritten; every file still decrypts; run rekey again");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn cmd_check(
    ctx: &Context,
    paths: &[PathBuf],
    output: Output,
    no_decrypt: bool,
    staged: bool,
) -> Result<ExitCode> {
    let store = ctx.store()?;
    let identities = if no_decrypt {
        None
    } else {
        ctx.optional_identities()?
    };
    let only = paths
        .iter()
        .map(|p| {
            let p = p.strip_prefix("./").unwrap_or(p);
            p.strip_prefix(store.root()).unwrap_or(p).to_path_buf()
        })
        .collect();
    let options = CheckOptions {
        identities: identities.as_ref(),
        only,
    };
    let report = if staged {
        let index = git::Staged::read(store.root())?;
        check::check_source(&store, &index, &options)
    } else {
        check::check(&store, &options)
    };
    match output {
        Output::Json => {
            let text = serde_json::to_string_pretty(&report.problems).expect("problems serialize");
            say!("{text}");
        }
        _ => {
            output::problems(&report.problems);
            let mode = if identities.is_some() {
                format!("{} decrypted", report.decrypted)
            } else {
                "without a key: contents not verified".to_string()
            };
            if report.problems.is_empty() {
                say!("ok: {} secret(s) checked ({mode})", report.secrets);
            } else {
                eprintln!(
                    "{} problem(s) in {} secret(s) checked ({mode})",
                    report.problems.len(),
                    report.secrets
                );
            }
        }
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn current_exe() -> Result<PathBuf> {
    std::env::current_exe()
        .map_err(|e| Problem::new(None, "io", format!("cannot find meshseal's own path: {e}")))
}

fn print_hook(outcome: &git::HookOutcome) {
    match outcome {
        git::HookOutcome::Installed(p) => say!("installed pre-commit hook {}", p.display()),
        git::HookOutcome::Updated(p) => say!("updated pre-commit hook {}", p.display()),
        git::HookOutcome::Replaced(p) => say!("replaced pre-commit hook {}", p.display()),
    }
}

fn cmd_hook_install(ctx: &Context, force: bool) -> Result<ExitCode> {
    let exe = current_exe()?;
    let outcome = git::install_hook(&ctx.repo, &exe, force)?;
    print_hook(&outcome);
    git::set_diff_driver(&ctx.repo, &exe)?;
    say!("configured the git diff driver (git diff shows redacted secrets)");
    Ok(ExitCode::SUCCESS)
}

fn cmd_textconv(ctx: &Context, file: &Path, reveal: bool) -> Result<ExitCode> {
    let limit = Store::with_config(ctx.repo.clone())
        .map(|s| s.config().limits.max_data_bytes)
        .unwrap_or(meshseal::document::DEFAULT_MAX_DATA_BYTES);
    let bytes = read_limited(
        fs::File::open(file).map_err(|e| io_problem(file, e))?,
        limit.saturating_mul(2) + 64 * 1024,
    )
    .map_err(|e| io_problem(file, e))?;
    // A diff must not fail for want of a key: use one only if it loads.
    let identities = ctx.optional_identities().ok().flatten();
    let text = meshseal::textconv::render(&bytes, identities.as_ref(), reveal, limit);
    output::stdout(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

fn cmd_edit(ctx: &Context, cmd: EditCommand) -> Result<ExitCode> {
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

fn cmd_mtls_init(ctx: &Context, mesh: &str) -> Result<ExitCode> {
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
