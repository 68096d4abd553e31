//! The ggml type table against llama.cpp's values, and the typed metadata getters.

use herd_gguf::{GgmlType, GgufError, Metadata, MetadataValue, OptionalKey, ValueType};

/// (type, id, block size, type size) from llama.cpp: ids from `enum ggml_type`
/// (gguf-py `GGMLQuantizationType`), sizes from `ggml-common.h`'s static asserts
/// (which gguf-py's `GGML_QUANT_SIZES` repeats, except Q8_1: see below).
const LLAMA_CPP: [(GgmlType, u32, usize, usize); 34] = [
    (GgmlType::F32, 0, 1, 4),
    (GgmlType::F16, 1, 1, 2),
    (GgmlType::Q4_0, 2, 32, 18),
    (GgmlType::Q4_1, 3, 32, 20),
    (GgmlType::Q5_0, 6, 32, 22),
    (GgmlType::Q5_1, 7, 32, 24),
    (GgmlType::Q8_0, 8, 32, 34),
    // sizeof(block_q8_1) == 2 * sizeof(ggml_half) + 32; gguf-py still says 40.
    (GgmlType::Q8_1, 9, 32, 36),
    (GgmlType::Q2_K, 10, 256, 84),
    (GgmlType::Q3_K, 11, 256, 110),
    (GgmlType::Q4_K, 12, 256, 144),
    (GgmlType::Q5_K, 13, 256, 176),
    (GgmlType::Q6_K, 14, 256, 210),
    (GgmlType::Q8_K, 15, 256, 292),
    (GgmlType::IQ2_XXS, 16, 256, 66),
    (GgmlType::IQ2_XS, 17, 256, 74),
    (GgmlType::IQ3_XXS, 18, 256, 98),
    (GgmlType::IQ1_S, 19, 256, 50),
    (GgmlType::IQ4_NL, 20, 32, 18),
    (GgmlType::IQ3_S, 21, 256, 110),
    (GgmlType::IQ2_S, 22, 256, 82),
    (GgmlType::IQ4_XS, 23, 256, 136),
    (GgmlType::I8, 24, 1, 1),
    (GgmlType::I16, 25, 1, 2),
    (GgmlType::I32, 26, 1, 4),
    (GgmlType::I64, 27, 1, 8),
    (GgmlType::F64, 28, 1, 8),
    (GgmlType::IQ1_M, 29, 256, 56),
    (GgmlType::BF16, 30, 1, 2),
    (GgmlType::TQ1_0, 34, 256, 54),
    (GgmlType::TQ2_0, 35, 256, 66),
    (GgmlType::MXFP4, 39, 32, 17),
    (GgmlType::NVFP4, 40, 64, 36),
    (GgmlType::Q1_0, 41, 128, 18),
];

#[test]
fn ggml_types_match_llama_cpp() {
    for (t, id, block, size) in LLAMA_CPP {
        assert_eq!(
            (t.id(), t.block_size(), t.type_size()),
            (id, block, size),
            "{t}"
        );
        assert_eq!(GgmlType::from_id(id), Some(t));
        assert_eq!(t.is_quantized(), block > 1);
    }
    assert_eq!(GgmlType::ALL.len(), LLAMA_CPP.len());
    for removed in [4, 5, 31, 32, 33, 36, 37, 38, 42, 1000] {
        assert_eq!(GgmlType::from_id(removed), None, "id {removed}");
    }
}

#[test]
fn ggml_type_names_parse() {
    for t in GgmlType::ALL {
        assert_eq!(t.name().parse::<GgmlType>().expect("own name"), t);
        assert_eq!(
            t.name()
                .to_uppercase()
                .parse::<GgmlType>()
                .expect("upper case"),
            t
        );
    }
    assert_eq!(GgmlType::Q4_K.to_string(), "q4_K");
    assert!(
        matches!("q4_2".parse::<GgmlType>(), Err(GgufError::UnknownTypeName { name }) if name == "q4_2")
    );
}

#[test]
fn bytes_for_counts_whole_blocks() {
    assert_eq!(GgmlType::Q4_K.bytes_for(4096 * 4096), Some(4096 * 16 * 144));
    assert_eq!(GgmlType::BF16.bytes_for(3), Some(6));
    assert_eq!(GgmlType::Q8_0.bytes_for(33), None);
    assert_eq!(GgmlType::F64.bytes_for(u64::MAX), None);
}

#[test]
fn value_type_ids() {
    for id in 0..13 {
        assert_eq!(ValueType::from_id(id).expect("defined").id(), id);
    }
    assert_eq!(ValueType::from_id(13), None);
    assert_eq!(ValueType::from_id(9), Some(ValueType::Array));
}

