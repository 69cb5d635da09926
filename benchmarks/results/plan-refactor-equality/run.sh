#!/bin/bash
# the issue-42 equality runs: $1 = source tree, $2 = output folder
set -e
SRC=$1; OUT=$2
cd $SRC
PYTHONPATH=$SRC/src /work/main/.venv/bin/python -m sgan train --config benchmarks/kannada10k.toml --methods sgan fixmatch --iterations 1000 --n-labeled 100 --seed 0 --threads 2 --no-progress --out $OUT/kannada
PYTHONPATH=$SRC/src /work/main/.venv/bin/python -m sgan train --preset pets-12k-32 --methods sgan+aug --iterations 200 --seed 0 --threads 2 --no-progress --out $OUT/pets
