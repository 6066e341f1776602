//! One handler per TUS request: OPTIONS, POST (creation), HEAD, PATCH, DELETE (termination),
//! each also under `/sign` where the `x-signature` upload token stands in for credentials.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{FromRequestParts, OriginalUri, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::checksum;
use super::protocol::{
    self, CHECKSUM_ALGORITHMS, CHECKSUM_MISMATCH, TUS_EXTENSIONS, TUS_VERSION, bad_request,
};
use crate::auth::signed_url::{self, Scope, UploadGrant};
use crate::core::multipart::{CreateMultipart, MultipartUpload};
use crate::core::{Caller, Error};
use crate::http::{ApiError, AppState, CallerExt, PublicCaller};

/// Every PATCH is a part; TUS lets the client choose their size, so none is too small.
const MIN_PART_SIZE: u64 = 0;

fn response(status: StatusCode) -> axum::http::response::Builder {
    Response::builder().status(status)
}

fn finish(builder: axum::http::response::Builder) -> Result<Response, ApiError> {
    builder
        .body(Body::empty())
        .map_err(|e| ApiError::from(Error::Internal(e.into())))
}

fn http_date(at: DateTime<Utc>) -> String {
    httpdate::fmt_http_date(at.into())
}

/// The protocol's capabilities (TUS `OPTIONS`).
#[utoipa::path(
    options,
    path = "/upload/resumable",
    operation_id = "resumable_options",
    tag = "resumable",
    security(()),
    responses((status = 204, description = "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")),
)]
pub async fn options(State(state): State<AppState>) -> Result<Response, ApiError> {
    finish(
        response(StatusCode::NO_CONTENT)
            .header("tus-version", TUS_VERSION)
            .header("tus-extension", TUS_EXTENSIONS)
            .header("tus-max-size", state.storage.limits().max_file_size)
            .header("tus-checksum-algorithm", CHECKSUM_ALGORITHMS),
    )
}

/// Who a request acts as. A signed request acts as the token's signer (under the signer's
/// policies at the time of each step), limited to what its token grants: one object, the
/// token's upsert flag, and the signer as the object's owner.
struct Access {
    caller: Caller,
    grant: Option<UploadGrant>,
}

async fn access(
    state: &AppState,
    parts: &mut Parts,
    signed: Option<(&str, &str)>,
) -> Result<Access, ApiError> {
    let Some((bucket, name)) = signed else {
        let CallerExt(caller) = CallerExt::from_request_parts(parts, state).await?;
        return Ok(Access {
            caller,
            grant: None,
        });
    };
    let signature = parts
        .headers
        .get("x-signature")
        .and_then(|v| v.to_str().ok());
    let token = signed_url::verify(state.auth.keys(), signature, bucket, name, Scope::Upload)?;
    let Some(grant) = token.upload else {
        return Err(Error::Forbidden("the token does not grant an upload".into()).into());
    };
    // The upload runs as its signer, under the signer's policies as they are when each step
    // happens: a token never outlives the policies that granted it.
    let PublicCaller(mut caller) = PublicCaller::from_request_parts(parts, state).await?;
    caller.identity = state.storage.upload_signer(&grant).await?;
    Ok(Access {
        caller,
        grant: Some(grant),
    })
}

/// `scheme://host` of the request, as the client reached it (a proxy's forwarded headers win).
fn origin(parts: &Parts) -> Option<String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = header("x-forwarded-host")
        .or_else(|| header(header::HOST.as_str()))
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))?;
    let proto = header("x-forwarded-proto").unwrap_or("http");
    Some(format!("{proto}://{host}"))
}

/// Creates an upload (TUS creation; bytes may come with it).
#[utoipa::path(
    post,
    path = "/upload/resumable",
    operation_id = "resumable_create",
    tag = "resumable",
    params(
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
        ("upload-length" = Option<u64>, Header, description = "The object's size in bytes"),
        ("upload-defer-length" = Option<String>, Header, description = "`1`: the size comes later"),
        ("upload-metadata" = Option<String>, Header, description = "`bucketName`, `objectName`, `contentType`, `cacheControl`, `metadata`, each base64"),
        ("x-upsert" = Option<String>, Header, description = "`true`: replace an existing object"),
    ),
    responses((status = 201, description = "Created; Location names the upload")),
)]
pub async fn create(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    create_upload(state, request, false).await
}

