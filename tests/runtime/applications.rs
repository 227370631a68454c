//! The application utilities: detection metrics against hand-computed cases, the grid
//! detector's encoding and decoding, generated shapes, the tokenizer, `.mo` catalogues and
//! hyperparameter search.

use tch::{Kind, Tensor};
use torchbook::datasets::{load_mo, shapes, ShapesConfig};
use torchbook::detection::{average_precision, iou, mean_average_precision, nms, Detection, GridSpec};
use torchbook::history::{EpochLog, History};
use torchbook::tokenizer::{Tokenizer, PAD, UNKNOWN};
use torchbook::tune::{self, Space};

fn b(x0: f32, y0: f32, x1: f32, y1: f32, class: usize, score: f32) -> Detection {
    Detection::new(x0, y0, x1, y1, class, score)
}

#[test]
fn iou_of_hand_computed_boxes() {
    let a = b(0.0, 0.0, 2.0, 2.0, 0, 1.0);
    assert!((iou(&a, &b(1.0, 1.0, 3.0, 3.0, 0, 1.0)) - 1.0 / 7.0).abs() < 1e-6);
    assert_eq!(iou(&a, &a), 1.0);
    assert_eq!(iou(&a, &b(5.0, 5.0, 6.0, 6.0, 0, 1.0)), 0.0);
    assert_eq!(iou(&a, &b(2.0, 0.0, 4.0, 2.0, 0, 1.0)), 0.0, "touching edges do not overlap");
    assert_eq!(iou(&b(1.0, 1.0, 1.0, 1.0, 0, 1.0), &b(1.0, 1.0, 1.0, 1.0, 0, 1.0)), 0.0, "empty boxes");
}

#[test]
fn nms_keeps_the_best_of_overlapping_boxes_per_class() {
    let best = b(0.0, 0.0, 10.0, 10.0, 0, 0.9);
    let overlapping = b(1.0, 1.0, 11.0, 11.0, 0, 0.8); // IoU 81/119 = 0.68 with `best`
    let other_class = b(1.0, 1.0, 11.0, 11.0, 1, 0.7);
    let apart = b(20.0, 20.0, 30.0, 30.0, 0, 0.6);
    let kept = nms(&[overlapping, apart, best, other_class], 0.5);
    assert_eq!(kept, vec![best, other_class, apart]);
    assert_eq!(nms(&[overlapping, best], 0.7).len(), 2, "below the threshold both stay");
}

