//! Alerts: the document ([`document`]), the JetStream stream that keeps them until forwarded
//! ([`stream`]), and their syslog rendering ([`render`]).
//!
//! Outside `commands/` so that every command can raise one (`alerts send` does; a failed backup
//! or archive could) and the forwarder and `health` can read the same stream.

pub mod document;
pub mod render;
pub mod stream;

/// `bytes` as text, every byte that is not part of valid UTF-8 written as `\xNN` (upper-case
/// hex) so that nothing is lost and the text stays readable. With `json`, the backslash is
/// itself escaped (`\\xNN`), for bytes inside a JSON string.
pub fn escape_invalid_utf8(bytes: &[u8], json: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            if json {
                out.push('\\');
            }
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_bytes_become_visible_escapes() {
        assert_eq!(escape_invalid_utf8(b"a\xffb\xc3\xa9", false), "a\\xFFbé");
        assert_eq!(escape_invalid_utf8(b"\xc3", true), "\\\\xC3");
        assert_eq!(escape_invalid_utf8("plain".as_bytes(), false), "plain");
    }
}
