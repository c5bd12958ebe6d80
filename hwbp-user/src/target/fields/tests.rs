//! The walk over a small hand-made type table.

use super::*;

/// Types by index: 0 int, 1 struct limit {min; max}, 2 limit[4],
/// 3 struct config {count; limits; flags:3; union {a; b}; name[16]; state},
/// 4 char, 5 char[16], 6 enum state, 7 anonymous union {a; b}.
struct Table;

fn member(name: &str, ty: usize, bit_offset: u64, bit_size: u32) -> Member<usize> {
    Member {
        name: name.into(),
        ty,
        bit_offset,
        bit_size,
    }
}

fn scalar(name: &str, size: u64, decode: Decode) -> FieldType {
    FieldType {
        name: name.into(),
        size,
        decode,
        enumerators: Vec::new(),
        chars: false,
    }
}

impl Types for Table {
    type Id = usize;

    fn node(&self, id: usize) -> Node<usize> {
        match id {
            1 => Node::Struct(vec![member("min", 0, 0, 0), member("max", 0, 32, 0)]),
            2 => Node::Array {
                elem: 1,
                count: Some(4),
            },
            3 => Node::Struct(vec![
                member("count", 0, 0, 0),
                member("limits", 2, 32, 0),
                member("flags", 0, 288, 3),
                member("", 7, 320, 0),
                member("name", 5, 352, 0),
                member("state", 6, 480, 0),
            ]),
            5 => Node::Array {
                elem: 4,
                count: Some(16),
            },
            7 => Node::Struct(vec![member("a", 0, 0, 0), member("b", 0, 0, 0)]),
            _ => Node::Leaf,
        }
    }

    fn info(&self, id: usize) -> FieldType {
        match id {
            1 => scalar("struct limit", 8, Decode::Hex),
            2 => scalar("struct limit[4]", 32, Decode::Hex),
            3 => scalar("struct config", 64, Decode::Hex),
            4 => scalar("char", 1, Decode::Signed),
            5 => FieldType {
                chars: true,
                ..scalar("char[16]", 16, Decode::Hex)
            },
            6 => FieldType {
                enumerators: vec![
                    (0, "IDLE".into()),
                    (1, "RUNNING".into()),
                    (-1, "BROKEN".into()),
                ],
                ..scalar("enum state", 4, Decode::Signed)
            },
            7 => scalar("union (anon)", 4, Decode::Hex),
            _ => scalar("int", 4, Decode::Signed),
        }
    }
}

fn walk_text(text: &str) -> Result<Resolved, FieldError> {
    let spec: crate::target::TargetSpec = text.parse().expect("parse");
    walk(&Table, 3, spec.field_base().expect("fields"), &spec.fields).map(|(r, _)| r)
}

#[test]
fn members_elements_and_anonymous_unions() {
    let r = walk_text("cfg.limits[2].max").expect("walk");
    assert_eq!(
        (r.path.as_str(), r.offset, r.ty.size),
        ("cfg.limits[2].max", 4 + 2 * 8 + 4, 4)
    );
    let r = walk_text("cfg.b").expect("anonymous union member");
    assert_eq!((r.offset, r.ty.name.as_str()), (40, "int"));
    let r = walk_text("cfg.name[3]").expect("char");
    assert_eq!((r.offset, r.ty.chars), (47, false), "one char is a number");
    let r = walk_text("cfg.state").expect("enum");
    assert_eq!(r.offset, 60);
}

#[test]
fn errors_say_what_is_there() {
    let e = walk_text("cfg.limts").expect_err("misspelt");
    assert_eq!(
        e.to_string(),
        "`cfg` is `struct config`, which has no member `limts` (did you mean `limits`?); its \
         members: count, limits, flags, a, b, name, state"
    );
    let e = walk_text("cfg.count.x").expect_err("not a struct");
    assert!(
        matches!(e, FieldError::NotStruct { ref ty, .. } if ty == "int"),
        "{e}"
    );
    let e = walk_text("cfg.count[1]").expect_err("not an array");
    assert!(matches!(e, FieldError::NotArray { .. }), "{e}");
    let e = walk_text("cfg.limits[4]").expect_err("out of bounds");
    assert_eq!(
        e.to_string(),
        "`cfg.limits[4]`: index out of bounds: `cfg.limits` is `struct limit[4]`, 4 elements (0 to 3)"
    );
    let e = walk_text("cfg.flags").expect_err("bit-field");
    assert_eq!(
        e,
        FieldError::BitField {
            path: "cfg.flags".into(),
            base: "cfg".into(),
            bits: 3,
            bit: 0,
            byte: 36
        }
    );
    let (r, id) = walk(&Table, 3, "cfg", &[Access::Member("limits".into())]).expect("limits");
    let e = check_size(&Table, id, &r, 0, None).expect_err("32 bytes");
    assert!(
        e.to_string().contains("32 bytes")
            && e.to_string().contains("cfg.limits[3] (struct limit)"),
        "{e}"
    );
    assert_eq!(check_size(&Table, id, &r, 0, Some(8)), Ok(()));
    let (r, id) = walk(&Table, 3, "cfg", &[Access::Member("count".into())]).expect("count");
    assert_eq!(check_size(&Table, id, &r, 0, None), Ok(()));
}

#[test]
fn rows_for_list() {
    let rows = rows(&Table, 3, "cfg", 0);
    type Shown<'a> = (&'a str, u64, u64, Option<(u32, u32)>);
    let shown: Vec<Shown<'_>> = rows
        .iter()
        .map(|r| (r.path.as_str(), r.offset, r.size, r.bits))
        .collect();
    assert_eq!(
        shown,
        [
            ("cfg.count", 0, 4, None),
            ("cfg.limits", 4, 32, None),
            ("cfg.flags", 36, 0, Some((0, 3))),
            ("cfg.a", 40, 4, None),
            ("cfg.b", 40, 4, None),
            ("cfg.name", 44, 16, None),
            ("cfg.state", 60, 4, None),
        ]
    );
    assert_eq!(list_pattern("cfg.*"), Some(("cfg", "*")));
    assert_eq!(
        list_pattern("init_net.core.s*"),
        Some(("init_net.core", "s*"))
    );
    assert_eq!(list_pattern("cfg.limits[*]"), Some(("cfg.limits", "[*]")));
    assert_eq!(list_pattern("vfs_*"), None);
    assert_eq!(list_pattern("*.cold"), None);
}

#[test]
fn decoding() {
    let state = Table.info(6);
    assert_eq!(state.format(1, 4), "RUNNING");
    assert_eq!(state.format(0xffff_ffff, 4), "BROKEN");
    assert_eq!(state.format(7, 4), "7");
    assert_eq!(
        Table.info(5).format(u64::from_le_bytes(*b"idle\0xyz"), 8),
        "\"idle\""
    );
    assert_eq!(
        Table.info(5).format(u64::from_le_bytes(*b"abcdefgh"), 4),
        "\"abcd\""
    );
    assert_eq!(Table.info(0).format(0xffff_fffe, 4), "-2");
    assert_eq!(Table.info(0).format(0xffff_fffe, 2), "0xfffe");
}
