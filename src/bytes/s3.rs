//! The S3 store: any S3-compatible service, through the `object_store` crate. A key's bytes are
//! the object `[<prefix>/]objects/<k0k1>/<key>` in one bucket.
//!
//! Writes stream: a body that fits in one part goes up in a single PUT; a larger one becomes a
//! multipart upload of [`PART_SIZE`] parts, a few in flight at once, so memory stays bounded
//! whatever the object's size. A multipart upload is aborted on any failure (including the
//! write being dropped), so a key either holds its complete bytes or does not exist. Only a
//! crash can leave an open multipart upload behind: it is invisible (no object) and a bucket
//! lifecycle rule (`AbortIncompleteMultipartUpload`) reclaims it.
//!
//! Every request is bounded in time (connect timeout, per-request timeout, few retries), so an
//! unreachable or stalled store fails the request with [`StoreError::Unavailable`] instead of
//! hanging it.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, MultipartUpload, ObjectStore, ObjectStoreExt,
    PutPayload, RetryConfig, WriteMultipart,
};

use super::{ByteRange, ByteStore, ByteStream, StoreError, check_key};

/// Size of each part of a multipart upload (S3 allows 5 MiB to 5 GiB, at most 10,000 parts:
/// 8 MiB parts reach 80 GB, above the default 50 GB object limit).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload in flight at once (memory per upload: about this plus one, times
/// [`PART_SIZE`]).
const PARTS_IN_FLIGHT: usize = 2;
/// Keys per bulk delete request (the S3 maximum).
const DELETE_BATCH: usize = 1000;
/// The largest object S3 copies in one request; larger ones are copied by streaming.
const MAX_SERVER_SIDE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// Where the S3 store is and how patient it is.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Base URL of an S3-compatible service (`http://127.0.0.1:9000`). None: AWS itself.
    pub endpoint: Option<String>,
    /// None: from the environment (`AWS_REGION`), else `us-east-1`.
    pub region: Option<String>,
    pub bucket: String,
    /// None: the usual AWS credential sources (environment, web identity, container and
    /// instance metadata).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Address the bucket in the path (`<endpoint>/<bucket>/<key>`, as most S3-compatible
    /// servers want) instead of the host name (`<bucket>.<endpoint host>`).
    pub force_path_style: bool,
    /// Objects live under this prefix within the bucket (none: at its root).
    pub prefix: Option<String>,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest any one request may take (a download's body: the longest pause between reads).
    pub request_timeout: Duration,
    /// Retries of a failed request (5xx, timeouts, connection errors); retries stop once
    /// `request_timeout` has passed since the first attempt.
    pub max_retries: usize,
}

impl S3Config {
    /// A configuration for `bucket` with the default timeouts.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            endpoint: None,
            region: None,
            bucket: bucket.into(),
            access_key_id: None,
            secret_access_key: None,
            force_path_style: false,
            prefix: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
        }
    }

    /// `s3://bucket/prefix at endpoint`, for messages.
    pub fn describe(&self) -> String {
        let mut text = format!("s3://{}", self.bucket);
        if let Some(prefix) = self.prefix() {
            text.push('/');
            text.push_str(&prefix);
        }
        if let Some(endpoint) = &self.endpoint {
            text.push_str(" at ");
            text.push_str(endpoint);
        }
        text
    }

    fn prefix(&self) -> Option<String> {
        self.prefix
            .as_deref()
            .map(|p| p.trim_matches('/').to_string())
            .filter(|p| !p.is_empty())
    }

    /// The endpoint as `object_store` wants it: with the bucket in the host name for
    /// virtual-hosted-style requests.
    fn client_endpoint(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?.trim_end_matches('/');
        if self.force_path_style {
            return Some(endpoint.to_string());
        }
        Some(match endpoint.split_once("://") {
            Some((scheme, host)) => format!("{scheme}://{}.{host}", self.bucket),
            None => format!("{}.{endpoint}", self.bucket),
        })
    }

    /// An `object_store` client. `overall_timeout` bounds each request end to end; without it
    /// (downloads, whose bodies may take long) only pauses between reads are bounded.
    fn client(&self, overall_timeout: bool) -> Result<AmazonS3, object_store::Error> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
        if let Some(endpoint) = self.client_endpoint() {
            builder = builder
                .with_endpoint(&endpoint)
                .with_config(AmazonS3ConfigKey::S3Endpoint, &endpoint);
        }
        builder = builder.with_virtual_hosted_style_request(!self.force_path_style);
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &self.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &self.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint))
            .unwrap_or_default();
        let mut options = ClientOptions::new()
            .with_allow_http(endpoint.starts_with("http://"))
            .with_connect_timeout(self.connect_timeout)
            .with_read_timeout(self.request_timeout);
        options = if overall_timeout {
            options.with_timeout(self.request_timeout)
        } else {
            options.with_timeout_disabled()
        };
        builder
            .with_client_options(options)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: self.max_retries,
                retry_timeout: self.request_timeout,
            })
            .build()
    }
}

