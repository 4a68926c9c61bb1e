//! The listing's parse and comparison, on git's own output format.

use super::*;

const A: &str = "0123456789abcdef0123456789abcdef01234567";
const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn listing(records: &[(&str, &str, &str)]) -> Listing {
    let mut out = Vec::new();
    for (tag, oid, path) in records {
        out.extend(format!("{tag} 100644 {oid} 0\t{path}\0").bytes());
    }
    Listing::parse(&out[..], 0).expect("parses")
}

fn files(paths: &[&str]) -> Changes {
    Changes::Files(paths.iter().map(PathBuf::from).collect())
}

#[test]
fn changed_added_and_deleted_files_are_named_and_nothing_else() {
    let old = Checkout::from(listing(&[
        ("H", A, "meshes/m/secrets/same.age"),
        ("H", A, "meshes/m/secrets/changed.age"),
        ("H", A, "meshes/m/secrets/deleted.age"),
        ("H", A, "global/recipients.txt"),
    ]));
    let new = listing(&[
        ("H", A, "global/recipients.txt"),
        ("H", A, "meshes/m/secrets/added.age"),
        ("H", B, "meshes/m/secrets/changed.age"),
        ("H", A, "meshes/m/secrets/same.age"),
    ]);
    assert_eq!(
        old.changes_to(&new),
        files(&[
            "meshes/m/secrets/added.age",
            "meshes/m/secrets/changed.age",
            "meshes/m/secrets/deleted.age",
        ])
    );
}

#[test]
fn paths_stored_by_their_shared_prefixes_read_back_whole() {
    // Folders of different depths and names sharing more or less with
    // their neighbours: every path must come back exactly.
    let paths: Vec<String> = (0..300)
        .map(|i| match i % 3 {
            0 => format!("global/secrets/g{i:04}.age"),
            1 => format!("meshes/m{}/secrets/s{i}.age", i % 7),
            _ => format!("meshes/m{}/policies/p{i}.toml", i % 5),
        })
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    let old: Vec<(&str, &str, &str)> = sorted.iter().map(|p| ("H", A, p.as_str())).collect();
    let old = listing(&old);
    let mut cursor = old.cursor();
    let mut read = Vec::new();
    while let Some((_, p)) = cursor.current() {
        read.push(String::from_utf8(p.to_vec()).unwrap());
        cursor.advance();
    }
    assert_eq!(read, sorted);
    // One changed, one gone, one new: exactly those.
    let mut new: Vec<(&str, &str, &str)> = sorted
        .iter()
        .filter(|p| p.as_str() != sorted[10])
        .map(|p| ("H", if *p == sorted[200] { B } else { A }, p.as_str()))
        .collect();
    new.push(("H", A, "meshes/m9/secrets/new.age"));
    new.sort_by_key(|r| r.2);
    assert_eq!(
        Checkout::from(old).changes_to(&listing(&new)),
        files(&[&sorted[10], &sorted[200], "meshes/m9/secrets/new.age"])
    );
}

#[test]
fn a_file_a_sparse_checkout_leaves_out_is_not_the_same_file() {
    // `S`: in the commit, not on disk; it appearing on disk is a change.
    let old = Checkout::from(listing(&[("S", A, "meshes/m/secrets/a.age")]));
    let new = listing(&[("H", A, "meshes/m/secrets/a.age")]);
    assert_eq!(old.changes_to(&new), files(&["meshes/m/secrets/a.age"]));
}

#[test]
fn files_touched_since_the_listing_are_read_again() {
    let mut old = Checkout::from(listing(&[("H", A, "meshes/m/secrets/a.age")]));
    old.touch(&[PathBuf::from("meshes/m/secrets/a.age")]);
    let new = listing(&[("H", A, "meshes/m/secrets/a.age")]);
    assert_eq!(old.changes_to(&new), files(&["meshes/m/secrets/a.age"]));
}

#[test]
fn a_new_listing_of_the_same_tree_keeps_what_was_touched_in_it() {
    let mut old = Checkout::from(listing(&[("H", A, "meshes/m/secrets/a.age")]));
    old.touch(&[PathBuf::from("meshes/m/secrets/a.age")]);
    let relisted =
        Checkout::from(listing(&[("H", A, "meshes/m/secrets/a.age")])).keeping_touched(Some(old));
    let next = listing(&[("H", A, "meshes/m/secrets/a.age")]);
    assert_eq!(
        relisted.changes_to(&next),
        files(&["meshes/m/secrets/a.age"])
    );
}

#[test]
fn a_changed_config_asks_for_a_rescan() {
    let old = Checkout::from(listing(&[
        ("H", A, "meshseal.toml"),
        ("H", A, "meshes/m/secrets/a.age"),
    ]));
    let new = listing(&[
        ("H", B, "meshseal.toml"),
        ("H", A, "meshes/m/secrets/a.age"),
    ]);
    assert!(matches!(old.changes_to(&new), Changes::Rescan(_)));
}

#[test]
fn files_outside_the_store_are_not_listed() {
    let l = listing(&[
        ("H", A, "README.md"),
        ("H", A, "meshesX/a"),
        ("H", A, "meshes/m/secrets/a.age"),
    ]);
    assert_eq!(l.len, 1);
}

#[test]
fn an_unsorted_listing_is_sorted_before_it_is_compared() {
    let old = Checkout::from(listing(&[
        ("H", A, "meshes/m/secrets/b.age"),
        ("H", A, "meshes/m/secrets/a.age"),
    ]));
    let new = listing(&[
        ("H", A, "meshes/m/secrets/a.age"),
        ("H", B, "meshes/m/secrets/b.age"),
    ]);
    assert_eq!(old.changes_to(&new), files(&["meshes/m/secrets/b.age"]));
}

#[test]
fn a_tree_git_does_not_track_is_refused() {
    let out = format!("H 100644 {A} 0\tREADME.md\0");
    assert!(matches!(
        Listing::parse(out.as_bytes(), 0),
        Err(WorktreeError::Untracked)
    ));
    assert!(matches!(
        Listing::parse(&b""[..], 0),
        Err(WorktreeError::Untracked)
    ));
}

#[test]
fn a_merge_in_progress_is_refused() {
    let out = format!("M 100644 {A} 2\tmeshes/m/secrets/a.age\0");
    assert!(matches!(
        Listing::parse(out.as_bytes(), 0),
        Err(WorktreeError::Unmerged { .. })
    ));
}

#[test]
fn garbage_is_a_protocol_error() {
    for out in [
        "H 100644\tmeshes/a\0",
        "H 100644 zz 0\tmeshes/a\0",
        "no tab\0",
    ] {
        assert!(
            matches!(
                Listing::parse(out.as_bytes(), 0),
                Err(WorktreeError::Git(GitError::Protocol(_)))
            ),
            "{out:?}"
        );
    }
}
