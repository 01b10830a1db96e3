//! The data layer on real files the tests write: every loader, every bad case named in the
//! foundation issue, downloads from a real HTTP server on 127.0.0.1, and property tests that
//! feed the readers arbitrary bytes.

use genmod::data::{
    DataError, DataSource, PixelScale, cifar10, download, idx, image_folder, mnist,
};
use proptest::prelude::*;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

// ---------------------------------------------------------------- IDX

#[test]
fn idx_round_trips_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8 * 7).collect();
    for gz in [false, true] {
        let p = dir.path().join(format!("a{gz}.idx"));
        idx::write(&p, &[2, 3, 4], &data, gz).unwrap();
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(raw[..2] == [0x1f, 0x8b], gz, "gzip flag not honoured");
        let back = idx::read(&p).unwrap();
        assert_eq!(back.dims, vec![2, 3, 4]);
        assert_eq!(back.data, data);
    }
}

#[test]
fn idx_wrong_magic_names_file_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad-magic");
    write(&p, &[0x12, 0x34, 0x08, 0x01, 0, 0, 0, 0]);
    let e = idx::read(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BadMagic {
                found: 0x12340801,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("bad-magic") && msg.contains("0x12340801"),
        "{msg}"
    );
}

#[test]
fn idx_truncated_data_names_offset_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("short");
    write(&p, &idx_bytes(&[3, 2, 2], &[1; 10]));
    let msg = idx::read(&p).unwrap_err().to_string();
    assert!(msg.contains("short"), "{msg}");
    assert!(
        msg.contains("offset 26") && msg.contains("12 data bytes") && msg.contains("found 10"),
        "{msg}"
    );
}

#[test]
fn idx_truncated_header_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("hdr");
    write(&p, &[0, 0, 8, 3, 0, 0, 0, 1, 0, 0]);
    let msg = idx::read(&p).unwrap_err().to_string();
    assert!(
        msg.contains("truncated at offset 10") && msg.contains("3 big-endian u32 dimensions"),
        "{msg}"
    );
}

#[test]
fn idx_trailing_bytes_are_not_silently_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("long");
    write(&p, &idx_bytes(&[2], &[1, 2, 3]));
    let msg = idx::read(&p).unwrap_err().to_string();
    assert!(
        msg.contains("1 unexpected bytes after the data at offset 10"),
        "{msg}"
    );
}

#[test]
fn idx_non_byte_types_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("floats");
    write(&p, &[0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    let msg = idx::read(&p).unwrap_err().to_string();
    assert!(msg.contains("0x0d") && msg.contains("f32"), "{msg}");
}

#[test]
fn idx_corrupt_gzip_is_an_error_not_a_short_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.gz");
    let full = gzip(&idx_bytes(&[100], &[7; 100]));
    write(&p, &full[..full.len() / 2]);
    let msg = idx::read(&p).unwrap_err().to_string();
    assert!(msg.contains("cut.gz") && msg.contains("gzip"), "{msg}");
}

// ---------------------------------------------------------------- MNIST

fn write_mnist_dir(dir: &Path, n_train: usize, n_test: usize, gz: bool) {
    for (part, n) in [("train", n_train), ("t10k", n_test)] {
        let imgs: Vec<u8> = (0..n * 4 * 5).map(|v| (v % 251) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let suffix = if gz { ".gz" } else { "" };
        idx::write(
            &dir.join(format!("{part}-images-idx3-ubyte{suffix}")),
            &[n, 4, 5],
            &imgs,
            gz,
        )
        .unwrap();
        idx::write(
            &dir.join(format!("{part}-labels-idx1-ubyte{suffix}")),
            &[n],
            &labels,
            gz,
        )
        .unwrap();
    }
}

#[test]
fn mnist_folder_loads_plain_and_gzip() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_mnist_dir(dir.path(), 12, 7, gz);
        let split = mnist::load_dir(dir.path(), mnist::Variant::FashionMnist).unwrap();
        assert_eq!(split.train.shape(), [12, 1, 4, 5]);
        assert_eq!(split.test.shape(), [7, 1, 4, 5]);
        assert_eq!(split.train.labels().unwrap()[11], 1);
        assert_eq!(split.train.image(1)[0], 20);
        assert_eq!(split.train.class_names().unwrap()[9], "Ankle boot");
    }
}

