//! The checks of a browser-form upload (POST object) that need no I/O: the form's fields, its
//! signature (Signature V4 or V2 over the base64 policy) and the policy's expiration and
//! conditions, with AWS's codes and messages.
//!
//! `s3s` parses the policy document ([`PostPolicy`]); its own POST handling reads the whole
//! file into memory before checking, so the checks are ours and the file streams (see
//! [`super::post_object`]).

use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use s3s::S3ErrorCode;
use s3s::S3Result;
use s3s::dto::TimestampFormat;
use s3s::post_policy::{PostPolicy, PostPolicyCondition};

use super::error::s3;

/// The text fields that came before the file, names lower-cased (form field names are not
/// case-sensitive), in the order sent.
#[derive(Debug, Default)]
pub(super) struct Fields(Vec<(String, String)>);

impl Fields {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn insert(&mut self, name: String, value: String) -> S3Result<()> {
        if self.get(&name).is_some() {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                format!("The form field '{name}' is given more than once."),
            ));
        }
        self.0.push((name, value));
        Ok(())
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// A form's signature, as its fields carry it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Signature<'a> {
    /// `x-amz-algorithm`, `x-amz-credential`, `x-amz-date`, `x-amz-signature`.
    V4 {
        access_key: &'a str,
        date: &'a str,
        region: &'a str,
        service: &'a str,
        signature: &'a str,
    },
    /// `AWSAccessKeyId` and `signature` (HMAC-SHA1).
    V2 {
        access_key: &'a str,
        signature: &'a str,
    },
}

impl<'a> Signature<'a> {
    /// The signature the form carries; `None`: an unsigned form.
    pub(super) fn of(fields: &'a Fields) -> S3Result<Option<Self>> {
        if let Some(signature) = fields.get("x-amz-signature") {
            let missing = |name: &str| {
                s3(
                    S3ErrorCode::InvalidArgument,
                    format!("Bucket POST must contain a field named '{name}'."),
                )
            };
            let algorithm = fields
                .get("x-amz-algorithm")
                .ok_or_else(|| missing("x-amz-algorithm"))?;
            if algorithm != "AWS4-HMAC-SHA256" {
                return Err(s3(
                    S3ErrorCode::InvalidArgument,
                    format!("The algorithm '{algorithm}' is not supported: use AWS4-HMAC-SHA256."),
                ));
            }
            let credential = fields
                .get("x-amz-credential")
                .ok_or_else(|| missing("x-amz-credential"))?;
            fields
                .get("x-amz-date")
                .ok_or_else(|| missing("x-amz-date"))?;
            // `AKID/20260101/us-east-1/s3/aws4_request`: the access key id may hold a slash.
            let mut scope = credential.rsplitn(5, '/');
            let (Some("aws4_request"), Some(service), Some(region), Some(date), Some(access_key)) = (
                scope.next(),
                scope.next(),
                scope.next(),
                scope.next(),
                scope.next(),
            ) else {
                return Err(s3(
                    S3ErrorCode::InvalidArgument,
                    format!("The x-amz-credential field is malformed: '{credential}'."),
                ));
            };
            if service != "s3" {
                return Err(s3(
                    S3ErrorCode::InvalidArgument,
                    format!("The credential scope names the service '{service}', not s3."),
                ));
            }
            return Ok(Some(Self::V4 {
                access_key,
                date,
                region,
                service,
                signature,
            }));
        }
        if let Some(signature) = fields.get("signature") {
            let access_key = fields.get("awsaccesskeyid").ok_or_else(|| {
                s3(
                    S3ErrorCode::InvalidArgument,
                    "Bucket POST must contain a field named 'AWSAccessKeyId'.",
                )
            })?;
            return Ok(Some(Self::V2 {
                access_key,
                signature,
            }));
        }
        Ok(None)
    }

