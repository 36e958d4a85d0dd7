//! Decoding image files into 8-bit RGB.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use image::RgbImage;

/// Decodes an in-memory image file (JPEG baseline or progressive, PNG) into 8-bit RGB.
/// Grey, grey+alpha, RGBA, CMYK and 16-bit images are converted (alpha is dropped, as
/// PIL's `convert("RGB")` does).
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    let format = image::guess_format(bytes)
        .map_err(|_| anyhow!("unrecognized image format (not JPEG or PNG)"))?;
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        // The decoder fills a cut-short scan with grey and reports success; Pillow refuses it.
        return Err(anyhow!(
            "truncated JPEG: the file ends before its end-of-image marker (a partial download or copy?)"
        ));
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.no_limits();
    let img = reader.decode().map_err(|e| anyhow!("{e}"))?;
    let rgb = img.into_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(anyhow!("image has zero width or height"));
    }
    Ok(rgb)
}

/// Whether a JPEG has its end-of-image marker (FF D9) after its last start-of-scan (FF DA).
/// Inside entropy-coded data every FF byte is followed by 00 or a restart marker, so an FF D9
/// there is the real end; one before the last scan belongs to an embedded thumbnail.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| {
        bytes
            .windows(2)
            .rposition(|w| w[0] == 0xFF && w[1] == marker)
    };
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

/// Reads and decodes an image file; errors name the file.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read image file {}", path.display()))?;
    decode_rgb(&bytes).with_context(|| format!("cannot decode image file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_short_jpeg_is_refused_and_a_whole_one_decodes() {
        let mut img = RgbImage::new(16, 16);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([(x * 16) as u8, (y * 16) as u8, 128]);
        }
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&img)
            .unwrap();
        assert_eq!(decode_rgb(&jpeg).unwrap().dimensions(), (16, 16));
        // Trailing bytes after the end marker (some cameras write them) are accepted.
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(&[0, 0, 0]);
        assert!(decode_rgb(&trailing).is_ok());
        let cut = &jpeg[..jpeg.len() * 3 / 4];
        let e = decode_rgb(cut).unwrap_err().to_string();
        assert!(e.contains("truncated JPEG"), "{e}");
    }
}