#[test]
fn mnist_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist_dir(dir.path(), 3, 3, false);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let msg = mnist::load_dir(dir.path(), mnist::Variant::Mnist)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
}

#[test]
fn mnist_label_count_must_match_images() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist_dir(dir.path(), 5, 3, false);
    idx::write(
        &dir.path().join("train-labels-idx1-ubyte"),
        &[4],
        &[0, 1, 2, 3],
        false,
    )
    .unwrap();
    let msg = mnist::load_dir(dir.path(), mnist::Variant::Mnist)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("4 labels") && msg.contains("5 images"),
        "{msg}"
    );
}

#[test]
fn mnist_label_out_of_range_names_record_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist_dir(dir.path(), 5, 3, false);
    idx::write(
        &dir.path().join("train-labels-idx1-ubyte"),
        &[5],
        &[0, 1, 2, 10, 3],
        false,
    )
    .unwrap();
    let e = mnist::load_dir(dir.path(), mnist::Variant::Mnist).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                record: 3,
                offset: 11,
                label: 10,
                max: 9,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn mnist_images_must_be_three_dimensional() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist_dir(dir.path(), 2, 2, false);
    idx::write(
        &dir.path().join("train-images-idx3-ubyte"),
        &[2, 20],
        &[0; 40],
        false,
    )
    .unwrap();
    let msg = mnist::load_dir(dir.path(), mnist::Variant::Mnist)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("expected 3 dimensions"), "{msg}");
}

/// Counts per class straight from a raw (gzip) IDX label file, independent of the loader.
fn raw_label_counts(gz: &[u8]) -> (Vec<u32>, Vec<usize>) {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut raw).unwrap();
    let ndim = raw[3] as usize;
    let dims: Vec<u32> = (0..ndim)
        .map(|d| u32::from_be_bytes(raw[4 + 4 * d..8 + 4 * d].try_into().unwrap()))
        .collect();
    let mut counts = vec![0; 10];
    if ndim == 1 {
        for &y in &raw[4 + 4 * ndim..] {
            counts[y as usize] += 1;
        }
    }
    (dims, counts)
}

#[test]
fn embedded_digits_match_their_idx_headers_and_published_counts() {
    let split = mnist::embedded();
    let files = mnist::embedded_files();
    let (train_img_dims, _) = raw_label_counts(files[0].1);
    let (train_lbl_dims, train_counts) = raw_label_counts(files[1].1);
    let (test_img_dims, _) = raw_label_counts(files[2].1);
    let (_, test_counts) = raw_label_counts(files[3].1);
    assert_eq!(train_img_dims, vec![8004, 28, 28]);
    assert_eq!(train_lbl_dims, vec![8004]);
    assert_eq!(test_img_dims, vec![1996, 28, 28]);
    assert_eq!(split.train.shape(), [8004, 1, 28, 28]);
    assert_eq!(split.test.shape(), [1996, 1, 28, 28]);
    assert_eq!(split.train.class_counts().unwrap(), train_counts);
    assert_eq!(split.test.class_counts().unwrap(), test_counts);
    // The counts published in shared/data/mnist-10k/README.md.
    assert_eq!(
        train_counts,
        vec![801, 902, 793, 826, 784, 691, 812, 856, 756, 783]
    );
    assert_eq!(
        test_counts,
        vec![200, 225, 198, 206, 196, 172, 202, 214, 188, 195]
    );
}

#[test]
fn embedded_files_have_published_checksums() {
    let want = [
        "6025a5f0ce80ab80f06039ad969a4861901afea3169f7578765391b4c2431051",
        "822f0961e8e4ec4e1658f36fbd4662013a9256190863fd2da32eada65dcc8841",
        "41069132102ba65adc64bc8cbbb2c3d6ecf561fc3a7f447ec6e1e803aa6ed5cd",
        "26ccd4b1f3101471bd8b039b5d237fd2d4b45f7f46a7e3f913de4a792b9dc925",
    ];
    let dir = tempfile::tempdir().unwrap();
    for ((name, bytes), sha) in mnist::embedded_files().iter().zip(want) {
        let p = dir.path().join(name);
        write(&p, bytes);
        assert_eq!(download::sha256_file(&p).unwrap(), sha, "{name}");
    }
}

