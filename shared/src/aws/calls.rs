//! One debug line per AWS call (service, operation, status, response bytes), with the
//! target `aws_call`: `RUST_LOG=info,aws_call=debug` shows them. How the scale bench
//! counts the AWS calls and the bytes read per step; silent otherwise.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The interceptor every client of [`super::AwsClients`] carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallLog;

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !tracing::enabled!(target: "aws_call", tracing::Level::DEBUG) {
            return Ok(());
        }
        let (service, operation) = cfg
            .load::<Metadata>()
            .map_or(("", ""), |metadata| (metadata.service(), metadata.name()));
        let response = context.response();
        let bytes = response
            .and_then(|response| response.headers().get("content-length"))
            .and_then(|length| length.parse::<u64>().ok())
            .unwrap_or(0);
        tracing::debug!(
            target: "aws_call",
            service,
            operation,
            status = response.map_or(0, |response| response.status().as_u16()),
            bytes,
            "aws call"
        );
        Ok(())
    }
}
