"""The paper's tables as data: per dataset and model, the budget and each method's setting and numbers.

`PRESETS[dataset][model]` is a `Preset`; `itra reproduce` (see `reproduce.py`) runs it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any
from itra.errors import BadValue


@dataclass(frozen=True)
class MethodSetting:
    label: str  # as the paper's table names it
    method: str
    strength: float | None = None  # the value of the method's strength field (`METHODS[method].strength`: λ, ε)
    paper_accuracy: float | None = None
    paper_cross_entropy: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields of this row alone (a variant)
    # A point of its method's strength grid, beside the method's main row (its first without settings of its own):
    # drawn by strength in the figures, not among the methods, and a strength the validation split picks from.
    grid: bool = False


@dataclass(frozen=True)
class Preset:
    dataset: str
    model: str
    table: str  # where the paper's numbers come from
    methods: tuple[MethodSetting, ...]
    epochs: int
    batch_size: int
    lr: float
    smoke_train: int = 1000
    smoke_test: int = 500
    settings: dict[str, Any] = field(default_factory=dict)  # other TrainConfig fields (optimizer, subsets, ...)
    compared: str = "itra-c"  # the method whose difference to each baseline the table reports
    modes: bool = False  # measure whether the features keep the two source classes of each label (`modes.py`)
    ood: bool = False  # measure every run's OOD detection and retrieval (`experiments/ood.py`, `itra ood`)

    @property
    def compared_label(self) -> str:
        """The label of the compared method's main row (its first)."""
        return next(s.label for s in self.methods if s.method == self.compared)


def paper_row(
    table: str, dataset: str, model: str, epochs: int, batch_size: int, lr: float,
    ce: tuple[float | None, float | None], lsr: tuple[float, float | None, float | None] | None,
    center: tuple[float, float | None, float | None], itra: tuple[float, float | None, float | None],
) -> Preset:
    """A preset from one row of a paper table: (acc, CE) for CE and (lambda or epsilon, acc, CE) for the others."""
    methods = [MethodSetting("Baseline (CE)", "ce", None, *ce)]
    if lsr is not None:
        methods.append(MethodSetting("LSR", "lsr", *lsr))
    methods += [MethodSetting("Center", "center", *center), MethodSetting("ITRA-c", "itra-c", *itra)]
    return Preset(dataset, model, table, tuple(methods), epochs, batch_size, lr)


TEXT_FINE_TUNING = {"optimizer": "adamw", "weight_decay": 0.01, "max_length": 256}
TABLE_4 = [  # (dataset, title, [(model, name, (CE acc, CE), None (no LSR), (lam, Center acc, CE), (lam, ITRA acc, CE))])
    ("ag-news", "AG's News", [
        ("bert-base-uncased", "BERT-base", ((92.10, 0.42), None, (0.1, 91.70, 0.45), (0.5, 92.45, 0.29))),
        ("distilbert-base-uncased", "DistilBERT", ((92.13, 0.38), None, (0.1, 91.33, 0.47), (0.2, 92.27, 0.26))),
        ("xlnet-base-cased", "XLNet", ((91.43, 0.40), None, (0.1, 90.95, 0.45), (0.8, 91.85, 0.27))),
    ]),
    ("amazon-full", "Amazon Full", [
        ("bert-base-uncased", "BERT-base", ((58.53, 1.66), None, (0.1, 59.38, 1.23), (0.2, 60.08, 1.29))),
        ("distilbert-base-uncased", "DistilBERT", ((58.10, 1.38), None, (0.1, 57.60, 1.21), (0.4, 58.30, 1.20))),
        ("xlnet-base-cased", "XLNet", ((60.65, 1.34), None, (0.1, 59.88, 1.18), (0.5, 60.90, 1.23))),
    ]),
    ("yahoo", "Yahoo Answers", [
        ("bert-base-uncased", "BERT-base", ((66.60, 1.36), None, (0.1, 66.95, 1.25), (0.6, 67.47, 1.25))),
        ("distilbert-base-uncased", "DistilBERT", ((66.50, 1.28), None, (0.1, 66.57, 1.26), (0.1, 66.65, 1.17))),
        ("xlnet-base-cased", "XLNet", ((66.90, 1.29), None, (0.1, 66.93, 1.28), (0.5, 67.05, 1.15))),
    ]),
    ("yelp-full", "Yelp Full", [
        ("bert-base-uncased", "BERT-base", ((61.12, 1.52), None, (0.1, 60.58, 1.17), (0.4, 61.68, 1.09))),
        ("distilbert-base-uncased", "DistilBERT", ((60.02, 1.32), None, (0.1, 59.58, 1.14), (0.1, 60.30, 1.17))),
        ("xlnet-base-cased", "XLNet", ((62.78, 1.21), None, (0.1, 62.82, 1.10), (1.0, 63.32, 1.08))),
    ]),
]

