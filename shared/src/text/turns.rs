//! Transcript turns: one per non-empty line, with an optional `Speaker : ` prefix.

/// Longest speaker label (in chars) recognised as a prefix.
const MAX_SPEAKER_CHARS: usize = 64;
/// Most words a speaker label may have ("Dr. Marie Curie", "Intervenant 2").
const MAX_SPEAKER_WORDS: usize = 6;

/// One line of a transcript, split into its speaker prefix and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn<'a> {
    /// The whole line, trimmed.
    pub line: &'a str,
    /// The prefix exactly as written, separator included (`"Jean : "`), or `""`.
    pub prefix: &'a str,
    /// The text after the prefix.
    pub body: &'a str,
}

impl<'a> Turn<'a> {
    /// Parses one line (without its line break).
    pub fn parse(line: &'a str) -> Self {
        let prefix_len = speaker_prefix_len(line);
        Turn {
            line,
            prefix: &line[..prefix_len],
            body: &line[prefix_len..],
        }
    }

    /// The speaker label without separator, if the line has one.
    pub fn speaker(&self) -> Option<&'a str> {
        if self.prefix.is_empty() {
            return None;
        }
        Some(
            self.prefix
                .trim_end()
                .trim_end_matches([':', '：'])
                .trim_end(),
        )
    }
}

/// Splits a transcript into turns: every non-empty line (after trimming) is one turn.
pub fn split_turns(text: &str) -> impl Iterator<Item = Turn<'_>> {
    turn_lines(text).map(Turn::parse)
}

/// The lines of a transcript that are turns (non-empty after trimming), trimmed and not
/// parsed yet.
pub fn turn_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|line| !line.is_empty())
}

/// Byte length of the speaker prefix (label, optional space, `:` or `：`, spaces), or 0.
///
/// A label is 1–6 words of letters/digits of any script, plus `- ' . _ #`; it must start
/// with a letter or digit. `http://` style colons are not prefixes.
fn speaker_prefix_len(line: &str) -> usize {
    let mut words = 1;
    let mut previous_was_space = false;
    for (chars_seen, (index, ch)) in line.char_indices().enumerate() {
        if chars_seen > MAX_SPEAKER_CHARS {
            return 0;
        }
        match ch {
            ':' | '：' => {
                let label = line[..index].trim_end();
                if label.is_empty() || words > MAX_SPEAKER_WORDS {
                    return 0;
                }
                let rest = &line[index + ch.len_utf8()..];
                if rest.starts_with("//") {
                    return 0;
                }
                let spaces = rest.len() - rest.trim_start().len();
                return index + ch.len_utf8() + spaces;
            }
            ' ' | '\t' => {
                if chars_seen == 0 {
                    return 0;
                }
                if !previous_was_space {
                    words += 1;
                }
                previous_was_space = true;
                continue;
            }
            c if c.is_alphanumeric()
                || (chars_seen > 0 && matches!(c, '-' | '\'' | '’' | '.' | '_' | '#')) => {}
            _ => return 0,
        }
        previous_was_space = false;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_prefixes_with_and_without_space() {
        let t = Turn::parse("Jean : Bonjour à tous.");
        assert_eq!((t.prefix, t.body), ("Jean : ", "Bonjour à tous."));
        let t = Turn::parse("Marie:ok");
        assert_eq!((t.prefix, t.body), ("Marie:", "ok"));
        assert_eq!(
            Turn::parse("Dr. Marie Curie: yes").speaker(),
            Some("Dr. Marie Curie")
        );
        assert_eq!(Turn::parse("SPEAKER_01 : hi").speaker(), Some("SPEAKER_01"));
    }

    #[test]
    fn prefixes_in_other_scripts() {
        assert_eq!(Turn::parse("张伟：我们开始吧。").speaker(), Some("张伟"));
        assert_eq!(Turn::parse("Алексей : привет").speaker(), Some("Алексей"));
        assert_eq!(Turn::parse("محمد: مرحبا").speaker(), Some("محمد"));
        assert_eq!(Turn::parse("田中 : はい").body, "はい");
    }

    #[test]
    fn lines_without_prefix() {
        for line in [
            "[rires]",
            "see https://example.com: it works",
            "http://example.com",
            "just a sentence without colon",
            " : empty label",
            "this line has far too many words before its colon here: x",
        ] {
            let turn = Turn::parse(line);
            assert_eq!(turn.prefix, "", "{line}");
            assert_eq!(turn.body, line);
        }
    }

    #[test]
    fn split_turns_skips_blank_lines() {
        let turns: Vec<_> = split_turns("A : one\n\n  \r\nB : two\r\nthree\n").collect();
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[1].speaker(), Some("B"));
        assert_eq!(turns[2].body, "three");
    }
}
