//! `pgstorage bench-sql` (hidden): the pgbench scripts `bench/ceilings` measures the database's
//! ceiling with, built from the request path's own statements.

use crate::config::{BenchRequest, BenchSqlArgs};
use crate::db;

/// Prints a pgbench script of the transactions a request runs, built from the statements the
/// request path itself uses (so the ceiling `bench/ceilings` measures follows the server's SQL).
/// Parameters become SQL literals, or pgbench variables where each transaction needs its own.
pub(super) fn bench_sql(args: &BenchSqlArgs) -> anyhow::Result<()> {
    use crate::core::Operation;
    use crate::core::objects::{INSERT_ROW, PROBE_INSERT, READ_OBJECT, STAGE_KEY};
    let lit = |value: &str| format!("'{}'", value.replace('\'', "''"));
    let bucket = lit(&args.bucket);
    let prefix = lit(&args.prefix);
    let identity = |operation: Operation, name: &str| {
        // The path holds the object's name, which varies: built in SQL like the name.
        let path = args.path.replace("{bucket}", &args.bucket);
        let path = match path.split_once("{name}") {
            Some((before, after)) => format!("({} || {name} || {})", lit(before), lit(after)),
            None => lit(&path),
        };
        render(
            db::SET_IDENTITY,
            &[
                lit(&args.role),
                lit(&args.claims),
                lit(&args.sub),
                lit(operation.as_str()),
                lit(if operation == Operation::Download {
                    "GET"
                } else {
                    "POST"
                }),
                path,
                lit(&args.headers),
                lit(""),
            ],
        )
    };
    let owner = lit(&args.sub);
    // A fresh name and key per transaction: the client's id and a random number.
    let new_name = format!("({prefix} || 'pgb-' || :client_id::text || '-' || :r::text)");
    let new_key = "md5(:client_id::text || '-' || :r::text)".to_string();
    let metadata = lit(
        r#"{"eTag": "\"0f343b0931126a20f133d67c2b018a3b\"", "size": 1024, "mimetype": "application/octet-stream", "cacheControl": "no-cache", "lastModified": "2026-12-01T00:00:00.000Z", "contentLength": 1024, "httpStatusCode": 200, "sha256": "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"}"#,
    );
    let lease = "3600".to_string();
    let mut script = Vec::new();
    match args.request {
        BenchRequest::Get => {
            anyhow::ensure!(args.objects > 0, "--objects must be at least 1");
            let name = format!("({prefix} || :n::text || '.bin')");
            script.push(format!("\\set n random(1, {})", args.objects));
            script.push("begin;".into());
            script.push(format!("{};", identity(Operation::Download, &name)));
            script.push(format!("{};", render(READ_OBJECT, &[bucket, name.clone()])));
            script.push("commit;".into());
        }
        BenchRequest::Upload => {
            script.push("\\set r random(1, 1000000000000)".into());
            script.push("begin;".into());
            script.push(format!("{};", identity(Operation::Upload, &new_name)));
            script.push("savepoint write_probe;".into());
            script.push(format!(
                "{};",
                render(
                    PROBE_INSERT,
                    &[
                        bucket.clone(),
                        new_name.clone(),
                        owner.clone(),
                        lit("{}"),
                        "null".into()
                    ]
                )
            ));
            script.push("rollback to savepoint write_probe;".into());
            script.push(format!(
                "{};",
                render(STAGE_KEY, &[new_key.clone(), lease.clone()])
            ));
            script.push("commit;".into());
            script.push("begin;".into());
            script.push(format!("{};", identity(Operation::Upload, &new_name)));
            script.push(format!(
                "{};",
                render(
                    INSERT_ROW,
                    &[
                        bucket,
                        new_name,
                        owner,
                        new_key,
                        metadata,
                        "null".into(),
                        "gen_random_uuid()".into()
                    ]
                )
            ));
            script.push("commit;".into());
        }
        BenchRequest::Insert => {
            script.push("\\set r random(1, 1000000000000)".into());
            script.push("begin;".into());
            script.push(format!("{};", identity(Operation::Upload, &new_name)));
            script.push(format!("{};", render(STAGE_KEY, &[new_key.clone(), lease])));
            script.push(format!(
                "{};",
                render(
                    INSERT_ROW,
                    &[
                        bucket,
                        new_name,
                        owner,
                        new_key,
                        metadata,
                        "null".into(),
                        "gen_random_uuid()".into()
                    ]
                )
            ));
            script.push("commit;".into());
        }
    }
    for line in &script {
        if let Some(stray) = stray_variable(line) {
            anyhow::bail!(
                "a literal holds ':{stray}', which pgbench would read as a variable; \
                 pass values without it"
            );
        }
        println!("{line}");
    }
    Ok(())
}

/// `sql` with `$1`, `$2`, ... replaced by `args` (SQL expressions), highest number first so
/// that `$1` does not eat the start of `$10`.
fn render(sql: &str, args: &[String]) -> String {
    let mut out = sql.to_string();
    for (i, arg) in args.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), arg);
    }
    out
}

/// A `:name` in `line` that is not one of the variables the script sets (pgbench substitutes
/// variables everywhere, literals included).
fn stray_variable(line: &str) -> Option<String> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b':' {
            if bytes.get(i + 1) == Some(&b':') {
                i += 2;
                continue;
            }
            let name: String = line[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let starts = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if starts && !["n", "r", "client_id"].contains(&name.as_str()) {
                return Some(name);
            }
        }
        i += 1;
    }
    None
}
