//! Reading a whole bbolt file, with the consistency checks of bbolt's `Tx.Check`.

use crate::{
    Bucket, Entry, Error, BRANCH_PAGE_FLAG, BUCKET_HEADER_BYTES, BUCKET_LEAF_FLAG, ELEMENT_BYTES, FREELIST_PAGE_FLAG,
    LEAF_PAGE_FLAG, MAGIC, META_CHECKSUMMED_BYTES, NO_FREELIST, PAGE_HEADER_BYTES, VERSION,
};

/// Deepest B+tree (branch levels) or bucket nesting accepted: far beyond any real file,
/// it bounds recursion on a corrupted one.
const DEPTH_MAX: usize = 64;

/// Page sizes bbolt may have used (a power of two; it takes the OS page size).
const PAGE_SIZES_BYTES: [usize; 8] = [4096, 512, 1024, 2048, 8192, 16384, 32768, 65536];

/// A bbolt file, read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    /// The file's page size.
    pub page_size_bytes: usize,
    /// Transaction id of the meta page in use.
    pub txid: u64,
    /// Pages in use (the meta page's high-water mark).
    pub high_water_mark: u64,
    /// Pages on the freelist.
    pub free_pages: u64,
    /// The top-level buckets.
    pub root: Bucket,
}

impl Database {
    /// Bytes in use: high-water mark × page size (bbolt's `Tx.Size`, which
    /// `etcdctl snapshot status` prints as the total size).
    pub fn size_bytes(&self) -> u64 {
        self.high_water_mark * self.page_size_bytes as u64
    }
}

#[derive(Clone, Copy, Debug)]
struct Meta {
    page_size_bytes: usize,
    root_page: u64,
    freelist_page: u64,
    high_water_mark: u64,
    txid: u64,
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(bytes[offset..offset + 2].try_into().expect("two bytes"))
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("eight bytes"))
}

/// The meta page at byte `offset`.
fn parse_meta(bytes: &[u8], offset: usize) -> Result<Meta, Error> {
    let start = offset + PAGE_HEADER_BYTES;
    let Some(meta) = bytes.get(start..start + META_CHECKSUMMED_BYTES + 8) else {
        return Err(Error::NotBbolt);
    };
    if u32_at(meta, 0) != MAGIC {
        return Err(Error::NotBbolt);
    }
    let version = u32_at(meta, 4);
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    if u64_at(meta, 56) != crate::fnv1a_64(&meta[..META_CHECKSUMMED_BYTES]) {
        return Err(Error::MetaChecksum);
    }
    Ok(Meta {
        page_size_bytes: u32_at(meta, 8) as usize,
        root_page: u64_at(meta, 16),
        freelist_page: u64_at(meta, 32),
        high_water_mark: u64_at(meta, 40),
        txid: u64_at(meta, 48),
    })
}

/// The valid meta page with the highest transaction id (as bbolt picks it).
fn choose_meta(bytes: &[u8]) -> Result<Meta, Error> {
    let first = parse_meta(bytes, 0).and_then(|meta| match PAGE_SIZES_BYTES.contains(&meta.page_size_bytes) {
        true => Ok(meta),
        false => Err(Error::Corrupt(format!("meta page 0: page size {}", meta.page_size_bytes))),
    });
    let page_sizes: Vec<usize> = match &first {
        Ok(meta) => vec![meta.page_size_bytes],
        Err(_) => PAGE_SIZES_BYTES.to_vec(),
    };
    let mut second = Err(Error::NotBbolt);
    for page_size_bytes in page_sizes {
        match parse_meta(bytes, page_size_bytes) {
            Ok(meta) if meta.page_size_bytes == page_size_bytes => {
                second = Ok(meta);
                break;
            }
            Ok(_) => {}
            Err(error) if matches!(second, Err(Error::NotBbolt)) => second = Err(error),
            Err(_) => {}
        }
    }
    match (first, second) {
        (Ok(zero), Ok(one)) => Ok(if one.txid > zero.txid { one } else { zero }),
        (Ok(meta), Err(_)) | (Err(_), Ok(meta)) => Ok(meta),
        (Err(Error::NotBbolt), Err(error)) | (Err(error), Err(_)) => Err(error),
    }
}

