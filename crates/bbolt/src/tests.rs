use crate::{read_database, write_database, Bucket, Entry, Error, PAGE_SIZE_BYTES};

fn values(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Bucket {
    Bucket { entries: pairs.into_iter().map(|(key, value)| (key, Entry::Value(value))).collect() }
}

fn sample() -> Bucket {
    let many = values((0..5000_u32).map(|index| (index.to_be_bytes().to_vec(), format!("value {index}").into_bytes())));
    let huge = values([(b"a".to_vec(), vec![7_u8; 3 * PAGE_SIZE_BYTES + 5]), (b"b".to_vec(), b"small".to_vec())]);
    let nested = Bucket {
        entries: vec![
            (b"child".to_vec(), Entry::Bucket(values([(b"x".to_vec(), b"y".to_vec())]))),
            (b"plain".to_vec(), Entry::Value(b"v".to_vec())),
        ],
    };
    Bucket {
        entries: vec![
            (b"empty".to_vec(), Entry::Bucket(Bucket::default())),
            (b"huge".to_vec(), Entry::Bucket(huge)),
            (b"many".to_vec(), Entry::Bucket(many)),
            (b"nested".to_vec(), Entry::Bucket(nested)),
        ],
    }
}

#[test]
fn written_files_read_back_identical() {
    let root = sample();
    let bytes = write_database(&root);
    assert_eq!(bytes.len() % PAGE_SIZE_BYTES, 0);
    let database = read_database(&bytes).unwrap();
    assert_eq!(database.root, root);
    assert_eq!(database.size_bytes(), bytes.len() as u64);
    assert_eq!(database.free_pages, 0);
    assert_eq!(database.root.bucket(b"many").unwrap().value(&42_u32.to_be_bytes()), Some(&b"value 42"[..]));
    assert!(database.root.bucket(b"missing").is_none());
}

#[test]
fn an_empty_database_is_valid() {
    let bytes = write_database(&Bucket::default());
    assert_eq!(bytes.len(), 4 * PAGE_SIZE_BYTES, "two meta pages, the root leaf, the freelist");
    assert_eq!(read_database(&bytes).unwrap().root, Bucket::default());
}

#[test]
fn truncated_files_are_refused() {
    let bytes = write_database(&sample());
    let error = read_database(&bytes[..bytes.len() - PAGE_SIZE_BYTES]).unwrap_err();
    assert!(matches!(error, Error::Truncated { .. }), "{error}");
    assert!(matches!(read_database(&bytes[..100]).unwrap_err(), Error::Truncated { .. }));
    assert_eq!(read_database(b"").unwrap_err(), Error::NotBbolt);
}

#[test]
fn foreign_and_damaged_meta_pages_are_refused() {
    let bytes = write_database(&sample());
    assert_eq!(read_database(&vec![0x5a; bytes.len()]).unwrap_err(), Error::NotBbolt);
    let mut one_meta_damaged = bytes.clone();
    one_meta_damaged[16 + 20] ^= 0xff; // meta 0's root page
    assert!(read_database(&one_meta_damaged).is_ok(), "meta page 1 is still valid");
    let mut both_damaged = one_meta_damaged.clone();
    both_damaged[PAGE_SIZE_BYTES + 16 + 20] ^= 0xff;
    assert_eq!(read_database(&both_damaged).unwrap_err(), Error::MetaChecksum);
    let mut version = bytes.clone();
    for page in [0, PAGE_SIZE_BYTES] {
        version[page + 16 + 4] = 3;
        let checksum = crate::fnv1a_64(&version[page + 16..page + 16 + 56]);
        version[page + 16 + 56..page + 16 + 64].copy_from_slice(&checksum.to_le_bytes());
    }
    assert_eq!(read_database(&version).unwrap_err(), Error::UnsupportedVersion(3));
}

#[test]
fn damaged_pages_are_refused_not_panicked_on() {
    let bytes = write_database(&sample());
    let pages = bytes.len() / PAGE_SIZE_BYTES;
    for page in 2..pages {
        for offset in [0_usize, 8, 10, 12, 16, 20, 24, 28] {
            let mut damaged = bytes.clone();
            damaged[page * PAGE_SIZE_BYTES + offset] ^= 0x81;
            let _ = read_database(&damaged);
        }
    }
    let mut damaged = bytes.clone();
    damaged[2 * PAGE_SIZE_BYTES] ^= 0x01; // the first data page's id
    let error = read_database(&damaged).unwrap_err();
    assert!(error.to_string().contains("page 2"), "{error}");
}
