//! Where each key path of a YAML document starts (line and column), so a
//! validation error found on the typed config can point into the file.
//! Paths are written as serde_path_to_error writes them: `pools[1].name`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line and column (both 1-based) of every key and sequence item.
#[derive(Debug, Default)]
pub struct Positions {
    map: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String>, first: bool },
    Seq { path: String, idx: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    map: HashMap<String, (usize, usize)>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Walker {
    /// The path of a value starting now under the top frame (recording a
    /// sequence item's position).
    fn value_path(&mut self, mark: Marker) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Map { path, key, .. }) => join(path, key.as_deref().unwrap_or("")),
            Some(Frame::Seq { path, idx }) => {
                let p = format!("{path}[{idx}]");
                self.map.entry(p.clone()).or_insert((mark.line(), mark.col() + 1));
                p
            }
        }
    }

    /// A value under the top frame is complete.
    fn done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { idx, .. }) => *idx += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::MappingStart(..) => {
                let path = self.value_path(mark);
                self.stack.push(Frame::Map { path, key: None, first: true });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(mark);
                self.stack.push(Frame::Seq { path, idx: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.done();
            }
            Event::Scalar(v, ..) => {
                if let Some(Frame::Map { path, key, first }) = self.stack.last_mut() {
                    if key.is_none() {
                        let pos = (mark.line(), mark.col() + 1);
                        // A mapping starts where its first key does (the
                        // parser marks block mappings elsewhere).
                        if *first && !path.is_empty() {
                            self.map.insert(path.clone(), pos);
                        }
                        *first = false;
                        self.map.entry(join(path, &v)).or_insert(pos);
                        *key = Some(v);
                        return;
                    }
                }
                self.value_path(mark);
                self.done();
            }
            Event::Alias(_) => {
                self.value_path(mark);
                self.done();
            }
            _ => {}
        }
    }
}

impl Positions {
    /// Indexes `text`; a document that does not parse gives an empty index.
    pub fn of(text: &str) -> Self {
        let mut w = Walker::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut w, false);
        Self { map: w.map }
    }

    /// Where `path` starts, or where its nearest ancestor that is in the
    /// file starts (a missing key points at its parent), or 1:1.
    pub fn find(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(&pos) = self.map.get(p) {
                return pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (1, 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_items_are_found_with_their_lines() {
        let text = "interfaces:\n  inside: eth1\npools:\n  - name: a\n    addresses: [1.2.3.4, 5.6.7.8]\n  - name: b\n";
        let p = Positions::of(text);
        assert_eq!(p.find("interfaces.inside"), (2, 3));
        assert_eq!(p.find("pools[1].name"), (6, 5));
        assert_eq!(p.find("pools[0].addresses[1]"), (5, 26));
        assert_eq!(p.find("pools[1].block_size"), (6, 5), "a missing key points at its parent");
        assert_eq!(p.find("nowhere"), (1, 1));
    }
}
