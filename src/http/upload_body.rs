//! Turns an upload request (raw body or `multipart/form-data`) into a streaming core upload,
//! without buffering the file.

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::ApiError;
use crate::bytes::ByteStream;

/// The parts of an upload request the core needs.
pub struct UploadBody {
    pub body: ByteStream,
    pub declared_length: Option<u64>,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub user_metadata: Option<Value>,
}

impl UploadBody {
    /// The core's upload of this body to `bucket`/`name`.
    pub fn into_upload(
        self,
        bucket: String,
        name: String,
        upsert: bool,
        owner: Option<String>,
    ) -> crate::core::objects::Upload {
        crate::core::objects::Upload {
            bucket,
            name,
            body: self.body,
            declared_length: self.declared_length,
            content_type: self.content_type,
            cache_control: self.cache_control,
            user_metadata: self.user_metadata,
            upsert,
            owner,
            headers: Default::default(),
        }
    }
}

/// Text fields a multipart form may carry before its file part.
const MAX_FORM_FIELDS: usize = 10;
/// Largest user metadata accepted, as JSON text.
const MAX_USER_METADATA: usize = 1024 * 1024;

fn io_error(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

pub async fn parse(headers: &HeaderMap, body: Body) -> Result<UploadBody, ApiError> {
    let content_type = header_text(headers, CONTENT_TYPE.as_str())?;
    let x_metadata = match header_text(headers, "x-metadata")? {
        Some(encoded) => Some(decode_x_metadata(&encoded)?),
        None => None,
    };
    if let Some(ct) = &content_type
        && ct.to_ascii_lowercase().starts_with("multipart/form-data")
    {
        return parse_multipart(ct, body, x_metadata).await;
    }
    let declared_length =
        header_text(headers, CONTENT_LENGTH.as_str())?.and_then(|v| v.parse::<u64>().ok());
    Ok(UploadBody {
        body: body.into_data_stream().map_err(io_error).boxed(),
        declared_length,
        content_type,
        cache_control: header_text(headers, CACHE_CONTROL.as_str())?,
        user_metadata: x_metadata,
    })
}

async fn parse_multipart(
    content_type: &str,
    body: Body,
    x_metadata: Option<Value>,
) -> Result<UploadBody, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::bad_request(format!("invalid multipart Content-Type: {e}")))?;
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut cache_control = None;
    let mut part_content_type = None;
    let mut user_metadata = x_metadata;
    let mut fields = 0;
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?
            .ok_or_else(|| ApiError::bad_request("the multipart body has no file part"))?;
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some() || name.is_empty() || name == "file";
        if is_file {
            let file_type = field.content_type().map(|m| m.to_string());
            // The file part is the body; a form can carry one file.
            let stream = field.map_err(io_error);
            return Ok(UploadBody {
                body: stream.boxed(),
                declared_length: None,
                content_type: part_content_type.or(file_type),
                cache_control,
                user_metadata,
            });
        }
        fields += 1;
        if fields > MAX_FORM_FIELDS {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_FORM_FIELDS} form fields may precede the file part"
            )));
        }
        let text = field
            .text()
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid form field '{name}': {e}")))?;
        match name.as_str() {
            // storage-js sends seconds ("3600"); other clients send a whole header value.
            "cacheControl" => {
                cache_control = Some(if text.chars().all(|c| c.is_ascii_digit()) {
                    format!("max-age={text}")
                } else {
                    text
                })
            }
            "contentType" => part_content_type = Some(text),
            "metadata" | "userMetadata" => user_metadata = Some(parse_user_metadata(&text)?),
            _ => {}
        }
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request(format!("the {name} header is not valid text")))
        })
        .transpose()
}

fn decode_x_metadata(encoded: &str) -> Result<Value, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::bad_request("x-metadata must be base64-encoded JSON"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("x-metadata must be base64-encoded JSON"))?;
    parse_user_metadata(&text)
}

/// User metadata: a JSON object of at most 1 MiB.
pub fn parse_user_metadata(text: &str) -> Result<Value, ApiError> {
    if text.len() > MAX_USER_METADATA {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "EntityTooLarge",
            "Payload too large",
            "The user_metadata exceeded the maximum allowed size",
        ));
    }
    match serde_json::from_str(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ApiError::bad_request("metadata must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "metadata is not valid JSON: {e}"
        ))),
    }
}
