use super::*;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::scope::NameError;

const LIMIT: usize = DEFAULT_MAX_DATA_BYTES;

fn mesh_id(m: &str, n: &str) -> SecretId {
    SecretId::new(Scope::Mesh(m.into()), n).unwrap()
}

#[test]
fn wipe_reaches_every_string() {
    let mut v: toml::Value = toml::from_str::<toml::Table>(
        "data = \"c2VjcmV0\"\nlabels = { a = \"x\", deep = [\"y\", { z = \"w\" }] }\nn = 1\n",
    )
    .unwrap()
    .into();
    wipe(&mut v);
    let text = toml::to_string(&v).unwrap();
    for gone in ["c2VjcmV0", "\"x\"", "\"y\"", "\"w\""] {
        assert!(!text.contains(gone), "{gone} in {text}");
    }
    assert!(text.contains("n = 1"), "{text}");
}

#[test]
fn parses_a_mesh_secret() {
    let doc = Document::parse(
        b"type = \"Secret\"\nmesh = \"pay\"\nname = \"db\"\ndata = \"c2VjcmV0\"\n[labels]\nteam = \"core\"\n",
        LIMIT,
    )
    .unwrap();
    assert_eq!(doc.id, mesh_id("pay", "db"));
    assert_eq!(doc.data.expose(), b"secret");
    assert_eq!(doc.labels["team"], "core");
    assert_eq!(doc.bind(&mesh_id("pay", "db")), Ok(()));
    assert!(matches!(
        doc.bind(&mesh_id("other", "db")),
        Err(DocumentError::Mismatch { .. })
    ));
}

#[test]
fn round_trips_through_toml() {
    let mut doc = Document::new(
        SecretId::new(Scope::Global, "ca").unwrap(),
        SecretData::new(vec![0, 1, 2, 255]),
    );
    doc.labels.insert("a".into(), "b".into());
    let text = doc.to_toml();
    assert!(!text.contains("mesh"));
    assert_eq!(Document::parse(text.as_bytes(), LIMIT).unwrap(), doc);
}

#[test]
fn kuma_rules() {
    let parse = |s: &str| Document::parse(s.as_bytes(), LIMIT).unwrap_err();
    assert!(matches!(
        parse("type = \"GlobalSecret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"YQ==\""),
        DocumentError::MeshOnGlobal { line: 2 }
    ));
    assert_eq!(
        parse("type = \"GlobalSecret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"YQ==\"").to_string(),
        "mesh cannot be set on global secret"
    );
    assert!(matches!(
        parse("type = \"Secret\"\nname = \"a\"\ndata = \"YQ==\""),
        DocumentError::MissingMesh
    ));
    assert!(matches!(
        parse("type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"\""),
        DocumentError::EmptyData { line: Some(4) }
    ));
    assert!(matches!(
        parse("type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"!!!\""),
        DocumentError::InvalidBase64 { line: 4 }
    ));
    assert!(matches!(
        parse("type = \"Secret\"\nmesh = \"m\"\nname = \"A\"\ndata = \"YQ==\""),
        DocumentError::Name {
            error: NameError::InvalidName,
            line: Some(3)
        }
    ));
    assert!(matches!(
        parse("type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"YQ==\"\npassword = \"x\""),
        DocumentError::UnknownKey { line: 5, .. }
    ));
    assert!(matches!(
        parse("type = \"Secret\"\ntype = \"Secret\""),
        DocumentError::Syntax { .. }
    ));
    assert!(matches!(
        parse("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
        DocumentError::TooComplex
    ));
    assert!(matches!(
        Document::parse(b"\xff\xfe", LIMIT).unwrap_err(),
        DocumentError::NotUtf8
    ));
}

#[test]
fn size_limit() {
    let data = BASE64.encode(vec![7u8; 11]);
    let text = format!("type = \"GlobalSecret\"\nname = \"a\"\ndata = \"{data}\"");
    assert!(Document::parse(text.as_bytes(), 11).is_ok());
    assert!(matches!(
        Document::parse(text.as_bytes(), 10).unwrap_err(),
        DocumentError::TooLarge {
            size: 11,
            limit: 10
        }
    ));
}

#[test]
fn errors_never_quote_values() {
    for text in [
        "type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = 8675309",
        "type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = 8675309x",
        "type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = \"8675309",
        "type = \"Secret\"\nmesh = \"m\"\nname = \"a\"\ndata = [\"8675309\"]",
    ] {
        let err = Document::parse(text.as_bytes(), LIMIT).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("8675309"), "{err:?}");
    }
}

#[test]
fn debug_redacts() {
    let d = SecretData::new(b"hunter2".to_vec());
    assert!(!format!("{d:?}").contains("hunter2"));
}
