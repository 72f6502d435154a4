//! RFC 4180 rows of a downloaded report, one at a time from an in-memory body, on csv-core's
//! state machine: quoted fields with embedded commas, doubled quotes and line breaks; `\n`,
//! `\r\n` or `\r` line ends; a UTF-8 BOM and blank lines skipped (as Python's `csv.DictReader`,
//! which bizon uses).

use csv_core::{ReadRecordResult, Reader};

/// The rows of one CSV body, read forward.
pub struct CsvRows {
    body: Vec<u8>,
    /// Bytes of `body` already consumed.
    pos: usize,
    reader: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    /// Records returned so far (the header included), for messages.
    records: u64,
}

impl CsvRows {
    pub fn new(body: Vec<u8>) -> Self {
        CsvRows { body, pos: 0, reader: Reader::new(), out: vec![0; 4096], ends: vec![0; 64], records: 0 }
    }

    /// The next record's fields, `None` at the end; a field that is not UTF-8 is an error naming
    /// the record (1-based, the header is record 1).
    pub fn next_record(&mut self) -> Result<Option<Vec<String>>, String> {
        let (mut nout, mut nend) = (0, 0);
        loop {
            // Once `pos` reaches the end the input is empty, which tells csv-core the data ended.
            let (res, nin, o, e) =
                self.reader.read_record(&self.body[self.pos..], &mut self.out[nout..], &mut self.ends[nend..]);
            self.pos += nin;
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => self.out.resize(self.out.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::End => return Ok(None),
                ReadRecordResult::Record => {
                    self.records += 1;
                    let mut start = 0;
                    let mut fields = Vec::with_capacity(nend);
                    for &end in &self.ends[..nend] {
                        let field = std::str::from_utf8(&self.out[start..end])
                            .map_err(|e| format!("record {} of the CSV is not valid UTF-8 ({e})", self.records))?;
                        fields.push(field.to_owned());
                        start = end;
                    }
                    return Ok(Some(fields));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8]) -> Vec<Vec<String>> {
        let mut rows = CsvRows::new(text.to_vec());
        let mut out = Vec::new();
        while let Some(r) = rows.next_record().unwrap() {
            out.push(r);
        }
        out
    }

    #[test]
    fn rfc4180_quoting_line_ends_bom_and_blank_lines() {
        let text = "\u{feff}a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\"\n\n1,,3\r\"\",plain\"quote,\r\n\"last\",no newline";
        let rows = all(text.as_bytes());
        assert_eq!(
            rows,
            vec![
                vec!["a", "b", "c"],
                vec!["x, y", "say \"hi\"", "two\nlines"],
                vec!["1", "", "3"],
                vec!["", "plain\"quote", ""],
                vec!["last", "no newline"],
            ]
        );
    }

    #[test]
    fn long_fields_and_many_columns_grow_the_buffers() {
        let long = "z".repeat(10_000);
        let header: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
        let text = format!("{}\n\"{long}\"\n", header.join(","));
        let rows = all(text.as_bytes());
        assert_eq!(rows[0], header);
        assert_eq!(rows[1], vec![long]);
    }

    #[test]
    fn invalid_utf8_names_the_record() {
        let mut rows = CsvRows::new(b"a\nok\n\xff\xfe\n".to_vec());
        assert!(rows.next_record().unwrap().is_some());
        assert!(rows.next_record().unwrap().is_some());
        let err = rows.next_record().unwrap_err();
        assert!(err.contains("record 3 of the CSV is not valid UTF-8"), "{err}");
    }

    #[test]
    fn empty_body_has_no_records() {
        assert!(all(b"").is_empty());
        assert!(all(b"\n\n").is_empty());
    }
}
