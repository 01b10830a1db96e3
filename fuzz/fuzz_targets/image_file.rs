//! One file of an image folder (PNG or JPEG, format guessed from the bytes), decoded and
//! centre-cropped to 16x16, on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(chw) = genmod::data::image_folder::decode_square(data, 16) {
        assert_eq!(chw.len(), 3 * 16 * 16);
    }
});
