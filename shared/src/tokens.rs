//! Token counting with the model's tokenizer: tiktoken encodings (cl100k_base, o200k_base)
//! or a HuggingFace `tokenizer.json` file. Encoders are built once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Environment variable naming the folder that holds HuggingFace tokenizer files, laid out
/// as `{dir}/{owner}--{repo}/tokenizer.json`.
pub const TOKENIZER_DIR_ENV: &str = "GATEWAY_TOKENIZER_DIR";

/// The tokenizer used when nothing else matches.
pub const DEFAULT_ENCODING: &str = "cl100k_base";

/// The tiktoken encodings compiled into every function.
pub const TIKTOKEN_ENCODINGS: [&str; 2] = ["cl100k_base", "o200k_base"];

/// Counts tokens of text; cheap to clone.
#[derive(Clone)]
pub struct TokenCounter {
    name: String,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Tiktoken(&'static tiktoken::CoreBpe),
    HuggingFace(Arc<tokenizers::Tokenizer>),
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter")
            .field("name", &self.name)
            .finish()
    }
}

/// Why a tokenizer could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("unknown tokenizer '{0}'")]
    Unknown(String),
    #[error("tokenizer file {path} could not be loaded: {reason}")]
    File { path: String, reason: String },
}

impl TokenCounter {
    /// Loads a tokenizer by name: a tiktoken encoding (`cl100k_base`, `o200k_base`), a
    /// HuggingFace repo id (`owner/name`, looked up under [`TOKENIZER_DIR_ENV`]) or a path
    /// to a `tokenizer.json` file.
    pub fn load(name: &str) -> Result<Self, TokenizerError> {
        if let Some(bpe) = tiktoken_encoding(name) {
            return Ok(TokenCounter {
                name: name.to_string(),
                backend: Backend::Tiktoken(bpe),
            });
        }
        let path =
            huggingface_path(name).ok_or_else(|| TokenizerError::Unknown(name.to_string()))?;
        let tokenizer = load_huggingface(&path)?;
        huggingface_cache().insert(name.to_string(), tokenizer.clone());
        Ok(TokenCounter {
            name: name.to_string(),
            backend: Backend::HuggingFace(tokenizer),
        })
    }

    /// A HuggingFace tokenizer from the bytes of its `tokenizer.json`, kept for the
    /// process under `name` (see [`TokenCounter::cached`]).
    pub fn from_huggingface_json(name: &str, json: &[u8]) -> Result<Self, TokenizerError> {
        let tokenizer =
            tokenizers::Tokenizer::from_bytes(json).map_err(|error| TokenizerError::File {
                path: name.to_string(),
                reason: error.to_string(),
            })?;
        let tokenizer = Arc::new(tokenizer);
        huggingface_cache().insert(name.to_string(), tokenizer.clone());
        Ok(TokenCounter {
            name: name.to_string(),
            backend: Backend::HuggingFace(tokenizer),
        })
    }

    /// A compiled-in encoding, or a HuggingFace tokenizer this process already loaded.
    pub fn cached(name: &str) -> Option<Self> {
        if let Some(bpe) = tiktoken_encoding(name) {
            return Some(TokenCounter {
                name: name.to_string(),
                backend: Backend::Tiktoken(bpe),
            });
        }
        let tokenizer = huggingface_cache().get(name)?;
        Some(TokenCounter {
            name: name.to_string(),
            backend: Backend::HuggingFace(tokenizer),
        })
    }

    /// The default counter (cl100k_base).
    pub fn default_counter() -> Self {
        Self::load(DEFAULT_ENCODING).expect("cl100k_base is compiled in")
    }

    /// The name this counter was loaded by (stored on jobs so every step counts alike).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of tokens in `text` (no special tokens added).
    pub fn count(&self, text: &str) -> usize {
        #[cfg(test)]
        counted::add(text.len());
        match &self.backend {
            Backend::Tiktoken(bpe) => bpe.count(text),
            Backend::HuggingFace(tokenizer) => tokenizer
                .encode_fast(text, false)
                .map(|encoding| encoding.len())
                // A HuggingFace encode failure is not expected for valid UTF-8; fall back to
                // a conservative estimate rather than failing the job.
                .unwrap_or_else(|_| text.len().div_ceil(3)),
        }
    }
}

