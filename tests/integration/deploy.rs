//! The deployment files under `deploy/`: what docs/deploy.md promises about
//! them is checked here, so that an edit that breaks a promise fails a test.
//!
//! - Every Kubernetes manifest (and the Deployment as each kustomize
//!   component patches it) validates with `kubernetes-validate` against one
//!   pinned Kubernetes version, strictly (unknown fields are errors).
//! - Parsed as YAML, the pods keep their security properties: every container
//!   non-root with a read-only root filesystem, no privilege escalation, no
//!   capabilities; no hostPath; Secret volumes mode 0400; everything the
//!   watcher writes (materialized plaintext, the SDS socket, its state) on
//!   memory-backed volumes; a memory limit that follows SPEC 5's rule.
//! - The example Secrets hold placeholders only, and no kustomization applies
//!   them.
//! - The Envoy bootstrap validates with `envoy --mode validate` and reads SDS
//!   from the socket the watcher serves; the systemd unit passes
//!   `systemd-analyze verify` and keeps its hardening.
//!
//! Outside tools: under CI (`CI` set) a missing one fails the test; elsewhere
//! the test prints `SKIPPED: <tool> not installed` and returns.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.31.0";

/// Files under deploy/kubernetes that are not Kubernetes resources.
const NOT_KUBERNETES: &[&str] = &["envoy/envoy.yaml"];

/// SPEC 5: the watcher's resident size stays under this plus twice the
/// secret bytes.
const WATCHER_BASE_MEMORY: u64 = 64 << 20;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn kubernetes_dir() -> PathBuf {
    deploy_dir().join("kubernetes")
}

/// An outside tool on PATH, or None (after the SKIPPED line) outside CI.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{name}` is not installed and CI is set: .ci/run must install it"
        );
        println!("SKIPPED: {name} not installed");
    }
    found
}

// ---------------------------------------------------------------------------
// Reading the manifests

