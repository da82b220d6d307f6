//! The records of a contact list after its header, read fast: line ends are found with `memchr`, and a line
//! without a quote or a carriage return inside is split at its delimiters without any other work. Such a line
//! reads exactly as the `csv` crate reads it (no quoting, no escaping, no terminator inside), so it is handed
//! on as its bytes ([`Row::Plain`]), which a rewrite copies as they are. Any other record (a quote, a bare
//! `\r`, a quoted line break spanning lines) is read by `csv_core` with the settings of the `csv` reader the
//! store used before, so messy lists read exactly as they did ([`Row::Parsed`]). Empty lines are skipped, as the
//! `csv` reader skips them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// How much of a list is read at a time (grown when one record is longer).
const CHUNK: usize = 1 << 20;

/// One record of a list.
pub(super) enum Row<'a> {
    /// A line read as it is: its bytes without the line end, and the positions of its delimiters.
    Plain { line: &'a [u8], cuts: &'a [usize] },
    /// A record the CSV parser read (quotes, carriage returns).
    Parsed(&'a csv::ByteRecord),
}

impl<'a> Row<'a> {
    /// The number of cells.
    pub(super) fn len(&self) -> usize {
        match self {
            Row::Plain { cuts, .. } => cuts.len() + 1,
            Row::Parsed(record) => record.len(),
        }
    }

    /// Cell `i`, if the record has it.
    pub(super) fn get(&self, i: usize) -> Option<&'a [u8]> {
        match *self {
            Row::Plain { line, cuts } => {
                if i > cuts.len() {
                    return None;
                }
                let start = if i == 0 { 0 } else { cuts[i - 1] + 1 };
                let end = cuts.get(i).copied().unwrap_or(line.len());
                line.get(start..end)
            }
            Row::Parsed(record) => record.get(i),
        }
    }

    /// The cells in order.
    pub(super) fn cells(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The record as the CSV parser reads it.
    #[cfg(test)]
    pub(super) fn to_record(&self) -> csv::ByteRecord {
        match self {
            Row::Plain { .. } => self.cells().collect(),
            Row::Parsed(record) => (*record).clone(),
        }
    }
}

/// Reads the records of one list from a byte offset (just after its header) to its end.
pub(super) struct Lines {
    file: File,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    delimiter: u8,
    cuts: Vec<usize>,
    parser: csv_core::Reader,
    record: csv::ByteRecord,
    fields: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    /// The records of `path` from byte `offset` on, cells separated by `delimiter`.
    pub(super) fn open(path: &Path, offset: u64, delimiter: u8) -> io::Result<Lines> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut parser = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        // The parser strips a byte order mark at the start of what it reads first: a record in the middle of
        // the list is not the start of the file, so it reads one throw-away record first.
        let (mut out, mut ends) = ([0u8; 4], [0usize; 4]);
        parser.read_record(b"x\n", &mut out, &mut ends);
        Ok(Lines {
            file,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            eof: false,
            delimiter,
            cuts: Vec::new(),
            parser,
            record: csv::ByteRecord::new(),
            fields: vec![0; 1024],
            ends: vec![0; 64],
        })
    }

    /// Reads more of the file after the unread bytes, moving them to the front (and growing the buffer when
    /// they fill it). False at the end of the file.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// The next record, or `None` at the end of the list.
    pub(super) fn next_row(&mut self) -> io::Result<Option<Row<'_>>> {
        loop {
            let unread = &self.buf[self.start..self.end];
            let (line_end, next) = match memchr::memchr(b'\n', unread) {
                Some(i) => (self.start + i, self.start + i + 1),
                None if !self.eof => {
                    self.fill()?;
                    continue;
                }
                None if unread.is_empty() => return Ok(None),
                None => (self.end, self.end),
            };
            let from = self.start;
            let mut to = line_end;
            if to > from && self.buf[to - 1] == b'\r' {
                to -= 1;
            }
            if to == from {
                self.start = next;
                continue;
            }
            if memchr::memchr2(b'"', b'\r', &self.buf[from..to]).is_some() {
                return self.parse();
            }
            self.start = next;
            let line = &self.buf[from..to];
            self.cuts.clear();
            self.cuts.extend(memchr::memchr_iter(self.delimiter, line));
            return Ok(Some(Row::Plain {
                line,
                cuts: &self.cuts,
            }));
        }
    }

    /// Reads one record from the unread bytes with the CSV parser.
    fn parse(&mut self) -> io::Result<Option<Row<'_>>> {
        use csv_core::ReadRecordResult as R;
        let (mut nout, mut nends) = (0, 0);
        // At the end of the file the parser is given no input, and ends the record it holds.
        let mut at_end = false;
        loop {
            let input = if at_end {
                &[][..]
            } else {
                &self.buf[self.start..self.end]
            };
            let (result, nin, o, e) =
                self.parser
                    .read_record(input, &mut self.fields[nout..], &mut self.ends[nends..]);
            self.start += nin;
            nout += o;
            nends += e;
            match result {
                R::InputEmpty if at_end => break,
                R::InputEmpty => at_end = !self.fill()? && self.start == self.end,
                R::OutputFull => {
                    let len = self.fields.len();
                    self.fields.resize(len * 2, 0);
                }
                R::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                R::Record => break,
                R::End if nends == 0 => return Ok(None),
                R::End => break,
            }
        }
        self.record.clear();
        let mut from = 0;
        for &to in &self.ends[..nends] {
            self.record.push_field(&self.fields[from..to]);
            from = to;
        }
        Ok(Some(Row::Parsed(&self.record)))
    }
}

