//! Paging, one policy for every list call (Google's AIP-158):
//!
//! - `page_size` 0 means [`DEFAULT_PAGE_SIZE`]; a negative size is
//!   INVALID_ARGUMENT; a size above [`MAX_PAGE_SIZE`] is treated as the
//!   maximum, so a client asking for "everything" gets full pages.
//! - `page_token` is opaque: it carries the listing that issued it (the
//!   call and its filters) and where the next page starts. A token of
//!   another listing, or of the same call with other filters, is refused
//!   instead of silently skipping or repeating entries.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Error;

/// How many entries a page holds when the caller does not say.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// The most entries one page holds.
pub const MAX_PAGE_SIZE: i32 = 1000;

/// The token's format; a later format can still read or refuse this one.
const TOKEN_VERSION: &str = "p1";

/// One page of a listing: how many entries, and after which one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// Entries on this page; fetch `size + 1` to know whether more follow.
    pub size: i64,
    after: Option<Vec<String>>,
    listing: String,
}

impl Page {
    /// The page `page_size` and `page_token` ask for, in `listing` (the
    /// call and every filter that shapes it, such as `members:<org>`),
    /// ordered by one key.
    pub fn of(page_size: i32, page_token: &str, listing: impl Into<String>) -> Result<Self, Error> {
        Self::keyed(page_size, page_token, listing, 1)
    }

    /// As [`Page::of`], for a listing ordered by a key of `parts` values
    /// (a time and an id, say).
    pub fn keyed(
        page_size: i32,
        page_token: &str,
        listing: impl Into<String>,
        parts: usize,
    ) -> Result<Self, Error> {
        let listing = listing.into();
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => {
                return Err(Error::invalid(
                    "page_size",
                    format!("must not be negative; 0 means {DEFAULT_PAGE_SIZE}"),
                ));
            }
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(resume(page_token, &listing, parts).ok_or_else(|| {
                Error::invalid(
                    "page_token",
                    "is not a token from this listing: pass the next_page_token of the previous \
                     page with the same filters, or start again with an empty token",
                )
            })?)
        };
        Ok(Self {
            size: i64::from(size),
            after,
            listing,
        })
    }

    /// The key the page starts after; `None` on the first page.
    pub fn after(&self) -> Option<&str> {
        self.after
            .as_ref()
            .and_then(|parts| parts.first())
            .map(String::as_str)
    }

    /// Every value of the key the page starts after, for a listing made
    /// with [`Page::keyed`]; `None` on the first page.
    pub fn after_parts(&self) -> Option<&[String]> {
        self.after.as_deref()
    }

    /// How many rows to fetch: one more than the page, to know whether
    /// another page follows.
    pub fn limit(&self) -> i64 {
        self.size + 1
    }

    /// The token of the page that starts after `key`, for a listing that
    /// pages on its own (rows computed rather than fetched).
    pub fn token_after(&self, key: &[String]) -> String {
        token(&self.listing, key)
    }

    /// Splits rows fetched with [`Page::limit`] into this page and the
    /// token of the next one (empty on the last page).
    pub fn split<T>(&self, rows: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, String) {
        self.split_keyed(rows, |row| vec![key(row)])
    }

    /// Splits rows fetched with [`Page::limit`] into this page, each row
    /// converted for the answer, and the token of the next page.
    pub fn answer<R, P>(
        &self,
        rows: Vec<R>,
        key: impl Fn(&R) -> String,
        convert: impl FnMut(R) -> P,
    ) -> (Vec<P>, String) {
        let (rows, next_page_token) = self.split(rows, key);
        (rows.into_iter().map(convert).collect(), next_page_token)
    }

    /// As [`Page::split`], for a key of several values.
    pub fn split_keyed<T>(
        &self,
        mut rows: Vec<T>,
        key: impl Fn(&T) -> Vec<String>,
    ) -> (Vec<T>, String) {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if rows.len() <= size {
            return (rows, String::new());
        }
        rows.truncate(size);
        let next = rows
            .last()
            .map(|row| token(&self.listing, &key(row)))
            .unwrap_or_default();
        (rows, next)
    }
}

/// Listings and keys are ids, numbers, keys and enum names: none holds a
/// NUL, which separates them.
fn token(listing: &str, after: &[String]) -> String {
    let mut raw = format!("{TOKEN_VERSION}\0{listing}");
    for part in after {
        raw.push('\0');
        raw.push_str(part);
    }
    URL_SAFE_NO_PAD.encode(raw)
}

fn resume(token: &str, listing: &str, parts: usize) -> Option<Vec<String>> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let mut fields = raw.split('\0');
    if fields.next() != Some(TOKEN_VERSION) || fields.next() != Some(listing) {
        return None;
    }
    let after: Vec<String> = fields.map(str::to_string).collect();
    (after.len() == parts && after.iter().all(|part| !part.is_empty())).then_some(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(error: Error) -> String {
        let Error::InvalidArgument(violations) = error else {
            panic!("expected INVALID_ARGUMENT, got {error:?}");
        };
        violations[0].field.clone()
    }

    #[test]
    fn sizes_default_coerce_down_and_refuse_negatives() {
        assert_eq!(Page::of(0, "", "l").unwrap().size, 50);
        assert_eq!(Page::of(7, "", "l").unwrap().size, 7);
        assert_eq!(Page::of(5000, "", "l").unwrap().size, 1000);
        assert_eq!(fault(Page::of(-1, "", "l").unwrap_err()), "page_size");
    }

    #[test]
    fn a_token_resumes_its_own_listing_only() {
        let first = Page::of(2, "", "members:org-1").unwrap();
        assert_eq!(first.after(), None);
        let (rows, next) = first.split(vec!["a", "b", "c"], |row| (*row).to_string());
        assert_eq!(rows, ["a", "b"]);
        let second = Page::of(2, &next, "members:org-1").unwrap();
        assert_eq!(second.after(), Some("b"));
        let (rows, last) = second.split(vec!["c"], |row| (*row).to_string());
        assert_eq!((rows, last), (vec!["c"], String::new()));

        for other in ["members:org-2", "workspaces:org-1"] {
            assert_eq!(fault(Page::of(2, &next, other).unwrap_err()), "page_token");
        }
        for forged in [
            "b",
            "not base64!",
            &URL_SAFE_NO_PAD.encode("p1\0members:org-1"),
        ] {
            assert_eq!(
                fault(Page::of(2, forged, "members:org-1").unwrap_err()),
                "page_token"
            );
        }
    }

    #[test]
    fn a_key_of_several_values_comes_back_whole() {
        let page = Page::keyed(1, "", "runs:u1", 2).unwrap();
        let (_, next) = page.split_keyed(vec![(5, "x"), (4, "y")], |(time, id)| {
            vec![time.to_string(), (*id).to_string()]
        });
        let resumed = Page::keyed(1, &next, "runs:u1", 2).unwrap();
        assert_eq!(
            resumed.after_parts(),
            Some(&["5".to_string(), "x".to_string()][..])
        );
        assert!(Page::keyed(1, &next, "runs:u1", 1).is_err());
    }
}
