//! Provider API keys encrypted and decrypted with KMS.

use async_trait::async_trait;
use base64::Engine as _;

use super::sdk_error;
use crate::ports::{IoError, IoResult, Secrets};

/// KMS encryption and decryption of provider API keys.
#[derive(Clone, Debug)]
pub struct KmsSecrets {
    client: aws_sdk_kms::Client,
    /// Key that encrypts new secrets (decryption needs none: the ciphertext names it).
    key_id: Option<String>,
}

impl KmsSecrets {
    pub fn new(client: aws_sdk_kms::Client, key_id: Option<String>) -> Self {
        KmsSecrets { client, key_id }
    }
}

#[async_trait]
impl Secrets for KmsSecrets {
    async fn decrypt(&self, ciphertext_b64: &str) -> IoResult<String> {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(ciphertext_b64.trim())
            .map_err(|e| IoError::new("decode secret", e))?;
        let output = self
            .client
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
            .send()
            .await
            .map_err(sdk_error("decrypt secret"))?;
        let plaintext = output
            .plaintext
            .ok_or_else(|| IoError::new("decrypt secret", "no plaintext"))?;
        String::from_utf8(plaintext.into_inner()).map_err(|e| IoError::new("decrypt secret", e))
    }

    async fn encrypt(&self, secret: &str) -> IoResult<String> {
        let key_id = self
            .key_id
            .as_deref()
            .ok_or_else(|| IoError::new("encrypt secret", "GATEWAY_KMS_KEY_ID is not set"))?;
        let output = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(aws_sdk_kms::primitives::Blob::new(secret.as_bytes()))
            .send()
            .await
            .map_err(sdk_error("encrypt secret"))?;
        let ciphertext = output
            .ciphertext_blob
            .ok_or_else(|| IoError::new("encrypt secret", "no ciphertext"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(ciphertext.into_inner()))
    }
}