#[cfg(test)]
mod tests {
    use super::{Lines, Row};
    use proptest::prelude::*;

    /// Every record of `data` after its header, as the `csv` reader reads it and as [`Lines`] reads it.
    fn both(data: &[u8], delimiter: u8) -> (Vec<csv::ByteRecord>, Vec<csv::ByteRecord>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("list.csv");
        std::fs::write(&path, data).expect("write");
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_path(&path)
            .expect("open");
        reader.byte_headers().expect("header");
        let offset = reader.position().byte();
        let want = reader
            .byte_records()
            .collect::<Result<Vec<_>, _>>()
            .expect("csv");
        let mut lines = Lines::open(&path, offset, delimiter).expect("open");
        let mut got = Vec::new();
        while let Some(row) = lines.next_row().expect("read") {
            if let Row::Plain { line, .. } = &row {
                // A rewrite copies the line with its line end: what the CSV writer would write for it.
                let mut writer = csv::WriterBuilder::new()
                    .delimiter(delimiter)
                    .terminator(csv::Terminator::CRLF)
                    .flexible(true)
                    .from_writer(Vec::new());
                writer.write_byte_record(&row.to_record()).expect("write");
                let written = writer.into_inner().expect("flush");
                assert_eq!(written, [line, &b"\r\n"[..]].concat());
            }
            got.push(row.to_record());
        }
        (want, got)
    }

    #[test]
    fn messy_lists_read_as_the_csv_reader_reads_them() {
        for data in [
            &b"h1,h2\na,b\n"[..],
            b"h1,h2\r\na,b\r\n\r\nc,\"d\r\ne\"\r\nf,g",
            b"\xEF\xBB\xBFh1,h2\n\xEF\xBB\xBFa,\"b\"\n",
            b"h1,h2\na\rb,c\n\n\n,\n",
            b"h1,h2\n\"a\"\"b\",\"c\n\nd\"\n\"unterminated,x\ny",
            b"h1\n",
            b"h1",
            b"",
            b"h1,h2\na,\xFF\xFE\n",
            ",".repeat(200).as_bytes(),
            format!("h\n\"{}\n", ",".repeat(200)).as_bytes(),
            format!("h\n\"a\"{}", ",".repeat(200)).as_bytes(),
        ] {
            let (want, got) = both(data, b',');
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn records_longer_than_a_chunk() {
        let long = "x".repeat(super::CHUNK * 2 + 7);
        let data = format!("h1,h2\n{long},\"{long}\n{long}\"\nend,{long}\n");
        let (want, got) = both(data.as_bytes(), b',');
        assert_eq!(got.len(), 2);
        assert_eq!(got, want);
    }

    proptest! {
        #[test]
        fn any_list_reads_as_the_csv_reader_reads_it(
            body in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'1', b',', b';', b'"', b'\r', b'\n', b' ', 0xC3, 0xA9, 0xFF]),
                0..400,
            ),
            semicolon in any::<bool>(),
        ) {
            let delimiter = if semicolon { b';' } else { b',' };
            let mut data = b"h1,h2;h3\n".to_vec();
            data.extend(body);
            let (want, got) = both(&data, delimiter);
            prop_assert_eq!(got, want);
        }
    }
}