/// Creates an upload with a signed upload token.
#[utoipa::path(
    post,
    path = "/upload/resumable/sign",
    operation_id = "resumable_create_signed",
    tag = "resumable",
    security(()),
    params(
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
        ("upload-length" = Option<u64>, Header, description = "The object's size in bytes"),
        ("upload-defer-length" = Option<String>, Header, description = "`1`: the size comes later"),
        ("upload-metadata" = Option<String>, Header, description = "`bucketName`, `objectName`, `contentType`, `cacheControl`, `metadata`, each base64"),
        ("x-signature" = String, Header, description = "The signed upload token from `/object/upload/sign`"),
    ),
    responses((status = 201, description = "Created; Location names the upload")),
)]
pub async fn create_signed(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    create_upload(state, request, true).await
}

async fn create_upload(
    state: AppState,
    request: Request,
    signed: bool,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    protocol::check_version(&parts.headers)?;
    let meta = protocol::parse_metadata(&parts.headers)?;
    let length = protocol::number(&parts.headers, "upload-length")?;
    match (length, protocol::defer_length(&parts.headers)?) {
        (Some(_), true) => {
            return Err(bad_request(
                "send either Upload-Length or Upload-Defer-Length, not both",
            ));
        }
        (None, false) => {
            return Err(bad_request(
                "Upload-Length (or Upload-Defer-Length: 1) is required",
            ));
        }
        _ => {}
    }
    let access = access(
        &state,
        &mut parts,
        signed.then_some((meta.bucket.as_str(), meta.name.as_str())),
    )
    .await?;
    let (upsert, owner) = match &access.grant {
        Some(grant) => (grant.upsert, grant.owner.clone()),
        None => (protocol::upsert(&parts.headers), None),
    };
    // creation-with-upload: the first bytes may come with the POST.
    let with_upload = protocol::content_type_is_offset_stream(&parts.headers);
    let checksum = if with_upload {
        checksum::expected(&parts.headers)?
    } else {
        None
    };
    let upload = state
        .storage
        .create_multipart(
            &access.caller,
            CreateMultipart {
                bucket: meta.bucket.clone(),
                name: meta.name.clone(),
                content_type: meta.content_type,
                cache_control: Some(meta.cache_control),
                user_metadata: meta.user_metadata,
                upsert,
                owner,
                declared_length: length,
                headers: Default::default(),
                checksum_algorithm: None,
            },
        )
        .await?;
    let mut offset = 0;
    if with_upload {
        let content_length = protocol::number(&parts.headers, "content-length")?;
        offset = append(&state, &upload, 0, body, content_length, checksum).await?;
    }
    let mut answer = response(StatusCode::CREATED)
        .header(
            header::LOCATION,
            location(&parts, &upload.bucket, &upload.name, &upload.id),
        )
        .header("upload-offset", offset);
    if length == Some(offset) {
        complete(&state, &access.caller, &upload, offset).await?;
    } else if let Some(expires) = upload.expires_at {
        answer = answer.header("upload-expires", http_date(expires));
    }
    finish(answer)
}

/// The upload URL: the path the creation was posted to, plus the upload's id.
fn location(parts: &Parts, bucket: &str, name: &str, upload_id: &str) -> String {
    // Under `/storage/v1` the router sees the path without its prefix; the client needs it.
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.path(), |original| original.0.path())
        .trim_end_matches('/');
    let id = protocol::encode_id(bucket, name, upload_id);
    match origin(parts) {
        Some(origin) => format!("{origin}{path}/{id}"),
        None => format!("{path}/{id}"),
    }
}