pub struct S3Store {
    /// Writes, copies, deletes and listings: each request bounded end to end.
    control: Arc<AmazonS3>,
    /// Downloads: bounded until the first byte and between reads, not overall.
    data: Arc<AmazonS3>,
    /// `[<prefix>/]objects`.
    root: String,
}

impl S3Store {
    /// A store for `config` (no request is made yet: see [`S3Store::check`]).
    pub fn new(config: &S3Config) -> Result<Self, StoreError> {
        let invalid = |e: object_store::Error| StoreError::Unavailable(e.to_string());
        let root = match config.prefix() {
            Some(prefix) => format!("{prefix}/objects"),
            None => "objects".to_string(),
        };
        Ok(Self {
            control: Arc::new(config.client(true).map_err(invalid)?),
            data: Arc::new(config.client(false).map_err(invalid)?),
            root,
        })
    }

    /// Lists one page under the store's prefix: fails if the bucket cannot be reached, does not
    /// exist or refuses the credentials.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.control
            .list_with_delimiter(Some(&Path::from(self.root.as_str())))
            .await
            .map(|_| ())
            .map_err(|e| unavailable("listing the bucket", e))
    }

    fn path(&self, key: &str) -> Result<Path, StoreError> {
        check_key(key)?;
        Ok(Path::from(format!("{}/{}/{key}", self.root, &key[0..2])))
    }

    /// Copies by streaming the bytes through this server (objects too large for CopyObject).
    async fn copy_by_streaming(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let body = self.get(from, None).await?;
        self.put(to, body).await.map(|_| ()).map_err(|e| match e {
            // The body here is the store's own download: its failure is the store's.
            StoreError::Body(e) => StoreError::Unavailable(format!("copying: {e}")),
            other => other,
        })
    }
}

fn unavailable(context: &str, error: object_store::Error) -> StoreError {
    StoreError::Unavailable(format!("S3 store, {context}: {error}"))
}

/// A multipart upload that is aborted unless it completed, also when the write is dropped
/// half-way (the client went away): nothing half-written stays in the bucket.
struct OpenUpload(Option<WriteMultipart>);

impl OpenUpload {
    async fn abort(&mut self, key: &str) {
        if let Some(upload) = self.0.take()
            && let Err(error) = upload.abort().await
        {
            tracing::warn!(key, %error, "could not abort a multipart upload");
        }
    }
}

impl Drop for OpenUpload {
    fn drop(&mut self) {
        if let Some(upload) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(error) = upload.abort().await {
                    tracing::warn!(%error, "could not abort an abandoned multipart upload");
                }
            });
        }
    }
}

/// A multipart upload being created. Dropped before the store answered, it leaves a task
/// behind that aborts the upload as soon as it exists.
struct StartingUpload(Option<JoinHandle<object_store::Result<Box<dyn MultipartUpload>>>>);

impl Drop for StartingUpload {
    fn drop(&mut self) {
        if let Some(starting) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Ok(Ok(mut upload)) = starting.await
                    && let Err(error) = upload.abort().await
                {
                    tracing::warn!(%error, "could not abort an abandoned multipart upload");
                }
            });
        }
    }
}

#[async_trait]
impl ByteStore for S3Store {
    fn name(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, key: &str, mut body: ByteStream) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        let mut written = 0u64;

        // Fill the first part; a body that ends before it is full goes up in one PUT.
        let mut first: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        while buffered < PART_SIZE {
            match body.next().await {
                None => {
                    self.control
                        .put(&path, first.into_iter().collect::<PutPayload>())
                        .await
                        .map_err(|e| unavailable("writing an object", e))?;
                    return Ok(written);
                }
                Some(Err(e)) => return Err(StoreError::Body(e)),
                Some(Ok(chunk)) => {
                    written += chunk.len() as u64;
                    buffered += chunk.len();
                    first.push(chunk);
                }
            }
        }

