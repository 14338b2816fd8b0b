//! A SQLite database's row count, read from its files with plain reads as SQLite's file format
//! lays them out: the tables' B-trees in the database file, their newer pages in the `-wal`,
//! and which WAL frame holds which page in the `-shm`'s wal-index.
//!
//! No SQLite connection is opened, so no lock of any kind is taken. A connection would: even a
//! read-only one (`readonly_shm`) that finds the wal-index header being rewritten takes a
//! shared lock on the WAL write lock to see whether a writer is at work, and a writer's
//! `BEGIN IMMEDIATE` in that instant fails at once under `busy_timeout` 0.
//!
//! What keeps a read without locks consistent:
//! - The wal-index header is taken only when its two copies agree and its checksum holds, as
//!   SQLite itself reads it. It names the snapshot: the last committed frame and the WAL's salts.
//! - A page comes from the newest frame of that snapshot that holds it, else from the database
//!   file. A frame counts only if its own header names that page and carries the snapshot's
//!   salts.
//! - After the reads the header is read again. A commit, a restarted WAL or a new `-shm` changes
//!   it, and the count is read again, at most three times; it is left absent after that. A
//!   checkpoint writes into the database file only pages of committed frames: those of the
//!   snapshot are read from the WAL, and newer ones come with a new header.
//! - A database nobody has open has no `-shm`. With no `-wal` either, or an empty one, the
//!   database file is whole and is read alone; it counts if the file, its size and its
//!   modification time are the same after, and still no `-shm` or `-wal` has appeared. A `-wal`
//!   with frames but no `-shm` (a process that crashed, or one in exclusive locking mode) holds
//!   pages only SQLite's recovery can read: the rows stay absent then.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use rustc_hash::FxHashMap;

use crate::sources::files::{companion, size_or_zero};
use crate::sources::holders::FileId;

/// How many times a count is read when writers keep changing the files under it.
const ATTEMPTS: usize = 3;
/// How many times the wal-index header is read before it is taken as being rewritten.
const HEADER_READS: usize = 5;
/// SQLite's own bound on a B-tree's depth (`BTCURSOR_MAX_DEPTH`).
const MAX_DEPTH: usize = 20;
const LATE: &str = "the sample's deadline passed while the rows were read";

// The wal-index (`-shm`): two copies of a 48-byte header, then the checkpoint information, then
// for each WAL frame the page it holds, in blocks of 32 KiB (each also holds a hash table). The
// header's fields are in the machine's byte order, as SQLite maps the file into memory.
const INDEX_HEADER: usize = 48;
/// The headers and the checkpoint information: where the first block's page numbers start.
const INDEX_HEADERS_END: u64 = 136;
const INDEX_BLOCK: u64 = 32 * 1024;
const FRAMES_PER_BLOCK: u32 = 4096;
const FRAMES_IN_FIRST_BLOCK: u32 = FRAMES_PER_BLOCK - (INDEX_HEADERS_END as u32) / 4;

// The WAL (`-wal`): a 32-byte header, then frames of a 24-byte header and a page each.
const WAL_HEADER: u64 = 32;
const FRAME_HEADER: usize = 24;

// B-tree page kinds (the first byte of a page's header).
const TABLE_INTERIOR: u8 = 0x05;
const TABLE_LEAF: u8 = 0x0d;
const INDEX_INTERIOR: u8 = 0x02;
const INDEX_LEAF: u8 = 0x0a;

/// Rows of the tables (all of them when `tables` is empty), from their largest rowid: a walk
/// down each table's B-tree, exact for tables only ever appended to (as MDM loads them). `None`
/// when it cannot be known now: a table without rowids (or a virtual one), a WAL only SQLite's
/// recovery reads, or writers that changed the files under every attempt.
pub fn count_rows(
    path: &Path,
    page_size: u64,
    tables: &[String],
    deadline: Instant,
) -> Result<Option<u64>, String> {
    for _ in 0..ATTEMPTS {
        let snapshot = match Snapshot::take(path, page_size).map_err(|e| e.to_string())? {
            Taken::Snapshot(snapshot) => snapshot,
            Taken::Unknowable => return Ok(None),
            Taken::Moving => continue,
        };
        let counted = snapshot.count(tables, deadline);
        if Instant::now() > deadline {
            return Err(LATE.into());
        }
        if snapshot.still_current().map_err(|e| e.to_string())? {
            return counted;
        }
    }
    Ok(None)
}

