//! The CIFAR-10 binary reader (3073-byte records) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    let _ = genmod::data::cifar10::parse_records(
        std::path::Path::new("fuzz.bin"),
        data,
        &mut pixels,
        &mut labels,
    );
});
