//! End-to-end tests of `meshseal watch`: the built binary on a temporary
//! store, an OS-chosen loopback port, and deadlines instead of sleeps
//! (helpers in `watcher.rs`).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::env::{b64, TestEnv};
use crate::watcher::{http, json, served, Watcher};

fn problem_files(w: &Watcher, token: &str) -> Vec<String> {
    let (status, body) = w.get("/status", Some(token));
    assert_eq!(status, 200, "{body}");
    json(&body)["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn update_is_served_after_a_change() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "first-value");
    let w = env.watch(&[]);
    assert_eq!(
        served(&w, &tokens.admin, "payments", "db"),
        Some(b64("first-value"))
    );
    env.set("payments", "db", "second-value");
    w.eventually("the new value is served", |w| {
        served(w, &tokens.admin, "payments", "db") == Some(b64("second-value"))
    });
    env.set("payments", "api", "brand-new");
    w.eventually("a new secret is served", |w| {
        served(w, &tokens.payments, "payments", "api") == Some(b64("brand-new"))
    });
    let (status, log) = w.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn corrupt_update_keeps_the_last_good_version() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "good-value");
    let w = env.watch(&[]);
    let file = env.secret_file("payments", "db");
    let good = fs::read(&file).unwrap();
    // Flip bytes in the armored body: decryption must fail.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 8] {
        *b = if *b == b'A' { b'B' } else { b'A' };
    }
    fs::write(&file, &bad).unwrap();
    w.eventually("the corrupt file is reported in /status", |w| {
        problem_files(w, &tokens.admin) == vec!["meshes/payments/secrets/db.age".to_string()]
    });
    assert_eq!(
        served(&w, &tokens.admin, "payments", "db"),
        Some(b64("good-value"))
    );
    // Plaintext where a secret belongs is refused the same way.
    fs::write(&file, "type = \"Secret\"\n").unwrap();
    w.eventually("the plaintext version is reported", |w| {
        let (_, body) = w.get("/status", Some(&tokens.admin));
        json(&body)["problems"][0]["code"] == "plaintext"
    });
    assert_eq!(
        served(&w, &tokens.admin, "payments", "db"),
        Some(b64("good-value"))
    );
    // Restoring a good file clears the problem.
    fs::write(&file, &good).unwrap();
    w.eventually("the problem clears", |w| {
        problem_files(w, &tokens.admin).is_empty()
    });
    let log = w.log();
    assert!(log.contains("meshes/payments/secrets/db.age"), "{log}");
    assert!(log.contains("kept the last good version"), "{log}");
}

#[test]
fn moved_or_renamed_ciphertext_is_not_served() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "payments-db");
    env.set("default", "other", "x");
    let w = env.watch(&[]);
    let src = env.secret_file("payments", "db");
    fs::copy(&src, env.secret_file("payments", "db-copy")).unwrap();
    fs::copy(&src, env.secret_file("default", "db")).unwrap();
    w.eventually("both copies are reported", |w| {
        problem_files(w, &tokens.admin).len() == 2
    });
    assert_eq!(served(&w, &tokens.admin, "payments", "db-copy"), None);
    assert_eq!(served(&w, &tokens.admin, "default", "db"), None);
    assert_eq!(
        served(&w, &tokens.admin, "payments", "db"),
        Some(b64("payments-db"))
    );
    // A rename: the old name leaves, the new one does not load.
    fs::rename(&src, env.secret_file("payments", "renamed")).unwrap();
    w.eventually("the renamed file's old name leaves", |w| {
        served(w, &tokens.admin, "payments", "db").is_none()
    });
    assert_eq!(served(&w, &tokens.admin, "payments", "renamed"), None);
}

#[test]
fn deleted_secrets_and_folders_leave_the_index() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "v1");
    env.set("payments", "api", "v2");
    env.set("default", "keep", "v3");
    let w = env.watch(&[]);
    env.ok_key(&["delete", "secret", "db", "-m", "payments"]);
    w.eventually("the deleted secret is gone", |w| {
        served(w, &tokens.admin, "payments", "db").is_none()
    });
    assert_eq!(
        served(&w, &tokens.admin, "payments", "api"),
        Some(b64("v2"))
    );
    // A whole mesh folder moved out of the tree arrives as one rename.
    fs::rename(
        env.root.join("meshes/payments"),
        env.tmp().join("moved-away"),
    )
    .unwrap();
    w.eventually("the moved folder's secrets are gone", |w| {
        served(w, &tokens.admin, "payments", "api").is_none()
    });
    assert_eq!(
        served(&w, &tokens.admin, "default", "keep"),
        Some(b64("v3"))
    );
    // And moved back in: walked and served again.
    fs::rename(
        env.tmp().join("moved-away"),
        env.root.join("meshes/payments"),
    )
    .unwrap();
    w.eventually("the folder moved back is served", |w| {
        served(w, &tokens.admin, "payments", "api") == Some(b64("v2"))
    });
}

