"""Writes the Parquet notebook's data set into DATA_DIR (run by `make data` with the project
venv's Python, which has pyarrow): mnist_5k.parquet, the 5,000 MNIST digits of mnist_5k.csv as
a Spark or pandas pipeline would store them — a `pixels` column holding each image as a
fixed-size list of 784 bytes, `label` (int64) and `digit` (the label's English name,
dictionary-encoded text), snappy-compressed, in row groups of 1,000 rows."""

import csv
import pathlib
import sys

import pyarrow as pa
import pyarrow.parquet as pq

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main(target):
    target = pathlib.Path(target)
    with open(target / "mnist_5k.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    assert header[-1] == "label" and len(header) == 785, header[:3]
    pixels = [[int(v) for v in row[:-1]] for row in rows]
    labels = [int(row[-1]) for row in rows]
    table = pa.table({
        "pixels": pa.array(pixels, pa.list_(pa.uint8(), 784)),
        "label": pa.array(labels, pa.int64()),
        "digit": pa.array([NAMES[label] for label in labels]).dictionary_encode(),
    })
    partial = target / "mnist_5k.parquet.partial"
    pq.write_table(table, partial, compression="snappy", row_group_size=1000)
    partial.rename(target / "mnist_5k.parquet")


if __name__ == "__main__":
    main(sys.argv[1])
