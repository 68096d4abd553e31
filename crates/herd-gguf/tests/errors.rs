//! Corrupt, truncated and hostile files: each gives a precise error, never a
//! panic or a huge allocation.

mod common;

use common::Raw;
use herd_gguf::{
    GgmlType, GgufError, GgufFile, GgufWriter, Metadata, MetadataArray, Origin, MAX_ARRAY_DEPTH,
};

fn parse(raw: Raw) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes(&raw.0)
}

/// A valid file with metadata and three tensors, for truncation and fuzzing.
fn valid_file() -> Vec<u8> {
    let mut m = Metadata::new();
    m.set("general.architecture", "llama");
    m.set("llama.block_count", 2u32);
    m.set("tokenizer.ggml.tokens", vec!["a", "bb", "ccc"]);
    m.set("tokenizer.ggml.scores", vec![0.5f32, 0.25, 0.125]);
    m.set("nested", vec![MetadataArray::from(vec![1u16, 2])]);
    let mut w = GgufWriter::with_metadata(m);
    w.add_tensor("a", GgmlType::F32, &[3], vec![1u8; 12])
        .expect("a");
    w.add_tensor("b", GgmlType::Q8_0, &[32, 2], vec![2u8; 68])
        .expect("b");
    w.add_tensor("c", GgmlType::F16, &[5], vec![3u8; 10])
        .expect("c");
    let mut out = Vec::new();
    w.write(&mut out).expect("write");
    out
}

