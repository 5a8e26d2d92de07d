//! Reads a backend's HTTP answer body as it arrives, capped per backend
//! and charged piece by piece to the current query's fetched bytes
//! (`limits::fetched`).

use super::SourceError;

/// Reads `response`'s body as it arrives, charging every piece to the
/// current query and refusing more than `max` bytes (`what` names the cap
/// in the error); `each` is given every piece.
pub async fn read_capped(
    response: &mut super::http::HttpResponse,
    max: usize,
    mut each: impl FnMut(&[u8]) -> Result<(), SourceError>,
    too_large: impl Fn() -> SourceError,
    failed: impl Fn(super::http::HttpError) -> SourceError,
) -> Result<usize, SourceError> {
    let mut total: usize = 0;
    while let Some(bytes) = response.chunk().await.map_err(&failed)? {
        total = total.saturating_add(bytes.len());
        if total > max {
            return Err(too_large());
        }
        crate::limits::fetched::charge(bytes.len())?;
        each(&bytes)?;
    }
    Ok(total)
}