/// What a count is read against.
struct Snapshot {
    database: File,
    path: PathBuf,
    id: FileId,
    page_size: usize,
    version: Version,
}

/// Where the pages are read from, and what must be the same after the reads for the count to
/// stand.
enum Version {
    /// The `-shm` (the same file) and its header; the WAL frames of that snapshot.
    Indexed {
        shm: File,
        shm_id: FileId,
        header: [u8; INDEX_HEADER],
        /// The newest frame of each page, in the snapshot.
        newest: FxHashMap<u32, u32>,
        /// Open when the snapshot has frames.
        wal: Option<File>,
    },
    /// No `-shm`, no frames in a `-wal`: the database file's size and modification time.
    Closed {
        len: u64,
        modified: Option<SystemTime>,
    },
}

enum Taken {
    Snapshot(Snapshot),
    /// A WAL with frames (or one whose size cannot be read) and no wal-index.
    Unknowable,
    /// The wal-index header is being rewritten.
    Moving,
}

impl Snapshot {
    fn take(path: &Path, page_size: u64) -> io::Result<Taken> {
        let database = File::open(path)?;
        let metadata = database.metadata()?;
        let page_size = usize::try_from(page_size).map_err(io::Error::other)?;
        let snapshot = |version| Snapshot {
            database,
            path: path.to_path_buf(),
            id: FileId::of(&metadata),
            page_size,
            version,
        };
        let shm = match File::open(companion(path, "-shm")) {
            Ok(shm) => shm,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if wal_has_frames(path) != Some(false) {
                    return Ok(Taken::Unknowable);
                }
                return Ok(Taken::Snapshot(snapshot(Version::Closed {
                    len: metadata.len(),
                    modified: metadata.modified().ok(),
                })));
            }
            Err(e) => return Err(e),
        };
        let Some(header) = index_header(&shm)? else {
            return Ok(Taken::Moving);
        };
        let header_page_size = u32::from(u16::from_ne_bytes([header[14], header[15]]));
        let header_page_size = (header_page_size & 0xfe00) + ((header_page_size & 1) << 16);
        if header_page_size as usize != page_size {
            return Ok(Taken::Moving);
        }
        let frames = u32::from_ne_bytes([header[16], header[17], header[18], header[19]]);
        let newest = newest_frames(&shm, frames)?;
        let wal = match frames {
            0 => None,
            _ => match File::open(companion(path, "-wal")) {
                Ok(wal) => Some(wal),
                // The last connection closed, deleting it, since the header was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Taken::Moving),
                Err(e) => return Err(e),
            },
        };
        let shm_id = FileId::of(&shm.metadata()?);
        Ok(Taken::Snapshot(snapshot(Version::Indexed {
            shm,
            shm_id,
            header,
            newest,
            wal,
        })))
    }

    /// Whether nothing changed since the snapshot was taken.
    fn still_current(&self) -> io::Result<bool> {
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if FileId::of(&metadata) != self.id {
            return Ok(false);
        }
        let shm = match std::fs::metadata(companion(&self.path, "-shm")) {
            Ok(shm) => Some(FileId::of(&shm)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match &self.version {
            Version::Indexed {
                shm: file,
                shm_id,
                header,
                ..
            } => Ok(shm == Some(*shm_id) && index_header(file)?.as_ref() == Some(header)),
            Version::Closed { len, modified } => Ok(shm.is_none()
                && wal_has_frames(&self.path) == Some(false)
                && metadata.len() == *len
                && metadata.modified().ok() == *modified),
        }
    }

    /// Page `number`, from the snapshot's newest frame holding it, else from the database file.
    fn page(&self, number: u32, deadline: Instant) -> Result<Vec<u8>, String> {
        if Instant::now() > deadline {
            return Err(LATE.into());
        }
        if number == 0 {
            return Err("a B-tree points at page 0".into());
        }
        if let Version::Indexed {
            newest,
            wal: Some(wal),
            header,
            ..
        } = &self.version
            && let Some(&frame) = newest.get(&number)
        {
            let mut bytes = vec![0u8; FRAME_HEADER + self.page_size];
            let at = WAL_HEADER + u64::from(frame - 1) * bytes.len() as u64;
            wal.read_exact_at(&mut bytes, at)
                .map_err(|e| format!("frame {frame} of the -wal: {e}"))?;
            if bytes[0..4] != number.to_be_bytes() || bytes[8..16] != header[32..40] {
                return Err(format!("frame {frame} of the -wal is not page {number}"));
            }
            bytes.drain(..FRAME_HEADER);
            return Ok(bytes);
        }
        let mut bytes = vec![0u8; self.page_size];
        let at = u64::from(number - 1) * self.page_size as u64;
        self.database
            .read_exact_at(&mut bytes, at)
            .map_err(|e| format!("page {number}: {e}"))?;
        Ok(bytes)
    }

    fn count(&self, tables: &[String], deadline: Instant) -> Result<Option<u64>, String> {
        let first = self.page(1, deadline)?;
        let layout = Layout::of(&first, self.page_size)?;
        let mut total = 0u64;
        for (name, root) in self.schema(&layout, first, deadline)? {
            if !tables.is_empty() && !tables.contains(&name) {
                continue;
            }
            let Some(largest) = self.largest_rowid(root, deadline)? else {
                return Ok(None);
            };
            total += largest;
        }
        Ok(Some(total))
    }

    /// The largest rowid of the table whose B-tree starts at `root` (0 for an empty table), or
    /// `None` for a table without rowids: down the right-most edge to the last cell.
    fn largest_rowid(&self, root: u32, deadline: Instant) -> Result<Option<u64>, String> {
        let mut number = root;
        for _ in 0..MAX_DEPTH {
            let bytes = self.page(number, deadline)?;
            let node = Node::new(&bytes, number)?;
            match node.kind {
                TABLE_INTERIOR => number = node.right_most()?,
                TABLE_LEAF => {
                    let cells = node.cells()?;
                    if cells == 0 {
                        if number != root {
                            return Err(format!("page {number}: an empty leaf under a root"));
                        }
                        return Ok(Some(0));
                    }
                    let cell = node.cell(cells - 1)?;
                    let (_, used) = varint(cell).ok_or_else(|| node.malformed("cell"))?;
                    let (rowid, _) = varint(&cell[used..]).ok_or_else(|| node.malformed("cell"))?;
                    // A rowid is a signed 64-bit integer, stored as its two's complement.
                    return Ok(Some((rowid as i64).max(0) as u64));
                }
                INDEX_INTERIOR | INDEX_LEAF => return Ok(None),
                kind => return Err(node.malformed(&format!("kind {kind:#04x}"))),
            }
        }
        Err(format!(
            "the B-tree at page {root} is deeper than {MAX_DEPTH}"
        ))
    }

    /// The tables in `sqlite_schema` (the B-tree at page 1): name and root page, SQLite's own
    /// (`sqlite_%`) left out. A virtual table's root is 0.
    fn schema(
        &self,
        layout: &Layout,
        first: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<(String, u32)>, String> {
        let mut tables = Vec::new();
        let mut pending = vec![(1u32, 0usize, Some(first))];
        while let Some((number, depth, read)) = pending.pop() {
            if depth >= MAX_DEPTH {
                return Err(format!("sqlite_schema is deeper than {MAX_DEPTH}"));
            }
            let bytes = match read {
                Some(bytes) => bytes,
                None => self.page(number, deadline)?,
            };
            let node = Node::new(&bytes, number)?;
            match node.kind {
                TABLE_INTERIOR => {
                    pending.push((node.right_most()?, depth + 1, None));
                    for i in 0..node.cells()? {
                        let child =
                            be_u32(node.cell(i)?, 0).ok_or_else(|| node.malformed("cell"))?;
                        pending.push((child, depth + 1, None));
                    }
                }
                TABLE_LEAF => {
                    for i in 0..node.cells()? {
                        let (kind, name, root) = self.schema_entry(layout, &node, i, deadline)?;
                        if kind == "table" && !is_internal(&name) {
                            tables.push((name, root));
                        }
                    }
                }
                kind => return Err(node.malformed(&format!("kind {kind:#04x} in sqlite_schema"))),
            }
        }
        Ok(tables)
    }

    /// Type, name and root page of the `i`-th row of a `sqlite_schema` leaf.
    fn schema_entry(
        &self,
        layout: &Layout,
        node: &Node,
        i: usize,
        deadline: Instant,
    ) -> Result<(String, String, u32), String> {
        let cell = node.cell(i)?;
        let malformed = || node.malformed("sqlite_schema row");
        let (payload_len, a) = varint(cell).ok_or_else(malformed)?;
        let (_rowid, b) = varint(&cell[a..]).ok_or_else(malformed)?;
        let local = &cell[a + b..];
        let payload_len = usize::try_from(payload_len).map_err(|_| malformed())?;
        let local_len = layout.local_payload(payload_len);
        // The record's header and its first four columns (type, name, tbl_name, rootpage),
        // following overflow pages when a long name does not fit on the page.
        let mut payload = local.get(..local_len).ok_or_else(malformed)?.to_vec();
        let mut overflow = match payload_len > local_len {
            true => be_u32(local, local_len).ok_or_else(malformed)?,
            false => 0,
        };
        let mut pages = 0;
        loop {
            if let Some(columns) = record_prefix(&payload, 4) {
                let text = |c: &Column| match c.serial >= 13 && c.serial % 2 == 1 {
                    true => layout.text(&payload[c.at..c.at + c.len]),
                    false => Err(malformed()),
                };
                let (kind, name) = (text(&columns[0])?, text(&columns[1])?);
                let root = integer(&payload, &columns[3]).ok_or_else(malformed)?;
                let root = u32::try_from(root).map_err(|_| malformed())?;
                return Ok((kind, name, root));
            }
            if overflow == 0 || payload.len() >= payload_len || pages > payload_len / layout.usable
            {
                return Err(malformed());
            }
            let bytes = self.page(overflow, deadline)?;
            let room = (payload_len - payload.len()).min(layout.usable - 4);
            payload.extend_from_slice(bytes.get(4..4 + room).ok_or_else(malformed)?);
            overflow = be_u32(&bytes, 0).ok_or_else(malformed)?;
            pages += 1;
        }
    }
}

/// Whether the WAL beside the database holds any frame; `None` when its size cannot be read.
fn wal_has_frames(path: &Path) -> Option<bool> {
    size_or_zero(&companion(path, "-wal")).map(|len| len > WAL_HEADER)
}

/// The wal-index header, when its two copies agree and its checksum holds; `None` when it is
/// being rewritten (or was never written) through every read.
fn index_header(shm: &File) -> io::Result<Option<[u8; INDEX_HEADER]>> {
    for _ in 0..HEADER_READS {
        let mut both = [0u8; 2 * INDEX_HEADER];
        match shm.read_exact_at(&mut both, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let (first, second) = both.split_at(INDEX_HEADER);
        // Byte 12 is isInit; the checksum covers the 40 bytes before it.
        if first == second && first[12] == 1 && index_checksum(&first[..40]) == first[40..] {
            let mut header = [0u8; INDEX_HEADER];
            header.copy_from_slice(first);
            return Ok(Some(header));
        }
    }
    Ok(None)
}

/// SQLite's WAL checksum over words in the machine's byte order, as it writes the wal-index's.
fn index_checksum(bytes: &[u8]) -> [u8; 8] {
    let (mut s1, mut s2) = (0u32, 0u32);
    for pair in bytes.chunks_exact(8) {
        let word =
            |at: usize| u32::from_ne_bytes([pair[at], pair[at + 1], pair[at + 2], pair[at + 3]]);
        s1 = s1.wrapping_add(word(0)).wrapping_add(s2);
        s2 = s2.wrapping_add(word(4)).wrapping_add(s1);
    }
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&s1.to_ne_bytes());
    out[4..].copy_from_slice(&s2.to_ne_bytes());
    out
}

/// For each page in the WAL's frames 1..=`frames`, the newest frame holding it.
fn newest_frames(shm: &File, frames: u32) -> io::Result<FxHashMap<u32, u32>> {
    let mut newest = FxHashMap::default();
    let mut frame = 1u32;
    while frame <= frames {
        let (at, left_in_block) = match frame <= FRAMES_IN_FIRST_BLOCK {
            true => (
                INDEX_HEADERS_END + 4 * u64::from(frame - 1),
                FRAMES_IN_FIRST_BLOCK - (frame - 1),
            ),
            false => {
                let i = frame - 1 - FRAMES_IN_FIRST_BLOCK;
                let block = u64::from(i / FRAMES_PER_BLOCK + 1);
                let slot = i % FRAMES_PER_BLOCK;
                (
                    block * INDEX_BLOCK + 4 * u64::from(slot),
                    FRAMES_PER_BLOCK - slot,
                )
            }
        };
        let count = left_in_block.min(frames - frame + 1);
        let mut bytes = vec![0u8; 4 * count as usize];
        shm.read_exact_at(&mut bytes, at)?;
        for (k, page) in bytes.chunks_exact(4).enumerate() {
            let page = u32::from_ne_bytes([page[0], page[1], page[2], page[3]]);
            newest.insert(page, frame + k as u32);
        }
        frame += count;
    }
    Ok(newest)
}

/// SQLite's own tables (`sqlite_%`, matched as SQL's LIKE does: ASCII case ignored).
fn is_internal(name: &str) -> bool {
    name.get(..7)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("sqlite_"))
}

/// What the database header says about reading its pages.
struct Layout {
    /// The page size less the bytes each page reserves at its end.
    usable: usize,
    encoding: Encoding,
}

#[derive(Clone, Copy)]
enum Encoding {
    Utf8,
    Utf16Le,
    Utf16Be,
}

impl Layout {
    fn of(first: &[u8], page_size: usize) -> Result<Layout, String> {
        let reserved = usize::from(first.get(20).copied().unwrap_or(0));
        let encoding = match be_u32(first, 56) {
            Some(0 | 1) => Encoding::Utf8,
            Some(2) => Encoding::Utf16Le,
            Some(3) => Encoding::Utf16Be,
            other => return Err(format!("text encoding {other:?} in the header")),
        };
        let usable = page_size
            .checked_sub(reserved)
            .filter(|u| *u >= 480)
            .ok_or_else(|| format!("{reserved} reserved bytes on {page_size}-byte pages"))?;
        Ok(Layout { usable, encoding })
    }

    /// How much of a table leaf cell's payload of `len` bytes is on the page itself.
    fn local_payload(&self, len: usize) -> usize {
        let most = self.usable - 35;
        if len <= most {
            return len;
        }
        let least = (self.usable - 12) * 32 / 255 - 23;
        let local = least + (len - least) % (self.usable - 4);
        if local <= most { local } else { least }
    }

    fn text(&self, bytes: &[u8]) -> Result<String, String> {
        let units = |from: fn([u8; 2]) -> u16| {
            let units = bytes.chunks_exact(2).map(|b| from([b[0], b[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|e| e.to_string())
        };
        match self.encoding {
            Encoding::Utf8 => String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string()),
            Encoding::Utf16Le => units(u16::from_le_bytes),
            Encoding::Utf16Be => units(u16::from_be_bytes),
        }
    }
}

/// A B-tree page: its bytes and where its header starts (after the database header on page 1).
struct Node<'a> {
    bytes: &'a [u8],
    at: usize,
    number: u32,
    kind: u8,
}

impl<'a> Node<'a> {
    fn new(bytes: &'a [u8], number: u32) -> Result<Node<'a>, String> {
        let at = if number == 1 { 100 } else { 0 };
        let kind = *bytes
            .get(at)
            .ok_or_else(|| format!("page {number} is shorter than its header"))?;
        Ok(Node {
            bytes,
            at,
            number,
            kind,
        })
    }

    fn malformed(&self, what: &str) -> String {
        format!("page {}: malformed {what}", self.number)
    }

    fn cells(&self) -> Result<usize, String> {
        be_u16(self.bytes, self.at + 3)
            .map(usize::from)
            .ok_or_else(|| self.malformed("header"))
    }

    fn right_most(&self) -> Result<u32, String> {
        be_u32(self.bytes, self.at + 8).ok_or_else(|| self.malformed("header"))
    }

    /// The `i`-th cell, from its start to the end of the page.
    fn cell(&self, i: usize) -> Result<&'a [u8], String> {
        let header = if self.kind == TABLE_LEAF || self.kind == INDEX_LEAF {
            8
        } else {
            12
        };
        let at = be_u16(self.bytes, self.at + header + 2 * i)
            .ok_or_else(|| self.malformed("cell pointer"))?;
        self.bytes
            .get(usize::from(at)..)
            .filter(|cell| !cell.is_empty())
            .ok_or_else(|| self.malformed("cell pointer"))
    }
}

/// Where a record's column lies in the payload, and its serial type.
struct Column {
    serial: u64,
    at: usize,
    len: usize,
}

/// The first `count` columns of a record, when the payload read so far holds them all.
fn record_prefix(payload: &[u8], count: usize) -> Option<Vec<Column>> {
    let (header_len, mut at) = varint(payload)?;
    let header_len = usize::try_from(header_len).ok()?;
    let mut body = header_len;
    let mut columns = Vec::with_capacity(count);
    while columns.len() < count && at < header_len {
        let (serial, used) = varint(payload.get(at..header_len)?)?;
        at += used;
        let len = match serial {
            0 | 8 | 9 | 10 | 11 => 0,
            1..=4 => serial as usize,
            5 => 6,
            6 | 7 => 8,
            n => usize::try_from((n - 12) / 2).ok()?,
        };
        columns.push(Column {
            serial,
            at: body,
            len,
        });
        body = body.checked_add(len)?;
    }
    (columns.len() == count && body <= payload.len()).then_some(columns)
}

/// An integer column's value (serial types 1 to 6, 8 and 9).
fn integer(payload: &[u8], column: &Column) -> Option<i64> {
    match column.serial {
        8 => Some(0),
        9 => Some(1),
        1..=6 => {
            let bytes = payload.get(column.at..column.at + column.len)?;
            let negative = bytes[0] & 0x80 != 0;
            let start = if negative { -1i64 } else { 0 };
            Some(bytes.iter().fold(start, |v, b| (v << 8) | i64::from(*b)))
        }
        _ => None,
    }
}

/// SQLite's variable-length integer: its value and how many bytes it took.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(9).enumerate() {
        if i == 8 {
            return Some(((value << 8) | u64::from(*byte), 9));
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use proptest::prelude::*;
    use rusqlite::Connection;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    /// A database as SQLite makes it, in WAL mode, never checkpointed unless a test says so.
    fn wal_database(path: &Path, page_size: u32, encoding: &str) -> Connection {
        let connection = Connection::open(path).unwrap();
        connection
            .execute_batch(&format!(
                "PRAGMA page_size = {page_size}; PRAGMA encoding = '{encoding}';
                 PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 PRAGMA synchronous = OFF;"
            ))
            .unwrap();
        connection
    }

    /// The count of `tables`, which must be readable.
    fn count_of(path: &Path, page_size: u64, tables: &[&str]) -> Option<u64> {
        let tables: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        count_rows(path, page_size, &tables, soon()).unwrap()
    }

    fn page_size(connection: &Connection) -> u64 {
        connection
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }

    /// SQLite's own answer: the sum of each table's `max(rowid)`, none below 0.
    fn sqlite_rows(connection: &Connection, tables: &[&str]) -> u64 {
        tables
            .iter()
            .map(|t| {
                let max: Option<i64> = connection
                    .query_row(&format!("SELECT max(rowid) FROM \"{t}\""), [], |r| r.get(0))
                    .unwrap();
                max.unwrap_or(0).max(0) as u64
            })
            .sum()
    }

    fn wal_len(path: &Path) -> u64 {
        std::fs::metadata(companion(path, "-wal")).map_or(0, |m| m.len())
    }

    fn append(connection: &Connection, table: &str, rows: usize, payload: usize) {
        let tx = connection.unchecked_transaction().unwrap();
        let mut insert = tx
            .prepare(&format!("INSERT INTO \"{table}\" (payload) VALUES (?1)"))
            .unwrap();
        for i in 0..rows {
            insert.execute([format!("{i:0payload$}")]).unwrap();
        }
        drop(insert);
        tx.commit().unwrap();
    }

    #[test]
    fn rows_still_in_the_wal_are_read_from_its_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.sqlite");
        let connection = wal_database(&path, 4096, "UTF-8");
        connection
            .execute_batch(
                "CREATE TABLE bulk (id INTEGER PRIMARY KEY, payload TEXT);
                 CREATE TABLE trickle (id INTEGER PRIMARY KEY, payload TEXT);
                 CREATE TABLE untouched (id INTEGER PRIMARY KEY, payload TEXT);",
            )
            .unwrap();
        // 30,000 rows of 100 bytes: a B-tree three levels deep.
        for _ in 0..3 {
            append(&connection, "bulk", 10_000, 100);
        }
        // 9,000 commits of a row each: the wal-index's page numbers span three of its blocks.
        for _ in 0..9_000 {
            append(&connection, "trickle", 1, 10);
        }
        let size = page_size(&connection);
        let frames = (wal_len(&path) - WAL_HEADER) / (FRAME_HEADER as u64 + size);
        assert!(
            frames > u64::from(FRAMES_IN_FIRST_BLOCK + FRAMES_PER_BLOCK),
            "{frames}"
        );
        // Nothing was checkpointed: the database file holds none of the rows.
        assert!(std::fs::metadata(&path).unwrap().len() <= 4 * size);

        let count = |tables: &[&str]| count_of(&path, size, tables);
        assert_eq!(count(&[]), Some(39_000));
        assert_eq!(count(&["trickle"]), Some(9_000));
        assert_eq!(count(&["untouched"]), Some(0));
        assert_eq!(
            count(&[]),
            Some(sqlite_rows(&connection, &["bulk", "trickle", "untouched"]))
        );

        // Checkpointed, then written again: the writer restarts the WAL from its first frame
        // with new salts, over the frames of the old one.
        connection
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .unwrap();
        append(&connection, "untouched", 3, 10);
        assert_eq!(count(&[]), Some(39_003));
        // Checkpointed and truncated: every page is in the database file.
        connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        assert_eq!(wal_len(&path), 0);
        assert_eq!(count(&[]), Some(39_003));
        // Closed: no -shm, no -wal.
        drop(connection);
        assert!(!companion(&path, "-shm").exists());
        assert_eq!(count(&[]), Some(39_003));
    }

    #[test]
    fn tables_without_rowids_make_the_count_unknown_and_sqlites_own_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kinds.sqlite");
        let connection = wal_database(&path, 4096, "UTF-8");
        connection
            .execute_batch(
                "CREATE TABLE counted (id INTEGER PRIMARY KEY, payload TEXT);
                 INSERT INTO counted VALUES (1099511627776, 'x');
                 CREATE TABLE negative (id INTEGER PRIMARY KEY);
                 INSERT INTO negative VALUES (-5);
                 CREATE TABLE keyed (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
                 INSERT INTO keyed VALUES ('a', 1);
                 CREATE TABLE numbered (id INTEGER PRIMARY KEY AUTOINCREMENT, v);
                 INSERT INTO numbered (v) VALUES (1), (2);
                 CREATE INDEX by_payload ON counted (payload);",
            )
            .unwrap();
        let size = page_size(&connection);
        let count = |tables: &[&str]| count_of(&path, size, tables);
        // sqlite_sequence (AUTOINCREMENT's) is SQLite's: not counted; a negative rowid is 0.
        assert_eq!(
            count(&["counted", "negative", "numbered"]),
            Some(1_099_511_627_778)
        );
        assert_eq!(count(&["keyed"]), None);
        assert_eq!(count(&[]), None);
    }

    #[test]
    fn long_names_small_pages_and_utf16_text_are_read() {
        let dir = tempfile::tempdir().unwrap();
        for (page, encoding) in [(512, "UTF-16le"), (65536, "UTF-16be"), (1024, "UTF-8")] {
            let path = dir.path().join(format!("{page}.sqlite"));
            let connection = wal_database(&path, page, encoding);
            // A name far longer than a 512-byte page: the schema row spills to overflow pages.
            let long = format!("t_{}é", "n".repeat(1500));
            connection
                .execute_batch(&format!(
                    "CREATE TABLE \"{long}\" (id INTEGER PRIMARY KEY, payload TEXT);
                     CREATE TABLE short (id INTEGER PRIMARY KEY, payload TEXT);"
                ))
                .unwrap();
            append(&connection, &long, 2_000, 700);
            append(&connection, "short", 9, 1);
            let size = page_size(&connection);
            assert_eq!(size, u64::from(page));
            let rows = count_rows(&path, size, std::slice::from_ref(&long), soon()).unwrap();
            assert_eq!(rows, Some(2_000), "{page} {encoding}");
            assert_eq!(count_rows(&path, size, &[], soon()).unwrap(), Some(2_009));
        }
    }

    #[test]
    fn a_malformed_page_is_named_and_a_passed_deadline_stops_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.sqlite");
        let connection = wal_database(&path, 4096, "UTF-8");
        connection
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (4);")
            .unwrap();
        let root: u32 = connection
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 't'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        drop(connection);
        assert_eq!(count_rows(&path, 4096, &[], soon()).unwrap(), Some(4));
        let late = Instant::now() - Duration::from_millis(1);
        assert_eq!(count_rows(&path, 4096, &[], late), Err(LATE.into()));

        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0x07], u64::from(root - 1) * 4096)
            .unwrap();
        assert_eq!(
            count_rows(&path, 4096, &[], soon()),
            Err(format!("page {root}: malformed kind 0x07"))
        );
    }

    #[test]
    fn a_count_taken_while_a_writer_commits_and_checkpoints_is_one_it_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.sqlite");
        let connection = wal_database(&path, 4096, "UTF-8");
        connection
            .execute_batch(
                "PRAGMA wal_autocheckpoint = 50; PRAGMA busy_timeout = 0;
                 CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT);",
            )
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut commits = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    append(&connection, "t", 1, 200);
                    commits += 1;
                }
                (commits, sqlite_rows(&connection, &["t"]))
            })
        };
        let (mut read, mut previous) = (0, 0);
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            // Each count is a state the writer committed: never less than one seen before.
            if let Some(rows) = count_rows(&path, 4096, &[], soon()).unwrap() {
                assert!(rows >= previous, "{rows} after {previous}");
                previous = rows;
                read += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (commits, rows) = writer.join().unwrap();
        assert_eq!(rows, commits);
        assert!(
            previous <= commits && read > 100,
            "{read} counts, last {previous}"
        );
        assert_eq!(count_rows(&path, 4096, &[], soon()).unwrap(), Some(commits));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Whatever the page size, row sizes (overflow pages included) and deletions, the count
        /// is the sum of what SQLite answers for each table's `max(rowid)`, open or closed.
        #[test]
        fn the_count_is_sqlites_own_max_rowid(
            page in prop::sample::select(vec![512u32, 1024, 4096, 8192, 65536]),
            tables in prop::collection::vec((0usize..1500, 0usize..3000, 0usize..3), 1..4),
            close in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("any.sqlite");
            let connection = wal_database(&path, page, "UTF-8");
            let mut names = Vec::new();
            for (i, (rows, payload, deletes)) in tables.iter().enumerate() {
                let name = format!("t{i}");
                connection
                    .execute_batch(&format!("CREATE TABLE {name} (id INTEGER PRIMARY KEY, payload TEXT)"))
                    .unwrap();
                append(&connection, &name, *rows, *payload);
                // Deleting the last rows moves max(rowid) back.
                connection
                    .execute(&format!("DELETE FROM {name} WHERE id > ?1"), [rows.saturating_sub(*deletes * 7) as i64])
                    .unwrap();
                names.push(name);
            }
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let want = sqlite_rows(&connection, &names);
            if close {
                drop(connection);
            }
            prop_assert_eq!(count_rows(&path, u64::from(page), &[], soon()).unwrap(), Some(want));
        }
    }
}