/// Reads a bbolt file: its meta, every bucket and value, and checks that every page
/// below the high-water mark is used exactly once or free. Bytes after the high-water
/// mark (a data file grows ahead of its use) are ignored.
pub fn read_database(bytes: &[u8]) -> Result<Database, Error> {
    let meta = choose_meta(bytes)?;
    let expected_bytes = meta.high_water_mark.saturating_mul(meta.page_size_bytes as u64);
    if (bytes.len() as u64) < expected_bytes {
        return Err(Error::Truncated { expected_bytes, actual_bytes: bytes.len() as u64 });
    }
    if meta.high_water_mark < 3 {
        return Err(Error::Corrupt(format!("high-water mark {} below the first data page", meta.high_water_mark)));
    }
    let mut reader = Reader { bytes, meta, used: vec![false; meta.high_water_mark as usize], free: Vec::new() };
    reader.used[0] = true;
    reader.used[1] = true;
    if meta.freelist_page != NO_FREELIST {
        reader.read_freelist()?;
    }
    let root = reader.read_tree_bucket(meta.root_page, 0)?;
    if meta.freelist_page != NO_FREELIST {
        let free: std::collections::HashSet<u64> = reader.free.iter().copied().collect();
        if let Some(page) = (0..meta.high_water_mark).find(|page| !reader.used[*page as usize] && !free.contains(page))
        {
            return Err(Error::Corrupt(format!("page {page}: unreachable unfreed")));
        }
    }
    Ok(Database {
        page_size_bytes: meta.page_size_bytes,
        txid: meta.txid,
        high_water_mark: meta.high_water_mark,
        free_pages: reader.free.len() as u64,
        root,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    meta: Meta,
    /// Pages reached so far (meta, freelist, bucket pages).
    used: Vec<bool>,
    free: Vec<u64>,
}

impl<'a> Reader<'a> {
    /// The page `id` with its overflow pages, marked used; `expected_flags` is the type
    /// it must have.
    fn page(&mut self, id: u64, expected_flags: &[u16]) -> Result<&'a [u8], Error> {
        let page_size = self.meta.page_size_bytes;
        if id < 2 || id >= self.meta.high_water_mark {
            return Err(Error::Corrupt(format!(
                "page {id}: out of bounds (high-water mark {})",
                self.meta.high_water_mark
            )));
        }
        let start = id as usize * page_size;
        let header = &self.bytes[start..start + PAGE_HEADER_BYTES];
        let (stored_id, flags, overflow) = (u64_at(header, 0), u16_at(header, 8), u64::from(u32_at(header, 12)));
        if stored_id != id {
            return Err(Error::Corrupt(format!("page {id}: header names page {stored_id}")));
        }
        if !expected_flags.contains(&flags) {
            return Err(Error::Corrupt(format!("page {id}: unexpected page type flags {flags:#x}")));
        }
        let last = id.checked_add(overflow).filter(|last| *last < self.meta.high_water_mark);
        let Some(last) = last else {
            return Err(Error::Corrupt(format!("page {id}: {overflow} overflow pages pass the high-water mark")));
        };
        for page in id..=last {
            if std::mem::replace(&mut self.used[page as usize], true) {
                return Err(Error::Corrupt(format!("page {page}: multiple references")));
            }
        }
        Ok(&self.bytes[start..(last as usize + 1) * page_size])
    }

    fn read_freelist(&mut self) -> Result<(), Error> {
        let page = self.page(self.meta.freelist_page, &[FREELIST_PAGE_FLAG])?;
        let mut count = usize::from(u16_at(page, 10));
        let mut start = PAGE_HEADER_BYTES;
        if count == usize::from(u16::MAX) {
            let real = page.get(start..start + 8).map(|bytes| u64_at(bytes, 0));
            count = real.and_then(|real| usize::try_from(real).ok()).unwrap_or(usize::MAX);
            start += 8;
        }
        let end = count.checked_mul(8).and_then(|bytes| bytes.checked_add(start)).filter(|end| *end <= page.len());
        let Some(end) = end else {
            return Err(Error::Corrupt(format!("freelist page {}: {count} ids overrun it", self.meta.freelist_page)));
        };
        let mut ids: Vec<u64> = page[start..end].chunks_exact(8).map(|bytes| u64_at(bytes, 0)).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::Corrupt(format!("page {}: already freed", pair[0])));
        }
        if let Some(id) = ids.iter().find(|id| **id < 2 || **id >= self.meta.high_water_mark) {
            return Err(Error::Corrupt(format!("freelist holds page {id}, out of bounds")));
        }
        if let Some(id) = ids.iter().find(|id| self.used[**id as usize]) {
            return Err(Error::Corrupt(format!("page {id}: reachable freed")));
        }
        self.free = ids;
        Ok(())
    }

    /// A bucket stored in pages from `root_page`.
    fn read_tree_bucket(&mut self, root_page: u64, nesting: usize) -> Result<Bucket, Error> {
        let mut bucket = Bucket::default();
        self.read_tree(root_page, 0, nesting, &mut bucket)?;
        Ok(bucket)
    }

    fn read_tree(&mut self, id: u64, depth: usize, nesting: usize, bucket: &mut Bucket) -> Result<(), Error> {
        if depth > DEPTH_MAX {
            return Err(Error::Corrupt(format!("page {id}: B+tree deeper than {DEPTH_MAX} levels")));
        }
        if self.free.binary_search(&id).is_ok() {
            return Err(Error::Corrupt(format!("page {id}: reachable freed")));
        }
        let page = self.page(id, &[BRANCH_PAGE_FLAG, LEAF_PAGE_FLAG])?;
        let label = format!("page {id}");
        if u16_at(page, 8) == LEAF_PAGE_FLAG {
            return self.read_leaf(page, &label, nesting, bucket);
        }
        for index in 0..usize::from(u16_at(page, 10)) {
            let offset = element_offset(page, index, &label)?;
            let child = u64_at(page, offset + 8);
            self.read_tree(child, depth + 1, nesting, bucket)?;
        }
        Ok(())
    }

    /// Adds a leaf page's entries (the page may be an inline bucket's) to `bucket`.
    fn read_leaf(&mut self, page: &[u8], label: &str, nesting: usize, bucket: &mut Bucket) -> Result<(), Error> {
        for index in 0..usize::from(u16_at(page, 10)) {
            let offset = element_offset(page, index, label)?;
            let flags = u32_at(page, offset);
            let (position, key_bytes, value_bytes) = (
                u32_at(page, offset + 4) as usize,
                u32_at(page, offset + 8) as usize,
                u32_at(page, offset + 12) as usize,
            );
            let key_start = offset + position;
            let value_end = key_start.checked_add(key_bytes).and_then(|end| end.checked_add(value_bytes));
            let Some(value_end) = value_end.filter(|end| *end <= page.len()) else {
                return Err(Error::Corrupt(format!("{label}: element {index} points past the page")));
            };
            let key = page[key_start..key_start + key_bytes].to_vec();
            let value = &page[key_start + key_bytes..value_end];
            if bucket.entries.last().is_some_and(|(last, _)| *last >= key) {
                return Err(Error::Corrupt(format!("{label}: keys out of order at element {index}")));
            }
            let entry = if flags & BUCKET_LEAF_FLAG != 0 {
                Entry::Bucket(self.read_nested_bucket(value, &key, nesting + 1)?)
            } else {
                Entry::Value(value.to_vec())
            };
            bucket.entries.push((key, entry));
        }
        Ok(())
    }

    /// A nested bucket from its value in the parent: pages of its own or inline.
    fn read_nested_bucket(&mut self, value: &[u8], name: &[u8], nesting: usize) -> Result<Bucket, Error> {
        let name = String::from_utf8_lossy(name);
        if nesting > DEPTH_MAX {
            return Err(Error::Corrupt(format!("bucket {name:?}: nested deeper than {DEPTH_MAX}")));
        }
        if value.len() < BUCKET_HEADER_BYTES {
            return Err(Error::Corrupt(format!("bucket {name:?}: header of {} bytes", value.len())));
        }
        let root_page = u64_at(value, 0);
        if root_page != 0 {
            return self.read_tree_bucket(root_page, nesting);
        }
        let inline = &value[BUCKET_HEADER_BYTES..];
        let label = format!("inline bucket {name:?}");
        if inline.len() < PAGE_HEADER_BYTES || u16_at(inline, 8) != LEAF_PAGE_FLAG {
            return Err(Error::Corrupt(format!("{label}: not a leaf page")));
        }
        let mut bucket = Bucket::default();
        self.read_leaf(inline, &label, nesting, &mut bucket)?;
        Ok(bucket)
    }
}

/// Byte offset of element `index` of a leaf or branch page, checked to lie inside it.
fn element_offset(page: &[u8], index: usize, label: &str) -> Result<usize, Error> {
    let offset = PAGE_HEADER_BYTES + index * ELEMENT_BYTES;
    if offset + ELEMENT_BYTES > page.len() {
        return Err(Error::Corrupt(format!("{label}: element {index} lies past the page")));
    }
    Ok(offset)
}
