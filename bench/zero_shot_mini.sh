#!/usr/bin/env bash
# Engine measurements on the mini profile (run from the repository root after `make repro`):
#  1. transfer is real: PAN-X and XNLI targets from the converted e5 vs. a random encoder of the same shape;
#  2. intermediate -> target chains (SICK -> XNLI, UD-EWT UPOS -> PAN-X, Social IQa -> XQuAD);
#  3. BUCC and Tatoeba score the base and an intermediate encoder.
# Prints one summary line per run; everything lands in $OUT (default bench/out, git-ignored).
set -euo pipefail
OUT=${OUT:-bench/out}
SEED=${SEED:-1}
export TRANSFORMERS_VERBOSITY=error
mkdir -p "$OUT"
PARAMS=${PARAMS:-params.yaml}
x() { echo "+ xstilts $*" >&2; /usr/bin/time -f "  (%e s wall, %M KB peak)" xstilts --params "$PARAMS" "$@" --quiet; }
done_or() { [ -f "$1/metrics.json" ] && echo "= $1 done" >&2; }  # finished evaluations are not redone

[ -d "$OUT/random-e5" ] || xstilts model --random-like models/base --out "$OUT/random-e5" --seed 0

for t in panx xnli; do
  for enc in base random-e5; do
    init=models/base; [ "$enc" = base ] || init="$OUT/random-e5"
    x train --phase target --tasks $t --init "$init" --out "$OUT/$t/$enc/seed$SEED/model" --seed $SEED
    done_or "$OUT/$t/$enc/seed$SEED" || x evaluate --model "$OUT/$t/$enc/seed$SEED/model" --task $t --out "$OUT/$t/$enc/seed$SEED"
  done
done

chain() {  # intermediate task, target task, [extra evaluate args]
  local inter=$1 target=$2; shift 2
  x train --phase intermediate --tasks "$inter" --init models/base --out "$OUT/intermediate/$inter/seed$SEED" --seed $SEED
  x train --phase target --tasks "$target" --init "$OUT/intermediate/$inter/seed$SEED/encoder" \
    --out "$OUT/$target/$inter/seed$SEED/model" --seed $SEED
  done_or "$OUT/$target/$inter/seed$SEED" ||
    x evaluate --model "$OUT/$target/$inter/seed$SEED/model" --task "$target" --out "$OUT/$target/$inter/seed$SEED" "$@"
}
chain sick xnli
chain ud_ewt_upos panx

for enc in base sick; do
  dir=models/base; [ "$enc" = base ] || dir="$OUT/intermediate/sick/seed$SEED/encoder"
  done_or "$OUT/tatoeba/$enc" || x retrieval --encoder "$dir" --task tatoeba --out "$OUT/tatoeba/$enc"
  done_or "$OUT/bucc2018/$enc" || x retrieval --encoder "$dir" --task bucc2018 --out "$OUT/bucc2018/$enc"
done

chain siqa xquad --languages en de zh ar hi
