//! The layout rule of docs/ARCHITECTURE.md, checked on the source tree: no module under
//! `ops/src/commands/` uses another command's module. What two commands share lives outside
//! `commands/` (e.g. `backup_set`, `recovery`), so each command stays the thin procedure of one
//! verb and can change without breaking another.
//!
//! The scan reads the sources as tokens (comments, strings and character literals skipped),
//! resolves every path that starts with `crate`, `super` or `self` against the module it is
//! written in (inline modules such as `mod tests` included), and reports each path that lands in
//! `crate::commands::<other command>`. Items of `commands/mod.rs` itself (`Context`) are not a
//! command's and may be used; so may a command's own submodules and their parent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[test]
fn no_command_module_uses_another_commands_module() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
    let commands = command_names(&dir);
    // The scan must see the commands, or it would pass by looking at nothing.
    for expected in ["archive", "backup", "drill", "restore", "verify"] {
        assert!(
            commands.contains(expected),
            "no command module `{expected}` found in {}",
            dir.display()
        );
    }
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let mut problems = Vec::new();
    let mut scanned = 0;
    for file in &files {
        let relative = file
            .strip_prefix(&dir)
            .expect("under the commands directory");
        let module = module_path(relative);
        if module.len() < 2 {
            continue; // commands/mod.rs: the dispatcher, which names every command
        }
        scanned += 1;
        let source = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for v in violations(&module, &source, &commands) {
            problems.push(format!(
                "ops/src/commands/{}:{}: the `{}` command uses `{}`, the `{}` command's module",
                relative.display(),
                v.line,
                module[1],
                v.spelled,
                v.used
            ));
        }
    }
    assert!(
        scanned >= commands.len(),
        "scanned {scanned} files for {} commands",
        commands.len()
    );
    assert!(
        problems.is_empty(),
        "a command module may use crate modules and its own submodules, never another command's \
         module; move what both need out of ops/src/commands/ (see docs/ARCHITECTURE.md, \
         \"Adding a command\"):\n{}",
        problems.join("\n")
    );
}

/// The command modules: `commands/<name>.rs` and `commands/<name>/`.
fn command_names(dir: &Path) -> BTreeSet<String> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut names = BTreeSet::new();
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = if path.is_dir() {
            path.file_name()
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem()
        } else {
            None
        };
        match name.and_then(|n| n.to_str()) {
            Some("mod") | None => {}
            Some(n) => {
                names.insert(n.to_string());
            }
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The module a file under `commands/` defines: `backup/dump.rs` → `commands::backup::dump`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut module = vec!["commands".to_string()];
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 < parts.len() {
            module.push(part.clone());
        } else {
            let stem = part.trim_end_matches(".rs");
            if stem != "mod" {
                module.push(stem.to_string());
            }
        }
    }
    module
}

/// A path in a command's module that reaches another command's module.
#[derive(Debug, PartialEq)]
struct Violation {
    line: usize,
    /// The path as written, up to the other command (`super::restore`).
    spelled: String,
    /// The other command.
    used: String,
}

/// Every path in `source` (the file of `module`) that resolves into another command's module.
fn violations(module: &[String], source: &str, commands: &BTreeSet<String>) -> Vec<Violation> {
    let tokens = tokenize(source);
    let own = &module[1];
    let mut found = Vec::new();
    // Inline modules (`mod tests { … }`): their names and the brace depth they opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].tok {
            Tok::Open => {
                depth += 1;
                if let Some(name) = pending_mod.take() {
                    inline.push((name, depth));
                }
            }
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(word) if word == "mod" => {
                if let Some(Tok::Ident(name)) = tokens.get(i + 1).map(|t| &t.tok) {
                    pending_mod = Some(name.clone());
                    i += 2;
                    continue;
                }
            }
            Tok::Ident(first)
                if matches!(first.as_str(), "crate" | "super" | "self")
                    && i.checked_sub(1).map(|p| &tokens[p].tok) != Some(&Tok::PathSep)
                    && tokens.get(i + 1).map(|t| &t.tok) == Some(&Tok::PathSep) =>
            {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(name, _)| name.clone()));
                let mut paths = Vec::new();
                let next = expand(&tokens, i, Vec::new(), &mut paths);
                for (path, line) in paths {
                    if let Some((spelled, used)) = other_command(&here, &path, own, commands) {
                        let v = Violation {
                            line,
                            spelled,
                            used,
                        };
                        // `super::restore::{self, Plan}` is one use, not two.
                        if !found.contains(&v) {
                            found.push(v);
                        }
                    }
                }
                pending_mod = None;
                i = next;
                continue;
            }
            Tok::Semi => pending_mod = None,
            _ => {}
        }
        i += 1;
    }
    found
}

