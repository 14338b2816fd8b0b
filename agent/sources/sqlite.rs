//! A SQLite database file, read without ever being in a writer's way.
//!
//! What the agent does, and why it cannot block a writer:
//! - Every sample reads the 100-byte header with a plain `pread` (twice, until two reads agree,
//!   so a header being rewritten is not half-read). A plain read takes no lock, so it never
//!   holds up anyone. The header holds the persistent settings: page_size, journal mode (bytes
//!   18/19: 2 means WAL, 1 a rollback journal), auto_vacuum (bytes 52 and 64).
//! - Sizes come from `stat` of the file and its `-wal`; holders and locks from `/proc`.
//! - The file is never opened with SQLite. In a rollback journal a reader's SHARED lock makes a
//!   writer's COMMIT (which needs EXCLUSIVE) fail at once with `busy_timeout` 0; in WAL mode even
//!   a read-only connection can, for an instant, hold the lock a writer's `BEGIN IMMEDIATE`
//!   needs (see `pages`).
//! - In WAL mode, when the row count is not already in MDM's registry, it is read with plain
//!   reads of the database, its `-wal` and the `-shm`'s wal-index (`pages`), and read again if a
//!   writer changed them meanwhile. In a rollback journal the rows come from the registry alone.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::files::{Engine, FileError, FileRequest, Inspection, companion, open, size_or_zero};
use super::holders::{FileId, HeldLock, ProcScan};
use crate::model::DatabaseSample;

mod pages;

const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The persistent settings and counters in a SQLite header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub page_size: u64,
    /// Bytes 18/19 are 2: the database is in WAL mode, persistently.
    pub wal: bool,
    pub auto_vacuum: AutoVacuum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoVacuum {
    None,
    Full,
    Incremental,
}

impl AutoVacuum {
    pub fn as_str(self) -> &'static str {
        match self {
            AutoVacuum::None => "none",
            AutoVacuum::Full => "full",
            AutoVacuum::Incremental => "incremental",
        }
    }
}

/// Reads the header (SQLite's file format, section 1.3). `Err` says why it is not SQLite's.
pub fn parse_header(bytes: &[u8; 100]) -> Result<Header, String> {
    if &bytes[..16] != MAGIC {
        return Err("no SQLite header".into());
    }
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        n => return Err(format!("page size {n} in the header")),
    };
    let (write, read) = (bytes[18], bytes[19]);
    let wal = match (write, read) {
        (1, 1) => false,
        (2, 2) => true,
        _ => return Err(format!("file format versions {write}/{read}")),
    };
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let auto_vacuum = match (word(52), word(64)) {
        (0, _) => AutoVacuum::None,
        (_, 0) => AutoVacuum::Full,
        _ => AutoVacuum::Incremental,
    };
    Ok(Header {
        page_size,
        wal,
        auto_vacuum,
    })
}

// The byte ranges SQLite's unix VFS locks (os_unix.c): in the database file for a rollback
// journal, in the `-shm` for WAL.
const PENDING_BYTE: u64 = 0x4000_0000;
const RESERVED_BYTE: u64 = PENDING_BYTE + 1;
const SHARED_FIRST: u64 = PENDING_BYTE + 2;
const SHARED_LAST: u64 = SHARED_FIRST + 510 - 1;
const SHM_WRITE: u64 = 120;
const SHM_CHECKPOINT: u64 = 121;
const SHM_RECOVER: u64 = 122;
const SHM_READ_FIRST: u64 = 123;
const SHM_READ_LAST: u64 = 127;