/// Streams one request's bytes into the upload at `offset`; returns the new offset. An empty
/// body adds nothing.
async fn append(
    state: &AppState,
    upload: &MultipartUpload,
    offset: u64,
    body: Body,
    content_length: Option<u64>,
    checksum: Option<checksum::Expected>,
) -> Result<u64, ApiError> {
    if content_length == Some(0) && checksum.is_none() {
        return Ok(offset);
    }
    let body = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()))
        .boxed();
    let (body, mismatch) = match checksum {
        Some(expected) => {
            let (body, flag) = checksum::verified(body, expected);
            (body, Some(flag))
        }
        None => (body, None),
    };
    match state
        .storage
        .append_part_to(upload, offset, body, content_length)
        .await
    {
        Ok(part) => Ok(offset + part.size),
        Err(_) if mismatch.is_some_and(|flag| flag.load(Ordering::SeqCst)) => {
            Err(checksum_mismatch())
        }
        Err(error) => Err(error.into()),
    }
}

fn checksum_mismatch() -> ApiError {
    let status = StatusCode::from_u16(CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(
        status,
        "ChecksumMismatch",
        "Checksum Mismatch",
        "the request's bytes do not match its Upload-Checksum; they were discarded",
    )
}

/// Turns the finished upload into its object, as the caller (policies are checked again).
async fn complete(
    state: &AppState,
    caller: &Caller,
    upload: &MultipartUpload,
    size: u64,
) -> Result<(), ApiError> {
    if size == 0 {
        // An empty object is one empty part.
        let empty = futures::stream::empty().boxed();
        state
            .storage
            .append_part_to(upload, 0, empty, Some(0))
            .await?;
    }
    state
        .storage
        .complete_multipart_uploaded(caller, &upload.id, MIN_PART_SIZE)
        .await?;
    Ok(())
}

/// The upload a URL names, if the request may use it.
async fn open(
    state: &AppState,
    parts: &mut Parts,
    id: &str,
    signed: bool,
) -> Result<(Access, MultipartUpload), ApiError> {
    protocol::check_version(&parts.headers)?;
    let target = protocol::decode_id(id)?;
    let access = access(
        state,
        parts,
        signed.then_some((target.bucket.as_str(), target.name.as_str())),
    )
    .await?;
    let upload = state
        .storage
        .multipart_upload(&access.caller, &target.upload_id)
        .await?;
    if upload.bucket != target.bucket || upload.name != target.name {
        return Err(Error::NoSuchUpload.into());
    }
    if let Some(grant) = &access.grant
        && (grant.owner != upload.owner || grant.upsert != upload.upsert)
    {
        return Err(
            Error::Forbidden("the upload was not created with this signed token".into()).into(),
        );
    }
    Ok((access, upload))
}

#[utoipa::path(
    head,
    path = "/upload/resumable/{id}",
    operation_id = "resumable_head",
    tag = "resumable",
    params(
        ("id" = String, Path, description = "The upload, as the Location of its creation names it"),
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
    ),
    responses((status = 200, description = "Upload-Offset and Upload-Length")),
)]
pub async fn head(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    head_upload(state, request, id, false).await
}

#[utoipa::path(
    head,
    path = "/upload/resumable/sign/{id}",
    operation_id = "resumable_head_signed",
    tag = "resumable",
    security(()),
    params(
        ("id" = String, Path, description = "The upload, as the Location of its creation names it"),
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
        ("x-signature" = String, Header, description = "The signed upload token from `/object/upload/sign`"),
    ),
    responses((status = 200, description = "Upload-Offset and Upload-Length")),
)]
pub async fn head_signed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    head_upload(state, request, id, true).await
}

