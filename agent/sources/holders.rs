//! Which processes hold a file, read from `/proc` through procfs: their open file descriptors on
//! it and the POSIX locks on it (and on companion files such as SQLite's `-shm`), including the
//! lock requests the kernel holds blocked. One scan serves every file a target watches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use procfs::FromBufRead;
use procfs::process::FDTarget;

/// A file as the kernel names it in `/proc/locks`: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

impl FileId {
    pub fn of(metadata: &std::fs::Metadata) -> FileId {
        let dev = metadata.dev();
        FileId {
            major: libc_major(dev),
            minor: libc_minor(dev),
            inode: metadata.ino(),
        }
    }
}

// glibc's gnu_dev_major/minor, written out so the file compiles on every Linux libc.
fn libc_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}

fn libc_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

/// One POSIX (or OFD) lock, held or requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLock {
    /// The owner; `None` for an OFD lock, which belongs to an open file, not a process.
    pub pid: Option<i32>,
    pub write: bool,
    /// The first and last byte; `None` for "to the end of the file".
    pub first: u64,
    pub last: Option<u64>,
    /// A request the kernel holds blocked (a `->` line): the owner is waiting for it.
    pub blocked: bool,
}

impl HeldLock {
    /// Whether the lock covers `byte`.
    pub fn covers(&self, byte: u64) -> bool {
        self.first <= byte && self.last.is_none_or(|last| byte <= last)
    }

    /// Whether the lock covers any byte of `first..=last`.
    pub fn overlaps(&self, first: u64, last: u64) -> bool {
        self.first <= last && self.last.is_none_or(|l| first <= l)
    }
}

/// What one pass over `/proc` saw.
#[derive(Debug, Default)]
pub struct ProcScan {
    locks: HashMap<FileId, Vec<HeldLock>>,
    /// Open descriptors per watched path, by pid.
    open: HashMap<PathBuf, BTreeMap<i32, u64>>,
    names: BTreeMap<i32, String>,
    /// What could not be read (no /proc/locks, another user's process): the figures that
    /// depend on it are left out.
    pub problems: Vec<String>,
    /// Whether every process's descriptors could be read, so a file nobody holds is known free.
    pub complete: bool,
    /// Whether `/proc/locks` could be read, so a file without locks is known unlocked.
    pub locks_known: bool,
}

impl ProcScan {
    /// Reads `/proc/locks` and the descriptors of every process, keeping those on `paths`.
    pub fn take(paths: &[PathBuf]) -> ProcScan {
        let mut scan = ProcScan {
            complete: true,
            ..ProcScan::default()
        };
        match std::fs::File::open("/proc/locks") {
            Ok(file) => {
                scan.locks = read_locks(BufReader::new(file), &mut scan.problems);
                scan.locks_known = true;
            }
            Err(e) => {
                scan.complete = false;
                scan.problems.push(format!("cannot read /proc/locks: {e}"));
            }
        }
        let wanted: BTreeSet<PathBuf> = paths
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let by_canonical: Vec<(PathBuf, PathBuf)> = paths
            .iter()
            .map(|p| {
                (
                    std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()),
                    p.clone(),
                )
            })
            .collect();
        let processes = match procfs::process::all_processes() {
            Ok(all) => all,
            Err(e) => {
                scan.complete = false;
                scan.problems.push(format!("cannot list processes: {e}"));
                return scan;
            }
        };
        let mut hidden = 0;
        for process in processes.flatten() {
            let Ok(fds) = process.fd() else {
                // A process that ended meanwhile is gone, not hidden.
                if process.is_alive() {
                    hidden += 1;
                }
                continue;
            };
            for fd in fds.flatten() {
                let FDTarget::Path(target) = fd.target else {
                    continue;
                };
                if !wanted.contains(&target) {
                    continue;
                }
                for (canonical, path) in &by_canonical {
                    if canonical == &target {
                        *scan
                            .open
                            .entry(path.clone())
                            .or_default()
                            .entry(process.pid)
                            .or_default() += 1;
                    }
                }
            }
        }
        if hidden > 0 {
            scan.complete = false;
            scan.problems.push(format!(
                "the open files of {hidden} processes are hidden from the agent (run it as the \
                 database owner or root); holders may be missing"
            ));
        }
        scan
    }

    /// Builds a scan from literal parts: tests feed what /proc would show.
    pub fn from_parts(
        locks: HashMap<FileId, Vec<HeldLock>>,
        open: HashMap<PathBuf, BTreeMap<i32, u64>>,
    ) -> ProcScan {
        ProcScan {
            locks,
            open,
            complete: true,
            locks_known: true,
            ..ProcScan::default()
        }
    }

    /// The locks held or requested on a file.
    pub fn locks_on(&self, file: FileId) -> &[HeldLock] {
        self.locks.get(&file).map_or(&[], Vec::as_slice)
    }

    /// Open descriptors on `path`, by pid.
    pub fn open_on(&self, path: &Path) -> BTreeMap<i32, u64> {
        self.open.get(path).cloned().unwrap_or_default()
    }

    /// The name (`comm`) of a process, read once per scan.
    pub fn name_of(&mut self, pid: i32) -> String {
        if let Some(name) = self.names.get(&pid) {
            return name.clone();
        }
        let name = procfs::process::Process::new(pid)
            .and_then(|p| p.stat())
            .map(|s| s.comm)
            .unwrap_or_default();
        self.names.insert(pid, name.clone());
        name
    }
}

