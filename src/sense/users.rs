//! The one `/etc/passwd` reader: user names and uids, read from `ROOT/etc/passwd`.

use std::path::Path;

/// The `name:x:uid:…` entries of a passwd file, in file order.
#[derive(Debug, Default, Clone)]
pub struct Users(Vec<(String, u32)>);

impl Users {
    /// Reads `ROOT/etc/passwd`; an unreadable file gives no users (names then stay unresolved).
    pub fn load(root: &Path) -> Users {
        Users::parse(&std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default())
    }

    pub fn parse(text: &str) -> Users {
        Users(
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let (name, uid) = (f.next()?, f.nth(1)?);
                    Some((name.to_string(), uid.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The uid of the first entry named `name`.
    pub fn uid(&self, name: &str) -> Option<u32> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, u)| u)
    }

    /// The name of the first entry with `uid`.
    pub fn name(&self, uid: u32) -> Option<&str> {
        self.0
            .iter()
            .find(|&&(_, u)| u == uid)
            .map(|(n, _)| n.as_str())
    }

    /// All entries, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().map(|(n, u)| (n.as_str(), *u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_uids_skipping_bad_lines() {
        let u = Users::parse(
            "root:x:0:0::/root:/bin/sh\nbad line\nbob:x:1000:1000::/h:/bin/sh\nx:x:nan:0\n",
        );
        assert_eq!(u.uid("root"), Some(0));
        assert_eq!(u.uid("bob"), Some(1000));
        assert_eq!(u.uid("x"), None);
        assert_eq!((u.name(1000), u.name(7)), (Some("bob"), None));
        assert_eq!(u.iter().count(), 2);
    }
}