fn sample() -> Metadata {
    let mut m = Metadata::new();
    m.set("general.architecture", "llama");
    m.set("llama.block_count", 16u32);
    m.set("small", 7u8);
    m.set("wide", 128_256u64);
    m.set("huge", u64::MAX);
    m.set("negative", -1i32);
    m.set("eps", 1e-5f32);
    m.set("theta", 500_000.0f64);
    m.set("flag", true);
    m.set("tokens", vec!["a", "b"]);
    m.set("types", vec![1i32, 3]);
    m.set("scores", vec![0.5f32]);
    m
}

#[test]
fn integer_getters_accept_any_width_that_fits() {
    let m = sample();
    assert_eq!(m.get_u32("llama.block_count").expect("u32"), 16);
    assert_eq!(m.get_u32("small").expect("u8 as u32"), 7);
    assert_eq!(m.get_u32("wide").expect("u64 as u32"), 128_256);
    assert_eq!(m.get_usize("wide").expect("usize"), 128_256);
    assert_eq!(m.get_i64("negative").expect("i32 as i64"), -1);
    assert_eq!(m.get_i32("small").expect("u8 as i32"), 7);
    assert_eq!(m.get_u64("huge").expect("u64"), u64::MAX);
    match m.get_u32("huge") {
        Err(GgufError::OutOfRange { key, value, target }) => {
            assert_eq!(
                (key.as_str(), value, target),
                ("huge", i128::from(u64::MAX), "u32")
            )
        }
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    assert!(matches!(
        m.get_u64("negative"),
        Err(GgufError::OutOfRange { value: -1, .. })
    ));
    let err = m.get_i64("huge").expect_err("too big for i64");
    assert_eq!(
        err.to_string(),
        "metadata key \"huge\" is 18446744073709551615, which does not fit in i64"
    );
}

#[test]
fn wrong_type_and_missing_key_errors_name_the_key() {
    let m = sample();
    let err = m
        .get_u32("general.architecture")
        .expect_err("string is not a number");
    assert!(
        matches!(&err, GgufError::WrongType { key, expected: "u32", found } if key == "general.architecture" && found == "string"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "metadata key \"general.architecture\" should be u32, found string"
    );
    let err = m.get_array_str("types").expect_err("i32 array");
    assert_eq!(
        err.to_string(),
        "metadata key \"types\" should be array of string, found array of i32"
    );
    let err = m.get_str("tokens").expect_err("array");
    assert!(
        matches!(&err, GgufError::WrongType { found, .. } if found == "array of string"),
        "{err:?}"
    );
    let err = m.get_f32("flag").expect_err("bool");
    assert!(
        matches!(
            &err,
            GgufError::WrongType {
                expected: "f32",
                ..
            }
        ),
        "{err:?}"
    );
    let err = m.get_u32("llama.context_length").expect_err("missing");
    assert_eq!(
        err.to_string(),
        "metadata key \"llama.context_length\" is missing"
    );
}

#[test]
fn float_bool_string_and_array_getters() {
    let m = sample();
    assert_eq!(m.architecture().expect("architecture"), "llama");
    assert_eq!(m.get_f32("eps").expect("f32"), 1e-5);
    assert_eq!(m.get_f32("theta").expect("f64 as f32"), 500_000.0);
    assert_eq!(m.get_f64("eps").expect("f32 as f64"), f64::from(1e-5f32));
    assert!(m.get_bool("flag").expect("bool"));
    assert_eq!(m.get_array_str("tokens").expect("strings"), ["a", "b"]);
    assert_eq!(m.get_array_i32("types").expect("i32s"), [1, 3]);
    assert_eq!(m.get_array_f32("scores").expect("f32s"), [0.5]);
    assert_eq!(m.get_array("tokens").expect("array").len(), 2);
}

#[test]
fn optional_keeps_only_real_errors() {
    let m = sample();
    assert_eq!(
        m.get_f32("llama.rope.scaling.factor")
            .optional()
            .expect("absent is fine"),
        None
    );
    assert_eq!(
        m.get_u32("llama.block_count").optional().expect("present"),
        Some(16)
    );
    assert!(
        m.get_u32("general.architecture").optional().is_err(),
        "wrong type is still an error"
    );
}

#[test]
fn set_replaces_in_place_and_remove_keeps_order() {
    let mut m = sample();
    m.set("small", 9u8);
    let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
    assert_eq!(keys[2], "small", "replaced in place");
    assert_eq!(m.get("small"), Some(&MetadataValue::U8(9)));
    assert_eq!(m.remove("llama.block_count"), Some(MetadataValue::U32(16)));
    assert_eq!(m.remove("llama.block_count"), None);
    let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
    assert_eq!(keys[..3], ["general.architecture", "small", "wide"]);
    assert_eq!(
        m.get_u64("wide").expect("index still right after remove"),
        128_256
    );
    assert_eq!(
        m.get_array_f32("scores").expect("last entry still found"),
        [0.5]
    );
    assert!(!m.contains_key("llama.block_count"));
    assert_eq!(m.len(), 11);
}
