"""How tables and figures name runs: read from the methods table, every changed field but the strength."""
from itra.experiments.labels import method_label, variant_label
from tests.helpers import resolved


def test_labels_read_from_the_table():
    assert method_label(resolved(method="ce")) == "CE"
    assert method_label(resolved(method="lsr", smoothing=0.2)) == "LSR ε=0.2"
    assert method_label(resolved(method="itra-c", lam=0.6)) == "ITRA-c λ=0.6"
    assert method_label(resolved(method="ce", model="vit", exits="separate", exit_weights="uniform")) == \
        "CE (exits separate, exit_weights uniform)"


def test_variant_labels_name_every_changed_field_but_the_strength():
    assert variant_label(resolved(method="itra-c", lam=0.2)) == "ITRA-c"
    config = resolved(method="itra-c", lam=0.2, bandwidth="class", match="mmd2", center_alpha=0.1)
    assert variant_label(config) == "ITRA-c (bandwidth class, match mmd2)"  # centre_alpha is not ITRA's
    assert method_label(config) == "ITRA-c (bandwidth class, match mmd2) λ=0.2"
    paper = resolved(method="itra-c", bandwidth="class", lam_warmup=0)
    assert variant_label(paper) == "ITRA-c (bandwidth class, lam_warmup 0)"
    assert variant_label(resolved(method="center", lam_warmup=0)) == "Center"  # the warm-up is ITRA's
