//! Feeds arbitrary bytes to the GGUF parser. It must return an error or a
//! file, never panic, and never allocate more than the input justifies
//! (libFuzzer's `-rss_limit_mb` catches that). A parsed file's accessors are
//! exercised too, since they rely on what the parser validated.
#![no_main]

use herd_gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data) else {
        return;
    };
    let _ = file.architecture();
    for (key, value) in file.metadata().iter() {
        let _ = (key.len(), format!("{value:?}").len());
    }
    for tensor in file.tensors() {
        let info = tensor.info();
        let _ = (info.n_elements(), tensor.data().len(), file.tensor(info.name()).is_some());
    }
});
