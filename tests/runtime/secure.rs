//! Encrypted data at rest: weights, checkpoints, datasets and every loader through
//! `secure::encrypted`, the errors for a wrong key, a cut or a changed file, no plaintext on
//! disk, files exchanged with the `age` command in both directions, and a save onto a full
//! disk that fails cleanly and keeps the previous file.

use std::path::{Path, PathBuf};
use std::process::Command;
use torchbook::prelude::*;
use torchbook::secure::{encrypted, Key};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("torchbook-secure-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// Every file name in the folder, to show that nothing else (no plaintext copy, no
    /// temporary file) was left behind.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(&self.0).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn model(seed: i64) -> Model {
    tch::manual_seed(seed);
    let net = Sequential::new().add(Dense::new(8)).add(ReLU).add(Dense::new(2));
    let mut model = Model::build(Box::new(net), &[3], Kind::Float, Device::Cpu).unwrap();
    model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
    model
}

fn data() -> Dataset {
    tch::manual_seed(3);
    let xs = Tensor::randn([64, 3], (Kind::Float, Device::Cpu));
    let ys = xs.select(1, 0).gt(0.0).to_kind(Kind::Int64);
    Dataset::new(xs, ys).unwrap()
}

fn predictions(model: &Model) -> Tensor {
    model.predict(&Tensor::ones([4, 3], (Kind::Float, Device::Cpu)), 4).unwrap()
}

/// What a plaintext safetensors file would contain: its JSON header names the tensors.
fn assert_no_plaintext(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{} is not an age file", path.display());
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("dtype") && !text.contains("weight") && !text.contains("label"), "{} leaks plaintext", path.display());
}

#[test]
fn weights_and_checkpoints_round_trip_sealed_and_refuse_the_wrong_key() {
    let dir = TempDir::new("weights");
    let key = Key::generate();
    let mut trained = model(1);
    trained.fit(&data(), FitOptions { epochs: 2, verbose: 0, ..Default::default() }).unwrap();
    trained.save_weights(encrypted(dir.path("model.safetensors.age"), &key)).unwrap();
    trained.save_checkpoint(encrypted(dir.path("ckpt.age"), &key)).unwrap();
    assert_no_plaintext(&dir.path("model.safetensors.age"));
    assert_no_plaintext(&dir.path("ckpt.age"));
    assert_eq!(dir.names(), ["ckpt.age", "model.safetensors.age"]);

    let mut copy = model(2);
    copy.load_weights(encrypted(dir.path("model.safetensors.age"), &key)).unwrap();
    assert!(predictions(&copy).allclose(&predictions(&trained), 1e-6, 1e-6, false));
    let mut resumed = model(3);
    assert_eq!(resumed.load_checkpoint(encrypted(dir.path("ckpt.age"), &key)).unwrap(), 2);
    assert!(predictions(&resumed).allclose(&predictions(&trained), 1e-6, 1e-6, false));

    // A wrong key, no key, and a model of the wrong shape are each an error naming the file,
    // and the model is untouched.
    let before = predictions(&copy);
    let wrong = copy.load_weights(encrypted(dir.path("model.safetensors.age"), &Key::generate())).unwrap_err().to_string();
    assert!(wrong.contains("model.safetensors.age") && wrong.contains("wrong key"), "{wrong}");
    let plain = copy.load_weights(dir.path("model.safetensors.age")).unwrap_err().to_string();
    assert!(plain.contains("model.safetensors.age") && plain.contains("encrypted"), "{plain}");
    assert!(predictions(&copy).equal(&before));
    let net = Sequential::new().add(Dense::new(5)).add(Dense::new(2));
    let mut other = Model::build(Box::new(net), &[3], Kind::Float, Device::Cpu).unwrap();
    let shape = other.load_weights(encrypted(dir.path("model.safetensors.age"), &key)).unwrap_err().to_string();
    assert!(shape.contains("model.safetensors.age") && shape.contains("shape"), "{shape}");
}

#[test]
fn a_cut_or_changed_file_is_an_error_that_names_it() {
    let dir = TempDir::new("tamper");
    let key = Key::generate();
    let trained = model(1);
    let path = dir.path("w.age");
    trained.save_weights(encrypted(&path, &key)).unwrap();
    let sealed = std::fs::read(&path).unwrap();
    let mut copy = model(2);
    for cut in [10, sealed.len() / 2, sealed.len() - 1] {
        std::fs::write(&path, &sealed[..cut]).unwrap();
        let err = copy.load_weights(encrypted(&path, &key)).unwrap_err().to_string();
        assert!(err.contains("w.age") && (err.contains("truncated") || err.contains("damaged")), "cut at {cut}: {err}");
    }
    for at in [40, sealed.len() / 2, sealed.len() - 3] {
        let mut changed = sealed.clone();
        changed[at] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        let err = copy.load_weights(encrypted(&path, &key)).unwrap_err().to_string();
        assert!(err.contains("w.age"), "flip at {at}: {err}");
    }
    // A key given for a file that is not sealed is refused too: no silent plaintext.
    trained.save_weights(dir.path("plain.safetensors")).unwrap();
    let err = copy.load_weights(encrypted(dir.path("plain.safetensors"), &key)).unwrap_err().to_string();
    assert!(err.contains("plain.safetensors") && err.contains("not encrypted"), "{err}");
}