        // Started on a task of its own: if this write is dropped while S3 is still answering,
        // the upload it creates is aborted once it exists rather than left open.
        let control = self.control.clone();
        let target = path.clone();
        let mut starting = StartingUpload(Some(tokio::spawn(async move {
            control.put_multipart(&target).await
        })));
        let upload = match starting.0.as_mut().expect("just spawned").await {
            Ok(started) => {
                starting.0 = None;
                started.map_err(|e| unavailable("starting a multipart upload", e))?
            }
            Err(join) => {
                starting.0 = None;
                return Err(StoreError::Unavailable(format!(
                    "S3 store, starting a multipart upload: {join}"
                )));
            }
        };
        let mut open = OpenUpload(Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)));
        let writer = open.0.as_mut().expect("just opened");
        for chunk in first {
            writer.put(chunk);
        }
        loop {
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                open.abort(key).await;
                return Err(unavailable("uploading a part", e));
            }
            match body.next().await {
                None => break,
                Some(Err(e)) => {
                    open.abort(key).await;
                    return Err(StoreError::Body(e));
                }
                Some(Ok(chunk)) => {
                    written += chunk.len() as u64;
                    writer.put(chunk);
                }
            }
        }
        // `finish` aborts the upload itself if a part or the completion fails.
        let writer = open.0.take().expect("still open");
        writer
            .finish()
            .await
            .map_err(|e| unavailable("completing a multipart upload", e))?;
        Ok(written)
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StoreError> {
        let path = self.path(key)?;
        let options = GetOptions::new().with_range(range.map(|r| r.start..r.end + 1));
        match self.data.get_opts(&path, options).await {
            Ok(result) => Ok(result.into_stream().map_err(io::Error::other).boxed()),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(key.into())),
            Err(e) => Err(unavailable("reading an object", e)),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let source = self.path(from)?;
        let target = self.path(to)?;
        let size = match self.control.head(&source).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::NotFound(from.into()));
            }
            Err(e) => return Err(unavailable("reading an object's size", e)),
        };
        if size > MAX_SERVER_SIDE_COPY {
            return self.copy_by_streaming(from, to).await;
        }
        match self.control.copy(&source, &target).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(from.into())),
            Err(e) => Err(unavailable("copying an object", e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.control.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable("deleting an object", e)),
        }
    }

    async fn delete_many(&self, keys: &[String]) -> Vec<Result<(), StoreError>> {
        let mut results = Vec::with_capacity(keys.len());
        for batch in keys.chunks(DELETE_BATCH) {
            let mut paths = Vec::with_capacity(batch.len());
            let mut batch_results: Vec<Option<Result<(), StoreError>>> = Vec::new();
            for key in batch {
                match self.path(key) {
                    Ok(path) => {
                        paths.push(path);
                        batch_results.push(None);
                    }
                    Err(e) => batch_results.push(Some(Err(e))),
                }
            }
            // One DeleteObjects request per batch; a key is freed once S3 reports it deleted.
            let requested: Vec<Path> = paths.clone();
            let outcomes: Vec<Result<Path, object_store::Error>> = self
                .control
                .delete_stream(futures::stream::iter(requested.into_iter().map(Ok)).boxed())
                .collect()
                .await;
            let mut deleted = HashSet::new();
            let mut failure = None;
            for outcome in outcomes {
                match outcome {
                    Ok(path) => {
                        deleted.insert(path);
                    }
                    Err(object_store::Error::NotFound { path, .. }) => {
                        deleted.insert(Path::from(path));
                    }
                    Err(e) => failure = Some(e.to_string()),
                }
            }
            let mut paths = paths.into_iter();
            for result in batch_results {
                results.push(match result {
                    Some(refused) => refused,
                    None => {
                        let path = paths.next().expect("one path per unresolved key");
                        if deleted.contains(&path) {
                            Ok(())
                        } else {
                            Err(StoreError::Unavailable(format!(
                                "S3 store, deleting {path}: {}",
                                failure.as_deref().unwrap_or("not reported as deleted")
                            )))
                        }
                    }
                });
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_prefixes() {
        let mut config = S3Config::new("photos");
        assert_eq!(config.client_endpoint(), None);
        config.endpoint = Some("https://s3.example.com/".into());
        assert_eq!(
            config.client_endpoint().as_deref(),
            Some("https://photos.s3.example.com")
        );
        config.force_path_style = true;
        assert_eq!(
            config.client_endpoint().as_deref(),
            Some("https://s3.example.com")
        );
        config.prefix = Some("/tenant/a/".into());
        assert_eq!(
            config.describe(),
            "s3://photos/tenant/a at https://s3.example.com/"
        );
        let store = S3Store::new(&config).unwrap();
        assert_eq!(
            store.path("0123456789abcdef").unwrap().as_ref(),
            "tenant/a/objects/01/0123456789abcdef"
        );
        assert!(store.path("../../etc/passwd").is_err());
        config.prefix = Some("/".into());
        let store = S3Store::new(&config).unwrap();
        assert_eq!(
            store.path("0123456789abcdef").unwrap().as_ref(),
            "objects/01/0123456789abcdef"
        );
    }
}
