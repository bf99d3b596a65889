//! The one `/etc/passwd` reader: user names and uids, read from `ROOT/etc/passwd`.

use std::path::Path;

/// The `name:x:uid:…` entries of a passwd file, in file order.
#[derive(Debug, Default, Clone)]
pub struct Users(Vec<(String, u32)>);

impl Users {
    /// Reads `ROOT/etc/passwd`; an unreadable file gives no users (names then stay unresolved).
    /// The file need not be UTF-8 (a Latin-1 GECOS field): bytes that are not become U+FFFD,
    /// and every other entry reads as it is.
    pub fn load(root: &Path) -> Users {
        let bytes = std::fs::read(root.join("etc/passwd")).unwrap_or_default();
        Users::parse(&String::from_utf8_lossy(&bytes))
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

    /// One byte of ISO-8859-1 (a GECOS field) does not cost the file's other users.
    #[test]
    fn a_passwd_file_that_is_not_utf8_still_names_its_users() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            b"root:x:0:0:root:/root:/bin/sh\n\
              j\xfcrgen:x:1001:1001:J\xfcrgen M\xfcller:/home/j:/bin/bash\n\
              postgres:x:114:120:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n",
        )
        .unwrap();
        let u = Users::load(d.path());
        assert_eq!(u.uid("root"), Some(0));
        assert_eq!(u.uid("postgres"), Some(114));
        assert_eq!(u.uid("j\u{fffd}rgen"), Some(1001));
        assert_eq!(u.iter().count(), 3);
    }
}
