//! Write → read round trips: every metadata type, tensors of several ggml
//! types, alignment, lazy tensors, atomic writes, shared tensor bytes.

use herd_gguf::{
    dump, GgmlType, GgufError, GgufFile, GgufWriter, Metadata, MetadataArray, MetadataValue,
    Origin, ValueType,
};

/// One entry of every value type, arrays of every element type (including
/// empty and nested ones), in a deliberate non-alphabetical order.
fn every_value() -> Metadata {
    let mut m = Metadata::new();
    m.set("general.architecture", "llama");
    m.set("t.u8", 200u8);
    m.set("t.i8", -100i8);
    m.set("t.u16", 60_000u16);
    m.set("t.i16", -30_000i16);
    m.set("t.u32", 4_000_000_000u32);
    m.set("t.i32", -2_000_000_000i32);
    m.set("t.u64", u64::MAX);
    m.set("t.i64", i64::MIN);
    m.set("t.f32", 1.5e-5f32);
    m.set("t.f32_inf", f32::INFINITY);
    m.set("t.f64", -2.25e300f64);
    m.set("t.bool_true", true);
    m.set("t.bool_false", false);
    m.set("t.str", "héllo\n\"wörld\" 🦙");
    m.set("t.str_empty", "");
    m.set("a.u8", vec![0u8, 1, 255]);
    m.set("a.i8", vec![-128i8, 0, 127]);
    m.set("a.u16", vec![0u16, 65_535]);
    m.set("a.i16", vec![-32_768i16, 32_767]);
    m.set("a.u32", vec![1u32, 2, 3]);
    m.set("a.i32", vec![-1i32, 0, 1]);
    m.set("a.u64", vec![u64::MAX, 0]);
    m.set("a.i64", vec![i64::MIN, i64::MAX]);
    m.set("a.f32", vec![0.5f32, -1.0, 3.25]);
    m.set("a.f64", vec![1e-300f64, 2.0]);
    m.set("a.bool", vec![true, false, true]);
    m.set("a.str", vec!["Ġthe", "", "<|eot_id|>"]);
    m.set("a.empty_str", Vec::<String>::new());
    m.set("a.empty_f32", Vec::<f32>::new());
    m.set(
        "a.nested",
        vec![
            MetadataArray::from(vec![1u32, 2]),
            MetadataArray::from(vec!["x".to_string()]),
            MetadataArray::Array(vec![
                MetadataArray::from(vec![true]),
                MetadataArray::I8(vec![]),
            ]),
            MetadataArray::F64(vec![]),
        ],
    );
    m.set("a.empty_nested", MetadataArray::Array(vec![]));
    m.set("z.last", 7u32);
    m
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Deterministic filler so every tensor's bytes differ.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// (name, type, dims) of the test tensors; sizes chosen so most are not
/// multiples of 32 and need padding.
fn tensor_specs() -> Vec<(&'static str, GgmlType, Vec<u64>)> {
    vec![
        ("token_embd.weight", GgmlType::F32, vec![4, 3]),
        ("rope_freqs.weight", GgmlType::F32, vec![5]),
        ("blk.0.attn_norm.weight", GgmlType::F16, vec![7]),
        ("blk.0.attn_q.weight", GgmlType::BF16, vec![16, 2]),
        ("blk.0.attn_k.weight", GgmlType::Q4_0, vec![64, 2]),
        ("blk.0.attn_v.weight", GgmlType::Q8_0, vec![32, 1, 1]),
        ("blk.0.ffn_up.weight", GgmlType::Q4_K, vec![256, 3]),
        ("blk.0.ffn_down.weight", GgmlType::Q6_K, vec![512]),
        ("blk.0.ffn_gate.weight", GgmlType::Q5_K, vec![256, 1, 1, 2]),
        ("pos.ids", GgmlType::I32, vec![3]),
        ("scalar", GgmlType::F64, vec![]),
    ]
}

fn size_of(t: GgmlType, dims: &[u64]) -> usize {
    let n: u64 = dims.iter().product();
    t.bytes_for(n).expect("test shapes are whole blocks") as usize
}

/// Writes metadata + tensors to memory and returns the bytes and the tensors' data.
fn write_sample(metadata: Metadata) -> (Vec<u8>, Vec<Vec<u8>>) {
    let specs = tensor_specs();
    let datas: Vec<Vec<u8>> = specs
        .iter()
        .enumerate()
        .map(|(i, (_, t, dims))| pattern(size_of(*t, dims), i as u8))
        .collect();
    let mut w = GgufWriter::with_metadata(metadata);
    for ((name, t, dims), data) in specs.iter().zip(&datas) {
        w.add_tensor(name, *t, dims, &data[..])
            .expect("valid tensor");
    }
    let mut out = Vec::new();
    let n = w.write(&mut out).expect("write to memory");
    assert_eq!(n as usize, out.len());
    (out, datas)
}

fn check_tensors(file: &GgufFile, datas: &[Vec<u8>], alignment: u64) {
    let specs = tensor_specs();
    assert_eq!(file.tensor_infos().len(), specs.len());
    assert_eq!(file.alignment(), alignment);
    assert_eq!(file.data_offset() % alignment, 0, "data section is aligned");
    let mut expected_offset = 0u64;
    for ((name, t, dims), data) in specs.iter().zip(datas) {
        let tensor = file
            .tensor(name)
            .unwrap_or_else(|| panic!("tensor {name} present"));
        let info = tensor.info();
        assert_eq!(info.name(), *name);
        assert_eq!(info.ggml_type(), *t);
        assert_eq!(info.dims(), &dims[..]);
        assert_eq!(info.n_elements(), dims.iter().product::<u64>());
        assert_eq!(info.n_bytes(), data.len());
        assert_eq!(info.offset() % alignment, 0, "{name} offset aligned");
        // llama.cpp requires offsets to be exactly the running padded sizes.
        assert_eq!(
            info.offset(),
            expected_offset,
            "{name} packed like llama.cpp writes it"
        );
        expected_offset = (info.offset() + data.len() as u64).next_multiple_of(alignment);
        let range = info.file_range();
        assert_eq!(range.start as u64, file.data_offset() + info.offset());
        assert_eq!(tensor.data(), &data[..], "{name} data");
        assert_eq!(&file.bytes()[range], &data[..]);
    }
    assert_eq!(
        file.bytes().len() as u64,
        file.data_offset() + expected_offset,
        "file ends padded"
    );
    let names: Vec<&str> = file.tensors().map(|t| t.info().name()).collect();
    let expected: Vec<&str> = specs.iter().map(|s| s.0).collect();
    assert_eq!(names, expected, "file order kept");
}

#[test]
fn every_metadata_type_round_trips() {
    let metadata = every_value();
    let (bytes, _) = write_sample(metadata.clone());
    let file = GgufFile::from_bytes(&bytes).expect("parse");
    assert_eq!(file.version(), 3);
    assert_eq!(file.metadata(), &metadata);
    let keys: Vec<&str> = file.metadata().iter().map(|(k, _)| k).collect();
    let expected: Vec<&str> = metadata.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, expected, "file order kept");
    assert_eq!(file.architecture().expect("architecture"), "llama");
    assert_eq!(
        file.metadata().get("t.str_empty"),
        Some(&MetadataValue::String(String::new()))
    );
    let nested = file.metadata().get_array("a.nested").expect("nested array");
    assert_eq!(nested.element_type(), ValueType::Array);
    assert_eq!(nested.len(), 4);
    assert_eq!(file.origin(), &Origin::Memory);
}

