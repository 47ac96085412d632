//! CSV encoding for exports, with formula-injection neutralized (OWASP "CSV Injection").

/// The original system's export columns.
pub const EXPORT_HEADER: [&str; 8] = [
    "id",
    "doctorId",
    "doctor_name",
    "doctor_email",
    "amount",
    "currency",
    "bankDetails",
    "status",
];

/// Makes a text cell safe for spreadsheets: a cell starting with `=`, `+`, `-`, `@`, tab or carriage
/// return is prefixed with `'` so it is shown as text, never evaluated as a formula.
pub fn neutralize(cell: &str) -> std::borrow::Cow<'_, str> {
    if starts_formula(cell) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// True when a spreadsheet could read `cell` as a formula (see [`neutralize`]).
fn starts_formula(cell: &str) -> bool {
    matches!(cell.as_bytes().first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'))
}

/// True when `cell` must be quoted: it holds a comma, a quote or a line break (RFC 4180).
fn needs_quotes(cell: &str) -> bool {
    cell.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

/// Appends `cell` between quotes, each quote in it doubled.
fn push_quoted(out: &mut String, prefix: &str, cell: &str) {
    out.push('"');
    out.push_str(prefix);
    let mut pieces = cell.split('"');
    if let Some(first) = pieces.next() {
        out.push_str(first);
    }
    for piece in pieces {
        out.push_str("\"\"");
        out.push_str(piece);
    }
    out.push('"');
}

/// Appends one cell, quoted when it holds a comma, a quote or a line break (RFC 4180).
pub fn push_cell(out: &mut String, cell: &str) {
    if needs_quotes(cell) {
        push_quoted(out, "", cell);
    } else {
        out.push_str(cell);
    }
}

/// Appends one cell as [`push_record`] writes it: neutralized, then quoted as needed. The same as
/// `push_cell(out, &neutralize(cell))`, without allocating for a neutralized cell.
pub fn push_field(out: &mut String, cell: &str) {
    // The `'` prefix is never a character that needs quoting, so the cell alone decides.
    let prefix = if starts_formula(cell) { "'" } else { "" };
    if needs_quotes(cell) {
        push_quoted(out, prefix, cell);
    } else {
        out.push_str(prefix);
        out.push_str(cell);
    }
}

/// Appends one record: every cell neutralized and quoted as needed, ended with CRLF.
pub fn push_record<'a>(out: &mut String, cells: impl IntoIterator<Item = &'a str>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, cell);
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralized_and_quotes_escaped() {
        let mut out = String::new();
        push_record(
            &mut out,
            [
                "=HYPERLINK(\"x\")",
                "+1",
                "-2",
                "@SUM(A1)",
                "\tx",
                "\rx",
                "plain",
                "a,b",
                "line\nbreak",
            ],
        );
        assert_eq!(
            out,
            "\"'=HYPERLINK(\"\"x\"\")\",'+1,'-2,'@SUM(A1),'\tx,\"'\rx\",plain,\"a,b\",\"line\nbreak\"\r\n"
        );
    }

    #[test]
    fn push_field_is_push_cell_of_the_neutralized_cell() {
        let cells = [
            "",
            "plain",
            "=1+2",
            "+1",
            "-2",
            "@x",
            "\tx",
            "\rx",
            "a,b",
            "\"",
            "\"\"",
            "say \"hi\"",
            "=\"a\",b",
            "-\"",
            "line\nbreak",
            "\r\n",
            "'quoted'",
            "Nairobi – café ✓",
            "{\"a\":\"b\"}",
        ];
        for cell in cells {
            let (mut fast, mut slow) = (String::new(), String::new());
            push_field(&mut fast, cell);
            push_cell(&mut slow, &neutralize(cell));
            assert_eq!(fast, slow, "{cell:?}");
        }
    }

    #[test]
    fn header_is_the_original_systems() {
        let mut out = String::new();
        push_record(&mut out, EXPORT_HEADER);
        assert_eq!(
            out,
            "id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status\r\n"
        );
    }
}
