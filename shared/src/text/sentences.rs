//! Sentence segmentation for any language: Unicode sentence boundaries (UAX #29), which
//! handle CJK full stops and decimal numbers, plus a merge step for abbreviations such as
//! "M. Dupont" or "Dr. Smith" that UAX #29 alone would split.

use unicode_segmentation::UnicodeSegmentation;

/// Words that end with a period without ending a sentence (compared case-insensitively).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "mme", "mmes", "mlle", "mlles", "me",
    "mm", "vs", "etc", "cf", "e.g", "i.e", "no", "nos", "fig", "approx", "inc", "ltd", "co",
    "corp", "dept", "gen", "gov", "sen", "rep", "rev", "hon", "av", "bd", "env", "p", "pp", "vol",
    "ch", "art", "min", "max", "réf", "tél", "ex",
];

/// Splits text into sentences. Each sentence is trimmed; no text other than the
/// whitespace between sentences is lost, and the order is kept.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut sentences: Vec<&str> = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for segment in text.split_sentence_bounds() {
        let segment_start = offset;
        offset += segment.len();
        let begin = *start.get_or_insert(segment_start);
        let candidate = text[begin..offset].trim_end();
        if candidate.is_empty() {
            start = None;
            continue;
        }
        if ends_with_abbreviation(candidate) && offset < text.len() {
            continue;
        }
        sentences.push(text[begin..offset].trim());
        start = None;
    }
    if let Some(begin) = start {
        let rest = text[begin..].trim();
        if !rest.is_empty() {
            sentences.push(rest);
        }
    }
    sentences
}

/// True when the text ends with "<abbreviation>." or a single-letter initial ("J.").
fn ends_with_abbreviation(text: &str) -> bool {
    let Some(without_dot) = text.strip_suffix('.') else {
        return false;
    };
    let last_word = without_dot
        .rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"' || c == '«')
        .next()
        .unwrap_or("");
    let mut chars = last_word.chars();
    match (chars.next(), chars.next()) {
        (None, _) => false,
        (Some(c), None) => c.is_alphabetic(),
        _ => ABBREVIATIONS.contains(&last_word.to_lowercase().as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english() {
        assert_eq!(
            split_sentences("Hello there. How are you? I'm fine! Thanks."),
            vec!["Hello there.", "How are you?", "I'm fine!", "Thanks."]
        );
        assert_eq!(
            split_sentences("Dr. Smith paid $3.50 for it. Then Mr. Brown left, e.g. early."),
            vec![
                "Dr. Smith paid $3.50 for it.",
                "Then Mr. Brown left, e.g. early."
            ]
        );
    }

    #[test]
    fn french_spacing_and_abbreviations() {
        assert_eq!(
            split_sentences("M. Dupont est là. On commence ? Oui ! Mme. Durand aussi."),
            vec![
                "M. Dupont est là.",
                "On commence ?",
                "Oui !",
                "Mme. Durand aussi."
            ]
        );
        assert_eq!(
            split_sentences("J. K. Rowling écrit. C'est l'équipe d'aujourd'hui."),
            vec!["J. K. Rowling écrit.", "C'est l'équipe d'aujourd'hui."]
        );
    }

    #[test]
    fn chinese_and_japanese_without_spaces() {
        assert_eq!(
            split_sentences("我们开始吧。今天讨论预算！有问题吗？好的。"),
            vec!["我们开始吧。", "今天讨论预算！", "有问题吗？", "好的。"]
        );
        assert_eq!(
            split_sentences("会議を始めます。予算について話しましょう！質問はありますか？"),
            vec![
                "会議を始めます。",
                "予算について話しましょう！",
                "質問はありますか？"
            ]
        );
    }

    #[test]
    fn mixed_languages() {
        assert_eq!(
            split_sentences("We agree. 我们同意。 On est d'accord ! 了解しました。"),
            vec![
                "We agree.",
                "我们同意。",
                "On est d'accord !",
                "了解しました。"
            ]
        );
    }

    #[test]
    fn edge_cases() {
        assert!(split_sentences("").is_empty());
        assert!(split_sentences("   ").is_empty());
        assert_eq!(
            split_sentences("no punctuation at all"),
            vec!["no punctuation at all"]
        );
        assert_eq!(
            split_sentences("ends with abbreviation Dr."),
            vec!["ends with abbreviation Dr."]
        );
    }

    #[test]
    fn nothing_lost() {
        let text = "Un. Deux ? Trois ! M. Quatre. 五。六！ seven... eight";
        let joined: String = split_sentences(text).join(" ");
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join("");
        assert_eq!(squash(&joined), squash(text));
    }
}
