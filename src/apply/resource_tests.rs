//! `apply -f` of Mesh and policy resources: judged with the secrets of the
//! same input, placed (SPEC 8), written, and re-applied without change.
use super::*;

use crate::recipients::Recipient;

fn store() -> (tempfile::TempDir, Store, Identities) {
    let dir = tempfile::tempdir().unwrap();
    let (text, public) = crate::identity::generate();
    let ids = Identities::from_age_text(&text).unwrap();
    let recipient: Recipient = public.parse().unwrap();
    let (store, _) = crate::init::init(dir.path(), &[recipient]).unwrap();
    (dir, store, ids)
}

fn apply(store: &Store, ids: &Identities, text: &str) -> Outcomes {
    let plan =
        Plan::new(store, text).unwrap_or_else(|e| panic!("{:?}", e.problems(Path::new("-"))));
    plan.write_all(store, Some(ids)).unwrap()
}

fn words(o: &Outcomes) -> Vec<(String, WriteOutcome)> {
    o.secrets
        .iter()
        .map(|a| (crate::kuma::describe(&a.id), a.outcome))
        .chain(o.resources.iter().map(|r| (r.what.clone(), r.outcome)))
        .collect()
}

fn messages(err: ApplyError) -> Vec<String> {
    err.problems(Path::new("in.yaml"))
        .into_iter()
        .map(|p| p.message)
        .collect()
}

/// Kuma docs "Mutual TLS / provided CA" and "External Service": the CA's
/// secrets in the same input as the Mesh and the resource that use them.
const EXPORT: &str = r#"
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: provided
      conf:
        cert:
          secret: ca-cert
        key:
          secret: ca-key
---
type: Secret
mesh: default
name: ca-cert
data: Y2VydA==
---
type: Secret
mesh: default
name: ca-key
data: a2V5
---
type: ExternalService
mesh: default
name: httpbin
creationTime: "2025-01-01T00:00:00Z"
networking:
  address: httpbin.org:443
  tls:
    caCert:
      secret: ca-cert
---
apiVersion: kuma.io/v1alpha1
kind: MeshTimeout
metadata:
  name: timeout
  namespace: kuma-system
  uid: 1b2c
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: Mesh
"#;

