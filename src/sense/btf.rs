//! The kernel's type information (BTF, `/sys/kernel/btf/vmlinux`), read just far enough to find
//! the byte offsets of a few struct members, an enum's values and a function's type id: what
//! [`super::tasks`] needs to build its program for the running kernel. The file (about 5 MiB)
//! is read whole into an anonymous mapping of its own, with the index of its types after it,
//! and unmapped with the [`Btf`]: not through the allocator, whose heap would keep it, and
//! whose mmap threshold would rise to its size for good once it was freed.

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error(
        "cannot read the kernel's type information {path}: {source} (a kernel built without CONFIG_DEBUG_INFO_BTF has none)"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the kernel's type information is malformed: {0}")]
    Malformed(&'static str),
    #[error("the kernel's type information has no {0}")]
    Missing(String),
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// A parsed BTF blob: the raw bytes, then where each type starts (type id `n` at the
/// `n − 1`th u32 of the index), in one mapping.
pub struct Btf {
    map: Mapped,
    data_len: usize,
    /// The index's start in `map` (4-aligned) and its length in types.
    index_at: usize,
    ntypes: usize,
    str_start: usize,
    str_len: usize,
}

/// Anonymous private memory, unmapped on drop.
struct Mapped {
    ptr: *mut u8,
    len: usize,
}

impl Mapped {
    fn new(len: usize) -> std::io::Result<Mapped> {
        let len = len.max(1);
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }?;
        Ok(Mapped {
            ptr: ptr.cast(),
            len,
        })
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable (zero-filled until written) for our lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no borrow outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), self.len) };
    }
}

/// A type's header: its name, kind, member count, kind flag and size-or-type word.
#[derive(Debug, Clone, Copy)]
struct Head {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kflag: bool,
    size_or_type: u32,
    /// Where its kind-specific data starts.
    extra: usize,
}

/// A member found by name: its byte offset from the start of the outer struct, and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub offset: u32,
    pub type_id: u32,
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

