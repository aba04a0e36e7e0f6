//! Blobs in one S3 bucket.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::sdk_error;
use crate::ports::{BlobStore, IoError, IoResult};

/// A key as `CopySource` wants it: URL-encoded, its slashes kept.
const COPY_SOURCE_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Blobs in one S3 bucket.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Blobs {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> IoResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map_err(sdk_error("write blob"))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> IoResult<Option<Vec<u8>>> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None)
            }
            Err(error) => return Err(sdk_error("read blob")(error)),
        };
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| IoError::new("read blob", e))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> IoResult<Option<Vec<u8>>> {
        if len == 0 {
            return Ok(self.size(key).await?.map(|_| Vec::new()));
        }
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={offset}-{}", offset + len - 1))
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None)
            }
            // A range that starts past the end: the object is shorter than `offset`.
            Err(error)
                if error
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 416) =>
            {
                return Ok(Some(Vec::new()))
            }
            Err(error) => return Err(sdk_error("read blob range")(error)),
        };
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| IoError::new("read blob range", e))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    async fn size(&self, key: &str) -> IoResult<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(output.content_length().unwrap_or(0).max(0) as u64)),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(sdk_error("read blob size")(error)),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> IoResult<()> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!(
                "{}/{}",
                self.bucket,
                utf8_percent_encode(from, COPY_SOURCE_KEY)
            ))
            .key(to)
            .send()
            .await
            .map_err(sdk_error("copy blob"))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> IoResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk_error("delete blob"))?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> IoResult<usize> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let mut deleted = 0;
        loop {
            // Deleting what was listed makes the next listing start over with what is left.
            let listing = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(sdk_error("list blobs"))?;
            let objects: Vec<ObjectIdentifier> = listing
                .contents()
                .iter()
                .filter_map(|object| object.key())
                .filter_map(|key| ObjectIdentifier::builder().key(key).build().ok())
                .collect();
            if objects.is_empty() {
                return Ok(deleted);
            }
            deleted += objects.len();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| IoError::new("delete blobs", e))?;
            self.client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(sdk_error("delete blobs"))?;
        }
    }

    async fn list(&self, prefix: &str) -> IoResult<Vec<(String, u64)>> {
        let mut found = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk_error("list blobs"))?;
            found.extend(page.contents().iter().filter_map(|object| {
                Some((
                    object.key()?.to_string(),
                    object.size().unwrap_or(0).max(0) as u64,
                ))
            }));
        }
        Ok(found)
    }

    async fn presigned_get(&self, key: &str, expires_in: Duration) -> IoResult<String> {
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| IoError::new("presign blob", e))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(sdk_error("presign blob"))?;
        Ok(request.uri().to_string())
    }

    async fn presigned_put(&self, key: &str, expires_in: Duration) -> IoResult<String> {
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| IoError::new("presign blob upload", e))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(sdk_error("presign blob upload"))?;
        Ok(request.uri().to_string())
    }
}
