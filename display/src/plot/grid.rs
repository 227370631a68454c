//! Image grids: many small images in rows, each with an optional caption and boxes (true boxes
//! thin, predicted boxes thick, coloured by class), as used for misclassified digits and for
//! detection results. Drawn as PNG only: the pixels are the content.

use super::{drawing, rasterize, series_color, Figure, PlotError};
use crate::{Image, MimeBundle, Render};
use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::element::BitMapElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A box on an image, in the image's pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundingBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    pub class: usize,
    pub label: String,
    /// A ground-truth box (drawn thin and white) rather than a prediction.
    pub truth: bool,
}

impl BoundingBox {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32, class: usize) -> BoundingBox {
        BoundingBox {
            x0,
            y0,
            x1,
            y1,
            class,
            label: String::new(),
            truth: false,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> BoundingBox {
        self.label = label.into();
        self
    }

    pub fn truth(mut self) -> BoundingBox {
        self.truth = true;
        self
    }
}

#[derive(Clone)]
pub struct ImageGrid {
    images: Vec<Image>,
    captions: Vec<String>,
    boxes: Vec<Vec<BoundingBox>>,
    columns: usize,
    cell: u32,
    title: String,
}

/// A grid of images, `columns` wide by default 8 (fewer when there are fewer images).
pub fn image_grid(images: Vec<Image>) -> ImageGrid {
    let columns = images.len().clamp(1, 8);
    ImageGrid {
        images,
        captions: Vec::new(),
        boxes: Vec::new(),
        columns,
        cell: 96,
        title: String::new(),
    }
}

impl std::fmt::Debug for ImageGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImageGrid({} images, {} columns)", self.images.len(), self.columns)
    }
}

impl ImageGrid {
    /// One caption per image (e.g. "7 → 1" for a misclassified digit).
    pub fn captions(mut self, captions: &[impl ToString]) -> ImageGrid {
        self.captions = captions.iter().map(ToString::to_string).collect();
        self
    }

    /// Boxes per image, in that image's pixel coordinates.
    pub fn boxes(mut self, boxes: Vec<Vec<BoundingBox>>) -> ImageGrid {
        self.boxes = boxes;
        self
    }

    pub fn columns(mut self, columns: usize) -> ImageGrid {
        self.columns = columns.max(1);
        self
    }

    /// The side of each image's square cell, in pixels.
    pub fn cell_size(mut self, pixels: u32) -> ImageGrid {
        self.cell = pixels.max(8);
        self
    }

    pub fn title(mut self, title: impl Into<String>) -> ImageGrid {
        self.title = title.into();
        self
    }

    fn caption_height(&self) -> u32 {
        if self.captions.is_empty() { 0 } else { 18 }
    }

    fn title_height(&self) -> u32 {
        if self.title.is_empty() { 0 } else { 30 }
    }

    /// The picture's size in pixels.
    pub fn size(&self) -> (u32, u32) {
        let rows = self.images.len().div_ceil(self.columns) as u32;
        let columns = self.columns.min(self.images.len().max(1)) as u32;
        let gap = 6;
        let width = columns * (self.cell + gap) + gap;
        let height = rows * (self.cell + self.caption_height() + gap) + gap + self.title_height();
        (width, height)
    }

    pub fn figure(&self) -> Result<Figure, PlotError> {
        if self.images.is_empty() {
            return Err(PlotError::NoData("an image grid without images".into()));
        }
        let (width, height) = self.size();
        let png = rasterize(width, height, |root| self.draw(root))?;
        Ok(Figure {
            svg: String::new(),
            png,
            description: format!("grid of {} images", self.images.len()),
        })
    }

    fn draw(&self, root: &DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), PlotError> {
        root.fill(&WHITE).map_err(drawing)?;
        let gap = 6i32;
        let cell = self.cell as i32;
        let top = self.title_height() as i32;
        if !self.title.is_empty() {
            let style = ("sans-serif", 17).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw_text(&self.title, &style, (gap, top / 2 + 2)).map_err(drawing)?;
        }
        for (i, image) in self.images.iter().enumerate() {
            let (col, row) = ((i % self.columns) as i32, (i / self.columns) as i32);
            let x = gap + col * (cell + gap);
            let y = top + gap + row * (cell + self.caption_height() as i32 + gap);
            let scale = (self.cell as f32 / image.width().max(image.height()) as f32).max(0.01);
            let (w, h) = (
                ((image.width() as f32 * scale).round() as u32).max(1),
                ((image.height() as f32 * scale).round() as u32).max(1),
            );
            let pixels = resize_rgb(image, w, h);
            let element = BitMapElement::<_, RGBPixel>::with_owned_buffer((x, y), (w, h), pixels)
                .ok_or_else(|| PlotError::Drawing("image buffer has the wrong size".into()))?;
            root.draw(&element).map_err(drawing)?;
            for b in self.boxes.get(i).into_iter().flatten() {
                let to_px = |v: f32| (v * scale).round() as i32;
                let corners = [(x + to_px(b.x0), y + to_px(b.y0)), (x + to_px(b.x1), y + to_px(b.y1))];
                let (color, width) = if b.truth { (WHITE, 1) } else { (series_color(b.class), 2) };
                root.draw(&Rectangle::new(corners, color.stroke_width(width))).map_err(drawing)?;
                if !b.label.is_empty() {
                    let style = ("sans-serif", 11).into_font().color(&color);
                    let at = (corners[0].0 + 2, (corners[0].1 - 12).max(y));
                    root.draw_text(&b.label, &style, at).map_err(drawing)?;
                }
            }
            if let Some(caption) = self.captions.get(i) {
                let style = ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
                root.draw_text(caption, &style, (x + cell / 2, y + cell + 2)).map_err(drawing)?;
            }
        }
        Ok(())
    }
}

impl Render for ImageGrid {
    fn render(&self) -> MimeBundle {
        match self.figure() {
            Ok(figure) => figure.png.render().with("text/plain", format!("<{}>", figure.description)),
            Err(e) => MimeBundle::text(format!("<image grid not drawn: {e}>")),
        }
    }
}

/// Nearest-neighbour resize to RGB.
fn resize_rgb(image: &Image, width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        let sy = (y as u64 * image.height() as u64 / height as u64) as u32;
        for x in 0..width {
            let sx = (x as u64 * image.width() as u64 / width as u64) as u32;
            out.extend_from_slice(&image.rgb(sx, sy));
        }
    }
    out
}
