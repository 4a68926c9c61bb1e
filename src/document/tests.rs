use super::*;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::scope::NameError;

const LIMIT: usize = DEFAULT_MAX_DATA_BYTES;

fn mesh_id(m: &str, n: &str) -> SecretId {
    SecretId::new(Scope::Mesh(m.into()), n).unwrap()
}

/// The owned strings of a parsed value (those the parser had to copy):
/// their contents, and how many are borrowed from the text.
fn owned_strings(value: &DeValue<'_>, owned: &mut Vec<String>, borrowed: &mut usize) {
    match value {
        DeValue::String(Cow::Owned(s)) => owned.push(s.clone()),
        DeValue::String(Cow::Borrowed(_)) => *borrowed += 1,
        DeValue::Array(items) => items
            .iter()
            .for_each(|v| owned_strings(v.get_ref(), owned, borrowed)),
        DeValue::Table(t) => t
            .iter()
            .for_each(|(_, v)| owned_strings(v.get_ref(), owned, borrowed)),
        _ => {}
    }
}

#[test]
fn wipe_reaches_every_string_the_parse_copied() {
    // Escapes make the parser copy a string; the others are slices of the
    // text, whose owner wipes it.
    let text = "data = \"c2Vj\\u0063mV0\"\nlabels = { a = \"x\\t\", deep = [\"y\\n\", { z = \"w\\\\\" }] }\nn = 1\nplain = \"kept\"\n";
    let mut table = DeTable::parse(text).unwrap().into_inner();
    let (mut before, mut borrowed) = (Vec::new(), 0);
    for (_, v) in table.iter() {
        owned_strings(v.get_ref(), &mut before, &mut borrowed);
    }
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before.iter().all(|s| !s.is_empty()));
    assert_eq!(borrowed, 1, "plain");
    for (_, v) in table.iter_mut() {
        wipe(v.get_mut());
    }
    let (mut after, mut borrowed) = (Vec::new(), 0);
    for (_, v) in table.iter() {
        owned_strings(v.get_ref(), &mut after, &mut borrowed);
    }
    assert_eq!(
        after,
        vec![String::new(); 4],
        "every copy zeroed and emptied"
    );
    assert_eq!(borrowed, 1);
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
