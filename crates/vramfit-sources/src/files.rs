//! Opening the files a user names, as untrusted input: only regular files are
//! read (a FIFO would block forever, a device never end), and a symbolic-link
//! loop is called one.

use std::fs::File;
use std::io;
use std::path::Path;

/// Linux's `ELOOP` (and macOS's is 62): too many levels of symbolic links.
const ELOOP: [i32; 2] = [40, 62];

/// Opens `path` for reading if it is a regular file (after following links).
///
/// # Errors
/// The operating system's error, with a symbolic-link loop named as such, or
/// `InvalidInput` for a FIFO, a device, a socket or a folder.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let metadata = std::fs::metadata(path).map_err(|error| {
        if error.raw_os_error().is_some_and(|code| ELOOP.contains(&code)) {
            io::Error::new(error.kind(), "a loop of symbolic links (too many levels of links)")
        } else {
            error
        }
    })?;
    if !metadata.is_file() {
        let what = if metadata.is_dir() {
            "a folder"
        } else {
            "not a regular file (a FIFO, a device or a socket), which vramfit never reads"
        };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    }
    File::open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_link_loops_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("token");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let error = open_regular(&fifo).unwrap_err();
            assert!(error.to_string().contains("FIFO"), "{error}");
        }
        let error = open_regular(Path::new("/dev/zero")).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink(&a, &b).unwrap();
        std::os::unix::fs::symlink(&b, &a).unwrap();
        let error = open_regular(&a).unwrap_err();
        assert!(error.to_string().contains("loop"), "{error}");
        assert!(open_regular(dir.path()).unwrap_err().to_string().contains("folder"));
    }
}
