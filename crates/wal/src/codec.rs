//! Byte layout of segment headers, record frames, batch records and snapshot files.
//! See `docs/wal-format.md` for the description in prose.

use bytes::Bytes;
use raft::{ConfState, Entry, EntryKind, HardState, Index, Snapshot, SnapshotMeta, Term};

/// First 8 bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"RKVWALSG";
/// First 8 bytes of every snapshot file.
pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"RKVWALSN";
/// The format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of a segment header.
pub(crate) const SEGMENT_HEADER_SIZE_BYTES: usize = 48;
/// Size of a record frame header: payload length, payload CRC, header CRC.
pub(crate) const FRAME_HEADER_SIZE_BYTES: usize = 12;
/// Largest record payload; larger batches are split into several records.
pub(crate) const RECORD_SIZE_BYTES_MAX: usize = 64 << 20;
/// Record kind byte of a batch record (the only kind in format version 1).
const RECORD_KIND_BATCH: u8 = 1;
/// Longest membership list a record may carry (bounds decoding loops).
const CONF_MEMBERS_MAX: usize = 1 << 16;

const FLAG_SNAPSHOT: u8 = 1;
const FLAG_HARD_STATE: u8 = 2;
const FLAG_CONF_STATE: u8 = 4;
const FLAG_TRUNCATES: u8 = 8;
const FLAGS_KNOWN: u8 = FLAG_SNAPSHOT | FLAG_HARD_STATE | FLAG_CONF_STATE | FLAG_TRUNCATES;

/// The identity every file header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    /// Cluster the node belongs to.
    pub cluster_id: u64,
    /// The node.
    pub node_id: u64,
}

/// A log position a snapshot replaced the log up to, as written in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotMarker {
    /// Snapshot index.
    pub index: Index,
    /// Snapshot term.
    pub term: Term,
    /// Membership at the snapshot.
    pub conf: ConfState,
    /// True: entries after `index` stay (compaction, or a snapshot matching the log).
    /// False: the whole log is replaced.
    pub keep_suffix: bool,
}

/// One decoded record: what one atomic write changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// A snapshot now stands for the log up to its index (applied first).
    pub snapshot_marker: Option<SnapshotMarker>,
    /// New membership (applied after the snapshot).
    pub conf_state: Option<ConfState>,
    /// True when the first entry replaces a stored suffix (conflict truncation).
    pub truncates: bool,
    /// Entries, contiguous (applied after the membership).
    pub entries: Vec<Entry>,
    /// New hard state (applied last).
    pub hard_state: Option<HardState>,
}

impl Record {
    /// The record as borrowed parts.
    pub(crate) fn parts(&self) -> RecordParts<'_> {
        // `decode_record` refuses a truncation without entries (an error, not this panic).
        assert!(!self.truncates || !self.entries.is_empty(), "a decoded record truncates only with entries");
        RecordParts {
            snapshot_marker: self.snapshot_marker.as_ref(),
            conf_state: self.conf_state.as_ref(),
            truncates: self.truncates,
            entries: &self.entries,
            hard_state: self.hard_state,
        }
    }
}