impl TokenCounter {
    /// Whether counts add up at a space: `count(a + b) == count(a) + count(b)` whenever `a`
    /// ends with a non-space and `b` starts with a space or a tab. True for the tiktoken
    /// encodings, whose pre-tokenisation never joins a non-space to a space or tab after it
    /// and decides each piece from the text at and after it (no look-behind), with BPE
    /// applied per piece. Not assumed of HuggingFace tokenizers (normalisers and
    /// SentencePiece-style prefixes may see the whole text).
    pub fn counts_add_up_at_spaces(&self) -> bool {
        matches!(self.backend, Backend::Tiktoken(_))
    }
}

/// Test-only tally of the bytes counted on this thread, to check that callers count each
/// byte a bounded number of times (linear work) without timing anything.
#[cfg(test)]
pub(crate) mod counted {
    use std::cell::Cell;

    thread_local! {
        static BYTES: Cell<usize> = const { Cell::new(0) };
    }

    pub(crate) fn add(bytes: usize) {
        BYTES.with(|total| total.set(total.get() + bytes));
    }

    /// Bytes passed to [`super::TokenCounter::count`] on this thread while `f` runs.
    pub(crate) fn bytes_during<T>(f: impl FnOnce() -> T) -> (usize, T) {
        let before = BYTES.with(Cell::get);
        let result = f();
        (BYTES.with(Cell::get) - before, result)
    }
}

/// Picks the tokenizer name for a model: the flavor override, else the model's configured
/// tokenizer, else one derived from the model identifier, else cl100k_base.
pub fn resolve_tokenizer_name(
    flavor_override: Option<&str>,
    model_tokenizer: Option<&str>,
    model_identifier: &str,
) -> String {
    if let Some(name) = flavor_override
        .or(model_tokenizer)
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        return name.to_string();
    }
    let id = model_identifier.to_ascii_lowercase();
    let id = id.rsplit('/').next().unwrap_or(&id);
    const O200K_PREFIXES: &[&str] = &[
        "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt",
    ];
    if O200K_PREFIXES.iter().any(|prefix| id.starts_with(prefix)) {
        "o200k_base".to_string()
    } else {
        DEFAULT_ENCODING.to_string()
    }
}

fn tiktoken_encoding(name: &str) -> Option<&'static tiktoken::CoreBpe> {
    if TIKTOKEN_ENCODINGS.contains(&name) {
        tiktoken::get_encoding(name)
    } else {
        None
    }
}

fn huggingface_path(name: &str) -> Option<PathBuf> {
    let direct = Path::new(name);
    if name.ends_with(".json") {
        return Some(direct.to_path_buf());
    }
    let (owner, repo) = name.split_once('/')?;
    if owner.is_empty() || repo.is_empty() || repo.contains('/') || name.contains("..") {
        return None;
    }
    let dir = std::env::var(TOKENIZER_DIR_ENV).unwrap_or_else(|_| "tokenizers".to_string());
    Some(
        Path::new(&dir)
            .join(format!("{owner}--{repo}"))
            .join("tokenizer.json"),
    )
}

/// HuggingFace tokenizers loaded by this process, by name or file path.
struct HuggingFaceCache(Mutex<HashMap<String, Arc<tokenizers::Tokenizer>>>);

impl HuggingFaceCache {
    fn get(&self, key: &str) -> Option<Arc<tokenizers::Tokenizer>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn insert(&self, key: String, tokenizer: Arc<tokenizers::Tokenizer>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, tokenizer);
    }
}

fn huggingface_cache() -> &'static HuggingFaceCache {
    static CACHE: OnceLock<HuggingFaceCache> = OnceLock::new();
    CACHE.get_or_init(|| HuggingFaceCache(Mutex::new(HashMap::new())))
}

