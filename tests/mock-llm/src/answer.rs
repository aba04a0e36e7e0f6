//! The deterministic "model": answer derivation and cl100k token counting.

use std::sync::LazyLock;

use regex::Regex;
use tiktoken::CoreBpe;

/// A transcript turn: a short speaker prefix, a colon, then non-empty text.
static TURN_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?P<speaker>[^:\n]{1,40}?)\s?:\s*(?P<text>\S.*)$")
        .expect("turn regex is valid")
});

/// The cl100k_base encoder, built once per process.
static CL100K: LazyLock<&'static CoreBpe> = LazyLock::new(|| {
    tiktoken::get_encoding("cl100k_base")
        .expect("tiktoken is built with the vocab-cl100k_base feature")
});

/// Number of words of each turn's text kept in the answer.
pub const WORDS_PER_TURN: usize = 6;

/// Deterministic answer for a prompt (the last user message).
///
/// Every line that matches `^\s*(?P<speaker>[^:\n]{1,40}?)\s?:\s*(?P<text>\S.*)$`
/// and does not start with `•` (leading whitespace ignored) yields
/// `• {speaker} — {first 6 words of text}`; the lines are joined with `\n`.
/// If no line is a turn but some lines are bullets (a reduce prompt over earlier
/// answers), the answer is `• {K} points merged` followed by the first
/// [`MERGED_POINTS_SHOWN`] bullet lines, trimmed. Otherwise it is
/// `• {N} characters received`, where N is the number of chars in `prompt`.
pub fn answer_for(prompt: &str) -> String {
    let lines: Vec<String> = prompt
        .lines()
        .filter(|line| !line.trim_start().starts_with('•'))
        .filter_map(|line| {
            let caps = TURN_RE.captures(line)?;
            let speaker = caps.name("speaker")?.as_str().trim();
            let text = caps.name("text")?.as_str();
            let words: Vec<&str> = text.split_whitespace().take(WORDS_PER_TURN).collect();
            Some(format!("• {speaker} — {}", words.join(" ")))
        })
        .collect();
    if !lines.is_empty() {
        return lines.join("\n");
    }
    let bullets: Vec<&str> = prompt
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('•'))
        .collect();
    if bullets.is_empty() {
        return format!("• {} characters received", prompt.chars().count());
    }
    let mut answer = format!("• {} points merged", bullets.len());
    for bullet in bullets.iter().take(MERGED_POINTS_SHOWN) {
        answer.push('\n');
        answer.push_str(bullet);
    }
    answer
}

/// The deltas a streamed answer comes in: one word each, with the whitespace after it
/// (joined, they are the answer).
pub fn deltas_of(answer: &str) -> Vec<String> {
    answer
        .split_inclusive(char::is_whitespace)
        .map(str::to_owned)
        .collect()
}

/// Bullet lines of a merge prompt repeated in its answer.
pub const MERGED_POINTS_SHOWN: usize = 5;

/// Number of cl100k_base tokens in `text` (ordinary tokens only; special-token
/// strings are counted as plain text).
pub fn count_tokens(text: &str) -> u32 {
    u32::try_from(CL100K.count(text)).unwrap_or(u32::MAX)
}

/// `prompt_tokens` as reported in `usage`: the cl100k count of all message
/// contents concatenated in order with no separator.
pub fn prompt_tokens<S: AsRef<str>>(contents: &[S]) -> u32 {
    let joined: String = contents.iter().map(AsRef::as_ref).collect();
    count_tokens(&joined)
}

/// Forces the encoder to be built now rather than on the first request.
pub(crate) fn warm_up() {
    let _ = *CL100K;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_summarised() {
        let prompt = "Summarise this call:\n\nAlice: hello there, how are you doing today my friend\n  Bob : fine thanks\n• Carol: ignored bullet\nnot a turn\nDave:   \n";
        // "Summarise this call:" has no text after the colon, so it is not a turn.
        assert_eq!(
            answer_for(prompt),
            "• Alice — hello there, how are you doing\n• Bob — fine thanks"
        );
    }

    #[test]
    fn no_turns_counts_chars() {
        assert_eq!(answer_for("héllo wörld"), "• 11 characters received");
        assert_eq!(answer_for(""), "• 0 characters received");
        assert_eq!(
            answer_for("Merge:\n• A — one\n  • B — two\n"),
            "• 2 points merged\n• A — one\n• B — two"
        );
    }

    #[test]
    fn speaker_limit_and_first_colon() {
        // Speaker longer than 40 chars is not a turn.
        let long = format!("{}: text here", "x".repeat(41));
        assert_eq!(
            answer_for(&long),
            format!("• {} characters received", long.chars().count())
        );
        let ok = format!("{}: text here", "x".repeat(40));
        assert_eq!(answer_for(&ok), format!("• {} — text here", "x".repeat(40)));
        // The speaker stops at the first colon.
        assert_eq!(answer_for("Time: 10:30 start"), "• Time — 10:30 start");
    }

    #[test]
    fn token_counts_are_cl100k() {
        assert_eq!(count_tokens("hello world"), 2);
        assert_eq!(count_tokens(""), 0);
        assert_eq!(prompt_tokens(&["hello", " world"]), 2);
    }
}