#[test]
fn cli_data_info_prints_shape_and_counts_from_the_headers() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_genmod"))
        .args(["data", "info"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let files = mnist::embedded_files();
    for (part, img, lbl) in [("train", 0, 1), ("test", 2, 3)] {
        let (dims, _) = raw_label_counts(files[img].1);
        let (_, counts) = raw_label_counts(files[lbl].1);
        let shape = format!(
            "{part}: {} images, 1 x {} x {} u8",
            dims[0], dims[1], dims[2]
        );
        assert!(text.contains(&shape), "missing `{shape}` in:\n{text}");
        let cells: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(k, c)| format!("{k}:{c}"))
            .collect();
        assert!(
            text.contains(&cells.join(" ")),
            "missing counts of {part} in:\n{text}"
        );
    }
}

#[test]
fn cli_unknown_dataset_suggests_the_closest_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_genmod"))
        .args(["data", "info", "--dataset", "fashion-mnst"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean `fashion-mnist`"), "{err}");
}

#[test]
fn missing_data_dir_is_named() {
    let e =
        DataSource::from_name("mnist", Some(Path::new("/no/such/folder")), 28, None).unwrap_err();
    assert!(e.to_string().contains("/no/such/folder"), "{e}");
    let e = DataSource::from_name("cifar10", None, 32, None).unwrap_err();
    assert!(e.to_string().contains("--data-dir"), "{e}");
}

// ---------------------------------------------------------------- Dataset

#[test]
fn batches_are_seeded_cover_every_image_once_and_respect_drop_last() {
    let split = mnist::embedded();
    let ds = split.test.take(100);
    let dev = candle_core::Device::Cpu;
    let order = |seed, epoch| -> Vec<usize> {
        ds.batches(32, seed, epoch, PixelScale::ZeroOne, false, &dev)
            .flat_map(|b| b.unwrap().indices)
            .collect()
    };
    let a = order(7, 0);
    assert_eq!(
        a,
        order(7, 0),
        "same seed and epoch must replay the same order"
    );
    assert_ne!(a, order(7, 1), "a new epoch must reshuffle");
    assert_ne!(a, order(8, 0), "a new seed must reshuffle");
    assert_eq!(a.iter().copied().collect::<HashSet<_>>().len(), 100);
    let sizes: Vec<usize> = ds
        .batches(32, 7, 0, PixelScale::ZeroOne, true, &dev)
        .map(|b| b.unwrap().indices.len())
        .collect();
    assert_eq!(sizes, vec![32, 32, 32]);
}

#[test]
fn batch_tensors_hold_scaled_pixels_and_labels() {
    let split = mnist::embedded();
    let ds = &split.test;
    let dev = candle_core::Device::Cpu;
    let b = ds
        .batches(4, 1, 0, PixelScale::MinusOneOne, false, &dev)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(b.images.dims(), &[4, 1, 28, 28]);
    let first = b
        .images
        .get(0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let raw = ds.image(b.indices[0]);
    for (v, &p) in first.iter().zip(raw) {
        assert!((v - (p as f32 / 127.5 - 1.0)).abs() < 1e-6);
    }
    let labels = b.labels.unwrap().to_vec1::<u32>().unwrap();
    assert_eq!(labels[2], ds.labels().unwrap()[b.indices[2]]);
}

#[test]
fn split_is_seeded_disjoint_and_complete() {
    let ds = mnist::embedded().test.take(50);
    let s = ds.split(0.2, 3);
    assert_eq!((s.train.len(), s.test.len()), (40, 10));
    let s2 = ds.split(0.2, 3);
    assert_eq!(s.test.pixels(), s2.test.pixels());
}

// ---------------------------------------------------------------- CIFAR-10

fn cifar_record(label: u8, seed: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..3072).map(|i| (i as u8).wrapping_mul(seed)));
    r
}

