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

/// The offsets the kernel side is given as globals (memtools-ebpf's kernel.rs and
/// syscalls/entry.rs name each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    /// `offsetof(struct mm_struct, rss_stat[0].count)`.
    pub rss_count_offset: u32,
    /// `sizeof(struct percpu_counter)`: from one member's counter to the next.
    pub rss_counter_size: u32,
    /// `offsetof(struct mm_struct, hiwater_rss)`, `total_vm` and `brk`.
    pub mm_hiwater_offset: u32,
    pub mm_total_vm_offset: u32,
    pub mm_brk_offset: u32,
    /// `offsetof(struct task_struct, ...)`: `mm`, `pid`, `tgid`, `start_boottime`,
    /// `real_parent`, `signal`.
    pub task_mm_offset: u32,
    pub task_pid_offset: u32,
    pub task_tgid_offset: u32,
    pub task_start_offset: u32,
    pub task_parent_offset: u32,
    pub task_signal_offset: u32,
    /// `offsetof(struct signal_struct, live)` and `maxrss`.
    pub signal_live_offset: u32,
    pub signal_maxrss_offset: u32,
    /// `offsetof(struct signal_struct, nr_threads)`, `offsetof(struct task_struct, files)`
    /// and `offsetof(struct files_struct, next_fd)`: a process's threads and where its next
    /// descriptor goes, whose moves queue it to be read.
    pub signal_nr_threads_offset: u32,
    pub task_files_offset: u32,
    pub files_next_fd_offset: u32,
    /// `offsetof(struct task_struct, pagefault_disabled)` (the countdown sampler leaves the
    /// faults of nofault reads alone); None where the kernel has no such member.
    pub task_pagefault_disabled_offset: Option<u32>,
    /// `offsetof(struct mm_struct, ...)`: `start_code`, `end_code` and `mmap_base` (the call
    /// walk passes over words that cannot be code without reading behind them); None where
    /// the kernel lacks one.
    pub mm_code_offsets: Option<[u32; 3]>,
    /// Where a system call's number and arguments sit in `struct pt_regs`, on the
    /// architectures the kernel side knows (x86-64, arm64); None elsewhere.
    pub syscall_regs: Option<SyscallRegs>,
}

/// Offsets in `struct pt_regs` of a system call's number, its first four arguments and the
/// user stack pointer (where a growth site's stack starts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallRegs {
    pub nr: u32,
    pub arg0: u32,
    pub arg1: u32,
    pub arg2: u32,
    pub arg3: u32,
    pub sp: u32,
    /// The user instruction and frame pointers.
    pub ip: u32,
    pub fp: u32,
}

/// This architecture's system calls, as the kernel side hooks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallArch {
    /// The prefix of the syscall entry functions (`__x64_sys_` of `__x64_sys_mmap`).
    pub prefix: &'static str,
    /// The numbers of mmap, munmap, brk, mremap and madvise.
    pub mmap: u32,
    pub munmap: u32,
    pub brk: u32,
    pub mremap: u32,
    pub madvise: u32,
}

/// This architecture's, when the kernel side knows it.
pub fn syscall_arch() -> Option<SyscallArch> {
    match std::env::consts::ARCH {
        "x86_64" => Some(SyscallArch {
            prefix: "__x64_sys_",
            mmap: 9,
            munmap: 11,
            brk: 12,
            mremap: 25,
            madvise: 28,
        }),
        // The generic table (include/uapi/asm-generic/unistd.h).
        "aarch64" => Some(SyscallArch {
            prefix: "__arm64_sys_",
            mmap: 222,
            munmap: 215,
            brk: 214,
            mremap: 216,
            madvise: 233,
        }),
        _ => None,
    }
}

