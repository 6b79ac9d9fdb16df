//! Just enough of the kernel's BTF (/sys/kernel/btf/vmlinux) to find where a field lies in a
//! kernel struct on the running kernel, for programs that follow kernel pointers (the `--path`
//! filter walks `dentry->d_parent`), and which kernel functions exist and what they take, for
//! the planner. aya keeps its BTF type accessors private.

use std::{io, path::Path};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("cannot read the kernel's BTF at {path} (CONFIG_DEBUG_INFO_BTF)")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the kernel's BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(String),
    #[error("struct {strukt} of this kernel has no field {field}")]
    NoField { strukt: String, field: String },
    #[error("the kernel has no function {0} (its BTF lists none)")]
    NoFunction(String),
    #[error("the kernel has no enumerator {0} (its BTF lists none)")]
    NoEnumerator(String),
}

/// The kernel's BTF as aya parses it, for loading LSM and fmod_ret programs: parsed once per
/// process (about 5 MB, a parse costs time and memory at a run's start); the parse error as
/// text where there is none.
pub fn aya_kernel() -> Result<&'static aya::Btf, &'static str> {
    static BTF: std::sync::OnceLock<Result<aya::Btf, String>> = std::sync::OnceLock::new();
    BTF.get_or_init(|| aya::Btf::from_sys_fs().map_err(|err| err.to_string()))
        .as_ref()
        .map_err(String::as_str)
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
/// Kinds that only qualify or rename another type.
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;

/// One type of the BTF: its kind, name, and for structs and unions the members, for function
/// prototypes the parameters.
struct Type {
    kind: u32,
    name: u32,
    /// The type a modifier, typedef or function refers to (a function: its prototype).
    refers_to: u32,
    members: Vec<Member>,
}

struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

/// The parsed type section of a BTF blob.
pub struct Btf {
    /// Index 0 is the void type; type IDs index this directly.
    types: Vec<Type>,
    strings: Vec<u8>,
}

impl Btf {
    /// The running kernel's BTF.
    pub fn kernel() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let u32_at = |at: usize| -> Result<u32, BtfError> {
            data.get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                .ok_or(BtfError::Malformed("truncated"))
        };
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("no BTF magic (or not little-endian)"));
        }
        let header_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let strings = data
            .get(header_len + str_off..header_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        let mut types = vec![Type {
            kind: 0,
            name: 0,
            refers_to: 0,
            members: Vec::new(),
        }];
        let mut at = header_len + type_off;
        let end = at + type_len;
        while at < end {
            let (name, info, size_or_type) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let bitfields = info >> 31 == 1;
            let mut members = Vec::new();
            // The bytes that follow the common part, by kind (linux/btf.h).
            let extra = match kind {
                1 | 14 | 17 => 4, // INT, VAR, DECL_TAG
                3 => 12,          // ARRAY
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + 12 * i;
                        let offset = u32_at(m + 8)?;
                        members.push(Member {
                            name: u32_at(m)?,
                            type_id: u32_at(m + 4)?,
                            bit_offset: if bitfields {
                                offset & 0x00ff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    12 * vlen
                }
                KIND_FUNC_PROTO => {
                    for i in 0..vlen {
                        let p = at + 8 * i;
                        members.push(Member {
                            name: u32_at(p)?,
                            type_id: u32_at(p + 4)?,
                            bit_offset: 0,
                        });
                    }
                    8 * vlen
                }
                KIND_ENUM => {
                    // Each value as a member: its name, and its value in `type_id`.
                    for i in 0..vlen {
                        let e = at + 8 * i;
                        members.push(Member {
                            name: u32_at(e)?,
                            type_id: u32_at(e + 4)?,
                            bit_offset: 0,
                        });
                    }
                    8 * vlen
                }
                15 | 19 => 12 * vlen,      // DATASEC, ENUM64
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, modifiers, FUNC, FLOAT, TYPE_TAG
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            at += extra;
            types.push(Type {
                kind,
                name,
                refers_to: size_or_type,
                members,
            });
        }
        Ok(Btf { types, strings })
    }

    fn name(&self, offset: u32) -> &[u8] {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..len]
    }

    /// The byte offset of `path` (`f_path.dentry`: a field, then fields of that field's struct)
    /// inside `struct NAME`. Fields of anonymous structs and unions are found where C finds them.
    pub fn offset_of(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let mut type_id = self
            .types
            .iter()
            .position(|t| {
                t.kind == KIND_STRUCT
                    && !t.members.is_empty()
                    && self.name(t.name) == strukt.as_bytes()
            })
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))? as u32;
        let mut offset = 0;
        for field in path.split('.') {
            let (field_type, bits) =
                self.find_member(type_id, field)
                    .ok_or_else(|| BtfError::NoField {
                        strukt: strukt.to_owned(),
                        field: path.to_owned(),
                    })?;
            offset += bits / 8;
            type_id = self.skip_modifiers(field_type);
        }
        Ok(offset)
    }

    /// The names of the types kernel function `function` takes by value that are structs or
    /// unions (`kuid_t` for `security_path_chown`): trampoline programs accept those only from
    /// kernel 6.1 on.
    pub fn struct_params(&self, function: &str) -> Result<Vec<String>, BtfError> {
        let func = self
            .types
            .iter()
            .find(|t| t.kind == KIND_FUNC && self.name(t.name) == function.as_bytes())
            .ok_or_else(|| BtfError::NoFunction(function.to_owned()))?;
        let params = self
            .types
            .get(func.refers_to as usize)
            .filter(|proto| proto.kind == KIND_FUNC_PROTO)
            .map(|proto| proto.members.as_slice())
            .unwrap_or_default();
        Ok(params
            .iter()
            .filter(|param| {
                let kind = self.types.get(self.skip_modifiers(param.type_id) as usize);
                kind.is_some_and(|t| matches!(t.kind, KIND_STRUCT | KIND_UNION))
            })
            .map(|param| {
                let named = self.types.get(param.type_id as usize).map_or(0, |t| t.name);
                String::from_utf8_lossy(self.name(named)).into_owned()
            })
            .collect())
    }

    /// The value of the enumerator `name` (`__REQ_PREFLUSH`), in whichever enum declares it.
    pub fn enum_value(&self, name: &str) -> Result<u32, BtfError> {
        self.types
            .iter()
            .filter(|t| t.kind == KIND_ENUM)
            .flat_map(|t| &t.members)
            .find(|m| self.name(m.name) == name.as_bytes())
            .map(|m| m.type_id)
            .ok_or_else(|| BtfError::NoEnumerator(name.to_owned()))
    }

    /// Whether the kernel has function `function`.
    pub fn has_function(&self, function: &str) -> bool {
        self.struct_params(function).is_ok()
    }

    /// The type and bit offset of member `field` of the struct or union `type_id`, looking inside
    /// anonymous members too.
    fn find_member(&self, type_id: u32, field: &str) -> Option<(u32, u32)> {
        let members = &self.types.get(type_id as usize)?.members;
        members.iter().find_map(|member| {
            if self.name(member.name) == field.as_bytes() {
                return Some((member.type_id, member.bit_offset));
            }
            if member.name != 0 {
                return None;
            }
            let inner = self.skip_modifiers(member.type_id);
            let (found, bits) = self.find_member(inner, field)?;
            Some((found, member.bit_offset + bits))
        })
    }

    fn skip_modifiers(&self, mut type_id: u32) -> u32 {
        while let Some(t) = self.types.get(type_id as usize) {
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    type_id = t.refers_to
                }
                _ => break,
            }
        }
        type_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets on the kernel this runs on, cross-checked with each other: `path` holds `mnt`
    /// then `dentry`, two pointers.
    #[test]
    fn finds_fields_of_the_running_kernel() {
        let Ok(btf) = Btf::kernel() else {
            eprintln!("no /sys/kernel/btf/vmlinux here: nothing to check");
            return;
        };
        assert_eq!(btf.offset_of("path", "mnt").unwrap(), 0);
        assert_eq!(btf.offset_of("path", "dentry").unwrap(), 8);
        let f_path = btf.offset_of("file", "f_path").unwrap();
        assert_eq!(btf.offset_of("file", "f_path.dentry").unwrap(), f_path + 8);
        assert!(btf.offset_of("dentry", "d_parent").unwrap() > 0);
        // __REQ_PREFLUSH follows the eight bits of the operation and a dozen flags.
        assert!(btf.enum_value("__REQ_PREFLUSH").unwrap() > 8);
        assert!(btf.enum_value("___GFP_NOFAIL_BIT").is_ok());
        assert!(btf.enum_value("no_such_enumerator").is_err());
        assert!(matches!(
            btf.offset_of("dentry", "no_such_field"),
            Err(BtfError::NoField { .. })
        ));
        assert!(matches!(
            btf.offset_of("no_such_struct", "x"),
            Err(BtfError::NoStruct(_))
        ));
    }

    /// `in_group_p(kgid_t)` takes a struct by value (kgid_t wraps a gid_t), `security_file_open`
    /// (`struct file *`) none; an unknown function is an error.
    #[test]
    fn finds_struct_parameters_of_the_running_kernel() {
        let Ok(btf) = Btf::kernel() else {
            eprintln!("no /sys/kernel/btf/vmlinux here: nothing to check");
            return;
        };
        assert_eq!(btf.struct_params("in_group_p").unwrap(), ["kgid_t"]);
        assert!(btf.struct_params("security_file_open").unwrap().is_empty());
        assert!(btf.has_function("security_file_open"));
        assert!(matches!(
            btf.struct_params("no_such_function"),
            Err(BtfError::NoFunction(_))
        ));
    }
}