/// Why bytes could not be decoded (offset relative to the start of the decoded slice).
#[derive(Debug)]
pub(crate) struct DecodeError {
    /// Offset of the field that failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

/// Reads little-endian fields from a slice, failing instead of panicking.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    /// Bytes consumed. Invariant: `position <= bytes.len()` (every read checks its length
    /// against what is left first).
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, DecodeError> {
        // The offset reported to the operator is inside the decoded bytes.
        assert!(self.position <= self.bytes.len(), "the reader never passes the end");
        Err(DecodeError { offset: self.position, reason: reason.into() })
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() - self.position < length {
            return self.fail(format!("needs {length} more bytes, {} left", self.bytes.len() - self.position));
        }
        let slice = &self.bytes[self.position..self.position + length];
        self.position += length;
        assert!(self.position <= self.bytes.len(), "a read stays inside the slice");
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn remaining_bytes(&self) -> usize {
        assert!(self.position <= self.bytes.len(), "the reader never passes the end");
        self.bytes.len() - self.position
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends the segment header of segment `sequence`.
pub(crate) fn encode_segment_header(identity: FileIdentity, sequence: u64, out: &mut Vec<u8>) {
    assert!(sequence > 0, "segments are numbered from 1");
    let start = out.len();
    out.extend_from_slice(&SEGMENT_MAGIC);
    put_u32(out, FORMAT_VERSION);
    put_u32(out, 0);
    put_u64(out, identity.cluster_id);
    put_u64(out, identity.node_id);
    put_u64(out, sequence);
    put_u32(out, 0);
    let checksum = crc32c::crc32c(&out[start..]);
    put_u32(out, checksum);
    assert_eq!(out.len() - start, SEGMENT_HEADER_SIZE_BYTES, "segment header layout");
}

/// Decodes a segment header; returns the identity and the sequence number.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<(FileIdentity, u64), DecodeError> {
    if bytes.len() < SEGMENT_HEADER_SIZE_BYTES {
        return Err(DecodeError { offset: bytes.len(), reason: "segment shorter than its header".into() });
    }
    let mut reader = Reader::new(&bytes[..SEGMENT_HEADER_SIZE_BYTES]);
    if reader.take(8)? != SEGMENT_MAGIC {
        return Err(DecodeError { offset: 0, reason: "bad magic: not a raftkv WAL segment".into() });
    }
    let stored_checksum = u32::from_le_bytes(bytes[44..48].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..44]) != stored_checksum {
        return Err(DecodeError { offset: 0, reason: "segment header (bytes 0..48) checksum mismatch".into() });
    }
    let version = reader.u32()?;
    if version != FORMAT_VERSION {
        return Err(DecodeError { offset: 8, reason: format!("unsupported format version {version}") });
    }
    reader.u32()?;
    let identity = FileIdentity { cluster_id: reader.u64()?, node_id: reader.u64()? };
    let sequence = reader.u64()?;
    // The layout, not the input: what is left is the reserved word and the checksum.
    assert_eq!(reader.remaining_bytes(), 8, "segment header layout");
    Ok((identity, sequence))
}

/// Appends a frame around the payload that the caller encodes with `encode_payload`.
/// Returns the frame's length.
pub(crate) fn encode_frame(out: &mut Vec<u8>, encode_payload: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_SIZE_BYTES]);
    encode_payload(out);
    let payload_length = out.len() - start - FRAME_HEADER_SIZE_BYTES;
    assert!(payload_length > 0, "empty record payload");
    assert!(payload_length <= RECORD_SIZE_BYTES_MAX, "record of {payload_length} bytes is too large");
    let payload_checksum = crc32c::crc32c(&out[start + FRAME_HEADER_SIZE_BYTES..]);
    out[start..start + 4].copy_from_slice(&(payload_length as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&payload_checksum.to_le_bytes());
    let header_checksum = crc32c::crc32c(&out[start..start + 8]);
    out[start + 8..start + 12].copy_from_slice(&header_checksum.to_le_bytes());
    out.len() - start
}

/// What is found at an offset of a segment.
#[derive(Debug)]
pub(crate) enum FrameRead<'a> {
    /// A frame whose checksums match.
    Valid {
        /// The record payload.
        payload: &'a [u8],
        /// Offset just past the frame.
        next_offset: usize,
    },
    /// The offset is the end of the file.
    End,
    /// No valid frame starts here.
    Invalid {
        /// Why.
        reason: String,
    },
}

