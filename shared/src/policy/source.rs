//! Where the document comes from: a file, inline, or an SSM parameter.

use super::Policy;
use crate::config::PolicySource;
use crate::error::{Error, Result};

impl Policy {
    /// Reads the document from its source (a file, inline, or SSM with decryption) and parses it.
    /// The SSM client is built only for an SSM source: a client costs a cold start about as much
    /// as parsing the whole policy.
    pub async fn load(source: &PolicySource, sdk: &aws_config::SdkConfig) -> Result<Policy> {
        let origin = source.describe();
        let document = match source {
            PolicySource::Inline(doc) => doc.clone(),
            PolicySource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::policy(&origin, format!("cannot read the file: {e}")))?,
            PolicySource::SsmParameter(name) => aws_sdk_ssm::Client::new(sdk)
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| Error::aws("ssm:GetParameter", name, e))?
                .parameter
                .and_then(|p| p.value)
                .ok_or_else(|| {
                    Error::unexpected("ssm:GetParameter", name, "the parameter has no value")
                })?,
        };
        Policy::parse(&document, &origin)
    }
}
