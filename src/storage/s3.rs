//! `kind: s3`: a bucket on AWS S3 or a service that speaks its API
//! (Cloudflare R2, Backblaze B2, MinIO), through `object_store`. Objects
//! are keys under the optional prefix. An upload of more than one part is a
//! multipart upload whose parts all have the same size but the last (R2
//! refuses anything else), a few parts in flight at most; a smaller one is
//! a single PUT. S3 makes an object visible only when its upload completes,
//! which is `put`'s atomicity.
//!
//! Must not: let the secret key reach a message (the signing library holds
//! it; every message from the library or the server is scrubbed anyway).

use std::ops::Range;
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig,
};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::task::JoinSet;

use super::{Body, ObjectMeta, Pending, Storage, StorageError, check_name, check_range, scrub};
use crate::secrets::Secret;

/// The size of every part of a multipart upload but the last: fixed, so
/// the parts are equal (R2), and within S3's limits for any backup pgfleet
/// makes (10,000 parts of 16 MiB is 156 GiB; S3's minimum part is 5 MiB).
pub const PART_SIZE: usize = 16 * 1024 * 1024;

/// Parts being sent while the next one is read: memory stays under
/// `(PARTS_IN_FLIGHT + 1) * PART_SIZE`.
const PARTS_IN_FLIGHT: usize = 2;

/// How long one request (a part of 16 MiB on a slow link) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What `open` needs, secrets read.
pub struct S3Config {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub access_key: Secret,
    pub secret_key: Secret,
}

pub struct S3 {
    store: Arc<AmazonS3>,
    bucket: String,
    endpoint: Option<String>,
    /// The prefix without leading or trailing `/`, or empty.
    prefix: String,
    access_key: Secret,
    secret_key: Secret,
}

/// The region to sign with. `auto` is what R2 expects and what
/// S3-compatible services accept; AWS itself needs a real region, and its
/// global endpoint is in `us-east-1`.
pub fn signing_region(region: Option<&str>, endpoint: Option<&str>) -> String {
    match (region, endpoint) {
        (None | Some("auto"), None) => "us-east-1".to_owned(),
        (None, Some(_)) => "auto".to_owned(),
        (Some(region), _) => region.to_owned(),
    }
}

/// reqwest is built without a TLS crypto provider (the default would be
/// aws-lc-rs); ring is installed as the process's provider once. An error
/// means one is installed already, which serves as well.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl S3 {
    pub fn open(config: S3Config) -> Result<S3, StorageError> {
        install_crypto_provider();
        let prefix = config.prefix.as_deref().unwrap_or_default().trim_matches('/').to_owned();
        let region = signing_region(config.region.as_deref(), config.endpoint.as_deref());
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(region)
            .with_access_key_id(config.access_key.expose())
            .with_secret_access_key(config.secret_key.expose())
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_allow_http(
                        config.endpoint.as_deref().is_some_and(|endpoint| endpoint.starts_with("http://")),
                    ),
            )
            .with_retry(RetryConfig {
                max_retries: 5,
                retry_timeout: Duration::from_secs(120),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        let store = builder.build().map_err(|error| StorageError::Open {
            storage: place(&config.bucket, &prefix, config.endpoint.as_deref()),
            reason: scrub(error, &[&config.secret_key, &config.access_key]),
        })?;
        Ok(S3 {
            store: Arc::new(store),
            bucket: config.bucket,
            endpoint: config.endpoint,
            prefix,
            access_key: config.access_key,
            secret_key: config.secret_key,
        })
    }

    fn scrubbed(&self, reason: impl std::fmt::Display) -> String {
        scrub(reason, &[&self.secret_key, &self.access_key])
    }

    fn failed(&self, action: &'static str, name: &str, reason: impl std::fmt::Display) -> StorageError {
        StorageError::Failed { storage: self.describe(), action, name: name.to_owned(), reason: self.scrubbed(reason) }
    }

    /// The key of object `name`.
    fn key(&self, name: &str) -> Result<Path, StorageError> {
        check_name(name).map_err(|reason| self.failed("name", name, reason))?;
        let key = if self.prefix.is_empty() { name.to_owned() } else { format!("{}/{name}", self.prefix) };
        Path::parse(key).map_err(|error| self.failed("name", name, error))
    }

    /// An object's name from its key, if it is under the prefix.
    fn name_of(&self, key: &Path) -> Option<String> {
        let key = key.as_ref();
        let name = if self.prefix.is_empty() { key } else { key.strip_prefix(&self.prefix)?.strip_prefix('/')? };
        check_name(name).is_ok().then(|| name.to_owned())
    }

    async fn put_multipart(
        &self,
        name: &str,
        key: &Path,
        first: Bytes,
        body: &mut Body<'_>,
    ) -> Result<u64, StorageError> {
        let upload = self.store.put_multipart(key).await.map_err(|error| self.failed("upload", name, error))?;
        let mut upload = AbortOnDrop(Some(upload));
        let Some(parts) = upload.0.as_mut() else { return Err(self.failed("upload", name, "no upload")) };
        let result = match self.send_parts(name, parts.as_mut(), first, body).await {
            Ok(written) => parts.complete().await.map(|_| written).map_err(|error| self.failed("upload", name, error)),
            Err(error) => Err(error),
        };
        let Some(mut parts) = upload.0.take() else { return result };
        if result.is_err() {
            // Best effort: the upload's parts cost storage until aborted.
            let _ = parts.abort().await;
        }
        result
    }

    async fn send_parts(
        &self,
        name: &str,
        parts: &mut dyn MultipartUpload,
        first: Bytes,
        body: &mut Body<'_>,
    ) -> Result<u64, StorageError> {
        let mut in_flight: JoinSet<object_store::Result<()>> = JoinSet::new();
        let mut written = first.len() as u64;
        in_flight.spawn(parts.put_part(PutPayload::from(first)));
        loop {
            let part =
                read_part(body, PART_SIZE).await.map_err(|error| self.failed("read the body of", name, error))?;
            if part.is_empty() {
                break;
            }
            while in_flight.len() >= PARTS_IN_FLIGHT {
                self.joined(name, in_flight.join_next().await)?;
            }
            written += part.len() as u64;
            in_flight.spawn(parts.put_part(PutPayload::from(part)));
        }
        while let Some(joined) = in_flight.join_next().await {
            self.joined(name, Some(joined))?;
        }
        Ok(written)
    }

    fn joined(
        &self,
        name: &str,
        joined: Option<Result<object_store::Result<()>, tokio::task::JoinError>>,
    ) -> Result<(), StorageError> {
        match joined {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(self.failed("upload", name, error)),
            Some(Err(error)) => Err(self.failed("upload", name, error)),
        }
    }
}

