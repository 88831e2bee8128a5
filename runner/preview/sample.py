"""Which answered rows a preview runs again: a deterministic sample, stratified by the old answer
when answers are short labels. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from runner.answers.compare import MAX_LABELS, is_label


def _order(custom_id: str) -> bytes:
    """A stable order independent of the source's: the same rows each time, whatever the spec."""
    return hashlib.blake2b(custom_id.encode(), digest_size=8).digest()


def sample(old: Mapping[str, Any], n: int) -> list[str]:
    """Up to `n` ids of `old` (id -> old answer), most representative first: with label answers,
    each label gets its share of the sample (at least one while room lasts); else hash order."""
    ordered = sorted(old, key=_order)
    if not all(is_label(old[i]) for i in ordered) or len({old[i] for i in ordered}) > MAX_LABELS:
        return ordered[:n]
    strata: dict[Any, list[str]] = {}
    for custom_id in ordered:
        strata.setdefault(old[custom_id], []).append(custom_id)
    total = len(ordered)
    # Largest remainder, with a floor of one per label while n allows: rare labels are seen.
    shares = {label: len(ids) * n / total for label, ids in strata.items()}
    take = {label: min(len(strata[label]), max(1, int(share))) for label, share in shares.items()}
    while sum(take.values()) > n:  # more labels than rows asked: the rarest go
        rarest = min((label for label in take if take[label]), key=lambda lb: (shares[lb], str(lb)))
        take[rarest] -= 1
    for label in sorted(shares, key=lambda lb: (-(shares[lb] - int(shares[lb])), str(lb))):
        if sum(take.values()) >= n:
            break
        if take[label] < len(strata[label]):
            take[label] += 1
    while sum(take.values()) < min(n, total):  # fill from the biggest strata
        label = max((lb for lb in strata if take[lb] < len(strata[lb])),
                    key=lambda lb: (len(strata[lb]) - take[lb], str(lb)))
        take[label] += 1
    chosen = {i for label, ids in strata.items() for i in ids[:take[label]]}
    return [i for i in ordered if i in chosen]
