//! `Image`: 8-bit pixels (gray, RGB or RGBA) with PNG encoding, the common currency between
//! tensors (the runtime converts CHW/HW tensors), image grids and plots.

use crate::{MimeBundle, Png, Render};

/// Why an image could not be built or encoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImageError {
    #[error("an image of {width}×{height} with {channels} channels needs {expected} bytes, found {found}")]
    WrongLength {
        width: u32,
        height: u32,
        channels: u8,
        expected: usize,
        found: usize,
    },
    #[error("images have 1 (gray), 3 (RGB) or 4 (RGBA) channels, found {0}")]
    Channels(u8),
    #[error("an image needs a width and a height above zero, found {0}×{1}")]
    Empty(u32, u32),
    #[error("could not encode the PNG: {0}")]
    Encode(String),
    #[error("not a readable PNG: {0}")]
    Decode(String),
}

/// Row-major 8-bit pixels, channels interleaved.
#[derive(Clone, PartialEq)]
pub struct Image {
    width: u32,
    height: u32,
    channels: u8,
    pixels: Vec<u8>,
}

/// The size, not the pixels (a cell's `Debug` fallback would print thousands of numbers).
impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({}×{}×{})", self.width, self.height, self.channels)
    }
}

impl Image {
    pub fn new(width: u32, height: u32, channels: u8, pixels: Vec<u8>) -> Result<Image, ImageError> {
        if !matches!(channels, 1 | 3 | 4) {
            return Err(ImageError::Channels(channels));
        }
        if width == 0 || height == 0 {
            return Err(ImageError::Empty(width, height));
        }
        let expected = width as usize * height as usize * channels as usize;
        if pixels.len() != expected {
            return Err(ImageError::WrongLength {
                width,
                height,
                channels,
                expected,
                found: pixels.len(),
            });
        }
        Ok(Image {
            width,
            height,
            channels,
            pixels,
        })
    }

    /// A gray image from values in [0, 1] (clamped), e.g. a normalised digit.
    pub fn from_unit_gray(width: u32, height: u32, values: &[f32]) -> Result<Image, ImageError> {
        let pixels = values.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
        Image::new(width, height, 1, pixels)
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn channels(&self) -> u8 {
        self.channels
    }

    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The pixel at (x, y) as RGB.
    pub fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * self.channels as usize;
        match self.channels {
            1 => [self.pixels[i]; 3],
            _ => [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]],
        }
    }

    /// Scales by an integer factor (nearest neighbour), so that small images stay crisp.
    pub fn upscale(&self, factor: u32) -> Image {
        let factor = factor.max(1);
        let (w, h, c) = (self.width * factor, self.height * factor, self.channels as usize);
        let mut pixels = Vec::with_capacity(w as usize * h as usize * c);
        for y in 0..h {
            for x in 0..w {
                let i = ((y / factor) as usize * self.width as usize + (x / factor) as usize) * c;
                pixels.extend_from_slice(&self.pixels[i..i + c]);
            }
        }
        Image {
            width: w,
            height: h,
            channels: self.channels,
            pixels,
        }
    }

    pub fn to_png(&self) -> Result<Png, ImageError> {
        let color = match self.channels {
            1 => png::ColorType::Grayscale,
            3 => png::ColorType::Rgb,
            _ => png::ColorType::Rgba,
        };
        let bytes = encode_png(self.width, self.height, color, &self.pixels)?;
        Ok(Png::from_parts(bytes, self.width, self.height))
    }
}

/// Shown as PNG, scaled up when small (a 28×28 digit would be a speck on screen).
impl Render for Image {
    fn render(&self) -> MimeBundle {
        let factor = (128 / self.width.max(self.height)).clamp(1, 16);
        match self.upscale(factor).to_png() {
            Ok(png) => png
                .render()
                .with("text/plain", format!("<image {}×{}×{}>", self.width, self.height, self.channels)),
            Err(e) => MimeBundle::text(format!("<image that could not be encoded: {e}>")),
        }
    }
}

pub(crate) fn encode_png(
    width: u32,
    height: u32,
    color: png::ColorType,
    pixels: &[u8],
) -> Result<Vec<u8>, ImageError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder
        .write_header()
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    writer
        .write_image_data(pixels)
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    writer.finish().map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_length_says_what_was_expected() {
        let err = Image::new(2, 2, 3, vec![0; 5]).unwrap_err();
        assert_eq!(err.to_string(), "an image of 2×2 with 3 channels needs 12 bytes, found 5");
    }

    #[test]
    fn png_round_trip_keeps_size() {
        let image = Image::from_unit_gray(3, 2, &[0.0, 0.5, 1.0, 1.0, 0.5, 0.0]).unwrap();
        let png = image.to_png().unwrap();
        let again = Png::from_bytes(png.bytes().to_vec()).unwrap();
        assert_eq!(again.size(), (3, 2));
        assert_eq!(image.upscale(4).width(), 12);
    }
}
