use std::fs;
use std::io::Write;
use std::path::Path;

use crate::NodeError;

/// Writes `bytes` to `path` so readers see the old or the new content, never a mix: a
/// temporary file, fsynced, renamed over the target, then the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let tmp = path.with_extension("tmp");
    let io = |what: &str, e| NodeError::io(format!("{what} {}", path.display()), e);
    let mut file = fs::File::create(&tmp).map_err(|e| io("creating", e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| io("writing", e))?;
    fs::rename(&tmp, path).map_err(|e| io("replacing", e))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing the directory of", e))?;
    }
    Ok(())
}