async fn head_upload(
    state: AppState,
    request: Request,
    id: String,
    signed: bool,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let upload = match open(&state, &mut parts, &id, signed).await {
        Ok((_, upload)) => upload,
        Err(error) => {
            return match completed_size(&state, &mut parts, &id, signed).await {
                Some(size) => finish(
                    response(StatusCode::OK)
                        .header(header::CACHE_CONTROL, "no-store")
                        .header("upload-offset", size)
                        .header("upload-length", size),
                ),
                None => Err(error),
            };
        }
    };
    let mut answer = response(StatusCode::OK)
        .header(header::CACHE_CONTROL, "no-store")
        .header("upload-offset", upload.size)
        .header(
            "upload-metadata",
            protocol::render_metadata(
                &upload.bucket,
                &upload.name,
                &upload.content_type,
                &upload.cache_control,
                upload.user_metadata.as_ref(),
            ),
        );
    answer = match upload.declared_length {
        Some(length) => answer.header("upload-length", length),
        None => answer.header("upload-defer-length", "1"),
    };
    if let Some(expires) = upload.expires_at {
        answer = answer.header("upload-expires", http_date(expires));
    }
    finish(answer)
}

/// The size of the object a finished upload wrote, when the caller may see it and it is still
/// that upload's object. HEAD then reports the upload complete (offset = length), as Supabase
/// does, so a client that lost the answer to its last PATCH finishes instead of starting over.
async fn completed_size(
    state: &AppState,
    parts: &mut Parts,
    id: &str,
    signed: bool,
) -> Option<u64> {
    let target = protocol::decode_id(id).ok()?;
    let access = access(
        state,
        parts,
        signed.then_some((target.bucket.as_str(), target.name.as_str())),
    )
    .await
    .ok()?;
    state
        .storage
        .completed_upload_size(
            &access.caller,
            &target.bucket,
            &target.name,
            &target.upload_id,
        )
        .await
        .ok()
        .flatten()
}

#[utoipa::path(
    patch,
    path = "/upload/resumable/{id}",
    operation_id = "resumable_patch",
    tag = "resumable",
    params(
        ("id" = String, Path, description = "The upload, as the Location of its creation names it"),
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
        ("upload-offset" = u64, Header, description = "Where these bytes start"),
    ),
    request_body(content = String, content_type = "application/offset+octet-stream", description = "The bytes from Upload-Offset"),
    responses((status = 204, description = "Appended; Upload-Offset is the new offset")),
)]
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    patch_upload(state, request, id, false).await
}

#[utoipa::path(
    patch,
    path = "/upload/resumable/sign/{id}",
    operation_id = "resumable_patch_signed",
    tag = "resumable",
    security(()),
    params(
        ("id" = String, Path, description = "The upload, as the Location of its creation names it"),
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
        ("upload-offset" = u64, Header, description = "Where these bytes start"),
        ("x-signature" = String, Header, description = "The signed upload token from `/object/upload/sign`"),
    ),
    request_body(content = String, content_type = "application/offset+octet-stream", description = "The bytes from Upload-Offset"),
    responses((status = 204, description = "Appended; Upload-Offset is the new offset")),
)]
pub async fn patch_signed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    patch_upload(state, request, id, true).await
}

async fn patch_upload(
    state: AppState,
    request: Request,
    id: String,
    signed: bool,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let (access, mut upload) = open(&state, &mut parts, &id, signed).await?;
    let headers: &HeaderMap = &parts.headers;
    if !protocol::content_type_is_offset_stream(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "InvalidContentType",
            "invalid_content_type",
            format!(
                "a PATCH carries Content-Type: {}",
                protocol::OFFSET_OCTET_STREAM
            ),
        ));
    }
    let offset = protocol::number(headers, "upload-offset")?
        .ok_or_else(|| bad_request("Upload-Offset is required"))?;
    if let Some(length) = protocol::number(headers, "upload-length")? {
        match upload.declared_length {
            None => {
                upload = state
                    .storage
                    .declare_multipart_length(&access.caller, &upload.id, length)
                    .await?;
            }
            Some(declared) if declared != length => {
                return Err(bad_request(format!(
                    "the upload's length is {declared}; it cannot change to {length}"
                )));
            }
            Some(_) => {}
        }
    }
    if offset != upload.size {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            "Conflict",
            format!(
                "Upload-Offset {offset} does not match the upload's offset {}",
                upload.size
            ),
        ));
    }
    let content_length = protocol::number(headers, "content-length")?;
    let checksum = checksum::expected(headers)?;
    let offset = append(&state, &upload, offset, body, content_length, checksum).await?;
    let mut answer = response(StatusCode::NO_CONTENT).header("upload-offset", offset);
    if upload.declared_length == Some(offset) {
        complete(&state, &access.caller, &upload, offset).await?;
    } else {
        // Every part renews the expiry by the configured period (no need to read it back).
        let renewed = chrono::Duration::from_std(state.storage.limits().multipart_expiry)
            .ok()
            .and_then(|period| Utc::now().checked_add_signed(period));
        if let Some(expires) = renewed {
            answer = answer.header("upload-expires", http_date(expires));
        }
    }
    finish(answer)
}

