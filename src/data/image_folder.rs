//! Folders of PNG and JPEG images (CelebA's `img_align_celeba`, anime-face folders):
//! each image is centre-cropped to a square, resized and kept as RGB.
//!
//! A folder with some unreadable files still loads: the good images are kept and a
//! [`FolderReport`] says how many were skipped and why.

use super::{DataError, Dataset, Result};
use image::imageops::FilterType;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// What happened to the files of a folder.
#[derive(Debug, Clone, Default)]
pub struct FolderReport {
    /// Images decoded and kept.
    pub loaded: usize,
    /// Files that looked like images but could not be used, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl FolderReport {
    /// One line for a log: counts, and the first few reasons.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} images loaded, {} skipped",
            self.loaded,
            self.skipped.len()
        );
        for (p, why) in self.skipped.iter().take(3) {
            s.push_str(&format!("; {}: {why}", p.display()));
        }
        if self.skipped.len() > 3 {
            s.push_str(&format!("; and {} more", self.skipped.len() - 3));
        }
        s
    }
}

fn is_image_name(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// Centre-crops to the largest square and resizes to `size` x `size` RGB, as C x H x W bytes.
pub fn to_square_chw(img: &image::DynamicImage, size: u32) -> Vec<u8> {
    let (w, h) = (img.width(), img.height());
    let side = w.min(h);
    let cropped = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    let rgb = cropped
        .resize_exact(size, size, FilterType::Triangle)
        .to_rgb8();
    let plane = (size * size) as usize;
    let mut chw = vec![0u8; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        chw[i] = px[0];
        chw[plane + i] = px[1];
        chw[2 * plane + i] = px[2];
    }
    chw
}

/// The largest side an image of a folder may declare. Face datasets are a few hundred
/// pixels a side (CelebA 178 x 218, in-the-wild photos up to about 2,000); the bound stops a
/// small file that declares a huge picture from making the decoder allocate and clear
/// gigabytes before its data runs out.
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// The most the decoder may allocate for one image: a 4096 x 4096 RGBA picture at 8 bits.
pub const MAX_DECODE_BYTES: u64 = 64 << 20;

/// Decodes one PNG or JPEG file's bytes (format guessed from the content) into a centre-
/// cropped `size` x `size` RGB image, C x H x W. Any bytes give an image or a reason;
/// images over [`MAX_IMAGE_SIDE`] a side are refused before their pixels are decoded.
pub fn decode_square(bytes: &[u8], size: u32) -> std::result::Result<Vec<u8>, String> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "the image is larger than genmod reads ({MAX_IMAGE_SIDE} pixels a side, \
             {} MiB decoded): {e}",
            MAX_DECODE_BYTES >> 20
        ),
        e => e.to_string(),
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err("image has zero width or height".to_string());
    }
    Ok(to_square_chw(&img, size))
}

/// Loads up to `limit` images (sorted by file name) from `dir`, as `size` x `size` RGB.
pub fn load(dir: &Path, size: u32, limit: Option<usize>) -> Result<(Dataset, FolderReport)> {
    if size == 0 {
        return Err(DataError::invalid(
            dir,
            "image size must be at least 1 pixel",
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for e in entries {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        let p = e.path();
        if p.is_file() && is_image_name(&p) {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DataError::MissingFile {
            path: dir.to_path_buf(),
            expected: "PNG or JPEG files (.png, .jpg, .jpeg)".into(),
        });
    }
    let mut report = FolderReport::default();
    let mut pixels = Vec::new();
    let want = limit.unwrap_or(usize::MAX);
    // Decode in parallel chunks, stopping once `limit` good images are in hand.
    for chunk in files.chunks(256) {
        if report.loaded >= want {
            break;
        }
        let decoded: Vec<(PathBuf, std::result::Result<Vec<u8>, String>)> = chunk
            .par_iter()
            .map(|p| {
                let r = std::fs::read(p)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| decode_square(&bytes, size));
                (p.clone(), r)
            })
            .collect();
        for (p, r) in decoded {
            match r {
                Ok(chw) if report.loaded < want => {
                    pixels.extend_from_slice(&chw);
                    report.loaded += 1;
                }
                Ok(_) => {}
                Err(why) => report.skipped.push((p, why)),
            }
        }
    }
    if report.loaded == 0 {
        return Err(DataError::invalid(
            dir,
            format!(
                "no readable image among {} files: {}",
                files.len(),
                report.summary()
            ),
        ));
    }
    let name = format!(
        "{} ({size}x{size})",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string())
    );
    let s = size as usize;
    let ds = Dataset::new(name, pixels, [report.loaded, 3, s, s], None, None)
        .map_err(|m| DataError::invalid(dir, m))?;
    Ok((ds, report))
}