/// If `path`, written in module `here`, reaches a command other than `own`: the path as written
/// up to that command, and the command.
fn other_command(
    here: &[String],
    path: &[String],
    own: &str,
    commands: &BTreeSet<String>,
) -> Option<(String, String)> {
    let mut resolved: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        _ => here.to_vec(),
    };
    for (n, segment) in path.iter().enumerate() {
        match segment.as_str() {
            "crate" | "self" if n == 0 => {}
            "super" => {
                resolved.pop();
            }
            _ => resolved.push(segment.clone()),
        }
        if resolved.len() == 2 && resolved[0] == "commands" {
            let command = &resolved[1];
            if command != own && commands.contains(command) {
                return Some((path[..=n].join("::"), command.clone()));
            }
        }
    }
    None
}

/// Expands the path starting at token `i` (after `prefix`) into every path it names, `use`
/// groups included (`super::{backup::check, Context}` names two); returns the index after it.
fn expand(
    tokens: &[Token],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut path = prefix;
    let line = tokens.get(i).map_or(0, |t| t.line);
    loop {
        match tokens.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(segment)) => {
                path.push(segment.clone());
                i += 1;
            }
            Some(Tok::Open) => {
                // A group: comma-separated paths, each after the prefix so far.
                i += 1;
                loop {
                    match tokens.get(i).map(|t| &t.tok) {
                        Some(Tok::Close) => return i + 1,
                        Some(Tok::Comma) => i += 1,
                        None => return i,
                        Some(Tok::Ident(_)) | Some(Tok::Open) => {
                            i = expand(tokens, i, path.clone(), out);
                            // `Name as Alias`: the alias names nothing new.
                            if let Some(Tok::Ident(word)) = tokens.get(i).map(|t| &t.tok) {
                                if word == "as" {
                                    i += 2;
                                }
                            }
                        }
                        Some(_) => i += 1, // `*`
                    }
                }
            }
            _ => break,
        }
        if tokens.get(i).map(|t| &t.tok) == Some(&Tok::PathSep) {
            i += 1;
        } else {
            break;
        }
    }
    out.push((path, line));
    i
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Other,
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Rust source as the tokens the scan needs; comments, string and character literals are
/// skipped (their contents are not paths, and a `'{'` must not open a block).
fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        let mut push = |tok: Tok| {
            tokens.push(Token {
                tok,
                line: start_line,
            })
        };
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if at(i + 1) == '/' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut nesting = 0;
                while i < chars.len() {
                    if chars[i] == '/' && at(i + 1) == '*' {
                        nesting += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(i + 1) == '/' {
                        nesting -= 1;
                        i += 2;
                        if nesting == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => i = skip_string(&chars, i, &mut line),
            '\'' => {
                if at(i + 1) == '\\' {
                    // An escaped character literal: past the escaped character, then up to
                    // the closing quote (`'\u{7b}'`).
                    i += 3;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if at(i + 2) == '\'' {
                    i += 3; // 'x'
                } else {
                    i += 1; // a lifetime or label: its name follows as an identifier
                }
            }
            ':' if at(i + 1) == ':' => {
                push(Tok::PathSep);
                i += 2;
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = at(i);
                match word.as_str() {
                    "r" | "br" | "cr"
                        if next == '"' || (next == '#' && !is_ident_start(at(i + 1))) =>
                    {
                        i = skip_raw_string(&chars, i, &mut line);
                    }
                    "r" if next == '#' => i += 1, // a raw identifier follows
                    "b" | "c" if next == '"' => i = skip_string(&chars, i, &mut line),
                    // A byte literal: its quote is read next, as a character literal's.
                    "b" if next == '\'' => {}
                    _ => push(Tok::Ident(word)),
                }
            }
            _ => {
                push(match c {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ',' => Tok::Comma,
                    ';' => Tok::Semi,
                    _ => Tok::Other,
                });
                i += 1;
            }
        }
    }
    tokens
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

/// Skips a `"…"` string starting at `i` (the opening quote); returns the index after it.
fn skip_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    i += 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            '\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    i
}

/// Skips a raw string whose `#`s or opening quote start at `i`; returns the index after it.
fn skip_raw_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    i += 1; // the opening quote
    while i < chars.len() {
        if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        if chars[i] == '\n' {
            *line += 1;
        }
        i += 1;
    }
    i
}

