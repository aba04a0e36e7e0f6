//! Sentence segmentation for any language, following the core of the Unicode sentence
//! boundary rules (UAX #29): a terminator (`.` `!` `?`, CJK `。！？．`, and `।` `؟` `۔` `።`),
//! then closing quotes/brackets, then spaces, ends a sentence; CJK terminators need no
//! space; a `.` followed by a lowercase letter or a digit ("e.g. early", "3.50") does not
//! end one. Abbreviations ("M. Dupont", "Dr. Smith") and initials are kept with the next
//! word. A single pass over the text, no allocation but the output vector.

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
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((index, ch)) = chars.next() {
        let (needs_space, is_period) = match ch {
            '.' => (true, true),
            '!' | '?' | '।' | '॥' | '؟' | '۔' | '።' | '፧' | '…' => (true, false),
            '。' | '！' | '？' | '．' => (false, false),
            _ => continue,
        };
        // Further terminators and closing punctuation belong to this sentence.
        let mut end = index + ch.len_utf8();
        while let Some(&(next_index, next)) = chars.peek() {
            if matches!(
                next,
                '.' | '!'
                    | '?'
                    | '。'
                    | '！'
                    | '？'
                    | '"'
                    | '\''
                    | '»'
                    | '”'
                    | '’'
                    | ')'
                    | ']'
                    | '」'
                    | '』'
                    | '）'
            ) {
                end = next_index + next.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let rest = &text[end..];
        let after_space = rest.trim_start();
        let has_space = after_space.len() < rest.len();
        if after_space.is_empty() {
            continue; // the end of the text closes the last sentence below
        }
        if needs_space && !has_space {
            continue;
        }
        if is_period {
            let next = after_space.chars().next().unwrap_or(' ');
            if next.is_lowercase()
                || next.is_ascii_digit()
                || ends_with_abbreviation(&text[start..end])
            {
                continue;
            }
        }
        let sentence = text[start..end].trim();
        if !sentence.is_empty() {
            sentences.push(sentence);
        }
        start = end;
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        sentences.push(last);
    }
    sentences
}

/// True when the text ends with "<abbreviation>." or a single-letter initial ("J.").
fn ends_with_abbreviation(text: &str) -> bool {
    let text = text.trim_end_matches(['"', '\'', '»', '”', '’', ')', ']']);
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
    fn quotes_ellipses_and_other_scripts() {
        assert_eq!(
            split_sentences("He said \"stop.\" Then he left... Really? Yes."),
            vec!["He said \"stop.\"", "Then he left...", "Really?", "Yes."]
        );
        assert_eq!(
            split_sentences("यह पहला है। यह दूसरा है।"),
            vec!["यह पहला है।", "यह दूसरा है।"]
        );
        assert_eq!(split_sentences("هل انتهى؟ نعم."), vec!["هل انتهى؟", "نعم."]);
        assert_eq!(
            split_sentences("Version 2.5 is out. See www.example.com now."),
            vec!["Version 2.5 is out.", "See www.example.com now."]
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