fn write_cifar_dir(dir: &Path, per_file: usize) {
    for (f, name) in cifar10::TRAIN_FILES
        .iter()
        .chain([&cifar10::TEST_FILE])
        .enumerate()
    {
        let mut bytes = Vec::new();
        for i in 0..per_file {
            bytes.extend(cifar_record(((f + i) % 10) as u8, (f * 10 + i) as u8));
        }
        write(&dir.join(name), &bytes);
    }
}

#[test]
fn cifar_loads_planes_in_channel_order() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&nested).unwrap();
    write_cifar_dir(&nested, 3);
    let split = cifar10::load_dir(dir.path()).unwrap();
    assert_eq!(split.train.shape(), [15, 3, 32, 32]);
    assert_eq!(split.test.shape(), [3, 3, 32, 32]);
    assert_eq!(split.train.labels().unwrap()[..4], [0, 1, 2, 1]);
    // Image 4 is file 1, record 1: byte i of the record's pixels is i * 11.
    let img = split.train.image(4);
    assert_eq!(img[1024 + 5], (1029u32 * 11 % 256) as u8);
    assert_eq!(split.test.class_names().unwrap()[3], "cat");
}

#[test]
fn cifar_truncated_record_names_record_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar_dir(dir.path(), 2);
    let p = dir.path().join("data_batch_3.bin");
    let mut b = std::fs::read(&p).unwrap();
    b.truncate(3073 + 100);
    write(&p, &b);
    let msg = cifar10::load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("data_batch_3.bin")
            && msg.contains("offset 3073")
            && msg.contains("record 1 has only 100 bytes"),
        "{msg}"
    );
}

#[test]
fn cifar_bad_label_names_record() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar_dir(dir.path(), 2);
    let p = dir.path().join("test_batch.bin");
    let mut b = std::fs::read(&p).unwrap();
    b[3073] = 12;
    write(&p, &b);
    let e = cifar10::load_dir(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                record: 1,
                offset: 3073,
                label: 12,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn cifar_missing_batch_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar_dir(dir.path(), 1);
    std::fs::remove_file(dir.path().join("data_batch_5.bin")).unwrap();
    let msg = cifar10::load_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("data_batch_5.bin"), "{msg}");
}

// ---------------------------------------------------------------- image folders

fn save_rgb(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    img.save(path).unwrap();
}

#[test]
fn image_folder_crops_centre_resizes_and_skips_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    // 30 wide x 10 high: left third red, middle third green, right third blue.
    // The centre square is the green third.
    save_rgb(&dir.path().join("a.png"), 30, 10, |x, _| match x / 10 {
        0 => [255, 0, 0],
        1 => [0, 255, 0],
        _ => [0, 0, 255],
    });
    save_rgb(&dir.path().join("b.jpg"), 16, 40, |_, y| {
        if y < 20 { [250, 250, 250] } else { [0, 0, 0] }
    });
    write(&dir.path().join("c.png"), b"this is not a png");
    write(&dir.path().join("notes.txt"), b"ignored: not an image name");
    let (ds, report) = image_folder::load(dir.path(), 8, None).unwrap();
    assert_eq!(ds.shape(), [2, 3, 8, 8]);
    assert_eq!(report.loaded, 2);
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].0.ends_with("c.png"));
    assert!(
        report.summary().contains("1 skipped"),
        "{}",
        report.summary()
    );
    let a = ds.image(0);
    let plane = 64;
    assert!(
        a[..plane].iter().all(|&r| r < 5),
        "red plane should be empty after the crop"
    );
    assert!(
        a[plane..2 * plane].iter().all(|&g| g > 250),
        "green plane should be full"
    );
    // b.jpg: the centre 16x16 square of a 16x40 image spans rows 12..28: top half light.
    let b = ds.image(1);
    assert!(b[0] > 200 && b[plane - 1] < 50, "{} {}", b[0], b[plane - 1]);
}