#[test]
fn tokens_matrix() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "p");
    env.set("default", "d", "d");
    env.set_global("g", "g");
    let w = env.watch(&[]);
    let pay = "/meshes/payments/secrets/db";
    let def = "/meshes/default/secrets/d";
    let glob = "/global-secrets/g";
    let cases: &[(&str, Option<&str>, u16)] = &[
        (pay, None, 401),
        (pay, Some("mst_not-a-token"), 401),
        (pay, Some(&tokens.payments), 200),
        (pay, Some(&tokens.default_mesh), 403),
        (pay, Some(&tokens.admin), 200),
        (def, Some(&tokens.payments), 403),
        (def, Some(&tokens.default_mesh), 200),
        (glob, None, 401),
        (glob, Some(&tokens.payments), 403),
        (glob, Some(&tokens.admin), 200),
        ("/global-secrets", Some(&tokens.default_mesh), 403),
        ("/global-secrets", Some(&tokens.admin), 200),
        ("/meshes/payments/secrets", Some(&tokens.payments), 200),
        ("/meshes/payments/secrets", Some(&tokens.default_mesh), 403),
        ("/meshes/payments/secrets", None, 401),
        ("/secrets", None, 401),
        ("/status", None, 401),
        ("/status", Some(&tokens.payments), 200),
        // Authorization comes before existence: no probing for names.
        (
            "/meshes/payments/secrets/nope",
            Some(&tokens.default_mesh),
            403,
        ),
        ("/meshes/payments/secrets/nope", Some(&tokens.payments), 404),
        ("/ready", None, 200),
        ("/metrics", None, 401),
        ("/metrics", Some(&tokens.payments), 200),
    ];
    for (path, token, want) in cases {
        let (status, body) = w.get(path, *token);
        assert_eq!(status, *want, "GET {path} with {token:?}: {body}");
        if status == 403 {
            assert!(body.contains("Access Denied"), "{body}");
        }
    }
    // /secrets lists only what the token may read.
    let names = |token: &str| -> Vec<String> {
        let (_, body) = w.get("/secrets", Some(token));
        json(&body)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["mesh"].as_str().unwrap(),
                    i["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(names(&tokens.payments), vec!["payments/db"]);
    assert_eq!(names(&tokens.admin), vec!["default/d", "payments/db"]);
    let (_, body) = w.get(pay, Some(&tokens.payments));
    let v = json(&body);
    assert_eq!(v["type"], "Secret");
    assert_eq!(v["mesh"], "payments");
    assert_eq!(v["name"], "db");
    assert_eq!(v["data"], b64("p"));
    let (_, metrics) = w.get("/metrics", Some(&tokens.admin));
    assert!(
        metrics.contains("\nmeshseal_index_generation "),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshseal_secrets{scope=\"global\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("payments"),
        "metrics name no secrets or meshes: {metrics}"
    );
}

#[test]
fn writes_answer_405() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "p");
    let w = env.watch(&[]);
    for method in ["PUT", "POST", "DELETE", "PATCH"] {
        for path in [
            "/meshes/payments/secrets/db",
            "/global-secrets/g",
            "/secrets",
        ] {
            let (status, body) = http(&w.addr, method, path, Some(&tokens.admin));
            assert_eq!(status, 405, "{method} {path}: {body}");
            assert!(body.contains("git"), "{body}");
        }
    }
    assert_eq!(served(&w, &tokens.admin, "payments", "db"), Some(b64("p")));
}

