#!/usr/bin/env bash
# Regenerates the screenshots in docs/ from the browser tests (headless Chromium; install
# Debian's chromium, chromium-driver and fonts-noto-cjk so the Chinese narration renders).
# The tests write target/screenshots/*.png; this copies each one the docs show to its place:
#   playground-<preset>-key.png  -> docs/playground/<preset>.png (each preset's key step)
#   playground-figure7-probes.png -> docs/img/playground-figure7.png
#   dashboard-{live,charts,rewound}.png -> docs/img/
# Usage: scripts/update-screenshots.sh   (about 15-20 minutes on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
shots=target/screenshots
rm -rf "$shots"
cargo test --release -p raftkv-dashboard --test playground_presets_browser --test playground_browser --test dashboard_browser
for shot in "$shots"/playground-*-key.png; do
  preset=$(basename "$shot" -key.png)
  cp "$shot" "docs/playground/${preset#playground-}.png"
done
cp "$shots/playground-figure7-probes.png" docs/img/playground-figure7.png
for name in dashboard-live dashboard-charts dashboard-rewound; do
  cp "$shots/$name.png" "docs/img/$name.png"
done
git status --short docs/
