//! The paging rule of PrivX lists (docs/privx-api.md section 6), right whether `count` is the total or
//! the size of the page.

use serde::Deserialize;

/// Page size asked for (PrivX's maximum).
pub(crate) const PAGE_LIMIT: usize = 100;

/// Upper bound of pages read by one list call; a server that ignores `offset` must not make
/// the client loop forever.
pub(crate) const MAX_PAGES: usize = 10_000;

/// `{count, items}` as PrivX answers lists.
#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

/// The offset of the next page, or `None` when the list is complete.
///
/// A short page always ends the list. A full page ends it only when `count` can only be a
/// total (it exceeds the page's length) and the pages read so far reach it; when `count`
/// equals the page's length it may be a page size, so one more page is read (an empty page
/// then ends the list).
pub(crate) fn next_offset(
    offset: usize,
    limit: usize,
    count: Option<u64>,
    items: usize,
) -> Option<usize> {
    if items == 0 || items < limit {
        return None;
    }
    let read = offset + items;
    if let Some(count) = count {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > items && read >= count {
            return None;
        }
    }
    Some(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a server with `total` items that reports `count` either way and checks that
    /// the rule reads every item exactly once.
    fn read_all(total: usize, limit: usize, count_is_total: bool) -> (usize, usize) {
        let mut offset = 0;
        let mut seen = 0;
        let mut requests = 0;
        loop {
            requests += 1;
            let items = total.saturating_sub(offset).min(limit);
            seen += items;
            let count = if count_is_total { total } else { items } as u64;
            match next_offset(offset, limit, Some(count), items) {
                Some(next) => offset = next,
                None => break,
            }
            assert!(requests < 1000);
        }
        (seen, requests)
    }

    #[test]
    fn reads_every_item_whatever_count_means() {
        for total in [0, 1, 99, 100, 101, 250, 300, 1000] {
            for count_is_total in [true, false] {
                let (seen, _) = read_all(total, 100, count_is_total);
                assert_eq!(
                    seen, total,
                    "total {total}, count_is_total {count_is_total}"
                );
            }
        }
    }

    #[test]
    fn a_total_count_saves_the_empty_page_when_it_can() {
        // 250 items: pages of 100, 100, 50 — no extra request either way.
        assert_eq!(read_all(250, 100, true).1, 3);
        assert_eq!(read_all(250, 100, false).1, 3);
        // 300 items with a total count: the third full page reaches the total.
        assert_eq!(read_all(300, 100, true).1, 3);
        // With page-size counts one empty page confirms the end.
        assert_eq!(read_all(300, 100, false).1, 4);
    }

    #[test]
    fn missing_count_reads_until_a_short_page() {
        assert_eq!(next_offset(0, 100, None, 100), Some(100));
        assert_eq!(next_offset(100, 100, None, 7), None);
    }

    #[test]
    fn page_parses_without_items() {
        let page: Page<u32> = serde_json::from_str(r#"{"count":0}"#).unwrap();
        assert!(page.items.is_empty());
    }
}
