//! Page-number pagination like the reference: `{items, total, page, page_size,
//! total_pages}`.

use serde_json::{json, Value};

use crate::engine::error::{EngineError, EngineResult, Location};

/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: usize = 100;

/// A requested page (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub page: usize,
    pub page_size: usize,
}

impl PageRequest {
    /// Reads the `page` and `page_size` query values (422 when not integers in range).
    pub fn parse(
        page: Option<&str>,
        page_size: Option<&str>,
        default_size: usize,
    ) -> EngineResult<Self> {
        let number = |name: &str, value: Option<&str>, default: usize, max: usize| match value {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    EngineError::validation(
                        Location::Query,
                        name,
                        format!("must be an integer from 1 to {max}"),
                    )
                }),
        };
        Ok(PageRequest {
            page: number("page", page, 1, usize::MAX)?,
            page_size: number("page_size", page_size, default_size, MAX_PAGE_SIZE)?,
        })
    }

    /// The page of `items` (already filtered and ordered) in the reference's envelope.
    pub fn envelope(&self, items: Vec<Value>) -> Value {
        let total = items.len();
        let start = (self.page - 1).saturating_mul(self.page_size);
        let page: Vec<Value> = items.into_iter().skip(start).take(self.page_size).collect();
        json!({
            "items": page,
            "total": total,
            "page": self.page,
            "page_size": self.page_size,
            "total_pages": total.div_ceil(self.page_size),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_totals() {
        let items: Vec<Value> = (0..45).map(|i| json!(i)).collect();
        let page = PageRequest::parse(Some("3"), Some("20"), 50).unwrap();
        let body = page.envelope(items.clone());
        assert_eq!(body["items"], json!((40..45).collect::<Vec<_>>()));
        assert_eq!(
            (body["total"].as_u64(), body["total_pages"].as_u64()),
            (Some(45), Some(3))
        );
        let beyond = PageRequest::parse(Some("9"), None, 20)
            .unwrap()
            .envelope(items);
        assert_eq!(beyond["items"], json!([]));
        assert_eq!(
            PageRequest::parse(None, None, 20).unwrap(),
            PageRequest {
                page: 1,
                page_size: 20
            }
        );
        for (page, size) in [(Some("0"), None), (None, Some("101")), (Some("x"), None)] {
            assert_eq!(
                PageRequest::parse(page, size, 20).unwrap_err().status(),
                422
            );
        }
    }
}
