//! Sentence segmentation for any language, following the core of the Unicode sentence
//! boundary rules (UAX #29): a terminator (`.` `!` `?`, CJK `。！？．`, and `।` `؟` `۔` `።`),
//! then closing quotes/brackets, then spaces, ends a sentence; CJK terminators need no
//! space; a `.` followed by a lowercase letter or a digit ("e.g. early", "3.50") does not
//! end one. Abbreviations ("M. Dupont", "Dr. Smith") and initials are kept with the next
//! word. A single pass over the text, no allocation but the output vector.

/// Words that end with a period without ending a sentence (lowercase, sorted by bytes for
/// a binary search; compared case-insensitively).
const ABBREVIATIONS: &[&str] = &[
    "approx", "art", "av", "bd", "cf", "ch", "co", "corp", "dept", "dr", "e.g", "env", "etc", "ex",
    "fig", "gen", "gov", "hon", "i.e", "inc", "jr", "ltd", "max", "me", "min", "mlle", "mlles",
    "mm", "mme", "mmes", "mr", "mrs", "ms", "mt", "no", "nos", "p", "pp", "prof", "rep", "rev",
    "réf", "sen", "sr", "st", "tél", "vol", "vs",
];
/// The longest of [`ABBREVIATIONS`], in bytes.
const LONGEST_ABBREVIATION: usize = 6;

/// Splits text into sentences. Each sentence is trimmed; no text other than the
/// whitespace between sentences is lost, and the order is kept.
pub fn split_sentences(text: &str) -> Vec<&str> {
    Sentences::new(text).collect()
}

/// The sentences of a text, in order (see [`split_sentences`]); allocates nothing.
pub struct Sentences<'a> {
    text: &'a str,
    /// Start of the sentence being read.
    start: usize,
    /// Where the search for the next terminator resumes.
    scan: usize,
}

impl<'a> Sentences<'a> {
    pub fn new(text: &'a str) -> Self {
        Sentences {
            text,
            start: 0,
            scan: 0,
        }
    }

    /// The next terminator at or after `self.scan`: its byte index and char. Scans bytes,
    /// decoding a char only at an ASCII terminator or the lead byte of a non-ASCII one.
    fn next_terminator(&mut self) -> Option<(usize, char)> {
        let bytes = self.text.as_bytes();
        while let Some(index) = next_candidate(bytes, self.scan) {
            let ch = self.text[index..].chars().next()?;
            self.scan = index + ch.len_utf8();
            if terminator_kind(ch).is_some() {
                return Some((index, ch));
            }
        }
        self.scan = bytes.len();
        None
    }
}

/// The index of the first byte at or after `from` that may start a terminator. Tests 8
/// bytes at a time for `.` `!` `?` or a byte of 0xD8 or more (every lead byte of a non-ASCII
/// terminator is), and looks closer only at words where one is.
fn next_candidate(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_byte = |word: u64, byte: u8| {
        let diff = word ^ (ONES * u64::from(byte));
        diff.wrapping_sub(ONES) & !diff & HIGHS != 0
    };
    let in_table = |byte: &u8| MAY_START_TERMINATOR[usize::from(*byte)];
    let mut start = from;
    while let Some(chunk) = bytes.get(start..start + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let at_least_d8 = ((word & !HIGHS) + ONES * 0x28) & word & HIGHS != 0;
        if at_least_d8 || has_byte(word, b'.') || has_byte(word, b'!') || has_byte(word, b'?') {
            if let Some(offset) = chunk.iter().position(in_table) {
                return Some(start + offset);
            }
        }
        start += 8;
    }
    bytes[start.min(bytes.len())..]
        .iter()
        .position(in_table)
        .map(|offset| start + offset)
}

impl<'a> Iterator for Sentences<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.text;
        while let Some((index, ch)) = self.next_terminator() {
            let Some((needs_space, is_period)) = terminator_kind(ch) else {
                continue;
            };
            // Further terminators and closing punctuation belong to this sentence.
            let mut end = index + ch.len_utf8();
            for next in text[end..].chars() {
                if !CLOSING.contains(&next) {
                    break;
                }
                end += next.len_utf8();
            }
            self.scan = end;
            let rest = &text[end..];
            let after_space = rest.trim_start();
            let has_space = after_space.len() < rest.len();
            if after_space.is_empty() {
                break; // the end of the text closes the last sentence below
            }
            if needs_space && !has_space {
                continue;
            }
            if is_period {
                let next = after_space.chars().next().unwrap_or(' ');
                if next.is_lowercase()
                    || next.is_ascii_digit()
                    || ends_with_abbreviation(&text[self.start..end])
                {
                    continue;
                }
            }
            let sentence = text[self.start..end].trim();
            self.start = end;
            if !sentence.is_empty() {
                return Some(sentence);
            }
        }
        let last = text[self.start..].trim();
        self.start = text.len();
        self.scan = text.len();
        (!last.is_empty()).then_some(last)
    }
}