# {dataset: {model: preset}}; the first model is the default. The paper gives no epochs or learning
# rate; for the GPU rows ours are 100 epochs of SGD at batch 128 from lr 0.1 (Table 3's batch sizes).
T2 = "Table 2"
PRESETS: dict[str, dict[str, Preset]] = {
    # 10 epochs: 4 methods x 3 seeds in under 60 minutes on 2 CPU cores.
    "fashion-mnist": {"cnn": paper_row("Table 1 (FMNIST)", "fashion-mnist", "cnn", 10, 128, 0.05,
                                       (92.43, 0.294), (0.1, 92.47, 0.292), (0.1, 92.10, 0.263), (0.6, 92.57, 0.224))},
    "kmnist": {"cnn": paper_row("Table 1 (KMNIST)", "kmnist", "cnn", 10, 128, 0.05,
                                (95.57, 0.183), (0.1, 95.60, 0.181), (0.1, 94.90, 0.214), (0.8, 95.79, 0.170))},
    # Offline, no paper numbers: Fashion-MNIST's lambdas on scikit-learn's 8x8 digits.
    # its smoke test subset is 300 of the 360 test images (a subset larger than the set is refused)
    "digits": {"cnn": dataclasses.replace(
        paper_row("no paper table (digits); Table 1's FMNIST lambdas", "digits", "cnn", 30, 64, 0.05,
                  (None, None), (0.1, None, None), (0.1, None, None), (0.6, None, None)), smoke_test=300)},
    "cifar10": {
        "resnet18": paper_row(f"{T2} (CIFAR10, ResNet18)", "cifar10", "resnet18", 100, 128, 0.1,
                              (92.99, 0.40), (0.1, 92.73, 0.42), (0.1, 92.30, 0.35), (0.8, 93.70, 0.27)),
        "vgg13": paper_row(f"{T2} (CIFAR10, VGG13)", "cifar10", "vgg13", 100, 128, 0.1,
                           (92.49, 0.47), (0.1, 92.53, 0.46), (0.05, 92.11, 0.38), (0.8, 92.72, 0.33)),
        "mobilenetv2": paper_row(f"{T2} (CIFAR10, MobileNetV2)", "cifar10", "mobilenetv2", 100, 128, 0.1,
                                 (88.55, 0.62), (0.1, 88.77, 0.61), (0.1, 88.81, 0.53), (1.0, 89.37, 0.43)),
    },
    "stl10": {
        "resnet18": paper_row(f"{T2} (STL10, ResNet18)", "stl10", "resnet18", 100, 128, 0.1,
                              (70.88, 1.63), (0.1, 71.08, 1.55), (0.1, 70.97, 1.10), (0.6, 72.78, 1.05)),
        "vgg13": paper_row(f"{T2} (STL10, VGG13)", "stl10", "vgg13", 100, 128, 0.1,
                           (74.40, 1.55), (0.1, 74.50, 1.51), (0.05, 74.04, 1.16), (0.8, 75.80, 0.93)),
        "mobilenetv2": paper_row(f"{T2} (STL10, MobileNetV2)", "stl10", "mobilenetv2", 100, 128, 0.1,
                                 (59.09, 2.14), (0.1, 59.01, 2.12), (0.1, 58.24, 1.46), (0.6, 62.02, 1.60)),
    },
    "cifar100": {
        "resnet18": paper_row(f"{T2} (CIFAR100, ResNet18)", "cifar100", "resnet18", 100, 128, 0.1,
                              (74.19, 1.05), (0.1, 74.21, 1.04), (0.05, 73.98, 0.98), (0.6, 74.88, 0.97)),
        "vgg13": paper_row(f"{T2} (CIFAR100, VGG13)", "cifar100", "vgg13", 100, 128, 0.1,
                           (71.72, 1.46), (0.1, 71.75, 1.43), (0.05, 71.65, 1.31), (0.6, 72.55, 1.22)),
        "mobilenetv2": paper_row(f"{T2} (CIFAR100, MobileNetV2)", "cifar100", "mobilenetv2", 100, 128, 0.1,
                                 (66.42, 1.57), (0.1, 66.60, 1.55), (0.05, 66.39, 1.51), (0.6, 67.23, 1.49)),
        "resnet101": paper_row("Table 3 (CIFAR-100, ResNet-101, batch 200)", "cifar100", "resnet101", 100, 200, 0.1,
                               (75.85, 1.04), None, (0.05, 75.23, 1.05), (0.6, 76.85, 0.94)),
    },
    # Table 4 (text). The paper gives no budget; ours is the usual fine-tuning recipe: AdamW at 2e-5,
    # weight decay 0.01, batch 32, 256 tokens, 3 epochs (a GPU job).
    **{dataset: {model: dataclasses.replace(paper_row(f"Table 4 ({title}, {name})", dataset, model, 3, 32, 2e-5, *row),
                                            settings=TEXT_FINE_TUNING)
                 for model, name, row in rows}
       for dataset, title, rows in TABLE_4},
    # Offline: WordNet glosses -> 41 lexicographer classes, all-MiniLM-L6-v2 fine-tuned. No paper numbers;
    # Table 4's most common lambdas (Center 0.1; ITRA 0.5, BERT-base on AG News). Budget chosen so that
    # 4 methods x 3 seeds take under 90 minutes on 2 CPU cores: a fixed 3,000-gloss training subset,
    # 2 epochs, 32 tokens (the 90th percentile of gloss length is 31), a fixed 2,000-gloss test subset.
    "wordnet": {"minilm": dataclasses.replace(
        paper_row("no paper table (WordNet); Table 4's lambdas", "wordnet", "minilm", 2, 32, 5e-5,
                  (None, None), (0.1, None, None), (0.1, None, None), (0.5, None, None)),
        smoke_train=96, smoke_test=64,
        settings={**TEXT_FINE_TUNING, "max_length": 32, "train_subset": 3000, "test_subset": 2000},
    )},
    "imagenet": {"resnet18": paper_row("Table 3 (ImageNet, ResNet-18, batch 256)", "imagenet", "resnet18", 90, 256, 0.1,
                                       (50.01, 2.24), None, (0.05, 51.83, 2.21), (0.6, 53.13, 2.07))},
}


