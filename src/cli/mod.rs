//! The command-line front end: turns flags into library calls and prints the
//! results. All logic lives in the library; how the run exits is decided
//! once, at the end of [`main`] (see `exit`).

mod args;
mod error;
mod exit;
mod gitops;
mod keys;
mod output;
mod secrets;
mod watch;
mod writers;

use gitops::{cmd_check, cmd_hook_install, cmd_textconv};
use keys::{cmd_init, cmd_keygen, cmd_recipients, cmd_rekey};
use secrets::{cmd_apply, cmd_create, cmd_delete, cmd_edit, cmd_export, cmd_get, cmd_mtls_init};

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::Parser;

use meshseal::identity::{self, Identities, IdentityError, IDENTITY_ENV};
use meshseal::problem::Problem;
use meshseal::recipients::Recipient;
use meshseal::scope::{Scope, SecretId};
use meshseal::signing::signer::sign_key_path;
use meshseal::signing::{Signer, TrustRoot};
use meshseal::store::{Signing, Store};

use args::{Cli, Command, HookCommand, MtlsCommand};
use exit::{Exit, Failure};

/// Runs the CLI; the exit code is 0 on success, 1 on failure, 2 on usage
/// errors (clap's own, and those found before a command runs).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A killed `edit` leaves its plaintext on /dev/shm: gone at the next run.
    meshseal::edit::sweep_leftovers(&meshseal::edit::private_base());
    let exit = match run(cli) {
        Ok(exit) => exit,
        Err(failure) => {
            let (problem, exit) = failure.report();
            output::problem(&problem);
            exit
        }
    };
    exit.into()
}

/// What a command returns: how it ended, or the one problem that stopped it.
type Result<T> = std::result::Result<T, Problem>;

struct Context {
    repo: PathBuf,
    identity_paths: Vec<PathBuf>,
    sign_key: Option<PathBuf>,
    trust: Option<PathBuf>,
}

impl Context {
    /// The store, for commands that only read it.
    fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.repo)?)
    }

    /// The trust root: --trust, $MESHSEAL_TRUST or the config-dir default.
    fn trust(&self) -> Result<Option<TrustRoot>> {
        Ok(TrustRoot::locate(self.trust.as_deref())?)
    }

    /// The sign key: -S, else $MESHSEAL_SIGN_KEY.
    fn signer(&self) -> Result<Option<Signer>> {
        match sign_key_path(self.sign_key.as_deref()) {
            Some(path) => Ok(Some(Signer::load(&path)?)),
            None => Ok(None),
        }
    }

    /// The store, for commands that write: signed with the sign key, and
    /// refusing untrusted recipients under a trust root (SPEC 9).
    fn writing_store(&self) -> Result<Store> {
        self.open_signing(Signing {
            signer: self.signer()?,
            trust: self.trust()?,
        })
    }

    /// The store, for commands that verify (check, the hook, the watcher).
    fn verifying_store(&self) -> Result<Store> {
        self.open_signing(Signing {
            signer: None,
            trust: self.trust()?,
        })
    }

    fn open_signing(&self, signing: Signing) -> Result<Store> {
        Ok(Store::open(&self.repo)?.with_signing(signing)?)
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
            Problem::from(IdentityError::NoneConfigured {
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

/// Usage errors are judged before a command starts (`?` on a
/// [`exit::UsageError`]); a command's own failure is a [`Problem`].
fn run(cli: Cli) -> std::result::Result<Exit, Failure> {
    let ctx = Context {
        repo: cli.repo,
        identity_paths: cli.identity,
        sign_key: cli.sign_key,
        trust: cli.trust,
    };
    let exit = match cli.command {
        Command::Init { recipients } => cmd_init(&ctx, &recipients),
        Command::Keygen { output } => cmd_keygen(output),
        Command::Recipients(cmd) => cmd_recipients(&ctx, cmd),
        Command::Writers(cmd) => writers::cmd_writers(&ctx, cmd),
        Command::Sign { mesh, global, all } => writers::cmd_sign(&ctx, mesh, global, all),
        Command::Create(cmd) => cmd_create(&ctx, cmd),
        Command::Apply { file, dry_run } => cmd_apply(&ctx, &file, dry_run),
        Command::Get(cmd) => cmd_get(&ctx, cmd.try_into()?),
        Command::Delete(cmd) => cmd_delete(&ctx, cmd),
        Command::Export {
            kuma,
            kubernetes,
            mesh,
            all,
            global,
            namespace,
        } => {
            let kubernetes = args::export_format(kuma, kubernetes)?;
            cmd_export(&ctx, kubernetes, mesh, all, global, &namespace)
        }
        Command::Rekey {
            mesh,
            global,
            all,
            force,
            yes,
        } => cmd_rekey(&ctx, mesh, global, all, force, yes),
        Command::Check {
            paths,
            output,
            no_decrypt,
            staged,
            expiry_warning,
        } => cmd_check(
            &ctx,
            &paths,
            output.check()?,
            no_decrypt,
            staged,
            expiry_warning,
        ),
        Command::Edit(cmd) => cmd_edit(&ctx, cmd),
        Command::Mtls(MtlsCommand::Init { mesh }) => cmd_mtls_init(&ctx, &mesh),
        Command::Hook(HookCommand::Install { force }) => cmd_hook_install(&ctx, force),
        Command::Hook(HookCommand::Run) => gitops::cmd_hook_run(&ctx),
        Command::Textconv { file, reveal } => cmd_textconv(&ctx, &file, reveal),
        Command::Watch(args) => watch::cmd_watch(&ctx, args),
        Command::Token(cmd) => {
            args::token_scope(&cmd)?;
            watch::cmd_token(cmd)
        }
    };
    exit.map_err(Failure::from)
}

fn mesh_scope(mesh: &str) -> Result<Scope> {
    Ok(Scope::mesh(mesh)?)
}

fn secret_id(scope: Scope, name: &str) -> Result<SecretId> {
    Ok(SecretId::new(scope, name)?)
}

fn scope_of(args: &args::ScopeArgs) -> Result<Scope> {
    match &args.mesh {
        Some(m) => mesh_scope(m),
        None => Ok(Scope::Global),
    }
}

fn parse_keys(keys: &[String]) -> Result<Vec<Recipient>> {
    keys.iter().map(|k| Ok(Recipient::from_str(k)?)).collect()
}
