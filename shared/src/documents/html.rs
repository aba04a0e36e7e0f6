//! A standalone HTML5 page. LLM output is untrusted: raw HTML is escaped (shown as text)
//! and links or images with a scheme other than http, https or mailto are dropped (their
//! text is kept). Relative and `#fragment` URLs are allowed.

use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};

use super::markdown::preprocess;
use super::xml::escape;
use super::ExportDocument;

const CSS: &str = "\
body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;color:#222;max-width:52rem;\
margin:2rem auto;padding:0 1.5rem;line-height:1.5}\
header{border-bottom:2px solid #1f3864;margin-bottom:1.5rem;padding-bottom:.5rem}\
h1,h2,h3,h4,h5,h6{color:#1f3864;line-height:1.25}\
table{border-collapse:collapse;margin:1rem 0}\
th,td{border:1px solid #bbb;padding:.3rem .6rem;text-align:left;vertical-align:top}\
th{background:#f2f2f2}\
table.meta th{width:10rem}\
blockquote{border-left:4px solid #bbb;margin:1rem 0;padding:0 1rem;color:#555}\
code,pre{font-family:'DejaVu Sans Mono',Consolas,monospace;background:#f2f2f2}\
pre{padding:.6rem;overflow-x:auto;white-space:pre-wrap}\
@media print{body{margin:0;max-width:none}a{color:inherit}pre{white-space:pre-wrap}\
h1,h2,h3{page-break-after:avoid}tr,pre,blockquote{page-break-inside:avoid}}";

/// Renders the page.
pub(crate) fn render(doc: &ExportDocument) -> String {
    let mut out = String::with_capacity(doc.markdown.len() * 2 + 2048);
    out.push_str("<!doctype html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!("<title>{}</title>\n", escape(&doc.title)));
    out.push_str(&format!(
        "<style>{CSS}</style>\n</head>\n<body>\n<header>\n"
    ));
    out.push_str(&format!("<h1>{}</h1>\n", escape(&doc.title)));
    if !doc.fields.is_empty() {
        out.push_str("<table class=\"meta\">\n");
        for (label, value) in &doc.fields {
            out.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>\n",
                escape(label),
                escape(value)
            ));
        }
        out.push_str("</table>\n");
    }
    out.push_str("</header>\n<main>\n");
    let markdown = preprocess(&doc.markdown);
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    html::push_html(&mut out, sanitize(Parser::new_ext(&markdown, options)));
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// Raw HTML becomes text; unsafe links and images are unwrapped.
fn sanitize<'a>(events: impl Iterator<Item = Event<'a>>) -> impl Iterator<Item = Event<'a>> {
    // One entry per open link or image: whether its tags were kept.
    let mut kept: Vec<bool> = Vec::new();
    events.filter_map(move |event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        // Line breaks are kept, as the reference's `nl2br`.
        Event::SoftBreak => Some(Event::HardBreak),
        Event::Start(Tag::Link { ref dest_url, .. } | Tag::Image { ref dest_url, .. }) => {
            let safe = is_safe_url(dest_url);
            kept.push(safe);
            safe.then_some(event)
        }
        Event::End(TagEnd::Link | TagEnd::Image) => kept.pop().unwrap_or(false).then_some(event),
        other => Some(other),
    })
}

/// Whether a (entity-decoded) URL is relative, a fragment, or http/https/mailto.
pub(crate) fn is_safe_url(url: &str) -> bool {
    // Browsers ignore ASCII whitespace and control characters inside a scheme.
    let normalized: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    match normalized.find([':', '/', '?', '#']) {
        Some(index) if normalized[index..].starts_with(':') => {
            matches!(&normalized[..index], "http" | "https" | "mailto")
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(markdown: &str) -> String {
        render(&ExportDocument {
            title: "T <b>".into(),
            fields: vec![("Job".into(), "<script>x</script>".into())],
            markdown: markdown.into(),
            ..Default::default()
        })
    }

    #[test]
    fn renders_a_standalone_page() {
        let html = page("# Head\n\n- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n~~gone~~ [ok](https://e.x/a?b=1&c=2)");
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<meta charset=\"utf-8\">"));
        assert!(html.contains("@media print"));
        assert!(html.contains("<title>T &lt;b&gt;</title>"));
        assert!(html.contains("<td>&lt;script&gt;x&lt;/script&gt;</td>"));
        assert!(html.contains("<h1>Head</h1>"));
        assert!(html.contains("<ul>\n<li>a</li>"));
        assert!(html.contains("<table>") && html.contains("<th>x</th>"));
        assert!(html.contains("<del>gone</del>"));
        assert!(html.contains("<a href=\"https://e.x/a?b=1&amp;c=2\">ok</a>"));
    }

    #[test]
    fn untrusted_markup_never_survives() {
        let attacks = [
            "<script>alert(1)</script>",
            "text <script>alert(1)</script> inline",
            "<img src=x onerror=alert(1)>",
            "inline <img src=x onerror=alert(1)> html",
            "<div onclick=\"alert(1)\">x</div>",
            "[x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "[x](&#106;avascript:alert(1))",
            "[x](&#x6A;avascript&colon;alert(1))",
            "[x]( java\tscript:alert(1))",
            "[x](<java script:alert(1)>)",
            "[x](vbscript:msgbox(1))",
            "[x](data:text/html;base64,PHNjcmlwdD4=)",
            "![y](javascript:alert(1))",
            "[x][r]\n\n[r]: javascript:alert(1)",
            "<javascript:alert(1)>",
            "<a href=\"javascript:alert(1)\">x</a>",
        ];
        for attack in attacks {
            let html = page(attack);
            let main = &html[html.find("<main>").unwrap_or(0)..];
            let lower = main.to_ascii_lowercase();
            assert!(!lower.contains("<script"), "{attack}: {main}");
            assert!(!lower.contains("<img"), "{attack}: {main}");
            assert!(!lower.contains("<div"), "{attack}: {main}");
            assert!(!lower.contains("<a href=\"javascript"), "{attack}: {main}");
            assert!(!lower.contains("href=\"vbscript"), "{attack}: {main}");
            assert!(!lower.contains("href=\"data:"), "{attack}: {main}");
            assert!(!lower.contains("src=\"javascript"), "{attack}: {main}");
            assert!(!lower.contains("<a href=\"java"), "{attack}: {main}");
        }
        // The link text stays.
        assert!(page("[click me](javascript:alert(1))").contains("click me"));
        // Raw HTML is shown as text.
        assert!(page("<script>alert(1)</script>").contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn relative_and_fragment_links_are_kept() {
        assert!(is_safe_url("#part"));
        assert!(is_safe_url("docs/page.html"));
        assert!(is_safe_url("/a:b"));
        assert!(is_safe_url("MAILTO:a@b.c"));
        assert!(!is_safe_url("javascript:x"));
        assert!(!is_safe_url(" \u{1}javascript:x"));
    }
}
