//! A small tmpfs of its own for one test (root only), to put a store on a filesystem the
//! test can fill to the last byte and free again.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a temp dir, unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, e.g. `"16m"`); an error says why not
    /// (mounting needs root).
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem to the last byte with one file; returns it and its size.
    /// Removing the file frees the room again.
    pub fn fill(&self) -> (PathBuf, u64) {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("create the filler");
        let mut written = 0u64;
        // Big writes until one fails, then small ones for the last pages.
        for size in [64 * 1024, 512] {
            let chunk = vec![0u8; size];
            while let Ok(n) = f.write(&chunk) {
                if n == 0 {
                    break;
                }
                written += n as u64;
            }
        }
        (path, written)
    }

    /// `mount -o remount,<how>`: whether it worked, and what mount said.
    pub fn remount(&self, how: &str) -> (bool, String) {
        let out = Command::new("mount").args(["-o", &format!("remount,{how}")]).arg(self.path()).output();
        match out {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("").to_string(),
            ),
            Err(e) => (false, e.to_string()),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that held a file of it may not have closed it yet.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Whether this process runs as root.
pub fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