/// Every YAML document of one file, as JSON values.
fn documents(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk deploy/kubernetes"))
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// The files of deploy/kubernetes, sorted by role.
struct Manifests {
    /// `kustomization.yaml` files: (folder, parsed).
    kustomizations: Vec<(PathBuf, Value)>,
    /// Strategic-merge patches named by a kustomization.
    patches: Vec<(PathBuf, Value)>,
    /// Files of Kubernetes resources, with their documents.
    resources: Vec<(PathBuf, Vec<Value>)>,
}

impl Manifests {
    fn load() -> Manifests {
        let root = kubernetes_dir();
        let files = yaml_files(&root);
        let mut kustomizations = Vec::new();
        for path in &files {
            if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
                let mut docs = documents(path);
                assert_eq!(docs.len(), 1, "{}: one document", path.display());
                kustomizations.push((path.parent().unwrap().to_path_buf(), docs.remove(0)));
            }
        }
        let patch_paths: Vec<PathBuf> = kustomizations
            .iter()
            .flat_map(|(dir, k)| {
                list(&k["patches"])
                    .iter()
                    .map(|p| dir.join(p["path"].as_str().expect("patch path")))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut patches = Vec::new();
        let mut resources = Vec::new();
        for path in files {
            let relative = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.file_name().is_some_and(|n| n == "kustomization.yaml")
                || NOT_KUBERNETES.contains(&relative.as_str())
            {
                continue;
            }
            let docs = documents(&path);
            if patch_paths.contains(&path) {
                assert_eq!(docs.len(), 1, "{relative}: a patch is one document");
                patches.push((path, docs.into_iter().next().unwrap()));
                continue;
            }
            for doc in &docs {
                assert!(
                    doc["apiVersion"].is_string() && doc["kind"].is_string(),
                    "{relative}: not a Kubernetes resource (no apiVersion/kind); \
                     list it in NOT_KUBERNETES if it is meant to be something else"
                );
            }
            resources.push((path, docs));
        }
        Manifests {
            kustomizations,
            patches,
            resources,
        }
    }

    fn all_resources(&self) -> impl Iterator<Item = &Value> {
        self.resources.iter().flat_map(|(_, docs)| docs)
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.all_resources()
            .find(|r| r["kind"] == kind && r["metadata"]["name"] == name)
    }

    /// The zone's Deployment as each kustomize patch makes it.
    fn patched_deployments(&self) -> Vec<(String, Value)> {
        self.patches
            .iter()
            .map(|(path, patch)| {
                let name = patch["metadata"]["name"]
                    .as_str()
                    .expect("patch target name");
                let kind = patch["kind"].as_str().expect("patch target kind");
                let base = self
                    .find(kind, name)
                    .unwrap_or_else(|| panic!("{}: patches no resource", path.display()));
                let label = format!("{}/{name} + {}", kind.to_lowercase(), relative(path));
                (label, merge_by_name(base, patch))
            })
            .collect()
    }

    /// The zone's Deployment as the base has it, then as each patch makes it.
    fn deployments(&self) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = self
            .all_resources()
            .filter(|r| r["kind"] == "Deployment")
            .map(|d| {
                (
                    format!("deployment/{}", d["metadata"]["name"].as_str().unwrap()),
                    d.clone(),
                )
            })
            .collect();
        out.extend(self.patched_deployments());
        out
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(deploy_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A strategic merge patch that adds containers and volumes, applied as
/// kustomize applies it: those lists merge by `name`. The patches here only
/// add; one that would change an existing entry is refused, so that this
/// merge never has to decide what kustomize would do with it.
fn merge_by_name(base: &Value, patch: &Value) -> Value {
    let mut merged = base.clone();
    let spec = &patch["spec"]["template"]["spec"];
    let target = merged["spec"]["template"]["spec"]
        .as_object_mut()
        .expect("pod spec");
    for (key, value) in spec.as_object().expect("patch pod spec") {
        let additions = value.as_array().unwrap_or_else(|| {
            panic!("patch sets pod spec field {key}: only lists merged by name are expected")
        });
        let entries = target
            .entry(key.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("a list");
        for add in additions {
            assert!(
                !entries.iter().any(|e| e["name"] == add["name"]),
                "patch changes {key} entry {}: only additions are expected",
                add["name"]
            );
            entries.push(add.clone());
        }
    }
    merged
}

// ---------------------------------------------------------------------------
// The watcher's flags and the pod's volumes

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    list(&pod["initContainers"])
        .iter()
        .chain(list(&pod["containers"]))
}

fn strings(v: &Value) -> Vec<&str> {
    list(v)
        .iter()
        .map(|s| s.as_str().expect("a string"))
        .collect()
}

/// `--flag value` and `--flag=value` from a container's args.
fn flag<'a>(args: &[&'a str], names: &[&str]) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        if names.contains(a) {
            args.get(i + 1).copied()
        } else {
            names
                .iter()
                .find_map(|n| a.strip_prefix(n).and_then(|rest| rest.strip_prefix('=')))
        }
    })
}

fn watcher(pod: &Value) -> &Value {
    let found: Vec<&Value> = containers(pod)
        .filter(|c| strings(&c["args"]).contains(&"watch"))
        .collect();
    assert_eq!(found.len(), 1, "one `meshseal watch` container");
    found[0]
}

fn container_named<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod)
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    list(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// The mount of `container` that holds `path` (the deepest one).
fn mount_of<'a>(container: &'a Value, path: &str) -> Option<&'a Value> {
    list(&container["volumeMounts"])
        .iter()
        .filter(|m| Path::new(path).starts_with(m["mountPath"].as_str().expect("mountPath")))
        .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
}

fn is_memory_empty_dir(volume: &Value) -> bool {
    volume["emptyDir"]["medium"] == "Memory"
}

/// Bytes of a Kubernetes quantity such as `256Mi`, `1Gi`, `500M`.
fn bytes(quantity: &Value) -> u64 {
    let q = quantity.as_str().map(str::to_string).unwrap_or_else(|| {
        quantity
            .as_u64()
            .expect("a quantity: string or integer")
            .to_string()
    });
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: u64 = number.parse().unwrap_or_else(|_| panic!("quantity {q}"));
    let unit: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => panic!("quantity {q}: unit {other} not handled here"),
    };
    number * unit
}

