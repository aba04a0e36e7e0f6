//! Server-sent events (the `text/event-stream` wire format): [`SseDecoder`] reads a
//! provider's streamed answer as its bytes arrive, [`encode_event`] frames the events the
//! chat endpoint sends.

/// One server-sent event: its `event` name (None: the default, `message`) and its `data`
/// lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Decodes server-sent events incrementally: [`SseDecoder::push`] the bytes as they
/// arrive, in pieces of any size, and get the events completed so far. Lines end in `\n`,
/// `\r\n` or `\r`; a blank line ends an event; comments (`:`) and fields other than
/// `event` and `data` are ignored; an event without data is not dispatched. Bytes after
/// the last blank line wait for more (an event cut off at the end is never complete).
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the line being received.
    line: Vec<u8>,
    /// The last line ended in `\r`: a `\n` right after it belongs to that line end.
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseDecoder {
    /// Feeds received bytes; returns the events they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    events.extend(self.line_ended(&String::from_utf8_lossy(&line)));
                }
                _ => self.line.push(byte),
            }
        }
        events
    }

    fn line_ended(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            return self.data.take().map(|data| SseEvent { event, data });
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

/// One event in the wire format: `event: {name}`, one `data:` line per line of `data`,
/// and the blank line that ends it.
pub fn encode_event(name: &str, data: &str) -> String {
    let mut frame = format!("event: {name}\n");
    for line in data.split('\n') {
        frame.push_str("data: ");
        frame.push_str(line.strip_suffix('\r').unwrap_or(line));
        frame.push('\n');
    }
    frame.push('\n');
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: name.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn events_are_decoded_whatever_the_pieces() {
        let wire = "data: {\"a\":1}\n\n: a comment\nevent: token\ndata: x\ndata: y\r\n\r\nid: 7\ndata: [DONE]\r\r";
        let expected = vec![
            event(None, "{\"a\":1}"),
            event(Some("token"), "x\ny"),
            event(None, "[DONE]"),
        ];
        let whole = SseDecoder::default().push(wire.as_bytes());
        assert_eq!(whole, expected);
        // Byte by byte, a `\r\n` split between two pieces included.
        let mut decoder = SseDecoder::default();
        let bytewise: Vec<SseEvent> = wire
            .as_bytes()
            .iter()
            .flat_map(|byte| decoder.push(&[*byte]))
            .collect();
        assert_eq!(bytewise, expected);
    }

    #[test]
    fn an_event_is_dispatched_only_at_its_blank_line() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.push(b"data: part").is_empty());
        assert!(decoder.push(b"ial\n").is_empty());
        assert_eq!(decoder.push(b"\n"), vec![event(None, "partial")]);
        assert!(decoder.push(b"event: lonely\n\n").is_empty(), "no data");
        // Multi-byte UTF-8 split across pieces.
        let bytes = "data: é\n\n".as_bytes();
        assert!(decoder.push(&bytes[..7]).is_empty());
        assert_eq!(decoder.push(&bytes[7..]), vec![event(None, "é")]);
    }

    #[test]
    fn encoded_events_decode_to_themselves() {
        let frame = encode_event("token", "{\"content\":\"a\\nb\"}");
        assert_eq!(frame, "event: token\ndata: {\"content\":\"a\\nb\"}\n\n");
        let multi = encode_event("note", "line 1\nline 2");
        assert_eq!(multi, "event: note\ndata: line 1\ndata: line 2\n\n");
        let decoded = SseDecoder::default().push(format!("{frame}{multi}").as_bytes());
        assert_eq!(
            decoded,
            vec![
                event(Some("token"), "{\"content\":\"a\\nb\"}"),
                event(Some("note"), "line 1\nline 2"),
            ]
        );
    }
}
