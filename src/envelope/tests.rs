use super::*;
use std::str::FromStr;

fn setup() -> (Identities, RecipientSet, Metadata) {
    let key = age::x25519::Identity::generate();
    let recipients = RecipientSet::from_recipients(vec![crate::recipients::Recipient::from_str(
        &key.to_public().to_string(),
    )
    .unwrap()]);
    let ids = Identities::from_age_text(&format!(
        "{}\n",
        age::secrecy::ExposeSecret::expose_secret(&key.to_string())
    ))
    .unwrap();
    let meta = Metadata {
        id: SecretId::new(Scope::Mesh("pay".into()), "db").unwrap(),
        recipients_fingerprint: recipients.fingerprint(),
        store_id: Some("0123456789abcdef".to_string()),
        generation: 7,
    };
    (ids, recipients, meta)
}

#[test]
fn round_trip_with_readable_metadata() {
    let (ids, recipients, meta) = setup();
    let ct = encrypt(b"hello", &recipients, &meta).unwrap();
    assert_eq!(sniff(&ct), Sniff::Armored);
    let header = read_header(&ct).unwrap();
    assert!(header.armored);
    assert_eq!(header.metadata, Some(meta));
    assert_eq!(&decrypt(&ct, &ids, 1024).unwrap()[..], b"hello");
    assert!(matches!(
        decrypt(&ct, &ids, 4),
        Err(EnvelopeError::TooLarge { .. })
    ));
}

#[test]
fn v1_and_v2_stanzas_parse_and_bad_ones_are_refused() {
    let v1 = parse_metadata(&["v1", "global", "g", "0123456789abcdef"]).unwrap();
    assert_eq!((v1.store_id, v1.generation), (None, 0));
    let v2 = parse_metadata(&[
        "v2",
        "0123456789abcdef",
        "mesh:m",
        "n",
        "0123456789abcdef",
        "12",
    ])
    .unwrap();
    assert_eq!(
        (v2.store_id.as_deref(), v2.generation),
        (Some("0123456789abcdef"), 12)
    );
    for generation in ["", "-1", "+1", "01", "1x", "99999999999999999999"] {
        assert!(parse_metadata(&[
            "v2",
            "0123456789abcdef",
            "mesh:m",
            "n",
            "0123456789abcdef",
            generation
        ])
        .is_err());
    }
    assert!(parse_metadata(&["v2", "ab", "mesh:m", "n", "0123456789abcdef", "1"]).is_err());
    assert!(parse_metadata(&["v1", "0123456789abcdef", "mesh:m", "n", "x", "1"]).is_err());
    let e = parse_metadata(&["v3", "global"]).unwrap_err();
    assert!(e.to_string().contains("upgrade meshseal"), "{e}");
}

#[test]
fn open_agrees_with_read_header_then_decrypt() {
    let (ids, recipients, meta) = setup();
    let ct = encrypt(b"hello", &recipients, &meta).unwrap();
    let (header, plaintext) = open(&ct, &ids, 1024).unwrap();
    assert_eq!(header, read_header(&ct).unwrap());
    assert_eq!(&plaintext[..], b"hello");
    // Broken armor takes the two-step path and keeps its errors.
    for cut in [20, ct.len() / 2, ct.len() - 5] {
        let two_step = read_header(&ct[..cut]).and_then(|_| decrypt(&ct[..cut], &ids, 100));
        assert_eq!(
            open(&ct[..cut], &ids, 100).unwrap_err().code(),
            two_step.unwrap_err().code()
        );
    }
    assert!(matches!(
        open(b"password=1", &ids, 100),
        Err(EnvelopeError::NotAge)
    ));
    let (other, _, _) = setup();
    assert!(matches!(
        open(&ct, &other, 100),
        Err(EnvelopeError::NoMatchingKeys)
    ));
    assert!(matches!(
        open(&ct, &ids, 4),
        Err(EnvelopeError::TooLarge { .. })
    ));
    // A header age read answers the decryption's errors in the one pass:
    // a file this key cannot open is not tried a second time.
    assert!(matches!(
        open_once(&ct, &other, 100),
        Some(Err(EnvelopeError::NoMatchingKeys))
    ));
}

#[test]
fn rages_library_ignores_the_metadata_stanza() {
    // rage is a thin CLI over the age crate: its plain decrypt API, with
    // no meshseal code involved, must read meshseal's files.
    let key = age::x25519::Identity::generate();
    let recipients =
        RecipientSet::from_recipients(vec![crate::recipients::Recipient::X25519(key.to_public())]);
    let meta = Metadata {
        id: SecretId::new(Scope::Global, "g").unwrap(),
        recipients_fingerprint: recipients.fingerprint(),
        store_id: None,
        generation: 0,
    };
    let ct = encrypt(b"plain", &recipients, &meta).unwrap();
    let mut dearmored = Vec::new();
    ArmoredReader::new(&ct[..])
        .read_to_end(&mut dearmored)
        .unwrap();
    assert_eq!(age::decrypt(&key, &dearmored).unwrap(), b"plain");
}

