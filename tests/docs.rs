//! The documentation stays true: every relative link in README.md and
//! docs/*.md leads to a file and heading that exist, the frame layout that
//! docs/protocol.md documents is the one `mqtt_proxy::protocol` writes,
//! and the README stays short (detail belongs in docs/).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use mqtt_proxy::protocol::{
    Frame, Kind, FLAG_ACK_REQ, FLAG_FIN, FLAG_FRAG, FLAG_PEER_LOST, FLAG_RESYNC, HEADER_LEN,
    VERSION,
};

/// The README is for the person who wants `ssh prod-db` to work; protocol,
/// broker notes and benchmark logs live in docs/ (house style).
const README_MAX_LINES: usize = 350;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// README.md and every docs/*.md.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let docs = root().join("docs");
    let mut more: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap_or_else(|e| panic!("read {}: {e}", docs.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    files.extend(more);
    files
}

/// The lines outside fenced code blocks (a `# comment` in a config
/// example is not a heading, a `](` in a log is not a link).
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push(line);
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase; letters, digits, `-` and `_`
/// kept, spaces become `-`, every other character is dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor the headings of `text` produce; a repeated heading gets
/// `-1`, `-2`… as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for line in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of the markdown links `[text](target)` in `text`, outside
/// code blocks and inline code spans (which may wrap across lines).
fn link_targets(text: &str) -> Vec<String> {
    let prose = prose_lines(text).join("\n");
    let mut out = Vec::new();
    for outside_code in prose.split('`').step_by(2) {
        let mut rest = outside_code;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let end = after
                .find(|c: char| c == ')' || c.is_whitespace())
                .unwrap_or(after.len());
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// What is wrong with link `target` in `file`, if anything.
fn broken(file: &Path, target: &str) -> Option<String> {
    if ["http://", "https://", "mailto:"]
        .iter()
        .any(|s| target.starts_with(s))
    {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let dest = if path.is_empty() {
        file.to_path_buf()
    } else {
        file.parent().expect("a file's directory").join(path)
    };
    if !dest.exists() {
        return Some(format!("no file {}", dest.display()));
    }
    let anchor = anchor?;
    if !dest.is_file() || dest.extension().is_none_or(|x| x != "md") {
        return Some(format!(
            "anchor #{anchor} into {}, not a markdown file",
            dest.display()
        ));
    }
    if anchors(&read(&dest)).contains(anchor) {
        None
    } else {
        Some(format!("no heading for #{anchor} in {}", dest.display()))
    }
}

#[test]
fn every_relative_link_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in doc_files() {
        let name = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        for target in link_targets(&read(&file)) {
            checked += 1;
            if let Some(why) = broken(&file, &target) {
                problems.push(format!("{name}: ({target}): {why}"));
            }
        }
    }
    assert!(checked > 0, "no links found: is the link parser broken?");
    assert!(
        problems.is_empty(),
        "{} broken link(s) in README.md and docs/:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn readme_stays_short() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: it is for the person who \
         wants `ssh prod-db` to work; move detail into docs/ and link to it"
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Broker notes"), "broker-notes");
    assert_eq!(
        slug("Far brokers with end-to-end TCP: `scripts/bench-wan`"),
        "far-brokers-with-end-to-end-tcp-scriptsbench-wan"
    );
    assert_eq!(slug("`~/.ssh/config`"), "sshconfig");
    assert_eq!(
        anchors("# A\n## A\n```\n# not a heading\n```\n"),
        BTreeSet::from(["a".to_owned(), "a-1".to_owned()])
    );
}

// ---------------------------------------------------------------------------
// docs/protocol.md's "Frames" table against the code
// ---------------------------------------------------------------------------

/// One row of the frame table: offset, size in bytes (None for the
/// payload's `n`), the field's name (its first word) and the whole text.
struct Row {
    offset: usize,
    size: Option<usize>,
    name: String,
    text: String,
}

/// The rows of the `| offset | size | field |` table under "## Frames".
fn frame_table() -> Vec<Row> {
    let text = read(&root().join("docs/protocol.md"));
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "## Frames")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    assert!(
        !section.is_empty(),
        "docs/protocol.md has no \"## Frames\" section"
    );
    let mut rows = Vec::new();
    for line in section {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [offset, size, field] = cells[..] else {
            continue;
        };
        let Ok(offset) = offset.parse() else {
            continue; // the header row and its underline
        };
        let name = field
            .split(|c: char| c == ':' || c.is_whitespace())
            .next()
            .unwrap_or_default()
            .to_owned();
        rows.push(Row {
            offset,
            size: size.parse().ok(),
            name,
            text: field.to_owned(),
        });
    }
    rows
}

/// The `NUMBER NAME` pairs in a table cell such as
/// `kind: 1 OPEN, 2 ACCEPT` or `flags: 0x01 FIN (DATA), 0x02 ACK_REQ`.
fn numbered_names(cell: &str) -> BTreeMap<String, u8> {
    let list = cell.split_once(':').map_or(cell, |(_, l)| l);
    list.split(',')
        .filter_map(|item| {
            let mut words = item.split_whitespace();
            let number = words.next()?;
            let name = words.next()?.to_owned();
            let value = match number.strip_prefix("0x") {
                Some(hex) => u8::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            Some((name, value))
        })
        .collect()
}

fn row<'a>(rows: &'a [Row], name: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("docs/protocol.md's frame table has no `{name}` row"))
}

/// Every field sits where the table says: a frame with a distinct value
/// in each field, encoded by the code, read back at the documented
/// offsets and sizes.
#[test]
fn frame_table_matches_the_encoder() {
    let rows = frame_table();
    let frame = Frame {
        kind: Kind::Data,
        flags: FLAG_ACK_REQ,
        recv_limit: 0x61,
        sid: 0x1112_1314_1516_1718,
        seq: 0x2122_2324_2526_2728,
        ack: 0x3132_3334_3536_3738,
        sack: 0x4142_4344_4546_4748,
        window: 0x5152_5354,
        counter: 0x6162_6364_6566_6768,
        payload: Bytes::from_static(b"payload"),
    };
    let bytes = frame.encode();
    let expected: [(&str, u64); 10] = [
        ("version", VERSION.into()),
        ("kind", Kind::Data as u64),
        ("flags", frame.flags.into()),
        ("recv_limit", frame.recv_limit.into()),
        ("session", frame.sid),
        ("seq", frame.seq),
        ("ack", frame.ack),
        ("sack", frame.sack),
        ("window", frame.window.into()),
        ("counter", frame.counter),
    ];
    let mut next = 0;
    for (name, value) in expected {
        let r = row(&rows, name);
        let size = r
            .size
            .unwrap_or_else(|| panic!("`{name}` row: size is not a number"));
        assert_eq!(
            r.offset, next,
            "`{name}` row: offset {} does not follow the field before it",
            r.offset
        );
        let read = bytes[r.offset..r.offset + size]
            .iter()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        assert_eq!(
            read, value,
            "`{name}` row: bytes {}..{} of an encoded frame hold {read:#x}, not the field's {value:#x}",
            r.offset,
            r.offset + size
        );
        next = r.offset + size;
    }
    let payload = row(&rows, "payload");
    assert_eq!(
        payload.offset, HEADER_LEN,
        "`payload` row: offset is not HEADER_LEN"
    );
    assert_eq!(
        next, HEADER_LEN,
        "the header fields do not end at HEADER_LEN"
    );
    assert_eq!(&bytes[HEADER_LEN..], b"payload");
    assert_eq!(
        rows.len(),
        expected.len() + 1,
        "the frame table has rows the test does not know"
    );
    let version = row(&rows, "version");
    assert!(
        version.text.contains(&format!("({VERSION})")),
        "`version` row does not say ({VERSION})"
    );
    let protocol = read(&root().join("docs/protocol.md"));
    assert!(
        protocol.contains(&format!("a {HEADER_LEN}-byte header")),
        "docs/protocol.md does not say \"a {HEADER_LEN}-byte header\""
    );
}

/// The kind numbers in the table are exactly those the decoder accepts, by
/// the same names, and the encoder writes them at byte 1.
#[test]
fn frame_kinds_match_the_code() {
    let rows = frame_table();
    let documented = numbered_names(&row(&rows, "kind").text);
    let mut known = BTreeMap::new();
    for byte in 0..=u8::MAX {
        let mut header = [0u8; HEADER_LEN];
        header[0] = VERSION;
        header[1] = byte;
        if let Ok(f) = Frame::decode_clear(Bytes::copy_from_slice(&header)) {
            let name = format!("{:?}", f.kind).to_uppercase();
            let encoded = Frame::control(f.kind, 7, Bytes::new()).encode();
            assert_eq!(
                encoded[1], byte,
                "Frame::encode writes {name} as {}",
                encoded[1]
            );
            known.insert(name, byte);
        }
    }
    assert_eq!(
        documented, known,
        "docs/protocol.md's kinds (left) differ from what the code accepts (right)"
    );
}

/// The flag bits in the table are the FLAG_* constants.
#[test]
fn frame_flags_match_the_code() {
    let rows = frame_table();
    let documented = numbered_names(&row(&rows, "flags").text);
    let code: BTreeMap<String, u8> = [
        ("FIN", FLAG_FIN),
        ("ACK_REQ", FLAG_ACK_REQ),
        ("PEER_LOST", FLAG_PEER_LOST),
        ("RESYNC", FLAG_RESYNC),
        ("FRAG", FLAG_FRAG),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect();
    assert_eq!(
        documented, code,
        "docs/protocol.md's flags (left) differ from the FLAG_* constants (right)"
    );
}