/// A picture over the side limit is refused before its pixels are decoded, with the limit
/// named; one at the limit's scale but inside it still decodes.
#[test]
fn an_image_larger_than_the_side_limit_is_refused_with_the_limit_named() {
    use genmod::data::image_folder::{MAX_IMAGE_SIDE, decode_square};
    let png = |w: u32, h: u32| {
        let mut bytes = Vec::new();
        image::RgbImage::new(w, h)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        bytes
    };
    for (w, h) in [(MAX_IMAGE_SIDE + 1, 2), (2, MAX_IMAGE_SIDE + 1)] {
        let e = decode_square(&png(w, h), 16).unwrap_err();
        assert!(e.contains("4096 pixels a side"), "{w}x{h}: {e}");
    }
    assert_eq!(
        decode_square(&png(MAX_IMAGE_SIDE, 2), 16).unwrap().len(),
        3 * 16 * 16
    );
}

#[test]
fn image_folder_limit_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        save_rgb(&dir.path().join(format!("{i}.png")), 4, 4, |_, _| {
            [i as u8; 3]
        });
    }
    let (ds, _) = image_folder::load(dir.path(), 4, Some(3)).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.image(2)[0], 2, "files are taken in name order");
    let empty = tempfile::tempdir().unwrap();
    let msg = image_folder::load(empty.path(), 4, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("PNG or JPEG"), "{msg}");
    let bad = tempfile::tempdir().unwrap();
    write(&bad.path().join("x.jpg"), b"garbage");
    let msg = image_folder::load(bad.path(), 4, None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no readable image") && msg.contains("x.jpg"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- downloads

/// A real HTTP/1.1 server on 127.0.0.1 serving `files`, honouring `Range` unless told not
/// to, and optionally cutting the first response short after `cut_first_at` bytes (the
/// declared Content-Length stays whole, as when a connection drops mid-transfer).
struct Server {
    base: String,
    requests: RequestLog,
}

/// (file asked for, Range header) of each request, in order.
type RequestLog = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

fn serve(files: Vec<(String, Vec<u8>)>, honour_range: bool, cut_first_at: Option<usize>) -> Server {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests: RequestLog = Default::default();
    let log = requests.clone();
    std::thread::spawn(move || {
        let mut cut = cut_first_at;
        // Bounded: the tests make a handful of requests; the thread ends with the process.
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let name = line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("range")
                {
                    range = Some(v.trim().to_string());
                }
            }
            log.lock().unwrap().push((name.clone(), range.clone()));
            let Some((_, body)) = files.iter().find(|(n, _)| *n == name) else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let start = match (&range, honour_range) {
                (Some(r), true) => r
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse::<usize>()
                    .unwrap(),
                _ => 0,
            };
            let slice = &body[start..];
            let status = if start > 0 {
                "206 Partial Content"
            } else {
                "200 OK"
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                slice.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let send = cut.take().map_or(slice.len(), |at| at.min(slice.len()));
            let _ = stream.write_all(&slice[..send]);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    Server {
        base: format!("http://127.0.0.1:{port}/"),
        requests,
    }
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn manifest(files: &[(&str, &[u8])]) -> download::Manifest {
    download::Manifest {
        name: "testset".into(),
        mirrors: vec![],
        files: files
            .iter()
            .map(|(n, b)| download::RemoteFile {
                name: n.to_string(),
                sha256: sha(b),
            })
            .collect(),
        extract: vec![],
    }
}

#[test]
fn download_fetches_verifies_and_then_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    write_mnist_dir(&src, 9, 4, true);
    let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    let server = serve(files.clone(), true, None);
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let m = manifest(&refs);
    let cache = tmp.path().join("cache");
    let dir = download::fetch(
        &m,
        &cache,
        Some(std::slice::from_ref(&server.base)),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(dir, cache.join("testset"));
    let split = mnist::load_dir(&dir, mnist::Variant::Mnist).unwrap();
    assert_eq!(split.train.len(), 9);
    // A second fetch finds verified files and asks the server for nothing.
    let before = server.requests.lock().unwrap().len();
    download::fetch(
        &m,
        &cache,
        Some(std::slice::from_ref(&server.base)),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(server.requests.lock().unwrap().len(), before);
}

#[test]
fn download_with_wrong_checksum_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(
        vec![("f.bin".into(), b"tampered bytes".to_vec())],
        true,
        None,
    );
    let m = manifest(&[("f.bin", b"the genuine bytes")]);
    let e = download::fetch(
        &m,
        tmp.path(),
        Some(std::slice::from_ref(&server.base)),
        &mut |_, _, _| {},
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("SHA-256 mismatch") && msg.contains("not used"),
        "{msg}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("testset"))
        .unwrap()
        .collect();
    assert!(
        left.is_empty(),
        "a file that failed its checksum was left behind: {left:?}"
    );
}

#[test]
fn interrupted_download_resumes_with_a_range_request() {
    let tmp = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let server = serve(vec![("big.bin".into(), body.clone())], true, Some(20_000));
    let m = manifest(&[("big.bin", &body)]);
    let base = [server.base.clone()];
    let e = download::fetch(&m, tmp.path(), Some(&base), &mut |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("resume"), "{e}");
    let dir = tmp.path().join("testset");
    assert!(
        !dir.join("big.bin").exists(),
        "a partial download must not carry the final name"
    );
    assert_eq!(
        std::fs::metadata(dir.join("big.bin.part")).unwrap().len(),
        20_000
    );
    download::fetch(&m, tmp.path(), Some(&base), &mut |_, _, _| {}).unwrap();
    assert_eq!(std::fs::read(dir.join("big.bin")).unwrap(), body);
    let reqs = server.requests.lock().unwrap().clone();
    assert_eq!(reqs.last().unwrap().1.as_deref(), Some("bytes=20000-"));
}

#[test]
fn resume_against_a_server_without_ranges_restarts_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
    let dir = tmp.path().join("testset");
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir.join("x.bin.part"), b"stale bytes from another attempt");
    let server = serve(vec![("x.bin".into(), body.clone())], false, None);
    let m = manifest(&[("x.bin", &body)]);
    download::fetch(
        &m,
        tmp.path(),
        Some(std::slice::from_ref(&server.base)),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.join("x.bin")).unwrap(), body);
    assert!(!dir.join("x.bin.part").exists());
}

#[test]
fn archive_members_never_escape_the_cache_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.tar.gz");
    {
        let f = std::fs::File::create(&archive).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::fast(),
        ));
        for (name, data) in [
            ("../../escape.bin", b"evil".as_slice()),
            ("sub/../../test_batch.bin", b"good"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Write the raw name bytes so that the hostile path survives into the archive.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }
    let out = tmp.path().join("cache").join("ds");
    std::fs::create_dir_all(&out).unwrap();
    let wanted = vec!["test_batch.bin".to_string(), "escape.bin".to_string()];
    download::extract_members(&archive, &out, &wanted).unwrap();
    assert_eq!(std::fs::read(out.join("test_batch.bin")).unwrap(), b"good");
    assert_eq!(std::fs::read(out.join("escape.bin")).unwrap(), b"evil");
    assert!(!tmp.path().join("escape.bin").exists());
    assert!(!tmp.path().join("cache").join("escape.bin").exists());
}

#[test]
fn cli_fetch_reports_a_checksum_mismatch_from_a_mirror() {
    // The real MNIST manifest against a local mirror serving the wrong bytes.
    let server = serve(
        vec![("train-images-idx3-ubyte.gz".into(), b"not mnist".to_vec())],
        true,
        None,
    );
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_genmod"))
        .args([
            "data",
            "fetch",
            "mnist",
            "--mirror",
            &server.base,
            "--cache",
        ])
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SHA-256 mismatch") && err.contains("440fcabf"),
        "{err}"
    );
    assert!(
        !cache
            .path()
            .join("mnist")
            .join("train-images-idx3-ubyte.gz")
            .exists()
    );
}