/// Reads the frame at `offset` of `bytes`.
pub(crate) fn read_frame(bytes: &[u8], offset: usize) -> FrameRead<'_> {
    assert!(offset <= bytes.len(), "offset past the end");
    let remaining = bytes.len() - offset;
    if remaining == 0 {
        return FrameRead::End;
    }
    if remaining < FRAME_HEADER_SIZE_BYTES {
        return FrameRead::Invalid { reason: format!("short frame header ({remaining} bytes)") };
    }
    let header = &bytes[offset..offset + FRAME_HEADER_SIZE_BYTES];
    let stored_header_checksum = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if crc32c::crc32c(&header[..8]) != stored_header_checksum {
        return FrameRead::Invalid { reason: "frame header checksum mismatch".into() };
    }
    let payload_length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if payload_length == 0 || payload_length > RECORD_SIZE_BYTES_MAX {
        return FrameRead::Invalid { reason: format!("impossible record length {payload_length}") };
    }
    if remaining - FRAME_HEADER_SIZE_BYTES < payload_length {
        return FrameRead::Invalid { reason: "record extends past the end of the file".into() };
    }
    let payload_start = offset + FRAME_HEADER_SIZE_BYTES;
    let payload = &bytes[payload_start..payload_start + payload_length];
    let stored_payload_checksum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(payload) != stored_payload_checksum {
        return FrameRead::Invalid { reason: "record checksum mismatch".into() };
    }
    let next_offset = payload_start + payload_length;
    assert!(next_offset <= bytes.len() && payload.len() <= RECORD_SIZE_BYTES_MAX, "a valid frame is in bounds");
    FrameRead::Valid { payload, next_offset }
}

/// The offset of the first valid frame that starts after `offset`, if any.
/// Linear in the bytes scanned: each candidate offset is first checked by the 4-byte
/// header checksum, so payload checksums are computed only for real frame headers.
pub(crate) fn find_valid_frame_after(bytes: &[u8], offset: usize) -> Option<usize> {
    let last_candidate = bytes.len().checked_sub(FRAME_HEADER_SIZE_BYTES)?;
    let found = (offset + 1..=last_candidate)
        .find(|&candidate| matches!(read_frame(bytes, candidate), FrameRead::Valid { .. }));
    assert!(found.is_none_or(|candidate| candidate > offset), "found after the offset");
    found
}

/// Set in the learners count when a list of outgoing voters (a joint configuration)
/// follows the learners. Records without it (all records of non-joint configurations, and
/// every record written before joint consensus existed) decode as before.
const CONF_OUTGOING_FOLLOWS: u32 = 1 << 31;

fn encode_conf(conf: &ConfState, out: &mut Vec<u8>) {
    let lists = [&conf.voters, &conf.learners, &conf.voters_outgoing];
    assert!(lists.iter().all(|list| list.len() <= CONF_MEMBERS_MAX), "membership too large");
    let joint = !conf.voters_outgoing.is_empty();
    let start = out.len();
    for (position, members) in lists.into_iter().enumerate() {
        let mut count = members.len() as u32;
        if position == 1 && joint {
            count |= CONF_OUTGOING_FOLLOWS;
        }
        if position == 2 && !joint {
            break;
        }
        put_u32(out, count);
        for member in members.iter() {
            put_u64(out, *member);
        }
    }
    assert_eq!(out.len() - start, conf_encoded_size_bytes(conf), "membership layout");
}

/// Encoded size of a membership: a count per list (no outgoing list unless joint), then
/// 8 bytes per member.
pub(crate) fn conf_encoded_size_bytes(conf: &ConfState) -> usize {
    let lists = if conf.voters_outgoing.is_empty() { 2 } else { 3 };
    let members = conf.voters.len() + conf.learners.len() + conf.voters_outgoing.len();
    assert!(members <= 3 * CONF_MEMBERS_MAX, "membership too large");
    4 * lists + 8 * members
}

