"""One shared encoder with one head per task (tasks may share a head), as in jiant.

Saved as `encoder/` (a Hugging Face folder: the next phase or the evaluator loads it with AutoModel) plus
`heads.pt` and `heads.json` (the head specs). The target phase starts from `encoder/` with fresh heads: the
intermediate heads are dropped.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import XstiltsError
from . import heads as H


def autocast(module: nn.Module, precision: str):
    """The context a forward pass of `module` runs in: bf16 autocast (weights stay fp32) or nothing."""
    device = next(module.parameters()).device.type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass
class HeadSpec:
    name: str
    fmt: str                      # classification | tagging | qa | multiple_choice | mlm
    n_labels: int | None = None
    label_names: list[str] | None = None
    pooling: str = "mean"
    dropout: float = 0.1
    tasks: list[str] | None = None   # the tasks this head serves (several when shared); default [name]

    def serves(self, task: str) -> bool:
        return task in (self.tasks or [self.name])


def build_head(spec: HeadSpec, encoder) -> nn.Module:
    hidden = encoder.config.hidden_size
    if spec.fmt == "classification":
        return H.ClassificationHead(hidden, spec.n_labels, spec.dropout, spec.pooling)
    if spec.fmt == "tagging":
        return H.TaggingHead(hidden, spec.n_labels, spec.dropout)
    if spec.fmt == "qa":
        return H.SpanHead(hidden, spec.dropout)
    if spec.fmt == "multiple_choice":
        return H.MultipleChoiceHead(hidden, spec.dropout, spec.pooling)
    if spec.fmt == "mlm":
        return H.MLMHead(hidden, encoder.get_input_embeddings(), getattr(encoder.config, "layer_norm_eps", 1e-12))
    raise XstiltsError(f"no head for format {spec.fmt!r}")


class MultiTaskModel(nn.Module):
    def __init__(self, encoder, specs: list[HeadSpec]):
        super().__init__()
        self.encoder = encoder
        self.specs = {s.name: s for s in specs}
        self.heads = nn.ModuleDict({s.name: build_head(s, encoder) for s in specs})
        self.precision = "fp32"
        self.attention_dropout: float | None = None   # None: the encoder's own

    def set_attention_dropout(self, p: float) -> None:
        """Dropout on attention probabilities while training, for every self-attention module (BERT/XLM-R family:
        the module's `dropout` is what transformers hands the attention kernel). The config is left as it was, so a
        saved encoder carries the model's own value into the next phase and every arm's phase 3 starts alike."""
        changed = 0
        for module in self.encoder.modules():
            if type(module).__name__.endswith("SelfAttention") and isinstance(getattr(module, "dropout", None),
                                                                             nn.Dropout):
                module.dropout.p = p
                changed += 1
        if not changed:
            raise XstiltsError(f"attention_dropout: {type(self.encoder).__name__} has no *SelfAttention module with a "
                               "dropout (BERT/XLM-R-style encoders only); remove attention_dropout from the recipe")
        self.attention_dropout = p

    def _attention_kernel(self, device: str):
        # CPU bf16 training without attention dropout: the math SDPA kernel. bench/attention_kernel.py on this
        # project's CPU: fwd+bwd of 12 layers at 8 x 160 tokens, default dispatch 0.36 s vs math 0.17 s (with
        # dropout 0.1: 0.41 s). Inference keeps the default dispatch (3x faster there).
        if self.training and device == "cpu" and self.precision == "bf16" and self.attention_dropout == 0:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            return sdpa_kernel(SDPBackend.MATH)
        return contextlib.nullcontext()

    def head_for(self, task: str) -> str:
        for name, spec in self.specs.items():
            if spec.serves(task):
                return name
        raise XstiltsError(f"no head serves task {task!r}; heads: {', '.join(self.specs)}")

    def encode(self, batch) -> torch.Tensor:
        with autocast(self.encoder, self.precision), self._attention_kernel(batch["input_ids"].device.type):
            h = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return h.float()  # heads and losses stay fp32

    def forward(self, head: str, batch) -> tuple[torch.Tensor | None, object]:
        spec = self.specs[head]
        out = self.heads[head](self.encode(batch), batch)
        loss = None
        if spec.fmt in ("classification", "multiple_choice") and "label" in batch:
            loss = F.cross_entropy(out, batch["label"])
        elif spec.fmt == "tagging" and "labels" in batch:
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), batch["labels"].reshape(-1), ignore_index=-100)
        elif spec.fmt == "qa" and "start_position" in batch:
            start, end = out
            loss = (F.cross_entropy(start, batch["start_position"]) + F.cross_entropy(end, batch["end_position"])) / 2
        elif spec.fmt == "mlm":
            targets = batch["labels"][batch["labels"] != -100]
            loss = F.cross_entropy(out, targets) if targets.numel() else out.sum() * 0.0
        return loss, out

    def save(self, out_dir: Path, tokenizer=None, weights: bool = True) -> None:
        """The encoder as a Hugging Face folder, the heads and their specs. `weights=False` writes everything but
        the weights (config, tokenizer, heads.json): a run evaluated from memory and then discarded (~1.5 s and
        470 MB per run saved)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        encoder = self.encoder
        if weights and hasattr(encoder, "merge_and_unload"):  # LoRA: hand the next phase a plain encoder
            encoder = encoder.merge_and_unload()
        if weights:
            encoder.save_pretrained(out_dir / "encoder")
        else:
            encoder.config.save_pretrained(out_dir / "encoder")
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir / "encoder")
        if weights:
            heads = {k: v for k, v in self.heads.state_dict().items() if ".word_embeddings." not in k}
            torch.save(heads, out_dir / "heads.pt")
        (out_dir / "heads.json").write_text(json.dumps([asdict(s) for s in self.specs.values()], indent=2) + "\n")

    @classmethod
    def load(cls, model_dir: Path) -> "MultiTaskModel":
        from transformers import AutoModel

        enc = AutoModel.from_pretrained(model_dir / "encoder")
        specs = [HeadSpec(**s) for s in json.loads((model_dir / "heads.json").read_text())]
        model = cls(enc, specs)
        missing, unexpected = model.heads.load_state_dict(torch.load(model_dir / "heads.pt"), strict=False)
        missing = [m for m in missing if ".word_embeddings." not in m]
        if missing or unexpected:
            raise XstiltsError(f"{model_dir}: heads do not match heads.json (missing {missing}, unexpected {unexpected})")
        return model


def set_trainable(model: MultiTaskModel, mode: str, lora_r: int = 8, lora_alpha: int = 16,
                  lora_dropout: float = 0.1) -> MultiTaskModel:
    """full | frozen_embeddings (the CPU default, DESIGN 4.1) | lora (PEFT on the attention projections)."""
    if mode == "full":
        return model
    if mode == "frozen_embeddings":
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
        return model
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                         target_modules=["query", "key", "value", "dense"], bias="none")
        model.encoder = get_peft_model(model.encoder, cfg)
        return model
    raise XstiltsError(f"unknown trainable mode {mode!r}; expected one of: full, frozen_embeddings, lora")