impl KernelLayout {
    /// The running kernel's layout.
    #[cfg(test)]
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
        let task = btf.struct_named("task_struct")?;
        let signal = btf.struct_named("signal_struct")?;
        let files = btf.struct_named("files_struct")?;
        let offset = |id: u32, name: &str| btf.member(id, name).map(|(o, _)| o);
        Ok(KernelLayout {
            rss_count_offset: offset(mm, "rss_stat")? + count,
            rss_counter_size: btf.size(counter),
            mm_hiwater_offset: offset(mm, "hiwater_rss")?,
            mm_total_vm_offset: offset(mm, "total_vm")?,
            mm_brk_offset: offset(mm, "brk")?,
            task_mm_offset: offset(task, "mm")?,
            task_pid_offset: offset(task, "pid")?,
            task_tgid_offset: offset(task, "tgid")?,
            task_start_offset: offset(task, "start_boottime")?,
            task_parent_offset: offset(task, "real_parent")?,
            task_signal_offset: offset(task, "signal")?,
            signal_live_offset: offset(signal, "live")?,
            signal_maxrss_offset: offset(signal, "maxrss")?,
            signal_nr_threads_offset: offset(signal, "nr_threads")?,
            task_files_offset: offset(task, "files")?,
            files_next_fd_offset: offset(files, "next_fd")?,
            task_pagefault_disabled_offset: offset(task, "pagefault_disabled").ok(),
            mm_code_offsets: match (
                offset(mm, "start_code"),
                offset(mm, "end_code"),
                offset(mm, "mmap_base"),
            ) {
                (Ok(start), Ok(end), Ok(base)) => Some([start, end, base]),
                _ => None,
            },
            syscall_regs: syscall_regs(&btf),
        })
    }
}

