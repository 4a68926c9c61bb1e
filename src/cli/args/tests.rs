//! The usage rules clap cannot state: -o per command, export and token scopes.
use super::*;

#[test]
fn a_listing_never_prints_raw_data() {
    for (output, format) in [
        (Output::Table, ListFormat::Table),
        (Output::Yaml, ListFormat::Yaml),
        (Output::Json, ListFormat::Json),
    ] {
        assert_eq!(output.listing(), Ok(format));
    }
    assert_eq!(Output::Raw.listing(), Err(UsageError::RawListing));
    for listing in [
        GetCommand::Secrets {
            mesh: "default".into(),
            all: false,
            output: Output::Raw,
        },
        GetCommand::GlobalSecrets {
            output: Output::Raw,
        },
    ] {
        assert!(matches!(
            GetRequest::try_from(listing),
            Err(UsageError::RawListing)
        ));
    }
    let one = GetCommand::GlobalSecret {
        name: "ca".into(),
        output: Output::Raw,
    };
    assert!(matches!(
        GetRequest::try_from(one),
        Ok(GetRequest::One {
            mesh: None,
            output: Output::Raw,
            ..
        })
    ));
}

#[test]
fn check_reports_as_table_or_json_only() {
    assert_eq!(Output::Table.check(), Ok(CheckFormat::Table));
    assert_eq!(Output::Json.check(), Ok(CheckFormat::Json));
    for (output, name) in [(Output::Yaml, "yaml"), (Output::Raw, "raw")] {
        let err = output.check().unwrap_err();
        assert_eq!(err, UsageError::CheckOutput(name));
        assert_eq!(
            err.to_string(),
            format!("-o {name}: check prints table or json")
        );
    }
}

#[test]
fn clap_accepts_what_the_conversions_then_judge() {
    let cli = Cli::try_parse_from(["meshseal", "get", "secrets", "-o", "raw"]).unwrap();
    let Command::Get(cmd) = cli.command else {
        panic!("a get command");
    };
    assert!(GetRequest::try_from(cmd).is_err());
    let cli = Cli::try_parse_from(["meshseal", "apply", "-f", "-", "--dry-run"]).unwrap();
    assert!(matches!(cli.command, Command::Apply { dry_run: true, .. }));
}
