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
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => std::borrow::Cow::Owned(format!("'{cell}")),
        _ => std::borrow::Cow::Borrowed(cell),
    }
}

/// Appends one cell, quoted when it holds a comma, a quote or a line break (RFC 4180).
pub fn push_cell(out: &mut String, cell: &str) {
    if cell.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push('"');
        for ch in cell.chars() {
            if ch == '"' {
                out.push('"');
            }
            out.push(ch);
        }
        out.push('"');
    } else {
        out.push_str(cell);
    }
}

/// Appends one record: every cell neutralized and quoted as needed, ended with CRLF.
pub fn push_record<'a>(out: &mut String, cells: impl IntoIterator<Item = &'a str>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_cell(out, &neutralize(cell));
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
    fn header_is_the_original_systems() {
        let mut out = String::new();
        push_record(&mut out, EXPORT_HEADER);
        assert_eq!(
            out,
            "id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status\r\n"
        );
    }
}
