//! allowed_signers files: parsing, lookups and their refusals.
use super::*;

pub(crate) const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti user@example.com";

pub(crate) fn key() -> PublicKey {
    PublicKey::from_openssh(ED).unwrap()
}

fn t(s: &str) -> u64 {
    line::parse_time("valid-after", s).unwrap()
}

#[test]
fn lookups_follow_ssh_keygen() {
    let text = format!(
        "*@example.com,!mallory@example.com namespaces=\"meshseal\" {ED}\nbob valid-after=\"20250101Z\",valid-before=\"20260101Z\" {ED}\n"
    );
    let signers = AllowedSigners::parse(&text).unwrap();
    let k = key();
    let kd = k.key_data();
    let now = t("20250601Z");
    let ok = signers
        .authorize(kd, Some("alice@example.com"), "meshseal", now)
        .unwrap();
    assert_eq!(ok.entry.line(), 1);
    assert_eq!(ok.principals, ["alice@example.com"]);
    assert_eq!(
        signers.authorize(kd, Some("mallory@example.com"), "meshseal", now),
        Err(Unauthorized::NotForPrincipal {
            principal: "mallory@example.com".into()
        })
    );
    assert_eq!(
        signers.authorize(kd, Some("alice@example.com"), "other", now),
        Err(Unauthorized::NamespaceNotAllowed {
            line: 1,
            namespace: "other".into()
        })
    );
    // Line 2 has no namespaces option: any namespace.
    assert!(signers.authorize(kd, Some("bob"), "other", now).is_ok());
    // valid-after is inclusive; valid-before too (ssh: expired when later).
    assert!(signers
        .authorize(kd, Some("bob"), "x", t("20250101Z"))
        .is_ok());
    assert!(signers
        .authorize(kd, Some("bob"), "x", t("20260101Z"))
        .is_ok());
    assert!(matches!(
        signers.authorize(kd, Some("bob"), "x", t("20241231Z")),
        Err(Unauthorized::NotYetValid { line: 2, .. })
    ));
    assert!(matches!(
        signers.authorize(kd, Some("bob"), "x", t("20260101Z") + 1),
        Err(Unauthorized::Expired { line: 2, .. })
    ));
    // Any principal: the first line that allows it, with its patterns.
    let any = signers.authorize(kd, None, "meshseal", now).unwrap();
    assert_eq!(any.principals, ["*@example.com", "!mallory@example.com"]);
    let other = PublicKey::from_openssh(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDY2bHeJW/a5s2K+Oh8sJJ2ovPZnEjhlxfxBR+oHJSrJ",
    );
    if let Ok(other) = other {
        assert_eq!(
            signers.authorize(other.key_data(), Some("bob"), "x", now),
            Err(Unauthorized::NotListed)
        );
    }
}

#[test]
fn a_plain_key_never_matches_a_cert_authority_line() {
    let signers = AllowedSigners::parse(&format!("* cert-authority {ED}")).unwrap();
    assert_eq!(
        signers.authorize(key().key_data(), Some("a"), "meshseal", 1),
        Err(Unauthorized::NotListed)
    );
}

#[test]
fn render_reads_back_as_the_same_entries() {
    let text = format!(
        "\"ci bot\" cert-authority,namespaces=\"a b,c\",valid-after=\"20250101Z\",valid-before=\"20260101123456Z\" {ED}\n\"#x\" {ED}\nplain  {ED}\n"
    );
    let signers = AllowedSigners::parse(&text).unwrap();
    let again = AllowedSigners::parse(&signers.to_text()).unwrap();
    let strip = |s: &AllowedSigners| {
        s.entries()
            .iter()
            .map(|e| Entry {
                line: 0,
                ..e.clone()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&signers));
    assert!(signers
        .to_text()
        .contains("valid-before=\"20260101123456Z\""));
}
