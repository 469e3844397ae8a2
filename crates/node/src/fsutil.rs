//! Small file helpers shared by the modules that write under the state directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// The file gets permission bits `mode`. For state that must survive a crash (the IPAM).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_with(path, bytes, mode, true)
}

/// [`write_atomic`] without the fsyncs: readers still see the old or the new file, never a mix, but
/// a machine crash may lose it. For files a pod's sandbox regenerates on every start (`/etc` files,
/// configMap/secret payloads): no pod survives a restart of the runtime, so durability buys nothing
/// and each fsync costs milliseconds of pod start.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_with(path, bytes, mode, false)
}

fn write_with(path: &Path, bytes: &[u8], mode: u32, sync: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if sync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
