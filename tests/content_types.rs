//! Stored content cannot script the storage origin: a content type is exactly one valid media
//! type on the way in (else 400, nothing stored), and on the way out every answer is sandboxed
//! and not sniffable, while types a browser could execute are also attachments. The stored type
//! itself is served back unchanged, as API clients expect.

mod common;
mod object_helpers;

use common::{TestServer, json_of};
use object_helpers::{call, enc, journal, row, stored_files};
use reqwest::Method;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use serde_json::{Value, json};

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn server_with_bucket(bucket: &str, public: bool) -> (TestServer, String) {
    let server = TestServer::start().await;
    server.create_bucket(bucket, public).await;
    let key = server.service_key();
    (server, key)
}

/// A raw upload with `content_type` as its Content-Type header.
async fn upload_typed(
    server: &TestServer,
    key: &str,
    name: &str,
    content_type: &str,
) -> (u16, Value) {
    json_of(
        call(
            server,
            Method::POST,
            &format!("/object/docs/{}", enc(name)),
            Some(key),
        )
        .header(CONTENT_TYPE, content_type)
        .body("<script>alert(document.domain)</script>")
        .send()
        .await
        .unwrap(),
    )
    .await
}

/// Asserts a 400 whose message says what is wrong with the type, and that nothing was stored.
async fn assert_refused(server: &TestServer, name: &str, status: u16, body: &Value, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("content type"), "{what}: {message}");
    assert!(row(server, "docs", name).await.is_none(), "{what}");
    assert_eq!(stored_files(server).await, 0, "{what}");
    assert!(journal(server).await.is_empty(), "{what}");
}

