#!/usr/bin/env bash
# Three updates of new documents at 10x the recipe's size, every method in one table:
#   bench/gr_updates.sh            (from the repository root, after scripts/build.sh)
# A 2,000-document teacher (gr_synthetic, 20 topics, 2,000 words; configs/gr/teacher.yaml with
# overrides) is trained once; then, for each method, configs/gr/updates_old.yaml registers it as
# the first increment (one step: the passes' state of the old documents) and
# configs/gr/updates.yaml adds three updates of 200 documents in sequence (update1..3).
# Methods (GRU_METHODS picks, in this order):
#   naive   fine-tuning, no pass
#   replay  replay of stored rows (a reservoir of 3,000 rows: 10% of the 30,000 old training
#           rows) + EWC (online, lambda 3)
#   pseudo  pseudo-query replay (one generated query per document, 6-8 token spans; the
#           buffer holds 2,000 + 3 x 200 of them) + EWC
#   pseudo8 / pseudo16
#           pseudo-query replay with 8 (16) generated queries per document and 1 (2) replayed
#           per new row + EWC: the buffer holds 8 (16) x 2,600 queries (not in the default list;
#           RESULTS ran them with GRU_EPOCHS=4)
#   documents / documents_only
#           replay of new spans drawn from the kept documents at every step (source: documents,
#           all 2,600 documents, 2 replayed per new row), with EWC / alone (not in the default
#           list; RESULTS ran documents_only with GRU_EPOCHS=12)
#   sam     replay + EWC with sharpness-aware minimization (optimizer.sam_rho=0.05)
#   lora    LoRA adapters (rank 8 on every Linear, base weights frozen) + replay + EWC
# Then the table: old-document Hits@1 before and after the three updates and its drop, the mean
# forgetting over the slices learned before the last update (old, update1, update2), each
# update's Hits@1 after the last update with its test queries and 95% interval, the
# new/old ratio, time and the replay buffer.
# The semantic IDs keep 30% of each node's slots for later documents (data.id_reserve=0.3):
# with the default 20%, 2,000 documents run out of reserved slots in the second update.
# OMP_NUM_THREADS defaults to 1 (a shared machine). GRU_STEPS="teacher methods" picks the
# parts; GRU_TEACHER_EPOCHS (20) and GRU_EPOCHS (epochs per update, 8) the training;
# GRU_ARGS more overrides for every update run (run.seed=1); GRU_DOC_RATIO the document replay's samples per new row (2); GRU_TAG a suffix for the run
# names of a variant (runs/gru_<method><tag>; the table reads the same variable);
# SCULPT_BIN where sculpt is (a copy keeps a long run safe from rebuilds, with LD_LIBRARY_PATH
# at a copy of build/lib). Run names gru_*; runs/gru_times.txt gets each run's wall time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
steps="${GRU_STEPS:-teacher methods}"
methods="${GRU_METHODS:-naive replay pseudo sam lora}"
bin="${SCULPT_BIN:-build/bin}"
sculpt="$bin/sculpt"
p=gru
cfg=configs/gr
keys=(docs=2000 new_docs=200 updates=3 topics=20 vocab=2000 id_reserve=0.3)
size=("${keys[@]/#/data.}")
old=("${keys[@]/#/increments[0].data.}")
all=("${old[@]}")
for i in 1 2 3; do
  # Each update's test queries: 2 per document (400 a slice, 1,200 in all).
  all+=("${keys[@]/#/increments[$i].data.}" "increments[$i].data.test_queries=2")
done
epochs="${GRU_EPOCHS:-8}"
ewc="{name: ewc, mode: online, lambda: 3, samples: 1000}"
rows="{name: replay, buffer: 3000, policy: reservoir, ratio: 1.0}"
pseudo="{name: replay, buffer: 3000, policy: reservoir, ratio: 1.0, source: pseudo_queries,"
pseudo+=" pseudo_queries: 1, span_min: 6, span_max: 8}"
lora="{name: lora, rank: 8, alpha: 16}"
docs="{name: replay, buffer: 2600, ratio: ${GRU_DOC_RATIO:-2.0}, source: documents, span_min: 6, span_max: 8}"
pseudo_n() {  # pseudo_n PER_DOC RATIO: pseudo-query replay holding PER_DOC queries per document
  echo "{name: replay, buffer: $((2600 * $1)), policy: reservoir, ratio: $2, source: pseudo_queries,\
 pseudo_queries: $1, span_min: 6, span_max: 8}"
}
mkdir -p runs
train() {
  local t0
  t0=$(date +%s)
  "$sculpt" train "$@" --log-level warn
  echo "$2 $(( $(date +%s) - t0 ))" >>runs/$p""_times.txt
  echo "  $1 $2: $(( $(date +%s) - t0 )) s" >&2
}
has() { [[ " $steps " == *" $1 "* ]]; }
start=$(date +%s)
has teacher && train "$cfg/teacher.yaml" run.name=$p""_teacher "${size[@]}" \
  trainer.epochs="${GRU_TEACHER_EPOCHS:-20}"
read -r -a extra <<<"${GRU_ARGS:-}"  # more overrides, split at spaces
method() {  # method NAME OVERRIDES...: the two runs of one method
  local name=$1${GRU_TAG:-}
  shift
  train "$cfg/updates_old.yaml" run.name=$p""_$name""_old model.init=runs/$p""_teacher \
    "${size[@]}" "${old[@]}" "$@" "${extra[@]}"
  train "$cfg/updates.yaml" run.name=$p""_$name model.init=runs/$p""_teacher \
    incremental.resume_from=runs/$p""_$name""_old "${size[@]}" "${all[@]}" \
    trainer.epochs="$epochs" "$@" "${extra[@]}"
}
if has methods; then
  for m in $methods; do
    case $m in
      naive) method naive 'compression=[]' ;;
      replay) method replay "compression=[$ewc, $rows]" ;;
      pseudo) method pseudo "compression=[$ewc, $pseudo]" ;;
      pseudo8) method pseudo8 "compression=[$ewc, $(pseudo_n 8 1.0)]" ;;
      pseudo16) method pseudo16 "compression=[$ewc, $(pseudo_n 16 2.0)]" ;;
      documents) method documents "compression=[$ewc, $docs]" ;;
      documents_only) method documents_only "compression=[$docs]" ;;
      sam) method sam "compression=[$ewc, $rows]" optimizer.sam_rho=0.05 ;;
      lora) method lora "compression=[$lora, $ewc, $rows]" ;;
      *) echo "gr_updates.sh: unknown method '$m' (the list is at the top of the script)" >&2
         exit 2 ;;
    esac
  done
fi
echo "updates: $(( $(date +%s) - start )) s, OMP_NUM_THREADS=$OMP_NUM_THREADS," \
  "load $(cut -d' ' -f1-3 /proc/loadavg), $epochs epochs per update"
echo
GRU_METHODS="$methods" python3 "$root/bench/gr_updates_table.py" "$p"
