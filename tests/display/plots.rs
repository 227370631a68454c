//! Charts and images: every render carries text/plain, plots carry SVG, PNG and HTML, and the
//! PNGs decode to the requested size.

use torchbook_display::plot::{self, BoundingBox};
use torchbook_display::{Image, MimeBundle, Png, Render};
use base64::Engine as _;

fn png_of(bundle: &MimeBundle) -> Png {
    let data = bundle.get("image/png").and_then(|v| v.as_str()).expect("image/png");
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).expect("base64");
    Png::from_bytes(bytes).expect("a valid PNG")
}

fn assert_plot(bundle: &MimeBundle, size: (u32, u32)) {
    assert!(!bundle.text_plain().is_empty());
    assert_eq!(png_of(bundle).size(), size);
    let svg = bundle.get("image/svg+xml").and_then(|v| v.as_str()).expect("svg");
    assert!(svg.contains("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(bundle.get("text/html").is_some());
}

#[test]
fn line_chart_has_every_representation_at_the_requested_size() {
    let chart = plot::Line::new()
        .series("loss", &[1.0, 0.6, 0.4, 0.3])
        .series("val_loss", &[1.1, 0.7, 0.5, 0.45])
        .title("loss")
        .x_label("epoch")
        .size(320, 240);
    let bundle = chart.render();
    assert_plot(&bundle, (320, 240));
    let svg = bundle.get("image/svg+xml").unwrap().as_str().unwrap();
    assert!(svg.contains("val_loss") && svg.contains("epoch"), "labels are in the SVG");
    assert_eq!(bundle.text_plain(), "<line chart: loss 320×240>");
}

#[test]
fn scatter_histogram_and_bar_render() {
    let xs = [0.0, 1.0, 2.0, 3.0];
    let ys = [1.0, 3.0, 2.0, 5.0];
    assert_plot(&plot::scatter(&xs, &ys).render(), plot::DEFAULT_SIZE);
    assert_plot(&plot::Scatter::by_label(&xs, &ys, &["a", "b", "a", "b"]).size(200, 150).render(), (200, 150));
    assert_plot(&plot::histogram(&ys, 3).render(), plot::DEFAULT_SIZE);
    assert_plot(&plot::bar(&["cat", "dog"], &[3.0, 5.0]).render(), plot::DEFAULT_SIZE);
}

#[test]
fn histogram_counts_values_into_bins() {
    let (counts, edges) = plot::histogram(&[0.0, 0.1, 0.5, 0.9, 1.0, f64::NAN], 2).counts();
    assert_eq!(counts, vec![2, 3]);
    assert_eq!(edges, vec![0.0, 0.5, 1.0]);
}

#[test]
fn confusion_matrix_is_a_heatmap_with_counts() {
    let counts = vec![vec![50.0, 2.0], vec![3.0, 45.0]];
    let bundle = plot::confusion_matrix(&counts, &["cat", "dog"]).render();
    assert_plot(&bundle, (560, 500));
    let svg = bundle.get("image/svg+xml").unwrap().as_str().unwrap();
    let texts: Vec<&str> = svg.split("<text").skip(1).map(|t| t.split("</text>").next().unwrap()).collect();
    assert!(texts.iter().any(|t| t.trim_end().ends_with("45")), "counts drawn: {texts:?}");
    assert!(texts.iter().any(|t| t.contains("predicted")), "axis titles drawn: {texts:?}");
}

#[test]
fn empty_charts_say_why_instead_of_failing() {
    let bundle = plot::line(&[]).render();
    assert!(bundle.text_plain().contains("nothing to plot"), "{}", bundle.text_plain());
    assert!(bundle.get("image/png").is_none());
}

#[test]
fn image_grid_with_boxes_and_captions() {
    let digit = Image::from_unit_gray(8, 8, &[0.5; 64]).unwrap();
    let images = vec![digit; 10];
    let boxes = vec![vec![
        BoundingBox::new(1.0, 1.0, 6.0, 6.0, 0).truth(),
        BoundingBox::new(2.0, 2.0, 7.0, 7.0, 1).label("circle 0.9"),
    ]];
    let grid = plot::image_grid(images).captions(&(0..10).collect::<Vec<_>>()).boxes(boxes).cell_size(40).columns(5);
    let bundle = grid.render();
    assert_eq!(png_of(&bundle).size(), grid.size());
    assert_eq!(grid.size(), (5 * 46 + 6, 2 * (40 + 18 + 6) + 6));
    assert!(bundle.get("text/html").unwrap().as_str().unwrap().starts_with("<img"));
}

#[test]
fn small_images_are_scaled_up_for_display() {
    let bundle = Image::new(4, 2, 3, vec![200; 24]).unwrap().render();
    assert_eq!(png_of(&bundle).size(), (64, 32), "scaled by 16 at most");
    assert_eq!(bundle.text_plain(), "<image 4×2×3>");
}

#[test]
fn write_examples_for_a_look() {
    // Kept for eyes: TORCHBOOK_PLOT_DIR=/tmp/plots cargo test -p torchbook-display
    let Ok(dir) = std::env::var("TORCHBOOK_PLOT_DIR") else { return };
    std::fs::create_dir_all(&dir).unwrap();
    let line = plot::Line::new().series("loss", &[1.0, 0.6, 0.4, 0.3]).series("val", &[1.1, 0.7, 0.5, 0.45]);
    line.title("Loss").x_label("epoch").y_label("loss").figure().unwrap().save(format!("{dir}/line.png")).unwrap();
    let counts = vec![vec![50.0, 2.0, 1.0], vec![3.0, 45.0, 0.0], vec![0.0, 4.0, 40.0]];
    plot::confusion_matrix(&counts, &["a", "b", "c"]).figure().unwrap().save(format!("{dir}/cm.png")).unwrap();
}
