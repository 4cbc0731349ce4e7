#!/bin/sh
# The CoNLL04 graph measurement of issue 24: the test sentences as raw text (documents of 5
# consecutive sentences, ids 0..57), spert extract, spert graph build, spert graph eval against
# the gold graph (triple P/R/F1, precision at confidence cut-offs, the PR curve), the counts
# of nodes, edges and merged aliases, and the README walk (raw text -> query -> HTML).
#
#   sh benchmarks/graph_conll04.sh [MODEL] [WORK]
#
# MODEL: a CoNLL04 model directory (default runs/conll04-fast/final, made by
#   spert train --preset fast --seed 1 --train ../shared/datasets/conll04/conll04_train.json \
#     --types ../shared/datasets/conll04/conll04_types.json --out runs/conll04-fast)
# WORK: scratch folder (default runs/graph/conll04; runs/ is ignored by git).
# Writes benchmarks/results/graph_conll04.{txt,json,png} and WORK/walk/ (the README walk).
set -eu
MODEL=$(realpath "${1:-runs/conll04-fast/final}")
WORK=$(realpath -m "${2:-runs/graph/conll04}")
GOLD=../shared/datasets/conll04/conll04_test.json
RESULTS=${RESULTS:-benchmarks/results}
export PYTHONPATH="$(pwd)/src"
mkdir -p "$WORK" "$RESULTS"
rm -rf "$WORK/kg" "$WORK/eval" "$WORK/walk/kg"

spert graph eval --gold "$GOLD" --group-size 5 --write-texts "$WORK/texts.jsonl"
spert extract --model "$MODEL" --input "$WORK/texts.jsonl" --out "$WORK/pred.jsonl" --quiet
spert graph build --input "$WORK/pred.jsonl" --out "$WORK/kg" --model "$MODEL" --quiet
spert graph eval --gold "$GOLD" --group-size 5 --pred "$WORK/pred.jsonl" --model "$MODEL" \
  --curve "$RESULTS/graph_conll04.png" --out "$RESULTS/graph_conll04.json" --work "$WORK/eval" \
  | tee "$RESULTS/graph_conll04.txt"
spert graph query "$WORK/kg" "MATCH (e:Entity) WHERE size(e.aliases) > 1 RETURN e.type, e.name, e.aliases, e.alias_counts ORDER BY e.mentions DESC LIMIT 15" \
  | tee -a "$RESULTS/graph_conll04.txt"

# The README walk: raw text to a query result and an HTML graph.
mkdir -p "$WORK/walk"
cat > "$WORK/walk/news.txt" <<'TEXT'
John Smith, a spokesman for International Business Machines (IBM) in Armonk, said the company would hire 500 engineers. Smith said IBM would open new offices in New York.
Lee Harvey Oswald shot President John F. Kennedy in Dallas on Nov. 22, 1963. Oswald was killed two days later by Jack Ruby.
Mary Jones, who lives in Boston, works for the Boston Globe. Jones said the Globe will move its offices to Dorchester.
TEXT
cd "$WORK/walk"
spert extract --model "$MODEL" --input news.txt --out news.jsonl --quiet
spert graph build --input news.jsonl --out kg --model "$MODEL" --quiet
spert graph query kg "MATCH (a:Entity)-[r:RELATED]->(b:Entity) RETURN a.name, r.type, b.name, r.mentions, round(r.confidence, 3) AS confidence ORDER BY confidence DESC"
spert graph query kg "MATCH (e:Entity) WHERE size(e.aliases) > 1 RETURN e.type, e.name, e.aliases"
spert graph view kg --out graph.html