fn decode_conf(reader: &mut Reader<'_>) -> Result<ConfState, DecodeError> {
    let mut lists = [Vec::new(), Vec::new(), Vec::new()];
    let mut joint = false;
    for (position, list) in lists.iter_mut().enumerate() {
        if position == 2 && !joint {
            break;
        }
        let mut count = reader.u32()?;
        if position == 1 && count & CONF_OUTGOING_FOLLOWS != 0 {
            joint = true;
            count &= !CONF_OUTGOING_FOLLOWS;
        }
        let count = count as usize;
        if count > CONF_MEMBERS_MAX || count * 8 > reader.remaining_bytes() {
            return reader.fail(format!("impossible membership size {count}"));
        }
        for _ in 0..count {
            list.push(reader.u64()?);
        }
    }
    assert!(lists.iter().all(|list| list.len() <= CONF_MEMBERS_MAX), "counts were checked against the bound");
    assert!(joint || lists[2].is_empty(), "outgoing voters are read only when flagged");
    let [voters, learners, voters_outgoing] = lists;
    Ok(ConfState { voters, learners, voters_outgoing })
}

fn entry_kind_code(kind: EntryKind) -> u8 {
    let code = match kind {
        EntryKind::Normal => 0,
        EntryKind::Blank => 1,
        EntryKind::Config => 2,
    };
    assert_eq!(entry_kind_from_code(code), Some(kind), "kind codes round-trip");
    code
}

fn entry_kind_from_code(code: u8) -> Option<EntryKind> {
    match code {
        0 => Some(EntryKind::Normal),
        1 => Some(EntryKind::Blank),
        2 => Some(EntryKind::Config),
        _ => None,
    }
}

/// Encoded size of one entry inside a batch record.
pub(crate) fn encoded_entry_size_bytes(entry: &Entry) -> usize {
    let size_bytes = ENTRY_HEADER_SIZE_BYTES + entry.data.len();
    assert!(size_bytes >= ENTRY_HEADER_SIZE_BYTES, "no overflow");
    size_bytes
}

/// Bytes of an entry's fields before its data: term (8), kind (1), data length (4).
const ENTRY_HEADER_SIZE_BYTES: usize = 8 + 1 + 4;

/// The parts of a batch record, borrowed, for encoding and applying without copies.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecordParts<'a> {
    pub snapshot_marker: Option<&'a SnapshotMarker>,
    pub conf_state: Option<&'a ConfState>,
    pub truncates: bool,
    pub entries: &'a [Entry],
    pub hard_state: Option<HardState>,
}

/// Appends the payload of a batch record.
pub(crate) fn encode_record(parts: &RecordParts<'_>, out: &mut Vec<u8>) {
    let mut flags = 0;
    flags |= if parts.snapshot_marker.is_some() { FLAG_SNAPSHOT } else { 0 };
    flags |= if parts.hard_state.is_some() { FLAG_HARD_STATE } else { 0 };
    flags |= if parts.conf_state.is_some() { FLAG_CONF_STATE } else { 0 };
    flags |= if parts.truncates { FLAG_TRUNCATES } else { 0 };
    assert_eq!(flags & !FLAGS_KNOWN, 0, "only known flags are written");
    assert!(!parts.truncates || !parts.entries.is_empty(), "truncation without entries");
    let start = out.len();
    out.push(RECORD_KIND_BATCH);
    out.push(flags);
    if let Some(marker) = parts.snapshot_marker {
        put_u64(out, marker.index);
        put_u64(out, marker.term);
        out.push(u8::from(marker.keep_suffix));
        encode_conf(&marker.conf, out);
    }
    if let Some(conf) = parts.conf_state {
        encode_conf(conf, out);
    }
    put_u64(out, parts.entries.first().map_or(0, |entry| entry.index));
    put_u32(out, u32::try_from(parts.entries.len()).expect("entry count fits u32"));
    for (position, entry) in parts.entries.iter().enumerate() {
        assert_eq!(entry.index, parts.entries[0].index + position as u64, "entries must be contiguous");
        put_u64(out, entry.term);
        out.push(entry_kind_code(entry.kind));
        put_u32(out, u32::try_from(entry.data.len()).expect("entry fits u32"));
        out.extend_from_slice(&entry.data);
    }
    if let Some(hard_state) = parts.hard_state {
        put_u64(out, hard_state.term);
        put_u64(out, hard_state.vote);
        put_u64(out, hard_state.commit);
    }
    let entry_bytes: usize = parts.entries.iter().map(encoded_entry_size_bytes).sum();
    assert!(out.len() - start >= 2 + 12 + entry_bytes, "kind, flags, entry header and entries");
}

