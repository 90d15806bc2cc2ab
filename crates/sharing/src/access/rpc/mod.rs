//! The gRPC face of access: decode, check the caller, call the rules and
//! storage, map the result. No SQL and no rules live here.

mod access;
mod access_internal;
mod sharing;

pub use access::Access;
pub use access_internal::AccessInternal;
pub use sharing::Sharing;

use agentshare_kit::Error;
use agentshare_kit::page::Page;

/// One page of a listing that keeps only some of the rows it reads (by the
/// access decision, or a grant's state): reads `page.limit()` rows at a
/// time from where the page starts, until the page holds one row more than
/// its size (so `Page::split` knows another follows) or the rows run out.
async fn filtered_page<T, U, Read>(
    page: &Page,
    mut read: impl FnMut(Option<String>) -> Read,
    key: impl Fn(&T) -> String,
    mut keep: impl FnMut(T) -> Option<U>,
) -> Result<Vec<U>, Error>
where
    Read: Future<Output = Result<Vec<T>, Error>>,
{
    let size = usize::try_from(page.size).unwrap_or(usize::MAX);
    let limit = usize::try_from(page.limit()).unwrap_or(usize::MAX);
    let mut kept = Vec::new();
    let mut after = page.after().map(str::to_string);
    loop {
        let batch = read(after.take()).await?;
        let exhausted = batch.len() < limit;
        after = batch.last().map(&key);
        for row in batch {
            kept.extend(keep(row));
            if kept.len() > size {
                return Ok(kept);
            }
        }
        if exhausted {
            return Ok(kept);
        }
    }
}
