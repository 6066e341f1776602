//! Checksums of multipart uploads, as AWS defines the COMPOSITE kind: an upload created with
//! `x-amz-checksum-algorithm` keeps each part's checksum of that algorithm (sent by the client
//! and verified against the part's bytes), ListParts shows them, CompleteMultipartUpload checks
//! the ones its request names, and the object's checksum is the algorithm's digest of the
//! parts' raw checksums, concatenated in order, in base64 with `-<parts>` appended.
//!
//! GetObject and HeadObject return it for a whole-object read with `x-amz-checksum-mode:
//! ENABLED`.
//!
//! FULL_OBJECT checksums (a CRC of the whole object, and the only kind for CRC64NVME) are not
//! derived: such an upload is kept without a checksum, as before.

use std::collections::HashMap;

use base64::Engine;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Sha1, Sha256};
use s3s::dto::{
    Checksum, ChecksumAlgorithm, ChecksumMode, ChecksumType, CompleteMultipartUploadOutput,
    CompletedPart, Part,
};
use s3s::{S3ErrorCode, S3Result};
use serde_json::{Value, json};

use super::error::{object_error, s3};
use super::handlers::Handlers;
use crate::core::Caller;

/// The algorithms whose checksums compose.
const COMPOSABLE: [&str; 4] = ["CRC32", "CRC32C", "SHA1", "SHA256"];

/// The algorithm to keep part checksums of, from CreateMultipartUpload's
/// `x-amz-checksum-algorithm` and `x-amz-checksum-type`.
pub(super) fn algorithm_of(
    algorithm: Option<&ChecksumAlgorithm>,
    kind: Option<&ChecksumType>,
) -> S3Result<Option<String>> {
    let Some(algorithm) = algorithm else {
        return Ok(None);
    };
    let name = algorithm.as_str().to_ascii_uppercase();
    if !COMPOSABLE.contains(&name.as_str()) && name != "CRC64NVME" {
        return Err(s3(
            S3ErrorCode::InvalidArgument,
            format!(
                "Checksum algorithm '{}' is not supported",
                algorithm.as_str()
            ),
        ));
    }
    let full_object = kind
        .is_some_and(|k| k.as_str().eq_ignore_ascii_case(ChecksumType::FULL_OBJECT))
        || name == "CRC64NVME";
    Ok((!full_object).then_some(name))
}

/// The value of `algorithm` among the checksums of a request or a part.
pub(super) fn value_of(checksums: &Checksum, algorithm: &str) -> Option<String> {
    match algorithm {
        "CRC32" => checksums.checksum_crc32.clone(),
        "CRC32C" => checksums.checksum_crc32c.clone(),
        "SHA1" => checksums.checksum_sha1.clone(),
        "SHA256" => checksums.checksum_sha256.clone(),
        _ => None,
    }
}

/// Checksums holding `value` as `algorithm`'s.
pub(super) fn checksums_with(algorithm: &str, value: String) -> Checksum {
    let mut out = Checksum::default();
    match algorithm {
        "CRC32" => out.checksum_crc32 = Some(value),
        "CRC32C" => out.checksum_crc32c = Some(value),
        "SHA1" => out.checksum_sha1 = Some(value),
        "SHA256" => out.checksum_sha256 = Some(value),
        _ => {}
    }
    out
}

/// A listed part with its checksum.
pub(super) fn with_part_checksum(mut part: Part, algorithm: &str, value: Option<String>) -> Part {
    if let Some(value) = value {
        let c = checksums_with(algorithm, value);
        part.checksum_crc32 = c.checksum_crc32;
        part.checksum_crc32c = c.checksum_crc32c;
        part.checksum_sha1 = c.checksum_sha1;
        part.checksum_sha256 = c.checksum_sha256;
    }
    part
}

fn digest(algorithm: &str, data: &[u8]) -> Option<Vec<u8>> {
    Some(match algorithm {
        "CRC32" => Crc32::checksum(data).to_vec(),
        "CRC32C" => Crc32c::checksum(data).to_vec(),
        "SHA1" => Sha1::checksum(data).as_ref().to_vec(),
        "SHA256" => Sha256::checksum(data).as_ref().to_vec(),
        _ => return None,
    })
}

/// The composite checksum of parts whose checksums (base64) are `values`, in order.
pub(super) fn composite(algorithm: &str, values: &[String]) -> Option<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut raw = Vec::new();
    for value in values {
        raw.extend(engine.decode(value).ok()?);
    }
    let digest = digest(algorithm, &raw)?;
    Some(format!("{}-{}", engine.encode(digest), values.len()))
}