/// `POST` with `X-HTTP-Method-Override: PATCH` (or `DELETE`), for clients behind proxies that
/// only pass GET and POST (tus-js-client's `overridePatchMethod`).
#[utoipa::path(
    post,
    path = "/upload/resumable/{id}",
    operation_id = "resumable_overridden",
    tag = "resumable",
    params(
        ("id" = String, Path, description = "The upload, as the Location of its creation names it"),
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
        ("x-http-method-override" = String, Header, description = "`PATCH` or `DELETE`"),
    ),
    responses((status = 204, description = "Done")),
)]
pub async fn overridden(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    override_method(state, request, id, false).await
}

#[utoipa::path(
    post,
    path = "/upload/resumable/sign/{id}",
    operation_id = "resumable_overridden_signed",
    tag = "resumable",
    security(()),
    params(
        ("id" = String, Path, description = "The upload, as the Location of its creation names it"),
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
        ("x-http-method-override" = String, Header, description = "`PATCH` or `DELETE`"),
        ("x-signature" = String, Header, description = "The signed upload token from `/object/upload/sign`"),
    ),
    responses((status = 204, description = "Done")),
)]
pub async fn overridden_signed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    override_method(state, request, id, true).await
}

async fn override_method(
    state: AppState,
    request: Request,
    id: String,
    signed: bool,
) -> Result<Response, ApiError> {
    let method = request
        .headers()
        .get("x-http-method-override")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_uppercase());
    match method.as_deref() {
        Some("PATCH") => patch_upload(state, request, id, signed).await,
        Some("DELETE") => delete_upload(state, request, id, signed).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "MethodNotAllowed",
            "POST to an upload URL needs X-HTTP-Method-Override: PATCH or DELETE",
        )),
    }
}

#[utoipa::path(
    delete,
    path = "/upload/resumable/{id}",
    operation_id = "resumable_delete",
    tag = "resumable",
    params(
        ("id" = String, Path, description = "The upload, as the Location of its creation names it"),
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
    ),
    responses((status = 204, description = "Terminated")),
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    delete_upload(state, request, id, false).await
}

#[utoipa::path(
    delete,
    path = "/upload/resumable/sign/{id}",
    operation_id = "resumable_delete_signed",
    tag = "resumable",
    security(()),
    params(
        ("id" = String, Path, description = "The upload, as the Location of its creation names it"),
        ("tus-resumable" = String, Header, description = "The protocol version, `1.0.0`", example = "1.0.0"),
        ("x-signature" = String, Header, description = "The signed upload token from `/object/upload/sign`"),
    ),
    responses((status = 204, description = "Terminated")),
)]
pub async fn delete_signed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    delete_upload(state, request, id, true).await
}

/// Termination: the upload and its bytes go (the bytes after the collector's grace period).
async fn delete_upload(
    state: AppState,
    request: Request,
    id: String,
    signed: bool,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let (access, upload) = open(&state, &mut parts, &id, signed).await?;
    state
        .storage
        .abort_multipart(&access.caller, &upload.id)
        .await?;
    let mut answer = response(StatusCode::NO_CONTENT);
    answer = answer.header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    finish(answer)
}
