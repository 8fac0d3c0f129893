//! Bulk building of a bbolt file from sorted buckets.

use crate::{
    Bucket, Entry, BRANCH_PAGE_FLAG, BUCKET_HEADER_BYTES, BUCKET_LEAF_FLAG, ELEMENT_BYTES, FREELIST_PAGE_FLAG,
    LEAF_PAGE_FLAG, MAGIC, META_CHECKSUMMED_BYTES, META_PAGE_FLAG, PAGE_HEADER_BYTES, PAGE_SIZE_BYTES, VERSION,
};

/// Transaction id of meta page 0; meta page 1 gets the next one (so it is the current one).
const META_TXID_FIRST: u64 = 2;

/// One element to put in a page: key, value (empty for branch elements), leaf flags and,
/// for branch elements, the child page.
struct Element<'a> {
    key: &'a [u8],
    value: std::borrow::Cow<'a, [u8]>,
    flags: u32,
    child: u64,
}

impl Element<'_> {
    fn size_bytes(&self) -> usize {
        ELEMENT_BYTES + self.key.len() + self.value.len()
    }
}

/// Builds a bbolt file holding `root`'s entries (usually the top-level buckets; a
/// top-level plain value is not something bbolt allows, so `root` must hold buckets only).
///
/// Every bucket gets its own pages (none inline), leaves and branches are packed as full
/// as a page allows, entries larger than a page get overflow pages, the freelist is
/// empty. Panics if keys of a bucket are not strictly ascending or `root` holds a value.
pub fn write_database(root: &Bucket) -> Vec<u8> {
    assert!(
        root.entries.iter().all(|(_, entry)| matches!(entry, Entry::Bucket(_))),
        "bbolt keeps only buckets at the top level"
    );
    let mut out = vec![0_u8; 2 * PAGE_SIZE_BYTES];
    let root_page = write_bucket(&mut out, root);
    let freelist_page = page_count(&out);
    write_page(&mut out, FREELIST_PAGE_FLAG, &[]);
    let high_water_mark = page_count(&out);
    for (index, txid) in [(0_u64, META_TXID_FIRST), (1, META_TXID_FIRST + 1)] {
        let page = &mut out[index as usize * PAGE_SIZE_BYTES..(index as usize + 1) * PAGE_SIZE_BYTES];
        write_meta(page, index, root_page, freelist_page, high_water_mark, txid);
    }
    assert_eq!(out.len() as u64, high_water_mark * PAGE_SIZE_BYTES as u64, "the file ends at the high-water mark");
    out
}

fn page_count(out: &[u8]) -> u64 {
    assert_eq!(out.len() % PAGE_SIZE_BYTES, 0, "pages are whole");
    (out.len() / PAGE_SIZE_BYTES) as u64
}

fn write_meta(page: &mut [u8], id: u64, root_page: u64, freelist_page: u64, high_water_mark: u64, txid: u64) {
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&META_PAGE_FLAG.to_le_bytes());
    let meta = &mut page[PAGE_HEADER_BYTES..];
    meta[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    meta[4..8].copy_from_slice(&VERSION.to_le_bytes());
    meta[8..12].copy_from_slice(&(PAGE_SIZE_BYTES as u32).to_le_bytes());
    meta[12..16].copy_from_slice(&0_u32.to_le_bytes());
    meta[16..24].copy_from_slice(&root_page.to_le_bytes());
    meta[24..32].copy_from_slice(&0_u64.to_le_bytes());
    meta[32..40].copy_from_slice(&freelist_page.to_le_bytes());
    meta[40..48].copy_from_slice(&high_water_mark.to_le_bytes());
    meta[48..56].copy_from_slice(&txid.to_le_bytes());
    let checksum = crate::fnv1a_64(&meta[..META_CHECKSUMMED_BYTES]);
    meta[56..64].copy_from_slice(&checksum.to_le_bytes());
}

/// Writes `bucket` (nested buckets first) and returns its root page.
fn write_bucket(out: &mut Vec<u8>, bucket: &Bucket) -> u64 {
    let mut elements = Vec::with_capacity(bucket.entries.len());
    for (index, (key, entry)) in bucket.entries.iter().enumerate() {
        if index > 0 {
            assert!(bucket.entries[index - 1].0 < *key, "bucket keys are strictly ascending");
        }
        let element = match entry {
            Entry::Value(value) => Element { key, value: value.as_slice().into(), flags: 0, child: 0 },
            Entry::Bucket(child) => {
                let child_root = write_bucket(out, child);
                let mut header = vec![0_u8; BUCKET_HEADER_BYTES];
                header[0..8].copy_from_slice(&child_root.to_le_bytes());
                Element { key, value: header.into(), flags: BUCKET_LEAF_FLAG, child: 0 }
            }
        };
        elements.push(element);
    }
    write_tree(out, elements)
}