#[test]
fn resources_go_where_they_belong_and_reapplying_changes_nothing() {
    let (dir, store, ids) = store();
    let first = apply(&store, &ids, EXPORT);
    use WriteOutcome::*;
    assert_eq!(
        words(&first),
        vec![
            ("Secret default/ca-cert".to_string(), Created),
            ("Secret default/ca-key".to_string(), Created),
            ("Mesh default".to_string(), Created),
            ("ExternalService default/httpbin".to_string(), Created),
            ("MeshTimeout default/timeout".to_string(), Created),
        ]
    );
    let files: Vec<_> = first.resources.iter().map(|r| r.file.clone()).collect();
    assert_eq!(
        files,
        [
            "meshes/default/mesh.yaml",
            "meshes/default/policies/httpbin.yaml",
            "meshes/default/policies/timeout.yaml"
        ]
        .map(PathBuf::from)
    );
    let timeout = std::fs::read_to_string(dir.path().join(&files[2])).unwrap();
    assert!(
        timeout.starts_with("apiVersion: kuma.io/v1alpha1\nkind: MeshTimeout\n"),
        "the form given: {timeout}"
    );
    assert!(
        !timeout.contains("uid"),
        "server fields are not the user's: {timeout}"
    );
    let es = std::fs::read_to_string(dir.path().join(&files[1])).unwrap();
    assert!(!es.contains("creationTime"), "{es}");
    // What was written is what check reads.
    for r in crate::policy::load_mesh_policies(&store, "default") {
        let p = r.unwrap();
        assert!(p.resolve(&|id| store.exists(id)).is_empty(), "{p:?}");
    }
    let before: Vec<_> = files
        .iter()
        .map(|f| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    let again = apply(&store, &ids, EXPORT);
    assert!(
        words(&again).iter().all(|(_, o)| *o == Unchanged),
        "{:?}",
        words(&again)
    );
    let after: Vec<_> = files
        .iter()
        .map(|f| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    assert_eq!(before, after, "unchanged files are not rewritten");
    // The same resources in the other form are the same resources.
    let universal =
        "type: MeshTimeout\nmesh: default\nname: timeout\nspec:\n  targetRef:\n    kind: Mesh\n";
    assert_eq!(words(&apply(&store, &ids, universal))[0].1, Unchanged);
    let changed = universal.replace("kind: Mesh\n", "kind: Dataplane\n");
    let o = apply(&store, &ids, &changed);
    assert_eq!(o.resources[0].outcome, Updated);
    assert_eq!(o.resources[0].file, files[2], "updated in its own file");
}

#[test]
fn a_reference_resolves_only_to_a_secret_of_the_store_or_the_input() {
    let (_dir, store, _ids) = store();
    let text = EXPORT.replace("name: ca-key\n", "name: other-key\n");
    let Err(err) = Plan::new(&store, &text) else {
        panic!("a missing secret must refuse the apply");
    };
    assert_eq!(
        messages(err),
        vec!["document 1: mtls.backends[0].conf.key: could not load data: resource not found: type=\"Secret\" name=\"ca-key\" mesh=\"default\""]
    );
    assert!(!store.root().join("meshes/default/mesh.yaml").exists());
    assert!(
        store.secret_ids(None).unwrap().is_empty(),
        "nothing written"
    );
    // A global secret of that name is Kuma's other error.
    let text = EXPORT.replace(
        "type: Secret\nmesh: default\nname: ca-key\n",
        "type: GlobalSecret\nname: ca-key\n",
    );
    let msgs = messages(Plan::new(&store, &text).unwrap_err());
    assert_eq!(
        msgs,
        vec!["document 1: mtls.backends[0].conf.key: global-scoped secret \"ca-key\" cannot be used in mesh policies"]
    );
}

#[test]
fn a_resource_needs_its_mesh() {
    let (_dir, store, ids) = store();
    let timeout = "type: MeshTimeout\nmesh: web\nname: t\nspec: {}\n";
    assert_eq!(
        messages(Plan::new(&store, timeout).unwrap_err()),
        vec!["document 1: mesh of name web is not found"]
    );
    // With its Mesh in the same input, the mesh is made.
    let o = apply(
        &store,
        &ids,
        &format!("type: Mesh\nname: web\n---\n{timeout}"),
    );
    assert_eq!(o.resources[0].file, PathBuf::from("meshes/web/mesh.yaml"));
    assert_eq!(
        o.resources[1].file,
        PathBuf::from("meshes/web/policies/t.yaml")
    );
    // A builtin backend's secrets are mtls init's to make, not a refusal.
    let builtin = "type: Mesh\nname: web\nmtls:\n  enabledBackend: ca-1\n  backends:\n    - name: ca-1\n      type: builtin\n";
    let plan = Plan::new(&store, builtin).unwrap();
    assert_eq!(
        plan.meshes_needing_mtls_init(&store),
        vec!["web".to_string()]
    );
}

#[test]
fn a_resource_in_a_shared_file_is_left_to_its_user() {
    let (dir, store, ids) = store();
    let shared = "type: MeshTimeout\nmesh: default\nname: a\nspec: {}\n---\ntype: MeshRetry\nmesh: default\nname: b\nspec: {}\n";
    std::fs::create_dir_all(dir.path().join("meshes/default/policies")).unwrap();
    std::fs::write(dir.path().join("meshes/default/policies/both.yaml"), shared).unwrap();
    // The same resource: nothing to do.
    let o = apply(
        &store,
        &ids,
        "type: MeshRetry\nmesh: default\nname: b\nspec: {}\n",
    );
    assert_eq!(o.resources[0].outcome, WriteOutcome::Unchanged);
    assert_eq!(
        o.resources[0].file,
        PathBuf::from("meshes/default/policies/both.yaml")
    );
    // A changed one would mean rewriting the other resource's document.
    let err = Plan::new(
        &store,
        "type: MeshRetry\nmesh: default\nname: b\nspec:\n  x: 1\n",
    )
    .unwrap_err();
    let problems = err.problems(Path::new("in.yaml"));
    assert_eq!(
        problems[0].file.as_deref(),
        Some(Path::new("meshes/default/policies/both.yaml"))
    );
    assert_eq!(
        problems[0].message,
        "MeshRetry default/b is defined in meshes/default/policies/both.yaml (document 2) with other resources; apply rewrites a file only when the resource is alone in it"
    );
    // Same name, other kind: a file name of its own.
    std::fs::write(
        dir.path().join("meshes/default/policies/a.yaml"),
        "type: MeshRetry\nmesh: default\nname: z\n",
    )
    .unwrap();
    let o = apply(
        &store,
        &ids,
        "type: MeshHealthCheck\nmesh: default\nname: a\nspec: {}\n",
    );
    assert_eq!(
        o.resources[0].file,
        PathBuf::from("meshes/default/policies/meshhealthcheck.a.yaml")
    );
    // A file of the mesh that does not parse: apply cannot tell what it holds.
    std::fs::write(
        dir.path().join("meshes/default/policies/bad.yaml"),
        "type: [",
    )
    .unwrap();
    let msgs = messages(
        Plan::new(
            &store,
            "type: MeshTrace\nmesh: default\nname: t\nspec: {}\n",
        )
        .unwrap_err(),
    );
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].starts_with("invalid YAML"), "{msgs:?}");
}

