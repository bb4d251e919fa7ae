//! File writing shared by the state files (checkpoints, baselines). A leaf: imports nothing of
//! tripline.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `body` to `path` atomically: a temporary file beside it (`<path>.tmp`), synced, then
/// renamed over `path`, and the directory synced so the rename itself persists. A crash leaves
/// either the old file or the new one, never a torn one.
pub fn write_atomically(path: &Path, body: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
