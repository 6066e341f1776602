//! The policy tester (`POST /admin/policy/check`, `pgstorage policy check|list`): its verdict
//! agrees with what the real REST request does, case by case; it names the policies that
//! passed and failed; it never changes anything; and 403s name what was refused.

mod common;

use common::{TestServer, json_of, process, token};
use reqwest::Method;
use serde_json::{Value, json};

const POLICIES: &str = "
    create policy own_insert on storage.objects for insert to authenticated
        with check ((storage.foldername(name))[1] = auth.uid());
    create policy own_read on storage.objects for select to authenticated
        using ((storage.foldername(name))[1] in ('shared', auth.uid()));
    create policy own_update on storage.objects for update to authenticated
        using (owner_id = auth.uid());
    create policy own_delete on storage.objects for delete to authenticated
        using (owner_id = auth.uid());
    create policy no_exe on storage.objects as restrictive for insert to authenticated
        with check (storage.extension(name) <> 'exe');
    create policy open_read on storage.objects for select to anon
        using (bucket_id = 'open');
    -- storage.operation() and custom claims, as a request sets them
    create policy info_only on storage.objects for select to authenticated
        using (bucket_id = 'open' and storage.allow_only_operation('info'));
    create policy red_team on storage.objects for select to authenticated
        using (bucket_id = 'open' and auth.jwt()->>'team' = 'red');
    create policy user_buckets on storage.buckets for insert to authenticated
        with check (id like auth.uid() || '-%');
    create policy user_bucket_read on storage.buckets for select to authenticated
        using (true);";

