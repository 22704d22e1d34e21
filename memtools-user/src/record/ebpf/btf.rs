//! The few kernel struct offsets the eBPF programs need (where an mm keeps its rss counters,
//! where a task keeps its mm), read from the running kernel's BTF so one build works on every
//! kernel layout.
//!
//! A single pass over /sys/kernel/btf/vmlinux, reading only what is needed: the general BTF
//! parsers build every one of its ~100k types first, which made starting a recording six
//! times slower (90 ms against 15) for three numbers.

use std::ops::Range;

/// Where the kernel's BTF is.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

/// Why an offset could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {VMLINUX_BTF}: {0}")]
    Read(std::io::Error),
    #[error("{VMLINUX_BTF} is not valid BTF: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no `{0}`")]
    Missing(String),
}

/// The offsets the kernel side is given as globals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// `offsetof(struct mm_struct, rss_stat[0].count)`.
    pub rss_count_offset: u32,
    /// `sizeof(struct percpu_counter)`: from one member's counter to the next.
    pub rss_counter_size: u32,
    /// `offsetof(struct task_struct, mm)`.
    pub task_mm_offset: u32,
}

impl KernelLayout {
    /// The running kernel's layout.
    pub fn of_running_kernel() -> Result<KernelLayout, BtfError> {
        let data = std::fs::read(VMLINUX_BTF).map_err(BtfError::Read)?;
        KernelLayout::from_btf(&data)
    }

    /// The layout described by a BTF blob.
    pub fn from_btf(data: &[u8]) -> Result<KernelLayout, BtfError> {
        let btf = Btf::parse(data)?;
        let counter = btf.struct_named("percpu_counter")?;
        let (count, _) = btf.member(counter, "count")?;
        let mm = btf.struct_named("mm_struct")?;
        let (rss_stat, _) = btf.member(mm, "rss_stat")?;
        let task = btf.struct_named("task_struct")?;
        let (task_mm, _) = btf.member(task, "mm")?;
        Ok(KernelLayout {
            rss_count_offset: rss_stat + count,
            rss_counter_size: btf.size(counter),
            task_mm_offset: task_mm,
        })
    }
}