/// Where a system call's number, first four arguments and the user stack pointer are in
/// `struct pt_regs`: `orig_ax`, `di`, `si`, `dx`, `r10` (not `cx`: `syscall` clobbers it) and
/// `sp` on x86-64, `syscallno`, `regs[0..4]` and `sp` (after `regs[30]`) on arm64, with the
/// instruction and frame pointers (`ip`, `bp`; `pc`, `regs[29]`). None
/// when this architecture is neither or the kernel's pt_regs does not have them (the
/// syscall hooks then fall back to syscall tracepoints).
fn syscall_regs(btf: &Btf<'_>) -> Option<SyscallRegs> {
    let regs = btf.struct_named("pt_regs").ok()?;
    let at = |name: &str| btf.member(regs, name).ok().map(|(o, _)| o);
    match std::env::consts::ARCH {
        "x86_64" => Some(SyscallRegs {
            nr: at("orig_ax")?,
            arg0: at("di")?,
            arg1: at("si")?,
            arg2: at("dx")?,
            arg3: at("r10")?,
            sp: at("sp")?,
            ip: at("ip")?,
            fp: at("bp")?,
        }),
        "aarch64" => {
            let base = at("regs")?;
            Some(SyscallRegs {
                nr: at("syscallno")?,
                arg0: base,
                arg1: base + 8,
                arg2: base + 16,
                arg3: base + 24,
                sp: base + 31 * 8,
                ip: base + 32 * 8,
                fp: base + 29 * 8,
            })
        }
        _ => None,
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

    /// A BTF blob built from (kind, name, size, members) records; kind 1 is an int, 3 an
    /// array (its "members" are [element type, count]), 4 a struct, whose members are (name,
    /// type id, bit offset). Type ids count from 1 in order.
    struct Blob {
        strings: Vec<u8>,
        types: Vec<u8>,
    }

    impl Blob {
        fn new() -> Blob {
            Blob {
                strings: vec![0],
                types: Vec::new(),
            }
        }

        fn name(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let at = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            at
        }

        fn words(&mut self, words: &[u32]) {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }

        fn int(&mut self, name: &str) {
            let n = self.name(name);
            self.words(&[n, 1 << 24, 8, 64]);
        }

        fn array(&mut self, element: u32, count: u32) {
            self.words(&[0, 3 << 24, 0, element, 1, count]);
        }

        fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) {
            let n = self.name(name);
            self.words(&[n, (4 << 24) | members.len() as u32, size]);
            for (m, ty, bits) in members {
                let mn = self.name(m);
                self.words(&[mn, *ty, *bits]);
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let (t, s) = (self.types.len() as u32, self.strings.len() as u32);
            for w in [24u32, 0, t, t, s] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// 1 long; 2 struct percpu_counter { lock; count @8 }; 3 percpu_counter[4]; 4 an
    /// anonymous struct { x; rss_stat @16; hiwater_rss @112; total_vm @120; brk @128 }; 5
    /// mm_struct {
    /// pad; <anonymous> @64 }; 6 signal_struct { a; live @8; nr_threads @16; maxrss @24 };
    /// 7 task_struct { a; mm @16; pid @24; tgid @28; start_boottime @32; real_parent @40;
    /// signal @48; files @56 }; 8 pt_regs { di @0; si @8; dx @16; orig_ax @24; r10 @32;
    /// sp @40; ip @48; bp @56 }; 9
    /// files_struct { a; next_fd @12 }.
    fn sample_btf() -> Vec<u8> {
        let mut b = Blob::new();
        b.int("long");
        b.strukt("percpu_counter", 16, &[("lock", 1, 0), ("count", 1, 64)]);
        b.array(2, 4);
        b.strukt(
            "",
            136,
            &[
                ("x", 1, 0),
                ("rss_stat", 3, 128),
                ("hiwater_rss", 1, 896),
                ("total_vm", 1, 960),
                ("brk", 1, 1024),
            ],
        );
        b.strukt("mm_struct", 192, &[("pad", 1, 0), ("", 4, 512)]);
        b.strukt(
            "signal_struct",
            32,
            &[
                ("a", 1, 0),
                ("live", 1, 64),
                ("nr_threads", 1, 128),
                ("maxrss", 1, 192),
            ],
        );
        b.strukt(
            "task_struct",
            64,
            &[
                ("a", 1, 0),
                ("mm", 1, 128),
                ("pid", 1, 192),
                ("tgid", 1, 224),
                ("start_boottime", 1, 256),
                ("real_parent", 1, 320),
                ("signal", 1, 384),
                ("files", 1, 448),
            ],
        );
        b.strukt(
            "pt_regs",
            64,
            &[
                ("di", 1, 0),
                ("si", 1, 64),
                ("dx", 1, 128),
                ("orig_ax", 1, 192),
                ("r10", 1, 256),
                ("sp", 1, 320),
                ("ip", 1, 384),
                ("bp", 1, 448),
            ],
        );
        b.strukt("files_struct", 16, &[("a", 1, 0), ("next_fd", 1, 96)]);
        b.bytes()
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
                mm_hiwater_offset: 64 + 112,
                mm_total_vm_offset: 64 + 120,
                mm_brk_offset: 64 + 128,
                task_mm_offset: 16,
                task_pid_offset: 24,
                task_tgid_offset: 28,
                task_start_offset: 32,
                task_parent_offset: 40,
                task_signal_offset: 48,
                signal_live_offset: 8,
                signal_maxrss_offset: 24,
                signal_nr_threads_offset: 16,
                task_files_offset: 56,
                files_next_fd_offset: 12,
                task_pagefault_disabled_offset: None,
                mm_code_offsets: None,
                syscall_regs: if std::env::consts::ARCH == "x86_64" {
                    Some(SyscallRegs {
                        nr: 24,
                        arg0: 0,
                        arg1: 8,
                        arg2: 16,
                        arg3: 32,
                        sp: 40,
                        ip: 48,
                        fp: 56,
                    })
                } else {
                    // The sample's pt_regs is x86-64's.
                    None
                },
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
        for offset in [
            layout.task_mm_offset,
            layout.task_start_offset,
            layout.task_parent_offset,
            layout.task_signal_offset,
            layout.mm_hiwater_offset,
            layout.mm_total_vm_offset,
            layout.mm_brk_offset,
            layout.signal_maxrss_offset,
            layout.task_files_offset,
        ] {
            assert!(offset > 0 && offset % 8 == 0, "{layout:?}");
        }
        // Two ints, 4-aligned, past the first fields.
        let pagefault_disabled = layout
            .task_pagefault_disabled_offset
            .expect("task_struct has had pagefault_disabled since 4.2");
        for offset in [
            layout.signal_nr_threads_offset,
            layout.files_next_fd_offset,
            pagefault_disabled,
        ] {
            assert!(offset > 0 && offset % 4 == 0, "{layout:?}");
        }
        // pid and tgid are neighbours.
        assert_eq!(layout.task_tgid_offset, layout.task_pid_offset + 4);
        // The code's bounds: start_code and end_code are neighbours, brk past them.
        let [start_code, end_code, mmap_base] = layout
            .mm_code_offsets
            .expect("mm_struct has start_code, end_code and mmap_base");
        assert_eq!(end_code, start_code + 8, "{layout:?}");
        assert!(layout.mm_brk_offset > end_code, "{layout:?}");
        assert!(mmap_base > 0 && mmap_base % 8 == 0, "{layout:?}");
        if syscall_arch().is_some() {
            // Neighbouring registers (x86-64 keeps dx just before si, arm64 regs[] in order).
            let regs = layout.syscall_regs.expect("pt_regs arguments");
            assert_eq!(regs.arg1.abs_diff(regs.arg2), 8, "{layout:?}");
            assert!(regs.nr > 0, "{layout:?}");
        }
    }
}
