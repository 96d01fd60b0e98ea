"""The catalogue of derivation checks as a whole (``scratchvae gradcheck``) and the helpers
every check shares; each note's checks are tested in ``test_derivations_note000.py`` ...
``test_derivations_library.py``."""
import pytest

from scratchvae import derivations
from scratchvae.derivations.checks import REL, ZSCORE, Check, z_bound


def test_run_all_in_notes_order():
    """run_all returns one passing Check per derivation: the modules' CHECKS one after the
    other, names unique, notes ascending, and every check of ``noteNNN`` labelled note NNN."""
    checks = derivations.run_all()
    assert [c.name for c in checks] == [f.__name__ for m in derivations.MODULES for f in m.CHECKS]
    assert [c.name for c in checks] == [f.__name__ for f in derivations.CHECKS]
    assert len({c.name for c in checks}) == len(checks)
    notes = [c.note for c in checks if c.note != "-"]
    assert notes == sorted(notes)
    note_of = {c.name: c.note for c in checks}
    for module in derivations.MODULES:
        prefix, _, number = module.__name__.rpartition(".")[2].partition("note")
        if not prefix and number:
            assert {note_of[f.__name__] for f in module.CHECKS} == {number}, module.__name__
    for c in checks:
        assert c.passed and c.formula and c.details and c.measure in (REL, ZSCORE)
    table = derivations.format_table(checks)
    assert all(c.name in table for c in checks) and " NO" not in table


def test_format_table_marks_a_failed_check():
    """A failed check's row ends in NO, a passed one's in yes."""
    table = derivations.format_table([Check("good", "000", "f", 1e-12, 1e-10, REL, ""),
                                      Check("bad", "001", "f", 1e-3, 1e-10, REL, "")])
    rows = table.splitlines()
    assert rows[1].startswith("good") and rows[1].endswith("yes")
    assert rows[2].startswith("bad") and rows[2].endswith("NO")


def test_z_bound_is_bonferroni():
    """z_bound(m) = Phi^{-1}(1 - alpha / (2 m)): 3.89 for one comparison at alpha = 1e-4, growing with m."""
    assert z_bound(1) == pytest.approx(3.8906, abs=1e-4)
    assert z_bound(10) == pytest.approx(4.4172, abs=1e-4)
    assert z_bound(100) > z_bound(10)
    assert z_bound(10, dof=39) > z_bound(10)          # a t quantile: heavier tails


def test_check_fails_on_nan():
    """A check whose error is NaN or infinite is reported as failed."""
    assert not Check("x", "000", "f", float("nan"), 1.0, REL, "").passed
    assert not Check("x", "000", "f", float("inf"), 1.0, REL, "").passed