# The λ ramp and S2's pass of the studies whose run directories are committed (benchmarks/runs): --lam-warmup's 300
# steps and the pass that updates the batch-norm statistics, as they were trained before --lam-warmup-ratio and
# --s2-state keep, so that `itra reproduce` finds them under their names.
S2_UPDATES = {"s2_state": "update"}
COMMITTED_RECIPE = {"lam_warmup": 300, **S2_UPDATES}

# The paper's overfitting regime (its Figure 2 and "the increasing testing loss" of vanilla SGD on FMNIST), where
# the 10-epoch Table 1 budget is not: 10,000 training images for 40 epochs (3,160 steps), CE's test CE bottoms
# out near epoch 14 and then rises while its train CE falls to 0.005. A stratified 5,000-image validation split,
# held out of the other 50,000, fits the temperature and picks the early-stopping epoch. Rows: every baseline a
# user would reach for, the default and the paper's reading of ITRA-c, its cheap pairing, and ITRA-c's λ grid; the
# control (λ = 0: S2 drawn and passed as by the other rows, no matching loss), which tells the matching loss's part of
# ITRA-c's effect from the second pass's, and ITRA-c with the pass that keeps the model's state (`--s2-state keep`,
# whose λ = 0 is CE's run bit for bit). Each regulariser at its best strength, as the paper tunes λ per method: a grid of
# 8 strengths each for ITRA-c, LSR and Center, and per method the row of the strength whose runs have the lowest mean
# validation CE (`reproduce.picked_rows`). The grids' 51 runs past the study's first 36 (LSR and Center at 7 new
# strengths, ITRA-c at λ 1.5, 2 and 3; ~400 s a single-thread run, ~530 s ITRA-c's, two at a time on the 2-core
# machine) take about 3 hours at --jobs 2: in parts, `--seeds 1`, then 2, then 3.
OVERFIT_LAMBDAS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0)
OVERFIT_EPSILONS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
OVERFIT_CENTER_LAMBDAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
PRESETS["fashion-mnist-overfit"] = {"cnn": Preset(
    "fashion-mnist", "cnn", "the overfitting regime of Figure 2 (FMNIST); no paper numbers", (
        MethodSetting("Baseline (CE)", "ce"), MethodSetting("LSR", "lsr", 0.1), MethodSetting("Center", "center", 0.1),
        MethodSetting("ITRA-c", "itra-c", 0.6),
        MethodSetting("ITRA-c (paper variant)", "itra-c", 0.6, settings={"bandwidth": "class", "lam_warmup": 0}),
        MethodSetting("ITRA-c (previous)", "itra-c", 0.6, settings={"pairing": "previous"}),
        *(MethodSetting(f"ITRA-c λ={lam:g}", "itra-c", lam, grid=True) for lam in OVERFIT_LAMBDAS if lam != 0.6),
        MethodSetting("ITRA-c λ=0 (control)", "itra-c", 0.0),
        MethodSetting("ITRA-c (S2 keeps state)", "itra-c", 0.6, settings={"s2_state": "keep"}),
        *(MethodSetting(f"LSR ε={eps:g}", "lsr", eps, grid=True) for eps in OVERFIT_EPSILONS if eps != 0.1),
        *(MethodSetting(f"Center λ={lam:g}", "center", lam, grid=True) for lam in OVERFIT_CENTER_LAMBDAS if lam != 0.1),
    ), 40, 128, 0.05, smoke_train=256, smoke_test=128,
    settings={"train_subset": 10000, "val_split": 5000, **COMMITTED_RECIPE})}

