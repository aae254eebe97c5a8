//! What pgfleet learns from a plain dump as it streams past: the rows of
//! each table (the lines of its `COPY … FROM stdin;` block), so the
//! manifest's row counts are exactly what a restore will load, at no cost
//! beyond reading the bytes once.

use std::collections::BTreeMap;

/// The start of a line kept to recognise a `COPY` header: enough for any
/// table name pg_dump writes.
const HEAD: usize = 1024;

#[derive(Debug, Default)]
pub struct RowCounter {
    /// The current line's first bytes.
    head: Vec<u8>,
    /// The current line's last bytes (to see ` FROM stdin;`).
    tail: Vec<u8>,
    /// The table whose COPY block we are in, and its rows so far.
    copying: Option<(String, u64)>,
    pub tables: BTreeMap<String, u64>,
    /// The tables in the order of their COPY blocks.
    pub order: Vec<String>,
}

impl RowCounter {
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&byte| byte == b'\n') {
            self.push(&rest[..newline]);
            self.end_line();
            rest = &rest[newline + 1..];
        }
        self.push(rest);
    }

    fn push(&mut self, part: &[u8]) {
        if self.head.len() < HEAD {
            let take = part.len().min(HEAD - self.head.len());
            self.head.extend_from_slice(&part[..take]);
        }
        self.tail.extend_from_slice(&part[part.len().saturating_sub(16)..]);
        if self.tail.len() > 16 {
            self.tail.drain(..self.tail.len() - 16);
        }
    }

    fn end_line(&mut self) {
        let head = std::mem::take(&mut self.head);
        let tail = std::mem::take(&mut self.tail);
        match &mut self.copying {
            Some((_, rows)) if head != b"\\." => *rows += 1,
            Some(_) => {
                if let Some((table, rows)) = self.copying.take() {
                    *self.tables.entry(table).or_default() += rows;
                }
            }
            None => {
                if let Some(rest) = head.strip_prefix(b"COPY ")
                    && tail.ends_with(b" FROM stdin;")
                {
                    let table = String::from_utf8_lossy(table_name(rest)).into_owned();
                    self.order.push(table.clone());
                    self.copying = Some((table, 0));
                }
            }
        }
    }
}

/// The table name at the start of a COPY header's rest: up to the first
/// space outside double quotes (pg_dump quotes names that need it).
fn table_name(rest: &[u8]) -> &[u8] {
    let mut quoted = false;
    for (index, &byte) in rest.iter().enumerate() {
        match byte {
            b'"' => quoted = !quoted,
            b' ' if !quoted => return &rest[..index],
            _ => {}
        }
    }
    rest
}

/// The rows the server reports loading, from psql's output (its `COPY n`
/// command tags, one per COPY block, in order), by table.
pub fn loaded_rows(order: &[String], psql_output: &str) -> BTreeMap<String, u64> {
    let tags = psql_output.lines().filter_map(|line| line.strip_prefix("COPY ")?.trim().parse::<u64>().ok());
    let mut rows = BTreeMap::new();
    for (table, count) in order.iter().zip(tags) {
        *rows.entry(table.clone()).or_default() += count;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::RowCounter;

    #[test]
    fn counts_copy_rows_across_chunk_boundaries() {
        let dump = "SET x = 1;\nCOPY public.res_partner (id, name) FROM stdin;\n1\ta\n2\tb\n\\.\n\nCOPY public.empty (id) FROM stdin;\n\\.\nCOPY \"Odd Name\".t (id) FROM stdin;\n7\n\\.\n";
        for size in [1, 2, 3, 7, 64, dump.len()] {
            let mut counter = RowCounter::default();
            for chunk in dump.as_bytes().chunks(size) {
                counter.feed(chunk);
            }
            assert_eq!(counter.tables.get("public.res_partner"), Some(&2), "chunks of {size}");
            assert_eq!(counter.tables.get("public.empty"), Some(&0));
            assert_eq!(counter.tables.get("\"Odd Name\".t"), Some(&1), "quoted names keep their spaces");
            assert_eq!(counter.order, ["public.res_partner", "public.empty", "\"Odd Name\".t"]);
        }
    }
}