#[cfg(unix)]
#[test]
fn materialized_files_follow_updates_and_deletes() {
    use std::os::unix::fs::PermissionsExt;
    let (env, _) = TestEnv::serving();
    env.set("payments", "db", "m-one");
    env.set_global("g", "global-one");
    // Materialized plaintext must be on tmpfs (SPEC 11).
    let shm = tempfile::Builder::new()
        .prefix("meshseal-test-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let out = shm.path().join("materialized");
    // A leftover from an earlier run is removed at start.
    fs::create_dir_all(out.join("meshes/payments")).unwrap();
    fs::write(out.join("meshes/payments/leftover"), "old").unwrap();
    let w = env.watch(&["--materialize", out.to_str().unwrap()]);
    let db = out.join("meshes/payments/db");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    w.eventually("files are materialized", |_| {
        fs::read(&db).ok().as_deref() == Some(b"m-one".as_slice())
    });
    assert_eq!(fs::read(out.join("global/g")).unwrap(), b"global-one");
    assert!(!out.join("meshes/payments/leftover").exists());
    assert_eq!(mode(&db), 0o400);
    assert_eq!(mode(&out.join("global/g")), 0o400);
    for d in [
        out.clone(),
        out.join("meshes"),
        out.join("meshes/payments"),
        out.join("global"),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    env.set("payments", "db", "m-two");
    w.eventually("the file follows the update", |_| {
        fs::read(&db).ok().as_deref() == Some(b"m-two".as_slice())
    });
    assert_eq!(mode(&db), 0o400);
    env.ok_key(&["delete", "secret", "db", "-m", "payments"]);
    w.eventually("the file follows the delete", |_| !db.exists());
    assert!(out.join("global/g").exists());
}

#[test]
fn logs_never_contain_secret_values() {
    let (env, tokens) = TestEnv::serving();
    let value = "hunter2-TOP-SECRET-7f3a";
    env.set("payments", "db", value);
    for format in ["text", "json"] {
        let w = env.watch(&["--log-format", format]);
        env.set("payments", "db", &format!("{value}-{format}"));
        w.eventually("the update is served", |w| {
            served(w, &tokens.admin, "payments", "db") == Some(b64(format!("{value}-{format}")))
        });
        // A broken version too: its warning must not quote the data.
        let file = env.secret_file("payments", "db");
        let good = fs::read(&file).unwrap();
        fs::write(
            &file,
            format!("type = \"Secret\"\ndata = \"{}\"\n", b64(value)),
        )
        .unwrap();
        w.eventually("the bad version is reported", |w| {
            !problem_files(w, &tokens.admin).is_empty()
        });
        fs::write(&file, good).unwrap();
        w.eventually("the problem clears", |w| {
            problem_files(w, &tokens.admin).is_empty()
        });
        let (status, log) = w.stop();
        assert!(status.success(), "{log}");
        assert!(log.contains("index updated"), "{log}");
        if format == "json" {
            for line in log.lines() {
                json(line);
            }
        }
        for needle in [
            value.to_string(),
            b64(value),
            b64(format!("{value}-{format}")),
        ] {
            assert!(!log.contains(&needle), "log leaks {needle}:\n{log}");
        }
    }
}

#[test]
fn once_exit_codes() {
    let (env, _) = TestEnv::serving();
    env.set("payments", "db", "x");
    env.set_global("g", "y");
    let out = env.watch_once(&[]);
    let stdout = out.stdout();
    assert_eq!(out.code, Some(0), "{stdout}");
    assert!(stdout.contains("loaded 2 secret(s)"), "{stdout}");
    fs::write(env.secret_file("payments", "broken"), "not age").unwrap();
    let out = env.watch_once(&[]);
    assert_eq!(out.code, Some(1));
    let stderr = &out.stderr;
    assert!(
        stderr.contains("meshes/payments/secrets/broken.age"),
        "{stderr}"
    );
}

#[test]
fn burst_of_rewrites_ends_equal_to_a_fresh_load() {
    const N: usize = 2000;
    let (env, tokens) = TestEnv::serving();
    let docs = |round: &str| -> String {
        (0..N)
            .map(|i| {
                format!(
                    "type: Secret\nmesh: m{}\nname: s{i}\ndata: {}\n",
                    i % 20,
                    b64(format!("{round}-{i}"))
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    };
    for m in 0..20 {
        let key = fs::read_to_string(env.root.join("global/recipients.txt")).unwrap();
        fs::create_dir_all(env.root.join(format!("meshes/m{m}"))).unwrap();
        fs::write(env.root.join(format!("meshes/m{m}/recipients.txt")), key).unwrap();
    }
    env.apply_in(&env.root, &docs("one"));
    let w = env.watch(&[]);
    let (_, body) = w.get("/secrets", Some(&tokens.admin));
    assert_eq!(json(&body)["total"], N);
    // Rewrite every file in one burst.
    env.apply_in(&env.root, &docs("two"));
    w.eventually("every rewritten secret is served", |w| {
        (0..N).rev().step_by(97).all(|i| {
            served(w, &tokens.admin, &format!("m{}", i % 20), &format!("s{i}"))
                == Some(b64(format!("two-{i}")))
        })
    });
    w.eventually("the whole index equals a fresh load", |w| {
        (0..N).all(|i| {
            served(w, &tokens.admin, &format!("m{}", i % 20), &format!("s{i}"))
                == Some(b64(format!("two-{i}")))
        })
    });
    let (_, body) = w.get("/status", Some(&tokens.admin));
    let status = json(&body);
    assert_eq!(status["secrets"], N);
    assert_eq!(status["problems"].as_array().unwrap().len(), 0, "{body}");
    let out = env.watch_once(&[]);
    assert_eq!(out.code, Some(0));
}

#[test]
fn zone_conflict_keeps_the_zone_copy_and_logs_a_warning() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "from-repo");
    env.set("payments", "shared", "repo-shared");
    let zone = env.tmp().join("zone");
    fs::create_dir(&zone).unwrap();
    let zone_ok = |args: &[&str]| {
        env.ok(env.kcmd_at(&zone).args(args));
    };
    zone_ok(&["init", "--recipient", &env.public]);
    zone_ok(&["recipients", "add", "-m", "payments", &env.public]);
    env.set_in(&zone, "payments", "shared", "zone-shared");
    env.set_in(&zone, "payments", "local", "zone-only");
    let once = env.watch_once(&["--zone", "zone-1", "--zone-store", zone.to_str().unwrap()]);
    let stderr = &once.stderr;
    assert_eq!(once.code, Some(0), "{stderr}");
    assert!(
        stderr.contains(r#"resource already exists: type="Secret" name="shared" mesh="payments""#),
        "{stderr}"
    );
    let w = env.watch(&["--zone", "zone-1", "--zone-store", zone.to_str().unwrap()]);
    assert_eq!(
        served(&w, &tokens.admin, "payments", "shared"),
        Some(b64("zone-shared"))
    );
    assert_eq!(
        served(&w, &tokens.admin, "payments", "db"),
        Some(b64("from-repo"))
    );
    assert_eq!(
        served(&w, &tokens.payments, "payments", "local"),
        Some(b64("zone-only"))
    );
    let warning = r#"resource already exists: type="Secret" name="shared" mesh="payments""#;
    w.eventually("the conflict is logged", |w| w.log().contains(warning));
    assert!(w
        .log()
        .lines()
        .any(|l| l.contains("WARN") && l.contains(warning)));
    let (_, body) = w.get("/status", Some(&tokens.admin));
    assert_eq!(json(&body)["conflicts"][0], warning, "{body}");
    // A repository update does not overwrite the zone-local copy...
    env.set("payments", "shared", "repo-shared-2");
    env.set("payments", "db", "from-repo-2");
    w.eventually("the repository update arrives", |w| {
        served(w, &tokens.admin, "payments", "db") == Some(b64("from-repo-2"))
    });
    assert_eq!(
        served(&w, &tokens.admin, "payments", "shared"),
        Some(b64("zone-shared"))
    );
    // ...zone-local changes are followed...
    env.set_in(&zone, "payments", "local", "zone-only-2");
    w.eventually("the zone update arrives", |w| {
        served(w, &tokens.admin, "payments", "local") == Some(b64("zone-only-2"))
    });
    // ...and when the zone-local copy goes, the repository's is served.
    fs::remove_file(zone.join("meshes/payments/secrets/shared.age")).unwrap();
    w.eventually("the repository copy takes over", |w| {
        served(w, &tokens.admin, "payments", "shared") == Some(b64("repo-shared-2"))
    });
    let (status, log) = w.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn sighup_reloads_identities_and_retries_failed_files() {
    let (env, tokens) = TestEnv::serving();
    let second = env.tmp().join("second.txt");
    let second_key = env
        .ok_key(&["keygen", "-o", second.to_str().unwrap()])
        .stdout();
    let second_key = second_key.trim();
    env.ok_key(&["recipients", "add", "-m", "payments", second_key]);
    env.ok_key(&["recipients", "remove", "-m", "payments", &env.public]);
    env.set("payments", "db", "only-for-second");
    let w = env.watch(&[]);
    assert_eq!(served(&w, &tokens.admin, "payments", "db"), None);
    assert_eq!(
        problem_files(&w, &tokens.admin),
        vec!["meshes/payments/secrets/db.age"]
    );
    // Add the second key to the identity file the watcher was started with.
    let mut ids = fs::read_to_string(&env.identity).unwrap();
    ids.push_str(&fs::read_to_string(&second).unwrap());
    fs::write(&env.identity, ids).unwrap();
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(w.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    w.eventually("the file decrypts after SIGHUP", |w| {
        served(w, &tokens.admin, "payments", "db") == Some(b64("only-for-second"))
    });
    assert!(problem_files(&w, &tokens.admin).is_empty());
}

#[test]
fn policies_are_revalidated_on_every_change() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "ca", "ca-bytes");
    let policies = env.root.join("meshes/payments/policies");
    fs::create_dir_all(&policies).unwrap();
    let external = |secret: &str| {
        format!(
            "type = \"ExternalService\"\nmesh = \"payments\"\nname = \"psp\"\n\n[networking]\naddress = \"psp.example:443\"\n\n[networking.tls]\ncaCert = {{ secret = \"{secret}\" }}\n"
        )
    };
    fs::write(policies.join("psp.toml"), external("ca")).unwrap();
    let w = env.watch(&[]);
    let policy = |w: &Watcher| {
        let (status, body) = w.get("/meshes/payments/policies/psp", Some(&tokens.payments));
        assert_eq!(status, 200, "{body}");
        json(&body)
    };
    let v = policy(&w);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["sources"][0]["data"], b64("ca-bytes"), "{v}");
    let (status, _) = w.get("/meshes/payments/policies/psp", Some(&tokens.default_mesh));
    assert_eq!(status, 403);
    // A bad policy affects only itself.
    fs::write(
        policies.join("broken.toml"),
        "type = \"ExternalService\"\n[[[",
    )
    .unwrap();
    w.eventually("the broken policy is reported", |w| {
        problem_files(w, &tokens.admin)
            .contains(&"meshes/payments/policies/broken.toml".to_string())
    });
    assert_eq!(policy(&w)["valid"], true);
    // A reference that stops resolving is reported on its policy.
    fs::write(policies.join("psp.toml"), external("missing")).unwrap();
    w.eventually("the dangling reference is reported", |w| {
        policy(w)["valid"] == false
    });
    let v = policy(&w);
    let problem = v["problems"][0].as_str().unwrap().to_string();
    assert!(
        problem.contains(r#"resource not found: type="Secret" name="missing" mesh="payments""#),
        "{v}"
    );
    env.set("payments", "missing", "now-here");
    w.eventually("the reference resolves once the secret exists", |w| {
        policy(w)["valid"] == true
    });
    assert_eq!(policy(&w)["sources"][0]["data"], b64("now-here"));
}

#[test]
fn a_recipients_change_marks_secrets_stale_in_status() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "x");
    env.set("default", "other", "y");
    let w = env.watch(&[]);
    let stale = |w: &Watcher| -> Vec<String> {
        let (_, body) = w.get("/status", Some(&tokens.admin));
        json(&body)["stale"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s["mesh"].as_str().unwrap(),
                    s["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert!(stale(&w).is_empty());
    let second = env.tmp().join("second.txt");
    let key = env
        .ok_key(&["keygen", "-o", second.to_str().unwrap()])
        .stdout();
    env.ok_key(&["recipients", "add", "-m", "payments", key.trim()]);
    w.eventually("the payments secret is stale", |w| {
        stale(w) == vec!["payments/db"]
    });
    env.ok_key(&["rekey", "-m", "payments"]);
    w.eventually("rekey clears it", |w| stale(w).is_empty());
    assert_eq!(served(&w, &tokens.admin, "payments", "db"), Some(b64("x")));
}

#[test]
fn deleting_a_secret_drops_only_its_policys_resolution() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "psp-ca", "psp-ca-bytes");
    env.set("payments", "gw-cert", "gw-cert-bytes");
    let policies = env.root.join("meshes/payments/policies");
    fs::create_dir_all(&policies).unwrap();
    fs::write(
        policies.join("psp.toml"),
        "type = \"ExternalService\"\nmesh = \"payments\"\nname = \"psp\"\n\n[networking]\naddress = \"psp.example:443\"\n\n[networking.tls]\ncaCert = { secret = \"psp-ca\" }\n",
    )
    .unwrap();
    fs::write(
        policies.join("edge.toml"),
        "type = \"MeshGateway\"\nmesh = \"payments\"\nname = \"edge\"\n\n[[listeners]]\nport = 443\nprotocol = \"HTTPS\"\n\n[listeners.tls]\nmode = \"TERMINATE\"\ncertificates = [{ secret = \"gw-cert\" }]\n",
    )
    .unwrap();
    let w = env.watch(&[]);
    let policy = |w: &Watcher, name: &str| {
        let (status, body) = w.get(
            &format!("/meshes/payments/policies/{name}"),
            Some(&tokens.payments),
        );
        assert_eq!(status, 200, "{body}");
        json(&body)
    };
    assert_eq!(policy(&w, "psp")["sources"][0]["data"], b64("psp-ca-bytes"));
    assert_eq!(
        policy(&w, "edge")["sources"][0]["data"],
        b64("gw-cert-bytes")
    );
    // Delete through the CLI, forced past the in-use guard.
    env.ok_key(&["delete", "secret", "psp-ca", "-m", "payments", "--force"]);
    w.eventually("the psp policy loses its resolution", |w| {
        policy(w, "psp")["valid"] == false
    });
    let psp = policy(&w, "psp");
    assert!(
        psp["sources"][0]["data"].is_null(),
        "no stale data is served: {psp}"
    );
    assert!(
        psp["problems"][0]
            .as_str()
            .unwrap()
            .contains(r#"resource not found: type="Secret" name="psp-ca" mesh="payments""#),
        "{psp}"
    );
    let edge = policy(&w, "edge");
    assert_eq!(
        edge["valid"], true,
        "the other policy is unaffected: {edge}"
    );
    assert_eq!(edge["sources"][0]["data"], b64("gw-cert-bytes"));
}

#[test]
fn a_meshes_folder_that_appears_after_start_is_loaded_and_followed() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "first-value");
    let meshes = env.root.join("meshes");
    let aside = env.tmp().join("meshes-aside");
    fs::rename(&meshes, &aside).unwrap();
    let w = env.watch(&[]);
    assert_eq!(served(&w, &tokens.admin, "payments", "db"), None);
    // The folder arrives whole (a checkout, a move), then changes inside it.
    fs::rename(&aside, &meshes).unwrap();
    w.eventually("the arrived folder's secret is served", |w| {
        served(w, &tokens.admin, "payments", "db") == Some(b64("first-value"))
    });
    env.set("payments", "db", "second-value");
    w.eventually("a change inside the arrived folder is served", |w| {
        served(w, &tokens.admin, "payments", "db") == Some(b64("second-value"))
    });
    // Gone and back: the move out dropped its watches (the inode is the
    // same, the watch is not), so it is followed again.
    fs::rename(&meshes, &aside).unwrap();
    w.eventually("the secrets of a removed folder leave", |w| {
        served(w, &tokens.admin, "payments", "db").is_none()
    });
    fs::rename(&aside, &meshes).unwrap();
    w.eventually("the restored folder's secret is served", |w| {
        served(w, &tokens.admin, "payments", "db") == Some(b64("second-value"))
    });
    env.set("payments", "db", "third-value");
    w.eventually("a change in the restored folder is served", |w| {
        served(w, &tokens.admin, "payments", "db") == Some(b64("third-value"))
    });
    let (status, log) = w.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("following a new store folder"), "{log}");
}

/// Context switches of every thread of process `pid` so far.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// Regression: the debouncer used to look for quiet files on a 10 ms tick,
/// so an idle watcher woke about a hundred times a second (and the tokens
/// follower every 50 ms), for a store that changes a few times a day.
#[test]
fn an_idle_watcher_does_not_wake_up() {
    let (env, tokens) = TestEnv::serving();
    env.set("payments", "db", "first-value");
    let w = env.watch(&[]);
    // One change followed through the debounce window, then quiet.
    env.set("payments", "db", "second-value");
    w.eventually("the change is served", |w| {
        served(w, &tokens.admin, "payments", "db") == Some(b64("second-value"))
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = context_switches(w.child.id());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let woke = context_switches(w.child.id()) - before;
    // A tick of 10 ms would be ~200 wake-ups in these 2 s; the runtime's
    // own housekeeping is a handful at most.
    assert!(woke < 20, "an idle watcher woke {woke} times in 2 s");
}
