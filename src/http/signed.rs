//! Signed URLs: `/object/sign/...` (download) and `/object/upload/sign/...` (upload).
//!
//! Signing runs as the caller, under Row Level Security (operations `storage.sign` and
//! `storage.sign_upload`); the token then carries that decision, so using a signed URL needs no
//! credentials and runs with privilege — but only on the one object, for the one scope, until
//! the token expires. URLs in answers are relative and already carry `?token=`. Their path is
//! left as Supabase writes it (clients encode spaces and non-ASCII themselves; storage-js runs it
//! through `encodeURI`), except for the characters that would otherwise end or corrupt the path —
//! `%`, `?`, `#` and `\` — which are percent-encoded so the URL works as given.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::identity::headers_json;
use super::json::JsonBody;
use super::objects::{serve_object, upsert_header};
use super::openapi::{ObjectPath, SignedUpload, SignedUrl, SignedUrlEntry, Stored};
use super::upload_body;
use super::{ApiError, AppState, CallerExt};
use crate::auth::Identity;
use crate::auth::signed_url::{
    self, MAX_EXPIRES_IN, Scope, SignedToken, SignedUrlError, UPLOAD_URL_LIFETIME, UploadGrant,
};
use crate::core::objects::SignedUse;
use crate::core::{Caller, Error};

/// `<bucket>/<name>` as a URL path (see the module documentation): only what would end or
/// corrupt the path is encoded; everything else stays as written.
fn url_path(bucket: &str, name: &str) -> String {
    let encode = |text: &str| {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '%' => out.push_str("%25"),
                '?' => out.push_str("%3F"),
                '#' => out.push_str("%23"),
                '\\' => out.push_str("%5C"),
                c => out.push(c),
            }
        }
        out
    };
    format!("{}/{}", encode(bucket), encode(name))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_one, signed_download))
        .routes(routes!(sign_many))
        .routes(routes!(sign_upload, signed_upload))
}

impl From<SignedUrlError> for ApiError {
    fn from(error: SignedUrlError) -> Self {
        let code = match error {
            SignedUrlError::Missing | SignedUrlError::Invalid(_) => "InvalidJWT",
            SignedUrlError::WrongObject | SignedUrlError::WrongScope { .. } => "InvalidSignature",
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, code, error.to_string())
    }
}

fn internal(error: anyhow::Error) -> ApiError {
    ApiError::from(Error::Internal(error))
}

/// `expiresIn`: whole seconds, as a number or a numeric string (storage3 sends a string).
fn expires_in(value: Option<&Value>) -> Result<Duration, ApiError> {
    let seconds = match value {
        Some(Value::Number(n)) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_EXPIRES_IN as f64)
                .map(|f| f as u64)
        }),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match seconds {
        Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(ApiError::bad_request(format!(
            "expiresIn must be a whole number of seconds from 1 to {MAX_EXPIRES_IN}, got {}",
            value.map_or_else(|| "nothing".to_string(), Value::to_string)
        ))),
    }
}

/// The caller a signed URL's use runs as: the server itself (the signer's policies were checked
/// when signing), with the request's facts.
fn privileged_caller(method: &Method, uri: &Uri, headers: &HeaderMap) -> Caller {
    Caller {
        identity: Identity::service(),
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers_json(headers),
    }
}

fn verify(
    state: &AppState,
    query: &HashMap<String, String>,
    bucket: &str,
    name: &str,
    scope: Scope,
) -> Result<SignedToken, ApiError> {
    Ok(signed_url::verify(
        state.auth.keys(),
        query.get("token").map(String::as_str),
        bucket,
        name,
        scope,
    )?)
}

/// How long the URL lives, and optionally the rendition it serves.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignOne {
    /// Whole seconds, as a number or numeric text.
    #[schema(value_type = Object)]
    expires_in: Option<Value>,
    /// Image transformation parameters (storage-js `createSignedUrl(path, n, {transform})`):
    /// the URL is then a rendition URL carrying them.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    transform: Option<Value>,
}