// ---------------------------------------------------------------- property tests

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn idx_reader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = idx::parse_bytes(Path::new("fuzz"), bytes);
    }

    #[test]
    fn idx_reader_never_panics_behind_a_valid_prefix(
        ndim in 0u8..5,
        dims in proptest::collection::vec(any::<u32>(), 0..5),
        tail in proptest::collection::vec(any::<u8>(), 0..200),
        gz in any::<bool>(),
    ) {
        let mut b = vec![0, 0, 8, ndim];
        for d in &dims { b.extend_from_slice(&(d % 40).to_be_bytes()); }
        b.extend(tail);
        let b = if gz { gzip(&b) } else { b };
        if let Ok(a) = idx::parse_bytes(Path::new("fuzz"), b) {
            prop_assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
        }
    }

    #[test]
    fn cifar_reader_never_panics_and_counts_whole_records(bytes in proptest::collection::vec(any::<u8>(), 0..7000)) {
        let (mut px, mut lb) = (Vec::new(), Vec::new());
        if let Ok(n) = cifar10::parse_records(Path::new("fuzz"), &bytes, &mut px, &mut lb) {
            prop_assert_eq!(n * 3073, bytes.len());
            prop_assert_eq!(px.len(), n * 3072);
        }
    }
}

#[test]
fn image_folder_survives_arbitrary_bytes() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    save_rgb(&good, 5, 5, |x, y| [x as u8 * 40, y as u8 * 40, 0]);
    let png = std::fs::read(&good).unwrap();
    for i in 0..64 {
        let mut b = png.clone();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..b.len());
            b[at] = rng.random();
        }
        b.truncate(rng.random_range(1..=b.len()));
        write(&dir.path().join(format!("m{i:02}.png")), &b);
    }
    let (ds, report) = image_folder::load(dir.path(), 4, None).unwrap();
    assert_eq!(report.loaded + report.skipped.len(), 65);
    assert_eq!(ds.len(), report.loaded);
}