/// Each process's locks in SQLite's terms, and how many lock requests the kernel holds blocked.
///
/// Rollback journal: the lock level of each process (`shared`: reading; `reserved`: writing a
/// transaction; `pending`: waiting for readers to leave so it can commit; `exclusive`:
/// committing). POSIX locks merge per process, so the level is read from which bytes are
/// covered, not from how many locks there are. WAL: `wal_read` (in a read transaction),
/// `wal_write` (the one writer), `wal_checkpoint`, `wal_recover`, from the `-shm` lock bytes.
pub fn lock_states(
    db: &[HeldLock],
    shm: &[HeldLock],
    wal: bool,
) -> (BTreeMap<i32, Vec<&'static str>>, u64) {
    let mut out: BTreeMap<i32, Vec<&'static str>> = BTreeMap::new();
    let waiters = db.iter().chain(shm).filter(|l| l.blocked).count() as u64;
    let held = |locks: &[HeldLock], pid: i32| -> Vec<HeldLock> {
        locks
            .iter()
            .filter(|l| !l.blocked && l.pid == Some(pid))
            .copied()
            .collect()
    };
    let pids: std::collections::BTreeSet<i32> = db
        .iter()
        .chain(shm)
        .filter(|l| !l.blocked)
        .filter_map(|l| l.pid)
        .collect();
    for pid in pids {
        let on_db = held(db, pid);
        let on_shm = held(shm, pid);
        let any = |locks: &[HeldLock], write: bool, test: &dyn Fn(&HeldLock) -> bool| {
            locks.iter().any(|l| l.write == write && test(l))
        };
        let exclusive = any(&on_db, true, &|l| l.overlaps(SHARED_FIRST, SHARED_LAST));
        let mut states = Vec::new();
        if wal {
            if any(&on_shm, false, &|l| {
                l.overlaps(SHM_READ_FIRST, SHM_READ_LAST)
            }) {
                states.push("wal_read");
            }
            if any(&on_shm, true, &|l| l.covers(SHM_WRITE)) {
                states.push("wal_write");
            }
            if any(&on_shm, true, &|l| l.covers(SHM_CHECKPOINT)) {
                states.push("wal_checkpoint");
            }
            if any(&on_shm, true, &|l| l.covers(SHM_RECOVER)) {
                states.push("wal_recover");
            }
            // Leaving WAL mode, or the last connection's closing checkpoint.
            if exclusive {
                states.push("exclusive");
            }
        } else if exclusive {
            states.push("exclusive");
        } else if any(&on_db, true, &|l| l.covers(PENDING_BYTE)) {
            states.push("pending");
        } else if any(&on_db, true, &|l| l.covers(RESERVED_BYTE)) {
            states.push("reserved");
        } else if any(&on_db, false, &|l| l.overlaps(SHARED_FIRST, SHARED_LAST)) {
            states.push("shared");
        }
        if !states.is_empty() {
            out.insert(pid, states);
        }
    }
    (out, waiters)
}

/// Reads one SQLite file: header, sizes, locks, and (WAL mode, rows not known) its row count.
pub fn inspect(
    file: &FileRequest,
    scan: &ProcScan,
    deadline: Instant,
) -> Result<Inspection, FileError> {
    let path = &file.path;
    let (handle, metadata) = open(path)?;
    let mut sample = DatabaseSample {
        path: path.display().to_string(),
        size_bytes: Some(metadata.len()),
        rows: file.rows,
        ..DatabaseSample::default()
    };
    if metadata.len() == 0 {
        // SQLite writes nothing until the first table: an empty file is an empty database.
        return Ok(Inspection {
            sample,
            ..Inspection::default()
        });
    }
    let header = read_header(&handle).map_err(|e| FileError::io(path, e))?;
    let header = header
        .and_then(|h| parse_header(&h))
        .map_err(|why| FileError::NotDatabase {
            path: path.clone(),
            engine: Engine::Sqlite,
            why,
        })?;
    drop(handle);
    sample.page_size_bytes = Some(header.page_size);
    sample.settings.insert(
        "journal_mode".into(),
        if header.wal { "wal" } else { "rollback" }.into(),
    );
    sample
        .settings
        .insert("auto_vacuum".into(), header.auto_vacuum.as_str().into());
    if header.wal {
        sample.wal_size_bytes = size_or_zero(&companion(path, "-wal"));
    }
    let shm = std::fs::metadata(companion(path, "-shm"))
        .ok()
        .map(|m| FileId::of(&m));
    let (locks, waiters) = lock_states(
        scan.locks_on(FileId::of(&metadata)),
        shm.map_or(&[], |id| scan.locks_on(id)),
        header.wal,
    );
    if header.wal && sample.rows.is_none() {
        sample.rows = pages::count_rows(path, header.page_size, &file.tables, deadline).map_err(
            |message| FileError::Engine {
                path: path.clone(),
                engine: Engine::Sqlite,
                message,
            },
        )?;
    }
    Ok(Inspection {
        sample,
        locks,
        lock_waiters: scan.locks_known.then_some(waiters),
    })
}