#[test]
fn bad_magic() {
    let err = parse(Raw::default().bytes(b"GGML").u32(3).u64(0).u64(0)).expect_err("bad magic");
    assert!(
        matches!(err, GgufError::BadMagic { found, .. } if &found == b"GGML"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
}

#[test]
fn unsupported_versions() {
    for version in [0u32, 1, 4, 0x0300_0000] {
        let err = parse(Raw::header(version, 0, 0)).expect_err("unsupported");
        assert!(
            matches!(err, GgufError::UnsupportedVersion { version: v, .. } if v == version),
            "{err:?}"
        );
    }
    let err = parse(Raw::header(0x0300_0000, 0, 0)).expect_err("big-endian");
    assert!(err.to_string().contains("big-endian"), "{err}");
}

#[test]
fn truncated_header() {
    let raw = Raw::header(3, 0, 0);
    let err = GgufFile::from_bytes(&raw.0[..10]).expect_err("cut inside the tensor count");
    match &err {
        GgufError::Truncated {
            offset: 8,
            needed: 8,
            available: 2,
            what,
            ..
        } => {
            assert_eq!(what, "header tensor count")
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let err = GgufFile::from_bytes(b"GG").expect_err("cut inside the magic");
    assert!(
        matches!(
            err,
            GgufError::Truncated {
                offset: 0,
                needed: 4,
                available: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let err = GgufFile::from_bytes(b"").expect_err("empty");
    assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = valid_file();
    let full = GgufFile::from_bytes(&bytes).expect("valid");
    let data_end = full
        .tensor_infos()
        .iter()
        .map(|t| t.file_range().end)
        .max()
        .expect("tensors");
    for len in 0..bytes.len() {
        match GgufFile::from_bytes(&bytes[..len]) {
            Ok(_) => assert!(len >= data_end, "cut at {len} of {data_end} accepted"),
            Err(e) => assert!(
                len < data_end,
                "cut at {len} only removes padding, but: {e}"
            ),
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = valid_file();
    let header_len = GgufFile::from_bytes(&bytes).expect("valid").data_offset() as usize;
    for pos in 0..header_len {
        for flip in [0x01u8, 0x80, 0xFF, 0x7F] {
            let mut corrupt = bytes.clone();
            corrupt[pos] ^= flip;
            // Any outcome but a panic (or an abort from a huge allocation) is fine.
            let _ = GgufFile::from_bytes(&corrupt);
        }
    }
}

#[test]
fn truncated_tensor_data() {
    let bytes = valid_file();
    let full = GgufFile::from_bytes(&bytes).expect("valid");
    let c = full.tensor("c").expect("c").info().file_range();
    let err = GgufFile::from_bytes(&bytes[..c.end - 1]).expect_err("cut inside c");
    match &err {
        GgufError::TensorPastEof {
            tensor,
            start,
            end,
            file_len,
            ..
        } => {
            assert_eq!(tensor, "c");
            assert_eq!(
                (*start, *end, *file_len),
                (c.start as u64, c.end as u64, c.end as u64 - 1)
            );
        }
        other => panic!("expected TensorPastEof, got {other:?}"),
    }
    assert!(err.to_string().contains("truncated download?"), "{err}");
}

#[test]
fn string_length_past_eof() {
    let raw = Raw::header(3, 0, 1).u64(1000).bytes(b"general.name");
    let err = parse(raw).expect_err("key longer than the file");
    match &err {
        GgufError::LengthPastEof {
            offset: 24,
            count: 1000,
            min_bytes_each: 1,
            available: 12,
            what,
            ..
        } => {
            assert_eq!(what, "byte length of key of metadata entry #0")
        }
        other => panic!("expected LengthPastEof, got {other:?}"),
    }

    let raw = Raw::header(3, 0, 1)
        .str("general.name")
        .u32(8)
        .u64(u64::MAX)
        .bytes(b"abc");
    let err = parse(raw).expect_err("value longer than the file");
    assert!(
        matches!(&err, GgufError::LengthPastEof { count: u64::MAX, what, .. } if what == "byte length of value of \"general.name\""),
        "{err:?}"
    );
}

#[test]
fn absurd_array_lengths() {
    // Each would be a multi-terabyte allocation if trusted.
    for (element_type, count) in [
        (4u32, 1u64 << 40),
        (8, 1 << 61),
        (9, u64::MAX),
        (0, u64::MAX),
    ] {
        let raw = Raw::header(3, 0, 1)
            .str("tokenizer.ggml.tokens")
            .u32(9)
            .u32(element_type)
            .u64(count)
            .data(64);
        let err = parse(raw).expect_err("absurd length");
        match &err {
            GgufError::LengthPastEof {
                count: c,
                available: 64,
                what,
                ..
            } => {
                assert_eq!(*c, count);
                assert_eq!(what, "element count of value of \"tokenizer.ggml.tokens\"");
            }
            other => panic!("expected LengthPastEof, got {other:?}"),
        }
    }
}

#[test]
fn absurd_header_counts() {
    let err = parse(Raw::header(3, 0, u64::MAX)).expect_err("kv count");
    assert!(
        matches!(&err, GgufError::LengthPastEof { what, .. } if what == "metadata entry count"),
        "{err:?}"
    );
    let err = parse(Raw::header(3, 1 << 50, 0).data(100)).expect_err("tensor count");
    assert!(
        matches!(&err, GgufError::LengthPastEof { what, .. } if what == "tensor count"),
        "{err:?}"
    );
}

#[test]
fn unknown_ggml_type() {
    for id in [4u32, 31, 99, u32::MAX] {
        let raw = Raw::header(3, 1, 0)
            .tensor("blk.0.attn_q.weight", &[32], id, 0)
            .pad(32)
            .data(64);
        let err = parse(raw).expect_err("unknown type");
        match &err {
            GgufError::UnknownGgmlType {
                tensor, id: got, ..
            } => {
                assert_eq!(tensor, "blk.0.attn_q.weight");
                assert_eq!(*got, id);
            }
            other => panic!("expected UnknownGgmlType, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("unknown ggml type id {id}")),
            "{err}"
        );
    }
}

#[test]
fn misaligned_tensor_offset() {
    let raw = Raw::header(3, 2, 0)
        .tensor("a", &[2], 0, 0)
        .tensor("b", &[2], 0, 8)
        .pad(32)
        .data(64);
    let err = parse(raw).expect_err("misaligned");
    assert!(
        matches!(&err, GgufError::MisalignedTensor { tensor, offset: 8, alignment: 32, .. } if tensor == "b"),
        "{err:?}"
    );
    // The same offset is fine when the file says its alignment is 8.
    let raw = Raw::header(3, 2, 1)
        .kv_u32("general.alignment", 8)
        .tensor("a", &[2], 0, 0)
        .tensor("b", &[2], 0, 8)
        .pad(8)
        .data(16);
    let file = parse(raw).expect("aligned to 8");
    assert_eq!(file.tensor("b").expect("b").info().offset(), 8);
}

#[test]
fn tensor_offset_past_eof_overflow() {
    let raw = Raw::header(3, 1, 0)
        .tensor("a", &[2], 0, u64::MAX - 31)
        .pad(32);
    let err = parse(raw).expect_err("offset overflows");
    assert!(
        matches!(&err, GgufError::TensorPastEof { tensor, .. } if tensor == "a"),
        "{err:?}"
    );
}

#[test]
fn bad_alignment_values() {
    let err = parse(Raw::header(3, 0, 1).kv_u32("general.alignment", 48))
        .expect_err("not a power of two");
    assert!(
        matches!(&err, GgufError::BadAlignment { found, .. } if found.contains("48")),
        "{err:?}"
    );
    let err = parse(Raw::header(3, 0, 1).kv_u32("general.alignment", 0)).expect_err("zero");
    assert!(matches!(&err, GgufError::BadAlignment { .. }), "{err:?}");
    let err = parse(Raw::header(3, 0, 1).kv_str("general.alignment", "32")).expect_err("string");
    assert!(
        matches!(&err, GgufError::BadAlignment { found, .. } if found == "string"),
        "{err:?}"
    );
}

#[test]
fn unknown_value_type() {
    let raw = Raw::header(3, 0, 1).str("general.name").u32(13).u64(0);
    let err = parse(raw).expect_err("type 13");
    assert!(
        matches!(&err, GgufError::UnknownValueType { id: 13, offset: 44, what, .. } if what == "value of \"general.name\""),
        "{err:?}"
    );
}

#[test]
fn duplicates_and_empty_names() {
    let raw = Raw::header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2);
    assert!(matches!(parse(raw), Err(GgufError::DuplicateKey { key, .. }) if key == "k"));
    let raw = Raw::header(3, 0, 1).kv_u32("", 1);
    assert!(matches!(
        parse(raw),
        Err(GgufError::EmptyKey {
            index: 0,
            offset: 24,
            ..
        })
    ));
    let raw = Raw::header(3, 2, 0)
        .tensor("t", &[1], 0, 0)
        .tensor("t", &[1], 0, 32)
        .pad(32)
        .data(64);
    assert!(matches!(parse(raw), Err(GgufError::DuplicateTensor { tensor, .. }) if tensor == "t"));
}

#[test]
fn invalid_utf8() {
    let raw = Raw::header(3, 0, 1)
        .u64(2)
        .bytes(&[0xC3, 0x28])
        .u32(4)
        .u32(0);
    let err = parse(raw).expect_err("bad key");
    assert!(
        matches!(err, GgufError::InvalidUtf8 { offset: 32, .. }),
        "{err:?}"
    );
}

#[test]
fn bad_shapes() {
    let raw = Raw::header(3, 1, 0)
        .tensor("t", &[1, 1, 1, 1, 1], 0, 0)
        .pad(32)
        .data(32);
    assert!(matches!(
        parse(raw),
        Err(GgufError::TooManyDims { n_dims: 5, .. })
    ));

    let raw = Raw::header(3, 1, 0)
        .tensor("q", &[33, 2], GgmlType::Q4_0.id(), 0)
        .pad(32)
        .data(128);
    let err = parse(raw).expect_err("row not a whole block");
    assert!(
        matches!(
            &err,
            GgufError::RowNotBlockMultiple {
                row: 33,
                block_size: 32,
                ggml_type: GgmlType::Q4_0,
                ..
            }
        ),
        "{err:?}"
    );

    for dims in [vec![u64::MAX], vec![1 << 32, 1 << 32], vec![1 << 62, 4]] {
        let raw = Raw::header(3, 1, 0)
            .tensor("huge", &dims, 0, 0)
            .pad(32)
            .data(32);
        let err = parse(raw).expect_err("too large");
        assert!(
            matches!(&err, GgufError::TensorTooLarge { tensor, .. } if tensor == "huge"),
            "{dims:?}: {err:?}"
        );
    }
}

#[test]
fn arrays_nested_too_deep() {
    let mut raw = Raw::header(3, 0, 1).str("deep");
    raw = raw.u32(9); // value type: array
    for _ in 0..MAX_ARRAY_DEPTH + 1 {
        raw = raw.u32(9).u64(1); // an array of one array
    }
    let err = parse(raw.data(64)).expect_err("too deep");
    assert!(
        matches!(&err, GgufError::ArrayTooDeep { key, .. } if key == "deep"),
        "{err:?}"
    );

    // The writer refuses to produce what the reader would refuse.
    let mut value = MetadataArray::U8(vec![1]);
    for _ in 0..MAX_ARRAY_DEPTH {
        value = MetadataArray::Array(vec![value]);
    }
    let mut m = Metadata::new();
    m.set("deep", value);
    assert!(matches!(
        GgufWriter::with_metadata(m).write(Vec::new()),
        Err(GgufError::ArrayTooDeep { .. })
    ));
}

#[test]
fn deepest_allowed_nesting_round_trips() {
    let mut value = MetadataArray::U8(vec![1]);
    for _ in 1..MAX_ARRAY_DEPTH {
        value = MetadataArray::Array(vec![value]);
    }
    let mut m = Metadata::new();
    m.set("deep", value.clone());
    let mut out = Vec::new();
    GgufWriter::with_metadata(m).write(&mut out).expect("write");
    let file = GgufFile::from_bytes(&out).expect("parse");
    assert_eq!(file.metadata().get_array("deep").expect("deep"), &value);
}

#[test]
fn writer_rejects_invalid_tensors() {
    let mut w = GgufWriter::new();
    let err = w
        .add_tensor("t", GgmlType::F32, &[3], vec![0u8; 8])
        .expect_err("size");
    assert!(
        matches!(
            err,
            GgufError::TensorDataSize {
                expected: 12,
                actual: 8,
                ..
            }
        ),
        "{err:?}"
    );
    let err = w
        .add_tensor("q", GgmlType::Q4_K, &[128], vec![0u8; 72])
        .expect_err("half a block");
    assert!(
        matches!(
            err,
            GgufError::RowNotBlockMultiple {
                row: 128,
                block_size: 256,
                ..
            }
        ),
        "{err:?}"
    );
    let err = w
        .add_tensor("d", GgmlType::F32, &[1, 1, 1, 1, 1], vec![0u8; 4])
        .expect_err("dims");
    assert!(
        matches!(err, GgufError::TooManyDims { n_dims: 5, .. }),
        "{err:?}"
    );
    let long = "x".repeat(64);
    let err = w
        .add_tensor(&long, GgmlType::F32, &[1], vec![0u8; 4])
        .expect_err("name");
    assert!(
        matches!(err, GgufError::TensorNameTooLong { len: 64, .. }),
        "{err:?}"
    );
    w.add_tensor(&"x".repeat(63), GgmlType::F32, &[1], vec![0u8; 4])
        .expect("63 bytes is fine");
    w.add_tensor("t", GgmlType::F32, &[1], vec![0u8; 4])
        .expect("first t");
    let err = w
        .add_tensor("t", GgmlType::F32, &[1], vec![0u8; 4])
        .expect_err("duplicate");
    assert!(matches!(err, GgufError::DuplicateTensor { .. }), "{err:?}");

    let mut m = Metadata::new();
    m.set("general.alignment", 48u32);
    assert!(matches!(
        GgufWriter::with_metadata(m).write(Vec::new()),
        Err(GgufError::BadAlignment { .. })
    ));
    let mut m = Metadata::new();
    m.set("general.alignment", 64u64);
    assert!(matches!(
        GgufWriter::with_metadata(m).write(Vec::new()),
        Err(GgufError::BadAlignment { .. })
    ));
    let mut m = Metadata::new();
    m.set("", 1u8);
    assert!(matches!(
        GgufWriter::with_metadata(m).write(Vec::new()),
        Err(GgufError::EmptyKey { .. })
    ));
}

#[test]
fn missing_file_names_the_path() {
    let err = GgufFile::open("/nonexistent/dir/model.gguf").expect_err("missing");
    assert!(
        matches!(&err, GgufError::Io { origin: Origin::File(path), .. } if path.ends_with("model.gguf")),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("/nonexistent/dir/model.gguf: "),
        "{err}"
    );
}