fn load_huggingface(path: &Path) -> Result<Arc<tokenizers::Tokenizer>, TokenizerError> {
    let key = path.display().to_string();
    if let Some(found) = huggingface_cache().get(&key) {
        return Ok(found);
    }
    let tokenizer =
        tokenizers::Tokenizer::from_file(path).map_err(|error| TokenizerError::File {
            path: key.clone(),
            reason: error.to_string(),
        })?;
    let tokenizer = Arc::new(tokenizer);
    huggingface_cache().insert(key, tokenizer.clone());
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_order() {
        assert_eq!(
            resolve_tokenizer_name(Some("o200k_base"), Some("cl100k_base"), "x"),
            "o200k_base"
        );
        assert_eq!(
            resolve_tokenizer_name(None, Some("mistralai/Mistral-7B"), "x"),
            "mistralai/Mistral-7B"
        );
        assert_eq!(
            resolve_tokenizer_name(Some(" "), None, "openai/gpt-4o-mini"),
            "o200k_base"
        );
        assert_eq!(
            resolve_tokenizer_name(None, None, "gpt-4-turbo"),
            "cl100k_base"
        );
        assert_eq!(
            resolve_tokenizer_name(None, None, "mock-model"),
            "cl100k_base"
        );
    }

    #[test]
    fn a_huggingface_tokenizer_loads_from_its_json_and_stays_cached() {
        let json = include_bytes!("../../tests/fixtures/tokenizer-word-level.json");
        let name = "test-owner/word-level";
        assert!(TokenCounter::cached(name).is_none());
        let counter = TokenCounter::from_huggingface_json(name, json).unwrap();
        // One token per word or punctuation run: "Jean", ":", "Bonjour", "supercalifragilistic".
        let text = "Jean : Bonjour supercalifragilistic";
        assert_eq!(counter.count(text), 4);
        assert_ne!(
            counter.count(text),
            TokenCounter::default_counter().count(text)
        );
        let again = TokenCounter::cached(name).expect("kept for the process");
        assert_eq!((again.name(), again.count(text)), (name, 4));
        assert!(TokenCounter::from_huggingface_json("x/y", b"{not json").is_err());
        assert!(TokenCounter::cached("cl100k_base").is_some());
    }

    #[test]
    fn tiktoken_counts_match_tiktoken_rs() {
        let text = "Jean : Bonjour à tous, on commence ? 我们开始吧。 Dr. Smith paid $3.50!\n  emojis 🎉🎉";
        let cl100k = TokenCounter::load("cl100k_base").unwrap();
        let o200k = TokenCounter::load("o200k_base").unwrap();
        let reference_cl = tiktoken_rs::cl100k_base().unwrap();
        let reference_o2 = tiktoken_rs::o200k_base().unwrap();
        assert_eq!(cl100k.count(text), reference_cl.encode_ordinary(text).len());
        assert_eq!(o200k.count(text), reference_o2.encode_ordinary(text).len());
        assert_ne!(cl100k.count(text), 0);
    }

    #[test]
    fn huggingface_tokenizer_file() {
        use tokenizers::models::wordlevel::WordLevel;
        use tokenizers::pre_tokenizers::whitespace::Whitespace;
        let vocab = [("hello", 0u32), ("world", 1), ("[UNK]", 2)]
            .into_iter()
            .map(|(w, i)| (w.to_string(), i))
            .collect();
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let mut tokenizer = tokenizers::Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(Whitespace {}));
        let dir = std::env::temp_dir().join(format!("gw-tok-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokenizer.json");
        tokenizer.save(&path, false).unwrap();

        let counter = TokenCounter::load(path.to_str().unwrap()).unwrap();
        assert_eq!(counter.count("hello world hello unknown"), 4);
        assert!(matches!(
            TokenCounter::load("nobody/missing"),
            Err(TokenizerError::File { .. })
        ));
        assert!(matches!(
            TokenCounter::load("not-a-tokenizer"),
            Err(TokenizerError::Unknown(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