#[utoipa::path(post, path = "/object/sign/{bucket}/{*path}", tag = "signed", params(
        ("bucket" = String, Path, description = "The bucket's id", example = "x"),
        ("path" = String, Path, description = "The object's name (may contain `/`)", example = "x"),),
    request_body = SignOne,
    responses((status = 200, description = "The signed URL", body = SignedUrl)))]
async fn sign_one(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path((bucket, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<SignOne>,
) -> Result<Json<Value>, ApiError> {
    let expires = expires_in(body.expires_in.as_ref())?;
    let transform = match body.transform.as_ref().filter(|t| !t.is_null()) {
        Some(t) => Some(crate::transform::Params::from_json(t)?.canonical()),
        None => None,
    };
    state
        .storage
        .authorize_sign(&caller, &bucket, &name)
        .await?;
    if let Some(transform) = transform {
        let token = signed_url::sign_download_transformed(
            state.auth.keys(),
            &bucket,
            &name,
            &transform,
            expires,
        )
        .map_err(internal)?;
        return Ok(Json(json!({
            "signedURL": format!("/render/image/sign/{}?token={token}", url_path(&bucket, &name)),
        })));
    }
    let token =
        signed_url::sign_download(state.auth.keys(), &bucket, &name, expires).map_err(internal)?;
    Ok(Json(json!({
        "signedURL": format!("/object/sign/{}?token={token}", url_path(&bucket, &name)),
    })))
}

/// How long the URLs live, and the names to sign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignMany {
    /// Whole seconds, as a number or numeric text.
    #[schema(value_type = Object)]
    expires_in: Option<Value>,
    paths: Vec<String>,
}

#[utoipa::path(post, path = "/object/sign/{bucket}", tag = "signed",
    params(("bucket" = String, Path, description = "The bucket's id", example = "x")),
    request_body = SignMany,
    responses((status = 200, description = "One entry per path, in order", body = [SignedUrlEntry])))]
/// Batch signing: one entry per requested path, in order; a path the caller may not sign gets an
/// error entry rather than failing the batch.
async fn sign_many(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(bucket): Path<String>,
    JsonBody(body): JsonBody<SignMany>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let expires = expires_in(body.expires_in.as_ref())?;
    let allowed = state
        .storage
        .authorize_sign_many(&caller, &bucket, &body.paths)
        .await?;
    let mut answer = Vec::with_capacity(body.paths.len());
    for (name, allowed) in body.paths.iter().zip(allowed) {
        answer.push(if allowed {
            let token = signed_url::sign_download(state.auth.keys(), &bucket, name, expires)
                .map_err(internal)?;
            json!({
                "error": null,
                "path": name,
                "signedURL": format!("/object/sign/{}?token={token}", url_path(&bucket, name)),
            })
        } else {
            json!({
                "error": "Either the object does not exist or you do not have access to it",
                "path": name,
                "signedURL": null,
            })
        });
    }
    Ok(Json(answer))
}

#[utoipa::path(get, path = "/object/sign/{bucket}/{*path}", tag = "signed", security(()), params(
        ObjectPath,
        ("token" = String, Query, description = "The signed token"),
        ("download" = Option<String>, Query, description = "Send as an attachment, with this file name (empty: the object's)"),
    ),
    responses(
        (status = 200, description = "The object's bytes", body = String, content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", body = String, content_type = "application/octet-stream"),
        (status = 304, description = "Not modified"),
    ))]
/// GET with a download token: served exactly as a normal download (headers, Range,
/// conditional requests, `?download=`), the row read with privilege.
async fn signed_download(
    State(state): State<AppState>,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = verify(&state, &query, &bucket, &name, Scope::Download)?;
    let mut caller = privileged_caller(&method, &uri, &headers);
    if let Some(signer) = &token.signer {
        // Signed in the database (storage.get_file): the signer's policies decide again, and
        // its role must be one this server lets requests assume.
        caller.identity = state.auth.authorize(Identity {
            role: signer.role.clone(),
            claims: signer.claims(),
        })?;
    }
    serve_object(
        &state,
        &caller,
        &token.bucket,
        &token.name,
        &query,
        &headers,
    )
    .await
}