# The paper's closing promise, "a smaller labeled ... training set": the overfitting regime's recipe (small CNN, SGD
# lr 0.05, cosine schedule, a stratified validation split for the temperature and early stopping) on 500, 1,000 and
# 2,000 training images, each trained until CE has long fitted its training set (640-960 steps). Batch 64, not 128:
# 500 images make 3 batches of 128 an epoch, and the epochs' evaluations would cost more than the training. A
# validation split of 1,000 (100 a class) and a fixed 2,000-image test subset keep the evaluations cheap. Rows: CE,
# Center, ITRA-c, the control (λ = 0) and ITRA-c whose S2 pass keeps the model's state; today's λ warm-up (a tenth
# of the run). ITRA-c and the control with the pass that updates the batch-norm statistics (`S2_UPDATES`), as in the
# overfitting regime's study, so the control measures that pass; with the default pass (keep) λ = 0 is CE's run.
# `itra reproduce fashion-mnist-few500` (and -few1000, -few2000).
FEW_LABELS = {500: 80, 1000: 50, 2000: 30}  # training images: epochs
for size, epochs in FEW_LABELS.items():
    PRESETS[f"fashion-mnist-few{size}"] = {"cnn": Preset(
        "fashion-mnist", "cnn", f"a small labelled training set ({size:,} images; FMNIST); no paper numbers", (
            MethodSetting("Baseline (CE)", "ce"), MethodSetting("Center", "center", 0.1),
            MethodSetting("ITRA-c", "itra-c", 0.6), MethodSetting("ITRA-c λ=0 (control)", "itra-c", 0.0),
            MethodSetting("ITRA-c (S2 keeps state)", "itra-c", 0.6, settings={"s2_state": "keep"}),
        ), epochs, 64, 0.05, smoke_train=500, smoke_test=300,
        settings={"train_subset": size, "val_split": 1000, "test_subset": 2000, **S2_UPDATES})}

