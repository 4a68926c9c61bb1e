//! The command line, as clap sees it. Nothing here leaves the CLI layer.

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use super::exit::UsageError;

/// Keeps a service mesh's secrets in git, encrypted with age.
#[derive(Debug, Parser)]
#[command(name = "meshseal", version, about, long_about = None)]
pub struct Cli {
    /// The store (normally a git repository root).
    #[arg(
        short = 'C',
        long = "repo",
        global = true,
        value_name = "DIR",
        default_value = "."
    )]
    pub repo: PathBuf,
    /// Identity file (repeatable); else $MESHSEAL_IDENTITY, else the config-dir default.
    #[arg(short = 'i', long = "identity", global = true, value_name = "FILE")]
    pub identity: Vec<PathBuf>,
    /// Sign key: an OpenSSH private key, or a public key whose private half
    /// ssh-agent holds; else $MESHSEAL_SIGN_KEY. Writes are signed with it.
    #[arg(short = 'S', long = "sign-key", global = true, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Trust root: the admins' allowed_signers file, outside the repository;
    /// else $MESHSEAL_TRUST, else <config dir>/meshseal/trust.txt.
    #[arg(long = "trust", global = true, value_name = "FILE")]
    pub trust: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// YAML (Kuma's shape).
    Yaml,
    /// JSON (Kuma's shape).
    Json,
    /// The decoded secret bytes (get secret only).
    Raw,
}

impl Output {
    fn name(self) -> &'static str {
        match self {
            Output::Table => "table",
            Output::Yaml => "yaml",
            Output::Json => "json",
            Output::Raw => "raw",
        }
    }

    /// The format of a listing: never raw data.
    pub fn listing(self) -> Result<ListFormat, UsageError> {
        match self {
            Output::Table => Ok(ListFormat::Table),
            Output::Yaml => Ok(ListFormat::Yaml),
            Output::Json => Ok(ListFormat::Json),
            Output::Raw => Err(UsageError::RawListing),
        }
    }

    /// The format of `check`'s report.
    pub fn check(self) -> Result<CheckFormat, UsageError> {
        match self {
            Output::Table => Ok(CheckFormat::Table),
            Output::Json => Ok(CheckFormat::Json),
            other => Err(UsageError::CheckOutput(other.name())),
        }
    }
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// Aligned columns.
    Table,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// How `check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFormat {
    /// Problem lines and a summary.
    Table,
    /// One JSON object per problem.
    Json,
}

/// `-m MESH` or `--global`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ScopeArgs {
    /// The mesh.
    #[arg(short = 'm', long = "mesh")]
    pub mesh: Option<String>,
    /// The global scope.
    #[arg(long = "global")]
    pub global: bool,
}