// ------------------------------------------------ readers say no (issue 19, part 3)
//
// "No panic" alone would let a reader return garbage as Ok. These properties pin what a
// damaged file must give: every truncation of a valid file is an error naming the file, and
// a header field flipped to any value is an error or a payload exactly as long as the
// header's dimensions say.

/// An IDX file of 3 x 4 x 5 bytes, plain or gzipped.
fn valid_idx(gz: bool) -> Vec<u8> {
    let data: Vec<u8> = (0..60).collect();
    let b = idx_bytes(&[3, 4, 5], &data);
    if gz { gzip(&b) } else { b }
}

#[test]
fn every_truncation_of_a_valid_idx_file_is_an_error_naming_it() {
    let name = Path::new("digits-idx3-ubyte");
    for gz in [false, true] {
        let whole = valid_idx(gz);
        assert!(idx::parse_bytes(name, whole.clone()).is_ok());
        for cut in 0..whole.len() {
            match idx::parse_bytes(name, whole[..cut].to_vec()) {
                Ok(a) => panic!(
                    "gz {gz}, cut at {cut} of {}: Ok with dims {:?}",
                    whole.len(),
                    a.dims
                ),
                Err(e) => assert!(e.to_string().contains("digits-idx3-ubyte"), "{e}"),
            }
        }
    }
}