#[test]
fn tensors_round_trip_with_default_alignment() {
    let (bytes, datas) = write_sample(every_value());
    let file = GgufFile::from_bytes(&bytes).expect("parse");
    check_tensors(&file, &datas, 32);
    // from_bytes keeps data 8-byte aligned, like a map, so f32/f64 views work.
    for t in file.tensors() {
        assert_eq!(
            t.data().as_ptr() as usize % 8,
            0,
            "{} aligned in memory",
            t.info().name()
        );
    }
    let freqs = file.tensor("rope_freqs.weight").expect("rope_freqs");
    assert_eq!(freqs.data().len(), 20);
}

#[test]
fn tensors_round_trip_with_custom_alignments() {
    for alignment in [1u32, 8, 64, 4096] {
        let mut m = Metadata::new();
        m.set("general.alignment", alignment);
        let (bytes, datas) = write_sample(m);
        let file = GgufFile::from_bytes(&bytes).expect("parse");
        check_tensors(&file, &datas, u64::from(alignment));
    }
}

#[test]
fn parsed_files_and_shared_bytes_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GgufFile>();
    send_sync::<herd_gguf::TensorBytes>();
    send_sync::<herd_gguf::FileBytes>();
    send_sync::<GgufError>();
}

#[test]
fn debug_output_stays_short() {
    let mut m = every_value();
    m.set(
        "tokenizer.ggml.tokens",
        vec!["tok"; 100_000]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
    );
    let (bytes, _) = write_sample(m);
    let file = GgufFile::from_bytes(&bytes).expect("parse");
    let debug = format!("{file:?}");
    assert!(debug.len() < 500, "{debug}");
}

#[test]
fn empty_file_round_trips() {
    let mut out = Vec::new();
    GgufWriter::new().write(&mut out).expect("write");
    assert_eq!(out.len(), 32, "24-byte header padded to 32");
    let file = GgufFile::from_bytes(&out).expect("parse");
    assert!(file.metadata().is_empty());
    assert_eq!(file.tensors().len(), 0);
}

#[test]
fn version_2_files_are_read() {
    let (mut bytes, datas) = write_sample(every_value());
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let file = GgufFile::from_bytes(&bytes).expect("v2 has the v3 layout");
    assert_eq!(file.version(), 2);
    check_tensors(&file, &datas, 32);
}