# Text in the paper's regime (its Table 4 fine-tunes BERT-family encoders on 4- to 10-class sets): `wordnet` above
# underfits (188 steps: train CE 1.42 above test CE 1.36, λ mostly ramping). Here MiniLM is fine-tuned until it
# overfits, on `wordnet-top10` (the 10 largest lexicographer classes, no test gloss that is also a training gloss): at
# batch 32 a batch holds 3.2 glosses of a class on average (1.5 of the smallest, noun.substance), as Yahoo Answers'
# 10 classes. A fixed 2,000-gloss training subset for 12 epochs, 63 steps each (756 steps; the default warm-up, a
# tenth, ends at step 76, so λ is full for 90 % of the run); a stratified 500-gloss validation split (50 a class on
# average) fits the temperature and picks the early-stopping epoch; a fixed 1,000-gloss test subset; 32 tokens, AdamW
# at `wordnet`'s lr 5e-5. Rows: CE, LSR, Center, ITRA-c at Table 4's λ 0.5 (BERT-base, AG News) and at 1.0, the
# control (λ = 0: S2 drawn and passed, no matching loss) and ITRA-c with --pairing previous (no second pass). S2's
# pass updates the model's state (`S2_UPDATES`), as in the image studies, so that the control measures it (MiniLM has
# no batch norm: the pass shifts the dropout draws of S1; with the default pass, keep, λ = 0 is CE's run).
# Budget, at MiniLM's 0.9 s a step (batch 32, 32 tokens, one single-thread run of the 2-core machine) and ITRA-c's
# 1.8 s (S2's pass, 1.8x CE's measured on a loaded machine; --pairing previous has none): a seed is 756 steps x 0.9 s
# x (4 rows + 3 rows x 2) = 6,800 s of training; its evaluations (1,500 glosses an epoch, forward only at ~0.3 s a
# batch of 32: 170 s a run) and compactness probes (15 of 512 glosses: 70 s a run) add 7 x 240 = 1,700 s: 8,500 s a
# seed, 25,500 s for 3 seeds, 3.5 hours at --jobs 2 (3.8 with loading and each part's step timing, 7 rows x 30 steps).
# In parts: `itra reproduce wordnet-top10 --jobs 2 --seeds 1` (about 75 minutes), then --seeds 2, then --seeds 3;
# each part reuses the runs that have ended, and an interrupted part resumes its runs from their last epoch.
PRESETS["wordnet-top10"] = {"minilm": Preset(
    "wordnet-top10", "minilm", "text in the paper's regime (WordNet's 10 largest classes); no paper numbers", (
        MethodSetting("Baseline (CE)", "ce"), MethodSetting("LSR", "lsr", 0.1), MethodSetting("Center", "center", 0.1),
        MethodSetting("ITRA-c", "itra-c", 0.5),
        MethodSetting("ITRA-c (previous)", "itra-c", 0.5, settings={"pairing": "previous"}),
        MethodSetting("ITRA-c λ=1", "itra-c", 1.0, grid=True),
        MethodSetting("ITRA-c λ=0 (control)", "itra-c", 0.0),
    ), 12, 32, 5e-5, smoke_train=64, smoke_test=32,
    settings={**TEXT_FINE_TUNING, "max_length": 32, "train_subset": 2000, "val_split": 500, "test_subset": 1000,
              **S2_UPDATES})}

# The paper's third claim, multi-modal classes (`experiments/modes.py`): Fashion-MNIST's classes merged in pairs into
# 5 labels of two modes each; CE, Center and ITRA-c at Table 1's λ on 10,000 images for 15 epochs (1,185 steps, the
# λ warm-up done by epoch 4), then each run's test features measured for the modes its labels hide.
PRESETS["multimodal-fmnist"] = {"cnn": Preset(
    "fashion-mnist-pairs", "cnn", "the multi-modality claim (FMNIST, classes merged in pairs); no paper numbers", (
        MethodSetting("Baseline (CE)", "ce"), MethodSetting("Center", "center", 0.1), MethodSetting("ITRA-c", "itra-c", 0.6),
    ), 15, 128, 0.05, smoke_train=500, smoke_test=500, settings={"train_subset": 10000, **COMMITTED_RECIPE},
    modes=True)}


