//! Hand-assembled GGUF bytes, for files the writer refuses to produce.

#![allow(dead_code)] // each test binary uses a different part

/// A little-endian byte builder that knows the GGUF primitives.
#[derive(Default)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// Magic, version and the two counts.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        Raw::default()
            .bytes(b"GGUF")
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }

    pub fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }

    pub fn u32(self, v: u32) -> Raw {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u64(self, v: u64) -> Raw {
        self.bytes(&v.to_le_bytes())
    }

    /// A GGUF string: u64 length, bytes.
    pub fn str(self, s: &str) -> Raw {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }

    /// A metadata entry with a u32 value.
    pub fn kv_u32(self, key: &str, v: u32) -> Raw {
        self.str(key).u32(4).u32(v)
    }

    /// A metadata entry with a string value.
    pub fn kv_str(self, key: &str, v: &str) -> Raw {
        self.str(key).u32(8).str(v)
    }

    /// A tensor info.
    pub fn tensor(self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(type_id).u64(offset)
    }

    /// Zero bytes up to a multiple of `alignment`.
    pub fn pad(self, alignment: usize) -> Raw {
        let n = self.0.len().next_multiple_of(alignment) - self.0.len();
        self.bytes(&vec![0; n])
    }

    /// `n` bytes of tensor data.
    pub fn data(self, n: usize) -> Raw {
        self.bytes(&vec![0xAB; n])
    }
}
