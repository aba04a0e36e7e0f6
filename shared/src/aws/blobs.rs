//! Blobs in one S3 bucket.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;

use super::sdk_error;
use crate::ports::{BlobStore, IoError, IoResult};

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