#[tokio::test]
async fn bad_content_types_are_refused_with_400_on_every_way_in() {
    let (server, key) = server_with_bucket("docs", false).await;
    // Raw uploads: lists, and anything that is not type/subtype with parameters.
    for bad in [
        "image/png, text/html",
        "image/png,text/html",
        "text/html; charset=utf-8, image/png",
        "png",
        "image/",
        "image/png text/html",
        "text/plain; charset",
    ] {
        let (status, body) = upload_typed(&server, &key, "a.bin", bad).await;
        assert_refused(&server, "a.bin", status, &body, bad).await;
    }
    // Multipart forms: the contentType field may carry what no header can (CR/LF, NUL).
    for bad in [
        "text/html\r\nX-Injected: 1",
        "text/plain\nContent-Disposition: inline",
        "image/png\0",
        "image/png, text/html",
    ] {
        let form = reqwest::multipart::Form::new()
            .text("contentType", bad.to_string())
            .part(
                "",
                reqwest::multipart::Part::bytes(b"<svg onload=alert(1)>".to_vec()),
            );
        let (status, body) = json_of(
            call(&server, Method::POST, "/object/docs/form.bin", Some(&key))
                .multipart(form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_refused(&server, "form.bin", status, &body, &format!("{bad:?}")).await;
    }
    // A signed upload URL.
    let (status, signed) = json_of(
        call(
            &server,
            Method::POST,
            "/object/upload/sign/docs/signed.bin",
            Some(&key),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    let url = signed["url"].as_str().unwrap().to_string();
    let (status, body) = json_of(
        call(&server, Method::PUT, &url, None)
            .header(CONTENT_TYPE, "image/png, text/html")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&server, "signed.bin", status, &body, "signed upload").await;
    // A valid type goes through a signed URL.
    let (status, signed) = json_of(
        call(
            &server,
            Method::POST,
            "/object/upload/sign/docs/fine.bin",
            Some(&key),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{signed}");
    let url = signed["url"].as_str().unwrap().to_string();
    let (status, body) = json_of(
        call(&server, Method::PUT, &url, None)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_copy_never_stores_an_invalid_type() {
    let (server, key) = server_with_bucket("docs", false).await;
    let (status, body) = upload_typed(&server, &key, "src.txt", "text/plain").await;
    assert_eq!(status, 200, "{body}");
    // A row from before types were validated (only a superuser can still write one).
    server
        .db
        .sql(
            "update storage.objects set metadata = jsonb_set(metadata, '{mimetype}', \
                 '\"image/png, text/html\"') where name = 'src.txt'",
        )
        .await;
    let (status, body) = json_of(
        call(&server, Method::POST, "/object/copy", Some(&key))
            .json(&json!({"bucketId": "docs", "sourceKey": "src.txt", "destinationKey": "dst.txt"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(row(&server, "docs", "dst.txt").await.is_none());
}

/// GET (authenticated and public routes) and HEAD of `name`, checking the protective headers
/// on each; returns the GET's Content-Type and Content-Disposition.
async fn served(server: &TestServer, key: &str, name: &str) -> (String, String) {
    let mut answers = Vec::new();
    for (method, route, credentials) in [
        (Method::GET, "authenticated", Some(key)),
        (Method::HEAD, "authenticated", Some(key)),
        (Method::GET, "public", None),
    ] {
        let response = call(
            server,
            method.clone(),
            &format!("/object/{route}/docs/{}", enc(name)),
            credentials,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 200, "{method} {route} {name}");
        // PDF aside: Chromium will not show a PDF in a sandboxed document.
        let sandbox = if name.ends_with(".pdf") {
            ""
        } else {
            "sandbox"
        };
        assert_eq!(
            header(&response, "content-security-policy"),
            sandbox,
            "{method} {route} {name}"
        );
        assert_eq!(
            header(&response, "x-content-type-options"),
            "nosniff",
            "{method} {route} {name}"
        );
        answers.push((
            header(&response, CONTENT_TYPE),
            header(&response, CONTENT_DISPOSITION),
        ));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "{name}: {answers:?}"
    );
    answers.swap_remove(0)
}

#[tokio::test]
async fn active_content_is_served_sandboxed_as_an_attachment_with_its_type() {
    let (server, key) = server_with_bucket("docs", true).await;
    server
        .db
        .sql(
            "create policy public_reads on storage.objects for select to anon \
                 using (bucket_id = 'docs')",
        )
        .await;
    for (name, content_type) in [
        ("page.html", "text/html"),
        ("page2.html", "TEXT/HTML; charset=utf-8"),
        ("page.xhtml", "application/xhtml+xml"),
        ("image.svg", "image/svg+xml"),
        ("feed.xml", "text/xml"),
        ("data.xml", "application/xml"),
        ("app.js", "text/javascript"),
        ("app2.js", "application/javascript"),
        ("style.xsl", "text/xsl"),
        ("mystery.bin", "application/x-something-new"),
    ] {
        let (status, body) = upload_typed(&server, &key, name, content_type).await;
        assert_eq!(status, 200, "{content_type}: {body}");
        let (served_type, disposition) = served(&server, &key, name).await;
        assert_eq!(
            served_type, content_type,
            "the stored type is served unchanged"
        );
        assert!(
            disposition.starts_with("attachment") && disposition.contains(name),
            "{content_type}: {disposition:?}"
        );
    }
    // Inert types stay inline (still sandboxed and not sniffable).
    for (name, content_type) in [
        ("photo.png", "image/png"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("clip.mp4", "video/mp4"),
        ("report.pdf", "application/pdf"),
        ("data.json", "application/json"),
    ] {
        let (status, body) = upload_typed(&server, &key, name, content_type).await;
        assert_eq!(status, 200, "{content_type}: {body}");
        let (served_type, disposition) = served(&server, &key, name).await;
        assert_eq!(served_type, content_type);
        assert_eq!(disposition, "", "{content_type}");
    }
    // ?download= still names the file the client asked for.
    let response = call(
        &server,
        Method::GET,
        "/object/authenticated/docs/page.html?download=x.html",
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    assert!(header(&response, CONTENT_DISPOSITION).contains("x.html"));
    assert_eq!(header(&response, CONTENT_TYPE), "text/html");
}

#[tokio::test]
async fn a_stored_type_that_is_not_one_media_type_is_served_as_opaque_bytes() {
    let (server, key) = server_with_bucket("docs", false).await;
    for (name, stored) in [
        ("list.png", "image/png, text/html"),
        ("crlf.html", "text/html\r\nSet-Cookie: a=b"),
        ("none", ""),
    ] {
        let (status, body) = upload_typed(&server, &key, name, "text/plain").await;
        assert_eq!(status, 200, "{body}");
        // Rows from before types were validated (only a superuser can still write one).
        let client = server.db.admin_client().await;
        client
            .execute(
                "update storage.objects set metadata = case when $2 = '' then metadata - 'mimetype' \
                 else jsonb_set(metadata, '{mimetype}', to_jsonb($2::text)) end where name = $1",
                &[&name, &stored],
            )
            .await
            .unwrap();
        let response = call(
            &server,
            Method::GET,
            &format!("/object/authenticated/docs/{name}"),
            Some(&key),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, CONTENT_TYPE),
            "application/octet-stream",
            "{stored:?}"
        );
        assert_eq!(header(&response, "content-security-policy"), "sandbox");
        assert_eq!(header(&response, "set-cookie"), "");
    }
}

#[tokio::test]
async fn allowed_mime_types_compare_the_parsed_media_type() {
    let server = TestServer::start().await;
    let key = server.service_key();
    let (status, body) = json_of(
        call(&server, Method::POST, "/bucket", Some(&key))
            .json(&json!({"name": "docs", "allowed_mime_types": ["image/png", "text/*"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for allowed in [
        "image/png",
        "IMAGE/PNG",
        "image/png; foo=bar",
        "Text/Plain;charset=utf-8",
    ] {
        let (status, body) = upload_typed(&server, &key, &format!("ok/{allowed}"), allowed).await;
        assert_eq!(status, 200, "{allowed}: {body}");
    }
    for refused in ["image/jpeg", "application/xhtml+xml", "imagex/png"] {
        let (status, body) = upload_typed(&server, &key, "no", refused).await;
        assert_eq!(status, 415, "{refused}: {body}");
    }
    // A list that starts with an allowed type is not a type at all.
    let (status, body) = upload_typed(&server, &key, "no", "image/png, text/html").await;
    assert_eq!(status, 400, "{body}");
    assert!(row(&server, "docs", "no").await.is_none());
}