#[utoipa::path(post, path = "/object/upload/sign/{bucket}/{*path}", tag = "signed", params(
        ("bucket" = String, Path, description = "The bucket's id", example = "x"),
        ("path" = String, Path, description = "The object's name (may contain `/`)", example = "x"),),
    responses((status = 200, description = "The signed upload URL", body = SignedUpload)))]
/// Signs an upload URL for the caller, valid for [`UPLOAD_URL_LIFETIME`]. Takes no body
/// (storage3 sends none, storage-js sends `{}`); `x-upsert: true` makes an upsert token.
async fn sign_upload(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let upsert = upsert_header(&headers);
    state
        .storage
        .authorize_sign_upload(&caller, &bucket, &name, upsert)
        .await?;
    let grant = UploadGrant {
        id: uuid::Uuid::new_v4().to_string(),
        owner: caller.owner(),
        role: Some(caller.identity.role.clone()),
        upsert,
    };
    // Kept a little past the token's own expiry; the collector forgets it after that.
    let recorded_until =
        chrono::Utc::now() + UPLOAD_URL_LIFETIME + std::time::Duration::from_secs(60);
    state
        .storage
        .remember_upload_signer(&grant.id, &caller.identity, recorded_until)
        .await?;
    let token = signed_url::sign_upload(
        state.auth.keys(),
        &bucket,
        &name,
        &grant,
        UPLOAD_URL_LIFETIME,
    )
    .map_err(internal)?;
    Ok(Json(json!({
        "url": format!("/object/upload/sign/{}?token={token}", url_path(&bucket, &name)),
        "token": token,
    })))
}

#[utoipa::path(put, path = "/object/upload/sign/{bucket}/{*path}", tag = "signed", security(()), params(
        ObjectPath,
        ("token" = String, Query, description = "The signed token"),
    ),
    request_body(description = "The bytes (their type in Content-Type), or a form whose file part holds them",
        content((String = "application/octet-stream"), ("multipart/form-data"))),
    responses((status = 200, description = "Stored", body = Stored)))]
/// PUT with an upload token: the full upload protocol, owned by the signer, with the token's
/// upsert (the request's `x-upsert` is ignored). No Authorization header is needed. What the
/// token allows is checked again at use time against what exists then (see
/// `core::signed_writes`): an overwrite needs the signer's right to overwrite, and a token
/// without upsert uploads once.
async fn signed_upload(
    State(state): State<AppState>,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let token = verify(&state, &query, &bucket, &name, Scope::Upload)?;
    let Some(grant) = token.upload else {
        return Err(internal(anyhow::anyhow!(
            "an upload token without its grant"
        )));
    };
    let caller = privileged_caller(&method, &uri, &headers);
    let signed = SignedUse {
        token_id: grant.id.clone(),
        signer: Caller {
            identity: Identity {
                role: grant.role.clone().unwrap_or_else(|| Identity::ANON.into()),
                claims: grant.claims_in_token(),
            },
            ..caller.clone()
        },
        once: !grant.upsert,
        expires_at: chrono::DateTime::from_timestamp(
            i64::try_from(token.expires_at).unwrap_or(i64::MAX),
            0,
        )
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
        used: false,
    };
    let upload = upload_body::parse(&headers, body).await?.into_upload(
        token.bucket,
        token.name,
        grant.upsert,
        grant.owner,
    );
    let stored = state.storage.upload_signed(&caller, upload, signed).await?;
    Ok(Json(json!({
        "Id": stored.id,
        "Key": format!("{}/{}", stored.bucket, stored.name),
    })))
}