/// Decodes a batch record payload.
pub(crate) fn decode_record(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut reader = Reader::new(payload);
    let kind = reader.u8()?;
    if kind != RECORD_KIND_BATCH {
        return reader.fail(format!("unknown record kind {kind}"));
    }
    let flags = reader.u8()?;
    if flags & !FLAGS_KNOWN != 0 {
        return reader.fail(format!("unknown record flags {flags:#x}"));
    }
    let mut record = Record { truncates: flags & FLAG_TRUNCATES != 0, ..Record::default() };
    if flags & FLAG_SNAPSHOT != 0 {
        let (index, term) = (reader.u64()?, reader.u64()?);
        let keep_suffix = match reader.u8()? {
            0 => false,
            1 => true,
            other => return reader.fail(format!("bad keep-suffix flag {other}")),
        };
        record.snapshot_marker = Some(SnapshotMarker { index, term, conf: decode_conf(&mut reader)?, keep_suffix });
    }
    if flags & FLAG_CONF_STATE != 0 {
        record.conf_state = Some(decode_conf(&mut reader)?);
    }
    record.entries = decode_entries(&mut reader)?;
    if record.truncates && record.entries.is_empty() {
        return reader.fail("truncation flag without entries");
    }
    if flags & FLAG_HARD_STATE != 0 {
        record.hard_state = Some(HardState { term: reader.u64()?, vote: reader.u64()?, commit: reader.u64()? });
    }
    if reader.remaining_bytes() != 0 {
        return reader.fail(format!("{} trailing bytes in record", reader.remaining_bytes()));
    }
    assert!(!record.truncates || !record.entries.is_empty(), "checked above");
    let present = (record.snapshot_marker.is_some(), record.conf_state.is_some(), record.hard_state.is_some());
    let flagged = (flags & FLAG_SNAPSHOT != 0, flags & FLAG_CONF_STATE != 0, flags & FLAG_HARD_STATE != 0);
    assert_eq!(present, flagged, "a part is decoded exactly when its flag is set");
    Ok(record)
}

fn decode_entries(reader: &mut Reader<'_>) -> Result<Vec<Entry>, DecodeError> {
    let first_index = reader.u64()?;
    let count = reader.u32()? as usize;
    // Each entry takes at least 13 bytes: this bounds the loop and the allocation.
    if count > reader.remaining_bytes() / ENTRY_HEADER_SIZE_BYTES {
        return reader.fail(format!("impossible entry count {count}"));
    }
    if count > 0 && first_index == 0 {
        return reader.fail("entry index 0");
    }
    assert!(count == 0 || first_index > 0, "checked above");
    let mut entries = Vec::with_capacity(count);
    for position in 0..count as u64 {
        let term = reader.u64()?;
        let kind_code = reader.u8()?;
        let Some(kind) = entry_kind_from_code(kind_code) else {
            return reader.fail(format!("unknown entry kind {kind_code}"));
        };
        let length = reader.u32()? as usize;
        let data = Bytes::copy_from_slice(reader.take(length)?);
        entries.push(Entry { term, index: first_index + position, kind, data });
    }
    assert_eq!(entries.len(), count, "as many entries as announced (each read checked)");
    Ok(entries)
}

