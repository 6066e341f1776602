//! Listing (v1 and v2): one level at a time, paginated, under RLS.

mod common;

use std::collections::BTreeSet;

use common::{TestServer, json_of};
use reqwest::Method;
use serde_json::{Value, json};

/// Object rows written directly (no bytes needed to list them).
async fn fixture(server: &TestServer, bucket: &str, names: &[(&str, &str)]) {
    server.create_bucket(bucket, false).await;
    let client = server.db.admin_client().await;
    for (i, (name, owner)) in names.iter().enumerate() {
        client
            .execute(
                "insert into storage.objects (bucket_id, name, owner_id, metadata, updated_at)
                 values ($1, $2, $3, '{\"size\": 1}', now() - make_interval(secs => $4))",
                &[&bucket, name, owner, &(i as f64)],
            )
            .await
            .unwrap();
    }
}

const TREE: &[(&str, &str)] = &[
    ("a.txt", "u1"),
    ("aal.txt", "u1"),
    ("aal/x.txt", "u1"),
    ("b/1.png", "u1"),
    ("b/2.png", "u1"),
    ("b/deep/3.png", "u1"),
    ("c.txt", "u2"),
    ("d/only-u2.txt", "u2"),
    ("mixed/mine.txt", "u1"),
    ("mixed/theirs.txt", "u2"),
    ("Photo.JPG", "u1"),
    ("фото/снимок.png", "u1"),
];

