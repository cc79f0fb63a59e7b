"""Tiny voken-LM models, tokenizers and batches shared by the voken-LM tests."""

import torch

from hf_mmdl.architectures import architecture_of
from hf_mmdl.modeling import VokenBertConfig
from hf_mmdl.processing import train_bert_wordpiece

VOKEN_BERT_AUTO_ENTRY = architecture_of("voken_bert").entry("voken_bert")

SENTENCES = [
    "a red apple lies on the wooden table",
    "the brown dog runs across the green park",
    "a small cat sleeps on the soft bed",
    "two children play with a blue ball near the river",
    "the old man reads a newspaper at the station",
    "a white boat sails on the calm sea",
]


def tiny_tokenizer(model_max_length: int = 16):
    return train_bert_wordpiece(SENTENCES * 3, vocab_size=120, model_max_length=model_max_length)


def tiny_config(**overrides) -> VokenBertConfig:
    """The spec's tiny LM: BERT vocab 99, hidden 32, 2 layers, 2 heads, FFN 37, 64 positions; 10 vokens."""
    kwargs = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                  max_position_embeddings=64, voken_size=10, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return VokenBertConfig(**(kwargs | overrides))


def tiny_inputs(batch_size: int = 2, length: int = 16, vocab_size: int = 99, voken_size: int = 10) -> dict:
    """A fixed masked batch: ids in [5, vocab), [CLS]=2 / [SEP]=3 framing, every 4th token masked (id 4) with its
    label, a voken for every real token."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (batch_size, length), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3
    labels = torch.full_like(ids, -100)
    labels[:, 1:-1:4] = ids[:, 1:-1:4]
    masked_ids = torch.where(labels != -100, torch.full_like(ids, 4), ids)
    vokens = torch.randint(0, voken_size, (batch_size, length), generator=generator)
    vokens[:, 0] = vokens[:, -1] = -100
    return {"input_ids": masked_ids, "attention_mask": torch.ones_like(ids), "labels": labels, "voken_labels": vokens}
