#!/usr/bin/env bash
# Development benchmark on the team's shared datasets: each task's dev.jsonl is its test file, the other
# datasets form the hub (--exclude-own hides the task's own folder, so retrieval works as on an unseen task).
# Usage: benchmarks/shared_dev.sh [extra p2m bench options]   (results under benchmarks/results/shared-dev/)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data}
TASKS=${TASKS:-sms_spam,sst2,trec,ag_news,emotion,squad,temporal,mconala_ja}
exec "${P2M:-.venv/bin/p2m}" bench "$SHARED" --test-file dev.jsonl --hub "$SHARED" --exclude-own --tasks "$TASKS" \
  --out benchmarks/results/shared-dev "$@"