async fn list(
    server: &TestServer,
    key: &str,
    version: &str,
    bucket: &str,
    body: Value,
) -> (u16, Value) {
    json_of(
        server
            .request(
                Method::POST,
                &format!("/object/{version}/{bucket}"),
                Some(key),
            )
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn names(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn v1_lists_one_level_in_supabases_name_order() {
    let server = TestServer::start().await;
    fixture(&server, "t", TREE).await;
    let key = server.service_key();
    let (status, body) = list(&server, &key, "list", "t", json!({"prefix": ""})).await;
    assert_eq!(status, 200, "{body}");
    // Supabase's order: folders and files interleaved by lower(name) in byte order, a folder
    // placed as its name plus '/' ('.' < '/', so aal.txt comes before aal).
    assert_eq!(
        names(&body),
        [
            "a.txt",
            "aal.txt",
            "aal",
            "b",
            "c.txt",
            "d",
            "mixed",
            "Photo.JPG",
            "фото"
        ]
    );
    let folder = &body.as_array().unwrap()[2];
    assert!(
        folder["id"].is_null() && folder["metadata"].is_null() && folder["updated_at"].is_null()
    );
    let file = &body.as_array().unwrap()[0];
    assert!(file["id"].is_string() && file["metadata"]["size"] == 1);

    // A prefix is a folder, with or without its trailing slash; names are relative to it.
    for prefix in ["b", "b/"] {
        let (_, body) = list(&server, &key, "list", "t", json!({"prefix": prefix})).await;
        assert_eq!(names(&body), ["1.png", "2.png", "deep"]);
    }
    let (_, body) = list(&server, &key, "list", "t", json!({"prefix": "фото"})).await;
    assert_eq!(names(&body), ["снимок.png"]);
}

#[tokio::test]
async fn v1_offset_pages_cover_the_level_once() {
    let server = TestServer::start().await;
    fixture(&server, "t", TREE).await;
    let key = server.service_key();
    let mut seen = Vec::new();
    for offset in (0..12).step_by(4) {
        let (_, body) = list(
            &server,
            &key,
            "list",
            "t",
            json!({"prefix": "", "limit": 4, "offset": offset}),
        )
        .await;
        seen.extend(names(&body));
    }
    assert_eq!(seen.len(), 9);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 9);
    // Descending: the same order reversed.
    let (_, body) = list(
        &server,
        &key,
        "list",
        "t",
        json!({"prefix": "", "sortBy": {"column": "name", "order": "desc"}}),
    )
    .await;
    assert_eq!(
        names(&body),
        [
            "фото",
            "Photo.JPG",
            "mixed",
            "d",
            "c.txt",
            "b",
            "aal",
            "aal.txt",
            "a.txt"
        ]
    );
}

#[tokio::test]
async fn v1_search_is_a_case_insensitive_starts_with() {
    let server = TestServer::start().await;
    fixture(&server, "t", TREE).await;
    let key = server.service_key();
    let (_, body) = list(
        &server,
        &key,
        "list",
        "t",
        json!({"prefix": "", "search": "PHO"}),
    )
    .await;
    assert_eq!(names(&body), ["Photo.JPG"]);
    let (_, body) = list(
        &server,
        &key,
        "list",
        "t",
        json!({"prefix": "", "search": "aa"}),
    )
    .await;
    assert_eq!(names(&body), ["aal.txt", "aal"]);
    let (_, body) = list(
        &server,
        &key,
        "list",
        "t",
        json!({"prefix": "b", "search": "2"}),
    )
    .await;
    assert_eq!(names(&body), ["2.png"]);
}

/// Upper- and lower-case names, folders and files, and two folders that differ only in case.
const MIXED: &[(&str, &str)] = &[
    ("zz.txt", "u1"),
    ("Zeta/x.txt", "u1"),
    ("sub/x.txt", "u1"),
    ("Sub2/y.txt", "u1"),
    ("sub.txt", "u1"),
    ("C.md", "u1"),
    ("c/d.txt", "u1"),
    ("B.txt", "u1"),
    ("a.txt", "u1"),
    ("Docs/1.txt", "u1"),
    ("docs/2.txt", "u1"),
];

#[tokio::test]
async fn v1_interleaves_folders_and_files_whatever_their_case() {
    let server = TestServer::start().await;
    fixture(&server, "t", MIXED).await;
    let key = server.service_key();
    let order = [
        "a.txt", "B.txt", "C.md", "c", "Docs", "sub.txt", "sub", "Sub2", "Zeta", "zz.txt",
    ];
    let (status, body) = list(&server, &key, "list", "t", json!({"prefix": ""})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), order);
    let entries = body.as_array().unwrap();
    assert!(entries[3]["id"].is_null(), "c is a folder: {body}");
    assert!(entries[2]["id"].is_string(), "C.md is a file: {body}");

    // Offset pages follow the same order.
    let mut seen = Vec::new();
    for offset in (0..10).step_by(3) {
        let (_, body) = list(
            &server,
            &key,
            "list",
            "t",
            json!({"prefix": "", "limit": 3, "offset": offset}),
        )
        .await;
        seen.extend(names(&body));
    }
    assert_eq!(seen, order);

    let (_, body) = list(
        &server,
        &key,
        "list",
        "t",
        json!({"prefix": "", "sortBy": {"column": "name", "order": "desc"}}),
    )
    .await;
    let mut reversed = order;
    reversed.reverse();
    // The case-merged folder is named as the first name met: docs/2.txt, walking backwards.
    reversed[5] = "docs";
    assert_eq!(names(&body), reversed);

    // Folders that differ only in case are one folder, and listing it (in either case)
    // shows what both hold, as Supabase does: nothing is hidden.
    for prefix in ["docs", "Docs/", "DOCS"] {
        let (_, body) = list(&server, &key, "list", "t", json!({"prefix": prefix})).await;
        assert_eq!(names(&body), ["1.txt", "2.txt"], "prefix {prefix}");
    }
    let (_, body) = list(
        &server,
        &key,
        "list",
        "t",
        json!({"prefix": "", "search": "SU"}),
    )
    .await;
    assert_eq!(names(&body), ["sub.txt", "sub", "Sub2"]);

    // An offset past everything is an empty page, however large.
    for sort in ["name", "created_at"] {
        let (status, body) = list(
            &server,
            &key,
            "list",
            "t",
            json!({"prefix": "", "offset": i64::MAX, "sortBy": {"column": sort}}),
        )
        .await;
        assert_eq!((status, body), (200, json!([])), "{sort}");
    }

    // A timestamp order keeps the folders first.
    let (_, body) = list(
        &server,
        &key,
        "list",
        "t",
        json!({"prefix": "", "sortBy": {"column": "created_at", "order": "asc"}}),
    )
    .await;
    let listed = names(&body);
    assert_eq!(
        &listed[..6],
        ["Docs", "Sub2", "Zeta", "c", "docs", "sub"],
        "{listed:?}"
    );
}

#[tokio::test]
async fn v1_sorting_by_a_timestamp_puts_folders_first() {
    let server = TestServer::start().await;
    fixture(&server, "t", TREE).await;
    let key = server.service_key();
    // Fixture rows get older as the index grows: a.txt is the newest file.
    let (status, body) = list(
        &server,
        &key,
        "list",
        "t",
        json!({"prefix": "", "sortBy": {"column": "updated_at", "order": "desc"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        names(&body),
        [
            "фото",
            "mixed",
            "d",
            "b",
            "aal",
            "a.txt",
            "aal.txt",
            "c.txt",
            "Photo.JPG"
        ]
    );
}

#[tokio::test]
async fn v2_cursor_pages_cover_everything_once() {
    let server = TestServer::start().await;
    fixture(&server, "t", TREE).await;
    let key = server.service_key();
    let mut cursor: Option<String> = None;
    let (mut folders, mut objects) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let mut body = json!({"prefix": "", "limit": 2, "with_delimiter": true});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let (status, page) = list(&server, &key, "list-v2", "t", body).await;
        assert_eq!(status, 200, "{page}");
        for f in page["folders"].as_array().unwrap() {
            assert!(f["id"].is_null());
            folders.push((
                f["key"].as_str().unwrap().to_string(),
                f["name"].as_str().unwrap().to_string(),
            ));
        }
        objects.extend(names(&page["objects"]));
        if page["hasNext"] == json!(false) {
            assert!(
                page.get("nextCursor").is_none(),
                "no cursor on the last page"
            );
            break;
        }
        cursor = Some(page["nextCursor"].as_str().unwrap().to_string());
    }
    assert_eq!(objects, ["Photo.JPG", "a.txt", "aal.txt", "c.txt"]);
    assert_eq!(
        folders,
        [
            ("aal", "aal/"),
            ("b", "b/"),
            ("d", "d/"),
            ("mixed", "mixed/"),
            ("фото", "фото/")
        ]
        .map(|(k, n)| (k.to_string(), n.to_string()))
    );
}

#[tokio::test]
async fn v2_prefixes_are_raw_and_names_are_full() {
    let server = TestServer::start().await;
    fixture(&server, "t", TREE).await;
    let key = server.service_key();
    let (_, page) = list(
        &server,
        &key,
        "list-v2",
        "t",
        json!({"prefix": "aal", "with_delimiter": true}),
    )
    .await;
    assert_eq!(names(&page["objects"]), ["aal.txt"]);
    assert_eq!(names(&page["folders"]), ["aal/"]);
    // Without a delimiter: every name under the prefix, flat.
    let (_, page) = list(&server, &key, "list-v2", "t", json!({"prefix": "b/"})).await;
    assert_eq!(
        names(&page["objects"]),
        ["b/1.png", "b/2.png", "b/deep/3.png"]
    );
    assert_eq!(page["folders"], json!([]));
    // Descending, paginated.
    let (_, first) = list(
        &server,
        &key,
        "list-v2",
        "t",
        json!({"prefix": "b/", "limit": 2, "sortBy": {"column": "name", "order": "desc"}}),
    )
    .await;
    assert_eq!(names(&first["objects"]), ["b/deep/3.png", "b/2.png"]);
    // Supabase's nextCursorKey: the name of the page's last entry.
    assert_eq!(first["nextCursorKey"], "b/2.png");
    let (_, second) = list(
        &server,
        &key,
        "list-v2",
        "t",
        json!({"prefix": "b/", "limit": 2, "cursor": first["nextCursor"]}),
    )
    .await;
    assert_eq!(names(&second["objects"]), ["b/1.png"]);
    assert_eq!(second["hasNext"], json!(false));
    assert!(second.get("nextCursorKey").is_none(), "{second}");
    let (_, folder_last) = list(
        &server,
        &key,
        "list-v2",
        "t",
        json!({"prefix": "", "limit": 4, "with_delimiter": true}),
    )
    .await;
    assert_eq!(folder_last["nextCursorKey"], "aal/", "{folder_last}");
}

#[tokio::test]
async fn listing_shows_only_what_policies_let_the_caller_see() {
    let server = TestServer::start().await;
    fixture(&server, "t", TREE).await;
    server
        .db
        .sql("create policy mine on storage.objects for select to authenticated using (owner_id = auth.uid())")
        .await;
    let u1 = server.user_key("u1");
    let (_, body) = list(&server, &u1, "list", "t", json!({"prefix": ""})).await;
    // c.txt and d/ hold only u2's objects: neither is listed; mixed/ has one of u1's.
    assert_eq!(
        names(&body),
        ["a.txt", "aal.txt", "aal", "b", "mixed", "Photo.JPG", "фото"]
    );
    let (_, body) = list(&server, &u1, "list", "t", json!({"prefix": "mixed"})).await;
    assert_eq!(names(&body), ["mine.txt"]);
    let (_, page) = list(
        &server,
        &u1,
        "list-v2",
        "t",
        json!({"prefix": "d/", "with_delimiter": true}),
    )
    .await;
    assert_eq!(page["objects"], json!([]));
    // anon has no policy at all.
    let (status, body) = list(
        &server,
        &server.anon_key(),
        "list",
        "t",
        json!({"prefix": ""}),
    )
    .await;
    assert_eq!((status, body), (200, json!([])));
}

#[tokio::test]
async fn bad_listing_requests_are_refused_clearly() {
    let server = TestServer::start().await;
    fixture(&server, "t", TREE).await;
    let key = server.service_key();
    let cases = [
        ("list-v2", json!({"cursor": "not-a-cursor"}), "cursor"),
        (
            "list",
            json!({"prefix": "", "sortBy": {"column": "size"}}),
            "size",
        ),
        (
            "list",
            json!({"prefix": "", "sortBy": {"order": "sideways"}}),
            "sideways",
        ),
        ("list", json!({"prefix": "", "limit": 0}), "limit"),
        ("list", json!({"prefix": "", "offset": -1}), "offset"),
    ];
    for (version, body, word) in cases {
        let (status, answer) = list(&server, &key, version, "t", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(word),
            "{answer}"
        );
    }
    // limit may come as text (storage3 sends strings for numbers elsewhere).
    let (status, body) = list(
        &server,
        &key,
        "list",
        "t",
        json!({"prefix": "", "limit": "2"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_page_reads_about_its_own_size_whatever_it_skips() {
    // A big folder next to small ones. Every row a listing examines passes through the policy,
    // which counts it on a sequence (sequences ignore transactions): an exact measure of the
    // rows a page reads.
    let server = TestServer::start().await;
    server.create_bucket("big", false).await;
    server
        .db
        .sql(
            "insert into storage.objects (bucket_id, name, metadata)
             select 'big', 'huge/' || lpad(i::text, 6, '0') || '.bin', '{}'
             from generate_series(1, 20000) i;
             insert into storage.objects (bucket_id, name, metadata)
             values ('big', 'a.txt', '{}'), ('big', 'z.txt', '{}'), ('big', 'small/x.txt', '{}');
             analyze storage.objects;
             create sequence public.rows_examined;
             grant usage on sequence public.rows_examined to authenticated;
             create policy counted on storage.objects for select to authenticated
               using (nextval('public.rows_examined') > 0);",
        )
        .await;
    let client = server.db.admin_client().await;
    let user = server.user_key("u1");
    let examined = || async {
        client
            .query_one("select last_value from public.rows_examined", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let cost = |version: &'static str, body: Value| {
        let server = &server;
        let user = &user;
        async move {
            let before = examined().await;
            let (status, page) = list(server, user, version, "big", body).await;
            assert_eq!(status, 200, "{page}");
            (page, examined().await - before)
        }
    };

    // v2 at the root: one probe per entry (plus one that finds the end), huge/ jumped over.
    let (page, rows) = cost("list-v2", json!({"prefix": "", "with_delimiter": true})).await;
    assert_eq!(names(&page["objects"]), ["a.txt", "z.txt"]);
    assert_eq!(names(&page["folders"]), ["huge/", "small/"]);
    assert!(rows <= 8, "a 4-entry page examined {rows} rows");

    // v2 in the middle of huge/: a page of 100 from a cursor reads about 100 rows.
    let (first, _) = cost("list-v2", json!({"prefix": "huge/", "limit": 100})).await;
    let (page, rows) = cost(
        "list-v2",
        json!({"prefix": "huge/", "limit": 100, "cursor": first["nextCursor"]}),
    )
    .await;
    assert_eq!(page["objects"].as_array().unwrap().len(), 100);
    assert!(rows <= 110, "a 100-entry page examined {rows} rows");

    // v1 by name: one probe per entry, huge/ jumped over.
    let (body, rows) = cost("list", json!({"prefix": ""})).await;
    assert_eq!(names(&body), ["a.txt", "huge", "small", "z.txt"]);
    assert!(rows <= 10, "a 4-entry v1 page examined {rows} rows");
    let (body, rows) = cost("list", json!({"prefix": "huge", "limit": 100})).await;
    assert_eq!(body.as_array().unwrap().len(), 100);
    assert!(rows <= 110, "a 100-entry v1 page examined {rows} rows");
}
