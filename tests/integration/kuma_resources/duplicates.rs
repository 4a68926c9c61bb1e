//! A resource's name is unique per kind and mesh across the files of its
//! mesh (SPEC 8): Kuma's store holds one resource per type, mesh and name,
//! and refuses a second with `resource already exists: type="T" name="N"
//! mesh="M"` (pkg/core/resources/store/errors.go, ErrorResourceAlreadyExists).
//! `check` reports a second definition in another file, once, naming both
//! files; `apply -f` refuses to leave a resource it applies defined twice.

use super::{check, env, has_all};
use crate::env::run;

/// Kuma docs "MeshTimeout" (a default for every proxy), Universal form.
const TIMEOUT: &str =
    "type: MeshTimeout\nmesh: pay\nname: t\nspec:\n  targetRef:\n    kind: Mesh\n";
/// Kuma docs "MeshRetry", Universal form.
const RETRY: &str = "type: MeshRetry\nmesh: pay\nname: t\nspec:\n  targetRef:\n    kind: Mesh\n";
/// The same MeshTimeout in Kuma's Kubernetes form.
const TIMEOUT_KUBERNETES: &str = "apiVersion: kuma.io/v1alpha1\nkind: MeshTimeout\nmetadata:\n  name: t\n  namespace: kuma-system\n  labels:\n    kuma.io/mesh: pay\nspec:\n  targetRef:\n    kind: Mesh\n";

#[test]
fn check_reports_a_resource_defined_in_two_files_once_naming_both() {
    let e = env();
    e.write(
        "meshes/pay/policies/a.yaml",
        format!("{RETRY}---\n{TIMEOUT}"),
    );
    e.write("meshes/pay/policies/b.yaml", TIMEOUT_KUBERNETES);
    let (ok, err) = check(&e);
    assert!(!ok, "{err}");
    has_all(
        &err,
        &[
            "error: meshes/pay/policies/b.yaml: resource already exists: type=\"MeshTimeout\" name=\"t\" mesh=\"pay\" (also defined in meshes/pay/policies/a.yaml (document 2))",
            "hint: a name is unique per kind and mesh: remove one definition, or rename it",
        ],
    );
    assert_eq!(err.matches("resource already exists").count(), 1, "{err}");
    // A third definition, in TOML: one more problem, about its own file.
    e.write(
        "meshes/pay/policies/c.toml",
        "type = \"MeshTimeout\"\nmesh = \"pay\"\nname = \"t\"\n[spec.targetRef]\nkind = \"Mesh\"\n",
    );
    let (_, err) = check(&e);
    has_all(
        &err,
        &["error: meshes/pay/policies/c.toml: resource already exists: type=\"MeshTimeout\" name=\"t\" mesh=\"pay\" (also defined in meshes/pay/policies/a.yaml (document 2))"],
    );
    assert_eq!(err.matches("resource already exists").count(), 2, "{err}");
    // One definition left: clean (the MeshRetry of the same name is
    // another kind).
    std::fs::remove_file(e.path("meshes/pay/policies/b.yaml")).unwrap();
    std::fs::remove_file(e.path("meshes/pay/policies/c.toml")).unwrap();
    let (ok, err) = check(&e);
    assert!(ok, "{err}");
}

#[test]
fn check_with_staged_files_reports_them_too() {
    let e = env();
    let Some(git) = crate::tools::external_tool("git") else {
        return;
    };
    let git = |args: &[&str]| {
        let out = std::process::Command::new(&git)
            .args(args)
            .current_dir(&e.root)
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    e.write("meshes/pay/policies/a.yaml", TIMEOUT);
    e.write("meshes/pay/policies/b.yaml", TIMEOUT);
    git(&["add", "meshes"]);
    let r = run(e.cmd().args(["check", "--staged"]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    has_all(
        &r.stderr,
        &["meshes/pay/policies/b.yaml: resource already exists: type=\"MeshTimeout\" name=\"t\" mesh=\"pay\" (also defined in meshes/pay/policies/a.yaml)"],
    );
}

#[test]
fn apply_refuses_to_leave_an_applied_resource_defined_twice() {
    let e = env();
    e.write("meshes/pay/policies/a.yaml", TIMEOUT);
    e.write("meshes/pay/policies/b.yaml", TIMEOUT_KUBERNETES);
    let changed = TIMEOUT.replace("kind: Mesh", "kind: Dataplane");
    e.refuses(
        e.kcmd().args(["apply", "-f", "-"]).write_stdin(changed.clone()),
        1,
        &[
            "meshes/pay/policies/b.yaml: resource already exists: type=\"MeshTimeout\" name=\"t\" mesh=\"pay\" (also defined in meshes/pay/policies/a.yaml); apply would leave both",
            "hint: a name is unique per kind and mesh: remove one of the two definitions, then apply again",
        ],
    );
    // The same resource as it is: still two definitions, still refused.
    e.refuses(
        e.kcmd().args(["apply", "-f", "-"]).write_stdin(TIMEOUT),
        1,
        &["resource already exists: type=\"MeshTimeout\""],
    );
    // Another resource of the mesh is not held up by them.
    e.ok(e.kcmd().args(["apply", "-f", "-"]).write_stdin(RETRY));
    // One definition left: the apply updates it.
    std::fs::remove_file(e.path("meshes/pay/policies/b.yaml")).unwrap();
    e.ok(e.kcmd().args(["apply", "-f", "-"]).write_stdin(changed));
    let text = String::from_utf8(e.read("meshes/pay/policies/a.yaml")).unwrap();
    assert!(text.contains("kind: Dataplane"), "{text}");
}