    pub(super) fn access_key(&self) -> &'a str {
        match self {
            Self::V4 { access_key, .. } | Self::V2 { access_key, .. } => access_key,
        }
    }

    /// Whether the signature is `secret`'s over the base64 `policy`.
    pub(super) fn verify(&self, secret: &str, policy: &str) -> S3Result<()> {
        let matches = match self {
            Self::V4 {
                date,
                region,
                service,
                signature,
                ..
            } => {
                let key = signing_key(secret, date, region, service);
                let expected = hex::encode(hmac::sign(&key, policy.as_bytes()));
                constant_time::verify_slices_are_equal(
                    expected.as_bytes(),
                    signature.to_ascii_lowercase().as_bytes(),
                )
                .is_ok()
            }
            Self::V2 { signature, .. } => {
                let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
                let expected = base64::engine::general_purpose::STANDARD
                    .encode(hmac::sign(&key, policy.as_bytes()));
                constant_time::verify_slices_are_equal(expected.as_bytes(), signature.as_bytes())
                    .is_ok()
            }
        };
        match matches {
            true => Ok(()),
            false => {
                let mut error = s3(
                    S3ErrorCode::SignatureDoesNotMatch,
                    "The request signature we calculated does not match the signature you \
                     provided. Check your key and signing method.",
                );
                error.set_status_code(axum::http::StatusCode::FORBIDDEN);
                Err(error)
            }
        }
    }
}

/// SigV4's signing key: `AWS4<secret>` through the date, region, service and `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let date_key = step(format!("AWS4{secret}").as_bytes(), date);
    let region_key = step(date_key.as_ref(), region);
    let service_key = step(region_key.as_ref(), service);
    let signing = step(service_key.as_ref(), "aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, signing.as_ref())
}

fn denied(message: String) -> s3s::S3Error {
    let mut error = s3(S3ErrorCode::AccessDenied, message);
    error.set_status_code(axum::http::StatusCode::FORBIDDEN);
    error
}

/// The policy document of a form (`None`: an unsigned form without one).
pub(super) fn parse_policy(fields: &Fields) -> S3Result<Option<PostPolicy>> {
    let Some(encoded) = fields.get("policy") else {
        return Ok(None);
    };
    // Browsers may wrap long base64 values.
    let compact: String = encoded.split_ascii_whitespace().collect();
    PostPolicy::from_base64(&compact).map(Some).map_err(|e| {
        s3(
            S3ErrorCode::InvalidPolicyDocument,
            format!("Invalid Policy: {e}"),
        )
    })
}

/// Seconds since the epoch of the policy's expiration.
fn expires_at(policy: &PostPolicy) -> Option<f64> {
    let mut buf = Vec::new();
    policy
        .expiration
        .format(TimestampFormat::EpochSeconds, &mut buf)
        .ok()?;
    std::str::from_utf8(&buf).ok()?.parse().ok()
}

/// Form fields that need no condition of their own (AWS's list).
fn exempt(name: &str) -> bool {
    matches!(
        name,
        "x-amz-signature" | "signature" | "awsaccesskeyid" | "file" | "policy"
    ) || name.starts_with("x-ignore-")
}

fn render(condition: &PostPolicyCondition) -> String {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    match condition {
        PostPolicyCondition::Eq { field, value } => {
            format!("[\"eq\", {}, {}]", text(&format!("${field}")), text(value))
        }
        PostPolicyCondition::StartsWith { field, prefix } => format!(
            "[\"starts-with\", {}, {}]",
            text(&format!("${field}")),
            text(prefix)
        ),
        PostPolicyCondition::ContentLengthRange { min, max } => {
            format!("[\"content-length-range\", {min}, {max}]")
        }
    }
}