/// The object's checksum for a completion of `requested` parts: the requested checksums must
/// be those the parts were stored with; `None` when a part has none (one copied with
/// UploadPartCopy, or sent without it).
pub(super) async fn for_completion(
    handlers: &Handlers,
    caller: &Caller,
    upload_id: &str,
    algorithm: &str,
    requested: &[CompletedPart],
) -> S3Result<Option<String>> {
    let mut stored: HashMap<u32, Option<String>> = HashMap::new();
    let mut marker = None;
    loop {
        let page = handlers
            .storage
            .list_parts(caller, upload_id, marker, 1000)
            .await
            .map_err(object_error)?;
        marker = page.parts.last().map(|p| p.part_number);
        for part in page.parts {
            stored.insert(part.part_number, part.checksum);
        }
        if !page.truncated {
            break;
        }
    }
    let mut values = Vec::with_capacity(requested.len());
    for part in requested {
        let number = part.part_number.and_then(|n| u32::try_from(n).ok());
        // A missing part is the core's InvalidPart to tell.
        let Some(Some(value)) = number.and_then(|n| stored.get(&n)) else {
            return Ok(None);
        };
        let given = value_of(
            &Checksum {
                checksum_crc32: part.checksum_crc32.clone(),
                checksum_crc32c: part.checksum_crc32c.clone(),
                checksum_sha1: part.checksum_sha1.clone(),
                checksum_sha256: part.checksum_sha256.clone(),
                ..Default::default()
            },
            algorithm,
        );
        if given.as_ref().is_some_and(|given| given != value) {
            return Err(s3(
                S3ErrorCode::InvalidPart,
                format!(
                    "The {algorithm} checksum given for part {} is not the part's checksum",
                    part.part_number.unwrap_or_default()
                ),
            ));
        }
        values.push(value.clone());
    }
    Ok(composite(algorithm, &values))
}

/// The object's checksum as kept in its metadata.
pub(super) fn metadata(algorithm: &str, value: &str) -> Value {
    json!({"algorithm": algorithm, "type": ChecksumType::COMPOSITE, "value": value})
}

/// The object's stored checksum (`metadata.checksum`) when a whole-object read asked for it
/// (`x-amz-checksum-mode: ENABLED`), with its type.
pub(super) fn of_object(
    metadata: Option<&Value>,
    mode: Option<&ChecksumMode>,
    whole: bool,
) -> (Checksum, Option<ChecksumType>) {
    stored(metadata, mode, whole).map_or((Checksum::default(), None), |(c, kind)| (c, Some(kind)))
}

fn stored(
    metadata: Option<&Value>,
    mode: Option<&ChecksumMode>,
    whole: bool,
) -> Option<(Checksum, ChecksumType)> {
    let enabled = mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED));
    if !enabled || !whole {
        return None;
    }
    let stored = metadata?.get("checksum")?;
    let algorithm = stored.get("algorithm")?.as_str()?;
    let value = stored.get("value")?.as_str()?;
    let kind = stored.get("type")?.as_str()?;
    Some((
        checksums_with(algorithm, value.to_string()),
        ChecksumType::from(kind.to_string()),
    ))
}

/// CompleteMultipartUpload's answer with the object's checksum.
pub(super) fn completed(
    mut output: CompleteMultipartUploadOutput,
    algorithm: &str,
    value: String,
) -> CompleteMultipartUploadOutput {
    let c = checksums_with(algorithm, value);
    output.checksum_crc32 = c.checksum_crc32;
    output.checksum_crc32c = c.checksum_crc32c;
    output.checksum_sha1 = c.checksum_sha1;
    output.checksum_sha256 = c.checksum_sha256;
    output.checksum_type = Some(ChecksumType::from_static(ChecksumType::COMPOSITE));
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_is_the_digest_of_the_raw_part_checksums() {
        let engine = base64::engine::general_purpose::STANDARD;
        let a = engine.encode(Crc32::checksum_u32(b"a").to_be_bytes());
        let b = engine.encode(Crc32::checksum_u32(b"b").to_be_bytes());
        let mut raw = Crc32::checksum_u32(b"a").to_be_bytes().to_vec();
        raw.extend(Crc32::checksum_u32(b"b").to_be_bytes());
        let want = format!(
            "{}-2",
            engine.encode(Crc32::checksum_u32(&raw).to_be_bytes())
        );
        assert_eq!(composite("CRC32", &[a, b]), Some(want));
        assert_eq!(composite("CRC32", &["not base64!".into()]), None);
    }

    #[test]
    fn algorithms() {
        let crc = ChecksumAlgorithm::from_static(ChecksumAlgorithm::CRC32);
        assert_eq!(
            algorithm_of(Some(&crc), None).unwrap(),
            Some("CRC32".into())
        );
        let full = ChecksumType::from_static(ChecksumType::FULL_OBJECT);
        assert_eq!(algorithm_of(Some(&crc), Some(&full)).unwrap(), None);
        let nvme = ChecksumAlgorithm::from_static(ChecksumAlgorithm::CRC64NVME);
        assert_eq!(algorithm_of(Some(&nvme), None).unwrap(), None);
        let bad = ChecksumAlgorithm::from("MD4".to_string());
        assert!(algorithm_of(Some(&bad), None).is_err());
        assert_eq!(algorithm_of(None, None).unwrap(), None);
    }
}
