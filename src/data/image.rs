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
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.no_limits();
    let img = reader.decode().map_err(|e| anyhow!("{e}"))?;
    let rgb = img.into_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(anyhow!("image has zero width or height"));
    }
    Ok(rgb)
}

/// Reads and decodes an image file; errors name the file.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read image file {}", path.display()))?;
    decode_rgb(&bytes).with_context(|| format!("cannot decode image file {}", path.display()))
}