#[test]
fn every_truncation_of_valid_npy_and_cifar_files_is_an_error_naming_it() {
    use genmod::data::arrays::{self, Elements};
    let dir = tempfile::tempdir().unwrap();
    let npy = arrays::npy_bytes(
        &[2, 3, 4],
        &Elements::F32((0..24).map(|v| v as f32 / 24.0).collect()),
    );
    let path = dir.path().join("samples.npy");
    write(&path, &npy);
    assert_eq!(arrays::read(&path).unwrap().dims, [2, 3, 4]);
    for cut in 0..npy.len() {
        write(&path, &npy[..cut]);
        match arrays::read(&path) {
            Ok(a) => panic!("cut at {cut} of {}: Ok with dims {:?}", npy.len(), a.dims),
            Err(e) => assert!(e.to_string().contains("samples.npy"), "{e}"),
        }
    }
    // CIFAR-10: two records of 3,073 bytes; any cut that is not a whole record is refused.
    let records: Vec<u8> = (0..2 * 3073).map(|i| (i % 10) as u8).collect();
    let batch = Path::new("data_batch_1.bin");
    for cut in (1..records.len()).filter(|c| c % 3073 != 0) {
        let (mut px, mut lb) = (Vec::new(), Vec::new());
        let e = cifar10::parse_records(batch, &records[..cut], &mut px, &mut lb)
            .expect_err("a partial record is not a record");
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Any byte of an IDX header (magic, type, rank, dimensions) set to any value.
    #[test]
    fn a_flipped_idx_header_byte_is_refused_or_read_whole(at in 0usize..16, value in any::<u8>()) {
        let mut b = valid_idx(false);
        b[at] = value;
        if let Ok(a) = idx::parse_bytes(Path::new("flipped"), b) {
            prop_assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
            prop_assert_eq!(a.data.len(), 60, "the file holds 60 data bytes");
        }
    }

    /// Any byte of an NPY header (magic, version, length, the dict with dtype and shape).
    #[test]
    fn a_flipped_npy_header_byte_is_refused_or_read_whole(at in 0usize..128, value in any::<u8>()) {
        use genmod::data::arrays::{self, Elements};
        let npy = arrays::npy_bytes(&[2, 3, 4], &Elements::U8((0..24).collect()));
        let header_len = npy.len() - 24;
        let mut b = npy.clone();
        let at = at % header_len;
        b[at] = value;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flipped.npy");
        write(&path, &b);
        match arrays::read(&path) {
            Ok(a) => prop_assert_eq!(a.dims.iter().product::<usize>(), a.elements.len()),
            Err(e) => prop_assert!(e.to_string().contains("flipped.npy"), "{}", e),
        }
    }
}

/// `genmod data export` writes the embedded digits as a folder `--data-dir` loads: the
/// embedded training digits first, then copies moved by a whole-pixel shift of one or two
/// pixels (never none) with their labels, and the embedded test part; and refuses an empty
/// training part.
#[test]
fn exported_digits_load_back_with_shifted_copies_after_the_originals() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = mnist::embedded();
    let n = embedded.train.len();
    mnist::write_embedded(dir.path(), n + 40, 7).unwrap();
    let back = mnist::load_dir(dir.path(), mnist::Variant::Mnist).unwrap();
    assert_eq!(back.train.len(), n + 40);
    assert_eq!(&back.train.pixels()[..n * 784], embedded.train.pixels());
    assert_eq!(back.test.pixels(), embedded.test.pixels());
    assert_eq!(back.test.labels(), embedded.test.labels());
    let (labels, originals) = (
        back.train.labels().unwrap(),
        embedded.train.labels().unwrap(),
    );
    let shifted = |src: &[u8], dx: i64, dy: i64| -> Vec<u8> {
        (0..28i64 * 28)
            .map(|p| {
                let (sx, sy) = (p % 28 - dx, p / 28 - dy);
                if (0..28).contains(&sx) && (0..28).contains(&sy) {
                    src[(sy * 28 + sx) as usize]
                } else {
                    0
                }
            })
            .collect()
    };
    let mut shifts = HashSet::new();
    for i in n..n + 40 {
        let src = embedded.train.image(i - n);
        assert_eq!(labels[i], originals[i - n], "label of copy {i}");
        let shift = (-2..=2i64)
            .flat_map(|dx| (-2..=2i64).map(move |dy| (dx, dy)))
            .filter(|&d| d != (0, 0))
            .find(|&(dx, dy)| shifted(src, dx, dy) == back.train.image(i));
        shifts.insert(shift.unwrap_or_else(|| panic!("copy {i} is no shift of its digit")));
    }
    // 40 draws from 24 shifts: a fixed or missing shift would show as very few.
    assert!(shifts.len() > 10, "{shifts:?}");
    // The same seed writes the same bytes; an empty training part is refused.
    let again = tempfile::tempdir().unwrap();
    mnist::write_embedded(again.path(), n + 40, 7).unwrap();
    let file = "train-images-idx3-ubyte.gz";
    assert_eq!(
        std::fs::read(dir.path().join(file)).unwrap(),
        std::fs::read(again.path().join(file)).unwrap()
    );
    let err = mnist::write_embedded(again.path(), 0, 7)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 1 image"), "{err}");
}
