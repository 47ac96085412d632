//! Paging for the dashboard's lists: which rows a page shows (`limit`, `skip` in its query, the
//! API's names), and the links to the previous and next pages and the page-size form, each keeping
//! the page's other parameters (its filters).

use maud::{Markup, html};
use payout_core::store::Page;

use super::components::with_query;

/// The page sizes the page-size form offers (any size from 1 to [`Page::MAX_LIMIT`] is accepted in
/// the query).
pub(crate) const PAGE_SIZES: [u32; 4] = [25, 50, 100, 200];

/// The page size when the query has none.
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 50;

/// Which rows a page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paging {
    /// At most this many (1 to [`Page::MAX_LIMIT`]).
    pub(crate) limit: u32,
    /// After skipping this many.
    pub(crate) skip: u64,
}

impl Paging {
    /// `limit` and `skip` as the query gives them (already checked by the API's rules), with the
    /// defaults.
    pub(crate) fn new(limit: Option<u32>, skip: Option<u64>) -> Self {
        Paging {
            limit: limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, Page::MAX_LIMIT),
            skip: skip.unwrap_or(0),
        }
    }

    /// The store's page.
    pub(crate) fn page(&self) -> Page {
        Page::new(self.limit, self.skip)
    }
}

/// The paging controls of a list at `path` whose other parameters are `kept`: "rows a–b of n",
/// previous and next links (where there are such pages) and a page-size form. `shown` is how many
/// rows this page has, `total` how many there are in all. `prefix` names the elements' ids
/// (`{prefix}-prev`, `{prefix}-next`, `{prefix}-size`, `{prefix}-range`), so a page can hold two
/// lists.
pub(crate) fn pager(
    path: &str,
    kept: &[(String, String)],
    paging: Paging,
    shown: usize,
    total: u64,
    prefix: &str,
) -> Markup {
    pager_named(path, kept, paging, shown, total, prefix, ("limit", "skip"))
}

/// [`pager`] with the query's names for the page size and the skip (`names`), for a second list
/// on one page (a run's results beside its payouts).
pub(crate) fn pager_named(
    path: &str,
    kept: &[(String, String)],
    paging: Paging,
    shown: usize,
    total: u64,
    prefix: &str,
    names: (&str, &str),
) -> Markup {
    let (limit_name, skip_name) = names;
    let first = if shown == 0 { 0 } else { paging.skip + 1 };
    let last = paging.skip + shown as u64;
    let link = |skip: u64| {
        let mut q = kept.to_vec();
        if paging.limit != DEFAULT_PAGE_SIZE {
            q.push((limit_name.into(), paging.limit.to_string()));
        }
        if skip > 0 {
            q.push((skip_name.into(), skip.to_string()));
        }
        with_query(path, &q)
    };
    let prev = (paging.skip > 0).then(|| link(paging.skip.saturating_sub(u64::from(paging.limit))));
    let next = (last < total && shown > 0).then(|| link(last));
    html! {
        nav.pager aria-label="Pages" {
            span id=(format!("{prefix}-range")) { "Rows " (first) "\u{2013}" (last) " of " (total) }
            @if let Some(href) = prev { a id=(format!("{prefix}-prev")) href=(href) rel="prev" { "\u{2190} Previous" } }
            @if let Some(href) = next { a id=(format!("{prefix}-next")) href=(href) rel="next" { "Next \u{2192}" } }
            form method="get" action=(path) {
                @for (k, v) in kept { input type="hidden" name=(k) value=(v); }
                label { "Rows per page "
                    select name=(limit_name) id=(format!("{prefix}-size")) {
                        @for size in PAGE_SIZES { option value=(size) selected[size == paging.limit] { (size) } }
                        @if !PAGE_SIZES.contains(&paging.limit) { option value=(paging.limit) selected { (paging.limit) } }
                    }
                }
                " "
                button type="submit" id=(format!("{prefix}-size-apply")) { "Show" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Vec<(String, String)> {
        vec![("status".into(), "PAID".into()), ("doctor".into(), "dr a&b".into())]
    }

    #[test]
    fn the_links_keep_the_filters_and_step_by_the_page_size() {
        let html = pager("/l", &kept(), Paging::new(Some(25), Some(25)), 25, 80, "p").into_string();
        assert!(html.contains("Rows 26\u{2013}50 of 80"), "{html}");
        assert!(
            html.contains(r#"id="p-prev" href="/l?status=PAID&amp;doctor=dr%20a%26b&amp;limit=25""#),
            "{html}"
        );
        assert!(
            html.contains(r#"id="p-next" href="/l?status=PAID&amp;doctor=dr%20a%26b&amp;limit=25&amp;skip=50""#),
            "{html}"
        );
        // The page-size form carries the filters, and no skip: a new size starts at the first page.
        assert!(
            html.contains(r#"<input type="hidden" name="doctor" value="dr a&amp;b">"#),
            "{html}"
        );
        assert!(!html.contains(r#"name="skip""#), "{html}");
        assert!(html.contains(r#"<option value="25" selected>25</option>"#), "{html}");
    }

    #[test]
    fn the_first_and_last_pages_have_no_link_beyond_them() {
        let first = pager("/l", &[], Paging::new(None, None), 50, 120, "p").into_string();
        assert!(!first.contains("p-prev"), "{first}");
        assert!(first.contains(r#"id="p-next" href="/l?skip=50""#), "{first}");
        let last = pager("/l", &[], Paging::new(None, Some(100)), 20, 120, "p").into_string();
        assert!(last.contains(r#"id="p-prev" href="/l?skip=50""#), "{last}");
        assert!(!last.contains("p-next"), "{last}");
        assert!(last.contains("Rows 101\u{2013}120 of 120"), "{last}");
        let empty = pager("/l", &[], Paging::new(None, None), 0, 0, "p").into_string();
        assert!(empty.contains("Rows 0\u{2013}0 of 0"), "{empty}");
        assert!(!empty.contains("p-prev") && !empty.contains("p-next"), "{empty}");
        // Back from a skip that is not a multiple of the size: to the start, not below it.
        let odd = pager("/l", &[], Paging::new(Some(50), Some(30)), 50, 200, "p").into_string();
        assert!(odd.contains(r#"id="p-prev" href="/l""#), "{odd}");
        // A size the form does not offer stays selected.
        let custom = pager("/l", &[], Paging::new(Some(7), None), 7, 20, "p").into_string();
        assert!(custom.contains(r#"<option value="7" selected>7</option>"#), "{custom}");
    }
}