/// Millicores of a CPU quantity such as `250m`, `1`, `0.5`.
fn millicores(quantity: &Value) -> u64 {
    if let Some(cores) = quantity.as_u64() {
        return cores * 1000;
    }
    let q = quantity.as_str().expect("a CPU quantity");
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or_else(|_| panic!("CPU quantity {q}")),
        None => {
            let cores: f64 = q.parse().unwrap_or_else(|_| panic!("CPU quantity {q}"));
            (cores * 1000.0).round() as u64
        }
    }
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn manifests_validate_against_pinned_kubernetes() {
    let Some(validator) = tool("kubernetes-validate") else {
        return;
    };
    let manifests = Manifests::load();
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut files: Vec<PathBuf> = manifests.resources.iter().map(|(p, _)| p.clone()).collect();
    let mut expected = manifests.all_resources().count();
    // The Deployment as each component's patch makes it.
    for (i, (_, deployment)) in manifests.patched_deployments().into_iter().enumerate() {
        let path = tmp.path().join(format!("patched-{i}.yaml"));
        fs::write(&path, serde_yaml_ng::to_string(&deployment).unwrap()).unwrap();
        files.push(path);
        expected += 1;
    }
    assert!(expected >= 5, "found only {expected} resources");
    let out = Command::new(validator)
        .args(["--kubernetes-version", KUBERNETES_VERSION, "--strict"])
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A kind it has no schema for is only a WARN with exit 0: every
    // resource must have a `passed` line instead.
    let passed = stdout
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource "))
        .count();
    let other: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("INFO ")).collect();
    assert!(
        out.status.success() && other.is_empty() && passed == expected,
        "kubernetes-validate {KUBERNETES_VERSION}: {passed} of {expected} passed\n{stdout}{stderr}"
    );
}

