"""Self-critical sequence training (Rennie et al., CVPR 2017) as M² runs it: the paper's second stage (Eq. 10).

For each image the model's k=5 beam-search captions w¹..wᵏ are scored with CIDEr-D against the image's references
(document frequencies from the training captions, one document per caption, as the released code does); the baseline
is the mean reward of that image's beams, and the loss is

    L = -(1/k) Σ_i (r(wⁱ) - b) · log p(wⁱ) / T,    T = max_new_tokens,

averaged over images. Beams are found without gradient by `generate`, then re-scored with gradient by one
teacher-forced pass: the same objective as the original's differentiable beam search, with fresh dropout draws.
"""

import torch
from transformers import Trainer

from ..metrics import CiderD


def caption_log_probs(logits: torch.Tensor, sequences: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Per-caption sum of token log-probabilities of `sequences[:, 1:]` up to and including the first <eos>."""
    targets = sequences[:, 1:]
    token_log_probs = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    is_eos = (targets == eos_token_id).long()
    before_or_at_eos = (is_eos.cumsum(-1) - is_eos) == 0
    return (token_log_probs * before_or_at_eos).sum(-1)


def self_critical_loss(sequence_log_probs: torch.Tensor, rewards: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Eq. 10 with the mean reward of each image's beams as baseline; both inputs are (images, beams)."""
    advantage = rewards - rewards.mean(dim=1, keepdim=True)
    return -(sequence_log_probs / max_new_tokens * advantage).mean()


class SelfCriticalTrainer(Trainer):
    """A `Trainer` whose loss is M²'s self-critical objective. Batches hold the visual inputs plus `split` and
    `image_index`, which name each image's references in `references`."""

    def __init__(self, *args, processor, references: dict, cider: CiderD, num_beams: int = 5, max_new_tokens: int = 20, **kwargs):
        super().__init__(*args, **kwargs)
        self.processor = processor
        self.references = references
        self.cider = cider
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.last_mean_reward = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        splits, indices = inputs.pop("split"), inputs.pop("image_index").tolist()
        references = [self.references[s][i] for s, i in zip(splits, indices)]
        generator = self.accelerator.unwrap_model(model)
        with torch.no_grad():
            beams = generator.generate(
                **inputs, num_beams=self.num_beams, num_return_sequences=self.num_beams,
                max_new_tokens=self.max_new_tokens, length_penalty=0.0, do_sample=False,
            )
        captions = self.processor.batch_decode(beams)
        rewards = torch.tensor(
            [self.cider.score(c, references[i // self.num_beams]) for i, c in enumerate(captions)], device=beams.device
        ).view(-1, self.num_beams)
        expanded = {k: v.repeat_interleave(self.num_beams, dim=0) for k, v in inputs.items()}
        outputs = model(**expanded, decoder_input_ids=beams[:, :-1], use_cache=False)
        log_probs = caption_log_probs(outputs.logits.float(), beams, generator.config.eos_token_id)
        loss = self_critical_loss(log_probs.view(-1, self.num_beams), rewards, self.max_new_tokens)
        self.last_mean_reward = float(rewards.mean())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if self.last_mean_reward is not None and "loss" in logs:
            logs["mean_beam_cider_d"] = round(self.last_mean_reward, 4)
        super().log(logs, *args, **kwargs)
