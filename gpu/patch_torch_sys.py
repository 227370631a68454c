#!/usr/bin/env python3
"""Copies torch-sys 0.26 (generated for libtorch 2.13) to DEST and makes its C++ wrapper compile
against libtorch 2.11's headers, for the GPU check kit only (gpu/README.md).

libtorch 2.11 lacks a few private ops (`_philox_*`, `_upsample_lanczos2d_aa*`,
`_flash_attention_forward_no_dropout_inplace`) and has an older signature of
`_scaled_dot_product_attention_math_for_mps`. Each wrapper that calls one of them gets a body
that throws inside tch's PROTECT, so calling it from Rust is a TchError ("not in this
libtorch") while everything else links against 2.11 unchanged.

usage: patch_torch_sys.py SRC DEST
"""
import re
import shutil
import sys
from pathlib import Path

MISSING = [
    "_flash_attention_forward_no_dropout_inplace",
    "_philox_key_fold_in",
    "_philox_key_split",
    "_philox_normal",
    "_philox_normal_",
    "_philox_normal_out",
    "_philox_uniform",
    "_philox_uniform_",
    "_philox_uniform_out",
    "_upsample_lanczos2d_aa",
    "_upsample_lanczos2d_aa_backward",
    "_upsample_lanczos2d_aa_backward_out",
    "_upsample_lanczos2d_aa_out",
    "_scaled_dot_product_attention_math_for_mps",
]


def main() -> None:
    src, dest = Path(sys.argv[1]), Path(sys.argv[2])
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    path = dest / "libtch" / "torch_api_generated.cpp"
    text = path.read_text()
    calls = re.compile(r"torch::(%s)\(" % "|".join(re.escape(n) for n in MISSING))
    # Each wrapper: `void atg_...(...) {\n  PROTECT(\n ... \n  )\n}` (some return a value after).
    function = re.compile(r"(\n\S[^\n]*\batg_\w+\([^\n]*\{\n  PROTECT\(\n)(.*?)(\n  \)\n)", re.S)
    patched = []

    def stub(m: re.Match) -> str:
        found = calls.search(m.group(2))
        if not found:
            return m.group(0)
        patched.append(found.group(1))
        message = f"{found.group(1)}: not in this libtorch (torch-sys patched for the libtorch 2.11 GPU kit)"
        return f'{m.group(1)}    throw std::runtime_error("{message}");{m.group(3)}'

    text = function.sub(stub, text)
    left = calls.findall(text)
    if left:
        sys.exit(f"patch_torch_sys: calls left unpatched: {sorted(set(left))}")
    path.write_text(text)
    # Cargo checks a registry crate's files against .cargo-checksum.json; a path crate has none.
    (dest / ".cargo-checksum.json").unlink(missing_ok=True)
    print(f"patch_torch_sys: stubbed {len(patched)} wrappers ({', '.join(sorted(set(patched)))}) in {path}")


if __name__ == "__main__":
    main()