/// Encodes a whole snapshot file: header, metadata, data, trailing checksum.
#[cfg(test)]
pub(crate) fn encode_snapshot_file(identity: FileIdentity, snapshot: &Snapshot) -> Vec<u8> {
    let header = snapshot_file_header(identity, &snapshot.meta, snapshot.data.len() as u64);
    let checksum = crc32c::crc32c_append(crc32c::crc32c(&header), &snapshot.data);
    [header.as_slice(), &snapshot.data, &checksum.to_le_bytes()].concat()
}

/// The header of a snapshot file whose data is `data_length_bytes` long. The file goes on
/// with the data and ends with the CRC32C (little-endian) of header and data.
pub(crate) fn snapshot_file_header(identity: FileIdentity, meta: &SnapshotMeta, data_length_bytes: u64) -> Vec<u8> {
    assert!(meta.index > 0, "a snapshot at index 0 has no file");
    let mut header = Vec::with_capacity(128);
    header.extend_from_slice(&SNAPSHOT_MAGIC);
    put_u32(&mut header, FORMAT_VERSION);
    put_u32(&mut header, 0);
    put_u64(&mut header, identity.cluster_id);
    put_u64(&mut header, identity.node_id);
    put_u64(&mut header, meta.index);
    put_u64(&mut header, meta.term);
    encode_conf(&meta.conf, &mut header);
    put_u64(&mut header, data_length_bytes);
    assert_eq!(header.len(), 48 + conf_encoded_size_bytes(&meta.conf) + 8, "snapshot header layout");
    header
}