#[test]
fn stock_age_files_have_no_metadata() {
    let (ids, recipients, _) = setup();
    let plain = age::encrypt_and_armor(
        match recipients.iter().next().unwrap() {
            crate::recipients::Recipient::X25519(r) => r,
            _ => unreachable!(),
        },
        b"x",
    )
    .unwrap();
    let header = read_header(plain.as_bytes()).unwrap();
    assert_eq!(header.metadata, None);
    assert_eq!(&decrypt(plain.as_bytes(), &ids, 10).unwrap()[..], b"x");
}

#[test]
fn tampering_is_detected() {
    let (ids, recipients, meta) = setup();
    let ct = encrypt(b"hello world", &recipients, &meta).unwrap();
    let text = String::from_utf8(ct.clone()).unwrap();
    // Flip one base64 character inside the armored body.
    let mut bytes = ct.clone();
    let pos = text.find('\n').unwrap() + 10;
    bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
    assert!(decrypt(&bytes, &ids, 100).is_err());
    // Truncate.
    assert!(decrypt(&ct[..ct.len() / 2], &ids, 100).is_err());
    // Plaintext.
    assert!(matches!(
        decrypt(b"password=1", &ids, 100),
        Err(EnvelopeError::NotAge)
    ));
    assert!(matches!(
        read_header(b"password=1"),
        Err(EnvelopeError::NotAge)
    ));
    // Wrong key.
    let (other, _, _) = setup();
    assert!(matches!(
        decrypt(&ct, &other, 100),
        Err(EnvelopeError::NoMatchingKeys)
    ));
}

/// A recipient that adds one meshseal stanza with any arguments.
struct RawStanza(Vec<String>);

impl age::Recipient for RawStanza {
    fn wrap_file_key(
        &self,
        _file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        let stanza = Stanza {
            tag: STANZA_TAG.to_string(),
            args: self.0.clone(),
            body: Vec::new(),
        };
        Ok((vec![stanza], HashSet::new()))
    }
}

#[test]
fn the_one_pass_reads_the_stanzas_the_two_steps_read() {
    let (ids, recipients, meta) = setup();
    let good = vec![
        "v2",
        "0123456789abcdef",
        "mesh:pay",
        "db",
        meta.recipients_fingerprint.as_str(),
        "7",
    ];
    let bad = vec!["v9", "mesh:pay", "db"];
    let cases: [&[&Vec<&str>]; 5] = [&[], &[&good], &[&good, &good], &[&bad], &[&bad, &good]];
    for stanzas in cases {
        let extra: Vec<RawStanza> = stanzas
            .iter()
            .map(|args| RawStanza(args.iter().map(|a| a.to_string()).collect()))
            .collect();
        let all = extra
            .iter()
            .map(|r| r as &dyn age::Recipient)
            .chain(recipients.iter().map(|r| r.as_age()));
        let ct = age::Encryptor::with_recipients(all)
            .unwrap()
            .wrap_output(Vec::new())
            .and_then(|mut w| w.write_all(b"doc").and(w.finish()))
            .unwrap();
        let two_step = read_header(&ct).and_then(|h| Ok((h, decrypt(&ct, &ids, 100)?)));
        match (open(&ct, &ids, 100), two_step) {
            (Ok((h1, p1)), Ok((h2, p2))) => {
                assert_eq!(h1, h2, "{stanzas:?}");
                assert_eq!(&p1[..], &p2[..]);
            }
            (Err(e1), Err(e2)) => assert_eq!(e1.to_string(), e2.to_string(), "{stanzas:?}"),
            (one, two) => panic!("{stanzas:?}: {:?} against {:?}", one.is_ok(), two.is_ok()),
        }
    }
    // An armored file's one pass gives its metadata.
    let one = open(&encrypt(b"doc", &recipients, &meta).unwrap(), &ids, 100).unwrap();
    assert_eq!(one.0.metadata, Some(meta));
}

#[test]
fn a_legacy_encoded_stanza_reads_as_age_reads_it() {
    // A stanza with an empty body and no empty line after it: the body
    // encoding age-crate betas wrote, which age still reads.
    let (ids, recipients, meta) = setup();
    let ct = encrypt(b"doc", &recipients, &meta).unwrap();
    let mut binary = Vec::new();
    ArmoredReader::new(&ct[..])
        .read_to_end(&mut binary)
        .unwrap();
    let line_end = |from: usize| from + binary[from..].iter().position(|&b| b == b'\n').unwrap();
    let stanza = binary
        .windows(11)
        .position(|w| w == b"-> meshseal")
        .unwrap();
    let empty_body = line_end(stanza) + 1;
    assert_eq!(
        binary[empty_body], b'\n',
        "meshseal's stanza has an empty body line"
    );
    // Removing the line breaks the MAC, so only the header is compared.
    let mut legacy = binary.clone();
    legacy.remove(empty_body);
    assert_eq!(read_header(&legacy).unwrap().metadata, Some(meta));
    assert!(
        open(&legacy, &ids, 100).is_err(),
        "the MAC no longer matches"
    );
}
