"""Numbers the three papers (and the PolyPythias) state or their code fixes, so chapters glue them instead of
typing them. Sources: the specs in the project's shared folder (each marked there as paper, code or guess).
A leaf module: it imports nothing from lmconv, so any module may import it."""

from __future__ import annotations

# Fehlauer, Mahowald & Pimentel (2025): cross-seed convergence.
KL_PHASE_LINES = (16, 256, 2000)  # dashed lines drawn by eye in every figure (code), the same for all sizes
KL_PROBE_TOKENS = 4662  # next-token positions of the 10-document Pile sample
KL_SEEDS = (1, 3, 5, 7, 9)  # PolyPythia seeds used; 20 ordered pairs
KL_CONTEXT, KL_STRIDE = 2048, 1024  # sliding window
KL_STORAGE_MB_PER_CHECKPOINT = 469  # fp16 log-probs, 4,662 x 50,304
KL_FREQ_BIN_EDGES = (10, 100, 1_000, 10_000, 100_000)
KL_SURPRISAL_BIN_EDGES = (1, 2, 4, 8)
KL_VOCAB = 50277  # tokenizer vocabulary (logits have 50,304 columns)
# the labels its code (binned_plot.py) gives the frequency bins, beside the bins they actually hold (spec §5)
KL_FREQ_LABELS = ("0-10", "10-100", "10^3-10^4", "10^4-10^5", "10^5-10^6", "10^6+")
# its ICL score (run-stage/alternate_icl.py): the loss of one token with 401 vs 51 tokens of context (code)
KL_ICL_LONG, KL_ICL_SHORT = 401, 51
KL_ICL_PLATEAU = (0.33, 0.39)  # nats, read off the committed plot from step 2000 on, all sizes (spec §4)
KL_BLIMP_PAIRS = 100  # BLiMP downstream convergence: the first 100 pairs of each task (run-stage/blimp_task.py)

# Diehl Martinez, Lesci & Buttery (2024): activation convergence and effective rank.
CKA_STABLE_FRACTION = 0.20  # "nearly all layers in larger models stabilise ... within the first 20%"
CKA_SAMPLES = 128  # sequences of the last training batch, last token only
CKA_HEATMAP_MIDPOINT = 0.95
CKA_SIZES = ("70m", "160m", "410m", "1.4b", "2.8b")
# its code's downstream plot: Pythia-160M's zero-shot LAMBADA accuracy falls late, (step, accuracy) (spec §1)
STAB_LAMBADA_160M = ((93_000, 0.40), (123_000, 0.31))

# Zhang et al. (2026): stability of the singular distribution (secondary reading, unverified).
SOSD_PHASE_STEP = 1000  # phase I restructuring before ~1000 steps, phase II metastability after
SOSD_PEAK, SOSD_FLOOR = 1e-2, 1e-4  # ΔΣ during phase I and phase II
SOSD_LOSS_START, SOSD_LOSS_END = 10.0, 4.0  # validation loss over phase I ("≈10 → ≈4.0")
SOSD_LLAMA_SIZES_B = (0.5, 2.0)  # LLaMA sizes in billions of parameters (the largest model is 2B)

# Pythia / PolyPythias.
PYTHIA_STEPS = 143000  # the final step (revision step143000, the hub's main): the only home of this number
PYTHIA_WARMUP = 1430  # 1% of training
# peak and minimum learning rate per size, warmup 1%, cosine (the KL paper's paper-plots/learning_rates.py, code)
PYTHIA_LR = {
    "14m": (1e-3, 1e-4),
    "31m": (1e-3, 1e-4),
    "70m": (1e-3, 1e-4),
    "160m": (6e-4, 6e-5),
    "410m": (3e-4, 3e-5),
}
PYTHIA_LR_FINAL_RATIO = PYTHIA_LR["70m"][1] / PYTHIA_LR["70m"][0]  # minimum over peak: 0.1 for every size
PYTHIA_TOKENS_PER_STEP = 2_097_152  # 1,024 sequences x 2,048 tokens
PYTHIA_VOCAB = 50304  # embedding and logit rows (the tokenizer's 50,277 padded), from the model cards
# The PolyPythias (van der Wal et al. 2025): sizes, seeds (0 = the original run) and the released steps.
POLYPYTHIA_SIZES = ("14m", "31m", "70m", "160m", "410m")
POLYPYTHIA_SEEDS = tuple(range(10))
POLYPYTHIA_STEPS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, *range(1000, PYTHIA_STEPS + 1, 1000))
# The decoupled 160M runs (van der Wal et al. 2025): only the data order (variant "data") or only the initial weights
# (variant "weight") vary with the seed; repositories pythia-160m-{variant}-seed{k}.
POLYPYTHIA_DECOUPLED_SIZES = ("160m",)
POLYPYTHIA_DECOUPLED_SEEDS = (1, 2, 3)
# model-card shapes: layers, d_model, heads
POLYPYTHIA_SHAPES = {
    "14m": (6, 128, 4),
    "31m": (6, 256, 8),
    "70m": (6, 512, 8),
    "160m": (12, 768, 12),
    "410m": (24, 1024, 16),
}
