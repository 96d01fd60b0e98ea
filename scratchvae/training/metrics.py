"""What a run measures, when, and the ``metrics.jsonl`` file it writes.

At every evaluation point a run measures the ELBO (with its rec and kl terms) on the
held-out images and on as many training images, with the same noise each time, and
appends the record as one JSON line. ``metrics.jsonl`` always agrees with the last
checkpoint's history after a resume.
"""
import json
import math
from pathlib import Path

from .checkpoint import atomic_write
from .evaluate import evaluate_elbo

METRICS = "metrics.jsonl"


def read_metrics(path):
    """The records of a ``metrics.jsonl`` file, oldest first (see :func:`numbered_records`)."""
    return [record for _, record in numbered_records(path)]


def numbered_records(path):
    """``[(line number, record)]`` of a ``metrics.jsonl`` file, oldest first. A last line cut
    short by a crash (no newline at its end: a record is written with its newline at once) is
    ignored; any other line that is not a JSON object raises ``ValueError`` naming the file,
    the line and what is on it."""
    text = Path(path).read_text()
    lines = text.splitlines()
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not text.endswith("\n"):
                continue
            raise ValueError(f"{path}: line {i + 1} is not valid JSON: {shown(line)}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {i + 1} is not a record (a JSON object): {shown(line)}")
        records.append((i + 1, record))
    return records


def shown(line, width=80):
    """A line as an error message shows it: at most ``width`` characters."""
    line = line.strip()
    return repr(line if len(line) <= width else line[:width - 3] + "...")


def write_metrics(path, records, append=False):
    """Append ``records`` to ``path``, or replace its content with them (atomically)."""
    text = "".join(json.dumps(r) + "\n" for r in records)
    if append:
        with open(path, "a") as f:
            f.write(text)
    else:
        with atomic_write(path, "w") as f:
            f.write(text)


def measure(model, eval_sets, seed, progress):
    """One record: where the run is (``progress``: epoch, step, samples, mean training loss
    since the last record) and ELBO, rec and kl on each evaluation set (same noise each
    time, so successive values differ only through theta)."""
    record = {"epoch": round(progress.samples / progress.n_train, 4), "step": progress.step,
              "samples": progress.samples}
    if progress.loss_count:
        record["loss"] = float(progress.loss_sum / progress.loss_count)   # one GPU read
    for split, x in eval_sets.items():
        terms = evaluate_elbo(model, x, seed=seed)
        record.update({f"{split}_{name}": value for name, value in terms._asdict().items()})
    record["wall_time"] = round(progress.wall_time, 3)
    return record


def non_finite(record, model):
    """What went non-finite (a sentence), or ``None`` when the record and parameters are finite."""
    bad = [k for k, v in record.items() if not math.isfinite(v)]
    if bad:
        return f"{', '.join(bad)} became non-finite"
    if not all(bool(model.xp.isfinite(p).all()) for p in model.parameters().values()):
        return "a parameter became non-finite"
    return None


class EvaluationSchedule:
    """When a run evaluates: at the end of every epoch, or every ``every`` training samples
    when given; and always when it reaches ``target`` samples."""

    def __init__(self, every, samples, target):
        self.every, self.target = every, target
        self.next = None if every is None else self._after(samples)

    def _after(self, samples):
        return (samples // self.every + 1) * self.every

    def due(self, samples, epoch_ended):
        if samples >= self.target:
            return True
        if self.every is None:
            return epoch_ended
        if samples >= self.next:
            self.next = self._after(samples)
            return True
        return False