#[test]
fn lazy_tensors_are_produced_in_turn() {
    let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let expected = data.clone();
    let mut w = GgufWriter::new();
    w.add_tensor("a", GgmlType::F32, &[4], data.clone())
        .expect("owned data");
    w.add_tensor_with("b", GgmlType::F32, &[4], move || {
        Ok::<_, std::io::Error>(data)
    })
    .expect("lazy");
    let mut out = Vec::new();
    w.write(&mut out).expect("write");
    let file = GgufFile::from_bytes(&out).expect("parse");
    assert_eq!(file.tensor("a").expect("a").data(), &expected[..]);
    assert_eq!(file.tensor("b").expect("b").data(), &expected[..]);
}

#[test]
fn lazy_tensor_of_wrong_size_is_rejected() {
    let mut w = GgufWriter::new();
    w.add_tensor_with("b", GgmlType::Q8_0, &[64], || {
        Ok::<_, std::io::Error>(vec![0; 34])
    })
    .expect("declared");
    match w.write(Vec::new()) {
        Err(GgufError::TensorDataSize {
            tensor,
            expected: 68,
            actual: 34,
            ..
        }) => assert_eq!(tensor, "b"),
        other => panic!("expected TensorDataSize, got {other:?}"),
    }
}

#[test]
fn write_to_path_is_atomic_and_mapped_bytes_outlive_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.gguf");
    let mut m = every_value();
    m.set("general.name", "first");
    let specs = tensor_specs();
    let datas: Vec<Vec<u8>> = specs
        .iter()
        .map(|(_, t, dims)| pattern(size_of(*t, dims), 9))
        .collect();
    let mut w = GgufWriter::with_metadata(m);
    for ((name, t, dims), data) in specs.iter().zip(&datas) {
        w.add_tensor(name, *t, dims, &data[..])
            .expect("valid tensor");
    }
    let written = w.write_to_path(&path).expect("write");
    assert_eq!(std::fs::metadata(&path).expect("exists").len(), written);

    let file = GgufFile::open(&path).expect("open");
    assert_eq!(file.origin(), &Origin::File(path.clone()));
    check_tensors(&file, &datas, 32);
    let map = file.mmap_arc().expect("open maps the file");
    let shared = file.tensor("blk.0.ffn_up.weight").expect("tensor").share();
    let range = file
        .tensor("blk.0.ffn_up.weight")
        .expect("tensor")
        .info()
        .file_range();
    drop(file);
    assert_eq!(&shared[..], &datas[6][..], "bytes survive the GgufFile");
    assert_eq!(shared.range(), range);
    assert_eq!(&map[range], &datas[6][..]);

    // Overwriting goes through a temporary file: the old map still sees old bytes
    // (rename replaces the directory entry, not the mapped inode).
    let mut m2 = Metadata::new();
    m2.set("general.name", "second");
    GgufWriter::with_metadata(m2)
        .write_to_path(&path)
        .expect("overwrite");
    assert_eq!(&shared[..], &datas[6][..]);
    let reopened = GgufFile::open(&path).expect("reopen");
    assert_eq!(
        reopened.metadata().get_str("general.name").expect("name"),
        "second"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}

#[test]
fn failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor("ok", GgmlType::F32, &[1], vec![0u8; 4])
        .expect("tensor");
    w.add_tensor_with("bad", GgmlType::F32, &[1], || {
        Err::<Vec<u8>, _>("quantizer exploded")
    })
    .expect("declared");
    let err = w.write_to_path(&path).expect_err("producer fails");
    assert!(
        matches!(&err, GgufError::TensorSource { tensor, origin: Origin::File(p), .. } if tensor == "bad" && p == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains("quantizer exploded"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("list").count(),
        0,
        "no file, no temporary"
    );
}

#[test]
fn dump_lists_metadata_and_tensors() {
    let mut m = every_value();
    m.set("tokenizer.chat_template", "x".repeat(500));
    let (bytes, _) = write_sample(m);
    let file = GgufFile::from_bytes(&bytes).expect("parse");
    let text = dump(&file);
    assert!(
        text.starts_with("GGUF v3: 34 metadata entries, 11 tensors, alignment 32"),
        "{text}"
    );
    assert!(text.contains("general.architecture"), "{text}");
    assert!(text.contains("string \"llama\""), "{text}");
    assert!(
        text.contains("[string; 3] [\"Ġthe\", \"\", \"<|eot_id|>\"]"),
        "{text}"
    );
    assert!(text.contains("(500 bytes)"), "long strings are cut: {text}");
    assert!(text.contains("blk.0.ffn_up.weight"), "{text}");
    assert!(text.contains("q4_K"), "{text}");
    assert!(text.contains("256 x 3"), "{text}");
    assert!(text.lines().all(|l| l.len() < 200), "short lines: {text}");
}