# What compact features buy and cost after training (issue 33, `experiments/ood.py`): out-of-distribution detection
# and retrieval. The overfitting regime's recipe per class on Fashion-MNIST's first 6 classes (`fashion-mnist-first6`:
# T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal; Shirt, Sneaker, Bag and Ankle boot held out, the near-OOD set):
# 1,000 training images a class (6,000, as its 10,000 of 10 classes), 40 epochs of SGD at batch 128 and lr 0.05 (47
# steps an epoch, 1,880 steps); a stratified validation split of 1,800 (300 a class) fits the temperature of "MSP
# after TS" (and picks the early-stopping epoch); the 6,000 test images of the 6 classes. Rows: CE, Center, ITRA-c at
# λ 0.6 and its control (λ = 0: S2 drawn and passed, no matching loss), S2's pass updating the batch-norm statistics
# (`S2_UPDATES`) as in the other studies' ITRA-c and control rows; today's λ warm-up (a tenth of the run). Then every
# run is measured as `itra ood` measures it: detection against the held-out classes, scikit-learn's digits and uniform
# noise (each at most 6,000 images), and retrieval of the test set by its features.
# Budget, at the overfitting regime's step times (one thread of this 2-core machine: CE and Center 0.051 s a step,
# ITRA-c and the control 0.102 s) and its evaluation cost (about 0.35 ms an image: its epochs of 79 steps took 9.5 s
# with 15,000 test and validation images), 7,800 images evaluated an epoch: 40 x 2.7 s = 109 s a run. CE and Center
# 1,880 x 0.051 + 109 = 205 s, ITRA-c and the control 1,880 x 0.102 + 109 = 301 s: a seed 2 x 205 + 2 x 301 = 1,012 s,
# 3 seeds 3,036 s (51 minutes; a run 4.2 minutes on average), about 30 minutes at --jobs 2 (1.7x faster,
# benchmarks/bench_jobs.py); the OOD measures add about 15 s a run (a forward pass over 6,000 training, 6,000 test
# and 11,800 OOD images, and the 6,000 x 6,000 distances of kNN and retrieval), 3 minutes, in the main process.
PRESETS["ood-fmnist"] = {"cnn": Preset(
    "fashion-mnist-first6", "cnn", "OOD detection and retrieval (FMNIST's first 6 classes); no paper numbers", (
        MethodSetting("Baseline (CE)", "ce"), MethodSetting("Center", "center", 0.1),
        MethodSetting("ITRA-c", "itra-c", 0.6), MethodSetting("ITRA-c λ=0 (control)", "itra-c", 0.0),
    ), 40, 128, 0.05, smoke_train=300, smoke_test=120,
    settings={"train_subset": 6000, "val_split": 1800, **S2_UPDATES}, ood=True)}

@dataclass(frozen=True)
class LayerwisePreset:
    """A study of Jiang, Zhou and Zhu (2024) on one dataset and model with exits: every arm (a method and an exit
    mode, `itra.exits`) x seed, then the layer-wise view of every run (`itra reproduce layerwise-*`)."""

    dataset: str
    model: str
    epochs: int
    batch_size: int
    lr: float
    settings: dict[str, Any]  # other TrainConfig fields of every arm (optimizer, subsets, ...)
    arms: tuple[dict[str, Any], ...]  # the TrainConfig fields of each arm
    smoke_train: int = 256
    smoke_test: int = 128


def layerwise_arms(lam: float) -> tuple[dict[str, Any], ...]:
    """CE and ITRA-c at λ, each standard, aligned and with separate heads; and ITRA-c aligned, matched at every exit."""
    methods = ({"method": "ce"}, {"method": "itra-c", "lam": lam})
    return (*({**method, "exits": exits} for method in methods for exits in ("last", "shared", "separate")),
            {"method": "itra-c", "lam": lam, "exits": "shared", "match_at": "every"})


# Budgets for about 90 minutes on 2 CPU cores (21 runs each); the small ViT trains from scratch, MiniLM is fine-tuned.
LAYERWISE_PRESETS: dict[str, LayerwisePreset] = {
    # 5,000 training images, 10 epochs (400 steps; ITRA's default λ warm-up, 10 % of them, ends at step 40),
    # evaluated on a fixed 2,000-image test subset. AdamW: the usual optimiser of a ViT from scratch.
    "layerwise-fmnist": LayerwisePreset("fashion-mnist", "vit", 10, 128, 1e-3, {
        "optimizer": "adamw", "train_subset": 5000, "test_subset": 2000}, layerwise_arms(0.6)),
    # The `wordnet` preset's recipe on 2,000 glosses: 2 epochs of 63 steps, so the λ warm-up is 100 steps;
    # Table 4's λ 0.5.
    "layerwise-wordnet": LayerwisePreset("wordnet", "minilm", 2, 32, 5e-5, {
        **TEXT_FINE_TUNING, "max_length": 32, "train_subset": 2000, "test_subset": 2000, "lam_warmup": 100},
        layerwise_arms(0.5), smoke_train=64, smoke_test=32),
}


def find_preset(name: str, model: str | None = None) -> Preset:
    if name not in PRESETS:
        raise BadValue(f"Unknown preset {name!r}; expected one of: {', '.join(sorted(PRESETS))}")
    models = PRESETS[name]
    if model is None:
        return next(iter(models.values()))
    if model not in models:
        raise BadValue(f"The paper has no {name} row for model {model!r}; expected one of: {', '.join(models)}")
    return models[model]