/// A multipart upload that is aborted if the `put` holding it is dropped
/// half-way (a cancelled backup), in a task of its own.
struct AbortOnDrop(Option<Box<dyn MultipartUpload>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(mut upload) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// Reads the next part: exactly `size` bytes, or fewer only at the end of
/// the body (empty when it is over). However the body's bytes arrive, every
/// part but the last has the same size.
pub async fn read_part(body: &mut (dyn AsyncRead + Send + Unpin + '_), size: usize) -> std::io::Result<Bytes> {
    let mut part = BytesMut::with_capacity(size);
    while part.len() < size {
        let mut limited = (&mut *body).take((size - part.len()) as u64);
        if limited.read_buf(&mut part).await? == 0 {
            break;
        }
    }
    Ok(part.freeze())
}

/// `s3://bucket/prefix at endpoint`, for messages.
fn place(bucket: &str, prefix: &str, endpoint: Option<&str>) -> String {
    let place = if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
    match endpoint {
        Some(endpoint) => format!("{place} at {endpoint}"),
        None => place,
    }
}

impl Storage for S3 {
    fn describe(&self) -> String {
        place(&self.bucket, &self.prefix, self.endpoint.as_deref())
    }

    fn put<'a>(&'a self, name: &'a str, mut body: Body<'a>) -> Pending<'a, u64> {
        Box::pin(async move {
            let key = self.key(name)?;
            let first =
                read_part(&mut body, PART_SIZE).await.map_err(|error| self.failed("read the body of", name, error))?;
            if first.len() < PART_SIZE {
                let written = first.len() as u64;
                self.store
                    .put(&key, PutPayload::from(first))
                    .await
                    .map_err(|error| self.failed("upload", name, error))?;
                return Ok(written);
            }
            self.put_multipart(name, &key, first, &mut body).await
        })
    }

    fn get<'a>(&'a self, name: &'a str, range: Option<Range<u64>>) -> Pending<'a, Body<'a>> {
        Box::pin(async move {
            let key = self.key(name)?;
            let missing = || StorageError::Missing { storage: self.describe(), name: name.to_owned() };
            if let Some(range) = &range
                && range.is_empty()
            {
                // S3 has no empty range: the object's size settles it.
                let meta = self.stat(name).await?.ok_or_else(missing)?;
                check_range(range, meta.size).map_err(|reason| self.failed("read", name, reason))?;
                return Ok(Box::new(tokio::io::empty()) as Body<'a>);
            }
            let options = GetOptions { range: range.clone().map(GetRange::Bounded), ..GetOptions::default() };
            let result = match self.store.get_opts(&key, options).await {
                Ok(result) => result,
                Err(object_store::Error::NotFound { .. }) => return Err(missing()),
                Err(error) => return Err(self.failed("read", name, error)),
            };
            let size = result.meta.size;
            if let Some(range) = &range {
                check_range(range, size).map_err(|reason| self.failed("read", name, reason))?;
            }
            let returned = result.range.clone();
            if range.as_ref().is_some_and(|range| *range != returned) {
                return Err(self.failed(
                    "read",
                    name,
                    format!("the server returned bytes {returned:?}, not {range:?}"),
                ));
            }
            let stream = result.into_stream().map_err(std::io::Error::other);
            let reader = tokio_util::io::StreamReader::new(stream.boxed());
            Ok(Box::new(super::ExactReader::new(reader, returned.end - returned.start)) as Body<'a>)
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> Pending<'a, Vec<ObjectMeta>> {
        Box::pin(async move {
            // object_store lists whole path segments: list the directory
            // the prefix is in, keep the names that start with it.
            let dir = prefix.rsplit_once('/').map(|(dir, _)| dir).unwrap_or_default();
            let listed =
                [self.prefix.as_str(), dir].iter().filter(|part| !part.is_empty()).copied().collect::<Vec<_>>();
            let listed = if listed.is_empty() {
                None
            } else {
                Some(Path::parse(listed.join("/")).map_err(|error| self.failed("list", prefix, error))?)
            };
            let mut stream = self.store.list(listed.as_ref());
            let mut objects = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|error| self.failed("list", prefix, error))?;
                if let Some(name) = self.name_of(&meta.location)
                    && name.starts_with(prefix)
                {
                    objects.push(ObjectMeta { name, size: meta.size });
                }
            }
            objects.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(objects)
        })
    }

    fn stat<'a>(&'a self, name: &'a str) -> Pending<'a, Option<ObjectMeta>> {
        Box::pin(async move {
            let key = self.key(name)?;
            match self.store.head(&key).await {
                Ok(meta) => Ok(Some(ObjectMeta { name: name.to_owned(), size: meta.size })),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(self.failed("stat", name, error)),
            }
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> Pending<'a, ()> {
        Box::pin(async move {
            let key = self.key(name)?;
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(self.failed("delete", name, error)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body whose bytes arrive in chunks of awkward sizes.
    fn chunked(total: usize, chunk_sizes: &[usize]) -> (Vec<u8>, impl AsyncRead + Send + Unpin) {
        let data: Vec<u8> = (0..total).map(|index| (index * 7 % 251) as u8).collect();
        let mut chunks = Vec::new();
        let mut offset = 0;
        let mut sizes = chunk_sizes.iter().cycle();
        while offset < total {
            let size = (*sizes.next().unwrap_or(&1)).min(total - offset);
            chunks.push(Ok::<_, std::io::Error>(Bytes::copy_from_slice(&data[offset..offset + size])));
            offset += size;
        }
        (data, tokio_util::io::StreamReader::new(futures_util::stream::iter(chunks)))
    }

    async fn split(total: usize, chunk_sizes: &[usize], part_size: usize) -> (Vec<u8>, Vec<Bytes>) {
        let (data, mut body) = chunked(total, chunk_sizes);
        let mut parts = Vec::new();
        loop {
            let part = read_part(&mut body, part_size).await.unwrap();
            if part.is_empty() {
                break;
            }
            parts.push(part);
        }
        (data, parts)
    }

    #[tokio::test]
    async fn parts_are_equal_whatever_size_the_chunks_arrive_in() {
        for chunk_sizes in [&[1usize][..], &[7, 333, 1500, 2], &[1000], &[4096, 3], &[999, 1001]] {
            let (data, parts) = split(10_500, chunk_sizes, 1000).await;
            assert_eq!(parts.len(), 11, "{chunk_sizes:?}");
            assert!(parts[..10].iter().all(|part| part.len() == 1000), "{chunk_sizes:?}");
            assert_eq!(parts[10].len(), 500);
            assert_eq!(parts.concat(), data);
        }
    }

    #[tokio::test]
    async fn a_body_of_exactly_whole_parts_has_no_short_last_part() {
        let (data, parts) = split(3000, &[700], 1000).await;
        assert_eq!(parts.iter().map(Bytes::len).collect::<Vec<_>>(), [1000, 1000, 1000]);
        assert_eq!(parts.concat(), data);
        let (_, parts) = split(0, &[700], 1000).await;
        assert!(parts.is_empty());
    }

    #[test]
    fn auto_region_is_us_east_1_on_aws_and_kept_elsewhere() {
        assert_eq!(signing_region(None, None), "us-east-1");
        assert_eq!(signing_region(Some("auto"), None), "us-east-1");
        assert_eq!(signing_region(None, Some("https://x.r2.cloudflarestorage.com")), "auto");
        assert_eq!(signing_region(Some("auto"), Some("https://x")), "auto");
        assert_eq!(signing_region(Some("eu-west-3"), None), "eu-west-3");
        assert_eq!(signing_region(Some("us-west-004"), Some("https://s3.us-west-004.backblazeb2.com")), "us-west-004");
    }
}