#[test]
fn model_checkpoint_seals_every_epoch() {
    let dir = TempDir::new("callback");
    let key = Key::generate();
    let mut trained = model(1);
    let callback = ModelCheckpoint::new(dir.path("epoch-{epoch}.age")).encrypted(&key);
    trained
        .fit(&data(), FitOptions { epochs: 3, verbose: 0, callbacks: vec![Box::new(callback)], ..Default::default() })
        .unwrap();
    assert_eq!(dir.names(), ["epoch-1.age", "epoch-2.age", "epoch-3.age"]);
    for name in dir.names() {
        assert_no_plaintext(&dir.path(&name));
    }
    let mut last = model(9);
    last.load_weights(encrypted(dir.path("epoch-3.age"), &key)).unwrap();
    assert!(predictions(&last).allclose(&predictions(&trained), 1e-6, 1e-6, false));
}

#[test]
fn datasets_and_every_loader_read_sealed_files() {
    let dir = TempDir::new("loaders");
    let key = Key::generate();
    let sealed = |name: &str, bytes: &[u8]| {
        encrypted(dir.path(name), &key).write(bytes).unwrap();
        assert_no_plaintext(&dir.path(name));
    };

    let original = data();
    original.save(encrypted(dir.path("train.age"), &key)).unwrap();
    let loaded = Dataset::load(encrypted(dir.path("train.age"), &key)).unwrap();
    assert!(loaded.features.equal(&original.features) && loaded.targets.equal(&original.targets));
    original.save(dir.path("train.safetensors")).unwrap();
    assert_eq!(Dataset::load(dir.path("train.safetensors")).unwrap().len(), 64);

    sealed("d.csv.age", b"a,b,label\n1,2,0\n3,4,1\n");
    let csv = load_csv(encrypted(dir.path("d.csv.age"), &key), "label").unwrap();
    assert_eq!(csv.features.size(), [2, 2]);
    let err = load_csv(dir.path("d.csv.age"), "label").unwrap_err().to_string();
    assert!(err.contains("d.csv.age") && err.contains("encrypted"), "{err}");

    sealed("t.tsv.age", "de\tGuten Tag\nfr\tBonjour à tous\n".as_bytes());
    let text = load_text_lines(encrypted(dir.path("t.tsv.age"), &key)).unwrap();
    assert_eq!(text.texts, ["Guten Tag", "Bonjour à tous"]);

    let mut idx = vec![0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 2];
    idx.extend([1, 2, 3, 4]);
    sealed("x.idx.age", &idx);
    assert_eq!(load_idx(encrypted(dir.path("x.idx.age"), &key)).unwrap().size(), [2, 2]);

    // Image and text folders: every file inside is sealed with the same key.
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(dir.path(&format!("images/{class}"))).unwrap();
        std::fs::create_dir_all(dir.path(&format!("texts/{class}"))).unwrap();
        let image = tensor_to_image(&Tensor::rand([3, 6, 6], (Kind::Float, Device::Cpu))).unwrap();
        let png = dir.path(&format!("{class}.png"));
        image.to_png().unwrap().save(&png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        std::fs::remove_file(&png).unwrap();
        encrypted(dir.path(&format!("images/{class}/1.png.age")), &key).write(&bytes).unwrap();
        encrypted(dir.path(&format!("texts/{class}/1.txt")), &key).write(format!("a {class}").as_bytes()).unwrap();
    }
    let folder = load_image_folder(encrypted(dir.path("images"), &key), 4, 4).unwrap();
    assert_eq!(folder.dataset.features.size(), [2, 3, 4, 4]);
    assert_eq!(folder.classes, ["cat", "dog"]);
    let texts = load_text_folder(encrypted(dir.path("texts"), &key)).unwrap();
    assert_eq!(texts.texts, ["a cat", "a dog"]);
    let err = load_text_folder(dir.path("texts")).unwrap_err().to_string();
    assert!(err.contains("1.txt") && err.contains("encrypted"), "{err}");
}

