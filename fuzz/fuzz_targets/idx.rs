//! The IDX reader (MNIST, Fashion-MNIST; plain or gzip) on arbitrary bytes: an error or a
//! dataset, never a panic, never an allocation the header alone asks for.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = genmod::data::idx::parse_bytes(std::path::Path::new("fuzz.idx"), data.to_vec());
});