/// Writes the leaves holding `elements`, then branch levels until one page is left;
/// returns that root page.
fn write_tree(out: &mut Vec<u8>, elements: Vec<Element<'_>>) -> u64 {
    let mut level = write_level(out, LEAF_PAGE_FLAG, &elements);
    while level.len() > 1 {
        let branch: Vec<Element<'_>> =
            level.iter().map(|(key, page)| Element { key, value: (&[][..]).into(), flags: 0, child: *page }).collect();
        level = write_level(out, BRANCH_PAGE_FLAG, &branch);
    }
    match level.pop() {
        Some((_, page)) => page,
        None => write_page(out, LEAF_PAGE_FLAG, &[]),
    }
}

/// Packs `elements` into pages of one level; returns (first key, page) of each page.
fn write_level(out: &mut Vec<u8>, flags: u16, elements: &[Element<'_>]) -> Vec<(Vec<u8>, u64)> {
    let mut pages = Vec::new();
    let mut start = 0;
    while start < elements.len() {
        let mut end = start;
        let mut size_bytes = PAGE_HEADER_BYTES;
        while end < elements.len() && end - start < usize::from(u16::MAX) {
            let next = elements[end].size_bytes();
            if end > start && size_bytes + next > PAGE_SIZE_BYTES {
                break;
            }
            size_bytes += next;
            end += 1;
        }
        let page = write_page(out, flags, &elements[start..end]);
        pages.push((elements[start].key.to_vec(), page));
        start = end;
    }
    pages
}

/// Appends one page (with overflow pages if needed) holding `elements`; returns its id.
fn write_page(out: &mut Vec<u8>, flags: u16, elements: &[Element<'_>]) -> u64 {
    let data_bytes: usize = elements.iter().map(|element| element.key.len() + element.value.len()).sum();
    let size_bytes = PAGE_HEADER_BYTES + elements.len() * ELEMENT_BYTES + data_bytes;
    let pages = size_bytes.div_ceil(PAGE_SIZE_BYTES).max(1);
    let id = page_count(out);
    let start = out.len();
    out.resize(start + pages * PAGE_SIZE_BYTES, 0);
    let page = &mut out[start..];
    let count = u16::try_from(elements.len()).expect("at most u16::MAX elements per page");
    let overflow = u32::try_from(pages - 1).expect("a page spans fewer than 2^32 pages");
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&flags.to_le_bytes());
    page[10..12].copy_from_slice(&count.to_le_bytes());
    page[12..16].copy_from_slice(&overflow.to_le_bytes());
    let mut data_offset = PAGE_HEADER_BYTES + elements.len() * ELEMENT_BYTES;
    for (index, element) in elements.iter().enumerate() {
        let element_offset = PAGE_HEADER_BYTES + index * ELEMENT_BYTES;
        let header = &mut page[element_offset..element_offset + ELEMENT_BYTES];
        let position = u32::try_from(data_offset - element_offset).expect("page offsets fit in u32");
        let key_bytes = u32::try_from(element.key.len()).expect("keys are shorter than 4 GiB");
        if flags == BRANCH_PAGE_FLAG {
            header[0..4].copy_from_slice(&position.to_le_bytes());
            header[4..8].copy_from_slice(&key_bytes.to_le_bytes());
            header[8..16].copy_from_slice(&element.child.to_le_bytes());
        } else {
            let value_bytes = u32::try_from(element.value.len()).expect("values are shorter than 4 GiB");
            header[0..4].copy_from_slice(&element.flags.to_le_bytes());
            header[4..8].copy_from_slice(&position.to_le_bytes());
            header[8..12].copy_from_slice(&key_bytes.to_le_bytes());
            header[12..16].copy_from_slice(&value_bytes.to_le_bytes());
        }
        page[data_offset..data_offset + element.key.len()].copy_from_slice(element.key);
        data_offset += element.key.len();
        page[data_offset..data_offset + element.value.len()].copy_from_slice(&element.value);
        data_offset += element.value.len();
    }
    assert_eq!(data_offset, size_bytes, "elements fill the page as computed");
    id
}