/// The type section, indexed.
struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Where each type's record starts in `types`, by type id (id 0 is void).
    starts: Vec<u32>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Btf<'a>, BtfError> {
        let bad = BtfError::Malformed;
        let magic = data.get(0..2).ok_or(bad("too short"))?;
        if u16::from_le_bytes([magic[0], magic[1]]) != BTF_MAGIC {
            return Err(bad("wrong magic number (not little-endian BTF)"));
        }
        let field = |i: usize| u32_at(data, 4 + 4 * i).ok_or(bad("truncated header"));
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
        let section = |off: u32, len: u32| -> Option<Range<usize>> {
            let start = (hdr_len as usize).checked_add(off as usize)?;
            Some(start..start.checked_add(len as usize)?)
        };
        let types = section(type_off, type_len)
            .and_then(|r| data.get(r))
            .ok_or(bad("type section out of bounds"))?;
        let strings = section(str_off, str_len)
            .and_then(|r| data.get(r))
            .ok_or(bad("string section out of bounds"))?;
        let mut starts = vec![0];
        let mut at = 0usize;
        while at < types.len() {
            starts.push(at as u32);
            let info = u32_at(types, at + 4).ok_or(bad("truncated type"))?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = match kind {
                1 | 14 | 17 => 4,     // int, var, decl_tag
                3 => 12,              // array
                4 | 5 => 12 * vlen,   // struct, union: their members
                6 | 13 => 8 * vlen,   // enum, func_proto
                15 | 19 => 12 * vlen, // datasec, enum64
                2 | 7..=12 | 16 | 18 => 0,
                _ => return Err(bad("unknown type kind")),
            };
            at += 12 + extra;
        }
        Ok(Btf {
            types,
            strings,
            starts,
        })
    }

    fn name(&self, name_off: u32) -> &'a [u8] {
        let rest = self.strings.get(name_off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// (name offset, info, size) of a type.
    fn header(&self, id: u32) -> Option<(u32, u32, u32)> {
        let at = *self.starts.get(id as usize)? as usize;
        Some((
            u32_at(self.types, at)?,
            u32_at(self.types, at + 4)?,
            u32_at(self.types, at + 8)?,
        ))
    }

    fn is_aggregate(info: u32) -> bool {
        matches!((info >> 24) & 0x1f, KIND_STRUCT | KIND_UNION)
    }

    /// The id of the struct with this name that has members (not a forward declaration).
    fn struct_named(&self, name: &str) -> Result<u32, BtfError> {
        (1..self.starts.len() as u32)
            .find(|&id| {
                self.header(id).is_some_and(|(n, info, _)| {
                    (info >> 24) & 0x1f == KIND_STRUCT
                        && info & 0xffff != 0
                        && self.name(n) == name.as_bytes()
                })
            })
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))
    }

    fn size(&self, id: u32) -> u32 {
        self.header(id).map_or(0, |(_, _, size)| size)
    }

    /// The byte offset and type of a member, looking inside anonymous structs and unions (the
    /// kernel wraps most of mm_struct in one).
    fn member(&self, id: u32, name: &str) -> Result<(u32, u32), BtfError> {
        self.find_member(id, name.as_bytes(), 0).ok_or_else(|| {
            let owner = self
                .header(id)
                .map(|(n, _, _)| self.name(n))
                .unwrap_or_default();
            BtfError::Missing(format!("struct {}.{name}", String::from_utf8_lossy(owner)))
        })
    }

    fn find_member(&self, id: u32, name: &[u8], depth: u32) -> Option<(u32, u32)> {
        let (_, info, _) = self.header(id)?;
        if !Btf::is_aggregate(info) || depth > 8 {
            return None;
        }
        let at = *self.starts.get(id as usize)? as usize + 12;
        for i in 0..(info & 0xffff) as usize {
            let m = at + 12 * i;
            let (m_name, m_type, m_offset) = (
                u32_at(self.types, m)?,
                u32_at(self.types, m + 4)?,
                u32_at(self.types, m + 8)?,
            );
            // With the kind flag, the top byte is a bitfield's size: not for these fields.
            let bits = if info >> 31 != 0 {
                m_offset & 0x00ff_ffff
            } else {
                m_offset
            };
            if m_name == 0 {
                let inner = self.resolve(m_type)?;
                if let Some((off, ty)) = self.find_member(inner, name, depth + 1) {
                    return Some((bits / 8 + off, ty));
                }
            } else if self.name(m_name) == name && bits % 8 == 0 {
                return Some((bits / 8, m_type));
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the type underneath.
    fn resolve(&self, mut id: u32) -> Option<u32> {
        for _ in 0..16 {
            let (_, info, next) = self.header(id)?;
            match (info >> 24) & 0x1f {
                8..=11 | 18 => id = next, // typedef, volatile, const, restrict, type_tag
                _ => return Some(id),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with: 1 long (int), 2 struct percpu_counter { u32 lock; long count; },
    /// 3 array of 2 percpu_counters, 4 an anonymous struct { long x; percpu_counter
    /// rss_stat[2] @16 }, 5 struct mm_struct { long pad; <anonymous> @64 }, 6 struct
    /// task_struct { long a; long b; mm @16 }.
    fn sample_btf() -> Vec<u8> {
        let mut strings = b"\0long\0percpu_counter\0lock\0count\0rss_stat\0mm_struct\0x\0pad\0task_struct\0a\0b\0mm\0".to_vec();
        let name = |s: &str, strings: &[u8]| -> u32 {
            let needle = [s.as_bytes(), b"\0"].concat();
            strings
                .windows(needle.len())
                .enumerate()
                .find(|(i, w)| *w == needle.as_slice() && (*i == 0 || strings[i - 1] == 0))
                .map(|(i, _)| i as u32)
                .unwrap()
        };
        let mut t = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                t.extend_from_slice(&w.to_le_bytes());
            }
        };
        let s = |n: &str| name(n, &strings);
        push(&[s("long"), 1 << 24, 8, 64]); // 1: int
        push(&[s("percpu_counter"), (4 << 24) | 2, 16]); // 2: struct
        push(&[s("lock"), 1, 0]);
        push(&[s("count"), 1, 64]);
        push(&[0, 3 << 24, 0, 2, 1, 2]); // 3: array of 2 × type 2
        push(&[0, (4 << 24) | 2, 48]); // 4: anonymous struct
        push(&[s("x"), 1, 0]);
        push(&[s("rss_stat"), 3, 128]);
        push(&[s("mm_struct"), (4 << 24) | 2, 112]); // 5
        push(&[s("pad"), 1, 0]);
        push(&[0, 4, 512]);
        push(&[s("task_struct"), (4 << 24) | 3, 24]); // 6
        push(&[s("a"), 1, 0]);
        push(&[s("b"), 1, 64]);
        push(&[s("mm"), 1, 128]);
        strings.push(0);
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&t);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn offsets_are_found_inside_anonymous_structs() {
        let layout = KernelLayout::from_btf(&sample_btf()).unwrap();
        assert_eq!(
            layout,
            KernelLayout {
                // The anonymous struct at 64, rss_stat at 16 in it, count at 8 in a counter.
                rss_count_offset: 64 + 16 + 8,
                rss_counter_size: 16,
                task_mm_offset: 16,
            }
        );
    }

    #[test]
    fn a_missing_member_is_named() {
        let mut btf = sample_btf();
        // Rename `count` to `cOunt`.
        let at = btf.windows(6).position(|w| w == b"count\0").unwrap();
        btf[at + 1] = b'O';
        let err = KernelLayout::from_btf(&btf).unwrap_err().to_string();
        assert!(err.contains("percpu_counter.count"), "{err}");
    }

    #[test]
    fn garbage_is_rejected() {
        let err = KernelLayout::from_btf(b"not btf at all")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid BTF"), "{err}");
        let mut truncated = sample_btf();
        truncated.truncate(40);
        assert!(KernelLayout::from_btf(&truncated).is_err());
    }

    #[test]
    fn the_running_kernel_has_the_offsets() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("SKIPPED the_running_kernel_has_the_offsets: no {VMLINUX_BTF}");
            return;
        }
        let layout = KernelLayout::of_running_kernel().unwrap();
        // A counter is a lock, an s64 and a per-CPU pointer at least; fields are aligned.
        assert!(layout.rss_counter_size >= 24, "{layout:?}");
        assert_eq!(layout.rss_count_offset % 8, 0, "{layout:?}");
        assert_eq!(layout.task_mm_offset % 8, 0, "{layout:?}");
        assert!(layout.task_mm_offset > 0, "{layout:?}");
    }
}