#[test]
fn a_passphrase_seals_and_opens_and_a_wrong_one_is_refused() {
    let dir = TempDir::new("passphrase");
    let key = Key::passphrase("correct horse battery staple").unwrap();
    encrypted(dir.path("p.age"), &key).write(b"1,2\n").unwrap();
    assert_eq!(encrypted(dir.path("p.age"), &key).read().unwrap(), b"1,2\n");
    let wrong = Key::passphrase("wrong").unwrap();
    let err = encrypted(dir.path("p.age"), &wrong).read().unwrap_err().to_string();
    assert!(err.contains("p.age") && err.contains("wrong passphrase"), "{err}");
    let err = encrypted(dir.path("p.age"), &Key::generate()).read().unwrap_err().to_string();
    assert!(err.contains("encrypted with a passphrase"), "{err}");
    assert!(Key::passphrase("").is_err());
}

/// The `age` command (Debian's package; `make test` installs it).
fn age_command() -> &'static str {
    let found = Command::new("age").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "the `age` command is needed (Debian package `age`; `make test` installs it)");
    "age"
}

#[test]
fn files_go_both_ways_with_the_age_command() {
    let age = age_command();
    let dir = TempDir::new("age-cli");
    let key = Key::generate();
    key.save(dir.path("key.txt")).unwrap();

    // torchbook seals, age opens: the decrypted file is a safetensors file PyTorch can read.
    let trained = model(1);
    trained.save_weights(encrypted(dir.path("w.age"), &key)).unwrap();
    let out = Command::new(age)
        .args(["-d", "-i"])
        .arg(dir.path("key.txt"))
        .arg("-o")
        .arg(dir.path("w.safetensors"))
        .arg(dir.path("w.age"))
        .output()
        .unwrap();
    assert!(out.status.success(), "age -d: {}", String::from_utf8_lossy(&out.stderr));
    let mut copy = model(2);
    copy.load_weights(dir.path("w.safetensors")).unwrap();
    assert!(predictions(&copy).allclose(&predictions(&trained), 1e-6, 1e-6, false));

    // age seals to the key's public key, torchbook opens.
    std::fs::write(dir.path("plain.csv"), "x,label\n0.5,1\n-1.5,0\n").unwrap();
    let out = Command::new(age)
        .args(["-r", &key.public_key().unwrap(), "-o"])
        .arg(dir.path("sealed.csv.age"))
        .arg(dir.path("plain.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "age -r: {}", String::from_utf8_lossy(&out.stderr));
    let from_file = Key::from_file(dir.path("key.txt")).unwrap();
    let csv = load_csv(encrypted(dir.path("sealed.csv.age"), &from_file), "label").unwrap();
    assert_eq!(csv.targets.size(), [2]);
}

/// Runs the save onto a 1 MiB tmpfs in a private mount namespace (`unshare`), so nothing is
/// mounted outside this test and no privilege beyond a user namespace is needed.
#[test]
fn a_full_disk_fails_the_save_and_keeps_the_previous_file() {
    let exe = std::env::current_exe().unwrap();
    let dir = TempDir::new("full-disk");
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--"])
        .arg(&exe)
        .args(["--exact", "save_onto_a_full_disk_in_a_namespace", "--nocapture", "--test-threads=1"])
        .env("TORCHBOOK_FULL_DISK_DIR", &dir.0)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    assert!(report.contains("full disk: checked"), "the check did not run:\n{report}");
}

/// The inside of [`a_full_disk_fails_the_save_and_keeps_the_previous_file`]; on its own (no
/// folder given) it has nothing to do.
#[test]
fn save_onto_a_full_disk_in_a_namespace() {
    let Some(dir) = std::env::var_os("TORCHBOOK_FULL_DISK_DIR").map(PathBuf::from) else {
        return;
    };
    let mount = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&dir).output().unwrap();
    assert!(mount.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&mount.stderr));
    let key = Key::generate();
    let path = dir.join("weights.age");
    let small = model(1);
    small.save_weights(encrypted(&path, &key)).unwrap();
    let before = std::fs::read(&path).unwrap();

    // About 2.4 MB of weights do not fit in 1 MiB.
    tch::manual_seed(5);
    let net = Sequential::new().add(Dense::new(600)).add(ReLU).add(Dense::new(2));
    let big = Model::build(Box::new(net), &[1000], Kind::Float, Device::Cpu).unwrap();
    let err = big.save_weights(encrypted(&path, &key)).unwrap_err().to_string();
    assert!(err.contains("weights.age") && err.contains("No space left on device"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the previous file changed");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, ["weights.age"], "a temporary file was left behind");
    let mut copy = model(2);
    copy.load_weights(encrypted(&path, &key)).unwrap();
    assert!(predictions(&copy).allclose(&predictions(&small), 1e-6, 1e-6, false));
    // Plain saves behave the same.
    let plain = dir.join("plain.safetensors");
    small.save_weights(&plain).unwrap();
    assert!(big.save_weights(&plain).is_err());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    println!("full disk: checked");
}