/// A server with the policies above, bucket `photos` (100 bytes at most, images and text),
/// bucket `open`, and objects owned by alice and bob.
async fn server() -> TestServer {
    let server = TestServer::start().await;
    server.db.sql(POLICIES).await;
    let service = server.service_key();
    let (status, body) = json_of(
        server
            .request(Method::POST, "/bucket", Some(&service))
            .json(&json!({
                "name": "photos",
                "file_size_limit": 100,
                "allowed_mime_types": ["image/*", "text/plain"],
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server.create_bucket("open", false).await;
    for (sub, path) in [
        ("alice", "photos/alice/a.txt"),
        ("alice", "photos/alice/keep.txt"),
        ("alice", "photos/alice/del.txt"),
        ("alice", "photos/alice/mv.txt"),
        ("bob", "photos/bob/b.txt"),
    ] {
        upload(
            &server,
            Some(&server.user_key(sub)),
            path,
            5,
            "text/plain",
            false,
        )
        .await;
    }
    upload(
        &server,
        Some(&service),
        "open/x.txt",
        5,
        "text/plain",
        false,
    )
    .await;
    server
}

async fn upload(
    server: &TestServer,
    key: Option<&str>,
    path: &str,
    size: usize,
    mime: &str,
    upsert: bool,
) -> u16 {
    let method = if upsert { Method::PUT } else { Method::POST };
    let (status, body) = json_of(
        server
            .request(method, &format!("/object/{path}"), key)
            .header("content-type", mime)
            .body(vec![b'x'; size])
            .send()
            .await
            .unwrap(),
    )
    .await;
    if status >= 500 {
        panic!("{path}: {status} {body}");
    }
    status
}

/// One question, asked of the tester and then of the real API.
struct Case {
    role: &'static str,
    sub: Option<&'static str>,
    op: &'static str,
    bucket: &'static str,
    path: &'static str,
    size: usize,
    mime: &'static str,
    to: &'static str,
    /// Extra claims, as JSON.
    claims: Option<&'static str>,
}

const fn case(
    role: &'static str,
    sub: Option<&'static str>,
    op: &'static str,
    bucket: &'static str,
    path: &'static str,
) -> Case {
    Case {
        role,
        sub,
        op,
        bucket,
        path,
        size: 10,
        mime: "text/plain",
        to: "",
        claims: None,
    }
}

const ALICE: Option<&str> = Some("alice");
const BOB: Option<&str> = Some("bob");
const CAROL: Option<&str> = Some("carol");

async fn ask(server: &TestServer, case: &Case) -> Value {
    let (status, report) = json_of(
        server
            .request(
                Method::POST,
                "/admin/policy/check",
                Some(&server.service_key()),
            )
            .json(&json!({
                "role": case.role,
                "sub": case.sub,
                "operation": case.op,
                "bucket": case.bucket,
                "path": case.path,
                "size": case.size,
                "mime": case.mime,
                "destination_path": (!case.to.is_empty()).then_some(case.to),
                "claims": case.claims.map(|c| serde_json::from_str::<Value>(c).unwrap()),
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    report
}

/// The real request's status.
async fn really(server: &TestServer, case: &Case) -> u16 {
    let key = match (case.role, case.claims) {
        ("anon", _) => None,
        (role, None) => Some(token(role, case.sub)),
        (role, Some(claims)) => Some(
            common::keys()
                .mint(role, case.sub, None, serde_json::from_str(claims).unwrap())
                .unwrap(),
        ),
    };
    let key = key.as_deref();
    let object = format!("{}/{}", case.bucket, case.path);
    let send = |method: Method, path: String, body: Option<Value>| async move {
        let mut request = server.request(method, &path, key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, body) = json_of(request.send().await.unwrap()).await;
        assert!(status < 500, "{path}: {status} {body}");
        status
    };
    match case.op {
        "storage.upload" => upload(server, key, &object, case.size, case.mime, false).await,
        "storage.overwrite" => upload(server, key, &object, case.size, case.mime, true).await,
        "storage.download" => {
            let response = server
                .request(Method::GET, &format!("/object/authenticated/{object}"), key)
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
        "storage.info" => {
            send(
                Method::GET,
                format!("/object/info/authenticated/{object}"),
                None,
            )
            .await
        }
        "storage.delete" => send(Method::DELETE, format!("/object/{object}"), None).await,
        "storage.move" | "storage.copy" => {
            let route = if case.op == "storage.move" {
                "move"
            } else {
                "copy"
            };
            let body = json!({
                "bucketId": case.bucket,
                "sourceKey": case.path,
                "destinationKey": case.to,
            });
            send(Method::POST, format!("/object/{route}"), Some(body)).await
        }
        "storage.bucket.create" => {
            send(
                Method::POST,
                "/bucket".into(),
                Some(json!({ "name": case.bucket })),
            )
            .await
        }
        "storage.bucket.get" => send(Method::GET, format!("/bucket/{}", case.bucket), None).await,
        "storage.bucket.delete" => {
            send(Method::DELETE, format!("/bucket/{}", case.bucket), None).await
        }
        other => panic!("no real request for {other}"),
    }
}

/// The status the REST API answers for each outcome.
fn status_of(outcome: &str) -> u16 {
    match outcome {
        "allowed" => 200,
        "denied" => 403,
        "not_found" => 404,
        "already_exists" | "not_empty" => 409,
        "too_large" => 413,
        "unsupported_type" => 415,
        "invalid" => 400,
        other => panic!("unknown outcome {other}"),
    }
}

#[tokio::test]
async fn the_testers_verdict_is_what_the_real_request_does() {
    let server = server().await;
    let up = "storage.upload";
    let cases = [
        case("authenticated", ALICE, up, "photos", "alice/new1.png"),
        case("authenticated", ALICE, up, "photos", "bob/new2.png"),
        Case {
            mime: "application/octet-stream",
            ..case("authenticated", ALICE, up, "photos", "alice/new3.exe")
        },
        Case {
            size: 500,
            ..case("authenticated", ALICE, up, "photos", "alice/big.png")
        },
        Case {
            mime: "application/pdf",
            ..case("authenticated", ALICE, up, "photos", "alice/doc.pdf")
        },
        case("authenticated", ALICE, up, "photos", "alice/a.txt"),
        case("anon", None, up, "photos", "anon.png"),
        case("authenticated", ALICE, up, "nobucket", "alice/x.png"),
        case("service_role", None, up, "photos", "any/x.png"),
        case(
            "authenticated",
            ALICE,
            "storage.overwrite",
            "photos",
            "alice/a.txt",
        ),
        case(
            "authenticated",
            ALICE,
            "storage.overwrite",
            "photos",
            "bob/b.txt",
        ),
        case(
            "authenticated",
            ALICE,
            "storage.overwrite",
            "photos",
            "alice/fresh.txt",
        ),
        case(
            "authenticated",
            ALICE,
            "storage.download",
            "photos",
            "alice/a.txt",
        ),
        case(
            "authenticated",
            ALICE,
            "storage.download",
            "photos",
            "bob/b.txt",
        ),
        case("anon", None, "storage.download", "open", "x.txt"),
        case("anon", None, "storage.download", "photos", "alice/a.txt"),
        case(
            "authenticated",
            ALICE,
            "storage.download",
            "photos",
            "alice/none.txt",
        ),
        case(
            "authenticated",
            ALICE,
            "storage.info",
            "photos",
            "alice/a.txt",
        ),
        case(
            "authenticated",
            BOB,
            "storage.info",
            "photos",
            "alice/a.txt",
        ),
        case(
            "authenticated",
            BOB,
            "storage.delete",
            "photos",
            "alice/keep.txt",
        ),
        case(
            "authenticated",
            ALICE,
            "storage.delete",
            "photos",
            "alice/del.txt",
        ),
        Case {
            to: "alice/moved.txt",
            ..case(
                "authenticated",
                ALICE,
                "storage.move",
                "photos",
                "alice/mv.txt",
            )
        },
        Case {
            to: "alice/stolen.txt",
            ..case(
                "authenticated",
                ALICE,
                "storage.move",
                "photos",
                "bob/b.txt",
            )
        },
        Case {
            to: "alice/copy.txt",
            ..case(
                "authenticated",
                ALICE,
                "storage.copy",
                "photos",
                "alice/a.txt",
            )
        },
        Case {
            to: "bob/copy.txt",
            ..case(
                "authenticated",
                ALICE,
                "storage.copy",
                "photos",
                "alice/a.txt",
            )
        },
        case("authenticated", CAROL, "storage.info", "open", "x.txt"),
        case("authenticated", CAROL, "storage.download", "open", "x.txt"),
        Case {
            claims: Some(r#"{"team":"red"}"#),
            ..case("authenticated", CAROL, "storage.download", "open", "x.txt")
        },
        Case {
            claims: Some(r#"{"team":"blue"}"#),
            ..case("authenticated", CAROL, "storage.download", "open", "x.txt")
        },
        case(
            "authenticated",
            ALICE,
            "storage.bucket.create",
            "alice-stuff",
            "",
        ),
        case("authenticated", ALICE, "storage.bucket.create", "bobs", ""),
        case("anon", None, "storage.bucket.get", "photos", ""),
        case("authenticated", ALICE, "storage.bucket.get", "photos", ""),
        case(
            "authenticated",
            ALICE,
            "storage.bucket.delete",
            "photos",
            "",
        ),
        case("service_role", None, "storage.bucket.delete", "photos", ""),
    ];
    let mut mismatches = Vec::new();
    for case in &cases {
        let report = ask(&server, case).await;
        let expected = status_of(report["outcome"].as_str().unwrap());
        assert_eq!(report["allowed"], json!(expected == 200), "{}", report);
        let actual = really(&server, case).await;
        if expected != actual {
            mismatches.push(format!(
                "{} {:?} {} {}/{}: tester {expected}, API {actual}\n{report:#}",
                case.role, case.sub, case.op, case.bucket, case.path
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[tokio::test]
async fn the_report_names_the_policies_that_passed_and_failed() {
    let server = server().await;
    // Another user's folder: own_insert fails, no_exe passes.
    let report = ask(
        &server,
        &case(
            "authenticated",
            ALICE,
            "storage.upload",
            "photos",
            "bob/x.png",
        ),
    )
    .await;
    assert_eq!(report["outcome"], "denied", "{report:#}");
    let check = &report["checks"][0];
    assert_eq!(
        (&check["table"], &check["command"], &check["clause"]),
        (
            &json!("storage.objects"),
            &json!("INSERT"),
            &json!("WITH CHECK")
        ),
        "{report:#}"
    );
    let result = |name: &str| {
        check["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["result"].clone())
    };
    assert_eq!(result("own_insert"), Some(json!("false")), "{report:#}");
    assert_eq!(result("no_exe"), Some(json!("true")), "{report:#}");
    // Policies of other commands or roles are not listed as applying.
    assert_eq!(result("own_read"), None, "{report:#}");
    assert_eq!(result("open_read"), None, "{report:#}");
    assert!(
        report["reason"].as_str().unwrap().contains("own_insert"),
        "{report:#}"
    );

    // The restrictive policy is named when it is the one that refuses.
    let report = ask(
        &server,
        &case(
            "authenticated",
            ALICE,
            "storage.upload",
            "photos",
            "alice/x.exe",
        ),
    )
    .await;
    assert_eq!(report["outcome"], "denied", "{report:#}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("restrictive policy no_exe"),
        "{report:#}"
    );

    // Allowed by the policies, refused by the bucket: the rule is named.
    let report = ask(
        &server,
        &Case {
            size: 1000,
            ..case(
                "authenticated",
                ALICE,
                "storage.upload",
                "photos",
                "alice/x.png",
            )
        },
    )
    .await;
    assert_eq!(report["outcome"], "too_large", "{report:#}");
    assert_eq!(report["checks"][0]["passed"], true, "{report:#}");
    assert!(
        report["bucket_rule"]
            .as_str()
            .unwrap()
            .contains("file_size_limit of 100"),
        "{report:#}"
    );

    // An overwrite runs the UPDATE's four checks; the old row is bob's, so own_update's USING
    // fails on it, while on the new row (owned by the writer) it passes as the WITH CHECK.
    let report = ask(
        &server,
        &case(
            "authenticated",
            ALICE,
            "storage.overwrite",
            "photos",
            "bob/b.txt",
        ),
    )
    .await;
    let checks: Vec<String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {}",
                c["command"], c["clause"], c["row"], c["passed"]
            )
        })
        .collect();
    assert_eq!(
        checks,
        [
            "\"UPDATE\" \"USING\" \"the existing row\" false",
            "\"SELECT\" \"USING\" \"the existing row\" false",
            "\"UPDATE\" \"WITH CHECK\" \"the new row\" true",
            "\"SELECT\" \"USING\" \"the new row\" false",
        ],
        "{report:#}"
    );

    // storage.operation() is the operation asked about, and claims are the ones given.
    let report = ask(
        &server,
        &case("authenticated", CAROL, "storage.info", "open", "x.txt"),
    )
    .await;
    assert_eq!(report["allowed"], true, "{report:#}");
    assert!(
        report["reason"].as_str().unwrap().contains("info_only"),
        "{report:#}"
    );
    let report = ask(
        &server,
        &case("authenticated", CAROL, "storage.download", "open", "x.txt"),
    )
    .await;
    assert_eq!(report["outcome"], "not_found", "{report:#}");
    assert!(
        report["reason"].as_str().unwrap().starts_with("hidden: "),
        "{report:#}"
    );
    let report = ask(
        &server,
        &Case {
            claims: Some(r#"{"team":"red"}"#),
            ..case("authenticated", CAROL, "storage.download", "open", "x.txt")
        },
    )
    .await;
    assert_eq!(report["allowed"], true, "{report:#}");
    assert!(
        report["reason"].as_str().unwrap().contains("red_team"),
        "{report:#}"
    );

    // service_role bypasses RLS: allowed, and no policy is consulted.
    let report = ask(
        &server,
        &case(
            "service_role",
            None,
            "storage.upload",
            "photos",
            "bob/x.png",
        ),
    )
    .await;
    assert_eq!(report["bypasses_rls"], true, "{report:#}");
    assert_eq!(report["allowed"], true, "{report:#}");
}

#[tokio::test]
async fn the_tester_changes_nothing() {
    let server = server().await;
    let count = || async {
        let client = server.db.admin_client().await;
        let objects: i64 = client
            .query_one("select count(*) from storage.objects", &[])
            .await
            .unwrap()
            .get(0);
        let buckets: i64 = client
            .query_one("select count(*) from storage.buckets", &[])
            .await
            .unwrap()
            .get(0);
        (objects, buckets)
    };
    let before = count().await;
    for case in [
        case(
            "authenticated",
            ALICE,
            "storage.upload",
            "photos",
            "alice/n.png",
        ),
        case(
            "authenticated",
            ALICE,
            "storage.delete",
            "photos",
            "alice/a.txt",
        ),
        Case {
            to: "alice/elsewhere.txt",
            ..case(
                "authenticated",
                ALICE,
                "storage.move",
                "photos",
                "alice/a.txt",
            )
        },
        case(
            "service_role",
            None,
            "storage.delete",
            "photos",
            "bob/b.txt",
        ),
        case(
            "authenticated",
            ALICE,
            "storage.bucket.create",
            "alice-new",
            "",
        ),
    ] {
        let report = ask(&server, &case).await;
        assert_eq!(report["allowed"], true, "{report:#}");
    }
    assert_eq!(count().await, before);
    let status = server
        .request(
            Method::GET,
            "/object/authenticated/photos/alice/a.txt",
            Some(&server.user_key("alice")),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn only_service_role_may_ask() {
    let server = server().await;
    let question = json!({
        "role": "authenticated", "sub": "alice", "operation": "storage.upload",
        "bucket": "photos", "path": "alice/x.png",
    });
    for key in [
        Some(server.user_key("alice")),
        Some(server.anon_key()),
        None,
    ] {
        let (status, body) = json_of(
            server
                .request(Method::POST, "/admin/policy/check", key.as_deref())
                .json(&question)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "AccessDenied", "{body}");
    }
    // Also under /storage/v1, and with the policy list.
    let (status, body) = json_of(
        server
            .request(
                Method::POST,
                "/storage/v1/admin/policy/check",
                Some(&server.service_key()),
            )
            .json(&question)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body["allowed"]), (200, &json!(true)), "{body}");
    let (status, body) = json_of(
        server
            .request(
                Method::GET,
                "/admin/policies?role=anon",
                Some(&server.service_key()),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"open_read"), "{body}");
    assert!(!names.contains(&"own_insert"), "{body}");

    // A role no token may carry, an unknown operation: 403 and 400.
    let (status, body) = json_of(
        server
            .request(Method::POST, "/admin/policy/check", Some(&server.service_key()))
            .json(&json!({ "role": "postgres", "operation": "storage.upload", "bucket": "photos", "path": "x" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = json_of(
        server
            .request(
                Method::POST,
                "/admin/policy/check",
                Some(&server.service_key()),
            )
            .json(&json!({ "operation": "storage.nothing", "bucket": "photos" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn refusals_name_the_operation_role_and_sub_but_not_the_policy() {
    let server = server().await;
    let (status, body) = json_of(
        server
            .request(
                Method::POST,
                "/object/photos/bob/x.png",
                Some(&server.user_key("alice")),
            )
            .header("content-type", "image/png")
            .body("xx")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "AccessDenied", "{body}");
    assert_eq!(body["error"], "Unauthorized", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("new row violates row-level security policy"),
        "{body}"
    );
    assert!(
        message.contains("storage.upload or storage.overwrite as role authenticated, sub alice"),
        "{body}"
    );
    assert!(!message.contains("foldername"), "{body}");
    // Bucket creation refused for anon.
    let (status, body) = json_of(
        server
            .request(Method::POST, "/bucket", None)
            .json(&json!({ "name": "anons" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("storage.bucket.create as role anon, no sub"),
        "{body}"
    );
}

/// `pgstorage policy <args>` on the server's database: (success, stdout, stderr).
fn policy_cli(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let mut command = process::pgstorage(&["policy"]);
    command
        .args(args)
        .arg("--database-url")
        .arg(server.db.admin_url())
        .arg("--request-database-url")
        .arg(server.db.request_url());
    let output = process::run_to_end(command);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_command_line_tester_explains_and_lists() {
    let server = server().await;
    let (ok, out, err) = policy_cli(
        &server,
        &[
            "check",
            "--role",
            "authenticated",
            "--sub",
            "alice",
            "--op",
            "upload",
            "--bucket",
            "photos",
            "--path",
            "bob/x.png",
            "--size",
            "10",
            "--mime",
            "image/png",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with(
            "storage.upload as role authenticated (sub alice) on photos/bob/x.png: DENIED"
        ),
        "{out}"
    );
    assert!(out.contains("[FAIL] own_insert"), "{out}");
    assert!(out.contains("[pass] no_exe"), "{out}");

    let (ok, out, err) = policy_cli(
        &server,
        &[
            "check",
            "--role",
            "authenticated",
            "--sub",
            "alice",
            "--op",
            "storage.download",
            "--bucket",
            "photos",
            "--path",
            "alice/a.txt",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["allowed"], true, "{out}");

    let (ok, out, err) = policy_cli(
        &server,
        &["check", "--op", "storage.nothing", "--bucket", "b"],
    );
    assert!(!ok && err.contains("is not an operation"), "{out}{err}");

    let (ok, out, err) = policy_cli(&server, &["list"]);
    assert!(ok, "{err}");
    assert!(out.contains("storage.objects"), "{out}");
    assert!(
        out.contains("INSERT  own_insert  (permissive, to authenticated)"),
        "{out}"
    );
    assert!(
        out.contains("no_exe  (restrictive, to authenticated)"),
        "{out}"
    );
    let (ok, out, err) = policy_cli(&server, &["list", "--role", "anon"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("open_read") && !out.contains("own_insert"),
        "{out}"
    );
}