/// Checks the policy's expiration (against `now`, seconds since the epoch) and every condition
/// on the fields (`bucket` is the one posted to), and that every field has a condition.
/// Returns the content-length range, checked while the file streams.
pub(super) fn check(
    policy: &PostPolicy,
    fields: &Fields,
    bucket: &str,
    now: f64,
) -> S3Result<Option<(u64, u64)>> {
    match expires_at(policy) {
        Some(at) if now < at => {}
        _ => {
            return Err(denied(
                "Invalid according to Policy: Policy expired.".into(),
            ));
        }
    }
    let value = |field: &str| match field {
        "bucket" => Some(bucket),
        other => fields.get(other),
    };
    let mut range = None;
    for condition in &policy.conditions {
        let holds = match condition {
            PostPolicyCondition::Eq { field, value: want } => value(field) == Some(want.as_str()),
            // An empty prefix allows any value, the field's absence included.
            PostPolicyCondition::StartsWith { field, prefix } => {
                prefix.is_empty() || value(field).is_some_and(|v| v.starts_with(prefix.as_str()))
            }
            PostPolicyCondition::ContentLengthRange { min, max } => {
                range = Some((*min, *max));
                true
            }
        };
        if !holds {
            return Err(denied(format!(
                "Invalid according to Policy: Policy Condition failed: {}",
                render(condition)
            )));
        }
    }
    let covered = |name: &str| {
        policy.conditions.iter().any(|c| match c {
            PostPolicyCondition::Eq { field, .. }
            | PostPolicyCondition::StartsWith { field, .. } => field == name,
            PostPolicyCondition::ContentLengthRange { .. } => false,
        })
    };
    let extra: Vec<&str> = fields
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !exempt(name) && !covered(name))
        .collect();
    if !extra.is_empty() {
        return Err(denied(format!(
            "Invalid according to Policy: Extra input fields: {}",
            extra.join(", ")
        )));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Fields {
        let mut f = Fields::default();
        for (n, v) in list {
            f.insert(n.to_string(), v.to_string()).unwrap();
        }
        f
    }

    fn policy(json: &str) -> PostPolicy {
        PostPolicy::from_json(json).unwrap()
    }

    const NOW: f64 = 1_900_000_000.0; // 2030-03-17

    #[test]
    fn conditions_hold_or_name_the_failed_one() {
        let p = policy(
            r#"{"expiration": "2031-01-01T00:00:00.000Z", "conditions": [
                {"bucket": "photos"}, ["starts-with", "$key", "u1/"],
                ["eq", "$Content-Type", "image/png"], ["content-length-range", 1, 10]]}"#,
        );
        let ok = fields(&[("key", "u1/a.png"), ("content-type", "image/png")]);
        assert_eq!(check(&p, &ok, "photos", NOW).unwrap(), Some((1, 10)));
        let error = check(&p, &ok, "other", NOW).unwrap_err();
        assert_eq!(error.code(), &S3ErrorCode::AccessDenied);
        assert_eq!(
            error.message(),
            Some(
                r#"Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "photos"]"#
            )
        );
        let bad_key = fields(&[("key", "u2/a.png"), ("content-type", "image/png")]);
        let error = check(&p, &bad_key, "photos", NOW).unwrap_err();
        assert!(
            error
                .message()
                .unwrap()
                .contains(r#"["starts-with", "$key", "u1/"]"#)
        );
        let extra = fields(&[
            ("key", "u1/a"),
            ("content-type", "image/png"),
            ("x-amz-meta-a", "1"),
            ("x-ignore-me", "1"),
            ("policy", "p"),
        ]);
        let error = check(&p, &extra, "photos", NOW).unwrap_err();
        assert_eq!(
            error.message(),
            Some("Invalid according to Policy: Extra input fields: x-amz-meta-a")
        );
    }

    #[test]
    fn expired_policies_are_refused() {
        let p = policy(r#"{"expiration": "2020-01-01T00:00:00Z", "conditions": []}"#);
        let error = check(&p, &Fields::default(), "b", NOW).unwrap_err();
        assert_eq!(
            error.message(),
            Some("Invalid according to Policy: Policy expired.")
        );
    }

    #[test]
    fn v4_signature_matches_aws_example() {
        // AWS's documented signing key example (sigv4-calculate-signature, "iam" service).
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "iam",
        );
        let tag = hmac::sign(&key, b"AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
        assert_eq!(
            hex::encode(tag),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn reads_signatures_from_fields() {
        let f = fields(&[
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            ("x-amz-credential", "AK/20260101/auto/s3/aws4_request"),
            ("x-amz-date", "20260101T000000Z"),
            ("x-amz-signature", "ab"),
        ]);
        let s = Signature::of(&f).unwrap().unwrap();
        assert_eq!(s.access_key(), "AK");
        assert!(s.verify("secret", "cG9saWN5").is_err());
        let bad = fields(&[
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            ("x-amz-credential", "AK/20260101/auto/sts"),
            ("x-amz-date", "20260101T000000Z"),
            ("x-amz-signature", "ab"),
        ]);
        assert!(Signature::of(&bad).is_err());
        assert_eq!(Signature::of(&Fields::default()).unwrap(), None);
        let v2 = fields(&[("awsaccesskeyid", "AK"), ("signature", "x")]);
        let s = Signature::of(&v2).unwrap().unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"secret");
        let good = base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, b"cG9saWN5"));
        assert!(s.verify("secret", "cG9saWN5").is_err());
        let v2 = fields(&[("awsaccesskeyid", "AK"), ("signature", &good)]);
        assert!(
            Signature::of(&v2)
                .unwrap()
                .unwrap()
                .verify("secret", "cG9saWN5")
                .is_ok()
        );
    }
}
