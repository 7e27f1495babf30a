#!/usr/bin/env bash
# Side-by-side benchmark of `chatlm data prepare` against the Python pipeline (see BENCHMARKS.md):
#   1. 50k-row synthetic conversational dataset (mixed English/Korean), llama3 tokenizer:
#      chatlm data prepare --pack bfd --seq-length 2048  vs  load_dataset -> map(apply_chat_template) ->
#      trl.pack_dataset(bfd) -> to_parquet with num_proc=2; checks identical input_ids / seq_lengths.
#   2. packing 1M tokenized rows: chatlm (Parquet in/out, --format tokenized) vs trl.pack_dataset alone.
# Usage: scripts/bench/data_bench.sh [ROWS=50000] [PACK_ROWS=1000000]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-50000}
PACK_ROWS=${2:-1000000}
FIX=${CHATLM_FIXTURES:-../shared/fixtures}
TOK=$FIX/tokenizers/llama3
BIN=${CHATLM_BIN:-target/release/chatlm}
W=$(mktemp -d /tmp/chatlm-data-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
[ -x "$BIN" ] || cargo build --release -p chatlm-cli
echo "machine: $(nproc) cores; rows=$ROWS"
python3 scripts/bench/data_gen.py "$W/conv.jsonl" --rows "$ROWS"

t0=$(date +%s.%N)
"$BIN" data prepare "$W/conv.jsonl" --tokenizer "$TOK" --output "$W/rust.parquet" --pack bfd --seq-length 2048 2> "$W/rust.log"
t1=$(date +%s.%N)
rust_s=$(echo "$t1 - $t0" | bc -l)
py=$(python3 scripts/bench/data_python.py "$W/conv.jsonl" "$TOK" "$W/py.parquet" --num-proc 2 | tail -1)
py_s=$(echo "$py" | sed -E 's/.*seconds=([0-9.]+).*/\1/')
python3 - "$W/rust.parquet" "$W/py.parquet" <<'PY'
import sys, pyarrow.parquet as pq
r, p = pq.read_table(sys.argv[1]), pq.read_table(sys.argv[2])
same = r["input_ids"].to_pylist() == p["input_ids"].to_pylist() and r["seq_lengths"].to_pylist() == p["seq_lengths"].to_pylist()
print(f"identical input_ids/seq_lengths: {same} ({r.num_rows} packed rows)")
if not same:
    sys.exit(1)
PY
printf "prepare+pack bfd 2048: chatlm %.2fs (%.0f rows/s) | python num_proc=2 %.2fs (%.0f rows/s) | ratio %.2fx\n" \
  "$rust_s" "$(echo "$ROWS / $rust_s" | bc -l)" "$py_s" "$(echo "$ROWS / $py_s" | bc -l)" "$(echo "$py_s / $rust_s" | bc -l)"

python3 scripts/bench/data_tokenized_gen.py "$W/tok.parquet" "$PACK_ROWS" 64 > /dev/null
t0=$(date +%s.%N)
"$BIN" data prepare "$W/tok.parquet" --tokenizer "$TOK" --output "$W/rust_packed.parquet" --format tokenized --pack bfd --seq-length 2048 2> "$W/pack.log"
t1=$(date +%s.%N)
pr_s=$(echo "$t1 - $t0" | bc -l)
pp=$(python3 scripts/bench/data_pack_python.py "$W/tok.parquet" 2048 bfd "$W/py_packed.parquet" | tail -1)
pp_s=$(echo "$pp" | sed -E 's/.*seconds=([0-9.]+).*/\1/')
python3 - "$W/rust_packed.parquet" "$W/py_packed.parquet" <<'PY'
import sys, pyarrow.parquet as pq
r, p = pq.read_table(sys.argv[1]), pq.read_table(sys.argv[2])
same = r["input_ids"].to_pylist() == p["input_ids"].to_pylist() and r["seq_lengths"].to_pylist() == p["seq_lengths"].to_pylist()
print(f"identical packed input_ids/seq_lengths: {same} ({r.num_rows} rows)")
PY
printf "pack %s rows bfd 2048: chatlm (read+pack+write Parquet) %.2fs | trl.pack_dataset (in memory) %.2fs | ratio %.2fx\n" \
  "$PACK_ROWS" "$pr_s" "$pp_s" "$(echo "$pp_s / $pr_s" | bc -l)"
