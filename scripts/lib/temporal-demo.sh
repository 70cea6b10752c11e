# Shared by scripts/bench-temporal and scripts/eval-temporal, so both measure the same clip with the same settings.
#
# The generated static-camera clip (scripts/synth): seed 3, clip 4, 320x240, no pan, constant light, sparse traffic,
# H.264 crf 23. Callers add --out, --frames, --noise and, for a video without ground truth, --no-panoptic.
STATIC_SYNTH=(--seed 3 --first-clip 4 --clips 1 --pan off --light off --traffic sparse --crf 23)
# The demo model's delta settings, one for every clip (chosen on the first 200 frames of static-sparse.mp4,
# docs/temporal.md): its boxes move with the deeper layers' threshold (0.3 cost F1 0.94 there, 0.1 kept 0.99) more
# than with the stem's; tile 1 limits the receptive-field spread on its small (320x240) maps.
DEMO_T=0.1 DEMO_IT=0.05 DEMO_TILE=1
DEMO_DELTA=(--threshold $DEMO_T --input-threshold $DEMO_IT --tile $DEMO_TILE)                         # bench temporal
DEMO_PROCESS=(--temporal-threshold $DEMO_T --temporal-input-threshold $DEMO_IT --temporal-tile $DEMO_TILE)  # process
