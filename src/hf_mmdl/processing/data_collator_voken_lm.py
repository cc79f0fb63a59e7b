"""Batches for voken-classification pre-training: transformers' MLM masking plus the aligned voken targets."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling

from ..modeling.configuration_voken_bert import VOKEN_LABEL_MODES


@dataclass
class DataCollatorForVokenLanguageModeling(DataCollatorForLanguageModeling):
    """transformers' `DataCollatorForLanguageModeling` (BERT masking: `mlm_probability` = 15 % of the real tokens
    selected; of those 80 % become [MASK], 10 % a random token, 10 % stay) that also batches each row's `vokens`
    into `voken_labels`.

    Rows are mappings with `input_ids` (as the tokenizer returns them, special tokens included) and, for voken
    pre-training, `vokens`: one voken id per token, aligned 1:1 with `input_ids`, −100 at special tokens (what
    the vokenizer writes). Vokens are padded with −100 on the tokenizer's padding side, and `voken_labels`
    keeps targets on `"all"` real tokens (the original default), only the `"mask"`ed ones, or only the
    `"nonmask"`ed ones. Rows without `vokens` (every row of a batch) give plain MLM batches: the MLM-only baseline.

    Args (besides the parent's `tokenizer`, `mlm_probability`, `pad_to_multiple_of`, `seed`, ...):
        voken_labels (`str`): "all", "mask" or "nonmask" (see above).
        voken_size (`int`, *optional*): The model's voken count; when given, a voken ≥ it is refused here, naming
            the row, rather than in the model's forward.

    Raises `ValueError` (naming the row) for vokens not aligned with the tokens (another length), a voken at a
    special token, voken ids < 0 other than −100 or ≥ `voken_size`, and a batch where some rows have vokens and
    others do not.
    """

    voken_labels: str = "all"
    voken_size: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if not self.mlm:
            raise ValueError("Voken pre-training masks tokens (BERT's MLM): mlm must be True.")
        if self.voken_labels not in VOKEN_LABEL_MODES:
            raise ValueError(f"voken_labels must be one of {VOKEN_LABEL_MODES}, got {self.voken_labels!r}.")
        if self.voken_size is not None and (isinstance(self.voken_size, bool) or not isinstance(self.voken_size, int)
                                            or self.voken_size < 1):
            raise ValueError(f"voken_size must be an int ≥ 1 or None, got {self.voken_size!r}.")
        self._special_ids = frozenset(self.tokenizer.all_special_ids)

    def _row_vokens(self, index: int, row: Mapping) -> list[int]:
        vokens, ids = list(row["vokens"]), list(row["input_ids"])
        if len(vokens) != len(ids):
            raise ValueError(f"Row {index}: {len(vokens)} vokens for {len(ids)} tokens; vokens must be aligned 1:1 "
                             "with input_ids, special tokens included (−100 there): vokenize with the model's "
                             "tokenizer, or revokenize to it.")
        for token, voken in zip(ids, vokens):
            if voken == -100:
                continue
            if voken < 0 or (self.voken_size is not None and voken >= self.voken_size):
                raise ValueError(f"Row {index} holds voken {voken}, outside [0, {self.voken_size}) (the model's "
                                 "voken_size); use −100 for tokens without a voken.")
            if token in self._special_ids:
                raise ValueError(f"Row {index} gives the special token {token} voken {voken}; special tokens carry "
                                 "no voken (−100): are the vokens shifted against the tokens?")
        return vokens

    def torch_call(self, examples: list[Any]) -> dict[str, Any]:
        if not examples or not isinstance(examples[0], Mapping):
            raise TypeError("DataCollatorForVokenLanguageModeling takes rows that are mappings with input_ids (and "
                            "vokens), as a tokenized datasets.Dataset gives them.")
        with_vokens = ["vokens" in row for row in examples]
        if any(with_vokens) and not all(with_vokens):
            missing = [i for i, has in enumerate(with_vokens) if not has]
            raise ValueError(f"Rows {missing} have no vokens while others do: vokenize every row of the corpus.")
        vokens = [self._row_vokens(i, row) for i, row in enumerate(examples)] if all(with_vokens) else None
        batch = super().torch_call([{k: v for k, v in row.items() if k != "vokens"} for row in examples])
        if vokens is None:
            return batch
        length = batch["input_ids"].shape[1]
        voken_labels = torch.full((len(vokens), length), -100, dtype=torch.long)
        for i, row in enumerate(vokens):
            if self.tokenizer.padding_side == "left":
                voken_labels[i, length - len(row):] = torch.tensor(row, dtype=torch.long)
            else:
                voken_labels[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        masked = batch["labels"] != -100
        if self.voken_labels == "mask":
            voken_labels[~masked] = -100
        elif self.voken_labels == "nonmask":
            voken_labels[masked] = -100
        batch["voken_labels"] = voken_labels
        return batch


__all__ = ["DataCollatorForVokenLanguageModeling"]