#[test]
fn average_precision_of_a_hand_computed_ranking() {
    let truths = vec![vec![b(0.0, 0.0, 10.0, 10.0, 0, 1.0), b(20.0, 20.0, 30.0, 30.0, 0, 1.0)]];
    // Ranked: TP (recall 0.5, precision 1), FP (0.5, 0.5), TP (1.0, 0.667).
    let predictions = vec![vec![
        b(0.0, 0.0, 10.0, 10.0, 0, 0.9),
        b(50.0, 50.0, 60.0, 60.0, 0, 0.8),
        b(21.0, 21.0, 30.0, 30.0, 0, 0.7),
    ]];
    let ap = average_precision(&predictions, &truths, 0, 0.5).unwrap();
    assert!((ap - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-5, "{ap}");
    // A second detection of the same object is a false positive.
    let duplicate = vec![vec![b(0.0, 0.0, 10.0, 10.0, 0, 0.9), b(0.0, 0.0, 10.0, 10.0, 0, 0.8)]];
    let ap = average_precision(&duplicate, &truths, 0, 0.5).unwrap();
    assert!((ap - 0.5).abs() < 1e-6, "{ap}");
    // A class without true boxes does not count towards the mean.
    assert_eq!(average_precision(&predictions, &truths, 1, 0.5), None);
    let perfect = vec![truths[0].clone()];
    assert_eq!(mean_average_precision(&perfect, &truths, 3, 0.5), 1.0);
    assert_eq!(mean_average_precision(&[vec![]], &truths, 3, 0.5), 0.0);
}

#[test]
fn grid_targets_decode_back_to_their_boxes() {
    let grid = GridSpec::new(4, 3);
    let truth = b(0.25, 0.25, 0.5, 0.5, 2, 1.0);
    let targets = grid.encode(&[truth]);
    assert_eq!(targets.size(), [4, 4, 6]);
    assert_eq!(targets.double_value(&[1, 1, 0]), 1.0, "the centre (0.375, 0.375) is in cell (1, 1)");
    assert_eq!(targets.sum(Kind::Float).double_value(&[]), 1.0 + 0.25 + 0.25 + 0.5 + 0.5 + 2.0);
    // Outputs that say exactly this box: a centre offset of 0.5 (logit 0), size 0.25.
    let outputs = Tensor::full([1, 8, 4, 4], -10.0, (Kind::Float, tch::Device::Cpu));
    let size_logit = (0.25f64 / 0.75).ln();
    for (channel, value) in [(0, 10.0), (1, 0.0), (2, 0.0), (3, size_logit), (4, size_logit), (7, 10.0)] {
        let _ = outputs.get(0).get(channel).get(1).get(1).fill_(value);
    }
    let found = grid.decode(&outputs, 0.5, 0.5);
    assert_eq!(found[0].len(), 1);
    let d = found[0][0];
    assert_eq!(d.class, 2);
    assert!(iou(&d, &truth) > 0.99, "{d:?}");
    let perfect = grid.loss(&outputs, &targets.unsqueeze(0)).unwrap().double_value(&[]);
    let clueless = grid.loss(&outputs.zeros_like(), &targets.unsqueeze(0)).unwrap().double_value(&[]);
    assert!(perfect < clueless, "{perfect} < {clueless}");
    let err = grid.loss(&outputs, &targets).unwrap_err().to_string();
    assert!(err.contains("detector targets") && err.contains("[1, 4, 4, 6]"), "{err}");
}

#[test]
fn shapes_are_seeded_and_their_boxes_hold_the_shapes() {
    let config = ShapesConfig { images: 20, seed: 7, ..Default::default() };
    let a = shapes(&config).unwrap();
    let again = shapes(&config).unwrap();
    assert!(a.images.equal(&again.images) && a.boxes == again.boxes);
    assert_eq!(a.images.size(), [20, 3, 64, 64]);
    assert!(a.boxes.iter().all(|b| (1..=3).contains(&b.len())));
    for boxes in &a.boxes {
        for (i, x) in boxes.iter().enumerate() {
            assert!(x.x0 >= 0.0 && x.x1 <= 1.0 && x.x0 < x.x1 && x.class < 3);
            assert!(boxes[i + 1..].iter().all(|y| iou(x, y) <= 0.2));
        }
    }
    let other = shapes(&ShapesConfig { seed: 8, ..config }).unwrap();
    assert!(!a.images.equal(&other.images));
    let grid = GridSpec::new(8, 3);
    let objects: usize = a.boxes.iter().map(Vec::len).sum();
    let marked = a.targets(&grid).select(3, 0).sum(Kind::Float).double_value(&[]);
    assert_eq!(marked as usize, objects, "every object has its own cell");
}

#[test]
fn tokenizer_builds_a_vocabulary_with_padding_and_unknown() {
    let train = ["Hello world", "hello there"];
    let words = Tokenizer::words(&train, 1, 4);
    assert_eq!(words.vocab_size(), 2 + 3);
    let ids = words.encode("hello unseen world");
    assert_eq!(ids[1], UNKNOWN);
    assert_eq!(ids[3], PAD);
    assert_eq!(words.decode(&ids), "hello <unk> world");
    let chars = Tokenizer::chars(&train, 2, 3);
    assert_eq!(chars.encode_batch(&["hel", "zz"]).size(), [2, 3]);
    assert!(chars.coverage(&["hello"]) > 0.99 && chars.coverage(&["xyz"]) == 0.0);
}

#[test]
fn mo_catalogues_are_read_and_broken_ones_refused() {
    fn mo(pairs: &[(&str, &str)]) -> Vec<u8> {
        let n = pairs.len() as u32;
        let (originals, translations) = (28u32, 28 + 8 * n);
        let mut data_at = 28 + 16 * n;
        let mut table = Vec::new();
        let mut strings = Vec::new();
        for column in [0, 1] {
            for pair in pairs {
                let s = if column == 0 { pair.0 } else { pair.1 };
                table.extend_from_slice(&(s.len() as u32).to_le_bytes());
                table.extend_from_slice(&data_at.to_le_bytes());
                strings.extend_from_slice(s.as_bytes());
                strings.push(0);
                data_at += s.len() as u32 + 1;
            }
        }
        let mut out = Vec::new();
        for v in [0x9504_12deu32, 0, n, originals, translations, 0, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend(table);
        out.extend(strings);
        out
    }
    let dir = std::env::temp_dir().join(format!("torchbook-mo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("django.mo");
    let file = mo(&[("", "Content-Type: text/plain; charset=UTF-8\n"), ("Save", "Speichern"), ("%d item", "%d Element\0%d Elemente")]);
    std::fs::write(&path, file).unwrap();
    assert_eq!(load_mo(&path).unwrap(), vec!["Speichern", "%d Element", "%d Elemente"]);
    std::fs::write(&path, b"not a catalogue").unwrap();
    let err = load_mo(&path).unwrap_err().to_string();
    assert!(err.contains("not a gettext .mo file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn history(values: &[f64]) -> History {
    History {
        epochs: values
            .iter()
            .enumerate()
            .map(|(i, &v)| EpochLog {
                epoch: i + 1,
                loss: 1.0 - v,
                metrics: Default::default(),
                val_loss: Some(1.0 - v),
                val_metrics: [("accuracy".to_owned(), v)].into(),
                lr: 0.01,
                seconds: 0.1,
                samples_per_second: 100.0,
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn grid_search_tries_every_combination_and_ranks_them() {
    let space = Space::new().values("lr", &[0.1, 0.01]).values("width", &[8.0, 16.0, 32.0]);
    let search = tune::grid(space);
    assert_eq!(search.candidates().unwrap().len(), 6);
    let results = search
        .run(|p| Ok(history(&[0.0, p.get("width") / 100.0 + p.get("lr")])))
        .unwrap();
    assert_eq!(results.trials.len(), 6);
    let best = results.best().unwrap();
    assert_eq!((best.params.get("lr"), best.params.int("width")), (0.1, 32));
    assert!((best.score - 0.42).abs() < 1e-9);
    assert!(results.trials.windows(2).all(|w| w[0].score >= w[1].score), "sorted best first");
    let by_loss = tune::grid(Space::new().values("lr", &[0.1, 0.01])).rank_by("val_loss", false);
    let results = by_loss.run(|p| Ok(history(&[p.get("lr")]))).unwrap();
    assert_eq!(results.best().unwrap().params.get("lr"), 0.1, "lowest val_loss first");
}

#[test]
fn random_search_is_seeded_and_an_interrupted_trial_ends_it() {
    let space = Space::new().log_uniform("lr", 1e-4, 1e-1).values("batch_size", &[16.0, 32.0]);
    let a = tune::random(space.clone(), 5, 3).candidates().unwrap();
    assert_eq!(a, tune::random(space.clone(), 5, 3).candidates().unwrap());
    assert!(a.iter().all(|p| (1e-4..=1e-1).contains(&p.get("lr"))));
    let mut calls = 0;
    let results = tune::random(space.clone(), 5, 3)
        .run(|_| {
            calls += 1;
            let mut h = history(&[0.7]);
            h.interrupted = calls == 3;
            Ok(h)
        })
        .unwrap();
    assert!(results.interrupted);
    assert_eq!(results.trials.len(), 2, "the finished trials are kept");
    let err = tune::grid(Space::new().uniform("dropout", 0.0, 0.5)).candidates().unwrap_err().to_string();
    assert!(err.contains("grid search needs a list of values"), "{err}");
}
