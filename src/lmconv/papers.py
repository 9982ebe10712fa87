"""Numbers the three papers (and the PolyPythias) state or their code fixes, so chapters glue them instead of
typing them. Sources: the specs in the project's shared folder (each marked there as paper, code or guess)."""

from __future__ import annotations

# Fehlauer, Mahowald & Pimentel (2025): cross-seed convergence.
KL_PHASE_LINES = (16, 256, 2000)  # dashed lines drawn by eye in every figure (code), the same for all sizes
KL_PROBE_TOKENS = 4662  # next-token positions of the 10-document Pile sample
KL_SEEDS = (1, 3, 5, 7, 9)  # PolyPythia seeds used; 20 ordered pairs
KL_CONTEXT, KL_STRIDE = 2048, 1024  # sliding window
KL_FINAL_STEP = 143000
KL_STORAGE_MB_PER_CHECKPOINT = 469  # fp16 log-probs, 4,662 x 50,304
KL_FREQ_BIN_EDGES = (10, 100, 1_000, 10_000, 100_000)
KL_SURPRISAL_BIN_EDGES = (1, 2, 4, 8)
KL_VOCAB = 50277  # tokenizer vocabulary (logits have 50,304 columns)

# Diehl Martinez, Lesci & Buttery (2024): activation convergence and effective rank.
CKA_STABLE_FRACTION = 0.20  # "nearly all layers in larger models stabilise ... within the first 20%"
CKA_SAMPLES = 128  # sequences of the last training batch, last token only
CKA_HEATMAP_MIDPOINT = 0.95
CKA_SIZES = ("70m", "160m", "410m", "1.4b", "2.8b")

# Zhang et al. (2026): stability of the singular distribution (secondary reading, unverified).
SOSD_PHASE_STEP = 1000  # phase I restructuring before ~1000 steps, phase II metastability after
SOSD_PEAK, SOSD_FLOOR = 1e-2, 1e-4  # ΔΣ during phase I and phase II

# Pythia / PolyPythias.
PYTHIA_STEPS = 143000
PYTHIA_WARMUP = 1430  # 1% of training
PYTHIA_TOKENS_PER_STEP = 2_097_152  # 1,024 sequences x 2,048 tokens