/// Decodes a snapshot file; checks magic, version and checksum (not the identity).
pub(crate) fn decode_snapshot_file(bytes: &[u8]) -> Result<(FileIdentity, Snapshot), DecodeError> {
    if bytes.len() < 8 + 4 + 4 || bytes[..8] != SNAPSHOT_MAGIC {
        return Err(DecodeError { offset: 0, reason: "bad magic: not a raftkv snapshot file".into() });
    }
    let body_length = bytes.len() - 4;
    assert!(body_length >= 12, "the magic was checked: the body holds it");
    let stored_checksum = u32::from_le_bytes(bytes[body_length..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..body_length]) != stored_checksum {
        return Err(DecodeError { offset: body_length, reason: "snapshot checksum mismatch".into() });
    }
    let mut reader = Reader::new(&bytes[..body_length]);
    reader.take(8)?;
    let version = reader.u32()?;
    if version != FORMAT_VERSION {
        return reader.fail(format!("unsupported format version {version}"));
    }
    reader.u32()?;
    let identity = FileIdentity { cluster_id: reader.u64()?, node_id: reader.u64()? };
    let (index, term) = (reader.u64()?, reader.u64()?);
    let conf = decode_conf(&mut reader)?;
    let data_length = reader.u64()?;
    if data_length != reader.remaining_bytes() as u64 {
        return reader.fail(format!("snapshot data length {data_length} does not match the file"));
    }
    let data = Bytes::copy_from_slice(reader.take(data_length as usize)?);
    assert_eq!(reader.remaining_bytes(), 0, "the data runs to the checksum (length checked above)");
    Ok((identity, Snapshot { meta: SnapshotMeta { index, term, conf }, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(term: Term, index: Index, data: &'static [u8]) -> Entry {
        Entry { term, index, kind: EntryKind::Normal, data: Bytes::from_static(data) }
    }

    #[test]
    fn record_round_trip() {
        let marker = SnapshotMarker {
            index: 4,
            term: 2,
            conf: ConfState { voters: vec![1, 2], learners: vec![3], voters_outgoing: vec![] },
            keep_suffix: true,
        };
        let entries =
            vec![entry(2, 5, b"a"), entry(3, 6, b""), Entry { kind: EntryKind::Config, ..entry(3, 7, b"xyz") }];
        let conf = ConfState { voters: vec![9], learners: vec![], voters_outgoing: vec![] };
        let hard_state = HardState { term: 3, vote: 2, commit: 6 };
        let parts = RecordParts {
            snapshot_marker: Some(&marker),
            conf_state: Some(&conf),
            truncates: true,
            entries: &entries,
            hard_state: Some(hard_state),
        };
        let mut out = Vec::new();
        let frame_length = encode_frame(&mut out, |buffer| encode_record(&parts, buffer));
        assert_eq!(frame_length, out.len());
        let FrameRead::Valid { payload, next_offset } = read_frame(&out, 0) else { panic!("frame must be valid") };
        assert_eq!(next_offset, out.len());
        let record = decode_record(payload).unwrap();
        let expected = Record {
            snapshot_marker: Some(marker),
            conf_state: Some(conf),
            truncates: true,
            entries,
            hard_state: Some(hard_state),
        };
        assert_eq!(record, expected);
    }

    #[test]
    fn flipped_byte_invalidates_frame() {
        let entries = vec![entry(1, 1, b"hello")];
        let parts = RecordParts {
            snapshot_marker: None,
            conf_state: None,
            truncates: false,
            entries: &entries,
            hard_state: None,
        };
        let mut out = Vec::new();
        encode_frame(&mut out, |buffer| encode_record(&parts, buffer));
        for position in 0..out.len() {
            let mut damaged = out.clone();
            damaged[position] ^= 0x10;
            assert!(matches!(read_frame(&damaged, 0), FrameRead::Invalid { .. }), "flip at {position} undetected");
        }
    }

    #[test]
    fn snapshot_file_round_trip_and_damage() {
        let identity = FileIdentity { cluster_id: 7, node_id: 3 };
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index: 9,
                term: 4,
                conf: ConfState { voters: vec![1], learners: vec![], voters_outgoing: vec![] },
            },
            data: Bytes::from_static(b"state"),
        };
        let mut bytes = encode_snapshot_file(identity, &snapshot);
        assert_eq!(decode_snapshot_file(&bytes).unwrap(), (identity, snapshot));
        bytes[20] ^= 1;
        assert!(decode_snapshot_file(&bytes).is_err());
    }

    #[test]
    fn joint_membership_round_trips_and_plain_membership_keeps_its_old_bytes() {
        let plain = ConfState { voters: vec![1, 2], learners: vec![3], voters_outgoing: vec![] };
        let mut plain_bytes = Vec::new();
        encode_conf(&plain, &mut plain_bytes);
        let mut old_format = Vec::new();
        for list in [&[1u64, 2][..], &[3][..]] {
            put_u32(&mut old_format, list.len() as u32);
            list.iter().for_each(|member| put_u64(&mut old_format, *member));
        }
        assert_eq!(plain_bytes, old_format, "records written before joint consensus still decode");
        let joint = ConfState { voters: vec![3, 4, 5], learners: vec![7], voters_outgoing: vec![1, 2, 3] };
        for conf in [plain, joint] {
            let mut bytes = Vec::new();
            encode_conf(&conf, &mut bytes);
            let mut reader = Reader::new(&bytes);
            assert_eq!(decode_conf(&mut reader).unwrap(), conf);
            assert_eq!(reader.remaining_bytes(), 0);
        }
    }

    #[test]
    fn segment_header_round_trip() {
        let identity = FileIdentity { cluster_id: 1, node_id: 2 };
        let mut out = Vec::new();
        encode_segment_header(identity, 5, &mut out);
        assert_eq!(decode_segment_header(&out).unwrap(), (identity, 5));
        out[30] ^= 4;
        assert!(decode_segment_header(&out).is_err());
    }
}

/// Seeded fuzzing of the decoders (stable Rust, runs in CI): arbitrary bytes and mutated
/// valid encodings never panic a decoder. `RAFTKV_FUZZ_CASES=N` sets the case count.
#[cfg(test)]
mod fuzz_tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn cases() -> u64 {
        std::env::var("RAFTKV_FUZZ_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(3_000)
    }

    /// A valid record frame with random parts.
    fn valid_frame(rng: &mut ChaCha8Rng) -> Vec<u8> {
        let first_index = rng.gen_range(1..1_000u64);
        let entries: Vec<Entry> = (0..rng.gen_range(0..4u64))
            .map(|offset| Entry {
                term: rng.gen_range(1..5),
                index: first_index + offset,
                kind: [EntryKind::Normal, EntryKind::Blank, EntryKind::Config][rng.gen_range(0..3)],
                data: (0..rng.gen_range(0..20)).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>().into(),
            })
            .collect();
        let conf = ConfState { voters: vec![1, 2, 3], learners: vec![4], voters_outgoing: vec![] };
        let marker = SnapshotMarker { index: first_index - 1, term: 1, conf: conf.clone(), keep_suffix: rng.gen() };
        let parts = RecordParts {
            snapshot_marker: rng.gen::<bool>().then_some(&marker),
            conf_state: rng.gen::<bool>().then_some(&conf),
            truncates: !entries.is_empty() && rng.gen(),
            entries: &entries,
            hard_state: rng.gen::<bool>().then_some(HardState { term: 4, vote: 2, commit: first_index }),
        };
        let mut out = Vec::new();
        encode_frame(&mut out, |buffer| encode_record(&parts, buffer));
        out
    }

    fn mutate(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
        for _ in 0..rng.gen_range(1..4) {
            match rng.gen_range(0..4) {
                0 if !bytes.is_empty() => {
                    let position = rng.gen_range(0..bytes.len());
                    bytes[position] ^= 1 << rng.gen_range(0..8);
                }
                1 => bytes.truncate(rng.gen_range(0..=bytes.len())),
                2 => bytes.extend((0..rng.gen_range(1..16)).map(|_| rng.gen::<u8>())),
                _ if !bytes.is_empty() => {
                    let position = rng.gen_range(0..bytes.len());
                    bytes[position] = [0, 0xff, 0x7f, 0x80][rng.gen_range(0..4)];
                }
                _ => {}
            }
        }
    }

    /// Runs every decoder over `bytes`; none may panic.
    fn decode_everything(bytes: &[u8]) {
        let _ = decode_record(bytes);
        let _ = decode_segment_header(bytes);
        let _ = decode_snapshot_file(bytes);
        let mut offset = 0;
        for _ in 0..bytes.len() + 1 {
            match read_frame(bytes, offset) {
                FrameRead::Valid { payload, next_offset } => {
                    let _ = decode_record(payload);
                    offset = next_offset;
                }
                FrameRead::End => break,
                FrameRead::Invalid { .. } => match find_valid_frame_after(bytes, offset) {
                    Some(next) => offset = next,
                    None => break,
                },
            }
        }
    }

    #[test]
    fn decoders_survive_arbitrary_and_mutated_bytes() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        for _ in 0..cases() {
            let mut bytes = match rng.gen_range(0..3) {
                0 => (0..rng.gen_range(0..200)).map(|_| rng.gen::<u8>()).collect(),
                1 => {
                    let mut frames = valid_frame(&mut rng);
                    frames.extend(valid_frame(&mut rng));
                    frames
                }
                _ => {
                    let identity = FileIdentity { cluster_id: 5, node_id: 3 };
                    let mut header = Vec::new();
                    encode_segment_header(identity, rng.gen_range(1..10), &mut header);
                    header.extend(valid_frame(&mut rng));
                    header
                }
            };
            mutate(&mut rng, &mut bytes);
            decode_everything(&bytes);
            // A frame's payload decoded with its checksum bypassed: the record decoder
            // alone must refuse garbage cleanly.
            if bytes.len() > FRAME_HEADER_SIZE_BYTES {
                let _ = decode_record(&bytes[FRAME_HEADER_SIZE_BYTES..]);
            }
        }
    }
}
