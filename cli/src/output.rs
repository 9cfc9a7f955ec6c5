//! What a command prints: one JSON document with `--json`, else text.

use serde_json::Value;

/// A command's result in both forms.
pub struct Rendered {
    pub json: Value,
    pub text: String,
}

impl Rendered {
    pub fn new(json: Value, text: impl Into<String>) -> Self {
        Self {
            json,
            text: text.into(),
        }
    }
}

/// Left-aligned columns under a header row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = vec![line(headers.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

/// A JSON field as text: strings bare, null as `-`.
pub fn field(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `20.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// An artifact's size field as text.
pub fn size_field(artifact: &Value) -> String {
    artifact
        .get("size")
        .and_then(Value::as_u64)
        .map_or_else(|| "-".into(), human_size)
}

/// A 64-digit digest shortened for tables.
pub fn short_digest(artifact: &Value) -> String {
    let digest = field(artifact, "sha256");
    digest.chars().take(12).collect()
}

/// An alias's targets: `1` or `1 + 2 (10%)`.
pub fn alias_targets(alias: &Value) -> String {
    let version = field(alias, "version");
    match (
        alias.get("secondary_version").and_then(Value::as_str),
        alias
            .get("secondary_version_weight")
            .and_then(Value::as_u64),
    ) {
        (Some(secondary), Some(weight)) => format!("{version} + {secondary} ({weight}%)"),
        _ => version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "V"],
            &[
                vec!["a".into(), "1".into()],
                vec!["long-name".into(), "22".into()],
            ],
        );
        assert_eq!(t, "NAME       V\na          1\nlong-name  22");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(20 << 20), "20.0 MiB");
    }
}