/// Where a new secret's value comes from.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ValueSource {
    /// The value itself (visible in shell history and `ps`; prefer a file or stdin).
    /// Unlike kubectl's KEY=VALUE, the whole text is the value: a secret holds one.
    #[arg(long = "from-literal", value_name = "VALUE")]
    pub literal: Option<String>,
    /// Read the value from a file.
    #[arg(long = "from-file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Read the value from standard input.
    #[arg(long = "from-stdin")]
    pub stdin: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new store here (meshseal.toml, recipients files, .gitattributes).
    Init {
        /// A recipient for the global and default scopes (repeatable); defaults to
        /// the public keys of your identities.
        #[arg(long = "recipient", value_name = "KEY")]
        recipients: Vec<String>,
    },
    /// Generate a new X25519 identity (mode 0600) and print its public key.
    Keygen {
        /// Where to write it (default: the config-dir default identity).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Manage who can read a scope's secrets.
    #[command(subcommand)]
    Recipients(RecipientsCommand),
    /// Who may sign a scope's secrets: writers.txt, signed by an admin (-S).
    #[command(subcommand)]
    Writers(WritersCommand),
    /// Sign what exists with -S: secrets where it is a writer, scope files where it is an admin.
    Sign {
        /// The mesh.
        #[arg(short = 'm', long = "mesh", conflicts_with_all = ["global", "all"])]
        mesh: Option<String>,
        /// The global scope.
        #[arg(long = "global", conflicts_with = "all")]
        global: bool,
        /// Every scope.
        #[arg(long = "all")]
        all: bool,
    },
    /// Create a secret (fails if it exists).
    #[command(subcommand)]
    Create(CreateCommand),
    /// Create or update secrets, Meshes and policies from Kuma YAML (Universal or Kubernetes form).
    Apply {
        /// The file, or - for standard input.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: String,
        /// Validate and print what would change; write nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Show secrets (listings never show data).
    #[command(subcommand)]
    Get(GetCommand),
    /// Delete a secret.
    #[command(subcommand)]
    Delete(DeleteCommand),
    /// Print secrets, Meshes and policies as YAML for kumactl apply or kubectl apply.
    #[command(group(
        clap::ArgGroup::new("format")
            .multiple(false)
            .args(["kuma", "kubernetes"])
    ))]
    Export {
        /// Kuma Universal YAML.
        #[arg(long = "kuma")]
        kuma: bool,
        /// Kubernetes YAML: Secrets of Kuma's secret types and Kuma's CRDs.
        #[arg(long = "kubernetes")]
        kubernetes: bool,
        /// The mesh (default: default).
        #[arg(short = 'm', long = "mesh", conflicts_with_all = ["all", "global"])]
        mesh: Option<String>,
        /// Every mesh and the global secrets (as `get secrets -A`).
        #[arg(short = 'A', long = "all-meshes", visible_alias = "all")]
        all: bool,
        /// Global secrets only.
        #[arg(long = "global", conflicts_with = "all")]
        global: bool,
        /// Namespace of Kubernetes Secrets (a DNS-1123 label).
        #[arg(
            long = "namespace",
            default_value = meshseal::kuma::DEFAULT_NAMESPACE,
            value_parser = dns1123_label
        )]
        namespace: String,
    },
    /// Re-encrypt secrets to their scope's current recipients (stale ones only unless --force).
    Rekey {
        /// The mesh.
        #[arg(short = 'm', long = "mesh", conflicts_with_all = ["global", "all"])]
        mesh: Option<String>,
        /// The global scope.
        #[arg(long = "global", conflicts_with = "all")]
        global: bool,
        /// Every scope.
        #[arg(long = "all")]
        all: bool,
        /// Rewrite every selected file, stale or not.
        #[arg(long = "force")]
        force: bool,
        /// Re-encrypt even though recipients.txt gained keys since the secrets were written.
        #[arg(long = "yes")]
        yes: bool,
    },
    /// Validate the store: structure, metadata, staleness; with a key, contents too.
    Check {
        /// Only report problems under these paths.
        paths: Vec<PathBuf>,
        /// table or json.
        #[arg(
            short = 'o',
            long = "output",
            default_value = "table",
            value_parser = clap::builder::PossibleValuesParser::new(["table", "json"])
                .map(|v| Output::from_str(&v, false).expect("a possible value"))
        )]
        output: Output,
        /// Check without decrypting even when an identity is available.
        #[arg(long = "no-decrypt")]
        no_decrypt: bool,
        /// Check what the git index holds (the next commit), not the work tree.
        #[arg(long = "staged", conflicts_with = "paths")]
        staged: bool,
        /// Warn about certificates in referenced secrets that expire within DAYS (needs an identity).
        #[arg(long = "expiry-warning", value_name = "DAYS", default_value_t = meshseal::certs::DEFAULT_WARN_DAYS)]
        expiry_warning: u64,
    },
    /// Change a secret's value in $VISUAL/$EDITOR (plaintext only in a private RAM-backed folder).
    #[command(subcommand)]
    Edit(EditCommand),
    /// Mesh mTLS certificate authorities.
    #[command(subcommand)]
    Mtls(MtlsCommand),
    /// Git integration.
    #[command(subcommand)]
    Hook(HookCommand),
    /// Show a secret file for `git diff` (data redacted unless --reveal).
    Textconv {
        /// The file git hands over.
        file: PathBuf,
        /// Show the data too.
        #[arg(long = "reveal")]
        reveal: bool,
    },
    /// Load the store into memory, follow its changes and serve it read-only.
    Watch(WatchArgs),
    /// Make API tokens for the watcher.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `writers` subcommands.
