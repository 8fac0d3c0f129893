//! Database files in the on-disk format of [etcd-io/bbolt](https://github.com/etcd-io/bbolt),
//! the B+tree store etcd keeps its backend in (and streams as `etcdctl snapshot save`).
//!
//! Two operations, both on whole files held in memory:
//!
//! - [`write_database`] bulk-builds a compact, valid file from sorted buckets (no free
//!   pages, every page reachable, leaves packed full), as a writer that knows all data in
//!   advance can. bbolt (and so `etcdctl snapshot status`, whose integrity check walks every
//!   page) opens it.
//! - [`read_database`] reads any file bbolt wrote: both meta pages (the valid one with the
//!   highest transaction id wins), branch and leaf pages, overflow pages, nested buckets
//!   with their own pages or inline in their parent's leaf, the freelist. It never panics
//!   on bad input: a truncated, corrupted or foreign file is an [`Error`] naming the reason.
//!   It also checks what bbolt's `Tx.Check` checks (every page below the high-water mark
//!   is reachable once or free, never both).
//!
//! # The format (bbolt version 2), as far as used here
//!
//! All integers are little-endian (bbolt writes its structs in native order; every
//! platform etcd ships for is little-endian). The file is a sequence of pages of
//! `page_size` bytes (4096 here); a page starts with a 16-byte header: `id` u64, `flags`
//! u16 (0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist), `count` u16 (elements),
//! `overflow` u32 (further pages the page spans).
//!
//! - Pages 0 and 1 are meta pages: `magic` u32 (0xED0CDAED), `version` u32 (2),
//!   `page_size` u32, `flags` u32, root bucket (`root` page id u64, `sequence` u64),
//!   `freelist` page id u64, `pgid` u64 (high-water mark: pages in use), `txid` u64,
//!   `checksum` u64 (FNV-1a 64 of the preceding 56 bytes).
//! - Leaf page: `count` elements of 16 bytes (`flags` u32 — 0x01 marks a nested bucket —,
//!   `pos` u32, `ksize` u32, `vsize` u32), then keys and values; `pos` is counted from the
//!   element's own start.
//! - Branch page: `count` elements of 16 bytes (`pos` u32, `ksize` u32, child page id
//!   u64), then the keys; each key is the first key of its child.
//! - A bucket's value in its parent: `root` page id u64 and `sequence` u64; a `root` of 0
//!   means inline: a leaf page (header and elements) follows in the value itself.
//! - Freelist page: `count` page ids u64, sorted (with `count` 0xFFFF the first u64 holds
//!   the real count).

#![deny(missing_docs)]

mod read;
mod write;

#[cfg(test)]
mod tests;

pub use read::{read_database, Database};
pub use write::write_database;

/// Page size of files written by [`write_database`] (bbolt's default on 4 KiB-page systems).
pub const PAGE_SIZE_BYTES: usize = 4096;

/// bbolt's magic number (meta pages).
pub const MAGIC: u32 = 0xED0C_DAED;

/// The only data file version bbolt has written.
pub const VERSION: u32 = 2;

pub(crate) const PAGE_HEADER_BYTES: usize = 16;
pub(crate) const ELEMENT_BYTES: usize = 16;
pub(crate) const BUCKET_HEADER_BYTES: usize = 16;
pub(crate) const META_CHECKSUMMED_BYTES: usize = 56;
pub(crate) const BRANCH_PAGE_FLAG: u16 = 0x01;
pub(crate) const LEAF_PAGE_FLAG: u16 = 0x02;
pub(crate) const META_PAGE_FLAG: u16 = 0x04;
pub(crate) const FREELIST_PAGE_FLAG: u16 = 0x10;
pub(crate) const BUCKET_LEAF_FLAG: u32 = 0x01;
/// `freelist` of a meta page when the freelist is not stored (bbolt's `NoFreelistSync`).
pub(crate) const NO_FREELIST: u64 = u64::MAX;

/// A bucket: keys in byte order, each holding a value or a nested bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Entries in ascending key order (bytes compared lexicographically, as bbolt).
    pub entries: Vec<(Vec<u8>, Entry)>,
}

/// What a bucket key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A plain value.
    Value(Vec<u8>),
    /// A nested bucket.
    Bucket(Bucket),
}

impl Bucket {
    /// The nested bucket named `name`, if any.
    pub fn bucket(&self, name: &[u8]) -> Option<&Bucket> {
        let index = self.entries.binary_search_by(|(key, _)| key.as_slice().cmp(name)).ok()?;
        match &self.entries[index].1 {
            Entry::Bucket(bucket) => Some(bucket),
            Entry::Value(_) => None,
        }
    }

    /// The value under `key`, if it holds one.
    pub fn value(&self, key: &[u8]) -> Option<&[u8]> {
        let index = self.entries.binary_search_by(|(stored, _)| stored.as_slice().cmp(key)).ok()?;
        match &self.entries[index].1 {
            Entry::Value(value) => Some(value),
            Entry::Bucket(_) => None,
        }
    }

    /// The plain values in key order (nested buckets skipped).
    pub fn values(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().filter_map(|(key, entry)| match entry {
            Entry::Value(value) => Some((key.as_slice(), value.as_slice())),
            Entry::Bucket(_) => None,
        })
    }
}

/// Why a file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Neither meta page carries bbolt's magic number: not a bbolt file.
    NotBbolt,
    /// The meta pages name a data file version other than 2.
    UnsupportedVersion(u32),
    /// The meta pages' checksums do not match their contents.
    MetaChecksum,
    /// The file is shorter than its meta page says.
    Truncated {
        /// Bytes the meta page accounts for.
        expected_bytes: u64,
        /// Bytes present.
        actual_bytes: u64,
    },
    /// A page is not what the tree says it is (reason given).
    Corrupt(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotBbolt => write!(formatter, "not a bbolt database (no valid meta page with magic 0xED0CDAED)"),
            Error::UnsupportedVersion(version) => {
                write!(formatter, "unsupported bbolt data file version {version} (expected {VERSION})")
            }
            Error::MetaChecksum => write!(formatter, "bbolt meta pages fail their checksum"),
            Error::Truncated { expected_bytes, actual_bytes } => write!(
                formatter,
                "truncated bbolt database: {actual_bytes} bytes, its meta page accounts for {expected_bytes}"
            ),
            Error::Corrupt(reason) => write!(formatter, "corrupt bbolt database: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// FNV-1a 64 (bbolt's meta checksum).
pub(crate) fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME))
}
