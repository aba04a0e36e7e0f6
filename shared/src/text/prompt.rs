//! Prompt templates with positional `{}` placeholders. Only the exact sequence `{}` is a
//! placeholder; every other brace (JSON examples, `{name}`) is kept literally, and values
//! are inserted verbatim (a `{}` inside a value is not expanded). Named markers
//! (`{transcript}`, `{context[tags]}`) are replaced in one pass by [`replace_markers`].

/// Number of `{}` placeholders in a template.
pub fn placeholder_count(template: &str) -> usize {
    template.matches("{}").count()
}

/// The template without its placeholders (what is counted as the prompt's own tokens).
pub fn template_text(template: &str) -> String {
    template.replace("{}", "")
}

/// Fills the placeholders in order. Placeholders beyond `values` stay as `{}`; extra
/// values are ignored (callers validate counts first with [`placeholder_count`]).
pub fn fill(template: &str, values: &[&str]) -> String {
    let extra: usize = values.iter().map(|v| v.len()).sum();
    let mut out = String::with_capacity(template.len() + extra);
    let mut values = values.iter();
    let mut rest = template;
    while let Some(at) = rest.find("{}") {
        out.push_str(&rest[..at]);
        match values.next() {
            Some(value) => out.push_str(value),
            None => out.push_str("{}"),
        }
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

/// Replaces every marker of `replacements` in one left-to-right pass: a value is
/// inserted verbatim (a marker inside it is not replaced), and where two markers start at
/// the same place the first one listed wins.
pub fn replace_markers(template: &str, replacements: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    loop {
        let next = replacements
            .iter()
            .filter_map(|(marker, value)| rest.find(marker).map(|at| (at, *marker, *value)))
            .min_by_key(|(at, _, _)| *at);
        match next {
            Some((at, marker, value)) => {
                out.push_str(&rest[..at]);
                out.push_str(value);
                rest = &rest[at + marker.len()..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_order_and_keeps_literal_braces() {
        let template =
            "Summary so far:\n{}\nNew turns:\n{}\nAnswer as {\"lines\": [..]} or {name}.";
        assert_eq!(placeholder_count(template), 2);
        let filled = fill(template, &["S1", "A : x {} y"]);
        assert_eq!(
            filled,
            "Summary so far:\nS1\nNew turns:\nA : x {} y\nAnswer as {\"lines\": [..]} or {name}."
        );
        assert_eq!(fill("only {}", &["one"]), "only one");
        assert_eq!(fill("{} and {}", &["a"]), "a and {}");
        assert_eq!(template_text("a {} b {}"), "a  b ");
        assert_eq!(placeholder_count("{{}} {x}"), 1);
    }
}
