//! The SDK configuration every function shares, read from the environment as Lambda sets
//! it: the region, the execution role's credentials and, for an emulator,
//! `AWS_ENDPOINT_URL`. Built without `aws-config`, whose default chains (profiles, SSO,
//! STS, IMDS) a Lambda function never uses, and with one TLS stack: rustls on ring, as
//! the LLM client (reqwest) uses, so no second crypto library is linked.

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_async::time::SystemTimeSource;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_types::region::Region;
use aws_types::SdkConfig;

/// The configuration from `AWS_REGION` (else `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (optional) and `AWS_ENDPOINT_URL`
/// (optional); the error names a missing variable. Lambda sets these for the execution
/// environment's whole life, so they are read once.
pub fn sdk_config() -> Result<SdkConfig, String> {
    sdk_config_from(|name| std::env::var(name).ok())
}

/// [`sdk_config`] over any source of variables.
fn sdk_config_from(lookup: impl Fn(&str) -> Option<String>) -> Result<SdkConfig, String> {
    let required = |name: &str| {
        lookup(name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| format!("environment variable {name} is not set"))
    };
    let region = required("AWS_REGION").or_else(|_| required("AWS_DEFAULT_REGION"))?;
    let credentials = Credentials::new(
        required("AWS_ACCESS_KEY_ID")?,
        required("AWS_SECRET_ACCESS_KEY")?,
        lookup("AWS_SESSION_TOKEN").filter(|token| !token.is_empty()),
        None,
        "environment",
    );
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(http_client)
        .sleep_impl(TokioSleep::new())
        .time_source(SystemTimeSource::new());
    if let Some(endpoint) = lookup("AWS_ENDPOINT_URL").filter(|url| !url.is_empty()) {
        config = config.endpoint_url(endpoint);
    }
    Ok(config.build())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_credential_types::provider::ProvideCredentials;

    use super::*;

    fn config_of(vars: &[(&str, &str)]) -> Result<SdkConfig, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        sdk_config_from(|name| vars.get(name).cloned())
    }

    #[tokio::test]
    async fn region_credentials_and_endpoint_come_from_the_environment() {
        let config = config_of(&[
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ])
        .unwrap();
        assert_eq!(config.region().map(Region::as_ref), Some("eu-west-3"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:4566"));
        let credentials = config
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(credentials.session_token(), Some("token"));
        assert!(config.http_client().is_some());

        let config = config_of(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ])
        .unwrap();
        assert_eq!(config.region().map(Region::as_ref), Some("us-east-1"));
        assert_eq!(config.endpoint_url(), None);
    }

    #[test]
    fn a_missing_variable_is_named() {
        let error =
            config_of(&[("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "a")]).unwrap_err();
        assert!(error.contains("AWS_SECRET_ACCESS_KEY"), "{error}");
        let error = config_of(&[("AWS_ACCESS_KEY_ID", "a")]).unwrap_err();
        assert!(error.contains("AWS_DEFAULT_REGION"), "{error}");
    }
}