// ---------------------------------------------------------------------------------------------
// The scan itself, on sources written to break the rule (or to look as if they did).

fn commands() -> BTreeSet<String> {
    ["archive", "backup", "drill", "health", "restore", "verify"]
        .into_iter()
        .map(String::from)
        .collect()
}

fn module(path: &str) -> Vec<String> {
    path.split("::").map(String::from).collect()
}

fn found(module_path: &str, source: &str) -> Vec<(usize, String, String)> {
    violations(&module(module_path), source, &commands())
        .into_iter()
        .map(|v| (v.line, v.spelled, v.used))
        .collect()
}

#[test]
fn a_sibling_command_through_super_is_found_with_its_line() {
    let source = "//! drill\n\nuse super::restore::{self, Plan};\nuse super::Context;\n";
    assert_eq!(
        found("commands::drill", source),
        vec![(3, "super::restore".into(), "restore".into())]
    );
}

#[test]
fn a_command_through_crate_commands_is_found_in_code_and_in_groups() {
    let source = "fn f() {\n    let m = crate::commands::backup::check::quick(p, t);\n}\n\
                  use crate::{commands::verify, error::OpsError};\n\
                  use super::{backup::manifest, Context};\n";
    assert_eq!(
        found("commands::drill", source),
        vec![
            (2, "crate::commands::backup".into(), "backup".into()),
            (4, "crate::commands::verify".into(), "verify".into()),
            (5, "super::backup".into(), "backup".into()),
        ]
    );
}

#[test]
fn a_command_through_super_super_is_found_from_a_submodule_and_an_inline_module() {
    assert_eq!(
        found(
            "commands::health::host",
            "use super::super::backup::manifest;\n"
        ),
        vec![(1, "super::super::backup".into(), "backup".into())]
    );
    let source = "mod tests {\n    use super::super::restore;\n}\n";
    assert_eq!(
        found("commands::drill", source),
        vec![(2, "super::super::restore".into(), "restore".into())]
    );
}

#[test]
fn the_dispatcher_items_own_submodules_and_crate_modules_are_allowed() {
    let source = "use super::Context;\nuse crate::commands::Context as C;\n\
                  use super::dump::Dump;\nuse self::files::Bundled;\n\
                  use crate::backup_set::{check, manifest};\n\
                  pub(super) fn f() { super::super::backup::list::list(ctx); }\n\
                  #[cfg(test)]\nmod tests {\n    use super::*;\n}\n";
    assert_eq!(found("commands::backup::snapshot", source), vec![]);
    assert_eq!(
        found(
            "commands::archive::stream",
            "use super::Context;\nuse super::*;\n"
        ),
        vec![]
    );
}

#[test]
fn comments_strings_and_char_literals_are_not_paths() {
    let source = "// use super::restore;\n/* crate::commands::backup /* nested */ */\n\
                  /// see [`super::verify`]\n\
                  const A: &str = \"super::restore::x\";\nconst B: &str = r#\"crate::commands::backup\"#;\n\
                  const C: char = '{';\nconst D: u8 = b'}';\nconst E: char = '\\'';\nfn f<'a>(x: &'a str) {}\n\
                  mod tests {\n    use super::*;\n}\nuse super::drill::x;\n";
    // The character literals do not change the depth: the last line is back in the file
    // module, where `super::drill` is its own command.
    assert_eq!(found("commands::drill", source), vec![]);
    assert_eq!(
        found("commands::restore", source),
        vec![(13, "super::drill".into(), "drill".into())]
    );
}