impl Btf {
    /// Reads and indexes the BTF at `path`.
    pub fn read(path: &Path) -> Result<Btf, BtfError> {
        use std::io::Read;
        let err = |source| BtfError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::File::open(path).map_err(err)?;
        let size = f.metadata().map_err(err)?.len() as usize;
        if size > 256 << 20 {
            return Err(BtfError::Malformed("larger than 256 MiB"));
        }
        let mut map = Mapped::new(with_index(size)).map_err(err)?;
        let mut len = 0;
        while len < size {
            match f.read(&mut map.bytes_mut()[len..size]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err(e)),
            }
        }
        Btf::index(map, len)
    }

    /// Indexes a BTF blob (little-endian, as on the machines oomguard runs on).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let mut map = Mapped::new(with_index(data.len())).map_err(|source| BtfError::Read {
            path: "(memory)".into(),
            source,
        })?;
        map.bytes_mut()[..data.len()].copy_from_slice(data);
        Btf::index(map, data.len())
    }

    fn index(mut map: Mapped, data_len: usize) -> Result<Btf, BtfError> {
        let bad = BtfError::Malformed;
        let index_at = data_len.next_multiple_of(4);
        let (data, index) = map.bytes_mut().split_at_mut(index_at);
        let data = &data[..data_len];
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            return Err(bad("no BTF magic (big-endian or not BTF)"));
        }
        let hdr_len = u32_at(data, 4).ok_or(bad("short header"))? as usize;
        let type_off = u32_at(data, 8).ok_or(bad("short header"))? as usize;
        let type_len = u32_at(data, 12).ok_or(bad("short header"))? as usize;
        let str_off = u32_at(data, 16).ok_or(bad("short header"))? as usize;
        let str_len = u32_at(data, 20).ok_or(bad("short header"))? as usize;
        let t0 = hdr_len + type_off;
        let t1 = t0 + type_len;
        let s0 = hdr_len + str_off;
        if t1 > data.len() || s0 + str_len > data.len() {
            return Err(bad("sections run past the end"));
        }
        let mut ntypes = 0;
        let mut at = t0;
        while at < t1 {
            let h = head(data, at).ok_or(bad("a type runs past the end"))?;
            let slot = index
                .get_mut(ntypes * 4..ntypes * 4 + 4)
                .ok_or(bad("more types than bytes"))?;
            slot.copy_from_slice(&(at as u32).to_le_bytes());
            ntypes += 1;
            at = h.extra + extra_len(&h).ok_or(bad("a type of unknown kind"))?;
        }
        if at != t1 {
            return Err(bad("the type section does not end on a type"));
        }
        Ok(Btf {
            map,
            data_len,
            index_at,
            ntypes,
            str_start: s0,
            str_len,
        })
    }

    fn data(&self) -> &[u8] {
        &self.map.bytes()[..self.data_len]
    }

    fn head(&self, id: u32) -> Option<Head> {
        let i = id.checked_sub(1)? as usize;
        if i >= self.ntypes {
            return None;
        }
        let at = u32_at(self.map.bytes(), self.index_at + i * 4)? as usize;
        head(self.data(), at)
    }

    fn name(&self, off: u32) -> &[u8] {
        let off = off as usize;
        if off >= self.str_len {
            return b"";
        }
        let s = &self.data()[self.str_start + off..self.str_start + self.str_len];
        let end = memchr::memchr(0, s).unwrap_or(s.len());
        &s[..end]
    }

    /// The id of the first type of `kind` named `name` (a struct with members, not a forward
    /// declaration, when `kind` is a struct).
    fn find(&self, kind: u32, name: &str) -> Option<u32> {
        (1..=self.ntypes as u32).find(|&id| {
            self.head(id).is_some_and(|h| {
                h.kind == kind
                    && (kind != KIND_STRUCT || h.vlen > 0)
                    && self.name(h.name_off) == name.as_bytes()
            })
        })
    }

    /// The id of struct `name`.
    pub fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.find(KIND_STRUCT, name)
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))
    }

    /// The id of function `name` (a `FUNC`, as a BPF program's attach point names).
    pub fn func_id(&self, name: &str) -> Result<u32, BtfError> {
        self.find(KIND_FUNC, name)
            .ok_or_else(|| BtfError::Missing(format!("function {name}")))
    }

    /// `id` with typedefs and qualifiers skipped.
    pub fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.head(id) {
                Some(h)
                    if matches!(
                        h.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = h.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// The size in bytes of a struct, union, int, enum or array (after typedefs).
    pub fn size(&self, id: u32) -> Option<u32> {
        let id = self.resolve(id);
        let h = self.head(id)?;
        match h.kind {
            KIND_STRUCT | KIND_UNION | KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT => {
                Some(h.size_or_type)
            }
            KIND_PTR => Some(8),
            KIND_ARRAY => {
                let (elem, n) = self.array(id)?;
                self.size(elem)?.checked_mul(n)
            }
            _ => None,
        }
    }

    /// An array's element type and length.
    pub fn array(&self, id: u32) -> Option<(u32, u32)> {
        let h = self.head(self.resolve(id))?;
        if h.kind != KIND_ARRAY {
            return None;
        }
        Some((
            u32_at(self.data(), h.extra)?,
            u32_at(self.data(), h.extra + 8)?,
        ))
    }

    /// Whether `id` (after typedefs) is a struct or union.
    pub fn is_struct(&self, id: u32) -> bool {
        self.head(self.resolve(id))
            .is_some_and(|h| h.kind == KIND_STRUCT || h.kind == KIND_UNION)
    }

    /// Member `name` of struct or union `id`, also inside its anonymous structs and unions.
    pub fn member(&self, id: u32, name: &str) -> Option<Member> {
        self.member_in(self.resolve(id), name.as_bytes(), 0)
    }

    fn member_in(&self, id: u32, name: &[u8], depth: u32) -> Option<Member> {
        let h = self.head(id)?;
        if (h.kind != KIND_STRUCT && h.kind != KIND_UNION) || depth > 8 {
            return None;
        }
        let mut anonymous = Vec::new();
        for i in 0..h.vlen {
            let at = h.extra + i * 12;
            let m_name = u32_at(self.data(), at)?;
            let m_type = u32_at(self.data(), at + 4)?;
            let raw = u32_at(self.data(), at + 8)?;
            let bits = if h.kflag { raw & 0x00ff_ffff } else { raw };
            if m_name == 0 {
                anonymous.push((bits / 8, m_type));
            } else if self.name(m_name) == name {
                return Some(Member {
                    offset: bits / 8,
                    type_id: m_type,
                });
            }
        }
        anonymous.into_iter().find_map(|(off, t)| {
            self.member_in(self.resolve(t), name, depth + 1)
                .map(|m| Member {
                    offset: m.offset + off,
                    type_id: m.type_id,
                })
        })
    }

    /// The value of enumerator `name` (in any enum).
    pub fn enum_value(&self, name: &str) -> Result<i64, BtfError> {
        for id in 1..=self.ntypes as u32 {
            let Some(h) = self.head(id) else { continue };
            let step = match h.kind {
                KIND_ENUM => 8,
                KIND_ENUM64 => 12,
                _ => continue,
            };
            for i in 0..h.vlen {
                let at = h.extra + i * step;
                if self.name(u32_at(self.data(), at).unwrap_or(0)) != name.as_bytes() {
                    continue;
                }
                let lo = u32_at(self.data(), at + 4).unwrap_or(0);
                return Ok(if h.kind == KIND_ENUM {
                    lo as i32 as i64
                } else {
                    (u32_at(self.data(), at + 8).unwrap_or(0) as i64) << 32 | lo as i64
                });
            }
        }
        Err(BtfError::Missing(format!("enumerator {name}")))
    }
}

/// The mapping for a blob of `len` bytes and its index: every type is at least 12 bytes, so
/// there are at most `len / 12` of them, 4 bytes each.
fn with_index(len: usize) -> usize {
    len.next_multiple_of(4) + len / 12 * 4 + 4
}

fn head(d: &[u8], at: usize) -> Option<Head> {
    let info = u32_at(d, at + 4)?;
    Some(Head {
        name_off: u32_at(d, at)?,
        kind: (info >> 24) & 0x1f,
        vlen: (info & 0xffff) as usize,
        kflag: info >> 31 == 1,
        size_or_type: u32_at(d, at + 8)?,
        extra: at + 12,
    })
}

/// The length of a type's kind-specific data; `None` for a kind this reader does not know.
fn extra_len(h: &Head) -> Option<usize> {
    Some(match h.kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * h.vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * h.vlen,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small BTF blob: `int`, `struct inner { int a; int b; }`,
    /// `struct outer { int x; struct { int y; }; struct inner in[2]; }`, an enum, a function.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0b\0outer\0x\0y\0in\0E_ONE\0E_TWO\0f\0";
        let off = |s: &str| {
            let needle = [b"\0", s.as_bytes(), b"\0"].concat();
            (memchr::memmem::find(strings, &needle).unwrap() + 1) as u32
        };
        let mut t: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32| kind << 24 | vlen;
        // 1: int
        t.extend([off("int"), info(KIND_INT, 0), 4, 32]);
        // 2: struct inner { int a @0; int b @32 bits }
        t.extend([off("inner"), info(KIND_STRUCT, 2), 8]);
        t.extend([off("a"), 1, 0, off("b"), 1, 32]);
        // 3: anonymous struct { int y; }
        t.extend([0, info(KIND_STRUCT, 1), 4, off("y"), 1, 0]);
        // 4: array of 2 inner
        t.extend([0, info(KIND_ARRAY, 0), 0, 2, 1, 2]);
        // 5: struct outer { int x @0; anon @32 bits; inner in[2] @64 bits }
        t.extend([off("outer"), info(KIND_STRUCT, 3), 24]);
        t.extend([off("x"), 1, 0, 0, 3, 32, off("in"), 4, 64]);
        // 6: enum { E_ONE = 1, E_TWO = -2 }
        t.extend([
            0,
            info(KIND_ENUM, 2),
            4,
            off("E_ONE"),
            1,
            off("E_TWO"),
            (-2i32) as u32,
        ]);
        // 7: func f
        t.extend([off("f"), info(KIND_FUNC, 0), 0]);
        let types: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut d = vec![0x9f, 0xeb, 1, 0];
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            d.extend(v.to_le_bytes());
        }
        d.extend(types);
        d.extend(strings);
        d
    }

    #[test]
    fn finds_members_through_anonymous_structs_enums_and_functions() {
        let b = Btf::parse(&blob()).unwrap();
        let outer = b.struct_id("outer").unwrap();
        assert_eq!(outer, 5);
        assert_eq!(b.member(outer, "x").unwrap().offset, 0);
        assert_eq!(b.member(outer, "y").unwrap().offset, 4);
        let arr = b.member(outer, "in").unwrap();
        assert_eq!(arr.offset, 8);
        let (elem, n) = b.array(arr.type_id).unwrap();
        assert_eq!((elem, n), (2, 2));
        assert_eq!(b.size(elem), Some(8));
        assert_eq!(b.member(elem, "b").unwrap().offset, 4);
        assert!(b.member(outer, "z").is_none());
        assert_eq!(b.enum_value("E_ONE").unwrap(), 1);
        assert_eq!(b.enum_value("E_TWO").unwrap(), -2);
        assert!(b.enum_value("E_THREE").is_err());
        assert_eq!(b.func_id("f").unwrap(), 7);
        assert!(b.struct_id("f").is_err());
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        let good = blob();
        for cut in [0, 10, 24, 40, good.len() - 3] {
            assert!(Btf::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_kind = good.clone();
        bad_kind[24 + 7] = 31; // first type's kind byte
        assert!(Btf::parse(&bad_kind).is_err());
    }
}
