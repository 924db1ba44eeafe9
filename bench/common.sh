# common.sh: sourced by bench/files.sh and bench/pipeline.sh: the binary
# under test, a scratch folder removed on exit, and timing helpers.
set -eu
cd "$(dirname "$0")/.."
ORCH=${ORCH:-build/orch}
REPS=${REPS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }
