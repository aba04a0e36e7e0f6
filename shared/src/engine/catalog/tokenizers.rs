//! The tokenizer a flavor counts with.

use crate::domain::{Flavor, Model};
use crate::tokens::{load_or_default, resolve_tokenizer_name, TokenCounter};

/// The token counter of a flavor on its model: the flavor's override, the model's
/// tokenizer, or one derived from the model identifier.
pub fn counter_for(flavor: &Flavor, model: &Model) -> TokenCounter {
    load_or_default(&resolve_tokenizer_name(
        flavor.tokenizer_override.as_deref(),
        model.tokenizer_name.as_deref(),
        &model.model_identifier,
    ))
}