#[test]
fn a_toml_file_stays_toml() {
    let (dir, store, ids) = store();
    let rel = "meshes/default/policies/gw.toml";
    std::fs::create_dir_all(dir.path().join("meshes/default/policies")).unwrap();
    std::fs::write(
        dir.path().join(rel),
        "type = \"MeshGateway\"\nmesh = \"default\"\nname = \"edge\"\n\n[[conf.listeners]]\nport = 80\nprotocol = \"HTTP\"\n",
    )
    .unwrap();
    let yaml = "type: MeshGateway\nmesh: default\nname: edge\nconf:\n  listeners:\n    - port: 8080\n      protocol: HTTP\n";
    let o = apply(&store, &ids, yaml);
    assert_eq!(o.resources[0].outcome, WriteOutcome::Updated);
    assert_eq!(o.resources[0].file, PathBuf::from(rel));
    let text = std::fs::read_to_string(dir.path().join(rel)).unwrap();
    let back: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        back["conf"]["listeners"][0]["port"].as_integer(),
        Some(8080)
    );
    assert_eq!(
        apply(&store, &ids, yaml).resources[0].outcome,
        WriteOutcome::Unchanged
    );
}

/// Every valid Kuma name round-trips, the longest included: a 253-character
/// name does not fit in a file name with `.yaml` (kumahq/kuma
/// pkg/core/resources/apis/system validators: names up to 253).
#[test]
fn the_longest_name_has_a_file() {
    let (_dir, store, ids) = store();
    let name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(name.len(), 253);
    let text = format!("type: MeshTimeout\nmesh: default\nname: {name}\nspec: {{}}\n");
    let o = apply(&store, &ids, &text);
    let file = o.resources[0].file.file_name().unwrap().len();
    assert!(file <= 200, "{file}");
    assert_eq!(
        apply(&store, &ids, &text).resources[0].outcome,
        WriteOutcome::Unchanged
    );
    let names: Vec<_> = crate::policy::load_mesh_policies(&store, "default")
        .into_iter()
        .map(|p| p.unwrap().name)
        .collect();
    assert_eq!(names, vec![name]);
}

#[test]
fn a_dry_run_places_and_writes_nothing() {
    let (_dir, store, ids) = store();
    let plan = Plan::new(&store, EXPORT).unwrap();
    let preview = plan.preview_all(&store, Some(&ids));
    assert_eq!(preview.resources.len(), 3);
    assert!(preview
        .resources
        .iter()
        .all(|r| r.outcome == WriteOutcome::Created));
    assert!(!store.root().join("meshes/default/mesh.yaml").exists());
    assert_eq!(plan.write_all(&store, Some(&ids)).unwrap(), preview);
}