#[derive(Debug, Subcommand)]
pub enum WritersCommand {
    /// Add a writer (re-signs writers.txt with the admin key -S).
    Add {
        /// The scope.
        #[command(flatten)]
        scope: ScopeArgs,
        /// Who (e.g. alice@example.com).
        principal: String,
        /// The writer's public key, or a .pub file (default: the public half of -S).
        key: Option<String>,
    },
    /// Remove every key of a writer (re-signs writers.txt; names what to re-sign).
    Remove {
        /// The scope.
        #[command(flatten)]
        scope: ScopeArgs,
        /// Who.
        principal: String,
    },
    /// List a scope's writers.
    List {
        /// The scope.
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

/// `recipients` subcommands.
#[derive(Debug, Subcommand)]
pub enum RecipientsCommand {
    /// Add public keys to a scope's recipients.
    Add {
        /// The scope.
        #[command(flatten)]
        scope: ScopeArgs,
        /// age1… or ssh-ed25519/ssh-rsa public keys.
        #[arg(required_unless_present = "own")]
        keys: Vec<String>,
        /// The public key of my own identity (-i, $MESHSEAL_IDENTITY or the default).
        #[arg(long = "self")]
        own: bool,
    },
    /// Remove a public key from a scope's recipients.
    Remove {
        /// The scope.
        #[command(flatten)]
        scope: ScopeArgs,
        /// The key to remove.
        #[arg(required = true)]
        keys: Vec<String>,
        /// Remove even the last key of the scope (nobody could then add a secret to it).
        #[arg(long = "force")]
        force: bool,
    },
    /// List a scope's recipients and their fingerprint.
    List {
        /// The scope.
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

/// `create` subcommands.
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// A mesh-scoped Secret.
    Secret {
        /// The secret's name.
        name: String,
        /// The mesh.
        #[arg(short = 'm', long = "mesh", default_value = meshseal::scope::DEFAULT_MESH)]
        mesh: String,
        /// The value.
        #[command(flatten)]
        value: ValueSource,
    },
    /// A GlobalSecret.
    GlobalSecret {
        /// The secret's name.
        name: String,
        /// The value.
        #[command(flatten)]
        value: ValueSource,
    },
}

/// `get` subcommands.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List a mesh's secrets: MESH NAME BYTES FINGERPRINT.
    Secrets {
        /// The mesh.
        #[arg(short = 'm', long = "mesh", default_value = meshseal::scope::DEFAULT_MESH)]
        mesh: String,
        /// Every mesh.
        #[arg(short = 'A', long = "all-meshes", visible_alias = "all")]
        all: bool,
        /// table, yaml or json.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
    /// Show one secret (data with -o yaml|json|raw).
    Secret {
        /// The name.
        name: String,
        /// The mesh.
        #[arg(short = 'm', long = "mesh", default_value = meshseal::scope::DEFAULT_MESH)]
        mesh: String,
        /// table, yaml, json or raw.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
    /// List global secrets: NAME BYTES FINGERPRINT.
    GlobalSecrets {
        /// table, yaml or json.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
    /// Show one global secret.
    GlobalSecret {
        /// The name.
        name: String,
        /// table, yaml, json or raw.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
}

/// `token create` names a scope: `--admin` or `-m MESH` (clap's text for a
/// missing one would name only `--admin`).
pub fn token_scope(cmd: &TokenCommand) -> Result<(), UsageError> {
    match cmd {
        TokenCommand::Create {
            admin: false,
            mesh: None,
            ..
        } => Err(UsageError::TokenScope),
        TokenCommand::Create { .. } => Ok(()),
    }
}

/// `export`'s format: Kubernetes (true) or Kuma Universal (false). clap's
/// own text for a missing group (`<--kuma|--kubernetes>`) reads as if both
/// were needed; this says one of them.
pub fn export_format(kuma: bool, kubernetes: bool) -> Result<bool, UsageError> {
    match (kuma, kubernetes) {
        (false, false) => Err(UsageError::ExportFormat),
        (_, kubernetes) => Ok(kubernetes),
    }
}

/// Kubernetes' rule for a namespace name (an RFC 1123 label), with its text.
fn dns1123_label(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(value.to_string())
    } else if value.len() > 63 {
        Err("must be no more than 63 characters".to_string())
    } else {
        Err(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
             or '-', and must start and end with an alphanumeric character (e.g. 'my-name', \
             or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                .to_string(),
        )
    }
}

/// What `get` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// One mesh's secrets.
    Mesh(String),
    /// Every mesh's secrets.
    AllMeshes,
    /// The global secrets.
    Global,
}

/// A `get` whose output format suits it.
#[derive(Debug)]
pub enum GetRequest {
    /// One secret; `mesh` is `None` for a global secret.
    One {
        /// The name.
        name: String,
        /// The mesh.
        mesh: Option<String>,
        /// Any format.
        output: Output,
    },
    /// A listing.
    List {
        /// Which secrets.
        listed: Listed,
        /// Never raw.
        format: ListFormat,
    },
}

impl TryFrom<GetCommand> for GetRequest {
    type Error = UsageError;

    fn try_from(cmd: GetCommand) -> Result<GetRequest, UsageError> {
        Ok(match cmd {
            GetCommand::Secret { name, mesh, output } => GetRequest::One {
                name,
                mesh: Some(mesh),
                output,
            },
            GetCommand::GlobalSecret { name, output } => GetRequest::One {
                name,
                mesh: None,
                output,
            },
            GetCommand::Secrets { mesh, all, output } => GetRequest::List {
                listed: if all {
                    Listed::AllMeshes
                } else {
                    Listed::Mesh(mesh)
                },
                format: output.listing()?,
            },
            GetCommand::GlobalSecrets { output } => GetRequest::List {
                listed: Listed::Global,
                format: output.listing()?,
            },
        })
    }
}

/// `delete` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete a mesh-scoped Secret (refused while a policy uses it).
    Secret {
        /// The name.
        name: String,
        /// The mesh.
        #[arg(short = 'm', long = "mesh", default_value = meshseal::scope::DEFAULT_MESH)]
        mesh: String,
        /// Delete even if policies reference it.
        #[arg(long = "force")]
        force: bool,
    },
    /// Delete a GlobalSecret.
    GlobalSecret {
        /// The name.
        name: String,
    },
}

/// `edit` subcommands.
#[derive(Debug, Subcommand)]
pub enum EditCommand {
    /// Edit a mesh-scoped Secret.
    Secret {
        /// The name.
        name: String,
        /// The mesh.
        #[arg(short = 'm', long = "mesh", default_value = meshseal::scope::DEFAULT_MESH)]
        mesh: String,
    },
    /// Edit a GlobalSecret.
    GlobalSecret {
        /// The name.
        name: String,
    },
}

/// `hook` subcommands.
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Install the pre-commit hook and the git diff driver, and register
    /// this store with the repository (a monorepo may hold several).
    Install {
        /// Replace a pre-commit hook that meshseal did not write.
        #[arg(long = "force")]
        force: bool,
    },
    /// What the pre-commit hook runs: `check --staged` for every registered
    /// store the commit touches; a commit that touches none passes.
    Run,
}

/// `mtls` subcommands.
#[derive(Debug, Subcommand)]
pub enum MtlsCommand {
    /// Create the CA secrets of every builtin backend of a mesh that lacks them.
    Init {
        /// The mesh.
        #[arg(short = 'm', long = "mesh", default_value = meshseal::scope::DEFAULT_MESH)]
        mesh: String,
    },
}

mod watch;

pub use watch::{LogFormat, TokenCommand, WatchArgs};

#[cfg(test)]
mod tests;