#[test]
fn kustomizations_apply_every_manifest_except_the_examples() {
    let manifests = Manifests::load();
    let mut referenced: Vec<PathBuf> = Vec::new();
    let mut problems = Vec::new();
    for (dir, k) in &manifests.kustomizations {
        for entry in list(&k["resources"]) {
            referenced.push(dir.join(entry.as_str().expect("resource path")));
        }
        for entry in list(&k["patches"]) {
            referenced.push(dir.join(entry["path"].as_str().expect("patch path")));
        }
        for entry in list(&k["components"]) {
            referenced.push(dir.join(entry.as_str().expect("component path")));
        }
    }
    for path in &referenced {
        if !path.exists() {
            problems.push(format!(
                "{}: named by a kustomization, missing",
                relative(path)
            ));
        }
    }
    let files = manifests
        .resources
        .iter()
        .map(|(p, _)| p)
        .chain(manifests.patches.iter().map(|(p, _)| p));
    for path in files {
        let example = path.to_string_lossy().ends_with(".example.yaml");
        let count = referenced.iter().filter(|r| *r == path).count();
        match (example, count) {
            (true, 0) | (false, 1) => {}
            (true, _) => problems.push(format!(
                "{}: an example is applied by a kustomization (it would replace real Secrets)",
                relative(path)
            )),
            (false, n) => problems.push(format!(
                "{}: named by {n} kustomizations, expected 1",
                relative(path)
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_pod_is_locked_down() {
    let manifests = Manifests::load();
    let mut problems = Vec::new();
    let deployments = manifests.deployments();
    assert!(
        deployments.len() >= 2,
        "the base Deployment and the Envoy variant"
    );
    for (label, deployment) in &deployments {
        let pod = &deployment["spec"]["template"]["spec"];
        let mut bad = |what: String| problems.push(format!("{label}: {what}"));
        let pod_sc = &pod["securityContext"];
        if pod["automountServiceAccountToken"] != false {
            bad("automountServiceAccountToken is not false".into());
        }
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            if pod[host] == true {
                bad(format!("{host} is set"));
            }
        }
        if pod_sc["runAsNonRoot"] != true {
            bad("pod securityContext.runAsNonRoot is not true".into());
        }
        if pod_sc["fsGroup"].as_u64().is_none_or(|g| g == 0) {
            bad("no non-root fsGroup".into());
        }
        if pod_sc["seccompProfile"]["type"] != "RuntimeDefault" {
            bad("pod seccompProfile is not RuntimeDefault".into());
        }
        match pod["serviceAccountName"].as_str() {
            Some(sa) => match manifests.find("ServiceAccount", sa) {
                Some(account) if account["automountServiceAccountToken"] == false => {}
                Some(_) => bad(format!("ServiceAccount {sa} mounts its token")),
                None => bad(format!("ServiceAccount {sa} is not among the manifests")),
            },
            None => bad("no serviceAccountName (the default account)".into()),
        }
        for c in containers(pod) {
            let name = c["name"].as_str().unwrap_or("?");
            let sc = &c["securityContext"];
            let inherited = |key: &str| {
                if sc[key].is_null() {
                    &pod_sc[key]
                } else {
                    &sc[key]
                }
            };
            if inherited("runAsNonRoot") != &Value::Bool(true) {
                bad(format!("container {name}: runAsNonRoot is not true"));
            }
            if inherited("runAsUser").as_u64().is_none_or(|u| u == 0) {
                bad(format!("container {name}: no non-root runAsUser"));
            }
            if inherited("seccompProfile")["type"] != "RuntimeDefault" {
                bad(format!(
                    "container {name}: seccompProfile is not RuntimeDefault"
                ));
            }
            if sc["readOnlyRootFilesystem"] != true {
                bad(format!(
                    "container {name}: readOnlyRootFilesystem is not true"
                ));
            }
            if sc["allowPrivilegeEscalation"] != false {
                bad(format!(
                    "container {name}: allowPrivilegeEscalation is not false"
                ));
            }
            if sc["privileged"] == true {
                bad(format!("container {name}: privileged"));
            }
            if !strings(&sc["capabilities"]["drop"]).contains(&"ALL") {
                bad(format!("container {name}: capabilities do not drop ALL"));
            }
            if !list(&sc["capabilities"]["add"]).is_empty() {
                bad(format!("container {name}: adds capabilities"));
            }
            // Guaranteed QoS (never swapped under LimitedSwap): requests
            // equal limits, for CPU and memory, in every container.
            let r = &c["resources"];
            for (resource, amount) in [("cpu", millicores as fn(&Value) -> u64), ("memory", bytes)]
            {
                let (request, limit) = (&r["requests"][resource], &r["limits"][resource]);
                if request.is_null() || limit.is_null() {
                    bad(format!("container {name}: no {resource} request or limit"));
                } else if amount(request) != amount(limit) {
                    bad(format!(
                        "container {name}: {resource} request {request} != limit {limit}"
                    ));
                }
            }
            if c["image"].as_str().is_some_and(|i| i.ends_with(":latest")) {
                bad(format!("container {name}: image tag latest"));
            }
        }
        for v in list(&pod["volumes"]) {
            let name = v["name"].as_str().unwrap_or("?");
            if !v["secret"].is_null() && v["secret"]["defaultMode"] != 0o400 {
                bad(format!(
                    "secret volume {name}: defaultMode is not 0400 (256)"
                ));
            }
            if !v["emptyDir"].is_null() && v["emptyDir"]["sizeLimit"].is_null() {
                bad(format!("emptyDir {name}: no sizeLimit"));
            }
        }
    }
    // No hostPath anywhere, in any resource or patch.
    fn has_host_path(v: &Value) -> bool {
        match v {
            Value::Object(map) => map.iter().any(|(k, v)| k == "hostPath" || has_host_path(v)),
            Value::Array(items) => items.iter().any(has_host_path),
            _ => false,
        }
    }
    for (path, docs) in &manifests.resources {
        if docs.iter().any(has_host_path) {
            problems.push(format!("{}: hostPath", relative(path)));
        }
    }
    for (path, patch) in &manifests.patches {
        if has_host_path(patch) {
            problems.push(format!("{}: hostPath", relative(path)));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn watcher_writes_only_to_memory_and_reads_keys_from_secrets() {
    let manifests = Manifests::load();
    for (label, deployment) in manifests.deployments() {
        let pod = &deployment["spec"]["template"]["spec"];
        let w = watcher(pod);
        let args = strings(&w["args"]);
        let path_flag = |names: &[&str]| {
            flag(&args, names).unwrap_or_else(|| panic!("{label}: watcher without {names:?}"))
        };
        let materialize = path_flag(&["--materialize"]);
        let sds = path_flag(&["--sds"]);
        let state = path_flag(&["--state"]);
        let identity = path_flag(&["-i", "--identity"]);
        let tokens = path_flag(&["--tokens"]);
        let sds_folder = Path::new(sds).parent().unwrap().to_str().unwrap();
        // Folders the watcher creates must lie below a mount point: the
        // watcher accepts only folders of its own, a mount point is root's.
        for (what, path) in [
            ("--materialize", materialize),
            ("--sds folder", sds_folder),
            ("--state", state),
        ] {
            let m =
                mount_of(w, path).unwrap_or_else(|| panic!("{label}: {what} {path} on no volume"));
            assert_ne!(
                m["mountPath"], path,
                "{label}: {what} {path} is a mount point itself"
            );
            assert_ne!(
                m["readOnly"], true,
                "{label}: {what} {path} is mounted read-only"
            );
            let v = volume(pod, m["name"].as_str().unwrap());
            assert!(
                is_memory_empty_dir(v),
                "{label}: {what} {path} is on volume {}, not an emptyDir with medium Memory",
                v["name"]
            );
        }
        // Everything the watcher may write is memory-backed.
        for m in list(&w["volumeMounts"]) {
            if m["readOnly"] != true {
                let v = volume(pod, m["name"].as_str().unwrap());
                assert!(
                    is_memory_empty_dir(v),
                    "{label}: watcher writes to {}",
                    v["name"]
                );
            }
        }
        // The identity: a memory-backed copy made from a Secret by an init
        // container (a Secret volume with fsGroup is group-readable, which
        // meshseal refuses for an identity).
        let id_mount = mount_of(w, identity).expect("identity on a volume");
        let id_volume_name = id_mount["name"].as_str().unwrap();
        assert_eq!(
            id_mount["readOnly"], true,
            "{label}: identity mounted writable"
        );
        assert!(
            is_memory_empty_dir(volume(pod, id_volume_name)),
            "{label}: identity volume"
        );
        let copier = list(&pod["initContainers"])
            .iter()
            .find(|c| {
                c["restartPolicy"].is_null()
                    && list(&c["volumeMounts"])
                        .iter()
                        .any(|m| m["name"] == id_volume_name && m["readOnly"] != true)
            })
            .unwrap_or_else(|| panic!("{label}: no init container writes the identity"));
        let copied_from = list(&copier["volumeMounts"])
            .iter()
            .filter(|m| m["name"] != id_volume_name)
            .map(|m| volume(pod, m["name"].as_str().unwrap()))
            .find(|v| !v["secret"].is_null())
            .unwrap_or_else(|| panic!("{label}: the identity is copied from no Secret"));
        assert_eq!(copied_from["secret"]["defaultMode"], 0o400);
        let command = strings(&copier["command"]);
        assert!(
            command.windows(2).any(|pair| pair == ["-m", "0400"])
                && command.last() == Some(&identity),
            "{label}: the identity copy is not mode 0400 at {identity}: {command:?}"
        );
        // The tokens: straight from a Secret, followed live.
        let t_mount = mount_of(w, tokens).expect("tokens on a volume");
        assert_eq!(t_mount["readOnly"], true);
        let t_volume = volume(pod, t_mount["name"].as_str().unwrap());
        assert_eq!(
            t_volume["secret"]["defaultMode"], 0o400,
            "{label}: tokens volume"
        );
    }
}

#[test]
fn watcher_memory_limit_follows_the_spec_rule() {
    let manifests = Manifests::load();
    for (label, deployment) in manifests.deployments() {
        let pod = &deployment["spec"]["template"]["spec"];
        let w = watcher(pod);
        let args = strings(&w["args"]);
        let materialize = flag(&args, &["--materialize"]).unwrap();
        let m = mount_of(w, materialize).unwrap();
        // S: at most what the materialize volume may hold.
        let secret_bytes =
            bytes(&volume(pod, m["name"].as_str().unwrap())["emptyDir"]["sizeLimit"]);
        // tmpfs pages the watcher writes are charged to its container.
        let written: u64 = list(&w["volumeMounts"])
            .iter()
            .filter(|m| m["readOnly"] != true)
            .map(|m| bytes(&volume(pod, m["name"].as_str().unwrap())["emptyDir"]["sizeLimit"]))
            .sum();
        let needed = WATCHER_BASE_MEMORY + 2 * secret_bytes + written;
        let limit = bytes(&w["resources"]["limits"]["memory"]);
        let request = bytes(&w["resources"]["requests"]["memory"]);
        assert!(
            limit >= needed,
            "{label}: memory limit {limit} < 64 MiB + 2 x {secret_bytes} + {written} = {needed}"
        );
        assert_eq!(
            request, limit,
            "{label}: memory request differs from the limit"
        );
    }
}

#[test]
fn git_sync_feeds_the_watcher_and_readiness_asks_it() {
    let manifests = Manifests::load();
    for (label, deployment) in manifests.deployments() {
        let pod = &deployment["spec"]["template"]["spec"];
        let w = watcher(pod);
        let args = strings(&w["args"]);
        let store = flag(&args, &["-C", "--repo"]).expect("watcher -C");
        let listen = flag(&args, &["--listen"]).expect("watcher --listen");
        assert!(
            listen.starts_with("127.0.0.1:"),
            "{label}: API beyond loopback: {listen}"
        );
        assert_eq!(
            flag(&args, &["--log-format"]),
            Some("json"),
            "{label}: log format"
        );

        let sync = container_named(pod, "git-sync");
        let image = sync["image"].as_str().unwrap();
        assert!(
            image.starts_with("registry.k8s.io/git-sync/git-sync:v4."),
            "{label}: git-sync image {image}"
        );
        assert_eq!(
            sync["restartPolicy"], "Always",
            "{label}: git-sync is not a sidecar"
        );
        let sync_args = strings(&sync["args"]);
        let root = flag(&sync_args, &["--root"]).expect("git-sync --root");
        let link = flag(&sync_args, &["--link"]).expect("git-sync --link");
        assert!(
            flag(&sync_args, &["--repo"]).is_some() && flag(&sync_args, &["--period"]).is_some()
        );
        let link_path = Path::new(root).join(link);
        assert!(
            Path::new(store).starts_with(&link_path),
            "{label}: the watcher's store {store} is not under git-sync's link {}",
            link_path.display()
        );
        // Both see the checkout through the same volume; the watcher read-only.
        let sync_mount = mount_of(sync, root).expect("git-sync root on a volume");
        let watch_mount = mount_of(w, store).expect("store on a volume");
        assert_eq!(
            sync_mount["name"], watch_mount["name"],
            "{label}: checkout volume"
        );
        assert_eq!(watch_mount["mountPath"], sync_mount["mountPath"]);
        assert_eq!(
            watch_mount["readOnly"], true,
            "{label}: the watcher may write the checkout"
        );
        // The watcher starts after the first checkout.
        let probe = strings(&sync["startupProbe"]["exec"]["command"]);
        assert!(
            probe.contains(&link_path.to_str().unwrap()),
            "{label}: git-sync's startup probe does not wait for {}: {probe:?}",
            link_path.display()
        );

        // Readiness: an exec probe in the pod's network namespace asks the
        // watcher's /ready (the kubelet cannot reach loopback).
        let ready_url = format!("http://{listen}/ready");
        let asks = containers(pod).any(|c| {
            strings(&c["readinessProbe"]["exec"]["command"]).contains(&ready_url.as_str())
        });
        assert!(asks, "{label}: no readiness probe asks {ready_url}");
    }
}

#[test]
fn network_policies_allow_no_ingress_but_envoy() {
    let manifests = Manifests::load();
    let policies: Vec<&Value> = manifests
        .all_resources()
        .filter(|r| r["kind"] == "NetworkPolicy")
        .collect();
    let zone = policies
        .iter()
        .find(|p| p["metadata"]["name"] == "meshseal")
        .expect("the zone's NetworkPolicy");
    let labels = &manifests.find("Deployment", "meshseal").unwrap()["spec"]["template"]["metadata"]
        ["labels"];
    for p in &policies {
        for (k, v) in p["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .expect("matchLabels")
        {
            assert_eq!(
                &labels[k], v,
                "{}: selects no zone pod",
                p["metadata"]["name"]
            );
        }
    }
    assert_eq!(strings(&zone["spec"]["policyTypes"]), ["Ingress", "Egress"]);
    assert!(
        list(&zone["spec"]["ingress"]).is_empty(),
        "the zone admits ingress"
    );
    // Any other policy opens Envoy's port only.
    for p in policies
        .iter()
        .filter(|p| p["metadata"]["name"] != "meshseal")
    {
        for rule in list(&p["spec"]["ingress"]) {
            let ports: Vec<&Value> = list(&rule["ports"]).iter().map(|x| &x["port"]).collect();
            assert_eq!(
                ports,
                [&Value::from(8443)],
                "{}: ingress ports",
                p["metadata"]["name"]
            );
        }
    }
}

#[test]
fn examples_hold_placeholders_only() {
    let manifests = Manifests::load();
    let secrets: Vec<&Value> = manifests
        .all_resources()
        .filter(|r| r["kind"] == "Secret")
        .collect();
    assert!(
        secrets.len() >= 2,
        "the identity and tokens Secret examples"
    );
    for s in &secrets {
        let name = &s["metadata"]["name"];
        assert!(
            s["data"].is_null(),
            "{name}: base64 `data` hides what it holds; use stringData"
        );
        for (key, value) in s["stringData"].as_object().expect("stringData") {
            assert!(
                value.as_str().unwrap().contains("REPLACE-ME"),
                "{name}: {key} is not marked as a placeholder"
            );
        }
    }
    // Nothing under deploy/ looks like a real key or token.
    for entry in walkdir::WalkDir::new(deploy_dir()) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let text = fs::read_to_string(entry.path()).unwrap();
        for marker in ["AGE-SECRET-KEY-1", "PRIVATE KEY-----", "mst_"] {
            let real = text.match_indices(marker).any(|(at, _)| {
                // The docs' prose may name the prefix; a key or token has a
                // long run of key characters after it.
                let after = &text[at + marker.len()..];
                after
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .count()
                    >= 32
                    || marker == "PRIVATE KEY-----"
            });
            assert!(
                !real,
                "{}: holds something like {marker}",
                relative(entry.path())
            );
        }
    }
}

#[test]
fn envoy_bootstrap_reads_sds_from_the_watchers_socket() {
    let manifests = Manifests::load();
    let bootstrap_path = kubernetes_dir().join("envoy/envoy.yaml");
    let bootstrap = documents(&bootstrap_path).remove(0);
    let (label, deployment) = manifests
        .deployments()
        .into_iter()
        .find(|(_, d)| containers(&d["spec"]["template"]["spec"]).any(|c| c["name"] == "envoy"))
        .expect("a Deployment with the Envoy sidecar");
    let pod = &deployment["spec"]["template"]["spec"];
    let w = watcher(pod);
    let sds = flag(&strings(&w["args"]), &["--sds"]).unwrap();
    let envoy = container_named(pod, "envoy");

    let clusters = list(&bootstrap["static_resources"]["clusters"]);
    let sds_cluster = clusters
        .iter()
        .find(|c| c["name"] == "meshseal_sds")
        .expect("cluster meshseal_sds");
    let pipe = &sds_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["pipe"]["path"];
    assert_eq!(
        pipe, sds,
        "Envoy's SDS socket differs from the watcher's --sds"
    );
    assert!(
        !sds_cluster["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            ["http2_protocol_options"]
            .is_null(),
        "SDS is gRPC: the cluster needs HTTP/2"
    );
    // Envoy mounts the socket's volume read-only, and runs as another user
    // than the watcher, so the 0700 materialized folder stays closed to it.
    let (em, wm) = (
        mount_of(envoy, sds).expect("socket mounted in envoy"),
        mount_of(w, sds).unwrap(),
    );
    assert_eq!(
        em["name"], wm["name"],
        "{label}: envoy and the watcher share the socket's volume"
    );
    assert_eq!(
        em["readOnly"], true,
        "{label}: envoy mounts the socket's volume writable"
    );
    assert_ne!(
        envoy["securityContext"]["runAsUser"], w["securityContext"]["runAsUser"],
        "{label}: envoy runs as the watcher's user and could read the materialized secrets"
    );
    // The listener's certificate comes over SDS, as `<mesh>/<name>`, with a token.
    let text = fs::read_to_string(&bootstrap_path).unwrap();
    let config: Vec<&Value> = list(&bootstrap["static_resources"]["listeners"])
        .iter()
        .flat_map(|l| list(&l["filter_chains"]))
        .flat_map(|fc| {
            list(
                &fc["transport_socket"]["typed_config"]["common_tls_context"]
                    ["tls_certificate_sds_secret_configs"],
            )
        })
        .collect();
    assert!(
        !config.is_empty(),
        "no listener takes its certificate over SDS"
    );
    for c in config {
        let name = c["name"].as_str().unwrap();
        assert_eq!(
            name.split('/').count(),
            2,
            "SDS resource {name} is not <mesh>/<name>"
        );
        let grpc = &c["sds_config"]["api_config_source"]["grpc_services"][0];
        assert_eq!(grpc["envoy_grpc"]["cluster_name"], "meshseal_sds");
        let metadata = &grpc["initial_metadata"][0];
        assert_eq!(metadata["key"], "authorization");
        assert!(metadata["value"].as_str().unwrap().starts_with("Bearer "));
    }
    assert!(
        text.contains("Bearer REPLACE-ME"),
        "the bootstrap's token is not a placeholder"
    );

    let Some(envoy_bin) = tool("envoy") else {
        return;
    };
    let out = Command::new(envoy_bin)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--config-path",
        ])
        .arg(&bootstrap_path)
        .output()
        .expect("run envoy --mode validate");
    assert!(
        out.status.success(),
        "envoy --mode validate {}:\n{}{}",
        bootstrap_path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `[Section] Key=value` lines of a unit file (continuations joined).
fn unit_directives(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(rest) = line.strip_suffix('\\') {
            pending.push_str(rest);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        if full.starts_with('[') {
            section = full.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if let Some((k, v)) = full.split_once('=') {
            out.entry(format!("{section}.{}", k.trim()))
                .or_default()
                .push(v.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

#[test]
fn systemd_unit_is_hardened() {
    let path = deploy_dir().join("systemd/meshseal-watch.service");
    let text = fs::read_to_string(&path).unwrap();
    let d = unit_directives(&text);
    let get = |key: &str| -> &str {
        d.get(&format!("Service.{key}"))
            .and_then(|v| v.last())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{}: no {key}=", path.display()))
    };
    let mut problems = Vec::new();
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("LimitCORE", "0"),
        ("MemorySwapMax", "0"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("RuntimeDirectory", "meshseal"),
        ("StateDirectory", "meshseal"),
    ] {
        if get(key) != want {
            problems.push(format!("{key}={} (want {want:?})", get(key)));
        }
    }
    let user = get("User");
    if user.is_empty() || user == "root" || user == "0" {
        problems.push(format!("User={user}: runs as root"));
    }
    let exec = get("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    let run = format!("/run/{}", get("RuntimeDirectory"));
    let state_dir = format!("/var/lib/{}", get("StateDirectory"));
    for (names, under) in [
        (&["--materialize"][..], run.as_str()),
        (&["--sds"][..], run.as_str()),
        (&["--state"][..], state_dir.as_str()),
    ] {
        match flag(&args, names) {
            Some(p) if Path::new(p).starts_with(under) && p != under => {}
            other => problems.push(format!("ExecStart {names:?} {other:?}: not below {under}")),
        }
    }
    for names in [
        &["--tokens"][..],
        &["-i", "--identity"][..],
        &["-C", "--repo"][..],
    ] {
        if flag(&args, names).is_none() {
            problems.push(format!("ExecStart without {names:?}"));
        }
    }
    if !flag(&args, &["--listen"]).is_some_and(|l| l.starts_with("127.0.0.1:")) {
        problems.push("ExecStart --listen is not on loopback".into());
    }
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        path.display(),
        problems.join("\n")
    );

    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    // verify checks that ExecStart's binary exists and needs the stock
    // units: a scratch root with both, and the unit where systemd looks.
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::copy(&path, units.join("meshseal-watch.service")).unwrap();
    // A copy, not a link: under --root an absolute link resolves inside root.
    let stock = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .find(|dir| Path::new(dir).join("sysinit.target").exists())
        .expect("systemd-analyze is installed but the stock units are not");
    let copy_to = root.path().join(stock.trim_start_matches('/'));
    fs::create_dir_all(copy_to.parent().unwrap()).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(stock)
        .arg(&copy_to)
        .status()
        .expect("run cp");
    assert!(copied.success(), "cp -a {stock}");
    for binary in [args[0], "/bin/kill"] {
        let target = root.path().join(binary.trim_start_matches('/'));
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy("/bin/true", &target).unwrap();
    }
    let out = Command::new(analyze)
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .arg("/etc/systemd/system/meshseal-watch.service")
        .output()
        .expect("run systemd-analyze verify");
    // verify exits 0 on unknown or misspelled keys: any output is a problem.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {}:\n{said}",
        path.display()
    );
}