/// Parses `/proc/locks`. procfs parses each line but drops the `->` that marks a blocked
/// request, which is exactly the writer that waits: that marker is read here, the rest by
/// procfs, one line at a time.
fn read_locks(reader: impl BufRead, problems: &mut Vec<String>) -> HashMap<FileId, Vec<HeldLock>> {
    let mut out: HashMap<FileId, Vec<HeldLock>> = HashMap::new();
    for line in reader.lines().map_while(Result::ok) {
        let blocked = line.split_whitespace().nth(1) == Some("->");
        let lock = match procfs::Locks::from_buf_read(line.as_bytes()) {
            Ok(procfs::Locks(mut locks)) => match locks.pop() {
                Some(lock) => lock,
                None => continue,
            },
            Err(e) => {
                problems.push(format!("unreadable /proc/locks line `{line}`: {e}"));
                continue;
            }
        };
        if !matches!(
            lock.lock_type,
            procfs::LockType::Posix | procfs::LockType::ODF
        ) {
            continue;
        }
        let id = FileId {
            major: lock.devmaj,
            minor: lock.devmin,
            inode: lock.inode,
        };
        out.entry(id).or_default().push(HeldLock {
            pid: lock.pid,
            write: matches!(lock.kind, procfs::LockKind::Write),
            first: lock.offset_first,
            last: lock.offset_last,
            blocked,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_requests_keep_their_marker() {
        let text = "1: POSIX  ADVISORY  WRITE 723 fe:00:16845 1073741825 1073741825\n\
                    1: -> POSIX  ADVISORY  WRITE 724 fe:00:16845 1073741825 1073741825\n\
                    2: FLOCK  ADVISORY  WRITE 652 fe:00:16845 0 EOF\n\
                    3: POSIX  ADVISORY  READ 9 fe:00:99 0 EOF\n";
        let mut problems = Vec::new();
        let locks = read_locks(text.as_bytes(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let on = &locks[&FileId {
            major: 0xfe,
            minor: 0,
            inode: 16845,
        }];
        assert_eq!(on.len(), 2, "flock locks are not SQLite's or DuckDB's");
        assert_eq!((on[0].pid, on[0].blocked), (Some(723), false));
        assert_eq!((on[1].pid, on[1].blocked), (Some(724), true));
        let whole = locks[&FileId {
            major: 0xfe,
            minor: 0,
            inode: 99,
        }][0];
        assert!(whole.covers(u64::MAX) && !whole.write);
    }

    #[test]
    fn this_process_is_seen_holding_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        std::fs::write(&path, b"x").unwrap();
        let _one = std::fs::File::open(&path).unwrap();
        let _two = std::fs::File::open(&path).unwrap();
        let scan = ProcScan::take(std::slice::from_ref(&path));
        let me = std::process::id() as i32;
        assert_eq!(scan.open_on(&path).get(&me), Some(&2));
    }

    #[test]
    fn device_numbers_split_as_the_kernel_prints_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let id = FileId::of(&meta);
        let dev = meta.dev();
        assert_eq!(
            (u64::from(id.major), u64::from(id.minor)),
            (
                // The common case, majors and minors below 256.
                (dev >> 8) & 0xfff,
                (dev & 0xff) | ((dev >> 12) & 0xfff00)
            )
        );
    }
}
