//! Memory sizes as operators write them (`--memory 16GiB`) and as PostgreSQL reads them
//! (`shared_buffers = 4GB`). Units are binary throughout, as PostgreSQL's are: 1 GB = 1 GiB =
//! 1024 MB.

/// Parses a size: a number with an optional unit `B`, `k`/`kB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (case-insensitive, binary multiples). A bare number is bytes.
pub fn parse(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a size (write it as 16GiB, 512MiB, …)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "'{s}': unknown unit '{other}' (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(bytes as u64)
}

/// A size for people: "16.0 GiB", "512.0 MiB".
pub fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// A size in kB as PostgreSQL writes it in postgresql.conf: the largest unit that holds it
/// exactly ("4GB", "16MB", "40329kB").
pub fn pg_kb(kb: u64) -> String {
    if kb > 0 && kb.is_multiple_of(1 << 20) {
        format!("{}GB", kb >> 20)
    } else if kb > 0 && kb.is_multiple_of(1 << 10) {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}kB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse("16GiB"), Ok(16 << 30));
        assert_eq!(parse("16G"), Ok(16 << 30));
        assert_eq!(parse("16gb"), Ok(16 << 30));
        assert_eq!(parse("512MiB"), Ok(512 << 20));
        assert_eq!(parse("1.5G"), Ok(3 << 29));
        assert_eq!(parse("4096"), Ok(4096));
        assert!(parse("lots")
            .expect_err("should fail")
            .contains("not a size"));
        assert!(parse("16XB")
            .expect_err("should fail")
            .contains("unknown unit"));
        assert!(parse("0").is_err());
    }

    #[test]
    fn postgres_sizes_use_the_largest_exact_unit() {
        assert_eq!(pg_kb(4 << 20), "4GB");
        assert_eq!(pg_kb(16 << 10), "16MB");
        assert_eq!(pg_kb(40329), "40329kB");
        assert_eq!(pg_kb(0), "0kB");
    }
}
