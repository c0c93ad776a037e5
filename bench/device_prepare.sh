#!/usr/bin/env bash
# Run HERE (the development machine) before a session's one call on a lent GPU machine.
# That machine cannot reach a model hub or a package index and has no dlib, and the shared
# photos beside this checkout do not travel; so this fetches the wheels it lacks (or holds in
# other versions) into .whl/ and prepares the benchmark photos into var/bench/data/.
# Then, with the device tool:
#   run(command="bash bench/device_run.sh", carry=[".whl", "var/bench/data"], timeout_s=600)
# then give_back, and copy the tables from the returned logs into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

# The pinned versions from pyproject.toml; regex at the version transformers needs (the image's is older).
mapfile -t wheels < <("$PY" - <<'PYTHON'
import tomllib

import regex

dependencies = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for pin in dependencies:
    if pin.split("==")[0] in {"diffusers", "peft", "transformers"}:
        print(pin)
print(f"regex=={regex.__version__}")
PYTHON
)
rm -rf .whl
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${wheels[@]}"

faces=${FACES:-../shared/data/faces}
"$PY" - "$faces" <<'PYTHON'
import sys
from pathlib import Path

from bench.common import DEFAULT_WORK, ensure_data

for resolution in (512, 1024):
    print("prepared", *ensure_data(Path(sys.argv[1]), resolution, DEFAULT_WORK))
PYTHON
cp "$faces/obama.jpg" var/bench/data/edit-photo.jpg
du -sh .whl var/bench/data
