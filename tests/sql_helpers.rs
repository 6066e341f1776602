//! The SQL helpers policies are written with, checked in a real database.

mod common;

use common::TestDb;

async fn text(db: &tokio_postgres::Client, sql: &str) -> Option<String> {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

async fn array(db: &tokio_postgres::Client, sql: &str) -> Option<Vec<String>> {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn filename_foldername_extension() {
    let db = TestDb::new().await;
    let c = db.admin_client().await;
    let cases_filename = [
        ("a/b/c.png", "c.png"),
        ("c.png", "c.png"),
        ("a/b/", ""),
        ("фото/снимок.JPG", "снимок.JPG"),
    ];
    for (name, want) in cases_filename {
        let got = text(&c, &format!("select storage.filename('{name}')")).await;
        assert_eq!(got.as_deref(), Some(want), "filename({name})");
    }
    let cases_folder: [(&str, &[&str]); 5] = [
        ("a/b/c.png", &["a", "b"]),
        ("c.png", &[]),
        ("a/b/", &["a", "b"]),
        ("user-1/avatar.png", &["user-1"]),
        ("фото/2024/снимок.JPG", &["фото", "2024"]),
    ];
    for (name, want) in cases_folder {
        let got = array(&c, &format!("select storage.foldername('{name}')")).await;
        assert_eq!(
            got,
            Some(want.iter().map(|s| s.to_string()).collect()),
            "foldername({name})"
        );
    }
    let cases_ext = [
        ("a/b/c.png", "png"),
        ("a/b.tar.gz", "gz"),
        ("a/b", ""),
        ("a.dir/b", ""),
        ("a/b/", ""),
        (".bashrc", ""),
        ("фото/снимок.JPG", "JPG"),
    ];
    for (name, want) in cases_ext {
        let got = text(&c, &format!("select storage.extension('{name}')")).await;
        assert_eq!(got.as_deref(), Some(want), "extension({name})");
    }
    // The generated column and the helper agree.
    let same: bool = c
        .query_one(
            "select (string_to_array('a/b/c.png', '/'))[1:2] = storage.foldername('a/b/c.png')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same);
}

#[tokio::test]
async fn operation_helpers_accept_names_with_or_without_prefix() {
    let db = TestDb::new().await;
    let c = db.admin_client().await;
    c.batch_execute("begin; select set_config('storage.operation', 'storage.overwrite', true)")
        .await
        .unwrap();
    let check = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) }
    };
    assert_eq!(
        text(&c, "select storage.operation()").await.as_deref(),
        Some("storage.overwrite")
    );
    assert!(check("select storage.allow_only_operation('storage.overwrite')").await);
    assert!(check("select storage.allow_only_operation('overwrite')").await);
    assert!(!check("select storage.allow_only_operation('storage.upload')").await);
    assert!(
        check("select storage.allow_any_operation(array['storage.overwrite','storage.move'])")
            .await
    );
    assert!(check("select storage.allow_any_operation(array['move','overwrite'])").await);
    assert!(!check("select storage.allow_any_operation(array['upload','move'])").await);
    assert!(!check("select storage.allow_any_operation('{}')").await);
    c.batch_execute("rollback").await.unwrap();
    // Outside a request there is no operation, and nothing is allowed.
    assert_eq!(text(&c, "select storage.operation()").await, None);
    assert!(!check("select storage.allow_only_operation('upload')").await);
}