/// Whether a char ends a sentence: (needs a space after it, is a period).
fn terminator_kind(ch: char) -> Option<(bool, bool)> {
    match ch {
        '.' => Some((true, true)),
        '!' | '?' | '।' | '॥' | '؟' | '۔' | '።' | '፧' | '…' => Some((true, false)),
        '。' | '！' | '？' | '．' => Some((false, false)),
        _ => None,
    }
}

/// Chars after a terminator that still belong to its sentence: more terminators, closing
/// quotes and brackets.
const CLOSING: &[char] = &[
    '.', '!', '?', '。', '！', '？', '"', '\'', '»', '”', '’', ')', ']', '」', '』', '）',
];

/// Bytes that may start a terminator: the ASCII ones and the UTF-8 lead bytes of the others.
static MAY_START_TERMINATOR: [bool; 256] = {
    let mut table = [false; 256];
    let terminators = [
        '.', '!', '?', '।', '॥', '؟', '۔', '።', '፧', '…', '。', '！', '？', '．',
    ];
    let mut i = 0;
    while i < terminators.len() {
        let mut buffer = [0u8; 4];
        let encoded = terminators[i].encode_utf8(&mut buffer);
        table[encoded.as_bytes()[0] as usize] = true;
        i += 1;
    }
    table
};

/// True when the text ends with "<abbreviation>." or a single-letter initial ("J.").
fn ends_with_abbreviation(text: &str) -> bool {
    let text = text.trim_end_matches(['"', '\'', '»', '”', '’', ')', ']']);
    let Some(without_dot) = text.strip_suffix('.') else {
        return false;
    };
    // Only the end of a word can be an abbreviation (at most 12 bytes, see
    // `is_abbreviation`): a longer word is cut to 13 bytes, still too long for a match.
    let mut tail_start = without_dot
        .len()
        .saturating_sub(LONGEST_ABBREVIATION * 2 + 1);
    while !without_dot.is_char_boundary(tail_start) {
        tail_start -= 1;
    }
    let last_word = without_dot[tail_start..]
        .rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"' || c == '«')
        .next()
        .unwrap_or("");
    let mut chars = last_word.chars();
    match (chars.next(), chars.next()) {
        (None, _) => false,
        (Some(c), None) => c.is_alphabetic(),
        _ => is_abbreviation(last_word),
    }
}

/// Whether `word` is one of [`ABBREVIATIONS`], in any case; allocates only for a short
/// word that is not ASCII.
fn is_abbreviation(word: &str) -> bool {
    if word.len() > LONGEST_ABBREVIATION * 2 {
        return false;
    }
    if word.is_ascii() {
        let mut lower = [0u8; LONGEST_ABBREVIATION];
        let Some(lower) = lower.get_mut(..word.len()) else {
            return false;
        };
        lower.copy_from_slice(word.as_bytes());
        lower.make_ascii_lowercase();
        return ABBREVIATIONS
            .binary_search_by(|known| known.as_bytes().cmp(lower))
            .is_ok();
    }
    let lower = word.to_lowercase();
    ABBREVIATIONS
        .binary_search_by(|known| known.as_bytes().cmp(lower.as_bytes()))
        .is_ok()
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
    fn every_terminator_is_found_wherever_it_falls_in_a_word() {
        for terminator in [
            '.', '!', '?', '।', '॥', '؟', '۔', '።', '፧', '…', '。', '！', '？', '．',
        ] {
            for padding in 0..17 {
                let text = format!(
                    "{}{terminator}{}",
                    "é".repeat(padding / 2) + &"a".repeat(padding % 2),
                    "b".repeat(9)
                );
                let at = text.find(terminator).unwrap();
                assert_eq!(next_candidate(text.as_bytes(), 0), Some(at), "{text}");
                assert_eq!(
                    next_candidate(text.as_bytes(), at + terminator.len_utf8()),
                    None,
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn abbreviations_are_sorted_lowercase_and_found_in_any_case() {
        assert!(ABBREVIATIONS
            .windows(2)
            .all(|w| w[0].as_bytes() < w[1].as_bytes()));
        assert!(ABBREVIATIONS.iter().all(|a| a.to_lowercase() == *a));
        assert!(ABBREVIATIONS
            .iter()
            .all(|a| a.len() <= LONGEST_ABBREVIATION));
        for word in ["Dr", "MME", "Approx", "RÉF", "tél", "e.G"] {
            assert!(is_abbreviation(word), "{word}");
        }
        for word in ["report", "Drs", "réfs", "approxi", ""] {
            assert!(!is_abbreviation(word), "{word}");
        }
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