/// The header, read until two reads agree (a writer may be rewriting page 1); `Err` in the
/// inner result for a file too short to be SQLite's.
fn read_header(file: &std::fs::File) -> std::io::Result<Result<[u8; 100], String>> {
    let mut previous = [0u8; 100];
    for attempt in 0..5 {
        let mut bytes = [0u8; 100];
        match file.read_exact_at(&mut bytes, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(Err("shorter than a SQLite header".into()));
            }
            Err(e) => return Err(e),
        }
        if attempt > 0 && bytes == previous {
            return Ok(Ok(bytes));
        }
        previous = bytes;
    }
    Ok(Ok(previous))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(page: u16, versions: (u8, u8), root: u32, incremental: u32) -> [u8; 100] {
        let mut h = [0u8; 100];
        h[..16].copy_from_slice(MAGIC);
        h[16..18].copy_from_slice(&page.to_be_bytes());
        (h[18], h[19]) = versions;
        h[52..56].copy_from_slice(&root.to_be_bytes());
        h[64..68].copy_from_slice(&incremental.to_be_bytes());
        h
    }

    #[test]
    fn header_fields_are_read_as_sqlite_writes_them() {
        let cases = [
            (header(4096, (2, 2), 0, 0), Ok((4096, true, "none"))),
            (header(1, (1, 1), 3, 0), Ok((65536, false, "full"))),
            (header(8192, (1, 1), 3, 1), Ok((8192, false, "incremental"))),
            (
                header(1000, (1, 1), 0, 0),
                Err("page size 1000 in the header"),
            ),
            (header(4096, (3, 3), 0, 0), Err("file format versions 3/3")),
        ];
        for (bytes, want) in cases {
            let got = parse_header(&bytes).map(|h| (h.page_size, h.wal, h.auto_vacuum.as_str()));
            assert_eq!(got, want.map_err(String::from));
        }
        let mut not_sqlite = header(4096, (1, 1), 0, 0);
        not_sqlite[0] = b'X';
        assert!(parse_header(&not_sqlite).is_err());
    }

    fn lock(pid: i32, write: bool, first: u64, last: u64) -> HeldLock {
        HeldLock {
            pid: Some(pid),
            write,
            first,
            last: Some(last),
            blocked: false,
        }
    }

    #[test]
    fn rollback_lock_levels_come_from_the_bytes_covered() {
        let db = [
            // 10 reads.
            lock(10, false, SHARED_FIRST, SHARED_LAST),
            // 11 holds RESERVED (and SHARED).
            lock(11, true, RESERVED_BYTE, RESERVED_BYTE),
            lock(11, false, SHARED_FIRST, SHARED_LAST),
            // 12 commits: the kernel merged PENDING, RESERVED and the shared range into one.
            lock(12, true, PENDING_BYTE, SHARED_LAST),
            // 13 waits for readers to leave: PENDING and RESERVED, merged.
            lock(13, true, PENDING_BYTE, RESERVED_BYTE),
            lock(13, false, SHARED_FIRST, SHARED_LAST),
            // 14 takes SHARED: the transient read lock on PENDING first.
            lock(14, false, PENDING_BYTE, PENDING_BYTE),
            HeldLock {
                blocked: true,
                ..lock(15, true, SHARED_FIRST, SHARED_LAST)
            },
        ];
        let (states, waiters) = lock_states(&db, &[], false);
        let want: BTreeMap<i32, Vec<&str>> = BTreeMap::from([
            (10, vec!["shared"]),
            (11, vec!["reserved"]),
            (12, vec!["exclusive"]),
            (13, vec!["pending"]),
        ]);
        assert_eq!(states, want);
        assert_eq!(waiters, 1);
    }

    #[test]
    fn wal_roles_come_from_the_shm_lock_bytes() {
        // As /proc/locks showed for a writer inside a transaction and a reader (every WAL
        // connection also holds SHARED on the database file and a read lock on byte 128).
        let db = [
            lock(20, false, SHARED_FIRST, SHARED_LAST),
            lock(21, false, SHARED_FIRST, SHARED_LAST),
        ];
        let shm = [
            lock(20, true, SHM_WRITE, SHM_WRITE),
            lock(20, false, 124, 124),
            lock(20, false, 128, 128),
            lock(21, false, 124, 124),
            lock(21, false, 128, 128),
            lock(22, true, SHM_CHECKPOINT, SHM_CHECKPOINT),
            lock(23, false, 128, 128),
        ];
        let (states, waiters) = lock_states(&db, &shm, true);
        let want: BTreeMap<i32, Vec<&str>> = BTreeMap::from([
            (20, vec!["wal_read", "wal_write"]),
            (21, vec!["wal_read"]),
            (22, vec!["wal_checkpoint"]),
        ]);
        assert_eq!(states, want);
        assert_eq!(waiters, 0);
    }
}
